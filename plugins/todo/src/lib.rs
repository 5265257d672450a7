//! The `todo` agent: every `TODO` line and open checkbox (`- [ ] ...`) in a
//! document or message becomes a `core/task`, linked `derived-from` its
//! source. The identity is the source and the line's text, so reruns and
//! moved lines never duplicate a task.

use keel_agent::prelude::*;
use sha2::{Digest, Sha256};

struct Todo;

/// The task title in `line`, if the line is a TODO.
fn todo_title(line: &str) -> Option<&str> {
    let t = line.trim();
    for prefix in ["- [ ] ", "* [ ] ", "+ [ ] "] {
        if let Some(rest) = t.strip_prefix(prefix) {
            return Some(rest.trim()).filter(|r| !r.is_empty());
        }
    }
    let at = t.find("TODO")?;
    let rest = t[at + 4..].trim_start_matches([':', ' ', '-']).trim();
    Some(rest).filter(|r| !r.is_empty())
}

impl Agent for Todo {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let sources = match (trigger.kind, trigger.record) {
            (TriggerKind::Event, Some(record)) => vec![record],
            _ => {
                let mut all = records::query_all(core::DOCUMENT)?;
                all.extend(records::query_all(core::MESSAGE)?);
                all
            }
        };
        let (mut made, mut known) = (0usize, 0usize);
        for source in &sources {
            if source.kind != core::DOCUMENT && source.kind != core::MESSAGE {
                continue;
            }
            let body: serde_json::Value = source.body_as()?;
            let text = body["text"].as_str().unwrap_or_default();
            let path = body["path"].as_str().unwrap_or(&source.id);
            for (n, line) in text.lines().enumerate() {
                let Some(title) = todo_title(line) else {
                    continue;
                };
                let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
                let key = hex(&Sha256::digest(title.as_bytes())[..8]);
                let identity = Identity::new("todo", &format!("{}#{key}", source.id));
                let task = core::Task {
                    source: Some(source.id.clone()),
                    line: Some(line_no),
                    ..core::Task::open(title)
                };
                let options = WriteOptions::new()
                    .source(&source.id)
                    .note(format!("TODO on line {line_no} of {path}"))
                    .confidence(1.0);
                let created = actions::create(core::TASK, &task, Some(identity), options)?;
                if created.existed {
                    known += 1;
                } else {
                    actions::link(&created.record.id, &source.id, "derived-from")?;
                    made += 1;
                }
            }
        }
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        Ok(Outcome::new(format!(
            "{} created, {known} already known, from {}",
            plural(made, "task"),
            plural(sources.len(), "record")
        )))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

keel_agent::export_agent!(Todo);

#[cfg(test)]
mod tests {
    use super::todo_title;

    #[test]
    fn finds_todos_and_open_checkboxes() {
        assert_eq!(todo_title("- [ ] call Ann"), Some("call Ann"));
        assert_eq!(todo_title("TODO: pay rent"), Some("pay rent"));
        assert_eq!(
            todo_title("- TODO ask the printer"),
            Some("ask the printer")
        );
        assert_eq!(todo_title("- [x] done"), None);
        assert_eq!(todo_title("TODO"), None);
        assert_eq!(todo_title("nothing here"), None);
    }
}
