//! The `planner` agent: a goal becomes open `core/task`s, one per step, for
//! executors to claim. A goal is a `core/note` of type `goal` (woken by its
//! creation, or `--input {"note": ID}`) or text (`--input {"goal": TEXT}`).
//!
//! Steps are the goal's list items (`- `, `* `, `1. `), or its lines when it
//! has no list. A step written `skill: what to do` (`note: collect the
//! agenda`, `email: ann@example.com confirm the room`) names the kind of
//! work, so an executor with that skill can take it; other steps are for a
//! person. Planning the same goal again creates nothing new.
//!
//! A goal of one line of prose ("prepare the spring catalogue launch") has
//! no steps written out: the planner recalls related memories and asks the
//! large model tier to break it into 2 to 6 steps. Each task's provenance
//! (its version's note) names the model that planned it and the memories it
//! recalled. When no model can answer, the line itself becomes the one task,
//! and the note says why.

use keel_agent::llm::{CompletionRequest, Message, Tier};
use keel_agent::prelude::*;
use sha2::{Digest, Sha256};

struct Planner;

/// Longest step kept as a task title.
const MAX_TITLE: usize = 500;
/// Most steps one goal becomes.
const MAX_STEPS: usize = 100;

/// One step of a goal.
#[derive(Debug, PartialEq)]
struct Step<'a> {
    line: u32,
    skill: Option<&'a str>,
    title: &'a str,
}

fn list_item(line: &str) -> Option<&str> {
    let t = line.trim();
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(bullet) {
            return Some(rest.trim());
        }
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    t[digits..].strip_prefix(". ").map(str::trim)
}

/// `skill: rest` when the step starts with one lowercase word and a colon.
fn split_skill(step: &str) -> (Option<&str>, &str) {
    if let Some((word, rest)) = step.split_once(':') {
        let is_skill = !word.is_empty()
            && word.len() <= 32
            && word.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        if is_skill && !rest.trim().is_empty() {
            return (Some(word), rest.trim());
        }
    }
    (None, step)
}

fn steps(goal: &str) -> Vec<Step<'_>> {
    let numbered = || {
        goal.lines()
            .enumerate()
            .map(|(n, l)| (u32::try_from(n + 1).unwrap_or(u32::MAX), l))
    };
    let items: Vec<(u32, &str)> = numbered()
        .filter_map(|(n, l)| list_item(l).map(|i| (n, i)))
        .collect();
    let items = if items.is_empty() {
        numbered()
            .map(|(n, l)| (n, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
            .collect()
    } else {
        items
    };
    items
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .take(MAX_STEPS)
        .map(|(line, text)| {
            let (skill, title) = split_skill(text);
            let end = title
                .char_indices()
                .nth(MAX_TITLE)
                .map_or(title.len(), |(i, _)| i);
            Step {
                line,
                skill,
                title: &title[..end],
            }
        })
        .collect()
}

/// Memories recalled to plan a goal.
const RECALL: u32 = 3;

/// What the large tier answers for a goal of one line.
const STEPS_SCHEMA: &str = r#"{"type":"object","properties":{
"steps":{"type":"array","items":{"type":"string","maxLength":160},"minItems":2,"maxItems":6}},
"required":["steps"]}"#;

/// Steps a model wrote for a goal.
struct Planned {
    steps: Vec<String>,
    /// `provider/model` that wrote them.
    model: String,
    /// The memories recalled for it.
    memories: Vec<String>,
}

/// The steps a model wrote for `goal`; `Err(why)` when no model could
/// answer.
fn decompose(goal: &str) -> Result<Result<Planned, String>, Error> {
    let recalled = match memory::recall(goal, RECALL) {
        Ok(r) => r,
        Err(Error::Unavailable(why)) => return Ok(Err(why)),
        Err(e) => return Err(e),
    };
    let mut known = String::new();
    for r in &recalled {
        known.push_str(&format!("- {}\n", r.memory.text));
    }
    let context = if known.is_empty() {
        String::new()
    } else {
        format!("Things you know that may matter:\n{known}\n")
    };
    let request = CompletionRequest::new(
        Tier::Large,
        vec![
            Message::system("You plan work for a small business owner as short, concrete steps."),
            Message::user(format!(
                "{context}Break this goal into 2 to 6 short steps, each one action.\n\nGoal: {goal}"
            )),
        ],
    )
    .max_tokens(256)
    .schema_text(STEPS_SCHEMA);
    let answer = match llm::complete(&request) {
        Ok(a) => a,
        Err(Error::Unavailable(why)) => return Ok(Err(why)),
        Err(e) => return Err(e),
    };
    let v: serde_json::Value = serde_json::from_str(&answer.text)
        .map_err(|e| Error::Internal(format!("the model's steps are not JSON ({e})")))?;
    let steps: Vec<String> = v["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if steps.is_empty() {
        return Ok(Err(format!("{} wrote no steps", answer.model)));
    }
    let ids = recalled.into_iter().map(|r| r.memory.id).collect();
    Ok(Ok(Planned {
        steps,
        model: answer.model,
        memories: ids,
    }))
}

