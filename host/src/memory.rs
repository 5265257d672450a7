//! Layered memory in the store: working memory (per plugin, with expiry)
//! and long-term memories with hybrid recall — full-text (FTS5, BM25) and
//! vector similarity (a scan of the current memories' embeddings), fused by
//! reciprocal rank, shown only when the caller may read every source.

mod host;
mod recall;
mod remember;
mod vectors;
mod working;

pub use host::{MemoryView, add_to_linker};
pub use recall::{Filter, MAX_FILTER_KEYS, recall};
pub use remember::insert;
pub use vectors::{VectorCache, Viewer};
pub use working::{RunMemory, check_working, working_get, working_set};

use serde::{Deserialize, Serialize};

use crate::error::CallError;

/// Longest memory text, working-memory value and key.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KEY_BYTES: usize = 256;
/// Most memories one recall returns.
pub const MAX_K: u32 = 50;
/// Most keys and bytes (keys plus values) of one run's working memory,
/// which the host holds for the run.
pub const MAX_RUN_KEYS: usize = 1024;
pub const MAX_RUN_BYTES: usize = 8 * 1024 * 1024;
/// Most keys and bytes of one plugin's working memory in the store.
pub const MAX_PLUGIN_KEYS: i64 = 10_000;
pub const MAX_PLUGIN_BYTES: i64 = 64 * 1024 * 1024;

/// A long-term memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    pub id: String,
    pub text: String,
    pub metadata: String,
    pub sources: Vec<String>,
    pub by: String,
    pub at: String,
    pub supersedes: Option<String>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `limit` when a memory names more sources than are kept.
pub fn check_sources(sources: &[String]) -> Result<(), CallError> {
    if sources.len() > crate::limits::MAX_SOURCES {
        return Err(CallError::Limit(format!(
            "{} sources given; a memory names at most {}",
            sources.len(),
            crate::limits::MAX_SOURCES
        )));
    }
    Ok(())
}

