//! Why an object is (or is not) Ready: one typed value that status conditions, Events,
//! audit records, metrics and `drmesh validate` all read. Its string form is the stable
//! API (`status.conditions[].reason`, the audit record's `reason`, the metric label).

/// A stable reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Ready,
    Granted,
    Progressing,
    InputNotFound,
    InputNotGranted,
    InputNotReady,
    ClassificationViolation,
    NamespaceClearanceTooLow,
    ClearanceTooLow,
    MissingPurpose,
    MissingExpiry,
    InvalidExpiry,
    Expired,
    DataProductNotFound,
    PortNotFound,
    SecretNotFound,
    EndpointNeedsCidr,
    NoSubjectGranted,
    /// The AccessPolicy is being deleted: it grants nothing from that instant.
    PolicyDeleting,
    /// The AccessPolicy is gone (seen as a watch deletion).
    PolicyDeleted,
    /// The granted DataProduct is being deleted: grants on it are withdrawn.
    DataProductDeleting,
    /// The object is being deleted: what it grants is withdrawn, nothing new is applied.
    Deleting,
    /// A name from which drmesh cannot derive valid child names or labels.
    InvalidName,
    /// A Namespace subject's podSelector has a key that is not a valid label key.
    InvalidPodSelector,
    /// The API server refused a child: the access it would carry is withdrawn.
    ApplyFailed,
    /// The grant's audit record could not be written: it is not applied (durable or refused).
    AuditUnavailable,
    /// Audit only: a DataSource's credentials were lent to a product's ServiceAccount.
    CredentialsLent,
    /// Audit only: a DataSource's credentials were taken from a product's ServiceAccount.
    CredentialsWithdrawn,
    /// An object drmesh did not create holds the name of a child: it is never taken over.
    NameConflict,
    /// The credentials Secret exists but is not labelled `drmesh.io/credentials: "true"`.
    SecretNotReleased,
    /// NetworkPolicies or RBAC drmesh did not create may widen access in a classified domain.
    ForeignAccessObjects,
    /// The object could not be parsed: what its children grant is withdrawn.
    Unparseable,
    /// Owners of a product get (or lose) read access to its data.
    OwnersAccess,
    /// `drmesh validate` only: a grant names a product that no manifest declares.
    SubjectNotDeclared,
    /// A User or Group holds no Clearance in force at the product's level.
    SubjectNotCleared,
    /// The grant's `startsAt` has not come yet.
    NotYetValid,
    /// The grant's `reassessBy` has passed (a warning; suspended after the grace).
    ReassessmentDue,
    /// The grant lasts longer than the MeshPolicy allows for the product's level.
    DurationTooLong,
    /// A Restricted grant lacks valid approvals from enough distinct approvers.
    ApprovalMissing,
    /// `startsAt` or `reassessBy` is not an RFC 3339 time.
    InvalidTime,
    /// Audit only: another writer saved the audit chain's head while this replica led; it
    /// continues the chain from the head it found (a `Warned` record says what it saw).
    AuditChainTakenOver,
}

impl Reason {
    /// Every reason, in a stable order (docs and reports are checked against it).
    pub const ALL: [Reason; 41] = [
        Reason::Ready,
        Reason::Granted,
        Reason::Progressing,
        Reason::InputNotFound,
        Reason::InputNotGranted,
        Reason::InputNotReady,
        Reason::ClassificationViolation,
        Reason::NamespaceClearanceTooLow,
        Reason::ClearanceTooLow,
        Reason::MissingPurpose,
        Reason::MissingExpiry,
        Reason::InvalidExpiry,
        Reason::Expired,
        Reason::DataProductNotFound,
        Reason::PortNotFound,
        Reason::SecretNotFound,
        Reason::EndpointNeedsCidr,
        Reason::NoSubjectGranted,
        Reason::PolicyDeleting,
        Reason::PolicyDeleted,
        Reason::DataProductDeleting,
        Reason::Deleting,
        Reason::InvalidName,
        Reason::InvalidPodSelector,
        Reason::ApplyFailed,
        Reason::AuditUnavailable,
        Reason::CredentialsLent,
        Reason::CredentialsWithdrawn,
        Reason::NameConflict,
        Reason::SecretNotReleased,
        Reason::ForeignAccessObjects,
        Reason::Unparseable,
        Reason::OwnersAccess,
        Reason::SubjectNotDeclared,
        Reason::SubjectNotCleared,
        Reason::NotYetValid,
        Reason::ReassessmentDue,
        Reason::DurationTooLong,
        Reason::ApprovalMissing,
        Reason::InvalidTime,
        Reason::AuditChainTakenOver,
    ];

    /// The reason as the API shows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Ready => "Ready",
            Reason::Granted => "Granted",
            Reason::Progressing => "Progressing",
            Reason::InputNotFound => "InputNotFound",
            Reason::InputNotGranted => "InputNotGranted",
            Reason::InputNotReady => "InputNotReady",
            Reason::ClassificationViolation => "ClassificationViolation",
            Reason::NamespaceClearanceTooLow => "NamespaceClearanceTooLow",
            Reason::ClearanceTooLow => "ClearanceTooLow",
            Reason::MissingPurpose => "MissingPurpose",
            Reason::MissingExpiry => "MissingExpiry",
            Reason::InvalidExpiry => "InvalidExpiry",
            Reason::Expired => "Expired",
            Reason::DataProductNotFound => "DataProductNotFound",
            Reason::PortNotFound => "PortNotFound",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::EndpointNeedsCidr => "EndpointNeedsCidr",
            Reason::NoSubjectGranted => "NoSubjectGranted",
            Reason::PolicyDeleting => "PolicyDeleting",
            Reason::PolicyDeleted => "PolicyDeleted",
            Reason::DataProductDeleting => "DataProductDeleting",
            Reason::Deleting => "Deleting",
            Reason::InvalidName => "InvalidName",
            Reason::InvalidPodSelector => "InvalidPodSelector",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::AuditUnavailable => "AuditUnavailable",
            Reason::CredentialsLent => "CredentialsLent",
            Reason::CredentialsWithdrawn => "CredentialsWithdrawn",
            Reason::NameConflict => "NameConflict",
            Reason::SecretNotReleased => "SecretNotReleased",
            Reason::ForeignAccessObjects => "ForeignAccessObjects",
            Reason::Unparseable => "Unparseable",
            Reason::OwnersAccess => "OwnersAccess",
            Reason::SubjectNotDeclared => "SubjectNotDeclared",
            Reason::SubjectNotCleared => "SubjectNotCleared",
            Reason::NotYetValid => "NotYetValid",
            Reason::ReassessmentDue => "ReassessmentDue",
            Reason::DurationTooLong => "DurationTooLong",
            Reason::ApprovalMissing => "ApprovalMissing",
            Reason::InvalidTime => "InvalidTime",
            Reason::AuditChainTakenOver => "AuditChainTakenOver",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_string()
    }
}

/// A condition's or a report's reason (a string) is this reason.
impl PartialEq<Reason> for String {
    fn eq(&self, other: &Reason) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Reason> for &str {
    fn eq(&self, other: &Reason) -> bool {
        *self == other.as_str()
    }
}

/// A reason the API does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown reason {0:?}")]
pub struct UnknownReason(pub String);

impl std::str::FromStr for Reason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownReason(s.to_string()))
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn every_reason_round_trips_through_its_string_and_json() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.as_str()), "{reason} twice");
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            let json = serde_json::to_string(&reason).expect("json");
            assert_eq!(serde_json::from_str::<Reason>(&json).expect("parse"), reason);
        }
        assert!("Readdy".parse::<Reason>().is_err());
    }
}
