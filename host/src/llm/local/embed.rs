//! The local sentence embedder, all-MiniLM-L6-v2 (a BERT encoder, candle):
//! texts are tokenized (at most 256 word pieces each, as the model was
//! trained), encoded in batches, and mean-pooled over their real tokens (the
//! padding masked out), then normalised to unit length, so a dot product is
//! the cosine similarity. The folder holds `config.json`, `tokenizer.json`
//! and `model.safetensors`.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use super::{Loaded, once};
use crate::llm::{Failure, Vectors};

/// Word pieces per text the embedder reads; the rest is cut.
const MAX_PIECES: usize = 256;
/// Texts encoded together.
const BATCH: usize = 16;

struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
}

static EMBEDDERS: LazyLock<Loaded<Embedder>> = LazyLock::new(Default::default);

fn load(dir: &Path, model: &str) -> Result<Arc<Embedder>, Failure> {
    once(&EMBEDDERS, dir, model, model, load_from)
}

fn load_from(path: &Path) -> Result<Embedder, String> {
    let bad = |e: &dyn std::fmt::Display| e.to_string();
    let config: Config = std::fs::read_to_string(path.join("config.json"))
        .map_err(|e| bad(&e))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| bad(&e)))?;
    let mut tokenizer = Tokenizer::from_file(path.join("tokenizer.json")).map_err(|e| bad(&e))?;
    tokenizer.with_padding(Some(PaddingParams::default()));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_PIECES,
            ..TruncationParams::default()
        }))
        .map_err(|e| bad(&e))?;
    let weights = std::fs::read(path.join("model.safetensors")).map_err(|e| bad(&e))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .map_err(|e| bad(&e))?;
    let model = BertModel::load(vb, &config).map_err(|e| bad(&e))?;
    Ok(Embedder { model, tokenizer })
}

/// Embeddings of `texts` with the local `model` from `dir`.
pub fn embed(dir: &Path, model: &str, texts: &[String]) -> Result<Vectors, Failure> {
    let embedder = load(dir, model)?;
    let failed =
        |e: &dyn std::fmt::Display| Failure::Permanent(format!("the local embedder failed: {e}"));
    let mut vectors = Vec::with_capacity(texts.len());
    let mut tokens = 0u32;
    for chunk in texts.chunks(BATCH) {
        let encodings = embedder
            .tokenizer
            .encode_batch(chunk.to_vec(), true)
            .map_err(|e| failed(&e))?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &Device::Cpu))
            .collect::<Result<_, _>>()
            .map_err(|e| failed(&e))?;
        let masks: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &Device::Cpu))
            .collect::<Result<_, _>>()
            .map_err(|e| failed(&e))?;
        tokens += encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().sum::<u32>())
            .sum::<u32>();
        let pooled = (|| {
            let ids = Tensor::stack(&ids, 0)?;
            let mask = Tensor::stack(&masks, 0)?;
            let types = ids.zeros_like()?;
            let hidden = embedder.model.forward(&ids, &types, Some(&mask))?;
            let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
            let mean = summed.broadcast_div(&mask.sum(1)?)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norm)?.to_vec2::<f32>()
        })()
        .map_err(|e: candle_core::Error| failed(&e))?;
        vectors.extend(pooled);
    }
    Ok(Vectors {
        vectors,
        model: model.to_string(),
        tokens_in: tokens,
    })
}
