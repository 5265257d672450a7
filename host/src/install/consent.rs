//! Consent at install: what a plugin asks for, in words the operator reads
//! before saying yes, and `--deny CAP` to grant less than asked (never
//! more).

use crate::grant::Grant;
use crate::manifest::{Capabilities, Manifest, Trigger};

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

/// What a plugin asks for and runs under, as granted, section by section
/// (`read`, `write`, …, `limits`, `triggers`, `webhooks`, `review`): the one
/// list both the install summary and the update diff are made from, so
/// whatever the summary shows an update cannot change unseen. A new kind
/// of grant is one more section here.
pub fn sections(manifest: &Manifest, grant: &Grant) -> Vec<(&'static str, Vec<String>)> {
    let caps = &grant.capabilities;
    let dirs: Vec<String> = grant
        .dirs
        .iter()
        .map(|(name, d)| format!("{name} ({}) = {}", d.access.as_str(), d.path.display()))
        .collect();
    // The gate holds sends and flags unsure writes: shown to any plugin
    // that can do either.
    let gated = caps
        .actions
        .iter()
        .any(|a| matches!(a.as_str(), "send" | "create" | "update" | "complete"));
    let review = if gated {
        vec![review_line(manifest, grant)]
    } else {
        Vec::new()
    };
    vec![
        ("read", caps.read.clone()),
        ("write", caps.write.clone()),
        ("actions", caps.actions.clone()),
        ("send", caps.send.clone()),
        ("schedule", caps.schedule.clone()),
        ("invoke", caps.invoke.clone()),
        ("config", caps.config.clone()),
        ("models", llm_items(caps)),
        ("memory", memory_items(caps)),
        ("identities", caps.identities.clone()),
        ("dirs", dirs),
        ("endpoints", endpoint_items(grant)),
        ("secrets", secret_items(grant)),
        ("limits", limit_items(manifest, grant)),
        ("triggers", trigger_items(manifest)),
        ("webhooks", webhook_items(manifest)),
        ("review", review),
        (
            "delivers",
            manifest
                .channel
                .as_ref()
                .map(|c| c.serves.clone())
                .unwrap_or_default(),
        ),
        (
            "provides",
            manifest.provides.iter().map(|a| a.name.clone()).collect(),
        ),
        ("denied", grant.denied.clone()),
    ]
}

/// Each endpoint as `name (kind) = address`: what the plugin may reach on
/// the network, and nothing else.
fn endpoint_items(grant: &Grant) -> Vec<String> {
    grant
        .endpoints
        .iter()
        .map(|(name, e)| format!("{name} ({}) = {e}", e.kind()))
        .collect()
}

/// Each secret by name, and the stored secret it is bound to (never a
/// value).
fn secret_items(grant: &Grant) -> Vec<String> {
    grant
        .secrets
        .iter()
        .map(|(name, stored)| match name == stored {
            true => name.clone(),
            false => format!("{name} = stored secret {stored}"),
        })
        .collect()
}

/// The run limits, pacing and retries a plugin runs under.
fn limit_items(manifest: &Manifest, grant: &Grant) -> Vec<String> {
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
    if let Some(a) = l.attempts {
        limits.push(format!("{a} attempts"));
    }
    limits.push(format!("{} writes/run", l.writes_per_run()));
    limits.push(format!("{} writes/day", l.writes_per_day()));
    limits.push(format!("{} jobs/run", l.jobs_per_run()));
    limits.extend(l.retry_on.iter().map(|r| format!("retries on {r}")));
    limits
}

/// The time and event triggers.
fn trigger_items(manifest: &Manifest) -> Vec<String> {
    manifest
        .triggers
        .iter()
        .filter_map(|t| match t.trigger()? {
            Trigger::Every(every) => Some(format!("every {every}")),
            Trigger::Cron { expr, tz } => Some(format!("cron {expr} {}", tz.unwrap_or("UTC"))),
            Trigger::On { event, kinds: [] } => Some(format!("on {event}")),
            Trigger::On { event, kinds } => Some(format!("on {event} of {}", kinds.join(", "))),
            Trigger::Webhook { .. } => None,
        })
        .collect()
}

/// The webhooks, with the largest body each accepts.
fn webhook_items(manifest: &Manifest) -> Vec<String> {
    manifest
        .triggers
        .iter()
        .filter_map(|t| match t.trigger()? {
            Trigger::Webhook { name, max_bytes } => {
                let most = max_bytes.unwrap_or(crate::manifest::MAX_WEBHOOK_BYTES);
                Some(format!("{name} (up to {most} bytes)"))
            }
            _ => None,
        })
        .collect()
}

/// Working and long-term memory, and whether it sees others' memories.
fn memory_items(caps: &Capabilities) -> Vec<String> {
    match (caps.memory, caps.shared_memory) {
        (true, false) => vec!["working and long-term".to_string()],
        (true, true) => vec![
            "working and long-term".to_string(),
            "shared: every plugin's memories that name no source".to_string(),
        ],
        _ => Vec::new(),
    }
}

