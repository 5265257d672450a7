//! Plugin-registered actions: a provider's actions are listed beside the
//! core ones; an agent granted one calls it with `invoke`, the input is
//! checked against the schema first, the provider runs under its own grant
//! as a run linked to the caller's, and both are audited.

use serde_json::{Value, json};

use crate::harness::{Keel, artifacts};

fn invoke(keel: &Keel, action: &str, input: Value, key: Option<&str>) -> Value {
    let mut op = json!({"op": "invoke", "action": action, "input": input});
    if let Some(key) = key {
        op["key"] = json!(key);
    }
    keel.run_json("test-writer", Some(&op.to_string()))
}

fn provider_runs(keel: &Keel) -> i64 {
    keel.db()
        .query_row(
            "SELECT count(*) FROM runs WHERE plugin = 'test-provider'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn an_agent_invokes_a_providers_action_under_the_providers_grant() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::PROVIDER_DIR, &[]);
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);

    let listed = keel.json(&["actions", "list"]);
    let make = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "test-provider/make")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(make["provider"], "test-provider@0.1.0");
    assert_eq!(make["needs"], "invoke: test-provider/make");
    assert_eq!(make["uses"], json!(["create", "test/made"]));
    assert_eq!(make["input"]["required"], json!(["text"]));

    let ran = invoke(&keel, "test-provider/make", json!({"text": "hello"}), None);
    assert_eq!(ran["outcome"], "ok", "{ran}");
    let output: Value = serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap();
    let made = keel.json(&[
        "records",
        "show",
        output["id"].as_str().unwrap(),
        "--history",
    ]);
    // Written by the provider, under its grant, in a run the caller's started.
    assert_eq!(made["kind"], "test/made");
    assert_eq!(made["created_by"], "test-provider@0.1.0");
    let provider_run = made["history"][0]["run"].as_str().unwrap().to_string();
    let parent: Option<String> = keel
        .db()
        .query_row(
            "SELECT parent_run FROM runs WHERE id = ?1",
            [&provider_run],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(parent.as_deref(), ran["run"].as_str());
    let calls = keel.audit(&["--run", ran["run"].as_str().unwrap()]);
    let call = calls.iter().find(|e| e["action"] == "invoke").unwrap();
    assert_eq!(call["outcome"], "allowed");
    assert_eq!(
        call["detail"],
        format!("test-provider/make: test-provider@0.1.0 run {provider_run} ok")
    );
    let inner = keel.audit(&["--run", &provider_run]);
    assert_eq!(inner[0]["action"], "create");
    assert_eq!(inner[0]["plugin"], "test-provider");

    // Bad input never reaches the provider.
    let before = provider_runs(&keel);
    let bad = invoke(&keel, "test-provider/make", json!({"text": 7}), None);
    assert_eq!(bad["error"], "invalid", "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("does not match the schema of test-provider/make"),
        "{bad}"
    );
    let extra = invoke(
        &keel,
        "test-provider/make",
        json!({"text": "x", "more": 1}),
        None,
    );
    assert_eq!(extra["error"], "invalid", "{extra}");
    assert_eq!(provider_runs(&keel), before);
    // A provider's error reaches the caller as the same variant.
    let failed = invoke(&keel, "test-provider/fail", json!({}), None);
    assert_eq!(failed["error"], "invalid", "{failed}");
    assert!(
        failed["detail"].as_str().unwrap().contains("asked to fail"),
        "{failed}"
    );
    assert_eq!(provider_runs(&keel), before + 1);
    let missing = invoke(&keel, "test-provider/nope", json!({}), None);
    assert_eq!(missing["error"], "not-found", "{missing}");

    // An idempotency key makes a retry return the first output, unrun.
    let first = invoke(
        &keel,
        "test-provider/make",
        json!({"text": "once"}),
        Some("k1"),
    );
    let runs = provider_runs(&keel);
    let again = invoke(
        &keel,
        "test-provider/make",
        json!({"text": "once"}),
        Some("k1"),
    );
    assert_eq!(first["summary"], again["summary"]);
    assert_eq!(provider_runs(&keel), runs);

    // The operator can run a provider's action by hand, schema-checked.
    let by_hand = keel.run_json(
        "test-provider",
        Some(r#"{"action":"make","input":{"text":"by hand"}}"#),
    );
    assert_eq!(by_hand["outcome"], "ok", "{by_hand}");
    assert!(by_hand["output"].as_str().unwrap().contains("\"id\""));
    let out = keel.fails(&[
        "run",
        "test-provider",
        "--input",
        r#"{"action":"make","input":{}}"#,
    ]);
    assert!(
        out.stderr.contains("does not match the schema"),
        "{}",
        out.stderr
    );
    keel.ok(&["audit", "verify"]);
}

#[test]
fn invoking_an_action_outside_the_grant_is_denied() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::PROVIDER_DIR, &[]);
    let narrow = keel.variant(
        std::path::Path::new(artifacts::WRITER_DIR),
        "narrow",
        &[(
            "invoke = [\"test-provider/*\"]",
            "invoke = [\"test-provider/make\"]",
        )],
        "",
    );
    keel.ok(&["plugin", "install", narrow.to_str().unwrap()]);
    let before = provider_runs(&keel);
    let denied = invoke(&keel, "test-provider/fail", json!({}), None);
    assert_eq!(denied["error"], "denied", "{denied}");
    assert_eq!(provider_runs(&keel), before);
    let trail = keel.audit(&["--run", denied["run"].as_str().unwrap()]);
    assert_eq!(trail[0]["action"], "invoke");
    assert_eq!(trail[0]["outcome"], "denied");
}

