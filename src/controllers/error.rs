//! Errors of the reconcilers. Each has a stable label used in metrics and logs.

/// A transient failure: the object is retried with per-object exponential backoff.
/// Problems with what a user declared are not errors: they become status conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot apply {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot delete {kind} {name}: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("object has no namespace")]
    MissingNamespace,
    #[error("object has no uid yet")]
    MissingUid,
}

impl Error {
    /// Stable label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply_failed",
            Error::Delete { .. } => "delete_failed",
            Error::Status { .. } => "status_failed",
            Error::Read { .. } => "read_failed",
            Error::MissingNamespace => "missing_namespace",
            Error::MissingUid => "missing_uid",
        }
    }
}
