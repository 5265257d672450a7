//! Plugins through an OCI registry and over HTTPS: a real registry
//! (Debian's `docker-registry`, the CNCF distribution server) and a real
//! TLS server on 127.0.0.1, started and stopped here. What keel pushes is
//! read back by an independent client (`skopeo`) so the layout is standard.
//! Each refusal is checked for its message and for leaving nothing
//! installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Keel, Server, free_port, http_status, plugin_dir};

/// A program the tests need from Debian, or a panic naming the command
/// that installs it.
fn needs(program: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed; run scripts/setup (it runs `apt-get install -y docker-registry skopeo openssl`)"
    );
}

/// A real OCI registry on 127.0.0.1 with its storage in a temporary folder.
fn registry() -> Server {
    let bin = needs("docker-registry");
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_status(port, "/v2/") == Some(200) {
                return server;
            }
            if server.child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = server.child.kill();
    }
    panic!("docker-registry did not start on 127.0.0.1");
}

/// An HTTPS server for the files in `dir`, with a certificate for
/// 127.0.0.1 from a test authority; returns the server and the authority's
/// certificate file (for `SSL_CERT_FILE`).
fn https_server(dir: &Path) -> (Server, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    crate::network::certificates(t);
    let script = r#"
import functools, http.server, ssl, sys
cert, key, root = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
handler.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(t.join("leaf.pem"))
        .arg(t.join("leaf.key"))
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for the HTTPS test server");
    let port: u16 = crate::harness::first_line(&mut child)
        .trim()
        .parse()
        .expect("the HTTPS server did not start");
    let ca = t.join("ca.pem");
    (
        Server {
            child,
            port,
            dir: tmp,
        },
        ca,
    )
}

/// A TCP proxy to `upstream` that cuts every blob download longer than 10
/// KB off halfway, as a registry whose connection drops mid-blob. It
/// serves until the test ends.
fn dropping_proxy(upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            std::thread::spawn(move || relay(client, upstream));
        }
    });
    port
}

