//! `keel:host/secrets`: a granted secret's value, for a protocol that must
//! send a credential itself. Answered only for a name the manifest lists,
//! and audited by name.

use crate::bindings::secrets::Host;
use crate::bindings::types;
use crate::error::CallError;
use crate::run::RunCtx;
use crate::store::Touched;

impl Host for RunCtx {
    #[tracing::instrument(level = "debug", name = "secrets.get", skip_all)]
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, types::Error>> {
        let actor = self.actor.clone();
        let Some(stored) = self.grant.secret(&name).map(str::to_string) else {
            let why = format!(
                "{} is not granted secret `{name}`; add it to `secrets` under [capabilities] in keel.toml",
                self.label
            );
            let e = self
                .db
                .refuse(&actor, "secret.read", CallError::Denied(why));
            return Ok(Err(e.into()));
        };
        let value = super::reveal(self.home.root(), self.db.conn(), &stored);
        let detail = match stored == name {
            true => name.clone(),
            false => format!("{name} (stored secret {stored})"),
        };
        let result = self.db.read(&actor, "secret.read", |_| match value {
            Ok(v) => (Ok(v), Touched::detail(detail)),
            Err(e) => (
                Err(CallError::NotFound(format!(
                    "secret `{name}` cannot be read: {e}"
                ))),
                Touched::detail(detail),
            ),
        });
        Ok(result.map_err(types::Error::from))
    }
}
