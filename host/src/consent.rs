//! Consent at install: what a plugin asks for, in words the operator reads
//! before saying yes, and `--deny CAP` to grant less than asked (never
//! more).

use crate::grant::Grant;
use crate::manifest::{Capabilities, Manifest};

/// The model capabilities as items: each tier, `embed`, and the budget.
fn llm_items(caps: &Capabilities) -> Vec<String> {
    let Some(llm) = &caps.llm else {
        return Vec::new();
    };
    let mut items: Vec<String> = llm.tiers.iter().map(|t| t.as_str().to_string()).collect();
    if llm.embed {
        items.push("embed".into());
    }
    if let Some(n) = llm.tokens_per_day {
        items.push(format!("{n} tokens/day"));
    }
    items
}

/// The capabilities and limits `manifest` asks for, as granted in `grant`,
/// one line each.
pub fn summary(manifest: &Manifest, grant: &Grant) -> Vec<String> {
    let caps = &grant.capabilities;
    let mut lines = vec![format!(
        "{} ({}) asks for:",
        manifest.label(),
        manifest.plugin.world.as_str()
    )];
    let mut line = |what: &str, items: &[String]| {
        if !items.is_empty() {
            lines.push(format!("  {what:<9} {}", items.join(", ")));
        }
    };
    line("read", &caps.read);
    line("write", &caps.write);
    line("actions", &caps.actions);
    line("send", &caps.send);
    line("schedule", &caps.schedule);
    line("invoke", &caps.invoke);
    line("config", &caps.config);
    line("models", &llm_items(caps));
    if caps.memory {
        line("memory", &["working and long-term".to_string()]);
    }
    let dirs: Vec<String> = grant
        .dirs
        .iter()
        .map(|(name, d)| format!("{name} ({}) = {}", d.access.as_str(), d.path.display()))
        .collect();
    line("dirs", &dirs);
    let l = &manifest.limits;
    let mut limits = vec![
        format!("{} MiB", l.memory_mb),
        format!("{} fuel", l.fuel),
        format!("{} ms", l.timeout_ms),
    ];
    if let Some(c) = grant.concurrency {
        limits.push(format!("{c} at once"));
    }
    if let Some(r) = grant.rate {
        limits.push(format!("{r}"));
    }
    line("limits", &limits);
    let triggers: Vec<String> = manifest
        .triggers
        .iter()
        .map(|t| match (&t.every, &t.cron, &t.on, &t.webhook) {
            (Some(every), ..) => format!("every {every}"),
            (_, Some(cron), ..) => format!("cron {cron} {}", t.tz.as_deref().unwrap_or("UTC")),
            (_, _, Some(on), _) if t.kinds.is_empty() => format!("on {on}"),
            (_, _, Some(on), _) => format!("on {on} of {}", t.kinds.join(", ")),
            (_, _, _, Some(hook)) => format!("webhook {hook}"),
            _ => String::new(),
        })
        .collect();
    line("triggers", &triggers);
    if let Some(channel) = &manifest.channel {
        line("delivers", &channel.serves);
    }
    let provides: Vec<String> = manifest.provides.iter().map(|a| a.name.clone()).collect();
    line("provides", &provides);
    lines
}

/// What changes from grant `old` to grant `new`: `+ kind: value` for each
/// capability gained, `- kind: value` for each lost, in a fixed order.
pub fn diff(old: &Grant, new: &Grant) -> (Vec<String>, Vec<String>) {
    let lists = |g: &Grant| {
        let c = &g.capabilities;
        let dirs: Vec<String> = c
            .dirs
            .iter()
            .map(|(n, a)| format!("{n} ({})", a.as_str()))
            .collect();
        vec![
            ("read", c.read.clone()),
            ("write", c.write.clone()),
            ("action", c.actions.clone()),
            ("send", c.send.clone()),
            ("schedule", c.schedule.clone()),
            ("invoke", c.invoke.clone()),
            ("config", c.config.clone()),
            ("llm", llm_items(c)),
            (
                "memory",
                if c.memory {
                    vec!["yes".to_string()]
                } else {
                    Vec::new()
                },
            ),
            ("dir", dirs),
        ]
    };
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for ((kind, before), (_, after)) in lists(old).into_iter().zip(lists(new)) {
        added.extend(
            after
                .iter()
                .filter(|v| !before.contains(v))
                .map(|v| format!("+ {kind}: {v}")),
        );
        removed.extend(
            before
                .iter()
                .filter(|v| !after.contains(v))
                .map(|v| format!("- {kind}: {v}")),
        );
    }
    (added, removed)
}

