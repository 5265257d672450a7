//! Triggers: turning time and events into durable jobs. `keel up` calls
//! [`fire_due`] before it leases work. Each firing has a key, so a restart
//! never queues the same firing twice; a time trigger missed while keel was
//! down fires once on start (catch-up), not once per missed tick.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::jobs::enqueue::Keyed;
use crate::jobs::{self, Priority, stamp};
use crate::manifest::{CronSchedule, kind_matches, parse_cron, parse_interval};
use crate::plugins;
use crate::store::Store;

/// Most events read in one pass.
const EVENT_BATCH: u32 = 1000;

/// One event read from the stream, with what caused it.
struct Happened {
    seq: i64,
    name: String,
    /// The kind of the record it is about, if any.
    kind: Option<String>,
    /// The plugin whose run caused it.
    caused_by: Option<String>,
    run: Option<String>,
    /// The causation depth of that run's job (0 when it had none).
    depth: i64,
}

/// When a time trigger fires.
enum Timing {
    Every(std::time::Duration),
    Cron(Box<CronSchedule>),
}

/// What one pass queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Time triggers (`every` and `cron`).
    pub interval: usize,
    pub event: usize,
    /// Events a plugin caused itself: it is not woken; one `stopped` job
    /// per causing run reports the loop to the operator.
    pub self_skipped: usize,
    /// Sends handed to a channel plugin for delivery.
    pub delivery: usize,
}

/// Queues a job for every time trigger that is due and every event a
/// plugin subscribes to, in one transaction.
pub fn fire_due(db: &mut Store, now: DateTime<Utc>) -> rusqlite::Result<Fired> {
    let installed = plugins::list(db.conn())?;
    fire(db, &installed, now)
}

/// [`fire_due`] for the plugins in `installed`.
pub fn fire(
    db: &mut Store,
    installed: &[plugins::PluginRow],
    now: DateTime<Utc>,
) -> rusqlite::Result<Fired> {
    let now_s = stamp(now);
    let tx = db
        .conn_mut()
        .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut fired = Fired::default();
    for p in installed {
        fired.interval += fire_timed(&tx, p, now)?;
    }
    fire_events(&tx, installed, &now_s, &mut fired)?;
    fired.delivery = crate::outbox::queue_pending(&tx, installed, &now_s)?;
    tx.commit()?;
    Ok(fired)
}

/// When trigger `t` fires, if it is a time trigger that parses.
fn timing_of(t: &crate::manifest::TriggerSpec) -> Option<Timing> {
    match (&t.every, &t.cron) {
        (Some(every), _) => parse_interval(every).map(Timing::Every),
        (None, Some(cron)) => parse_cron(cron, t.tz.as_deref())
            .ok()
            .map(|schedule| Timing::Cron(Box::new(schedule))),
        (None, None) => None,
    }
}

/// Queues the due time triggers of plugin `p` and moves each to its next
/// time; how many jobs were queued.
fn fire_timed(
    tx: &Connection,
    p: &plugins::PluginRow,
    now: DateTime<Utc>,
) -> rusqlite::Result<usize> {
    let now_s = stamp(now);
    let mut queued = 0;
    for (i, t) in p.manifest.triggers.iter().enumerate() {
        let Some(timing) = timing_of(t) else {
            continue;
        };
        let index = i64::try_from(i).unwrap_or(i64::MAX);
        let next: Option<String> = tx
            .prepare_cached(
                "SELECT next_fire FROM trigger_state WHERE plugin = ?1 AND trigger = ?2",
            )?
            .query_row(params![p.id, index], |r| r.get(0))
            .optional()?;
        let following = match &timing {
            Timing::Every(every) => {
                Some(now + chrono::Duration::from_std(*every).unwrap_or(chrono::TimeDelta::MAX))
            }
            Timing::Cron(schedule) => schedule.next_after(now),
        };
        // An interval fires at start; a cron schedule waits for its first
        // time.
        let slot = match (&timing, next) {
            (_, Some(slot)) => Some(slot),
            (Timing::Every(_), None) => Some(now_s.clone()),
            (Timing::Cron(_), None) => None,
        };
        if let Some(slot) = &slot {
            if *slot > now_s {
                continue;
            }
            let firing = Keyed {
                plugin: &p.id,
                cause: match timing {
                    Timing::Every(_) => "interval",
                    Timing::Cron(_) => "cron",
                },
                priority: Priority::Schedule,
                event_seq: None,
                fire_key: format!("{}#{index}@{slot}", p.id),
                depth: 0,
                stopped: None,
            };
            if jobs::enqueue::keyed(tx, &firing, &now_s)? {
                queued += 1;
            }
        }
        let Some(following) = following else {
            continue;
        };
        tx.prepare_cached(
            "INSERT INTO trigger_state (plugin, trigger, next_fire) VALUES (?1, ?2, ?3)
             ON CONFLICT (plugin, trigger) DO UPDATE SET next_fire = excluded.next_fire",
        )?
        .execute(params![p.id, index, stamp(following)])?;
    }
    Ok(queued)
}

