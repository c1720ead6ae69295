//! AccessPolicy: a grant on one DataProduct, declared in the producer's namespace.

use std::collections::BTreeMap;
use std::fmt;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::clearance::MAX_APPROVALS;
use super::common::{Condition, DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN};
use super::{MAX_PORTS, PORT_NAME_OR_NUMBER};

/// Most subjects one AccessPolicy may name.
pub const MAX_SUBJECTS: u32 = 64;
/// Label values, as Kubernetes validates them.
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// A grant, declared by the producer in the product's namespace: who may consume one
/// DataProduct, on which ports, for what purpose and until when. drmesh turns it into
/// the RBAC and NetworkPolicy ingress it allows, and removes them at expiry or deletion.
/// A grant on a Restricted product needs a purpose and an expiry, and reaches only
/// subjects whose domain is cleared for the product.
// Clippy mistakes the repeated `type_ = ...` inside printcolumn(..) for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "drmesh.io",
    version = "v1alpha1",
    kind = "AccessPolicy",
    namespaced,
    status = "AccessPolicyStatus",
    shortname = "ap",
    category = "drmesh",
    derive = "PartialEq",
    doc = "A grant, declared by the producer in the product's namespace: who may consume one DataProduct, on which ports, for what purpose and until when.",
    printcolumn(name = "Product", type_ = "string", json_path = ".spec.dataProduct"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Granted", type_ = "string", json_path = ".status.conditions[?(@.type==\"Granted\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Granted\")].reason"),
    printcolumn(name = "Subjects", type_ = "integer", json_path = ".status.subjectCount"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "Approved", type_ = "string", json_path = ".status.approvedBy", priority = 1),
    printcolumn(name = "Purpose", type_ = "string", json_path = ".spec.purpose", priority = 1),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.conditions[?(@.type==\"Granted\")].message", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".spec.dataProduct",
    validation = Rule::new(format!("size(self.metadata.name) <= 63 && self.metadata.name.matches('{DNS1123_LABEL}')")).message("metadata.name must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters): the grant's children carry it as a label"),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// Name of the DataProduct (same namespace) this policy grants access to. Immutable:
    /// a grant on another product is another AccessPolicy.
    #[schemars(length(min = 1, max = 63), pattern(DNS1035_LABEL))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.dataProduct is immutable: create another AccessPolicy to grant access to another product"))]
    pub data_product: String,

    /// Output ports of the product granted, by name (or number); default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_PORTS), inner(length(min = 1, max = 15), pattern(PORT_NAME_OR_NUMBER)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub ports: Option<Vec<String>>,

    /// Who gets access: people (User, Group) and ServiceAccounts get RBAC to read the
    /// product and use its Service proxy; DataProducts get network ingress from their pods
    /// plus RBAC for their ServiceAccount; Namespaces get network ingress only.
    #[schemars(length(min = 1, max = MAX_SUBJECTS))]
    #[x_kube(validation = Rule::new(
        "self.all(s, self.exists_one(t, t.kind == s.kind \
         && (has(t.__namespace__) ? t.__namespace__ : '') == (has(s.__namespace__) ? s.__namespace__ : '') \
         && (has(t.name) ? t.name : '') == (has(s.name) ? s.name : '')))"
    ).message("spec.subjects must not name the same subject (kind, namespace, name) twice"))]
    pub subjects: Vec<Subject>,

    /// Why the subjects need the product (need to know), 10 to 1024 characters. Required
    /// for a Restricted product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 10, max = 1024))]
    pub purpose: Option<String>,

    /// When the grant ends, in RFC 3339 (e.g. 2027-12-31T23:59:59Z); access is revoked
    /// then. Required for a Restricted product.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub expires_at: Option<String>,

    /// When the grant starts (RFC 3339); nothing is granted before it. Default: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub starts_at: Option<String>,

    /// When the grant must be reassessed (RFC 3339). After it the grant reports
    /// `ReassessmentDue`; after the MeshPolicy's reassessment grace it is suspended until
    /// `reassessBy` is moved (which voids approvals like any edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("format" = "date-time"))]
    pub reassess_by: Option<String>,

    /// Approvals of this exact spec: SSH signatures (`drmesh approve`, or `ssh-keygen -Y
    /// sign -n drmesh.io/approval`) over its canonical digest, by approvers the MeshPolicy
    /// names. Any edit of the spec voids them. Restricted grants need them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_APPROVALS))]
    pub approvals: Vec<Approval>,
}

/// One approver's signature over the grant's canonical digest.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The approver's name, as the MeshPolicy lists it.
    #[schemars(length(min = 1, max = 253))]
    pub approver: String,
    /// The armored SSH signature (`-----BEGIN SSH SIGNATURE-----` ...).
    #[schemars(length(min = 1, max = 4096))]
    pub signature: String,
}