#[test]
fn m7_a_provider_learns_its_caller_and_may_refuse_it() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::PROVIDER_DIR, &[]);
    // Consent for `invoke` shows what the provider can reach.
    let consent = keel
        .ok(&["plugin", "install", artifacts::WRITER_DIR])
        .stderr;
    assert!(
        consent.contains(
            "test-provider/*: runs as test-provider@0.1.0, which may read test/made; write test/made; actions create"
        ),
        "{consent}"
    );
    let ran = invoke(&keel, "test-provider/who", json!({}), None);
    assert_eq!(ran["outcome"], "ok", "{ran}");
    let who: Value = serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap();
    assert_eq!(who["plugin"], "test-writer");
    assert_eq!(who["run"], ran["run"]);
    // It refuses a caller it does not serve; the caller gets `denied`.
    let refused = invoke(
        &keel,
        "test-provider/who",
        json!({"refuse": "test-writer"}),
        None,
    );
    assert_eq!(refused["outcome"], "error", "{refused}");
    assert_eq!(refused["error"], "denied", "{refused}");
    // The caller's audit entry names the provider's run too.
    let entry = keel
        .audit(&["--run", ran["run"].as_str().unwrap()])
        .into_iter()
        .find(|e| e["action"] == "invoke")
        .unwrap();
    let detail = entry["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("test-provider/who: test-provider@0.1.0 run "),
        "{detail}"
    );
    // Run by the operator, it has no caller.
    let own = keel.run_json("test-provider", Some(r#"{"action": "who", "input": {}}"#));
    assert_eq!(own["output"], "null", "{own}");
}

#[test]
fn m8_a_providers_time_counts_against_its_callers_deadline() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::PROVIDER_DIR, &[]);
    let writer = keel.variant(
        std::path::Path::new(artifacts::WRITER_DIR),
        "writer-2s",
        &[("memory_mb = 32", "memory_mb = 32\ntimeout_ms = 2000")],
        "",
    );
    keel.ok(&["plugin", "install", writer.to_str().unwrap()]);
    let started = std::time::Instant::now();
    let ran = invoke(&keel, "test-provider/spin", json!({"ms": 20_000}), None);
    let took = started.elapsed();
    assert_ne!(ran["outcome"], "ok", "{ran}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    let outcome: String = keel
        .db()
        .query_row(
            "SELECT outcome FROM runs WHERE plugin = 'test-provider'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(outcome, "deadline");
}
