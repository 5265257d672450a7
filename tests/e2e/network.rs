//! Plugins on the network under their grants: a real HTTP(S) server on
//! 127.0.0.1 (`servers/web.py`, with a certificate from a test authority
//! made by `openssl`), reached only through the endpoints the operator
//! bound. Every refusal and fault is checked for what the plugin is told,
//! what the audit says, and that a normal request works afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{Keel, Server, first_line};

/// The test web server, over TLS with `cert`/`key` when given.
pub fn web_server(tls: Option<(&Path, &Path)>, files: Option<&Path>) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/servers/web.py");
    let mut command = Command::new("python3");
    command.arg(script);
    if let Some((cert, key)) = tls {
        command.arg("--tls").arg(cert).arg(key);
    }
    if let Some(dir) = files {
        command.arg("--files").arg(dir);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for the test web server; run scripts/setup");
    let port = first_line(&mut child)
        .trim()
        .parse()
        .expect("the test web server did not start");
    Server {
        child,
        port,
        dir: tempfile::tempdir().unwrap(),
    }
}

fn fetch_dir() -> String {
    keel_test_artifacts::FETCH_DIR.to_string()
}

/// Runs the fetch plugin with `input`; its summary, parsed.
fn fetch(keel: &Keel, input: Value) -> Value {
    let run = keel.run_json("test-fetch", Some(&input.to_string()));
    assert_eq!(run["outcome"], "ok", "{run}");
    serde_json::from_str(run["summary"].as_str().unwrap()).unwrap()
}

fn net_entries(keel: &Keel) -> Vec<String> {
    keel.audit(&["--plugin", "test-fetch"])
        .into_iter()
        .filter(|e| e["action"].as_str().unwrap_or("").starts_with("net."))
        .map(|e| {
            format!(
                "{} {} {}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect()
}

fn installed(port: u16, bind: &str) -> Keel {
    let keel = Keel::new();
    keel.install_test_plugin(&fetch_dir(), &["--endpoint", &format!("web={bind}")]);
    let _ = port;
    keel
}

#[test]
fn a_plugin_reaches_its_endpoint_and_nothing_else() {
    let web = web_server(None, None);
    let base = format!("http://127.0.0.1:{}", web.port);
    let keel = installed(web.port, &format!("{base}/"));
    let ok = fetch(
        &keel,
        serde_json::json!({ "url": "web:/page", "keep": true }),
    );
    assert_eq!(ok["ok"]["status"], 200, "{ok}");
    assert_eq!(ok["ok"]["text"], "hello from the page");
    // The run's meters and the audit show the request, with its bytes.
    let runs = keel.json(&["runs", "list", "--plugin", "test-fetch"]);
    assert_eq!(runs[0]["bytes_in"], 19, "{runs}");
    let entries = net_entries(&keel);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries[0].starts_with(&format!(
            "net.request allowed GET {base}/page (endpoint web) -> 200, 19 bytes in, 0 out"
        )),
        "{entries:?}"
    );
    let listed = keel.ok(&["runs", "list"]).stdout;
    assert!(
        listed.contains("net        19 in         0 out"),
        "{listed}"
    );

    // Another host: refused with the manifest key to add, audited.
    let other = fetch(
        &keel,
        serde_json::json!({ "url": format!("http://127.0.0.2:{}/page", web.port) }),
    );
    assert_eq!(other["err"], "denied", "{other}");
    let message = other["message"].as_str().unwrap();
    assert!(
        message.contains("is not one of test-fetch@0.1.0's endpoints; add it under [capabilities.endpoints] in keel.toml"),
        "{message}"
    );
    // A redirect to it is refused the same way when followed.
    let to = format!("http://127.0.0.2:{}/page", web.port);
    let hop = fetch(
        &keel,
        serde_json::json!({ "url": format!("web:/redirect?to={to}"), "follow": true }),
    );
    assert_eq!(hop["err"], "denied", "{hop}");
    let entries = net_entries(&keel);
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("net.request allowed GET")
                && e.contains("/redirect (endpoint web) -> 302")),
        "{entries:?}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.starts_with("net.request denied GET http://127.0.0.2"))
            .count(),
        2,
        "{entries:?}"
    );
    // Still serving.
    let again = fetch(&keel, serde_json::json!({ "url": "web:/page" }));
    assert_eq!(again["ok"]["status"], 200, "{again}");
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_unless_the_address_is_bound() {
    let web = web_server(None, None);
    let keel = installed(web.port, &format!("http://localhost:{}/", web.port));
    let refused = fetch(&keel, serde_json::json!({ "url": "web:/page" }));
    assert_eq!(refused["err"], "denied", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("localhost resolves to"), "{message}");
    assert!(message.contains("not a public address"), "{message}");
    let entries = net_entries(&keel);
    assert!(
        entries[0].starts_with("net.request denied GET http://localhost:"),
        "{entries:?}"
    );
    // Bound as the literal address, the same server is reached.
    let keel = installed(web.port, &format!("http://127.0.0.1:{}/", web.port));
    assert_eq!(
        fetch(&keel, serde_json::json!({ "url": "web:/page" }))["ok"]["status"],
        200
    );
}

#[test]
fn oversized_stalled_and_broken_responses_end_cleanly() {
    let web = web_server(None, None);
    let keel = installed(web.port, &format!("http://127.0.0.1:{}/", web.port));
    let big = fetch(&keel, serde_json::json!({ "url": "web:/big" }));
    assert_eq!(big["err"], "limit", "{big}");
    let endless = fetch(&keel, serde_json::json!({ "url": "web:/endless" }));
    assert_eq!(endless["err"], "limit", "{endless}");
    let silent = fetch(
        &keel,
        serde_json::json!({ "url": "web:/silent", "timeout_ms": 500 }),
    );
    assert_eq!(silent["err"], "unavailable", "{silent}");
    let half = fetch(&keel, serde_json::json!({ "url": "web:/half" }));
    assert_eq!(half["err"], "unavailable", "{half}");
    // Without a timeout of its own, a silent server is cut off by the
    // run's deadline: the run ends, it does not hang.
    let started = std::time::Instant::now();
    let run = keel.run_json("test-fetch", Some(r#"{"url":"web:/silent"}"#));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{run}"
    );
    let entries = net_entries(&keel);
    let has = |s: &str| entries.iter().any(|e| e.contains(s));
    assert!(
        has("/big (endpoint web) -> 200, a body of 2147483648 bytes refused"),
        "{entries:?}"
    );
    assert!(
        has("/endless (endpoint web) -> body cut off past 16777216 bytes"),
        "{entries:?}"
    );
    assert!(
        has("/silent (endpoint web) -> no answer within the wait"),
        "{entries:?}"
    );
    assert!(
        has("/half (endpoint web) -> the body broke off"),
        "{entries:?}"
    );
    // Still serving.
    assert_eq!(
        fetch(&keel, serde_json::json!({ "url": "web:/page" }))["ok"]["status"],
        200
    );
}

#[test]
fn a_secret_goes_out_in_a_header_and_nowhere_else() {
    let web = web_server(None, None);
    let keel = installed(web.port, &format!("http://127.0.0.1:{}/", web.port));
    let value = "feed-token-5f1d3c";
    let mut set = keel.command(&["secret", "set", "token"]);
    set.stdin(Stdio::piped());
    let mut child = set.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let got = fetch(
        &keel,
        serde_json::json!({ "url": "web:/auth", "auth": "Bearer {{secret:token}}", "keep": true }),
    );
    let expected = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(format!("Bearer {value}").as_bytes()))
    };
    assert_eq!(got["ok"]["text"], expected, "{got}");
    // A secret it was not granted is refused before anything leaves.
    let other = fetch(
        &keel,
        serde_json::json!({ "url": "web:/auth", "auth": "{{secret:other}}" }),
    );
    assert_eq!(other["err"], "denied", "{other}");
    assert!(
        other["message"]
            .as_str()
            .unwrap()
            .contains("secret `other` is not granted"),
        "{other}"
    );
    assert_no_secret(&keel.home(), value);
}

