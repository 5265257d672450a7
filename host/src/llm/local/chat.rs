//! The local chat model, SmolLM2-135M-Instruct, run with candle from the
//! GGUF file in `DIR/smollm2/model.gguf`.
//!
//! The tokenizer is built from the GGUF's own vocabulary and merges (a
//! byte-level BPE that splits digits one by one, as the model was trained);
//! prompts use the model's ChatML template, with each message's text
//! tokenized as plain text, so a message cannot smuggle in a special token.
//! The file's 4-bit weights are converted once to 8-bit blocks
//! (`model.q8_0.gguf` beside it), which candle multiplies with SIMD on the
//! CPU: about three times the speed of the original blocks here.
//!
//! Temperature 0 decodes greedily; above it, tokens are sampled (top-p
//! 0.9). Answers with a schema are steered by [`super::guide`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::Tokenizer;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::{byte_level::ByteLevel, digits::Digits, sequence::Sequence};

use super::guide::{self, Node, Steer};
use super::{Loaded, once};
use crate::llm::{Answer, ChatRequest, Failure};

/// The model's folder and file under the weights directory.
const FOLDER: &str = "smollm2";
const FILE: &str = "model.gguf";
const CONVERTED: &str = "model.q8_0.gguf";
/// The system prompt the model's template uses when a request has none.
const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
/// Penalty on recently written tokens in free text (the small model loops
/// without one), and how far back it looks.
const REPEAT_PENALTY: f32 = 1.1;
const REPEAT_WINDOW: usize = 64;

/// A loaded model and what decoding needs beside it.
pub struct Chat {
    model: ModelWeights,
    tokenizer: Tokenizer,
    /// Each token's bytes.
    pieces: Vec<Vec<u8>>,
    /// Control tokens (`<|im_start|>`, `<|endoftext|>`, …).
    special: Vec<bool>,
    im_start: u32,
    im_end: u32,
    /// Tokens the model can attend to.
    context: usize,
}

type Shared = Arc<Mutex<Chat>>;

static MODELS: LazyLock<Loaded<Mutex<Chat>>> = LazyLock::new(Default::default);

/// The bytes behind each character of a byte-level BPE token (GPT-2's
/// table: printable Latin-1 stands for itself, every other byte for a
/// character from U+0100 on, in byte order).
fn byte_table() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = HashMap::new();
    let mut next = 256u32;
    for b in 0..=255u8 {
        if printable(b) {
            table.insert(char::from(b), b);
        } else {
            table.insert(char::from_u32(next).unwrap_or('\u{FFFD}'), b);
            next += 1;
        }
    }
    table
}

fn strings(content: &gguf_file::Content, key: &str) -> Result<Vec<String>, String> {
    match content.metadata.get(key) {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| e.to_string()))
            .collect(),
        _ => Err(format!("the file has no `{key}` list")),
    }
}

fn number(content: &gguf_file::Content, key: &str) -> Option<u32> {
    content.metadata.get(key).and_then(|v| v.to_u32().ok())
}

/// The GGUF converted to 8-bit blocks, made once beside the original.
fn converted(path: &Path) -> Result<PathBuf, String> {
    let target = path.with_file_name(CONVERTED);
    let fresh = |t: &Path| -> Option<bool> {
        Some(t.metadata().ok()?.modified().ok()? >= path.metadata().ok()?.modified().ok()?)
    };
    if fresh(&target) == Some(true) {
        return Ok(target);
    }
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| e.to_string())?;
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| e.to_string())?;
        let dims = t.shape().dims().to_vec();
        let convert = dims.len() == 2
            && dims[1] % GgmlDType::Q8_0.block_size() == 0
            && !matches!(t.dtype(), GgmlDType::Q8_0 | GgmlDType::F32);
        let t = if convert {
            let full = t.dequantize(&Device::Cpu).map_err(|e| e.to_string())?;
            QTensor::quantize(&full, GgmlDType::Q8_0).map_err(|e| e.to_string())?
        } else {
            t
        };
        tensors.push((name.clone(), t));
    }
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    gguf_file::write(staged.as_file_mut(), &metadata, &tensors).map_err(|e| e.to_string())?;
    staged.persist(&target).map_err(|e| e.to_string())?;
    Ok(target)
}

