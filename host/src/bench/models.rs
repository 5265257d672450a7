//! The local models: sentences embedded per second by the local embedder,
//! and tokens per second the local chat model reads and writes.

use std::path::Path;

use super::round;

/// The local models' figures; all null, with the reason, when their
/// weights were not found.
#[derive(Debug, Default)]
pub(super) struct ModelFigures {
    pub embed_per_s: Option<f64>,
    pub local_tokens_per_s: Option<f64>,
    pub local_prompt_tokens_per_s: Option<f64>,
    pub skipped: Option<String>,
}

/// Measures the local models whose weights are in `models` (default: where
/// `scripts/setup --local-models` keeps them).
pub(super) fn measure(models: Option<&Path>) -> ModelFigures {
    let mut figures = ModelFigures::default();
    let models = models
        .map(Path::to_path_buf)
        .or_else(crate::embedded::default_models_dir);
    figures.skipped = match models {
        None => Some(
            "no --models DIR given (scripts/setup --local-models DIR fetches the weights)"
                .to_string(),
        ),
        Some(dir) => (|| -> Result<(), String> {
            figures.embed_per_s = Some(round(crate::models::embed_rate(&dir, 256)?));
            let (read, wrote) = crate::models::chat_rate(&dir, 128)?;
            figures.local_prompt_tokens_per_s = Some(round(read));
            figures.local_tokens_per_s = Some(round(wrote));
            Ok(())
        })()
        .err(),
    };
    figures
}
