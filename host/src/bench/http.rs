//! HTTP: GETs through the bench plugin (keel's sender: endpoint match,
//! address check, audit) against the same GETs from a client in the host
//! (reqwest), both to one loopback server and both on a new connection per
//! request (keel's sender keeps no connection between requests).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;

use crate::runtime::Runtime;
use crate::store::Store;

/// Requests per second each way.
pub(super) struct Requests {
    pub keel: f64,
    pub host: f64,
}

/// A loopback server answering every request `200 ok` and closing; stopped
/// when dropped.
pub(super) struct Loopback {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loopback {
    pub(super) fn start() -> anyhow::Result<Loopback> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream);
                }
            }
        });
        Ok(Loopback {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head (bounded) and answers it.
fn answer(mut stream: TcpStream) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
}

/// `n` GETs through the installed bench plugin, then from the host.
pub(super) fn measure(
    runtime: &mut Runtime,
    db: Store,
    port: u16,
    n: u32,
) -> anyhow::Result<(Requests, Store)> {
    let input = serde_json::json!({"op": "http", "n": n}).to_string();
    let t = Instant::now();
    let (report, db) = runtime.run(db, "bench", Some(&input))?;
    let keel = t.elapsed().as_secs_f64();
    if report.outcome != crate::run::Outcome::Ok {
        anyhow::bail!("the bench plugin's requests failed: {}", report.detail);
    }
    let host = host_requests(port, n)?;
    Ok((
        Requests {
            keel: f64::from(n) / keel,
            host: f64::from(n) / host,
        },
        db,
    ))
}

/// Seconds for `n` GETs from reqwest, one connection each.
fn host_requests(port: u16, n: u32) -> anyhow::Result<f64> {
    keel_registry::remote::install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/bench");
    rt.block_on(async {
        let t = Instant::now();
        for _ in 0..n {
            let response = client.get(&url).send().await?;
            response.bytes().await?;
        }
        Ok(t.elapsed().as_secs_f64())
    })
}
