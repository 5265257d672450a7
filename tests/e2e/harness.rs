//! A temporary keel home and a way to run the real binary against it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub use keel_test_artifacts as artifacts;

/// A fresh home in a temporary folder, removed when dropped.
pub struct Keel {
    pub dir: tempfile::TempDir,
}

/// What one `keel` invocation printed and returned.
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    fn from(out: Output) -> Ran {
        Ran {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_keel")
}

pub fn plugin_dir(name: &str) -> PathBuf {
    Path::new(artifacts::PLUGINS_DIR).join(name)
}

impl Keel {
    /// A new, initialised home.
    pub fn new() -> Keel {
        let keel = Keel {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        keel.ok(&["init"]);
        keel
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A folder inside the test's temp dir (created).
    pub fn folder(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// `keel ARGS --home HOME`. An install gets `--yes`: the tests play an
    /// operator who has read what the plugin asks for (the consent test
    /// runs without it).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args);
        if args.starts_with(&["plugin", "install"]) {
            cmd.arg("--yes");
        }
        cmd.arg("--home").arg(self.home()).env_remove("KEEL_HOME");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::from(self.command(args).output().expect("keel starts"))
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let ran = self.run(args);
        assert_eq!(
            ran.status, 0,
            "keel {args:?} failed\nstdout: {}\nstderr: {}",
            ran.stdout, ran.stderr
        );
        ran
    }

    /// Runs and asserts failure.
    pub fn fails(&self, args: &[&str]) -> Ran {
        let ran = self.run(args);
        assert_ne!(
            ran.status, 0,
            "keel {args:?} should fail\nstdout: {}",
            ran.stdout
        );
        ran
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut v: Vec<&str> = args.to_vec();
        v.push("--json");
        self.ok(&v).json()
    }

    /// Installs a test plugin from `tests/plugins/<name>`.
    pub fn install_test_plugin(&self, dir: &str, extra: &[&str]) {
        let mut args = vec!["plugin", "install", dir];
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    /// `keel run PLUGIN --input INPUT --json`, whatever the outcome.
    pub fn run_json(&self, plugin: &str, input: Option<&str>) -> Value {
        let mut args = vec!["run", plugin, "--json"];
        if let Some(i) = input {
            args.extend(["--input", i]);
        }
        let ran = self.run(&args);
        let v = ran.json();
        assert_eq!(
            ran.status == 0,
            v["outcome"] == "ok",
            "exit code and outcome disagree: {v}"
        );
        v
    }

    pub fn records(&self, kind: &str) -> Vec<Value> {
        self.json(&["records", "list", "--kind", kind, "--limit", "100000"])
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn audit(&self, filter: &[&str]) -> Vec<Value> {
        let mut args = vec!["audit"];
        args.extend_from_slice(filter);
        self.json(&args).as_array().unwrap().clone()
    }

    /// The home's SQLite file, for tests that tamper with it.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.home().join("keel.db")).unwrap()
    }
}

/// Writes `files` (relative path, contents) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// The `keel.toml` in `dir` without the lines setting any of `keys`, to
/// build variants of a test plugin's manifest.
pub fn manifest_without(dir: &Path, keys: &[&str]) -> String {
    std::fs::read_to_string(dir.join("keel.toml"))
        .unwrap()
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or("").trim();
            !keys.contains(&key)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Keel {
    /// Installs the first-party `outbox-file` channel with its folder bound
    /// to a new folder `outbox` (returned), plus `extra` install flags.
    pub fn install_outbox(&self, extra: &[&str]) -> PathBuf {
        let outbox = self.folder("outbox");
        let bind = format!("outbox={}", outbox.display());
        let channel = plugin_dir("outbox-file");
        let mut args = vec![
            "plugin",
            "install",
            channel.to_str().unwrap(),
            "--dir",
            &bind,
        ];
        args.extend_from_slice(extra);
        self.ok(&args);
        outbox
    }

    /// Installs the first-party `files` connector with `notes` bound.
    pub fn install_files(&self, notes: &Path) {
        let dir = format!("notes={}", notes.display());
        let files = plugin_dir("files");
        self.ok(&["plugin", "install", files.to_str().unwrap(), "--dir", &dir]);
    }
}

impl Keel {
    /// A copy of the plugin manifest in `src` under folder `name`, with
    /// `replace` applied, `extra` appended and its component path made
    /// absolute: a variant of a plugin to install.
    pub fn variant(
        &self,
        src: &Path,
        name: &str,
        replace: &[(&str, &str)],
        extra: &str,
    ) -> PathBuf {
        let mut text = std::fs::read_to_string(src.join("keel.toml")).unwrap();
        for (from, to) in replace {
            assert!(text.contains(from), "{} has no `{from}`", src.display());
            text = text.replace(from, to);
        }
        let text: Vec<String> = text
            .lines()
            .map(|l| match l.strip_prefix("component = \"") {
                Some(rel) => format!("component = \"{}/{rel}", src.display()),
                None => l.to_string(),
            })
            .collect();
        let dir = self.folder(name);
        std::fs::write(
            dir.join("keel.toml"),
            format!("{}\n{extra}", text.join("\n")),
        )
        .unwrap();
        dir
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status code of a plain HTTP GET on 127.0.0.1, or `None` when
/// nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The first line a child prints on its stdout (a server's port).
pub fn first_line(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut out = child.stdout.take().unwrap();
    let mut line = String::new();
    let mut byte = [0u8; 1];
    while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0] as char);
    }
    line
}

/// A server a test started on 127.0.0.1, with a folder of its own; stopped
/// by PID when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
