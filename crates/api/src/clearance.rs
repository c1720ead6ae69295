//! Cluster-wide policy, written only by security officers: people's clearances and the
//! one `MeshPolicy` (grant lengths, reassessment grace, the approvers of Restricted grants).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::classification::Classification;
use super::common::{DNS1123_LABEL, DNS1123_SUBDOMAIN, OwnerKind};

/// Durations in policies: days, hours, minutes, e.g. `90d`, `36h`, `1d12h`, `30m`.
pub const DURATION: &str = "^([0-9]{1,5}d)?([0-9]{1,6}h)?([0-9]{1,7}m)?$";
/// Most approvers the MeshPolicy may name.
pub const MAX_APPROVERS: u32 = 64;
/// Most approvals one AccessPolicy may carry.
pub const MAX_APPROVALS: u32 = 16;

/// A person's or a group's habilitation: who holds which level, until when and why.
/// A User or Group subject (or owner) of a product classified C reads it only while it
/// holds a Clearance of level >= C that has not expired (Public needs none).
// Clippy mistakes the repeated `type_ = ...` inside printcolumn(..) for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "drmesh.io",
    version = "v1alpha1",
    kind = "Clearance",
    shortname = "clr",
    category = "drmesh",
    derive = "PartialEq",
    doc = "A person's or a group's habilitation: the level it holds, until when and why. Written only by security officers.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".spec.subject.kind"),
    printcolumn(name = "Subject", type_ = "string", json_path = ".spec.subject.name"),
    printcolumn(name = "Level", type_ = "string", json_path = ".spec.level"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.subject.name",
    validation = Rule::new(format!("self.metadata.name.matches('{DNS1123_SUBDOMAIN}')")).message("metadata.name must be a DNS-1123 subdomain"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct ClearanceSpec {
    /// The User or Group cleared, as the API server authenticates it.
    pub subject: Person,
    /// The highest classification the subject may read.
    pub level: Classification,
    /// When the habilitation ends (RFC 3339): access it carries is revoked then.
    #[schemars(length(min = 1, max = 64), extend("format" = "date-time"))]
    pub expires_at: String,
    /// Why the subject is cleared (the decision's reference), 10 to 1024 characters.
    #[schemars(length(min = 10, max = 1024))]
    pub reason: String,
}

/// A User or a Group.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Person {
    /// User or Group.
    pub kind: OwnerKind,
    /// User or group name as authenticated by the API server.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("!self.startsWith('system:')").message("spec.subject.name must not be a system: user or group (system:authenticated would clear everyone)"))]
    pub name: String,
}

/// The cluster's mesh policy: one object, named `default`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "drmesh.io",
    version = "v1alpha1",
    kind = "MeshPolicy",
    category = "drmesh",
    derive = "PartialEq",
    doc = "The cluster's mesh policy (one object, named default): the longest grant per level, the reassessment grace and the approvers of Restricted grants. Written only by security officers.",
    validation = Rule::new("self.metadata.name == 'default'").message("metadata.name must be default: the cluster has one MeshPolicy"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct MeshPolicySpec {
    /// The longest a grant may last (from `startsAt`, or its creation, to `expiresAt`),
    /// per classification of the product; longer grants are refused (`DurationTooLong`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grant_duration: Option<MaxGrantDuration>,
    /// How long a grant stays in force after its `reassessBy` without being reassessed
    /// (default `7d`); then it is suspended until `reassessBy` is moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), pattern(DURATION))]
    pub reassessment_grace: Option<String>,
    /// Who approves Restricted grants, and how many of them must sign each one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalPolicy>,
}

/// The longest grant per classification; a missing level has no limit.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct MaxGrantDuration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), pattern(DURATION))]
    pub public: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), pattern(DURATION))]
    pub internal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20), pattern(DURATION))]
    pub restricted: Option<String>,
}

impl MaxGrantDuration {
    pub fn for_level(&self, level: Classification) -> Option<&str> {
        match level {
            Classification::Public => self.public.as_deref(),
            Classification::Internal => self.internal.as_deref(),
            Classification::Restricted => self.restricted.as_deref(),
        }
    }
}

/// The two-person rule for Restricted grants.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalPolicy {
    /// Distinct approvers whose valid signatures a Restricted grant needs (at least 2).
    #[serde(default = "two")]
    #[schemars(range(min = 2, max = 16))]
    pub required: u32,
    /// Which subjects of a Restricted grant need the approvals: `People` (User and Group
    /// subjects; the default) or `All` (the whole grant).
    #[serde(default)]
    pub applies_to: ApprovalScope,
    /// Whether an approver may count for a grant whose consumer side they are on (a User
    /// subject of it, or an owner of a DataProduct subject). Default false.
    #[serde(default)]
    pub consumers_may_approve: bool,
    /// The approvers and their SSH public keys.
    #[schemars(length(max = MAX_APPROVERS))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, b.name == a.name))").message("spec.approvals.approvers must not name the same approver twice"))]
    pub approvers: Vec<Approver>,
}

fn two() -> u32 {
    2
}

/// Which subjects of a Restricted grant the two-person rule covers.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApprovalScope {
    #[default]
    People,
    All,
}

/// One approver.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approver {
    /// The approver's name, as grants' `spec.approvals[].approver` cite it (their user
    /// name, so that the consumer-side check can compare).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// An Ed25519 SSH public key in OpenSSH format (`ssh-ed25519 AAAA... comment`).
    #[schemars(length(min = 16, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('ssh-ed25519 ')").message("spec.approvals.approvers[].publicKey must be an Ed25519 OpenSSH public key (ssh-ed25519 AAAA...)"))]
    pub public_key: String,
    /// Domains (namespaces) whose grants this approver may approve; empty: every domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 63), pattern(DNS1123_LABEL)))]
    pub domains: Vec<String>,
}

impl Approver {
    /// Whether the approver may approve grants of `namespace`.
    pub fn covers(&self, namespace: &str) -> bool {
        self.domains.is_empty() || self.domains.iter().any(|d| d == namespace)
    }
}

/// The name of the cluster's one MeshPolicy.
pub const MESH_POLICY_NAME: &str = "default";