/// Asks the operator on the terminal whether to go on; refuses without a
/// terminal, saying to pass `--yes`.
pub fn ask(question: &str, refusal: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{refusal}");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        anyhow::bail!("nothing changed: the operator said no")
    }
}

/// Takes `cap` out of `grant`: `read:KIND`, `write:KIND`, `action:NAME`,
/// `send:CHANNEL`, `schedule:PLUGIN`, `invoke:ACTION`, `config:KEY` or
/// `llm:TIER` (`small`, `large`, `embed`).
/// Refuses a capability that was not asked for, and directories (a plugin
/// that needs a folder cannot run without it: do not install it instead).
pub fn deny(grant: &mut Grant, cap: &str) -> Result<(), String> {
    let Some((kind, value)) = cap.split_once(':') else {
        return Err(format!(
            "--deny {cap}: write the capability as KIND:VALUE, e.g. write:core/task or action:send"
        ));
    };
    let caps = &mut grant.capabilities;
    let list = match kind {
        "read" => &mut caps.read,
        "write" => &mut caps.write,
        "action" => &mut caps.actions,
        "send" => &mut caps.send,
        "schedule" => &mut caps.schedule,
        "invoke" => &mut caps.invoke,
        "config" => &mut caps.config,
        "llm" => {
            let asked = caps
                .llm
                .as_mut()
                .ok_or_else(|| format!("--deny {cap}: the plugin does not ask for models"))?;
            let before = (asked.tiers.len(), asked.embed);
            match value {
                "embed" => asked.embed = false,
                tier => asked.tiers.retain(|t| t.as_str() != tier),
            }
            if (asked.tiers.len(), asked.embed) == before {
                return Err(format!(
                    "--deny {cap}: the plugin does not ask for it; see what it asks for above"
                ));
            }
            return Ok(());
        }
        "dir" => {
            return Err(format!(
                "--deny {cap}: a plugin cannot run without the folders it needs; do not install it, or bind a different folder with --dir"
            ));
        }
        _ => {
            return Err(format!(
                "--deny {cap}: `{kind}` is not a capability; use read, write, action, send, schedule, invoke, config or llm"
            ));
        }
    };
    let before = list.len();
    list.retain(|v| v != value);
    if list.len() == before {
        return Err(format!(
            "--deny {cap}: the plugin does not ask for it; see what it asks for above"
        ));
    }
    // Denying an action takes what only that action used with it.
    match (kind, value) {
        ("action", "send") => caps.send.clear(),
        ("action", "schedule") => caps.schedule.clear(),
        ("config", key) => {
            grant.config.remove(key);
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Fixture;

    #[test]
    fn the_operator_grants_less_never_more() {
        let mut g = Fixture::plugin(
            "p",
            &["core/task"],
            &["create", "send"],
            "send = [\"email\"]",
        )
        .grant;
        deny(&mut g, "write:core/task").unwrap();
        assert!(g.check_write("create", "core/task").is_err());
        assert!(g.can_read("core/task"));
        deny(&mut g, "action:send").unwrap();
        assert!(g.check_send("email").is_err());
        assert!(g.capabilities.send.is_empty());
        let err = deny(&mut g, "write:core/contact").unwrap_err();
        assert!(err.contains("does not ask for it"), "{err}");
        assert!(deny(&mut g, "everything").is_err());
        assert!(deny(&mut g, "dir:notes").is_err());
    }
}
