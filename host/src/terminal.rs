//! Text from outside (mail subjects, record titles, identities, notes,
//! error details) made safe to print on the operator's terminal. A control
//! character could clear a line, move the cursor, recolour what follows or
//! (OSC 52) write to the clipboard; a bidirectional override could reorder
//! what the operator reads. Each is shown as a visible escape instead.
//! `--json` output is not passed through here: it stays exact.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls,
/// DEL, and the bidirectional embedding, override and isolate controls.
fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| unsafe_char(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) && !keep(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One field on one line: every control character escaped, newlines and
/// tabs included, so a field cannot fake a line of its own.
pub fn field(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// Whole lines keel composed: newlines and tabs kept, every other control
/// character escaped.
pub fn lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// A record's short title for listings, from its JSON body's `title`,
/// `subject`, `name` or `path` (at most 60 characters), made safe to print.
pub fn title(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let t = ["title", "subject", "name", "path"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
        .unwrap_or("");
    let mut t: String = t.chars().take(60).collect();
    if t.is_empty() {
        t = "-".into();
    }
    field(&t).into_owned()
}

/// `println!` for the operator's terminal: every control character but
/// newlines and tabs is shown escaped. JSON goes out with `println!` as it
/// is.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::terminal::lines(&format!($($arg)*)))
    };
}

/// [`say!`] for stderr.
macro_rules! esay {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::terminal::lines(&format!($($arg)*)))
    };
}

pub(crate) use {esay, say};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m9_escapes_and_clipboard_writes_from_mail_are_shown_not_obeyed() {
        let subject = "Invoice\u{1b}[2K\rPAID\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[31m\u{202e}txt.exe";
        let shown = field(subject);
        assert!(!shown.chars().any(unsafe_char), "{shown:?}");
        assert_eq!(
            shown,
            "Invoice\\u{1b}[2K\\u{d}PAID\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{1b}[31m\\u{202e}txt.exe"
        );
        assert_eq!(field("two\nlines"), "two\\u{a}lines");
        assert_eq!(lines("two\nlines\u{9b}"), "two\nlines\\u{9b}");
        // Plain text, accents and emoji pass unchanged and unallocated.
        assert!(matches!(field("Café ☕ ok"), Cow::Borrowed("Café ☕ ok")));
    }
}
