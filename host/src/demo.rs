//! `keel demo`: a `files` connector ingests a folder of notes and mails, the
//! `todo` agent turns TODO lines into tasks linked to their notes, the
//! `triage` agent sorts the mails with the local chat model (offline: no
//! server, no key), opens reply tasks and drafts replies that wait for
//! review, and the audit trail says which plugin touched what. Uses the
//! first-party plugins built into this binary ([`crate::embedded`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::embedded::{self, FILES, TODO, TRIAGE};
use crate::home::Home;
use crate::records;
use crate::runtime::{RunReport, Runtime};
use crate::store::Store;
use crate::store::audit;
use crate::terminal::say;

/// The sample folder: (relative path, contents).
const NOTES: &[(&str, &str)] = &[
    ("weekly-plan.md", include_str!("demo/notes/weekly-plan.md")),
    (
        "projects/catalogue.md",
        include_str!("demo/notes/projects/catalogue.md"),
    ),
    ("ideas.txt", include_str!("demo/notes/ideas.txt")),
    (
        "supplier-invoice.eml",
        include_str!("demo/notes/supplier-invoice.eml"),
    ),
    (
        "newsletter-reply.eml",
        include_str!("demo/notes/newsletter-reply.eml"),
    ),
    (
        "prize-offer.eml",
        include_str!("demo/notes/prize-offer.eml"),
    ),
];

#[derive(Debug, Serialize)]
struct Summary {
    home: String,
    runs: Vec<RunReport>,
    records_by_kind: BTreeMap<String, i64>,
    tasks_created: i64,
    audit_entries: u64,
    audit_intact: bool,
    trail: Vec<String>,
    /// What the triage agent did with each mail, or why it did not run.
    triage: Vec<String>,
    /// Sends waiting in the review queue.
    awaiting_review: i64,
}

/// Runs the demo in `root` (a new temporary home unless `home_given`),
/// with the local models' weights in `models` (default: the setup's cache).
pub fn run(root: &Path, home_given: bool, models: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let root = if home_given {
        root.to_path_buf()
    } else {
        tempfile::Builder::new()
            .prefix("keel-demo-")
            .tempdir()?
            .keep()
    };
    let home = Home::init(&root)?;
    if !crate::plugins::list(home.store()?.conn())?.is_empty() {
        anyhow::bail!(
            "{} already has plugins installed; run the demo in a new home (omit --home, or pass an empty folder)",
            home.root().display()
        );
    }
    let mut runtime = Runtime::new(&home)?;
    let staging = home.root().join("demo-plugins");
    let (db, mut runs) = ingest(&home, &mut runtime, &staging)?;
    let (db, triage) = triage(&home, &mut runtime, &staging, db, models, &mut runs)?;
    let summary = summarize(&home, &db, runs, triage)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_text(&summary);
    }
    Ok(())
}

/// Writes the sample notes, installs the connector and the todo agent, and
/// runs them: a sync, tasks from TODOs, a sync that finds nothing new, an
/// edited note and its new task.
fn ingest(
    home: &Home,
    runtime: &mut Runtime,
    staging: &Path,
) -> anyhow::Result<(Store, Vec<RunReport>)> {
    let notes = home.root().join("demo-notes");
    for (rel, text) in NOTES {
        let path = notes.join(rel);
        std::fs::create_dir_all(path.parent().context("note has a folder")?)?;
        std::fs::write(&path, text)?;
    }
    embedded::install(
        home,
        runtime,
        FILES,
        staging,
        crate::grant::Bindings {
            dirs: BTreeMap::from([("notes".to_string(), notes.clone())]),
            ..Default::default()
        },
    )?;
    embedded::install(home, runtime, TODO, staging, Default::default())?;

    let mut db = home.store()?;
    let mut runs = Vec::new();
    let mut step = |db, plugin: &str| -> anyhow::Result<Store> {
        let (report, db) = runtime.run(db, plugin, None)?;
        if report.outcome != crate::run::Outcome::Ok {
            anyhow::bail!("demo run of {} failed: {}", report.plugin, report.detail);
        }
        runs.push(report);
        Ok(db)
    };
    db = step(db, "files")?;
    db = step(db, "todo")?;
    // A second sync finds nothing new: unchanged files are not rewritten.
    db = step(db, "files")?;
    // An edited note becomes a new version; its new TODO a new task.
    let plan = notes.join("weekly-plan.md");
    let mut text = std::fs::read_to_string(&plan)?;
    text.push_str("- [ ] Order 200 gift boxes for the spring launch\n");
    std::fs::write(&plan, text)?;
    db = step(db, "files")?;
    db = step(db, "todo")?;
    Ok((db, runs))
}

