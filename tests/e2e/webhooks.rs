//! Webhooks on `keel up --listen`: an authenticated POST (bearer secret or
//! HMAC signature) becomes an event and a job that hands the body to the
//! agent; a wrong secret, an unknown hook, an oversized body and a GET are
//! refused with the right status, and every request is audited.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

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
        .set_read_timeout(Some(Duration::from_secs(10)))
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

#[test]
fn authenticated_posts_run_the_plugin_and_the_rest_are_refused() {
    let keel = Keel::new();
    let dir = keel.variant(
        Path::new(artifacts::WRITER_DIR),
        "hooked",
        &[],
        "[[triggers]]\nwebhook = \"ping\"\nmax_bytes = 100\n",
    );
    keel.ok(&["plugin", "install", dir.to_str().unwrap()]);
    let hooks = &keel.json(&["plugin", "inspect", "test-writer"])["webhooks"];
    assert_eq!(hooks[0]["path"], "/hooks/test-writer/ping", "{hooks}");
    let secret = hooks[0]["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let up = keel
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
    assert!(ready, "keel up is not listening on {listen}");

    let path = "/hooks/test-writer/ping";
    let bearer = format!("Bearer {secret}");
    let (status, body) = request(
        port,
        "POST",
        path,
        &[("Authorization", &bearer)],
        br#"{"n":1}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"job\""), "{body}");
    let signed = b"plain text, not JSON";
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(signed);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let (status, _) = request(
        port,
        "POST",
        path,
        &[("X-Keel-Signature", &signature)],
        signed,
    );
    assert_eq!(status, 202);

    let (status, body) = request(
        port,
        "POST",
        path,
        &[("Authorization", "Bearer wrong")],
        b"{}",
    );
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("keel plugin inspect"), "{body}");
    let (status, _) = request(
        port,
        "POST",
        "/hooks/test-writer/nope",
        &[("Authorization", &bearer)],
        b"{}",
    );
    assert_eq!(status, 404);
    let (status, _) = request(
        port,
        "POST",
        path,
        &[("Authorization", &bearer)],
        &[b'x'; 200],
    );
    assert_eq!(status, 413);
    let (status, _) = request(port, "GET", path, &[], b"");
    assert_eq!(status, 405);

    for _ in 0..200 {
        if count(&keel, "done") == 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let received: Vec<String> = keel
        .audit(&["--plugin", "webhook"])
        .iter()
        .map(|e| e["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(received, ["allowed", "allowed", "denied", "limit"]);
    keel.ok(&["audit", "verify"]);
}
