//! Plugins written in other languages run with the same grants, limits and
//! audit as Rust ones.

use serde_json::Value;

use crate::harness::Keel;

#[test]
fn a_python_agent_writes_what_it_is_granted_and_is_denied_the_rest() {
    let keel = Keel::new();
    keel.install_test_plugin(crate::harness::artifacts::PY_WRITER_DIR, &[]);
    let ran = keel.run_json("test-py-writer", Some(r#"{"text":"from python"}"#));
    assert_eq!(ran["outcome"], "ok", "{ran}");
    let said: Value = serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap();
    assert_eq!(said["existed"], false, "{said}");
    assert_eq!(said["undeclared"], "denied", "{said}");
    let items = keel.records("test/item");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], said["created"]);
    assert_eq!(items[0]["body"]["text"], "from python");
    assert_eq!(items[0]["created_by"], "test-py-writer@0.1.0");
    assert!(keel.records("test/secret").is_empty());
    let audit = keel.audit(&["--plugin", "test-py-writer"]);
    let outcomes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e["action"] == "create")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 2, "{audit:?}");
    assert_eq!(outcomes[0].0, "allowed");
    assert_eq!(outcomes[1].0, "denied");
    assert!(
        outcomes[1].1.contains("`test/secret` is not granted"),
        "{audit:?}"
    );
    // The same identity again: the existing record, nothing new.
    let again = keel.run_json("test-py-writer", Some(r#"{"text":"from python"}"#));
    let said: Value = serde_json::from_str(again["summary"].as_str().unwrap()).unwrap();
    assert_eq!(said["existed"], true, "{said}");
    // A Python exception the plugin raises as a WIT error is that error.
    let bad = keel.run_json("test-py-writer", Some(r#"{"text": 5}"#));
    assert_eq!(bad["outcome"], "error", "{bad}");
    assert_eq!(bad["error"], "invalid", "{bad}");
    keel.ok(&["audit", "verify"]);
}