/// A goal of one line of prose, which the model breaks into steps.
fn one_line(goal: &str) -> Option<&str> {
    let lines: Vec<&str> = goal
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match lines[..] {
        [line] if list_item(line).is_none() && split_skill(line).0.is_none() => Some(line),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the tasks of `goal`; `source` is the goal note, if there is one.
fn plan(goal: &str, source: Option<&str>) -> Result<Outcome, Error> {
    let key = match source {
        Some(id) => id.to_string(),
        None => hex(&Sha256::digest(goal.as_bytes())[..12]),
    };
    let mut provenance: Option<String> = None;
    let mut planned: Vec<String> = Vec::new();
    if let Some(line) = one_line(goal) {
        match decompose(line)? {
            Ok(Planned {
                steps: written,
                model,
                memories,
            }) => {
                provenance = Some(if memories.is_empty() {
                    format!("planned by {model}, no memories recalled")
                } else {
                    format!(
                        "planned by {model}, recalling memories {}",
                        memories.join(", ")
                    )
                });
                planned = written;
            }
            Err(why) => {
                provenance = Some(format!("kept as one step: no model planned it ({why})"));
            }
        }
    }
    let planned_text = planned
        .iter()
        .map(|s| format!("- {s}"))
        .collect::<Vec<_>>()
        .join("\n");
    let steps = if planned.is_empty() {
        steps(goal)
    } else {
        steps(&planned_text)
    };
    if steps.is_empty() {
        return Err(Error::Invalid(
            "the goal has no steps; write one step per line or list item".into(),
        ));
    }
    let (mut made, mut known) = (0, 0);
    for step in &steps {
        let task = core::Task {
            source: source.map(str::to_string),
            line: Some(step.line),
            skill: step.skill.map(str::to_string),
            ..core::Task::open(step.title)
        };
        let note = match &provenance {
            Some(p) => format!("step {} of the goal, {p}", step.line),
            None => format!("step {} of the goal", step.line),
        };
        let mut options = WriteOptions::new().note(note).confidence(1.0);
        if let Some(id) = source {
            options = options.source(id);
        }
        let place = if planned.is_empty() {
            step.line.to_string()
        } else {
            format!("m{}", step.line)
        };
        let identity = Identity::new("planner", &format!("{key}#{place}"));
        let created = actions::create(core::TASK, &task, Some(identity), options)?;
        if created.existed {
            known += 1;
            continue;
        }
        if let Some(id) = source {
            actions::link(&created.record.id, id, "derived-from")?;
        }
        made += 1;
    }
    let skilled = steps.iter().filter(|s| s.skill.is_some()).count();
    Ok(Outcome::new(format!(
        "{made} tasks planned ({skilled} for executors), {known} already planned"
    )))
}

impl Agent for Planner {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let note = match (trigger.record, trigger.input.as_deref()) {
            (Some(record), _) => record,
            (None, Some(input)) => {
                let input: serde_json::Value = serde_json::from_str(input)
                    .map_err(|e| Error::Invalid(format!("input is not JSON: {e}")))?;
                if let Some(goal) = input["goal"].as_str() {
                    return plan(goal, None);
                }
                let Some(id) = input["note"].as_str() else {
                    return Err(Error::Invalid(
                        r#"give {"goal": TEXT} or {"note": GOAL-NOTE-ID}"#.into(),
                    ));
                };
                records::get(id)?
            }
            (None, None) => {
                return Err(Error::Invalid(
                    r#"give {"goal": TEXT} or {"note": GOAL-NOTE-ID}"#.into(),
                ));
            }
        };
        if note.kind != core::NOTE {
            return Ok(Outcome::new(format!(
                "{} is a {}, not a goal",
                note.id, note.kind
            )));
        }
        let body: core::Note = note.body_as()?;
        if body.note_type != "goal" {
            return Ok(Outcome::new(format!("note {} is not a goal", note.id)));
        }
        plan(&body.text, Some(&note.id))
    }
}

keel_agent::export_agent!(Planner);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_items_are_steps_with_optional_skills() {
        let goal = "# Monday meeting\nSome context.\n- note: collect the agenda\n- book a room\n2. email: ann@example.com confirm the room\n";
        assert_eq!(
            steps(goal),
            [
                Step {
                    line: 3,
                    skill: Some("note"),
                    title: "collect the agenda"
                },
                Step {
                    line: 4,
                    skill: None,
                    title: "book a room"
                },
                Step {
                    line: 5,
                    skill: Some("email"),
                    title: "ann@example.com confirm the room"
                },
            ]
        );
    }

    #[test]
    fn only_a_single_line_of_prose_goes_to_the_model() {
        assert_eq!(
            one_line("# Launch\n\nprepare the spring launch\n"),
            Some("prepare the spring launch")
        );
        assert_eq!(one_line("- one step"), None);
        assert_eq!(one_line("email: ann@example.com hello"), None);
        assert_eq!(one_line("first\nsecond"), None);
    }

    #[test]
    fn without_a_list_every_line_is_a_step() {
        let goal = "# Title\n\nCall the bank\nNote: this is Not a skill\n";
        assert_eq!(
            steps(goal),
            [
                Step {
                    line: 3,
                    skill: None,
                    title: "Call the bank"
                },
                Step {
                    line: 4,
                    skill: None,
                    title: "Note: this is Not a skill"
                },
            ]
        );
    }
}