/// What each provider `grant` may invoke can reach with its own grant, one
/// line per invoke target: the operator consents to that reach too, since
/// the provider acts for the caller (`installed` looks up a provider's row).
pub fn invoke_reach(
    grant: &Grant,
    installed: impl Fn(&str) -> Option<(String, Grant)>,
) -> Vec<String> {
    grant
        .capabilities
        .invoke
        .iter()
        .map(|target| {
            let provider = target.split_once('/').map_or(target.as_str(), |(p, _)| p);
            match installed(provider) {
                None => format!(
                    "  {target}: {provider} is not installed; what it can reach is shown when it is"
                ),
                Some((label, g)) => {
                    let c = &g.capabilities;
                    let part = |name: &str, v: &[String]| {
                        (!v.is_empty()).then(|| format!("{name} {}", v.join(", ")))
                    };
                    let reach: Vec<String> = [
                        part("read", &c.read),
                        part("write", &c.write),
                        part("actions", &c.actions),
                        part("send", &c.send),
                        part("dirs", &g.dirs.keys().cloned().collect::<Vec<_>>()),
                        part("reach", &endpoint_items(&g)),
                    ]
                    .into_iter()
                    .flatten()
                    .collect();
                    let reach = if reach.is_empty() {
                        "nothing beyond its own computation".to_string()
                    } else {
                        reach.join("; ")
                    };
                    format!("  {target}: runs as {label}, which may {reach}")
                }
            }
        })
        .collect()
}

/// The review gate in force for a plugin, in words: the operator's, made
/// stricter by the manifest's proposal where it asks for that.
pub fn review_line(manifest: &Manifest, grant: &Grant) -> String {
    let operator = grant.review_below;
    let in_force = manifest.policy.under(operator);
    if in_force == operator {
        format!(
            "{} (review-below {operator}, the operator's)",
            in_force.describe()
        )
    } else {
        format!(
            "{} (the plugin asks for review below {}, stricter than the operator's {operator})",
            in_force.describe(),
            manifest.policy.review_below
        )
    }
}

/// The capabilities and limits `manifest` asks for, as granted in `grant`,
/// one line each.
pub fn summary(manifest: &Manifest, grant: &Grant) -> Vec<String> {
    let mut lines = vec![format!(
        "{} ({}) asks for:",
        manifest.label(),
        manifest.plugin.world.as_str()
    )];
    for (what, items) in sections(manifest, grant) {
        if !items.is_empty() {
            lines.push(format!("  {what:<9} {}", items.join(", ")));
        }
    }
    lines
}

