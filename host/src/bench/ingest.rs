//! Ingestion: a first sync of a folder of small notes through the `files`
//! connector, then a resync with nothing changed, each run to the end
//! across as many runs as its deadline makes it take.

use std::path::Path;
use std::time::Instant;

use crate::embedded::{self, FILES};
use crate::home::Home;
use crate::runtime::Runtime;

/// Most runs one sync may take before the figure is called off.
const MAX_RUNS: u32 = 1_000;

/// Files per second: the first sync, and the resync with nothing changed.
pub(super) struct Ingest {
    pub first: f64,
    pub unchanged: f64,
}

/// Writes `n` notes of about 100 bytes under `root`, installs `files` on
/// them in a home of its own, and times both syncs.
pub(super) fn measure(root: &Path, n: u32) -> anyhow::Result<Ingest> {
    let notes = root.join("notes");
    for i in 0..n {
        // A hundred notes a folder, as a notes folder tends to be.
        let dir = notes.join(format!("d{:04}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir)?;
        }
        let text =
            format!("# Note {i}\n\nA short note, number {i}, with a line or two of text in it.\n");
        std::fs::write(dir.join(format!("n{i}.md")), text)?;
    }
    let home = Home::init(&root.join("home"))?;
    let mut runtime = Runtime::new(&home)?;
    let bindings = crate::grant::Bindings {
        dirs: [("notes".to_string(), notes)].into(),
        ..Default::default()
    };
    embedded::install(&home, &runtime, FILES, &root.join("staging"), bindings)?;
    let first = sync_to_end(&home, &mut runtime)?;
    let unchanged = sync_to_end(&home, &mut runtime)?;
    Ok(Ingest {
        first: f64::from(n) / first,
        unchanged: f64::from(n) / unchanged,
    })
}

/// Seconds for `files` to finish one pass, over as many runs as it takes.
fn sync_to_end(home: &Home, runtime: &mut Runtime) -> anyhow::Result<f64> {
    let mut db = home.store()?;
    let t = Instant::now();
    for _ in 0..MAX_RUNS {
        let (report, back) = runtime.run(db, FILES.id, None)?;
        db = back;
        match (report.outcome, report.more) {
            (crate::run::Outcome::Ok, false) => return Ok(t.elapsed().as_secs_f64()),
            (_, true) => continue,
            _ => anyhow::bail!("the files connector failed: {}", report.detail),
        }
    }
    anyhow::bail!("the files connector did not finish its pass in {MAX_RUNS} runs")
}
