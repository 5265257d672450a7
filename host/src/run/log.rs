//! `keel:host/log`: plugin diagnostics into the host's tracing, tagged with
//! the plugin and run. Not audited.

use super::RunCtx;
use crate::bindings::log::{Host, Level};
use crate::limits::{MAX_LOG_BYTES, MAX_LOG_LINES};

impl Host for RunCtx {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES {
            return Ok(());
        }
        let (level, mut message) = if self.log_lines == MAX_LOG_LINES {
            (
                Level::Warn,
                format!("logged {MAX_LOG_LINES} lines; the rest of this run's lines are dropped"),
            )
        } else {
            (level, message)
        };
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [cut]");
        }
        let plugin = self.label.as_str();
        let run = self.actor.run_id.as_deref().unwrap_or("-");
        match level {
            Level::Trace => tracing::trace!(target: "keel::plugin", plugin, run, "{message}"),
            Level::Debug => tracing::debug!(target: "keel::plugin", plugin, run, "{message}"),
            Level::Info => tracing::info!(target: "keel::plugin", plugin, run, "{message}"),
            Level::Warn => tracing::warn!(target: "keel::plugin", plugin, run, "{message}"),
            Level::Error => tracing::error!(target: "keel::plugin", plugin, run, "{message}"),
        }
        Ok(())
    }
}
