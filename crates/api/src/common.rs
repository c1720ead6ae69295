//! Types shared by the three kinds: owners, references, status conditions, and the
//! name patterns the schemas enforce.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// DNS-1123 label (namespaces): lowercase alphanumerics and '-', at most 63 characters.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1035 label (Services, hence DataProducts): like DNS-1123 but starts with a letter.
pub const DNS1035_LABEL: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1123 subdomain (most object names). `[.]` rather than `\.` so the same text is
/// also a valid CEL string literal.
pub const DNS1123_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// Port names (they become Service port names): a letter, then letters, digits and
/// single hyphens, at most 15 characters. Slightly stricter than IANA_SVC_NAME.
pub const PORT_NAME: &str = "^[a-z]([a-z0-9]|-[a-z0-9])*$";
/// Condition reasons: CamelCase identifiers, as in metav1.Condition.
pub const CONDITION_REASON: &str = "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$";

/// Condition types the operator reports (kstatus-compatible).
pub mod condition_type {
    /// The object is fully reconciled and serving (for grants: applied).
    pub const READY: &str = "Ready";
    /// The operator is working towards the desired state.
    pub const RECONCILING: &str = "Reconciling";
    /// The operator cannot make progress without a change to the object or its context.
    pub const STALLED: &str = "Stalled";
    /// AccessPolicy: at least one subject is granted access right now.
    pub const GRANTED: &str = "Granted";
    /// DataProduct in a classified domain: False when NetworkPolicies or RoleBindings
    /// that drmesh did not create may open access to its pods or data.
    pub const ISOLATED: &str = "Isolated";
    /// AccessPolicy: True once `spec.reassessBy` has passed (the grant is suspended when
    /// the MeshPolicy's reassessment grace ends too).
    pub const REASSESSMENT_DUE: &str = "ReassessmentDue";
}

/// Kind of an owner.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OwnerKind {
    User,
    Group,
}

/// A person or group accountable for an object; a DataProduct's owners get read access
/// to the product, its Deployment, Service (and service proxy) and contract.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// Whether `name` is a user or a group, as the API server authenticates them.
    pub kind: OwnerKind,
    /// User or group name as authenticated by the API server (e.g. `alice`, `cnc-officers`).
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("!self.startsWith('system:')").message("spec.owners[].name must not be a system: user or group (system:authenticated would make everyone an owner)"))]
    pub name: String,
}

/// A DataProduct in some namespace.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DataProductRef {
    /// Namespace (domain) of the DataProduct.
    #[schemars(length(min = 1, max = 63), pattern(DNS1123_LABEL))]
    pub namespace: String,
    /// Name of the DataProduct.
    #[schemars(length(min = 1, max = 63), pattern(DNS1035_LABEL))]
    pub name: String,
}

impl DataProductRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl std::fmt::Display for DataProductRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Status of a condition.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

/// An observation of one aspect of an object's state, following the Kubernetes API
/// conventions (metav1.Condition).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition in CamelCase: Ready, Reconciling, Stalled, Granted.
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// Status of the condition: True, False or Unknown.
    pub status: ConditionStatus,
    /// Machine-readable CamelCase reason for the last transition (e.g. SecretNotFound).
    #[schemars(length(min = 1, max = 1024), pattern(CONDITION_REASON))]
    pub reason: String,
    /// Human-readable details about the last transition.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When the condition last changed status.
    pub last_transition_time: Time,
    /// The metadata.generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition observed at `now` for the object's `generation`.
    pub fn new(
        type_: &str,
        status: ConditionStatus,
        reason: impl AsRef<str>,
        message: impl Into<String>,
        generation: Option<i64>,
        now: Time,
    ) -> Self {
        Self {
            type_: type_.to_string(),
            status,
            reason: reason.as_ref().to_string(),
            message: message.into(),
            last_transition_time: now,
            observed_generation: generation,
        }
    }

    /// Whether two conditions say the same thing, timestamps aside.
    pub fn same_observation(&self, other: &Condition) -> bool {
        self.type_ == other.type_
            && self.status == other.status
            && self.reason == other.reason
            && self.message == other.message
            && self.observed_generation == other.observed_generation
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Records `condition`, keeping the previous `lastTransitionTime` unless the status
/// really changed (so an unchanged status is byte-for-byte the same and causes no
/// write). Existing conditions keep their position; a new type is appended.
/// Returns whether anything other than timestamps changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.same_observation(&condition) {
                return false;
            }
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = condition;
            true
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn set_condition_keeps_transition_time_while_status_holds() {
        let mut conditions = Vec::new();
        let ready = |status, reason: &str, now| Condition::new(condition_type::READY, status, reason, "", Some(1), now);
        assert!(set_condition(&mut conditions, ready(ConditionStatus::False, "SecretNotFound", at(10))));
        // Same observation later: nothing changes, not even the timestamp.
        assert!(!set_condition(&mut conditions, ready(ConditionStatus::False, "SecretNotFound", at(20))));
        assert_eq!(conditions[0].last_transition_time, at(10));
        // New reason, same status: recorded, transition time kept.
        assert!(set_condition(&mut conditions, ready(ConditionStatus::False, "Pending", at(30))));
        assert_eq!(conditions[0].reason, "Pending");
        assert_eq!(conditions[0].last_transition_time, at(10));
        // Status flips: new transition time.
        assert!(set_condition(&mut conditions, ready(ConditionStatus::True, "Ready", at(40))));
        assert_eq!(conditions[0].last_transition_time, at(40));
        // Another type is appended, the first stays first.
        let stalled = Condition::new(condition_type::STALLED, ConditionStatus::False, "Ok", "", Some(1), at(40));
        assert!(set_condition(&mut conditions, stalled));
        assert_eq!(conditions.len(), 2);
        assert_eq!(find_condition(&conditions, condition_type::READY).map(|c| c.status), Some(ConditionStatus::True));
    }

    #[test]
    fn condition_serializes_like_metav1() {
        let c = Condition::new("Ready", ConditionStatus::True, "Ready", "all good", Some(3), at(0));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Ready", "status": "True", "reason": "Ready", "message": "all good",
                "lastTransitionTime": "1970-01-01T00:00:00Z", "observedGeneration": 3
            })
        );
    }
}