/// No file of the home (database, lockfile, logs) holds `value`.
fn assert_no_secret(home: &Path, value: &str) {
    let mut stack: Vec<PathBuf> = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                assert!(
                    !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
                    "{} holds the secret",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn install_binds_endpoints_or_says_which_flag_is_missing() {
    let keel = Keel::new();
    let ran = keel.fails(&["plugin", "install", &fetch_dir()]);
    assert!(
        ran.stderr.contains(
            "needs endpoint `web` (http); bind it with `--endpoint web=https://HOST/PATH`"
        ),
        "{}",
        ran.stderr
    );
    let ran = keel.fails(&[
        "plugin",
        "install",
        &fetch_dir(),
        "--endpoint",
        "web=ftp://x.org/",
    ]);
    assert!(ran.stderr.contains("--endpoint web:"), "{}", ran.stderr);
    assert!(
        keel.json(&["plugin", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    keel.ok(&[
        "plugin",
        "install",
        &fetch_dir(),
        "--endpoint",
        "web=https://example.org/feeds",
        "--secret",
        "token=feed_token",
    ]);
    let shown = keel.ok(&["plugin", "inspect", "test-fetch"]).stdout;
    assert!(
        shown.contains("endpoint web (https) = https://example.org:443/feeds"),
        "{shown}"
    );
    assert!(
        shown.contains("secret token = stored secret feed_token"),
        "{shown}"
    );
    let lock = std::fs::read_to_string(keel.home().join("keel.lock")).unwrap();
    assert!(
        lock.contains("web = \"https://example.org:443/feeds\""),
        "{lock}"
    );
}
