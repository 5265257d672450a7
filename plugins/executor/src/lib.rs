//! The `executor` agent: claims open tasks it has the skill for and does
//! them, then completes them with what came of it.
//!
//! - `note`: writes a `core/note` of type `result` with the task's title,
//!   linked `derived-from` the task;
//! - `email`: the title is `ADDRESS what to say`; drafts the email and sends
//!   it through the `email` channel with confidence 0.5, so it waits in the
//!   review queue for the operator.
//!
//! Woken by a new task it tries that one; run by hand or on its interval it
//! tries every open task. A task another executor holds is left alone (its
//! claim is a `conflict`); a task without a known skill is for a person.

use std::time::Duration;

use keel_agent::SendState;
use keel_agent::prelude::*;

struct Executor;

/// How long a claim lasts: well past one run's deadline.
const CLAIM: Duration = Duration::from_secs(120);
/// The skills this executor has.
const SKILLS: &[&str] = &["note", "email"];

/// What happened to one task.
enum Tried {
    Done,
    Failed,
    Taken,
    NotMine,
}

fn email_parts(title: &str) -> Option<(&str, &str)> {
    let (to, text) = title.split_once(char::is_whitespace)?;
    let to = to.trim_end_matches([':', ',']);
    let ok = to
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'));
    let text = text.trim();
    (ok && !text.is_empty()).then_some((to, text))
}

/// Does the work of a claimed task; the result to keep, or why it failed.
fn perform(task: &Record, body: &core::Task) -> Result<Result<serde_json::Value, String>, Error> {
    match body.skill.as_deref() {
        Some("note") => {
            let note = core::Note {
                title: body.title.clone(),
                text: format!("Done for task {}: {}", task.id, body.title),
                note_type: "result".into(),
            };
            let options = WriteOptions::new()
                .source(&task.id)
                .note("executor: note task")
                .confidence(1.0);
            let identity = Identity::new("executor", &task.id);
            let created = actions::create(core::NOTE, &note, Some(identity), options)?;
            if !created.existed {
                actions::link(&created.record.id, &task.id, "derived-from")?;
            }
            Ok(Ok(serde_json::json!({ "note": created.record.id })))
        }
        Some("email") => {
            let Some((to, text)) = email_parts(&body.title) else {
                return Ok(Err(format!(
                    "`{}` does not start with an email address",
                    body.title
                )));
            };
            let message = serde_json::json!({
                "to": to,
                "subject": text,
                "text": format!("{text}\n"),
            });
            let options = WriteOptions::new()
                .key(format!("task-{}", task.id))
                .source(&task.id)
                .note("executor: email task")
                .confidence(0.5);
            let receipt = actions::send("email", &message, options)?;
            let state = match receipt.state {
                SendState::Queued => "queued",
                SendState::NeedsReview => "needs-review",
            };
            Ok(Ok(
                serde_json::json!({ "outbox": receipt.id, "state": state }),
            ))
        }
        _ => Ok(Err("no skill".into())),
    }
}

fn try_task(task: &Record) -> Result<Tried, Error> {
    let body: core::Task = task.body_as()?;
    let mine = body.skill.as_deref().is_some_and(|s| SKILLS.contains(&s));
    if task.kind != core::TASK || body.state != "open" || !mine {
        return Ok(Tried::NotMine);
    }
    let claimed = match actions::claim(&task.id, CLAIM) {
        Ok(record) => record,
        Err(Error::Conflict(_)) => return Ok(Tried::Taken),
        Err(e) => return Err(e),
    };
    match perform(&claimed, &body) {
        Ok(Ok(result)) => {
            actions::complete(
                &task.id,
                TaskEnd::Done,
                &result,
                WriteOptions::new().note("done by executor"),
            )?;
            Ok(Tried::Done)
        }
        Ok(Err(why)) => {
            let result = serde_json::json!({ "error": why });
            actions::complete(
                &task.id,
                TaskEnd::Failed,
                &result,
                WriteOptions::new().note(why),
            )?;
            Ok(Tried::Failed)
        }
        Err(e) => {
            // Give the task back so another attempt (or executor) can take it.
            let _ = actions::release(&task.id);
            Err(e)
        }
    }
}

impl Agent for Executor {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let tasks = match trigger.record {
            Some(record) => vec![record],
            None => records::query_all(core::TASK)?,
        };
        let (mut done, mut failed, mut taken) = (0, 0, 0);
        for task in &tasks {
            match try_task(task)? {
                Tried::Done => done += 1,
                Tried::Failed => failed += 1,
                Tried::Taken => taken += 1,
                Tried::NotMine => {}
            }
        }
        Ok(Outcome::new(format!(
            "{done} done, {failed} failed, {taken} held by others, of {} tasks",
            tasks.len()
        )))
    }
}

keel_agent::export_agent!(Executor);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_tasks_start_with_an_address() {
        assert_eq!(
            email_parts("ann@example.com: confirm the room"),
            Some(("ann@example.com", "confirm the room"))
        );
        assert_eq!(email_parts("confirm the room with ann"), None);
        assert_eq!(email_parts("ann@example.com"), None);
    }
}