// CEL reserves the word `namespace`: rules spell the field `__namespace__`.
/// Who is granted access. Which fields apply depends on `kind`, as in RBAC subjects:
/// User and Group take `name`; ServiceAccount and DataProduct take `namespace` and
/// `name`; Namespace takes `name` (the namespace) and an optional `podSelector`.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    cel,
    validation = Rule::new("has(self.name)").message("spec.subjects[].name is required"),
    validation = Rule::new("self.kind in ['ServiceAccount', 'DataProduct'] ? has(self.__namespace__) : !has(self.__namespace__)").message("spec.subjects[].namespace is required for kinds ServiceAccount and DataProduct, and not allowed for User, Group and Namespace (a Namespace subject is named by name)"),
    validation = Rule::new("!has(self.podSelector) || self.kind == 'Namespace'").message("spec.subjects[].podSelector is only allowed for kind Namespace"),
    validation = Rule::new(format!("!has(self.name) || self.kind != 'Namespace' || (size(self.name) <= 63 && self.name.matches('{DNS1123_LABEL}'))")).message("spec.subjects[].name must be a namespace name (DNS-1123 label) for kind Namespace"),
    validation = Rule::new(format!("!has(self.name) || self.kind != 'DataProduct' || (size(self.name) <= 63 && self.name.matches('{DNS1035_LABEL}'))")).message("spec.subjects[].name must be a DataProduct name (DNS-1035 label) for kind DataProduct"),
    validation = Rule::new(format!("!has(self.name) || self.kind != 'ServiceAccount' || self.name.matches('{DNS1123_SUBDOMAIN}')")).message("spec.subjects[].name must be a ServiceAccount name (DNS-1123 subdomain) for kind ServiceAccount"),
    validation = Rule::new("!has(self.name) || !(self.kind in ['User', 'Group']) || !self.name.startsWith('system:')").message("spec.subjects[].name must not be a system: user or group (system:authenticated would grant everyone)")
)]
pub struct Subject {
    /// User, Group, ServiceAccount, DataProduct or Namespace.
    pub kind: SubjectKind,
    /// User or group name as authenticated by the API server; ServiceAccount or
    /// DataProduct name; or, for kind Namespace, the namespace's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Namespace of the ServiceAccount or DataProduct (only for those kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), pattern(DNS1123_LABEL))]
    pub namespace: Option<String>,
    /// For kind Namespace: only pods with these labels get ingress; default all pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<PodSelector>,
}

impl Subject {
    /// A User, Group or Namespace subject.
    pub fn named(kind: SubjectKind, name: impl Into<String>) -> Self {
        Self { kind, name: Some(name.into()), namespace: None, pod_selector: None }
    }

    /// A ServiceAccount or DataProduct subject.
    pub fn namespaced(kind: SubjectKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { kind, name: Some(name.into()), namespace: Some(namespace.into()), pod_selector: None }
    }
}

/// Kind of subject.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectKind {
    User,
    Group,
    ServiceAccount,
    DataProduct,
    Namespace,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServiceAccount => "ServiceAccount",
            Self::DataProduct => "DataProduct",
            Self::Namespace => "Namespace",
        }
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Pods selected by labels (the `matchLabels` part of a Kubernetes LabelSelector).
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "camelCase")]
pub struct PodSelector {
    /// Labels a pod must all carry.
    #[serde(default)]
    #[schemars(transform = label_values)]
    pub match_labels: BTreeMap<String, String>,
}

/// At most 16 labels, each value a valid label value. (A CEL rule over map keys exceeds
/// the API server's cost budget: the operator checks keys before building anything and
/// denies the subject with `InvalidPodSelector`, naming the key.)
fn label_values(schema: &mut schemars::Schema) {
    schema.insert("maxProperties".into(), 16.into());
    schema.insert(
        "additionalProperties".into(),
        serde_json::json!({"type": "string", "maxLength": 63, "pattern": LABEL_VALUE}),
    );
}

/// Observed state of an AccessPolicy, written by the operator.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready and Granted; reasons such as Expired, ClearanceTooLow, MissingPurpose,
    /// DataProductNotFound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Subjects that have access now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SUBJECTS))]
    pub effective_subjects: Vec<Subject>,

    /// Subjects refused, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_SUBJECTS))]
    pub denied_subjects: Vec<DeniedSubject>,

    /// Number of effective subjects (shown by kubectl get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_count: Option<i32>,

    /// When access ends (RFC 3339), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: Option<String>,

    /// Approvers whose signature over the current spec verifies (Restricted grants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_APPROVALS))]
    pub approved_by: Vec<String>,
}

/// A subject the policy names but does not grant, and why.
#[derive(Serialize, Deserialize, KubeSchema, Clone, Debug, PartialEq, Eq)]
pub struct DeniedSubject {
    /// The subject as written in spec.subjects.
    pub subject: Subject,
    /// CamelCase reason, e.g. ClearanceTooLow, Expired, MissingPurpose.
    pub reason: String,
    /// Details for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
