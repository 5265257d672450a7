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

/// A normal request after a refusal or fault works.
fn still_serves(keel: &Keel) {
    let page = fetch(keel, serde_json::json!({ "url": "web:/page" }));
    assert_eq!(page["ok"]["status"], 200, "{page}");
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

/// A home with the fetch plugin, its `web` endpoint bound to `bind` and
/// its `echo` endpoint to 127.0.0.1:`echo` (a port nothing listens on when
/// the test does not use it).
fn installed(echo: u16, bind: &str) -> Keel {
    let keel = Keel::new();
    let web = format!("web={bind}");
    let echo = format!("echo=127.0.0.1:{echo}");
    keel.install_test_plugin(&fetch_dir(), &["--endpoint", &web, "--endpoint", &echo]);
    keel
}

/// A line echo server on 127.0.0.1.
fn echo_server() -> Server {
    let script = r#"
import socketserver
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"echo: " + self.rfile.readline())
srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for the echo server; run scripts/setup");
    let port = first_line(&mut child)
        .trim()
        .parse()
        .expect("the echo server did not start");
    Server {
        child,
        port,
        dir: tempfile::tempdir().unwrap(),
    }
}

#[test]
fn tcp_reaches_a_bound_endpoint_and_no_other_address() {
    let echo = echo_server();
    let other = echo_server();
    let keel = installed(echo.port, "http://127.0.0.1:9/");
    let said = fetch(
        &keel,
        serde_json::json!({ "tcp": "echo", "send": "hello\n" }),
    );
    assert_eq!(said["ok"]["line"], "echo: hello", "{said}");
    let to = format!("127.0.0.1:{}", other.port);
    let refused = fetch(&keel, serde_json::json!({ "tcp_to": to }));
    assert_eq!(refused["err"], "denied", "{refused}");
    let entries = net_entries(&keel);
    let allowed = format!("net.connect allowed connect 127.0.0.1:{}", echo.port);
    assert!(
        entries.iter().any(|e| e.starts_with(&allowed)),
        "{entries:?}"
    );
    let denied = format!("net.connect denied connect 127.0.0.1:{}", other.port);
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with(&denied)
                && e.contains("is not one of test-fetch@0.1.0's endpoints")),
        "{entries:?}"
    );
    // Still serving.
    let again = fetch(
        &keel,
        serde_json::json!({ "tcp": "echo", "send": "again\n" }),
    );
    assert_eq!(again["ok"]["line"], "echo: again", "{again}");
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
    still_serves(&keel);
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
    still_serves(&keel);
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
    // A protocol that sends the credential itself reads it by name.
    let read = fetch(&keel, serde_json::json!({ "secret": "token" }));
    assert_eq!(read["ok"]["len"], value.len(), "{read}");
    let refused = fetch(&keel, serde_json::json!({ "secret": "other" }));
    assert_eq!(refused["err"], "denied", "{refused}");
    let reads: Vec<String> = keel
        .audit(&["--plugin", "test-fetch"])
        .into_iter()
        .filter(|e| e["action"] == "secret.read")
        .map(|e| {
            format!(
                "{} {}",
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0], "allowed token");
    assert!(
        reads[1].starts_with("denied test-fetch@0.1.0 is not granted secret `other`"),
        "{reads:?}"
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
    let echo = ["--endpoint", "echo=127.0.0.1:9"];
    let ran = keel.fails(&["plugin", "install", &fetch_dir(), echo[0], echo[1]]);
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
        "web=https://x.org/",
    ]);
    assert!(
        ran.stderr
            .contains("needs endpoint `echo` (tcp); bind it with `--endpoint echo=HOST:PORT`"),
        "{}",
        ran.stderr
    );
    let ran = keel.fails(&[
        "plugin",
        "install",
        &fetch_dir(),
        echo[0],
        echo[1],
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
        echo[0],
        echo[1],
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

fn rss(items: &[(&str, &str, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(guid, title, text)| {
            format!("<item><guid>{guid}</guid><title>{title}</title><link>https://example.org/{guid}</link><description>&lt;p&gt;{text}&lt;/p&gt;</description></item>")
        })
        .collect();
    format!(
        "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>News</title>{items}</channel></rss>"
    )
}

fn sync_counts(run: &Value) -> (u64, u64, u64) {
    let s = &run["sync"];
    (
        s["created"].as_u64().unwrap(),
        s["updated"].as_u64().unwrap(),
        s["unchanged"].as_u64().unwrap(),
    )
}

#[test]
fn the_feed_connector_keeps_each_item_once_and_reports_bad_feeds() {
    let files = tempfile::tempdir().unwrap();
    let feed = files.path().join("feed.xml");
    std::fs::write(
        &feed,
        rss(&[
            ("a", "One", "first"),
            ("b", "Two", "second"),
            ("c", "Three", "third"),
        ]),
    )
    .unwrap();
    let web = web_server(None, Some(files.path()));
    let url = format!("http://127.0.0.1:{}/file/feed.xml", web.port);
    let keel = Keel::new();
    let feed_dir = crate::harness::plugin_dir("feed").display().to_string();
    keel.install_test_plugin(&feed_dir, &["--endpoint", &format!("feed={url}")]);
    let first = keel.run_json("feed", None);
    assert_eq!(sync_counts(&first), (3, 0, 0), "{first}");
    assert!(first["bytes_in"].as_u64().unwrap() > 300, "{first}");
    let docs = keel.records("core/document");
    assert_eq!(docs.len(), 3);
    let body = &docs.iter().find(|d| d["body"]["title"] == "One").unwrap()["body"];
    assert_eq!(body["url"], "https://example.org/a");
    assert_eq!(body["text"].as_str().unwrap().trim(), "first");
    // Unchanged: the server answers 304 to the cursor's ETag.
    let second = keel.run_json("feed", None);
    assert_eq!(sync_counts(&second), (0, 0, 0), "{second}");
    let entries: Vec<Value> = keel
        .audit(&["--plugin", "feed"])
        .into_iter()
        .filter(|e| e["action"] == "net.request")
        .collect();
    assert!(
        entries[1]["detail"].as_str().unwrap().contains("-> 304"),
        "{entries:?}"
    );
    // One item changed, one new, one gone from the feed (kept as it was).
    std::fs::write(
        &feed,
        rss(&[
            ("a", "One", "first, edited"),
            ("b", "Two", "second"),
            ("d", "Four", "fourth"),
        ]),
    )
    .unwrap();
    let third = keel.run_json("feed", None);
    assert_eq!(sync_counts(&third), (1, 1, 1), "{third}");
    assert_eq!(keel.records("core/document").len(), 4);
    // A malformed feed is `invalid` and writes nothing.
    std::fs::write(&feed, "<html><body>moved</body></html>").unwrap();
    let bad = keel.run_json("feed", None);
    assert_eq!(bad["outcome"], "error", "{bad}");
    assert_eq!(bad["error"], "invalid", "{bad}");
    assert!(
        bad["detail"]
            .as_str()
            .unwrap()
            .contains("is not an RSS, Atom or JSON feed"),
        "{bad}"
    );
    assert_eq!(keel.records("core/document").len(), 4);
    // A server error is `unavailable`.
    let failing = Keel::new();
    let status = format!("http://127.0.0.1:{}/status/503", web.port);
    failing.install_test_plugin(&feed_dir, &["--endpoint", &format!("feed={status}")]);
    let down = failing.run_json("feed", None);
    assert_eq!(down["error"], "unavailable", "{down}");
    assert!(
        down["detail"].as_str().unwrap().contains("answered 503"),
        "{down}"
    );
    // And the feed is read again once it is whole.
    std::fs::write(
        &feed,
        rss(&[("a", "One", "first, edited"), ("e", "Five", "fifth")]),
    )
    .unwrap();
    let back = keel.run_json("feed", None);
    assert_eq!(sync_counts(&back), (1, 0, 1), "{back}");
}

/// A test authority and certificates for 127.0.0.1 made by `openssl` in
/// `dir`: `ca.pem`, a good `leaf.pem`/`leaf.key`, an `expired.pem` for the
/// same key, and `stranger.pem`/`stranger.key` from an authority nobody
/// trusts.
pub fn certificates(dir: &Path) {
    let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect(
            "`openssl` is not installed; run scripts/setup (it runs `apt-get install -y openssl`)",
        );
    let run = |args: &[&str]| {
        let out = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let authority = |name: &str, key: &str, pem: &str| {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", key, "-out", pem, "-days", "2", "-subj", name]);
        run(&args);
    };
    authority("/CN=keel test authority", "ca.key", "ca.pem");
    authority("/CN=stranger authority", "other.key", "other.pem");
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let sign = |ca: &str, key: &str, out: &str| {
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            ca,
            "-CAkey",
            key,
            "-CAcreateserial",
            "-out",
            out,
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
    };
    sign("ca.pem", "ca.key", "leaf.pem");
    sign("other.pem", "other.key", "stranger.pem");
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\ncertificate = ca.pem\nprivate_key = ca.key\nserial = serial\ndefault_md = sha256\npolicy = any\n[any]\ncommonName = supplied\n",
    )
    .unwrap();
    run(&[
        "ca",
        "-batch",
        "-config",
        "ca.cnf",
        "-in",
        "leaf.csr",
        "-out",
        "expired.pem",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-extfile",
        "leaf.ext",
    ]);
}

#[test]
fn tls_is_verified_against_the_operators_authority() {
    let certs = tempfile::tempdir().unwrap();
    let c = certs.path();
    certificates(c);
    let good = web_server(Some((&c.join("leaf.pem"), &c.join("leaf.key"))), None);
    let expired = web_server(Some((&c.join("expired.pem"), &c.join("leaf.key"))), None);
    let stranger = web_server(Some((&c.join("stranger.pem"), &c.join("leaf.key"))), None);
    let keel = installed(good.port, &format!("https://127.0.0.1:{}/", good.port));
    // Without the operator's authority the server is not trusted.
    let untrusted = fetch(&keel, serde_json::json!({ "url": "web:/page" }));
    assert_eq!(untrusted["err"], "unavailable", "{untrusted}");
    assert!(
        untrusted["message"]
            .as_str()
            .unwrap()
            .contains("TLS certificate"),
        "{untrusted}"
    );
    std::fs::copy(c.join("ca.pem"), keel.home().join("ca.pem")).unwrap();
    let trusted = fetch(&keel, serde_json::json!({ "url": "web:/page" }));
    assert_eq!(trusted["ok"]["status"], 200, "{trusted}");
    for (server, why) in [(&expired, "expired"), (&stranger, "UnknownIssuer")] {
        let keel = installed(server.port, &format!("https://127.0.0.1:{}/", server.port));
        std::fs::copy(c.join("ca.pem"), keel.home().join("ca.pem")).unwrap();
        let refused = fetch(&keel, serde_json::json!({ "url": "web:/page" }));
        assert_eq!(refused["err"], "unavailable", "{refused}");
        let entries = net_entries(&keel);
        assert!(
            entries[0].contains("TLS failed") && entries[0].contains(why),
            "{entries:?}"
        );
    }
}

/// A plugin in another language reaches the `web` endpoint with its own
/// HTTP client (CPython's urllib over sockets, JavaScript's fetch over
/// wasi:http), and is refused another host with the refusal audited as
/// `refusal` (`net.connect` or `net.request`).
fn a_language_reaches_its_endpoint(dir: &str, id: &str, refusal: &str) {
    let web = web_server(None, None);
    let keel = Keel::new();
    let bind = format!("web=http://127.0.0.1:{}/", web.port);
    keel.install_test_plugin(dir, &["--endpoint", &bind]);
    let run = |input: Value| -> Value {
        let ran = keel.run_json(id, Some(&input.to_string()));
        assert_eq!(ran["outcome"], "ok", "{ran}");
        serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap()
    };
    let page = run(serde_json::json!({ "path": "/page" }));
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["text"], "hello from the page");
    let other = run(serde_json::json!({ "url": format!("http://127.0.0.2:{}/page", web.port) }));
    assert!(
        other["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{other}"
    );
    let denied: Vec<Value> = keel
        .audit(&["--plugin", id])
        .into_iter()
        .filter(|e| e["action"] == refusal && e["outcome"] == "denied")
        .collect();
    assert!(
        denied
            .iter()
            .any(|e| e["detail"].as_str().unwrap().contains("127.0.0.2")),
        "{denied:?}"
    );
}

#[test]
fn python_reaches_its_endpoint_with_urllib_and_nothing_else() {
    let dir = keel_test_artifacts::PY_FETCH_DIR;
    a_language_reaches_its_endpoint(dir, "test-py-fetch", "net.connect");
}

#[test]
fn javascript_reaches_its_endpoint_with_fetch_and_nothing_else() {
    let dir = keel_test_artifacts::JS_FETCH_DIR;
    a_language_reaches_its_endpoint(dir, "test-js-fetch", "net.request");
}