/// What changes from one installed version to the next: `+ section: item`
/// for each item gained, `- section: item` for each lost, in a fixed order,
/// over every section [`summary`] shows (capabilities, folders, limits,
/// triggers, webhooks, the review gate, what it delivers and provides).
pub fn diff(old: (&Manifest, &Grant), new: (&Manifest, &Grant)) -> (Vec<String>, Vec<String>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for ((kind, before), (_, after)) in sections(old.0, old.1)
        .into_iter()
        .zip(sections(new.0, new.1))
    {
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

/// Takes out of a new version's grant what the operator denied the one
/// before (`--deny` choices outlive updates). A denial the new version no
/// longer needs (it stopped asking) is dropped.
pub fn deny_again(grant: &mut Grant, denied: &[String]) {
    for cap in denied {
        // An error means the new version does not ask for it any more.
        let _ = deny(grant, cap);
    }
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
            grant.denied.push(cap.to_string());
            return Ok(());
        }
        "dir" => {
            return Err(format!(
                "--deny {cap}: a plugin cannot run without the folders it needs; do not install it, or bind a different folder with --dir"
            ));
        }
        "endpoint" | "secret" => {
            return Err(format!(
                "--deny {cap}: a plugin cannot work without the endpoints and secrets it names; do not install it, or bind another with --{kind}"
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
    grant.denied.push(cap.to_string());
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
    use crate::manifest::ReviewGate;
    use crate::testing::Fixture;

    fn manifest(extra: &str) -> (Manifest, Grant) {
        let text = format!(
            "[plugin]\nid = \"p\"\nversion = \"0.1.0\"\nworld = \"agent\"\n[capabilities]\nread = [\"core/task\"]\nwrite = [\"core/task\"]\nactions = [\"create\", \"send\"]\nsend = [\"email\"]\n{extra}"
        );
        let m = Manifest::parse(&text, "keel.toml").unwrap();
        let g = Grant::new(&m, &Default::default()).unwrap();
        (m, g)
    }

    /// H3: an update that adds a trigger or a webhook, raises a limit or
    /// tightens the plugin's review proposal shows each as a `+` line, so
    /// it needs consent like a new capability does.
    #[test]
    fn h3_update_diff_covers_triggers_webhooks_limits_and_policy() {
        let old = manifest("");
        let new = manifest(
            "[limits]\nfuel = 99\n[policy]\nreview_below = 0.5\n[[triggers]]\nevery = \"1m\"\n[[triggers]]\nwebhook = \"push\"\n",
        );
        let (added, removed) = diff((&old.0, &old.1), (&new.0, &new.1));
        let has = |lines: &[String], s: &str| lines.iter().any(|l| l.starts_with(s));
        assert!(has(&added, "+ triggers: every 1m"), "{added:?}");
        assert!(has(&added, "+ webhooks: push (up to"), "{added:?}");
        assert!(has(&added, "+ limits: 99 fuel"), "{added:?}");
        assert!(has(&removed, "- limits: "), "{removed:?}");
        // The gate in force is still the operator's `all` (stricter than
        // the plugin's 0.5), so the review line does not change.
        assert!(!has(&added, "+ review"), "{added:?}");
        let mut relaxed = (old.0.clone(), old.1.clone());
        relaxed.1.review_below = ReviewGate::Below(0.3);
        let mut tightened = (new.0.clone(), new.1.clone());
        tightened.1.review_below = ReviewGate::Below(0.3);
        let (added, _) = diff((&relaxed.0, &relaxed.1), (&tightened.0, &tightened.1));
        assert!(
            has(&added, "+ review: sends below confidence 0.5"),
            "{added:?}"
        );
        // Nothing changed, nothing to ask.
        assert_eq!(diff((&old.0, &old.1), (&old.0, &old.1)), (vec![], vec![]));
    }

    /// Consent shows every endpoint with its address and every secret by
    /// name; an update that moves an endpoint is a `+` line.
    #[test]
    fn consent_shows_endpoints_and_secrets_and_an_update_that_moves_one() {
        let text = "[capabilities.endpoints]\nfeed = \"http\"\napi = \"https://api.example.com\"\n";
        let caps = |feed: &str| {
            let full = format!(
                "[plugin]\nid = \"p\"\nversion = \"0.1.0\"\nworld = \"connector\"\n[capabilities]\nsecrets = [\"token\"]\n{text}"
            );
            let m = Manifest::parse(&full, "keel.toml").unwrap();
            let bindings = crate::grant::Bindings {
                endpoints: [("feed".to_string(), feed.to_string())].into(),
                secrets: [("token".to_string(), "feed_token".to_string())].into(),
                ..Default::default()
            };
            let g = Grant::new(&m, &bindings).unwrap();
            (m, g)
        };
        let (m, g) = caps("https://example.org/feed.xml");
        let lines = summary(&m, &g).join("\n");
        assert!(
            lines.contains(
                "endpoints api (https) = https://api.example.com:443/, feed (https) = https://example.org:443/feed.xml"
            ),
            "{lines}"
        );
        assert!(
            lines.contains("secrets   token = stored secret feed_token"),
            "{lines}"
        );
        let moved = caps("http://10.0.0.5:8080/feed");
        let (added, removed) = diff((&m, &g), (&moved.0, &moved.1));
        assert_eq!(
            added,
            ["+ endpoints: feed (http) = http://10.0.0.5:8080/feed"]
        );
        assert_eq!(
            removed,
            ["- endpoints: feed (https) = https://example.org:443/feed.xml"]
        );
        let mut g = g;
        assert!(
            deny(&mut g, "endpoint:feed")
                .unwrap_err()
                .contains("cannot work without")
        );
    }

    /// H3: what the operator denied is taken out of the next version too.
    #[test]
    fn h3_denies_outlive_an_update() {
        let (_, mut g) = manifest("");
        deny(&mut g, "action:send").unwrap();
        assert_eq!(g.denied, vec!["action:send".to_string()]);
        let (_, mut next) = manifest("");
        deny_again(&mut next, &g.denied);
        assert!(next.check_send("email").is_err());
        assert_eq!(next.denied, g.denied);
    }

    #[test]
    fn m7_consent_to_invoke_shows_what_the_provider_reaches() {
        let (_, mut caller) = manifest("");
        caller.capabilities.invoke = vec!["mail/*".into(), "gone/send".into()];
        let (_, mut provider) = manifest("");
        provider.capabilities.read = vec!["core/contact".into()];
        provider.capabilities.write = Vec::new();
        provider.capabilities.send = vec!["email".into()];
        provider.capabilities.actions = vec!["send".into()];
        let lines = invoke_reach(&caller, |id| {
            (id == "mail").then(|| ("mail@1.0.0".to_string(), provider.clone()))
        });
        assert_eq!(
            lines,
            [
                "  mail/*: runs as mail@1.0.0, which may read core/contact; actions send; send email",
                "  gone/send: gone is not installed; what it can reach is shown when it is",
            ]
        );
    }

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
