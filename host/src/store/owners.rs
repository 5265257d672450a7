//! One owner per table: every SQL statement that writes a table lives in
//! the module that owns it; everyone else calls that module's typed
//! functions. This test reads the crate's sources (outside `#[cfg(test)]`
//! items and test files) and fails, naming file, line and table, on a
//! write anywhere else. Migrations are not Rust and are not scanned.

use std::path::{Path, PathBuf};

/// Each table and the module that writes it. A writer may be the owner or
/// one of its submodules, unless that submodule owns tables itself (then
/// it writes only its own: `jobs::webhooks` does not write `jobs`).
const OWNERS: &[(&str, &str)] = &[
    ("records", "records"),
    ("versions", "records"),
    ("identities", "records"),
    ("links", "records"),
    ("events", "records"),
    // The write path's replay memory, written beside each call's audit entry.
    ("idempotency", "store"),
    ("audit", "store::audit"),
    ("jobs", "jobs"),
    ("rate_buckets", "jobs"),
    ("cursors", "triggers"),
    ("trigger_state", "triggers"),
    ("webhooks", "jobs::webhooks"),
    ("webhook_nonces", "jobs::webhooks"),
    ("webhook_refusals", "jobs::webhooks"),
    ("outbox", "outbox"),
    ("plugins", "plugins"),
    ("plugin_versions", "plugins"),
    ("runs", "plugins"),
    ("memories", "memory"),
    ("memory_sources", "memory"),
    ("working_memory", "memory"),
    ("llm_cache", "llm"),
    ("llm_calls", "llm"),
    ("token_reservations", "llm"),
    ("secrets", "secrets"),
    ("trusted_keys", "install::packages"),
    ("write_quota", "quota"),
    ("sync_state", "sync_state"),
    ("sync_state_usage", "sync_state"),
];

/// Modules left out, and why.
const EXEMPT: &[(&str, &str)] = &[(
    "bench",
    "its baseline times keel's rows written as plain SQL, beside the write path",
)];

/// The SQL verbs that write, each followed by its table.
const WRITES: &[&str] = &[
    "INSERT INTO ",
    "INSERT OR IGNORE INTO ",
    "INSERT OR REPLACE INTO ",
    "REPLACE INTO ",
    "UPDATE ",
    "DELETE FROM ",
];

/// One write found in the sources.
#[derive(Debug, PartialEq)]
struct Write {
    file: String,
    line: usize,
    module: String,
    table: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file under `src/` holds: `jobs/webhooks/auth.rs` is
/// `jobs::webhooks::auth`.
fn module_of(relative: &Path) -> String {
    let text = relative
        .with_extension("")
        .to_string_lossy()
        .replace('\\', "/");
    text.split('/').collect::<Vec<_>>().join("::")
}

/// Whether `line` is a `#[cfg(test)]` (or `#[cfg(all(test, ...))]`)
/// attribute.
fn is_test_attr(line: &str) -> bool {
    let line = line.trim();
    line.starts_with("#[cfg(") && line.contains("test") && !line.contains("not(test")
}

/// The files of modules declared under a test attribute (`#[cfg(test)]
/// mod tests;`), relative to `src/`: `foo.rs` declares `foo/NAME.rs`.
fn test_modules(relative: &Path, text: &str) -> Vec<PathBuf> {
    let dir = match relative.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "main.rs") => relative.parent().unwrap().to_path_buf(),
        _ => relative.with_extension(""),
    };
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .filter(|pair| is_test_attr(pair[0]))
        .filter_map(|pair| {
            let decl = pair[1]
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            let name = decl.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(dir.join(format!("{name}.rs")))
        })
        .collect()
}

/// The lines of `text` outside test-only items, with their numbers
/// (1-based). An item ends at its `;` or where its braces balance.
fn live_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        if !is_test_attr(line) {
            out.push((i + 1, line));
            continue;
        }
        let mut depth = 0i64;
        let mut opened = false;
        for (_, item) in lines.by_ref() {
            depth += item.matches('{').count() as i64;
            depth -= item.matches('}').count() as i64;
            opened |= item.contains('{');
            let trimmed = item.trim_end();
            if (opened && depth <= 0) || (!opened && trimmed.ends_with(';')) {
                break;
            }
        }
    }
    out
}

/// The tables `line` writes.
fn tables_written(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for verb in WRITES {
        for (at, _) in line.match_indices(verb) {
            // A verb inside a longer word (`ON CONFLICT ... DO UPDATE SET`
            // names no table) or mid-identifier is not a write of its own.
            if line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &line[at + verb.len()..];
            let table: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if table.is_empty() || table == "SET" {
                continue;
            }
            if *verb == "UPDATE " && !rest[table.len()..].trim_start().starts_with("SET") {
                continue;
            }
            found.push(table);
        }
    }
    found
}

