//! Run start and component size of one agent, the writer scenario, written
//! in Rust, Python, JavaScript and C (`tests/plugins/rs-writer`,
//! `tests/plugins-py/py-writer`, `tests/plugins-js/js-writer`,
//! `tests/plugins-c/c-writer`), each started through keel the way a run
//! starts.

use std::path::Path;

use serde::Serialize;

use crate::home::Home;
use crate::plugins::InstallRequest;
use crate::runtime::Runtime;

/// The figures per language, in `keel bench --json`'s names.
#[derive(Debug, Default, Serialize)]
pub struct Languages {
    pub instantiate_us_p50_rust: Option<f64>,
    pub instantiate_us_p50_python: Option<f64>,
    pub instantiate_us_p50_js: Option<f64>,
    pub instantiate_us_p50_c: Option<f64>,
    pub component_kb_rust: Option<f64>,
    pub component_kb_python: Option<f64>,
    pub component_kb_js: Option<f64>,
    pub component_kb_c: Option<f64>,
}

/// The writer's folder per language under keel's source folder `root`.
const WRITERS: [(&str, &str); 4] = [
    ("rust", "tests/plugins/rs-writer"),
    ("python", "tests/plugins-py/py-writer"),
    ("js", "tests/plugins-js/js-writer"),
    ("c", "tests/plugins-c/c-writer"),
];

/// The languages' figures from the writers built under keel's source folder
/// `root`, or null ones and why: no folder given, or a writer not built.
pub fn figures_or_why(
    home: &Home,
    runtime: &mut Runtime,
    root: Option<&Path>,
    samples: usize,
) -> (Languages, Option<String>) {
    let Some(root) = root else {
        return (
            Languages::default(),
            Some(
                "no --languages DIR given; in keel's source folder, `cargo test -p keel-test-artifacts` builds the writers, then pass that folder as --languages DIR"
                    .to_string(),
            ),
        );
    };
    match measure(home, runtime, root, samples) {
        Ok(figures) => (figures, None),
        Err(why) => (Languages::default(), Some(why)),
    }
}

/// Installs each language's writer into `home` and times `samples` run
/// starts of each after a first one (which compiles it); why not, when a
/// writer has not been built.
fn measure(
    home: &Home,
    runtime: &mut Runtime,
    root: &Path,
    samples: usize,
) -> Result<Languages, String> {
    // (run start p50, component KiB) in the order of WRITERS.
    let mut measured = Vec::new();
    for (lang, folder) in WRITERS {
        let dir = root.join(folder);
        let req = InstallRequest {
            source: dir.clone(),
            ..InstallRequest::default()
        };
        let checked = crate::plugins::check(runtime.engine(), runtime.linker(), &req).map_err(
            |e| {
                format!(
                    "the {lang} writer in {} is not built ({e}); `cargo test -p keel-test-artifacts` builds it",
                    dir.display()
                )
            },
        )?;
        let size = super::round(checked.component_bytes.len() as f64 / 1024.0);
        let id = checked.manifest.plugin.id.clone();
        let mut db = home.store().map_err(|e| e.to_string())?;
        crate::plugins::install(home, runtime.engine(), &mut db, &checked)
            .map_err(|e| format!("installing the {lang} writer: {e}"))?;
        let row = crate::runtime::installed(&db, &id).map_err(|e| e.to_string())?;
        let (times, _) =
            super::start::time_starts(runtime, db, &row, samples).map_err(|e| e.to_string())?;
        measured.push((super::round(super::start::p50_us(times)), size));
    }
    let [rust, python, js, c] = [measured[0], measured[1], measured[2], measured[3]];
    let figures = Languages {
        instantiate_us_p50_rust: Some(rust.0),
        instantiate_us_p50_python: Some(python.0),
        instantiate_us_p50_js: Some(js.0),
        instantiate_us_p50_c: Some(c.0),
        component_kb_rust: Some(rust.1),
        component_kb_python: Some(python.1),
        component_kb_js: Some(js.1),
        component_kb_c: Some(c.1),
    };
    Ok(figures)
}
