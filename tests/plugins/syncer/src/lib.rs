//! A connector for the sync-state and checkpoint tests, told what to do by
//! its config key `op`:
//! - `limits`: calls sync state and `checkpoint` once past each bound and
//!   once within it, and records each answer as a `test/item` whose body
//!   is `{"try": NAME, "answer": "ok" | "<Error debug>"}`;
//! - `more`: counts its syncs in the cursor and says it has more to do
//!   until the third, writing one `test/item` per sync.

use keel_connector::prelude::*;

struct Syncer;

fn record(name: &str, answer: Result<(), Error>) -> Result<(), Error> {
    let answer = match answer {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{e:?}"),
    };
    let body = serde_json::json!({"try": name, "answer": answer});
    let id = Identity::new("test-syncer", name);
    actions::create("test/item", &body, Some(id), WriteOptions::new())?;
    Ok(())
}

fn entry(key: String, value: Option<String>) -> Vec<(String, Option<String>)> {
    vec![(key, value)]
}

/// Each bound, once past it and once within it.
fn limits() -> Result<(), Error> {
    use keel_connector::__bindings::keel::host::sync_state as raw;
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let tries: Vec<(&str, Result<(), Error>)> = vec![
        (
            "empty-key",
            raw::set(&entry(String::new(), Some("v".into()))),
        ),
        (
            "long-key",
            raw::set(&entry("k".repeat(4097), Some("v".into()))),
        ),
        (
            "big-value",
            raw::set(&entry("k".into(), Some("v".repeat(65537)))),
        ),
        ("many-keys", raw::get(&many).map(|_| ())),
        ("zero-page", raw::scan("", None, 0).map(|_| ())),
        (
            "big-cursor",
            actions::checkpoint(&"c".repeat(4 * 1024 * 1024 + 1)),
        ),
        (
            "within",
            sync_state::set(&entry("k".repeat(4096), Some("v".repeat(65536)))),
        ),
        ("checkpoint", actions::checkpoint("{\"within\":true}")),
    ];
    for (name, answer) in tries {
        record(name, answer)?;
    }
    Ok(())
}

impl Connector for Syncer {
    fn sync(cursor: Option<String>) -> Result<SyncResult, Error> {
        match config::get("op")?.as_deref() {
            Some("limits") => {
                limits()?;
                Ok(SyncResult {
                    cursor,
                    created: 8,
                    updated: 0,
                    unchanged: 0,
                })
            }
            Some("more") => {
                let n: u32 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0) + 1;
                record(&format!("sync-{n}"), Ok(()))?;
                if n < 3 {
                    actions::more_to_do()?;
                }
                Ok(SyncResult {
                    cursor: Some(n.to_string()),
                    created: 1,
                    updated: 0,
                    unchanged: 0,
                })
            }
            _ => Err(Error::Invalid("set config op to limits or more".into())),
        }
    }
}

keel_connector::export_connector!(Syncer);