/// The events after `cursor`, oldest first, at most [`EVENT_BATCH`].
fn events_after(tx: &Connection, cursor: i64) -> rusqlite::Result<Vec<Happened>> {
    tx.prepare_cached(
        "SELECT e.seq, e.name, r.kind, runs.plugin, e.run_id, COALESCE(cj.depth, 0) FROM events e
         LEFT JOIN records r ON r.id = e.record_id
         LEFT JOIN runs ON runs.id = e.run_id
         LEFT JOIN jobs cj ON cj.id = runs.job_id
         WHERE e.seq > ?1 ORDER BY e.seq LIMIT ?2",
    )?
    .query_map(params![cursor, EVENT_BATCH], |r| {
        Ok(Happened {
            seq: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            caused_by: r.get(3)?,
            run: r.get(4)?,
            depth: r.get(5)?,
        })
    })?
    .collect()
}

/// Wakes each plugin subscribed to an event written since the last pass,
/// and moves the events cursor past them.
fn fire_events(
    tx: &Connection,
    installed: &[plugins::PluginRow],
    now_s: &str,
    fired: &mut Fired,
) -> rusqlite::Result<()> {
    let subscribers: Vec<_> = installed
        .iter()
        .flat_map(|p| p.manifest.triggers.iter().map(move |t| (p, t)))
        .filter(|(_, t)| t.on.is_some())
        .collect();
    if subscribers.is_empty() {
        return Ok(());
    }
    let cursor: i64 = tx
        .query_row("SELECT value FROM cursors WHERE name = 'events'", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    let events = events_after(tx, cursor)?;
    for event in &events {
        for (p, t) in &subscribers {
            if t.on.as_deref() != Some(event.name.as_str()) {
                continue;
            }
            let kind_ok = t.kinds.is_empty()
                || event
                    .kind
                    .as_deref()
                    .is_some_and(|k| kind_matches(&t.kinds, k));
            if kind_ok {
                wake(tx, p, event, now_s, fired)?;
            }
        }
    }
    if let Some(last) = events.last() {
        tx.execute(
            "INSERT INTO cursors (name, value) VALUES ('events', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [last.seq],
        )?;
    }
    Ok(())
}

/// Queues the job that wakes subscriber `p` on `event`, unless `p` caused
/// the event itself.
fn wake(
    tx: &Connection,
    p: &plugins::PluginRow,
    event: &Happened,
    now_s: &str,
    fired: &mut Fired,
) -> rusqlite::Result<()> {
    let Happened {
        seq,
        name,
        caused_by,
        run,
        depth,
        ..
    } = event;
    let mut firing = Keyed {
        plugin: &p.id,
        cause: "event",
        priority: Priority::Event,
        event_seq: Some(*seq),
        fire_key: format!("{}#event{seq}", p.id),
        depth: depth + 1,
        stopped: None,
    };
    if caused_by.as_deref() == Some(p.id.as_str()) {
        // A plugin woken by its own writes would wake itself forever: it
        // is not run, and the operator hears of it once per run that did
        // it.
        fired.self_skipped += 1;
        firing.fire_key = format!("{}#loop@{}", p.id, run.as_deref().unwrap_or_default());
        firing.stopped = Some(format!(
            "stopped: {} would wake itself on its own writes (event {seq} {name} from run {}); it subscribes to what it writes",
            p.id,
            run.as_deref().unwrap_or("?")
        ));
        jobs::enqueue::keyed(tx, &firing, now_s)?;
        return Ok(());
    }
    if jobs::enqueue::keyed(tx, &firing, now_s)? {
        fired.event += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::grant::Grant;
    use crate::jobs;
    use crate::manifest::Manifest;
    use crate::store::Actor;

    fn install(db: &Store, id: &str, extra: &str) {
        let text = format!(
            "[plugin]\nid = \"{id}\"\nversion = \"0.1.0\"\nworld = \"agent\"\n[capabilities]\nread = [\"core/document\"]\nwrite = [\"core/document\"]\nactions = [\"create\"]\n{extra}"
        );
        let m = Manifest::parse(&text, "keel.toml").unwrap();
        let g = Grant::new(&m, &Default::default()).unwrap();
        plugins::upsert(db.conn(), &m, "sha256:00", &g).unwrap();
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn queued(db: &Store) -> Vec<(String, String)> {
        let mut v: Vec<_> = jobs::list(db.conn(), Some("queued"), 1000)
            .unwrap()
            .into_iter()
            .map(|j| (j.plugin, j.cause))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn interval_fires_at_start_then_once_per_period_and_once_after_downtime() {
        let mut db = Store::open_in_memory().unwrap();
        install(&db, "sync", "[[triggers]]\nevery = \"10m\"\n");
        assert_eq!(fire_due(&mut db, at(0)).unwrap().interval, 1);
        assert_eq!(fire_due(&mut db, at(599)).unwrap().interval, 0);
        assert_eq!(fire_due(&mut db, at(600)).unwrap().interval, 1);
        // Down for a day: one catch-up firing, not 144.
        assert_eq!(fire_due(&mut db, at(600 + 86_400)).unwrap().interval, 1);
        assert_eq!(queued(&db).len(), 3);
    }

    #[test]
    fn cron_waits_for_its_time_in_its_zone_and_catches_up_once() {
        let mut db = Store::open_in_memory().unwrap();
        install(
            &db,
            "morning",
            "[[triggers]]\ncron = \"0 7 * * *\"\ntz = \"Europe/Brussels\"\n",
        );
        // 2027-01-15 05:30 UTC is 06:30 in Brussels (UTC+1 in winter).
        let t = |h: u32, m: u32, d: u32| {
            DateTime::parse_from_rfc3339(&format!("2027-01-{d:02}T{h:02}:{m:02}:00Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(fire_due(&mut db, t(5, 30, 15)).unwrap().interval, 0);
        assert_eq!(fire_due(&mut db, t(5, 59, 15)).unwrap().interval, 0);
        assert_eq!(fire_due(&mut db, t(6, 0, 15)).unwrap().interval, 1);
        assert_eq!(fire_due(&mut db, t(6, 1, 15)).unwrap().interval, 0);
        // Down for three days: one catch-up firing.
        assert_eq!(fire_due(&mut db, t(12, 0, 18)).unwrap().interval, 1);
        let causes: Vec<String> = jobs::list(db.conn(), None, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.cause)
            .collect();
        assert_eq!(causes, ["cron", "cron"]);
    }

    #[test]
    fn events_wake_subscribers_but_never_the_plugin_that_caused_them() {
        let mut db = Store::open_in_memory().unwrap();
        install(
            &db,
            "watcher",
            "[[triggers]]\non = \"record.created\"\nkinds = [\"core/document\"]\n",
        );
        install(
            &db,
            "writer",
            "[[triggers]]\non = \"record.created\"\nkinds = [\"core/document\"]\n",
        );
        // `writer` writes a document in one of its runs.
        let row = plugins::get(db.conn(), "writer").unwrap().unwrap();
        plugins::start_run(db.conn(), "run-1", &row, "handle", "{}", None, None).unwrap();
        let actor = Actor {
            plugin: "writer".into(),
            version: Some("0.1.0".into()),
            digest: None,
            run_id: Some("run-1".into()),
            trigger: None,
        };
        db.write(&actor, "create", None, Ok(()), |conn| {
            let r = crate::records::insert_new(
                conn,
                &actor,
                "core/document",
                "{}",
                None,
                &Default::default(),
            );
            (r.map(|_| ()), crate::store::Touched::default())
        })
        .unwrap();
        let fired = fire_due(&mut db, at(0)).unwrap();
        assert_eq!((fired.event, fired.self_skipped), (1, 1));
        assert_eq!(queued(&db), [("watcher".to_string(), "event".to_string())]);
        // The cursor moved: the same event never fires twice.
        assert_eq!(fire_due(&mut db, at(1)).unwrap(), Fired::default());
    }
}
