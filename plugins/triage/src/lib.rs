//! The `triage` agent: sorts each new `core/message` into one of three
//! categories with the small model tier and structured output:
//!
//! - `reply-needed`: opens a `core/task` to reply (derived from the
//!   message), drafts the reply with the large tier and sends it on the
//!   `email` channel with the verdict's confidence, at most 0.8, so under
//!   the manifest's `review_below = 0.9` every draft waits in the review
//!   queue until the operator trusts the models more;
//! - `fyi`: nothing to do;
//! - `spam-like`: nothing to do, and said so.
//!
//! For every message it remembers a fact about the sender (who wrote, about
//! what, how it was sorted), learned from the message, and it first recalls
//! what it knows about that sender to help the model. A message is sorted
//! once: the plugin's working memory keeps the ones done.
//!
//! Woken by `record.created` of a `core/message`, or `--input {"message": ID}`.

use keel_agent::SendState;
use keel_agent::llm::{CompletionRequest, Message, Tier};
use keel_agent::memory::Scope;
use keel_agent::prelude::*;
use serde::Deserialize;

struct Triage;

/// The categories, as the schema names them.
const CATEGORIES: [&str; 3] = ["reply-needed", "fyi", "spam-like"];

/// What the small tier answers. Its schema lists the category first, so a
/// model steered by keel commits to it before explaining.
const VERDICT_SCHEMA: &str = r#"{"type":"object","properties":{
"category":{"enum":["reply-needed","fyi","spam-like"]},
"confidence":{"type":"number","minimum":0,"maximum":1},
"reason":{"type":"string","maxLength":160}},
"required":["category","confidence","reason"]}"#;

#[derive(Debug, Deserialize)]
struct Verdict {
    category: String,
    confidence: f32,
    reason: String,
}

/// The highest confidence a drafted reply is sent with: a model's draft
/// waits for the operator unless they set `review_below` under it.
const DRAFT_CEILING: f32 = 0.8;
/// Most characters of a message body shown to a model.
const MAX_BODY: usize = 2000;
/// Memories recalled about a sender.
const RECALL: u32 = 3;

fn clip(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(i, _)| &text[..i])
}

