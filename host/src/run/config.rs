//! `keel:host/config`: the operator's config values, only for declared keys.

use super::RunCtx;
use crate::bindings::config::{CallingRun, Host};
use crate::bindings::types;

impl Host for RunCtx {
    #[tracing::instrument(level = "debug", name = "config.get", skip_all)]
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, types::Error>> {
        if !self.grant.capabilities.config.contains(&key) {
            return Ok(Err(types::Error::Denied(format!(
                "config key `{key}` is not declared in {}'s keel.toml",
                self.label
            ))));
        }
        Ok(Ok(self.grant.config.get(&key).cloned()))
    }

    #[tracing::instrument(level = "debug", name = "config.caller", skip_all)]
    fn caller(&mut self) -> wasmtime::Result<Option<CallingRun>> {
        Ok(self.caller.as_ref().map(|(plugin, run)| CallingRun {
            plugin: plugin.clone(),
            run: run.clone(),
        }))
    }

    #[tracing::instrument(level = "debug", name = "config.endpoint", skip_all)]
    fn endpoint(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grant.endpoint(&name).map(|e| e.to_string()))
    }
}
