//! Hostile plugins are contained, their runs end with a clear outcome, what
//! they tried is audited, and the host runs a normal plugin fine afterwards.

use std::path::Path;

use crate::harness::{Keel, artifacts, manifest_without};

/// After a hostile run, a normal plugin still runs and writes.
fn normal_plugin_still_works(keel: &Keel) {
    let v = keel.run_json("test-writer", Some(r#"{"op":"create","text":"after"}"#));
    assert_eq!(v["outcome"], "ok", "{v}");
    keel.ok(&["audit", "verify"]);
}

fn keel_with(dirs: &[&str], extra: &[&str]) -> Keel {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    for d in dirs {
        keel.install_test_plugin(d, extra);
    }
    keel
}

#[test]
fn endless_loop_ends_at_the_deadline() {
    let keel = keel_with(&[artifacts::SPIN_DIR], &[]);
    let v = keel.run_json("test-spin", None);
    assert_eq!(v["outcome"], "deadline", "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("1000 ms deadline"),
        "{v}"
    );
    normal_plugin_still_works(&keel);
}

#[test]
fn endless_loop_with_little_fuel_runs_out_of_fuel() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let dir = keel.folder("spin-low-fuel");
    let manifest = manifest_without(Path::new(artifacts::SPIN_DIR), &["fuel", "component"])
        .replace("[limits]", "[limits]\nfuel = 5_000_000");
    std::fs::write(dir.join("keel.toml"), manifest).unwrap();
    keel.ok(&[
        "plugin",
        "install",
        dir.to_str().unwrap(),
        "--component",
        artifacts::SPIN_WASM,
    ]);
    let v = keel.run_json("test-spin", None);
    assert_eq!(v["outcome"], "fuel", "{v}");
    assert!(v["fuel_consumed"].as_u64().unwrap() >= 5_000_000, "{v}");
    normal_plugin_still_works(&keel);
}

#[test]
fn allocating_past_the_memory_cap_is_stopped() {
    let keel = keel_with(&[artifacts::ALLOC_DIR], &[]);
    let v = keel.run_json("test-alloc", None);
    assert_eq!(v["outcome"], "memory", "{v}");
    assert!(v["detail"].as_str().unwrap().contains("32 MiB"), "{v}");
    assert!(v["memory_peak"].as_u64().unwrap() <= 32 << 20, "{v}");
    normal_plugin_still_works(&keel);
}

#[test]
fn huge_string_to_a_host_call_gets_limit_and_is_audited() {
    let keel = keel_with(&[artifacts::HUGE_DIR], &[]);
    let v = keel.run_json("test-huge", None);
    assert_eq!(v["outcome"], "ok", "{v}");
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.contains("Limit"), "{summary}");
    assert!(keel.records("test/item").is_empty());
    let audit = keel.audit(&["--plugin", "test-huge"]);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "limit");
    normal_plugin_still_works(&keel);
}

#[test]
fn write_outside_the_grant_is_denied_audited_and_writes_nothing() {
    let keel = keel_with(&[artifacts::SNEAKY_DIR], &[]);
    let v = keel.run_json("test-sneaky", None);
    assert_eq!(v["outcome"], "ok", "{v}");
    assert_eq!(
        v["summary"],
        "denied: writing records of kind `core/contact` is not granted"
    );
    assert!(keel.records("core/contact").is_empty());
    let audit = keel.audit(&["--plugin", "test-sneaky"]);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["action"], "create");
    assert_eq!(audit[0]["outcome"], "denied");
    assert_eq!(audit[0]["run"], v["run"]);
    normal_plugin_still_works(&keel);
}

#[test]
fn files_outside_the_granted_directory_cannot_be_read() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let outer = keel.folder("outer");
    let boxed = keel.folder("outer/box");
    std::fs::write(outer.join("secret.txt"), "secret").unwrap();
    std::fs::write(boxed.join("inside.txt"), "inside").unwrap();
    let bind = format!("box={}", boxed.display());
    keel.install_test_plugin(artifacts::ESCAPE_DIR, &["--dir", &bind]);
    let v = keel.run_json("test-escape", None);
    assert_eq!(v["outcome"], "ok", "{v}");
    let summary = v["summary"].as_str().unwrap();
    assert!(summary.contains("/box/inside.txt=ok"), "{summary}");
    assert!(summary.contains("/box/../secret.txt=err"), "{summary}");
    assert!(summary.contains("/etc/passwd=err"), "{summary}");
    normal_plugin_still_works(&keel);
}

#[test]
fn a_trap_ends_the_run_with_outcome_trap() {
    let keel = keel_with(&[artifacts::TRAP_DIR], &[]);
    let v = keel.run_json("test-trap", None);
    assert_eq!(v["outcome"], "trap", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("test-trap@0.1.0 trapped"),
        "{v}"
    );
    // The failed run is recorded as an event.
    let conn = keel.db();
    let failed: i64 = conn
        .query_row(
            "SELECT count(*) FROM events WHERE name = 'run.failed' AND run_id = ?1",
            [v["run"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 1);
    normal_plugin_still_works(&keel);
}

#[test]
fn concurrent_updates_from_two_processes_have_one_winner() {
    let keel = Keel::new();
    keel.install_test_plugin(artifacts::WRITER_DIR, &[]);
    let created = keel.run_json("test-writer", Some(r#"{"op":"create","text":"race"}"#));
    let id = created["summary"].as_str().unwrap().to_string();
    let input =
        |n: u32| format!(r#"{{"op":"update","id":"{id}","expected":1,"text":"writer {n}"}}"#);
    let children: Vec<_> = (0..2)
        .map(|n| {
            keel.command(&["run", "test-writer", "--json", "--input", &input(n)])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| serde_json::from_slice(&c.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let wins = outs.iter().filter(|o| o["outcome"] == "ok").count();
    let conflicts = outs
        .iter()
        .filter(|o| o["outcome"] == "error" && o["detail"].as_str().unwrap().contains("Conflict"))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{outs:?}");
    let record = keel.json(&["records", "show", &id]);
    assert_eq!(record["version"], 2);
}
