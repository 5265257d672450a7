//! Bounds on everything a guest controls. A guest's linear memory is capped,
//! so a value it passes can never exceed that cap; these bounds keep what the
//! host stores and processes per call far smaller.

use crate::error::CallError;

/// Largest record body, send message or job input (JSON text).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Largest id, kind, key, channel, identity part.
pub const MAX_NAME_BYTES: usize = 1024;
/// Largest provenance note.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Most source records one version may name.
pub const MAX_SOURCES: usize = 256;
/// Most records one query page returns.
pub const MAX_PAGE: u32 = 500;
/// Most bytes of bodies one `query` page or `history` answer carries (a
/// page is cut short and continues at its cursor).
pub const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// Most versions `history` returns: the newest ones.
pub const MAX_HISTORY: usize = 1000;
/// Most links `links` returns.
pub const MAX_LINKS: usize = 1000;
/// Largest log line kept (longer ones are cut).
pub const MAX_LOG_BYTES: usize = 16 * 1024;
/// Log lines kept per run (the rest are dropped, with one line saying so).
pub const MAX_LOG_LINES: u32 = 1000;
/// Largest connector cursor.
pub const MAX_CURSOR_BYTES: usize = 4 * 1024 * 1024;
/// Largest run input given on the command line.
pub const MAX_INPUT_BYTES: usize = MAX_BODY_BYTES;

/// `limit` error unless `value` fits in `max` bytes.
pub fn check_len(what: &str, value: &str, max: usize) -> Result<(), CallError> {
    if value.len() > max {
        Err(CallError::Limit(format!(
            "{what} is {} bytes; the limit is {max}",
            value.len()
        )))
    } else {
        Ok(())
    }
}

/// A record body: within the size limit and a JSON object.
pub fn check_body(body: &str) -> Result<(), CallError> {
    check_len("body", body, MAX_BODY_BYTES)?;
    // Validate without building a tree: bodies are stored as given.
    serde_json::from_str::<serde::de::IgnoredAny>(body)
        .map_err(|e| CallError::Invalid(format!("body is not valid JSON: {e}")))?;
    if body.trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(CallError::Invalid("body must be a JSON object".into()))
    }
}

/// Any JSON value within the size limit.
pub fn check_json(what: &str, text: &str) -> Result<(), CallError> {
    check_len(what, text, MAX_BODY_BYTES)?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| CallError::Invalid(format!("{what} is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_must_be_json_objects_within_the_limit() {
        assert!(check_body(r#" {"a": [1, 2]}"#).is_ok());
        for bad in ["[1]", "\"x\"", "{", "{} {}", "nul"] {
            assert!(
                matches!(check_body(bad), Err(CallError::Invalid(_))),
                "{bad}"
            );
        }
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(MAX_BODY_BYTES));
        assert!(matches!(check_body(&big), Err(CallError::Limit(_))));
    }
}