/// The byte-level BPE tokenizer the GGUF file describes.
fn tokenizer_of(content: &gguf_file::Content, tokens: &[String]) -> Result<Tokenizer, String> {
    let merges = strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("the merge `{m}` is not two tokens"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

fn load_from(path: &Path) -> Result<Chat, String> {
    // A folder keel may not write to keeps the original (slower) blocks.
    let path = converted(path).unwrap_or_else(|e| {
        tracing::warn!(
            "cannot keep the 8-bit copy of {} ({e}); using the original, more slowly",
            path.display()
        );
        path.to_path_buf()
    });
    let mut file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| e.to_string())?;
    let tokens = strings(&content, "tokenizer.ggml.tokens")?;
    let tokenizer = tokenizer_of(&content, &tokens)?;
    let types: Vec<i64> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| v.to_i32().map(i64::from).unwrap_or(1))
            .collect(),
        _ => vec![1; tokens.len()],
    };
    let table = byte_table();
    let special: Vec<bool> = (0..tokens.len())
        .map(|i| types.get(i).is_some_and(|&t| t == 3))
        .collect();
    let pieces = tokens
        .iter()
        .zip(&special)
        .map(|(t, &s)| {
            if s {
                Vec::new()
            } else {
                t.chars()
                    .map(|c| table.get(&c).copied().unwrap_or(b'?'))
                    .collect()
            }
        })
        .collect();
    let id = |name: &str| {
        tokens
            .iter()
            .position(|t| t == name)
            .map(|i| i as u32)
            .ok_or_else(|| format!("the vocabulary has no `{name}`"))
    };
    let im_start = id("<|im_start|>")?;
    let im_end = id("<|im_end|>")?;
    let context = number(&content, "llama.context_length").unwrap_or(2048) as usize;
    let model =
        ModelWeights::from_gguf(content, &mut file, &Device::Cpu).map_err(|e| e.to_string())?;
    Ok(Chat {
        model,
        tokenizer,
        pieces,
        special,
        im_start,
        im_end,
        context,
    })
}

/// The chat model from `dir`, loaded once per process.
pub fn load(dir: &Path, model: &str) -> Result<Shared, Failure> {
    once(&MODELS, dir, FOLDER, model, |path| {
        load_from(&path.join(FILE)).map(Mutex::new)
    })
}

/// One decoding session: the model's cache holds the prompt and everything
/// fed since; `logits` are its scores for the next token.
struct Session<'a> {
    chat: &'a mut Chat,
    pos: usize,
    logits: Vec<f32>,
    /// Tokens written or fed after the prompt.
    written: Vec<u32>,
    budget: usize,
    deadline: Instant,
    sampler: LogitsProcessor,
    greedy: bool,
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("the local model failed: {e}")
}

impl<'a> Session<'a> {
    /// A session for `req` with an empty cache: greedy at temperature 0,
    /// otherwise sampling with `seed`.
    fn new(chat: &'a mut Chat, req: &ChatRequest, deadline: Instant, seed: u64) -> Session<'a> {
        let greedy = req.temperature <= 0.0;
        Session {
            chat,
            pos: 0,
            logits: Vec::new(),
            written: Vec::new(),
            budget: req.max_tokens as usize,
            deadline,
            sampler: LogitsProcessor::new(
                seed,
                (!greedy).then_some(f64::from(req.temperature)),
                Some(0.9),
            ),
            greedy,
        }
    }

    fn feed(&mut self, ids: &[u32]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        if Instant::now() > self.deadline {
            return Err(format!(
                "the local model ran out of time after {} tokens",
                self.written.len()
            ));
        }
        if self.pos + ids.len() >= self.chat.context {
            return Err(format!(
                "the conversation is longer than the local model's {} tokens",
                self.chat.context
            ));
        }
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(failed)?;
        let logits = self
            .chat
            .model
            .forward(&input, self.pos)
            .and_then(|l| l.squeeze(0))
            .and_then(|l| l.to_vec1::<f32>())
            .map_err(failed)?;
        self.pos += ids.len();
        self.logits = logits;
        Ok(())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(self
            .chat
            .tokenizer
            .encode(text, false)
            .map_err(failed)?
            .get_ids()
            .to_vec())
    }

    /// The next token among those `allowed` takes (given its bytes and
    /// whether it is a control token); None
    /// when it takes none.
    fn pick(&mut self, allowed: impl Fn(&[u8], bool) -> bool) -> Result<Option<u32>, String> {
        let mut scores = self.logits.clone();
        let mut any = false;
        for (i, s) in scores.iter_mut().enumerate() {
            if allowed(&self.chat.pieces[i], self.chat.special[i]) {
                any = true;
            } else {
                *s = f32::NEG_INFINITY;
            }
        }
        if !any {
            return Ok(None);
        }
        if self.greedy {
            let best = scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32);
            return Ok(best);
        }
        let scores = Tensor::new(scores.as_slice(), &Device::Cpu).map_err(failed)?;
        self.sampler.sample(&scores).map(Some).map_err(failed)
    }

