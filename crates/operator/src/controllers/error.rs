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
    #[error("{kind} {name} is held by {holder}: drmesh never takes over an object it did not create")]
    NameConflict { kind: String, name: String, holder: String },
    #[error("{0}")]
    Audit(#[source] crate::telemetry::AuditError),
    #[error("object has no namespace")]
    MissingNamespace,
    #[error("object has no uid yet")]
    MissingUid,
    /// A write a standby may not make: the object waits until this replica leads.
    #[error("this replica stands by: it writes nothing until it leads")]
    Standby,
}

impl Error {
    /// The status reason of an error that leaves a parent's access withdrawn, with the
    /// API server's message; `None` for errors that say nothing about the parent.
    pub fn problem(&self) -> Option<crate::mesh::rules::Problem> {
        use crate::mesh::rules::{Problem, Reason};
        match self {
            Error::Apply { kind, name, source } => {
                let message = match source {
                    kube::Error::Api(status) => status.message.clone(),
                    other => other.to_string(),
                };
                Some(Problem::new(Reason::ApplyFailed, format!("the API server refused {kind} {name}: {message}")))
            }
            Error::NameConflict { .. } => Some(Problem::new(Reason::NameConflict, self.to_string())),
            // A standby records nothing: not a problem of the object.
            Error::Audit(crate::telemetry::AuditError::Standby) => None,
            Error::Audit(error) => Some(Problem::new(
                Reason::AuditUnavailable,
                format!("not applied until its audit record is written: {error}"),
            )),
            _ => None,
        }
    }

    /// Stable label for metrics and Events.
    pub fn label(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply_failed",
            Error::Delete { .. } => "delete_failed",
            Error::Status { .. } => "status_failed",
            Error::Read { .. } => "read_failed",
            Error::NameConflict { .. } => "name_conflict",
            Error::Audit(_) => "audit_unavailable",
            Error::MissingNamespace => "missing_namespace",
            Error::MissingUid => "missing_uid",
            Error::Standby => "standby",
        }
    }
}
