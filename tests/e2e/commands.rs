//! The demo and the bench work end to end through the binary.

use crate::harness::Keel;

#[test]
fn demo_ingests_makes_tasks_and_verifies_the_trail() {
    let keel = Keel::new();
    let home = keel.folder("demo-home");
    let out = std::process::Command::new(crate::harness::bin())
        .args(["demo", "--json", "--home"])
        .arg(&home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["records_by_kind"]["core/document"], 3, "{v}");
    assert_eq!(v["records_by_kind"]["core/message"], 2, "{v}");
    // Six TODO lines at first, one more after the edit.
    assert_eq!(v["tasks_created"], 7, "{v}");
    assert_eq!(v["audit_intact"], true);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
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
fn bench_reports_the_four_figures() {
    let keel = Keel::new();
    let v = keel.json(&["bench", "--starts", "20", "--creates", "50"]);
    for field in [
        "instantiate_us_p50",
        "bare_instantiate_us_p50",
        "create_per_s",
        "sqlite_insert_per_s",
    ] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field} in {v}");
    }
    assert_eq!(v["creates"], 50);
}