    fn left(&self) -> usize {
        self.budget.saturating_sub(self.written.len())
    }

    /// Writes free text until the model ends its turn or the budget ends;
    /// the text and whether it ended by itself.
    fn free(&mut self) -> Result<(String, bool), String> {
        let mut bytes = Vec::new();
        while self.left() > 0 {
            let start = self.written.len().saturating_sub(REPEAT_WINDOW);
            let recent: Vec<u32> = self.written[start..].to_vec();
            for &t in &recent {
                let s = &mut self.logits[t as usize];
                *s = if *s >= 0.0 {
                    *s / REPEAT_PENALTY
                } else {
                    *s * REPEAT_PENALTY
                };
            }
            let Some(next) = self.pick(|_, _| true)? else {
                break;
            };
            if self.chat.special[next as usize] {
                return Ok((String::from_utf8_lossy(&bytes).into_owned(), true));
            }
            bytes.extend_from_slice(&self.chat.pieces[next as usize]);
            self.written.push(next);
            self.feed(&[next])?;
        }
        Ok((String::from_utf8_lossy(&bytes).into_owned(), false))
    }
}

impl Steer for Session<'_> {
    fn force(&mut self, text: &str) -> Result<(), String> {
        let ids = self.encode(text)?;
        self.written.extend(&ids);
        self.feed(&ids)
    }

    fn choose(&mut self, options: &[String]) -> Result<usize, String> {
        let mut so_far: Vec<u8> = Vec::new();
        let longest = options.iter().map(String::len).max().unwrap_or(0);
        while so_far.len() <= longest {
            if let Some(i) = options.iter().position(|o| o.as_bytes() == so_far) {
                return Ok(i);
            }
            let next = self.pick(|piece, special| {
                !special
                    && !piece.is_empty()
                    && options.iter().any(|o| {
                        let o = o.as_bytes();
                        o.len() >= so_far.len() + piece.len()
                            && o[..so_far.len()] == so_far[..]
                            && &o[so_far.len()..so_far.len() + piece.len()] == piece
                    })
            })?;
            let Some(next) = next else { break };
            so_far.extend_from_slice(&self.chat.pieces[next as usize]);
            self.written.push(next);
            self.feed(&[next])?;
        }
        Err(failed("it could not write any of the allowed values"))
    }

    fn text(&mut self, max_chars: usize) -> Result<String, String> {
        let mut bytes: Vec<u8> = Vec::new();
        // Leave room for what the schema still needs after this string.
        while self.left() > 8 && String::from_utf8_lossy(&bytes).chars().count() < max_chars {
            let plain = |p: &[u8]| !p.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let next = self.pick(|piece, special| {
                !special && !piece.is_empty() && (piece[0] == b'"' || plain(piece))
            })?;
            let Some(next) = next else { break };
            let piece = &self.chat.pieces[next as usize];
            if piece[0] == b'"' {
                break;
            }
            bytes.extend_from_slice(piece);
            self.written.push(next);
            self.feed(&[next])?;
        }
        let text: String = String::from_utf8_lossy(&bytes)
            .chars()
            .filter(|&c| c != '\u{FFFD}')
            .take(max_chars)
            .collect();
        Ok(text)
    }

    fn number(&mut self, integer: bool) -> Result<String, String> {
        let mut n = String::new();
        while n.len() < 18 {
            let done = !n.is_empty() && !n.ends_with(['-', '.']);
            let leading_zero = n == "0" || n == "-0";
            let next = self.pick(|piece, special| {
                if special || piece.is_empty() {
                    return false;
                }
                let digits = piece.iter().all(u8::is_ascii_digit);
                match piece {
                    b"-" => n.is_empty(),
                    b"." => !integer && done && !n.contains('.'),
                    _ if digits => !leading_zero,
                    _ => done,
                }
            })?;
            let Some(next) = next else { break };
            let piece = self.chat.pieces[next as usize].clone();
            let more = piece == b"-" || piece == b"." || piece.iter().all(u8::is_ascii_digit);
            if !more {
                break;
            }
            n.push_str(&String::from_utf8_lossy(&piece));
            self.written.push(next);
            self.feed(&[next])?;
        }
        if n.is_empty() || n.ends_with(['-', '.']) {
            n.push('0');
            self.force("0")?;
        }
        Ok(n)
    }
}

