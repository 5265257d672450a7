//! The demo and the bench work end to end through the binary.

use crate::harness::Keel;

#[test]
fn demo_ingests_makes_tasks_triages_mail_and_verifies_the_trail() {
    let _turn = crate::models::local_chat_turn();
    let keel = Keel::new();
    let home = keel.folder("demo-home");
    let out = std::process::Command::new(crate::harness::bin())
        .args(["demo", "--json", "--home"])
        .arg(&home)
        .arg("--models")
        .arg(crate::models::local_models())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records_by_kind"]["core/document"], 3, "{v}");
    assert_eq!(v["records_by_kind"]["core/message"], 3, "{v}");
    // Six TODO lines at first, one more after the edit, and one reply task
    // per mail the triage agent finds needs one.
    let triaged: Vec<&str> = v["triage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(triaged.len(), 3, "{v}");
    let replies = triaged
        .iter()
        .filter(|l| l.contains(": reply-needed at"))
        .count();
    for line in &triaged {
        assert!(
            [": reply-needed at", ": fyi at", ": spam-like at"]
                .iter()
                .any(|c| line.contains(c))
                && line.contains("by local/smollm2-135m-instruct"),
            "{line}"
        );
    }
    assert_eq!(v["tasks_created"], 7 + replies, "{v}");
    // Drafted replies wait for the operator.
    assert_eq!(v["awaiting_review"], replies, "{v}");
    assert_eq!(v["audit_intact"], true);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    assert!(runs.iter().all(|r| r["outcome"] == "ok"), "{v}");
    assert_eq!(runs[2]["sync"]["created"], 0, "second sync wrote nothing");
    assert_eq!(
        runs[3]["sync"]["updated"], 1,
        "the edited note is a new version"
    );
    assert!(
        v["trail"][0]
            .as_str()
            .unwrap()
            .contains("created by todo@0.1.0"),
        "{v}"
    );
    // Tokens per plugin and model, from the host's meter.
    let usage = std::process::Command::new(crate::harness::bin())
        .args(["usage", "--json", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    let usage: serde_json::Value = serde_json::from_slice(&usage.stdout).unwrap();
    let triage: Vec<&serde_json::Value> = usage
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["plugin"] == "triage")
        .collect();
    assert!(
        triage
            .iter()
            .any(|u| u["model"] == "local/smollm2-135m-instruct"
                && u["tokens_out"].as_u64().unwrap() > 0),
        "{usage}"
    );
    assert!(
        triage
            .iter()
            .any(|u| u["model"] == "local/all-minilm-l6-v2"),
        "memories are embedded: {usage}"
    );

    // A home that already has plugins is refused, and left as it was.
    let again = std::process::Command::new(crate::harness::bin())
        .args(["demo", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has plugins installed"));
}

#[test]
fn bench_reports_its_figures() {
    let _turn = crate::models::local_chat_turn();
    let keel = Keel::new();
    let models = crate::models::local_models();
    let v = keel.json(&[
        "bench",
        "--starts",
        "20",
        "--creates",
        "50",
        "--jobs",
        "20",
        "--memories",
        "300",
        "--requests",
        "30",
        "--notes",
        "200",
        "--models",
        models.to_str().unwrap(),
        // keel's source folder, where the test artifacts built the writers.
        "--languages",
        concat!(env!("CARGO_MANIFEST_DIR"), "/.."),
    ]);
    for field in [
        "instantiate_us_p50",
        "bare_instantiate_us_p50",
        "create_per_s",
        "sqlite_insert_per_s",
        "jobs_per_s",
        "embed_per_s",
        "local_tokens_per_s",
        "local_prompt_tokens_per_s",
        "recall_ms_p50",
        "http_requests_per_s",
        "host_http_requests_per_s",
        "http_ratio",
        "files_ingest_per_s",
        "files_resync_per_s",
        "instantiate_us_p50_rust",
        "instantiate_us_p50_python",
        "instantiate_us_p50_js",
        "instantiate_us_p50_c",
        "component_kb_rust",
        "component_kb_python",
        "component_kb_js",
        "component_kb_c",
    ] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field} in {v}");
    }
    assert!(v.get("languages_skipped").is_none(), "{v}");
    assert_eq!(v["creates"], 50);
    assert_eq!(v["jobs"], 20);
    assert_eq!(v["recall_memories"], 300);
    assert_eq!(v["http_requests"], 30);
    assert_eq!(v["notes"], 200);
    // Every one of the sampled events woke its subscriber (the bench fails
    // otherwise); latencies are whole milliseconds, so 0 is possible.
    assert_eq!(v["trigger_samples"], 100);
    let (p50, p99) = (
        v["trigger_latency_ms_p50"].as_f64().unwrap(),
        v["trigger_latency_ms_p99"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p99, "{v}");
}

#[test]
fn scheduled_jobs_and_runs_are_listed() {
    let keel = Keel::new();
    keel.install_test_plugin(crate::harness::artifacts::WRITER_DIR, &[]);
    let v = keel.run_json(
        "test-writer",
        Some(r#"{"op":"schedule","input":{"op":"create","text":"later"},"at":"2030-01-02T03:04:05+01:00"}"#),
    );
    assert_eq!(v["outcome"], "ok", "{v}");
    let job_id = v["summary"].as_str().unwrap();
    let jobs = keel.json(&["jobs", "list", "--state", "queued"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["id"], job_id);
    assert_eq!(jobs[0]["plugin"], "test-writer");
    assert_eq!(jobs[0]["run_at"], "2030-01-02T02:04:05.000Z");
    assert_eq!(jobs[0]["input"], r#"{"op":"create","text":"later"}"#);

    // Scheduling a plugin the grant does not list is denied and audited.
    let v = keel.run_json(
        "test-writer",
        Some(r#"{"op":"schedule","plugin":"files","input":{}}"#),
    );
    assert_eq!(v["outcome"], "error", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("scheduling plugin `files` is not granted"),
        "{v}"
    );
    let denied = keel.audit(&["--run", v["run"].as_str().unwrap()]);
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(keel.json(&["jobs", "list"]).as_array().unwrap().len(), 1);
    let out = keel.fails(&["jobs", "list", "--state", "sleeping"]);
    assert!(
        out.stderr.contains("unknown job state `sleeping`"),
        "{}",
        out.stderr
    );

    let runs = keel.json(&["runs", "list", "--plugin", "test-writer"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["outcome"], "error");
    assert_eq!(runs[1]["outcome"], "ok");
    assert!(runs[1]["fuel_consumed"].as_i64().unwrap() > 0);
    assert!(runs[1]["memory_peak"].as_i64().unwrap() > 0);
}

#[test]
fn unsure_sends_wait_for_review_and_the_operator_decides() {
    let keel = Keel::new();
    // Relaxed by the operator: sends at 0.9 and up go straight out.
    keel.install_test_plugin(
        crate::harness::artifacts::WRITER_DIR,
        &["--review-below", "0.9"],
    );
    let send = |confidence: f64| {
        let input = serde_json::json!({
            "op": "send",
            "confidence": confidence,
            "message": {"subject": "Re: invoice", "text": "Paid."}
        })
        .to_string();
        let v = keel.run_json("test-writer", Some(&input));
        assert_eq!(v["outcome"], "ok", "{v}");
        v["summary"].as_str().unwrap().to_string()
    };
    assert!(send(0.95).ends_with("Queued"));
    let unsure = send(0.3);
    assert!(unsure.ends_with("NeedsReview"), "{unsure}");
    let id = unsure.split(' ').next().unwrap();

    let items = keel.json(&["review", "list"]);
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    let item = &items[0];
    assert_eq!(
        (item["id"].as_str(), item["kind"].as_str()),
        (Some(id), Some("send"))
    );
    assert_eq!(item["plugin"], "test-writer");
    assert_eq!(item["provenance"]["note"], "test send");
    assert!(item["provenance"]["run"].is_string());

    keel.ok(&[
        "review",
        "edit",
        id,
        "--message",
        r#"{"subject":"Re: invoice","text":"Paid on Friday."}"#,
    ]);
    let shown = keel.json(&["review", "show", id]);
    assert!(
        shown["message"]
            .as_str()
            .unwrap()
            .contains("Paid on Friday.")
    );
    assert!(
        shown["original_message"]
            .as_str()
            .unwrap()
            .contains("\"Paid.\"")
    );
    let out = keel.fails(&["review", "edit", id, "--message", "[1]"]);
    assert!(
        out.stderr.contains("body must be a JSON object"),
        "{}",
        out.stderr
    );
    keel.ok(&["review", "approve", id]);
    assert_eq!(keel.json(&["review", "list"]), serde_json::json!([]));
    let out = keel.fails(&["review", "reject", id]);
    assert!(out.stderr.contains("no review item"), "{}", out.stderr);

    let decisions: Vec<String> = keel
        .audit(&["--plugin", "operator"])
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("review."))
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            "review.edit allowed",
            "review.edit invalid",
            "review.approve allowed",
            "review.reject not-found"
        ]
    );
    let state: String = keel
        .db()
        .query_row("SELECT state FROM outbox WHERE id = ?1", [id], |r| r.get(0))
        .unwrap();
    assert_eq!(state, "approved");
}

#[test]
fn an_unsure_record_waits_for_review_and_the_operators_edit_is_the_next_version() {
    let keel = Keel::new();
    keel.install_test_plugin(crate::harness::artifacts::WRITER_DIR, &[]);
    let v = keel.run_json(
        "test-writer",
        Some(r#"{"op":"create","text":"maybe","confidence":0.5}"#),
    );
    assert_eq!(v["outcome"], "ok", "{v}");
    let id = v["summary"].as_str().unwrap().to_string();
    let items = keel.json(&["review", "list"]);
    assert_eq!(items[0]["kind"], "low-confidence", "{items}");
    assert_eq!(items[0]["id"], format!("{id}@1"));
    assert_eq!(items[0]["provenance"]["run"], v["run"]);
    keel.ok(&[
        "review",
        "edit",
        &format!("{id}@1"),
        "--message",
        r#"{"text":"surely"}"#,
    ]);
    let shown = keel.json(&["records", "show", &id, "--history"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["body"]["text"], "surely");
    assert_eq!(shown["history"][0]["review"], "edited");
    assert_eq!(shown["history"][1]["actor"], "operator");
    assert_eq!(keel.json(&["review", "list"]), serde_json::json!([]));
}