fn writes() -> Vec<Write> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let texts: Vec<(PathBuf, String)> = files
        .iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().to_path_buf();
            (relative, std::fs::read_to_string(path).unwrap())
        })
        .collect();
    let test_only: Vec<PathBuf> = texts
        .iter()
        .flat_map(|(relative, text)| test_modules(relative, text))
        .collect();
    let mut out = Vec::new();
    for (relative, text) in &texts {
        let relative = relative.as_path();
        // A test module's file, or a file of its own submodules.
        if test_only
            .iter()
            .any(|t| relative == t || relative.starts_with(t.with_extension("")))
        {
            continue;
        }
        for (line, content) in live_lines(text) {
            for table in tables_written(content) {
                out.push(Write {
                    file: format!("host/src/{}", relative.display()),
                    line,
                    module: module_of(relative),
                    table,
                });
            }
        }
    }
    out
}

fn within(module: &str, owner: &str) -> bool {
    module == owner || module.starts_with(&format!("{owner}::"))
}

/// The owner a module writes as: the deepest owner it lies within.
fn writes_as(module: &str) -> Option<&'static str> {
    OWNERS
        .iter()
        .map(|(_, owner)| *owner)
        .filter(|owner| within(module, owner))
        .max_by_key(|owner| owner.len())
}

#[test]
fn every_table_is_written_only_by_its_owner() {
    let found = writes();
    assert!(
        found.iter().any(|w| w.table == "records"),
        "the scan found no write of `records`: is it reading the sources?"
    );
    let mut wrong = Vec::new();
    for w in &found {
        if EXEMPT.iter().any(|(m, _)| within(&w.module, m)) {
            continue;
        }
        let Some((_, owner)) = OWNERS.iter().find(|(t, _)| *t == w.table) else {
            wrong.push(format!(
                "{}:{}: writes `{}`, a table with no owner in store/owners.rs",
                w.file, w.line, w.table
            ));
            continue;
        };
        if writes_as(&w.module) != Some(*owner) {
            wrong.push(format!(
                "{}:{}: `{}` writes `{}`, which `{owner}` owns; call a function of `{owner}` instead",
                w.file, w.line, w.module, w.table
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "writes outside their owner:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_table_of_the_schema_has_an_owner() {
    let dir = src().join("store/migrations");
    let mut tables = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (at, _) in sql.match_indices("CREATE TABLE ") {
            let rest = sql[at + "CREATE TABLE ".len()..].trim_start_matches("IF NOT EXISTS ");
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            tables.push(name);
        }
    }
    assert!(tables.iter().any(|t| t == "records"), "{tables:?}");
    let orphans: Vec<&String> = tables
        .iter()
        .filter(|t| !OWNERS.iter().any(|(o, _)| o == t))
        .collect();
    assert!(orphans.is_empty(), "tables with no owner: {orphans:?}");
}

#[test]
fn the_scan_sees_writes_and_skips_tests() {
    assert_eq!(
        tables_written("\"INSERT INTO jobs (id) VALUES (?1)\""),
        ["jobs"]
    );
    assert_eq!(
        tables_written("ON CONFLICT (plugin) DO UPDATE SET tokens = excluded.tokens"),
        Vec::<String>::new()
    );
    assert_eq!(tables_written("\"UPDATE outbox SET state = ?2"), ["outbox"]);
    assert_eq!(
        tables_written("INSERT OR IGNORE INTO memory_sources"),
        ["memory_sources"]
    );
    let text = "fn a() {}\n#[cfg(test)]\nmod tests {\n    \"DELETE FROM runs\"\n}\nfn b() {}\n";
    let live: Vec<usize> = live_lines(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(live, [1, 6]);
    let declared = test_modules(Path::new("store.rs"), "#[cfg(test)]\nmod owners;\n");
    assert_eq!(declared, [PathBuf::from("store/owners.rs")]);
    assert!(is_test_attr("#[cfg(all(test, unix))]"));
    assert_eq!(
        module_of(Path::new("jobs/webhooks/auth.rs")),
        "jobs::webhooks::auth"
    );
    assert_eq!(writes_as("jobs::webhooks::auth"), Some("jobs::webhooks"));
    assert_eq!(writes_as("jobs::enqueue"), Some("jobs"));
    assert_eq!(writes_as("actions::tasks"), None);
}
