//! Recall: one hybrid recall (full-text and a scan of 384-dimension
//! vectors, fused) among many memories, the query already embedded.

use std::path::Path;
use std::time::Instant;

use crate::grant::Grant;
use crate::home::Home;
use crate::memory::{Filter, Viewer};
use crate::store::Actor;

/// Dimensions of the made-up vectors, as the local embedder's.
const DIM: usize = 384;
/// The kind the memories are stored under.
const KIND: &str = "bench/random";

/// Made-up words and vectors from a fixed seed (xorshift), so every bench
/// fills the same memories.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Word `i` of a vocabulary of 4,096 made-up words, so a query word is
    /// in a few hundred memories, as names and topics are, not in most of
    /// them.
    fn word(i: u64) -> String {
        const SYLLABLES: &[&str] = &[
            "ka", "lo", "mi", "ter", "van", "su", "ro", "dex", "pa", "lin", "or", "beh", "qui",
            "zo", "ne", "tas",
        ];
        (0..3)
            .map(|k| SYLLABLES[((i >> (4 * k)) & 15) as usize])
            .collect()
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIM)
            .map(|_| (self.next() % 20_000) as f32 / 10_000.0 - 1.0)
            .collect()
    }
}

/// Fills a store with `n` memories (eight words each, random vectors of 384
/// dimensions) and times `samples` recalls after a first one (which loads
/// the vectors into memory), in milliseconds.
pub(super) fn recall_latencies(root: &Path, n: u32, samples: u32) -> anyhow::Result<Vec<f64>> {
    let home = Home::init(root)?;
    let mut db = home.store()?;
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let actor = Actor::operator();
    let grant = Grant {
        capabilities: crate::manifest::Capabilities::default(),
        ..Grant::default()
    };
    fill(&mut db, &mut random, &actor, &grant, n)?;
    let viewer = Viewer {
        grant: &grant,
        plugin: &actor.plugin,
    };
    let filter = Filter::default();
    let vectors = crate::memory::VectorCache::default();
    crate::memory::recall(
        db.conn(),
        &vectors,
        viewer,
        "warm",
        random.vector(),
        KIND,
        10,
        &filter,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for s in 0..samples {
        let query = format!(
            "{} {}",
            Random::word(u64::from(s) * 37 % 4096),
            Random::word(random.next() % 4096)
        );
        let q = random.vector();
        let started = Instant::now();
        let found =
            crate::memory::recall(db.conn(), &vectors, viewer, &query, q, KIND, 10, &filter)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        if found.len() != 10.min(n as usize) {
            anyhow::bail!("a recall found {} of 10 memories", found.len());
        }
    }
    Ok(out)
}

/// Inserts `n` memories of eight made-up words and a random vector each,
/// in one transaction.
fn fill(
    db: &mut crate::store::Store,
    random: &mut Random,
    actor: &Actor,
    grant: &Grant,
    n: u32,
) -> anyhow::Result<()> {
    let tx = db.conn_mut().transaction()?;
    for i in 0..n {
        let text: Vec<String> = (0..8).map(|_| Random::word(random.next() % 4096)).collect();
        let text = format!("{} {i}", text.join(" "));
        crate::memory::insert(
            &tx,
            actor,
            grant,
            &text,
            "{}",
            &[],
            None,
            KIND,
            random.vector(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    tx.commit()?;
    Ok(())
}