/// The triage agent sorts the mails on the local model, when its weights
/// are there; returns a line per mail, or why it was skipped.
fn triage(
    home: &Home,
    runtime: &mut Runtime,
    staging: &Path,
    mut db: Store,
    models: Option<&Path>,
    runs: &mut Vec<RunReport>,
) -> anyhow::Result<(Store, Vec<String>)> {
    let weights = models
        .map(Path::to_path_buf)
        .or_else(embedded::default_models_dir);
    let ready = weights.as_ref().is_some_and(|w| {
        w.join("smollm2/ready").exists() && w.join("all-minilm-l6-v2/ready").exists()
    });
    let mut triage = Vec::new();
    match weights {
        Some(w) if ready => {
            std::fs::write(
                home.root().join(crate::llm::config::FILE),
                format!(
                    "# The demo's models: keel's local ones, on the CPU.\n[providers.local]\nkind = \"local\"\ndir = {:?}\n",
                    w.display().to_string()
                ),
            )?;
            embedded::install(home, runtime, TRIAGE, staging, Default::default())?;
            let mails = records::query(db.conn(), Some("core/message"), None, 100)?;
            for mail in mails {
                let input = serde_json::json!({ "message": mail.id }).to_string();
                let (report, back) = runtime.run(db, "triage", Some(&input))?;
                db = back;
                triage.push(match (report.outcome, &report.summary) {
                    (crate::run::Outcome::Ok, Some(s)) => s.clone(),
                    _ => format!("{}: {} {}", mail.id, report.outcome, report.detail),
                });
                runs.push(report);
            }
        }
        w => triage.push(format!(
            "skipped: the local models are not in {}; fetch them with `scripts/setup --local-models DIR` and pass `--models DIR`",
            w.map_or("~/.cache/keel/local-models".into(), |w: PathBuf| w
                .display()
                .to_string())
        )),
    }
    Ok((db, triage))
}

/// What the demo left in the home: records, tasks, the audit chain, the
/// trail and the review queue.
fn summarize(
    home: &Home,
    db: &Store,
    runs: Vec<RunReport>,
    triage: Vec<String>,
) -> anyhow::Result<Summary> {
    let awaiting_review: i64 = db.conn().query_row(
        "SELECT COUNT(*) FROM outbox WHERE state = 'needs-review'",
        [],
        |r| r.get(0),
    )?;
    let by_kind: BTreeMap<String, i64> = records::count_by_kind(db.conn())?.into_iter().collect();
    let tasks_created = by_kind.get("core/task").copied().unwrap_or(0);
    let verification = audit::verify(db.conn())?;
    Ok(Summary {
        home: home.root().display().to_string(),
        runs,
        records_by_kind: by_kind,
        tasks_created,
        audit_entries: verification.entries,
        audit_intact: verification.broken.is_none(),
        trail: trail(db)?,
        triage,
        awaiting_review,
    })
}

fn print_text(summary: &Summary) {
    say!("keel demo — home {}\n", summary.home);
    say!("runs:");
    for r in &summary.runs {
        let what = match (&r.sync, &r.summary) {
            (Some(s), _) => format!(
                "{} created, {} updated, {} unchanged",
                s.created, s.updated, s.unchanged
            ),
            (None, Some(s)) => s.clone(),
            _ => String::new(),
        };
        say!(
            "  {:<14} {:<3} {:<48} fuel {:>11}  {:>7.1} ms",
            r.plugin,
            r.outcome,
            what,
            r.fuel_consumed,
            r.wall_us as f64 / 1000.0
        );
    }
    say!("\nrecords by kind:");
    for (kind, n) in &summary.records_by_kind {
        say!("  {kind:<14} {n}");
    }
    say!("\ntasks created: {}", summary.tasks_created);
    say!(
        "audit entries: {} ({})",
        summary.audit_entries,
        if summary.audit_intact {
            "chain verified"
        } else {
            "CHAIN BROKEN"
        }
    );
    say!("\ntriage (local model):");
    for line in &summary.triage {
        say!("  {line}");
    }
    say!("replies waiting for review: {}", summary.awaiting_review);
    say!("\nwho touched what:");
    for line in &summary.trail {
        say!("  {line}");
    }
    say!(
        "\nexplore it:\n  keel records list --home {h}\n  keel review --home {h}\n  keel usage --home {h}\n  keel audit --home {h} --plugin triage\n  keel audit verify --home {h}",
        h = summary.home
    );
}

/// For a few tasks: the task, the agent run that made it, and the note it
/// came from with the connector that ingested it.
fn trail(db: &Store) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for task in records::query(db.conn(), Some("core/task"), None, 3)? {
        let history = records::history(db.conn(), &task.id)?;
        let first = history.first().context("a task has a first version")?;
        lines.push(format!(
            "task \"{}\" ({}) created by {} in run {}",
            crate::terminal::title(&task.body),
            task.id,
            first.actor,
            first.run.as_deref().unwrap_or("-")
        ));
        for link in records::links(db.conn(), &task.id, Some("derived-from"))? {
            if let Some(source) = records::get(db.conn(), &link.to)? {
                lines.push(format!(
                    "  derived-from {} \"{}\" v{}, ingested by {}",
                    source.kind,
                    crate::terminal::title(&source.body),
                    source.version,
                    source.created_by
                ));
            }
        }
        let audits = audit::list(
            db.conn(),
            &audit::Filter {
                record: Some(task.id.clone()),
                ..Default::default()
            },
        )?;
        for a in audits {
            lines.push(format!(
                "  audit #{} {} {}@{} {} {}: {}",
                a.seq,
                a.at,
                a.plugin,
                a.plugin_version.as_deref().unwrap_or("-"),
                a.action,
                a.outcome,
                a.detail
            ));
        }
    }
    Ok(lines)
}