/// A completion of `req` from the local chat model in `dir`.
pub fn chat(
    dir: &Path,
    model: &str,
    req: &ChatRequest,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let deadline = Instant::now() + timeout;
    let schema = match &req.schema_text {
        Some(text) => {
            let node = Node::parse(text).map_err(Failure::Permanent)?;
            if let Some(why) = guide::unsupported(&node) {
                return Err(Failure::Permanent(format!(
                    "the local model cannot follow this schema: {why}"
                )));
            }
            Some(node)
        }
        None => None,
    };
    let shared = load(dir, model)?;
    // One answer at a time per model; wait for the one being written.
    let mut chat = loop {
        match shared.try_lock() {
            Ok(c) => break c,
            Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                if Instant::now() > deadline {
                    return Err(Failure::Transient(
                        "the local model was busy until the deadline".into(),
                        None,
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let seed = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| Failure::Permanent(failed(e)))?;
        u64::from_le_bytes(b)
    };
    let mut session = Session::new(&mut chat, req, deadline, seed);
    let prompt = prompt(&session, req).map_err(Failure::Permanent)?;
    let tokens_in = prompt.len();
    session.feed(&prompt).map_err(Failure::Permanent)?;
    let (text, finish) = match &schema {
        Some(schema) => {
            let text = guide::follow(schema, &mut session).map_err(Failure::Permanent)?;
            (text, "stop")
        }
        None => {
            let (text, ended) = session.free().map_err(Failure::Permanent)?;
            (text, if ended { "stop" } else { "length" })
        }
    };
    Ok(Answer {
        text,
        model: model.to_string(),
        tokens_in: u32::try_from(tokens_in).unwrap_or(u32::MAX),
        tokens_out: u32::try_from(session.written.len()).unwrap_or(u32::MAX),
        finish_reason: finish.into(),
    })
}

/// The ChatML prompt, ending where the assistant's answer begins.
fn prompt(session: &Session<'_>, req: &ChatRequest) -> Result<Vec<u32>, String> {
    let chat = &*session.chat;
    let mut ids = Vec::new();
    let mut turn = |role: &str, text: &str| -> Result<(), String> {
        ids.push(chat.im_start);
        ids.extend(session.encode(&format!("{role}\n{text}"))?);
        ids.push(chat.im_end);
        ids.extend(session.encode("\n")?);
        Ok(())
    };
    // A schema is not spelled out to the model: the steering writes the
    // structure, and the plugin's own words say what goes in it.
    if req.messages.first().is_none_or(|(r, _)| r != "system") {
        turn("system", DEFAULT_SYSTEM)?;
    }
    for (role, text) in &req.messages {
        turn(role, text)?;
    }
    ids.push(chat.im_start);
    ids.extend(session.encode("assistant\n")?);
    Ok(ids)
}

/// How fast the local chat model reads a prompt and writes an answer:
/// `(prompt tokens/s, written tokens/s)`, writing up to `tokens` greedily
/// after one warm-up answer.
pub fn rate(dir: &Path, tokens: u32) -> Result<(f64, f64), Failure> {
    let req = ChatRequest {
        messages: vec![(
            "user".into(),
            "Write a long, detailed story about a small linen shop that grows into a \
             business selling across Europe, with its suppliers, customers and seasons."
                .into(),
        )],
        tier: "small".into(),
        max_tokens: tokens,
        temperature: 0.0,
        schema: None,
        schema_text: None,
    };
    let shared = load(dir, super::super::config::LOCAL_CHAT)?;
    let mut chat = shared.lock().unwrap_or_else(|p| p.into_inner());
    let fail = Failure::Permanent;
    let mut measure = |budget: u32| -> Result<(f64, f64), Failure> {
        let req = ChatRequest {
            max_tokens: budget,
            ..req.clone()
        };
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut session = Session::new(&mut chat, &req, deadline, 0);
        let prompt = prompt(&session, &req).map_err(fail)?;
        let started = Instant::now();
        session.feed(&prompt).map_err(fail)?;
        let read = prompt.len() as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        session.free().map_err(fail)?;
        let wrote = session.written.len() as f64 / started.elapsed().as_secs_f64();
        Ok((read, wrote))
    };
    measure(8)?;
    measure(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_characters_map_back_to_every_byte_once() {
        let table = byte_table();
        assert_eq!(table.len(), 256);
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        // GPT-2's table: a space is `Ġ`, a newline `Ċ`, letters themselves.
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'a'], b'a');
        assert_eq!(table[&'é'], 0xE9);
    }
}
