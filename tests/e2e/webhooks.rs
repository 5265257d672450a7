//! Webhooks on `keel up --listen`, over real sockets: a signed POST
//! (timestamp and HMAC) becomes an event and a job that hands the body to
//! the agent; a bearer secret, a wrong or stale signature, an unknown hook,
//! an oversized body and a GET are refused with the right status and
//! counted, not audited one by one; a replayed request is refused and makes
//! no second job; a slow client holds only its own connection; a rotated
//! secret replaces the old one; the secret is shown once, never by inspect.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};

use crate::harness::{Keel, artifacts};
use crate::up::{count, stop};

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one HTTP request; returns the status and the body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    read_reply(stream)
}

fn read_reply(mut stream: TcpStream) -> (u16, String) {
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The signing headers for `body` at `ts`.
fn signed(secret: &str, ts: i64, body: &[u8]) -> (String, String) {
    let ts = ts.to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    (
        ts,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
    )
}

/// POSTs `body` signed with `secret` now.
fn post_signed(port: u16, path: &str, secret: &str, body: &[u8]) -> (u16, String) {
    let (ts, sig) = signed(secret, unix_now(), body);
    request(
        port,
        "POST",
        path,
        &[("X-Keel-Timestamp", &ts), ("X-Keel-Signature", &sig)],
        body,
    )
}

/// Installs the writer with one hook `ping` of `max_bytes`; returns the
/// secret the install showed.
fn install_hooked(keel: &Keel, max_bytes: u64) -> String {
    let dir = keel.variant(
        Path::new(artifacts::WRITER_DIR),
        "hooked",
        &[],
        &format!("[[triggers]]\nwebhook = \"ping\"\nmax_bytes = {max_bytes}\n"),
    );
    let installed = keel.json(&["plugin", "install", dir.to_str().unwrap()]);
    let issued = &installed["webhook_secrets"][0];
    assert_eq!(issued["path"], "/hooks/test-writer/ping", "{installed}");
    let secret = issued["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);
    secret
}

/// `keel up --listen` on a free port, once it accepts connections.
fn start_up(keel: &Keel) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut up = keel
        .command(&["up", "--idle-ms", "50", "--listen", &listen])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !ready {
        let _ = up.kill();
        let _ = up.wait();
        panic!("keel up is not listening on {listen}");
    }
    (up, port)
}

fn wait_done(keel: &Keel, n: usize) {
    for _ in 0..200 {
        if count(keel, "done") >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PATH: &str = "/hooks/test-writer/ping";

#[test]
fn signed_posts_run_the_plugin_and_the_rest_are_refused() {
    let keel = Keel::new();
    let secret = install_hooked(&keel, 100);
    // inspect never shows the secret again.
    let inspected = keel.ok(&["plugin", "inspect", "test-writer"]);
    assert!(!inspected.stdout.contains(&secret), "{}", inspected.stdout);
    assert!(
        inspected.stdout.contains("secret sealed"),
        "{}",
        inspected.stdout
    );
    let hooks = keel.json(&["plugin", "inspect", "test-writer"]);
    assert!(!hooks.to_string().contains(&secret), "{hooks}");
    assert_eq!(hooks["webhooks"][0]["has_secret"], true, "{hooks}");
    // Nor does the database hold it in the clear.
    let raw = std::fs::read(keel.home().join("keel.db")).unwrap();
    assert!(!raw.windows(64).any(|w| w == secret.as_bytes()));

    let (up, port) = start_up(&keel);
    let (status, body) = post_signed(port, PATH, &secret, br#"{"n":1}"#);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"job\""), "{body}");
    let (status, body) = post_signed(port, PATH, &secret, b"plain text, not JSON");
    assert_eq!(status, 202, "{body}");

    let bearer = format!("Bearer {secret}");
    let (status, body) = request(port, "POST", PATH, &[("Authorization", &bearer)], b"{}");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bearer secret is not accepted"), "{body}");
    let (status, body) = post_signed(port, PATH, "wrong", b"{}");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not match"), "{body}");
    let (ts, sig) = signed(&secret, unix_now() - 3600, b"{}");
    let (status, body) = request(
        port,
        "POST",
        PATH,
        &[("X-Keel-Timestamp", &ts), ("X-Keel-Signature", &sig)],
        b"{}",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("X-Keel-Timestamp"), "{body}");
    let (status, _) = post_signed(port, "/hooks/test-writer/nope", &secret, b"{}");
    assert_eq!(status, 404);
    let (status, body) = post_signed(port, PATH, &secret, &[b'x'; 200]);
    assert_eq!(status, 413, "{body}");
    let (status, _) = request(port, "GET", PATH, &[], b"");
    assert_eq!(status, 405);

    wait_done(&keel, 2);
    let (_, stderr) = stop(up);
    let jobs = keel.json(&["jobs", "list"]);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{stderr}");
    assert!(
        jobs.iter()
            .all(|j| j["cause"] == "webhook" && j["state"] == "done"),
        "{jobs:?}"
    );
    let inputs: Vec<serde_json::Value> = jobs
        .iter()
        .map(|j| serde_json::from_str(j["input"].as_str().unwrap()).unwrap())
        .collect();
    assert!(
        inputs.contains(&serde_json::json!({"hook": "ping", "body": {"n": 1}})),
        "{inputs:?}"
    );
    assert!(
        inputs.contains(&serde_json::json!({"hook": "ping", "body": "plain text, not JSON"})),
        "{inputs:?}"
    );
    // The writer echoes the webhook event it was woken by.
    assert_eq!(keel.records("test/item").len(), 2);
    // Accepted requests are audited; refused ones are counted per reason.
    let received: Vec<String> = keel
        .audit(&["--plugin", "webhook"])
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received, ["allowed", "allowed"]);
    let refused = &keel.json(&["plugin", "inspect", "test-writer"])["webhooks"][0]["refused"];
    assert_eq!(
        refused,
        &serde_json::json!({"unsigned": 1, "bad-signature": 1, "stale": 1, "too-large": 1}),
    );
    keel.ok(&["audit", "verify"]);
}

#[test]
fn m2_replayed_webhook_is_rejected() {
    let keel = Keel::new();
    let secret = install_hooked(&keel, 1000);
    let (up, port) = start_up(&keel);
    let body = br#"{"order":42}"#;
    let (ts, sig) = signed(&secret, unix_now(), body);
    let headers = [
        ("X-Keel-Timestamp", ts.as_str()),
        ("X-Keel-Signature", sig.as_str()),
    ];
    let (status, first) = request(port, "POST", PATH, &headers, body);
    assert_eq!(status, 202, "{first}");
    // The captured request, sent again byte for byte.
    let (status, again) = request(port, "POST", PATH, &headers, body);
    assert_eq!(status, 409, "{again}");
    assert!(again.contains("already received"), "{again}");
    // The host still serves: a new delivery (new timestamp) is accepted.
    let (status, body) = post_signed(port, PATH, &secret, br#"{"order":43}"#);
    // Within the same second the body differs, so the signature does too.
    assert_eq!(status, 202, "{body}");
    wait_done(&keel, 2);
    let (_, stderr) = stop(up);
    let jobs = keel.json(&["jobs", "list"]);
    let inputs: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["input"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(inputs.len(), 2, "{stderr}");
    assert_eq!(
        inputs.iter().filter(|i| i.contains("42")).count(),
        1,
        "{inputs:?}"
    );
    let refused = &keel.json(&["plugin", "inspect", "test-writer"])["webhooks"][0]["refused"];
    assert_eq!(refused, &serde_json::json!({"replay": 1}));
}

#[test]
fn m2_slow_client_blocks_no_other_request() {
    let keel = Keel::new();
    let secret = install_hooked(&keel, 10_000);
    let (up, port) = start_up(&keel);
    // An unauthenticated client announcing a body it never sends is refused
    // on its headers, without keel waiting for the body.
    let mut loris = TcpStream::connect(("127.0.0.1", port)).unwrap();
    loris
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    loris
        .write_all(
            format!("POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let started = Instant::now();
    let (status, body) = read_reply(loris);
    assert_eq!(status, 401, "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // One with well-formed signing headers that stalls in its body, and
    // one that never finishes its headers: both hold only themselves.
    let (ts, sig) = signed(&secret, unix_now(), b"never sent");
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stalled
        .write_all(
            format!(
                "POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Keel-Timestamp: {ts}\r\nX-Keel-Signature: {sig}\r\nContent-Length: 5000\r\n\r\nsome"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(format!("POST {PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, body) = post_signed(port, PATH, &secret, br#"{"prompt":true}"#);
    assert_eq!(status, 202, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an authenticated POST waited {:?} behind a slow client",
        started.elapsed()
    );
    // The stalled body is cut off at the request deadline.
    let (status, body) = read_reply(stalled);
    assert_eq!(status, 408, "{body}");
    drop(half);
    wait_done(&keel, 1);
    let (_, stderr) = stop(up);
    assert_eq!(
        keel.json(&["jobs", "list"]).as_array().unwrap().len(),
        1,
        "{stderr}"
    );
    let refused = &keel.json(&["plugin", "inspect", "test-writer"])["webhooks"][0]["refused"];
    assert_eq!(refused, &serde_json::json!({"unsigned": 1, "timeout": 1}));
}

#[test]
fn m2_rotated_secret_replaces_the_old_one() {
    let keel = Keel::new();
    let old = install_hooked(&keel, 1000);
    let rotated = keel.json(&["plugin", "webhook", "rotate", "test-writer", "ping"]);
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let missing = keel.fails(&["plugin", "webhook", "rotate", "test-writer", "nope"]);
    assert!(
        missing.stderr.contains("has no webhook `nope`"),
        "{}",
        missing.stderr
    );
    let (up, port) = start_up(&keel);
    let (status, _) = post_signed(port, PATH, &old, b"{}");
    assert_eq!(status, 401);
    let (status, body) = post_signed(port, PATH, &new, b"{}");
    assert_eq!(status, 202, "{body}");
    wait_done(&keel, 1);
    stop(up);
    let secrets: Vec<String> = keel
        .audit(&["--plugin", "operator"])
        .iter()
        .filter(|e| e["action"] == "webhook.secret")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert!(
        secrets
            .iter()
            .all(|d| !d.contains(&new) && !d.contains(&old))
    );
}
