//! Every network attempt of a run, allowed or denied, until it is written
//! to the audit log (`net.request`, `net.connect`). Requests complete on
//! the I/O runtime, away from the run's store, so they are kept here and
//! written by the run itself: on each epoch tick for the ones that have
//! ended, and for all of them when the run ends (a request still open then
//! is written as cut off). Bodies, header values and secret values are
//! never kept.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::CallError;
use crate::store::{Actor, Store, Touched};

/// What an attempt was: an HTTP request or a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Connect,
}

impl Kind {
    fn action(self) -> &'static str {
        match self {
            Kind::Request => "net.request",
            Kind::Connect => "net.connect",
        }
    }
}

/// One attempt, as it goes. Its byte counters are shared with the streams
/// that move the bytes.
#[derive(Debug)]
pub struct Attempt {
    kind: Kind,
    /// `GET https://example.org:443/feed.xml` (no query), or `host:port`.
    what: String,
    /// The endpoint it fell within, when it did.
    endpoint: Option<String>,
    /// Why it was refused, for a denied attempt.
    denied: Option<String>,
    status: Mutex<Option<String>>,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    done: AtomicBool,
}

impl Attempt {
    /// The response status, or how the attempt failed.
    pub fn set_status(&self, status: impl Into<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.into());
    }

    /// The attempt is over: its entry can be written.
    pub fn finish(&self) {
        self.done.store(true, Ordering::Release);
    }

    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    fn detail(&self, cut_off: bool) -> String {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut detail = self.what.clone();
        if let Some(name) = &self.endpoint {
            detail.push_str(&format!(" (endpoint {name})"));
        }
        // A refusal's reason is added by the audit, as for every denial.
        if self.denied.is_some() {
            return detail;
        }
        match (status, cut_off) {
            (Some(s), false) => detail.push_str(&format!(" -> {s}")),
            (Some(s), true) => detail.push_str(&format!(" -> {s}, cut off when the run ended")),
            (None, _) => detail.push_str(" -> no answer when the run ended"),
        }
        // A connection's bytes flow through WASI's own streams, which are
        // not counted (yet); a request's are.
        if self.kind == Kind::Connect {
            return detail;
        }
        detail.push_str(&format!(
            ", {} bytes in, {} out",
            self.bytes_in.load(Ordering::Relaxed),
            self.bytes_out.load(Ordering::Relaxed)
        ));
        detail
    }
}

/// A run's attempts, shared between the run and its requests' tasks.
#[derive(Debug, Clone, Default)]
pub struct NetLog {
    attempts: Arc<Mutex<Vec<Arc<Attempt>>>>,
    totals: Arc<(AtomicU64, AtomicU64)>,
}

impl NetLog {
    /// Starts an allowed attempt.
    pub fn allowed(&self, kind: Kind, what: String, endpoint: &str) -> Arc<Attempt> {
        self.push(kind, what, Some(endpoint.to_string()), None)
    }

    /// Records a refused attempt (finished at once). The reason also goes
    /// to the operator's log: a plugin's language may not pass it on (a
    /// socket refusal is only `EACCES` to CPython, a refused `fetch` only a
    /// `NetworkError` to JavaScript), and the author needs to read it.
    pub fn denied(&self, kind: Kind, what: String, why: &str) {
        tracing::warn!(target: "keel::net", "{} {what} refused: {why}", kind.action());
        let a = self.push(kind, what, None, Some(why.to_string()));
        a.finish();
    }

    fn push(
        &self,
        kind: Kind,
        what: String,
        endpoint: Option<String>,
        denied: Option<String>,
    ) -> Arc<Attempt> {
        let attempt = Arc::new(Attempt {
            kind,
            what,
            endpoint,
            denied,
            status: Mutex::new(None),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            done: AtomicBool::new(false),
        });
        self.lock().push(attempt.clone());
        attempt
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Attempt>>> {
        self.attempts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the audit entries of the attempts that have ended (all of
    /// them when `all`, at the run's end) and adds their bytes to the run's
    /// totals.
    pub fn write(&self, db: &mut Store, actor: &Actor, all: bool) -> Result<(), CallError> {
        let ready: Vec<Arc<Attempt>> = {
            let mut attempts = self.lock();
            // Every epoch tick of every run comes here; most have nothing.
            if attempts.is_empty() {
                return Ok(());
            }
            let (ready, open) = attempts
                .drain(..)
                .partition(|a| all || a.done.load(Ordering::Acquire));
            *attempts = open;
            ready
        };
        for a in ready {
            let cut_off = !a.done.load(Ordering::Acquire);
            self.totals
                .0
                .fetch_add(a.bytes_in.load(Ordering::Relaxed), Ordering::Relaxed);
            self.totals
                .1
                .fetch_add(a.bytes_out.load(Ordering::Relaxed), Ordering::Relaxed);
            let touched = Touched::detail(a.detail(cut_off));
            // A denial is audited through the permit; an allowed attempt
            // through the change, which writes nothing else.
            let (permit, touched) = match &a.denied {
                Some(why) => (Err((why.clone(), touched)), Touched::default()),
                None => (Ok(()), touched),
            };
            let written = db.write(actor, a.kind.action(), None, permit, |_| (Ok(()), touched));
            match written {
                Ok(()) | Err(CallError::Denied(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Bytes in and out of every attempt written so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.totals.0.load(Ordering::Relaxed),
            self.totals.1.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_audited_once_when_they_end_and_all_at_the_run_end() {
        let mut db = Store::open_in_memory().unwrap();
        let actor = Actor {
            plugin: "feed".into(),
            ..Actor::operator()
        };
        let log = NetLog::default();
        let done = log.allowed(Kind::Request, "GET http://127.0.0.1:8080/a".into(), "feed");
        done.add_in(100);
        done.add_out(7);
        done.set_status("200");
        done.finish();
        let open = log.allowed(Kind::Request, "GET http://127.0.0.1:8080/b".into(), "feed");
        open.add_in(5);
        log.denied(
            Kind::Request,
            "GET https://evil.org:443/".into(),
            "not granted",
        );
        log.write(&mut db, &actor, false).unwrap();
        let entries = |db: &Store| {
            crate::store::audit::list(db.conn(), &Default::default())
                .unwrap()
                .into_iter()
                .filter(|e| e.action.starts_with("net."))
                .map(|e| format!("{} {} {}", e.action, e.outcome, e.detail))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&db),
            [
                "net.request allowed GET http://127.0.0.1:8080/a (endpoint feed) -> 200, 100 bytes in, 7 out",
                "net.request denied GET https://evil.org:443/: not granted",
            ]
        );
        assert_eq!(log.totals(), (100, 7));
        log.write(&mut db, &actor, true).unwrap();
        assert_eq!(entries(&db).len(), 3);
        assert!(
            entries(&db)[2]
                .ends_with("/b (endpoint feed) -> no answer when the run ended, 5 bytes in, 0 out"),
            "{:?}",
            entries(&db)
        );
        assert_eq!(log.totals(), (105, 7));
        log.write(&mut db, &actor, true).unwrap();
        assert_eq!(entries(&db).len(), 3);
    }
}