/// Checks what `remember` was given, before anything is embedded.
pub fn check_memory(text: &str, metadata: &str) -> Result<(), CallError> {
    if text.trim().is_empty() {
        return Err(CallError::Invalid("a memory needs some text".into()));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(CallError::Limit(format!(
            "the memory is {} bytes, over the {MAX_TEXT_BYTES}-byte limit",
            text.len()
        )));
    }
    let meta: serde_json::Value = serde_json::from_str(metadata)
        .map_err(|e| CallError::Invalid(format!("the metadata is not JSON: {e}")))?;
    if !meta.is_object() {
        return Err(CallError::Invalid(
            "the metadata must be a JSON object".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::vectors::dot;
    use super::{Filter, VectorCache, insert, recall};
    use crate::error::CallError;
    use crate::grant::Grant;
    use crate::store::{Actor, Store};

    fn open_grant() -> Grant {
        Grant {
            capabilities: crate::manifest::Capabilities {
                read: vec!["core/*".into()],
                ..Default::default()
            },
            ..Grant::default()
        }
    }

    fn by(plugin: &str) -> Actor {
        Actor {
            plugin: plugin.into(),
            ..Actor::operator()
        }
    }

    /// A unit vector along axis `i` of 4.
    fn axis(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 4];
        v[i] = 1.0;
        v
    }

    fn texts(found: &[(super::Memory, f32)]) -> Vec<&str> {
        found.iter().map(|(m, _)| m.text.as_str()).collect()
    }

    #[test]
    fn a_filter_narrows_recall_before_ranking() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("keel.db")).unwrap();
        // Shared: the test recalls the planner's memories as triage.
        let mut grant = open_grant();
        grant.capabilities.shared_memory = true;
        let tx = store.conn_mut().transaction().unwrap();
        tx.execute(
            "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
             VALUES ('r1', 'core/message', '{}', 1, 'now', 'now', 'operator', 'operator')",
            [],
        )
        .unwrap();
        let remember = |actor: &Actor, text: &str, metadata: &str, sources: &[String], v| {
            insert(&tx, actor, &grant, text, metadata, sources, None, "m", v).unwrap()
        };
        remember(
            &by("triage"),
            "ann asked about the invoice",
            r#"{"sender":"ann@example.com","n":1}"#,
            &["r1".into()],
            axis(0),
        );
        remember(
            &by("triage"),
            "bob asked about the invoice",
            r#"{"sender":"bob@example.com","n":2}"#,
            &[],
            axis(0),
        );
        remember(
            &by("planner"),
            "invoice goals for the quarter",
            r#"{"sender":"ann@example.com"}"#,
            &[],
            axis(1),
        );
        tx.commit().unwrap();
        let conn = store.conn();
        let viewer = super::Viewer {
            grant: &grant,
            plugin: "triage",
        };
        let found = |filter: &Filter, k| {
            recall(
                conn,
                &VectorCache::default(),
                viewer,
                "invoice",
                axis(0),
                "m",
                k,
                filter,
            )
            .unwrap()
        };
        assert_eq!(found(&Filter::default(), 10).len(), 3);
        let ann = Filter::new(None, None, Some(r#"{"sender":"ann@example.com"}"#), None).unwrap();
        let mut t = texts(&found(&ann, 10))
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        t.sort();
        assert_eq!(
            t,
            [
                "ann asked about the invoice",
                "invoice goals for the quarter"
            ]
        );
        // Two keys must both match, numbers compared as numbers.
        let both = Filter::new(
            None,
            None,
            Some(r#"{"sender":"ann@example.com","n":1.0}"#),
            None,
        )
        .unwrap();
        assert_eq!(texts(&found(&both, 10)), ["ann asked about the invoice"]);
        // Narrowed before ranking: k = 1 among the planner's gives the
        // planner's even though the triage ones rank higher overall.
        let planner = Filter::new(Some("planner".into()), None, None, None).unwrap();
        assert_eq!(
            texts(&found(&planner, 1)),
            ["invoice goals for the quarter"]
        );
        let from_r1 = Filter::new(None, Some("r1".into()), None, None).unwrap();
        assert_eq!(texts(&found(&from_r1, 10)), ["ann asked about the invoice"]);
        let future = Filter::new(None, None, None, Some("2999-01-01T00:00:00+02:00")).unwrap();
        assert!(found(&future, 10).is_empty());
        let past = Filter::new(None, None, None, Some("2000-01-01T00:00:00Z")).unwrap();
        assert_eq!(found(&past, 10).len(), 3);
        let nobody = Filter::new(Some("nobody".into()), None, None, None).unwrap();
        assert!(found(&nobody, 10).is_empty());
    }

    /// `plugin` remembers `text` along axis 0, from `sources`, maybe
    /// superseding another memory.
    fn remember_as(
        tx: &rusqlite::Connection,
        plugin: &str,
        text: &str,
        sources: &[String],
        supersedes: Option<&str>,
    ) -> Result<super::Memory, CallError> {
        let grant = open_grant();
        insert(
            tx,
            &by(plugin),
            &grant,
            text,
            "{}",
            sources,
            supersedes,
            "m",
            axis(0),
        )
    }

    #[test]
    fn m5_an_unsourced_memory_is_its_authors_unless_shared_is_granted() {
        let mut store = Store::open_in_memory().unwrap();
        let grant = open_grant();
        let tx = store.conn_mut().transaction().unwrap();
        remember_as(&tx, "triage", "ann is a vip", &[], None).unwrap();
        tx.commit().unwrap();
        let conn = store.conn();
        let recall_as = |plugin: &str, grant: &Grant| {
            let viewer = super::Viewer { grant, plugin };
            texts(
                &recall(
                    conn,
                    &VectorCache::default(),
                    viewer,
                    "vip",
                    axis(0),
                    "m",
                    10,
                    &Filter::default(),
                )
                .unwrap(),
            )
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
        };
        assert_eq!(recall_as("triage", &grant), ["ann is a vip"]);
        assert!(recall_as("planner", &grant).is_empty());
        let mut shared = open_grant();
        shared.capabilities.shared_memory = true;
        assert_eq!(recall_as("planner", &shared), ["ann is a vip"]);
    }

    #[test]
    fn m5_a_plugin_supersedes_only_its_own_memories() {
        let mut store = Store::open_in_memory().unwrap();
        let tx = store.conn_mut().transaction().unwrap();
        let m = remember_as(&tx, "triage", "ann is a vip", &[], None).unwrap();
        let hijack = remember_as(&tx, "mallory", "ann is a spammer", &[], Some(&m.id));
        assert_eq!(
            hijack.unwrap_err(),
            CallError::Denied(format!(
                "memory {} was remembered by another plugin; mallory may supersede only its own memories",
                m.id
            ))
        );
        // Its own, it may.
        remember_as(&tx, "triage", "ann is a vip again", &[], Some(&m.id)).unwrap();
    }

    #[test]
    fn m5_remember_bounds_and_hides_its_sources() {
        let mut store = Store::open_in_memory().unwrap();
        let tx = store.conn_mut().transaction().unwrap();
        tx.execute(
            "INSERT INTO records (id, kind, body, version, created_at, updated_at, created_by, updated_by)
             VALUES ('secret', 'mail/message', '{}', 1, 'now', 'now', 'operator', 'operator')",
            [],
        )
        .unwrap();
        let many: Vec<String> = (0..257).map(|i| format!("r{i}")).collect();
        let r = remember_as(&tx, "p", "t", &many, None);
        assert!(matches!(r, Err(CallError::Limit(_))), "{r:?}");
        let unreadable = remember_as(&tx, "p", "t", &["secret".into()], None).unwrap_err();
        let missing = remember_as(&tx, "p", "t", &["nothing".into()], None).unwrap_err();
        assert_eq!(
            unreadable.message().replace("secret", "X"),
            missing.message().replace("nothing", "X")
        );
    }

    #[test]
    fn h1_plugin_working_memory_is_bounded_in_keys_and_bytes() {
        let store = Store::open_in_memory().unwrap();
        let conn = store.conn();
        let big = format!("\"{}\"", "x".repeat(super::MAX_VALUE_BYTES - 2));
        let fit = super::MAX_PLUGIN_BYTES as usize / (big.len() + 4);
        for i in 0..fit {
            super::working_set(conn, "p", &format!("k{i:03}"), &big, None).unwrap();
        }
        let over = super::working_set(conn, "p", "one-more", &big, None).unwrap_err();
        assert!(matches!(over, CallError::Limit(_)), "{over:?}");
        // Replacing a key is not growing; another plugin has its own room.
        super::working_set(conn, "p", "k000", &big, None).unwrap();
        super::working_set(conn, "q", "k", &big, None).unwrap();
        // Expired keys stop counting.
        conn.execute(
            "UPDATE working_memory SET expires_at = 1 WHERE plugin = 'p'",
            [],
        )
        .unwrap();
        super::working_set(conn, "p", "fresh", &big, None).unwrap();
    }

    #[test]
    fn h1_run_working_memory_is_bounded_in_keys_and_bytes() {
        let mut run = super::RunMemory::default();
        for i in 0..super::MAX_RUN_KEYS {
            run.set(format!("k{i}"), "1".into()).unwrap();
        }
        assert!(matches!(
            run.set("more".into(), "1".into()),
            Err(CallError::Limit(_))
        ));
        run.set("k0".into(), "2".into()).unwrap();
        let mut run = super::RunMemory::default();
        let big = format!("\"{}\"", "x".repeat(60_000));
        let mut n = 0;
        while run.set(format!("k{n}"), big.clone()).is_ok() {
            n += 1;
        }
        assert!(run.peak() <= super::MAX_RUN_BYTES && run.peak() > super::MAX_RUN_BYTES - 70_000);
    }

    #[test]
    fn a_bad_filter_is_refused_with_what_to_write() {
        let invalid = |r: Result<Filter, CallError>| match r {
            Err(CallError::Invalid(m)) => m,
            other => panic!("expected invalid, got {other:?}"),
        };
        assert!(invalid(Filter::new(None, None, Some("[1]"), None)).contains("JSON object"));
        let nine: serde_json::Map<String, serde_json::Value> =
            (0..9).map(|i| (format!("k{i}"), i.into())).collect();
        let nine = serde_json::Value::Object(nine).to_string();
        assert!(invalid(Filter::new(None, None, Some(&nine), None)).contains("at most 8"));
        assert!(
            invalid(Filter::new(None, None, Some(r#"{"a\"b":1}"#), None))
                .contains("cannot be filtered")
        );
        assert!(invalid(Filter::new(None, None, None, Some("yesterday"))).contains("RFC 3339"));
    }

    #[test]
    fn the_lane_dot_product_equals_the_plain_one_at_every_length() {
        for len in [0, 1, 15, 16, 17, 33, 384] {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "length {len}");
        }
    }
}
