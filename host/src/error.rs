//! The error a host call can return to a plugin. It mirrors the WIT `error`
//! variant so the write path stays free of generated types.

use serde::{Deserialize, Serialize};

/// What went wrong in one host call, in one sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum CallError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("limit: {0}")]
    Limit(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl CallError {
    /// The audit outcome for this error (`denied`, `conflict`, ...).
    pub fn outcome(&self) -> &'static str {
        match self {
            CallError::Denied(_) => "denied",
            CallError::NotFound(_) => "not-found",
            CallError::Conflict(_) => "conflict",
            CallError::Invalid(_) => "invalid",
            CallError::Limit(_) => "limit",
            CallError::Unavailable(_) => "unavailable",
            CallError::Internal(_) => "internal",
        }
    }

    /// The sentence without the kind prefix.
    pub fn message(&self) -> &str {
        match self {
            CallError::Denied(m)
            | CallError::NotFound(m)
            | CallError::Conflict(m)
            | CallError::Invalid(m)
            | CallError::Limit(m)
            | CallError::Unavailable(m)
            | CallError::Internal(m) => m,
        }
    }
}

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                CallError::Unavailable("the record store is busy; retry shortly".into())
            }
            other => CallError::Internal(format!("record store: {other}")),
        }
    }
}

impl From<serde_json::Error> for CallError {
    fn from(e: serde_json::Error) -> Self {
        CallError::Internal(format!("encoding: {e}"))
    }
}