/// Serves one client connection, one request at a time, each on a fresh
/// upstream connection.
fn relay(mut client: TcpStream, upstream: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        // The request head (pulls carry no body).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match client.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let is_blob = text.lines().next().is_some_and(|l| l.contains("/blobs/"));
        let mut request: Vec<String> = text
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
            .map(str::to_string)
            .collect();
        request.push("Connection: close".into());
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        let _ = up.write_all(format!("{}\r\n\r\n", request.join("\r\n")).as_bytes());
        let mut response = Vec::new();
        let _ = up.read_to_end(&mut response);
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |p| p + 4);
        let body = response.len() - body_at;
        if is_blob && body > 10_000 {
            let _ = client.write_all(&response[..body_at + body / 2]);
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

/// An install of `source` that fails saying `says`, installs nothing and
/// leaves no lockfile entry.
fn refused(keel: &Keel, source: &str, extra: &[&str], says: &str) {
    crate::packages::refused_source(keel, source, extra, says);
    assert!(
        !keel.home().join("keel.lock").exists()
            || !std::fs::read_to_string(keel.home().join("keel.lock"))
                .unwrap()
                .contains("todo"),
        "the lockfile names todo"
    );
}

/// The todo plugin packed and signed by a new key `me` in `author`'s home:
/// the package, its digest, and the public key.
fn signed_todo(author: &Keel) -> (PathBuf, String, String) {
    let public = author.ok(&["key", "generate", "--name", "me"]).stdout;
    let package = author.folder("out").join("todo.keel");
    let packed = author.ok(&[
        "plugin",
        "pack",
        plugin_dir("todo").to_str().unwrap(),
        "-o",
        package.to_str().unwrap(),
    ]);
    let digest = packed.stdout.split_whitespace().last().unwrap().to_string();
    author.ok(&["plugin", "sign", package.to_str().unwrap(), "--key", "me"]);
    (package, digest, public.trim().to_string())
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = Command::new(needs("skopeo"))
        .args(["inspect", "--tls-verify=false", "--raw"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_signed_package_goes_through_a_registry_and_installs_only_when_trusted() {
    let registry = registry();
    let author = Keel::new();
    let (package, digest, public) = signed_todo(&author);
    let reference = format!("oci://127.0.0.1:{}/keel/todo:0.1.0", registry.port);
    let pushed = author.ok(&["plugin", "push", package.to_str().unwrap(), &reference]);
    let manifest_digest = pushed.stdout.trim().rsplit('@').next().unwrap().to_string();
    assert!(manifest_digest.starts_with("sha256:"), "{}", pushed.stdout);

    // An independent client reads a standard Wasm artifact: the component
    // as an application/wasm layer, each file named.
    let docker = format!("docker://127.0.0.1:{}/keel/todo:0.1.0", registry.port);
    let manifest = skopeo(&[&docker]);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    let titles: Vec<&str> = layers
        .iter()
        .map(|l| {
            l["annotations"]["org.opencontainers.image.title"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        titles,
        ["component.wasm", "keel.toml", "signature.json"],
        "{manifest}"
    );
    let component = std::fs::read(
        plugin_dir("todo").join(
            toml::from_str::<toml::Value>(
                &std::fs::read_to_string(plugin_dir("todo").join("keel.toml")).unwrap(),
            )
            .unwrap()["plugin"]["component"]
                .as_str()
                .unwrap(),
        ),
    )
    .unwrap();
    assert_eq!(layers[0]["size"], component.len());
    assert_eq!(manifest["annotations"]["io.keel.package.digest"], digest);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "todo"
    );
    let config = skopeo(&["--config", &docker]);
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["layerDigests"].as_array().unwrap().len(), 3);
    assert_eq!(
        config["component"]["exports"],
        serde_json::json!(["handle"])
    );
    let imports = config["component"]["imports"].to_string();
    assert!(imports.contains("keel:host/records@0.1.0"), "{config}");
    assert!(!imports.contains("\"trigger\""), "{config}");

    // Another home refuses the package until it trusts the author's key.
    let operator = Keel::new();
    refused(&operator, &reference, &[], "which is not trusted");
    operator.ok(&["trust", "add", &public, "--name", "me", "--for", "todo"]);
    refused(
        &operator,
        &reference,
        &[
            "--digest",
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        ],
        "not the pinned sha256:1111",
    );
    operator.ok(&["plugin", "install", &reference, "--digest", &digest]);
    let list = operator.json(&["plugin", "list"]);
    assert_eq!(list[0]["id"], "todo");
    assert_eq!(list[0]["version"], "0.1.0");
    assert_eq!(list[0]["package_digest"], digest);
    assert_eq!(list[0]["signer"], format!("me ({public})"));
    assert_eq!(list[0]["source"], reference);
    assert_eq!(list[0]["grant"]["capabilities"]["write"][0], "core/task");
    let lock = std::fs::read_to_string(operator.home().join("keel.lock")).unwrap();
    assert!(lock.contains(&reference), "{lock}");

    // By manifest digest too; a wrong one does not exist.
    let by_digest = format!(
        "oci://127.0.0.1:{}/keel/todo@{manifest_digest}",
        registry.port
    );
    let pinned = Keel::new();
    pinned.ok(&["trust", "add", &public, "--name", "me", "--for", "todo"]);
    pinned.ok(&["plugin", "install", &by_digest]);
    assert_eq!(
        pinned.json(&["plugin", "list"])[0]["package_digest"],
        digest
    );
    let unknown = format!(
        "oci://127.0.0.1:{}/keel/todo@sha256:{}",
        registry.port,
        "2".repeat(64)
    );
    refused(
        &Keel::new(),
        &unknown,
        &[],
        "does not exist in the registry",
    );

    // The installed plugin works like one installed from a folder.
    let notes = operator.folder("notes");
    std::fs::write(notes.join("a.md"), "TODO: ship it\n").unwrap();
    operator.install_files(&notes);
    operator.ok(&["run", "files"]);
    operator.ok(&["run", "todo"]);
    assert_eq!(operator.records("core/task").len(), 1);
    operator.ok(&["audit", "verify"]);
}

#[test]
fn missing_references_dropped_connections_and_bad_names_install_nothing() {
    let registry = registry();
    let author = Keel::new();
    let (package, _, public) = signed_todo(&author);
    let reference = format!("oci://127.0.0.1:{}/keel/todo:0.1.0", registry.port);
    author.ok(&["plugin", "push", package.to_str().unwrap(), &reference]);

    let operator = Keel::new();
    operator.ok(&["trust", "add", &public, "--name", "me", "--for", "todo"]);
    refused(
        &operator,
        &format!("oci://127.0.0.1:{}/keel/todo:9.9.9", registry.port),
        &[],
        &format!(
            "oci://127.0.0.1:{}/keel/todo:9.9.9 does not exist in the registry",
            registry.port
        ),
    );
    refused(
        &operator,
        &format!("oci://127.0.0.1:{}/keel/nothing:0.1.0", registry.port),
        &[],
        "does not exist in the registry",
    );
    refused(
        &operator,
        &format!("oci://127.0.0.1:{}/keel/todo", registry.port),
        &[],
        "is not an OCI reference; write oci://HOST[:PORT]/REPO:TAG",
    );
    // Nothing listens on this port.
    refused(
        &operator,
        &format!("oci://127.0.0.1:{}/keel/todo:0.1.0", free_port()),
        &[],
        "cannot reach the registry at 127.0.0.1:",
    );

    // The connection drops halfway through the component's blob.
    let proxy = dropping_proxy(registry.port);
    refused(
        &operator,
        &format!("oci://127.0.0.1:{proxy}/keel/todo:0.1.0"),
        &[],
        "the download of component.wasm from",
    );
    let out = operator.fails(&[
        "plugin",
        "install",
        &format!("oci://127.0.0.1:{proxy}/keel/todo:0.1.0"),
    ]);
    assert!(out.stderr.contains("broke off after"), "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing was installed"),
        "{}",
        out.stderr
    );

    // A repository name the registry would not take is refused by keel
    // before anything is sent.
    let out = Keel::new().fails(&[
        "plugin",
        "push",
        package.to_str().unwrap(),
        &format!("oci://127.0.0.1:{}/keel/Todo:0.1.0", registry.port),
    ]);
    assert!(
        out.stderr.contains("is not an OCI reference"),
        "{}",
        out.stderr
    );
    // The registry was left as it was: the original still installs.
    operator.ok(&["plugin", "install", &reference]);
}

#[test]
fn a_plugin_installed_from_a_registry_updates_from_its_tag() {
    let registry = registry();
    let author = Keel::new();
    author.ok(&["key", "generate", "--name", "me"]);
    let public = author.ok(&["key", "list"]).stdout;
    let public = public
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .unwrap()
        .to_string();
    let writer = Path::new(crate::harness::artifacts::WRITER_DIR);
    let reference = format!("oci://127.0.0.1:{}/keel/writer:stable", registry.port);
    let publish = |version: &str, write: &str| {
        let dir = author.variant(
            writer,
            &format!("writer-{version}"),
            &[
                ("version = \"0.1.0\"", &format!("version = \"{version}\"")),
                ("write = [\"test/item\"]", write),
            ],
            "",
        );
        let package = author.folder("out").join(format!("writer-{version}.keel"));
        author.ok(&[
            "plugin",
            "pack",
            dir.to_str().unwrap(),
            "-o",
            package.to_str().unwrap(),
        ]);
        author.ok(&["plugin", "sign", package.to_str().unwrap(), "--key", "me"]);
        author.ok(&["plugin", "push", package.to_str().unwrap(), &reference]);
    };
    publish("0.1.0", "write = [\"test/item\"]");

    let operator = Keel::new();
    operator.ok(&[
        "trust",
        "add",
        &public,
        "--name",
        "me",
        "--for",
        "test-writer",
    ]);
    operator.ok(&["plugin", "install", &reference]);
    let out = operator.ok(&["plugin", "update", "test-writer"]);
    assert!(out.stdout.contains("is up to date"), "{}", out.stdout);

    // The tag moves to a version that asks for more: asked again.
    publish("0.2.0", "write = [\"test/item\", \"test/other\"]");
    let out = operator.fails(&["plugin", "update", "test-writer"]);
    assert!(out.stderr.contains("+ write: test/other"), "{}", out.stderr);
    let version = |k: &Keel| k.json(&["plugin", "inspect", "test-writer"])["version"].clone();
    assert_eq!(version(&operator), "0.1.0");
    operator.ok(&["plugin", "update", "test-writer", "--yes"]);
    assert_eq!(version(&operator), "0.2.0");
    assert_eq!(
        operator.json(&["plugin", "list"])[0]["source"],
        reference.as_str()
    );
    operator.ok(&["plugin", "rollback", "test-writer"]);
    assert_eq!(version(&operator), "0.1.0");
}

#[test]
fn packages_install_from_https_urls() {
    let author = Keel::new();
    let (package, digest, public) = signed_todo(&author);
    let served = author.folder("served");
    std::fs::copy(&package, served.join("todo-0.1.0.keel")).unwrap();
    std::fs::write(served.join("broken.keel"), b"not a package at all").unwrap();
    let (server, ca) = https_server(&served);

    let operator = Keel::new();
    operator.ok(&["trust", "add", &public, "--name", "me", "--for", "todo"]);
    let url = format!("https://127.0.0.1:{}/todo-0.1.0.keel", server.port);
    // Without the test authority the certificate is not trusted.
    refused(&operator, &url, &[], "cannot reach https://127.0.0.1:");
    let with_ca = |args: &[&str]| {
        operator
            .command(args)
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap()
    };
    let missing = format!("https://127.0.0.1:{}/nothing.keel", server.port);
    let out = with_ca(&["plugin", "install", &missing]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 404 Not Found"), "{stderr}");
    let broken = format!("https://127.0.0.1:{}/broken.keel", server.port);
    let out = with_ca(&["plugin", "install", &broken]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a keel package"), "{stderr}");
    assert_eq!(crate::packages::installed(&operator), 0);

    let out = with_ca(&["plugin", "install", &url, "--digest", &digest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = operator.json(&["plugin", "list"]);
    assert_eq!(list[0]["source"], url);
    assert_eq!(list[0]["package_digest"], digest);
    assert!(
        !operator
            .audit(&["--plugin", "operator"])
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("/tmp/keel-fetch")),
        "the temporary download path was recorded"
    );
}
