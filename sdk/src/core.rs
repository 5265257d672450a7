//! Typed bodies of the core record kinds. Unknown fields are kept out of
//! the way (`serde(default)`), so older plugins read newer bodies.

use serde::{Deserialize, Serialize};

/// `core/document`: a note, a text file, a page.
pub const DOCUMENT: &str = "core/document";
/// `core/message`: an email or chat message.
pub const MESSAGE: &str = "core/message";
/// `core/task`: something to do.
pub const TASK: &str = "core/task";
/// `core/note`: a short note, goal or summary.
pub const NOTE: &str = "core/note";
/// `core/contact`: a person or organisation.
pub const CONTACT: &str = "core/contact";
/// `core/event`: a calendar event.
pub const EVENT: &str = "core/event";

/// The body of a `core/document`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Document {
    /// First heading, or the file name.
    pub title: String,
    /// Where it came from, relative to its source.
    pub path: String,
    /// The full text.
    pub text: String,
    /// `markdown` or `text`.
    pub format: String,
    /// sha256 of the source bytes, to tell whether it changed.
    pub sha256: String,
}

/// The body of a `core/message`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// The `Message-ID`, without angle brackets.
    pub message_id: String,
    /// The subject line.
    pub subject: String,
    /// The sender, as `Name <address>` or an address.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// RFC 3339 date, when the message had one.
    pub date: Option<String>,
    /// The plain-text body.
    pub text: String,
    /// Where it came from, relative to its source.
    pub path: String,
    /// sha256 of the source bytes.
    pub sha256: String,
}

/// The body of a `core/task`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Task {
    /// What to do.
    pub title: String,
    /// `open`, `claimed`, `done`, `failed` or `blocked`.
    pub state: String,
    /// The record it came from.
    pub source: Option<String>,
    /// The line of the source it came from.
    pub line: Option<u32>,
    /// The kind of work it is (`note`, `email`...), so an executor can
    /// tell which tasks it can do; none for work only a person can do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skill: Option<String>,
    /// Who holds it while `claimed` (kept by the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// How many times it was claimed (kept by the host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<u32>,
    /// What came of it, once ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

impl Task {
    /// An open task with a title.
    pub fn open(title: &str) -> Task {
        Task {
            title: title.to_string(),
            state: "open".to_string(),
            ..Task::default()
        }
    }
}

/// A claim on a task, as the host keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Claim {
    /// The plugin holding it.
    pub by: String,
    /// The run that claimed it.
    pub run: Option<String>,
    /// When it expires (RFC 3339).
    pub until: String,
}

/// The body of a `core/note`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Note {
    /// A short title.
    pub title: String,
    /// The text.
    pub text: String,
    /// What the note is: `goal` (for the planner), `summary`, `result`...;
    /// empty for a plain note.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub note_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_tolerate_missing_and_extra_fields() {
        let t: Task = serde_json::from_str(r#"{"title":"x","extra":1}"#).unwrap();
        assert_eq!(t.title, "x");
        assert_eq!(t.state, "");
        let json = serde_json::to_value(Task::open("call")).unwrap();
        assert_eq!(json["state"], "open");
    }
}