/// The sender's address: what is inside `<...>`, or the whole field.
fn address(from: &str) -> &str {
    match (from.find('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => from[a + 1..b].trim(),
        _ => from.trim(),
    }
}

fn shown(message: &core::Message) -> String {
    format!(
        "From: {}\nSubject: {}\n\n{}",
        message.from,
        message.subject,
        clip(&message.text, MAX_BODY)
    )
}

fn sort(message: &core::Message, known: &[String]) -> Result<(Verdict, String), Error> {
    let mut context = String::new();
    if !known.is_empty() {
        context.push_str("What you know about the sender:\n");
        for fact in known {
            context.push_str(&format!("- {fact}\n"));
        }
        context.push('\n');
    }
    let prompt = format!(
        "{context}Sort this email into one category:\n\
         reply-needed: a person asks something or waits for an answer from us.\n\
         fyi: news, receipts, notices, confirmations; nothing to answer.\n\
         spam-like: unsolicited offers, prizes, anything that looks like a scam.\n\
         Give your confidence from 0 to 1 and a short reason.\n\n{}",
        shown(message)
    );
    let request = CompletionRequest::new(
        Tier::Small,
        vec![
            Message::system("You sort a small business owner's email. Be brief and exact."),
            Message::user(prompt),
        ],
    )
    .max_tokens(96)
    .schema_text(VERDICT_SCHEMA);
    let answer = llm::complete(&request)?;
    let verdict: Verdict = serde_json::from_str(&answer.text).map_err(|e| {
        Error::Internal(format!(
            "the model's verdict is not the JSON asked for ({e})"
        ))
    })?;
    if !CATEGORIES.contains(&verdict.category.as_str()) {
        return Err(Error::Internal(format!(
            "the model answered the unknown category `{}`",
            verdict.category
        )));
    }
    Ok((verdict, answer.model))
}

fn draft(message: &core::Message) -> Result<(String, String), Error> {
    let request = CompletionRequest::new(
        Tier::Large,
        vec![
            Message::system(
                "You write short, polite email replies for a small business owner. \
                 Write only the reply's text, without a subject line.",
            ),
            Message::user(format!(
                "Write a reply to this email.\n\n{}",
                shown(message)
            )),
        ],
    )
    .max_tokens(160);
    let answer = llm::complete(&request)?;
    Ok((answer.text.trim().to_string(), answer.model))
}

fn reply_subject(subject: &str) -> String {
    if subject.to_ascii_lowercase().starts_with("re:") {
        subject.to_string()
    } else {
        format!("Re: {subject}")
    }
}

fn triage(record: &Record) -> Result<Outcome, Error> {
    if record.kind != core::MESSAGE {
        return Ok(Outcome::new(format!(
            "{} is a {}, not a message",
            record.id, record.kind
        )));
    }
    let done_key = format!("sorted:{}", record.id);
    if let Some(category) = memory::get::<String>(Scope::Plugin, &done_key)? {
        return Ok(Outcome::new(format!(
            "message {} was already sorted: {category}",
            record.id
        )));
    }
    let message: core::Message = record.body_as()?;
    let sender = address(&message.from).to_string();
    let known: Vec<String> = if sender.is_empty() {
        Vec::new()
    } else {
        let mine = memory::Filter::new().metadata(serde_json::json!({ "sender": sender }));
        memory::recall_where(&format!("sender {sender}"), RECALL, &mine)?
            .into_iter()
            .map(|r| r.memory.text)
            .collect()
    };
    let (verdict, judge) = sort(&message, &known)?;
    let confidence = verdict.confidence.clamp(0.0, 1.0);
    let mut said = format!(
        "message {} ({}): {} at {confidence:.2} by {judge}",
        record.id, message.subject, verdict.category
    );
    if verdict.category == "reply-needed" {
        let title = format!("Reply to {}: {}", message.from, message.subject);
        let task = core::Task {
            source: Some(record.id.clone()),
            ..core::Task::open(clip(&title, 300))
        };
        let options = WriteOptions::new()
            .source(&record.id)
            .confidence(confidence)
            .note(format!(
                "triage: {} by {judge} ({})",
                verdict.category,
                clip(&verdict.reason, 160)
            ));
        let created = actions::create(
            core::TASK,
            &task,
            Some(Identity::new("triage", &record.id)),
            options,
        )?;
        if !created.existed {
            actions::link(&created.record.id, &record.id, "derived-from")?;
        }
        let (reply, writer) = draft(&message)?;
        if !sender.is_empty() && !reply.is_empty() {
            let email = serde_json::json!({
                "to": sender,
                "subject": reply_subject(&message.subject),
                "text": format!("{reply}\n"),
                "in_reply_to": message.message_id,
            });
            let options = WriteOptions::new()
                .key(format!("triage-reply-{}", record.id))
                .source(&record.id)
                .source(&created.record.id)
                .confidence(confidence.min(DRAFT_CEILING))
                .note(format!("triage: reply drafted by {writer}"));
            let receipt = actions::send("email", &email, options)?;
            let state = match receipt.state {
                SendState::Queued => "queued",
                SendState::NeedsReview => "waits for review",
            };
            said.push_str(&format!(
                "; task {}, reply {} {state}",
                created.record.id, receipt.id
            ));
        }
    }
    if !sender.is_empty() {
        let fact = format!(
            "{} ({sender}) wrote \"{}\"{}; sorted {}",
            message.from,
            clip(&message.subject, 120),
            message
                .date
                .as_deref()
                .map(|d| format!(" on {}", clip(d, 10)))
                .unwrap_or_default(),
            verdict.category
        );
        memory::remember(
            &fact,
            &serde_json::json!({ "sender": sender, "category": verdict.category }),
            std::slice::from_ref(&record.id),
            None,
        )?;
    }
    memory::set(Scope::Plugin, &done_key, &verdict.category, None)?;
    Ok(Outcome::new(said))
}

impl Agent for Triage {
    fn handle(trigger: Trigger) -> Result<Outcome, Error> {
        let record = match trigger.record {
            Some(record) => record,
            None => {
                let input: serde_json::Value =
                    serde_json::from_str(trigger.input.as_deref().unwrap_or("{}"))
                        .map_err(|e| Error::Invalid(format!("input is not JSON: {e}")))?;
                let Some(id) = input["message"].as_str() else {
                    return Err(Error::Invalid(r#"give {"message": MESSAGE-ID}"#.into()));
                };
                records::get(id)?
            }
        };
        triage(&record)
    }
}

keel_agent::export_agent!(Triage);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_address_is_inside_the_angle_brackets() {
        assert_eq!(
            address("Marta <marta@linen.example>"),
            "marta@linen.example"
        );
        assert_eq!(address(" bob@acme.example "), "bob@acme.example");
        assert_eq!(address("Odd <>"), "");
    }

    #[test]
    fn the_verdict_schema_is_json_listing_the_categories() {
        let schema: serde_json::Value = serde_json::from_str(VERDICT_SCHEMA).unwrap();
        let listed: Vec<&str> = schema["properties"]["category"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(listed, CATEGORIES);
    }

    #[test]
    fn replies_keep_one_re_prefix_and_bodies_are_clipped_on_characters() {
        assert_eq!(reply_subject("Invoice"), "Re: Invoice");
        assert_eq!(reply_subject("RE: Invoice"), "RE: Invoice");
        assert_eq!(clip("ééé", 2), "éé");
    }
}
