//! The drmesh API (`drmesh.io/v1alpha1`): DataSource, DataProduct, AccessPolicy, and the
//! cluster-wide Clearance and MeshPolicy.
//!
//! The CRDs are generated from these types (`drmesh crds`). Admission validation lives
//! in the schema (OpenAPI bounds, patterns, enums) and in CEL rules
//! (`x-kubernetes-validations`) whose messages name the field; `validate_cel()` runs the
//! same CEL rules offline. Every list and string a rule touches is bounded, so the API
//! server's CEL cost estimate stays within budget.

mod accesspolicy;
mod classification;
mod clearance;
mod common;
mod dataproduct;
mod datasource;
#[cfg(test)]
mod tests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use accesspolicy::{
    AccessPolicy, AccessPolicySpec, AccessPolicyStatus, Approval, DeniedSubject, MAX_SUBJECTS, PodSelector, Subject,
    SubjectKind,
};
pub use classification::{
    CLEARANCE_LABEL, Classification, UnknownClassification, clearance_from_labels, clearance_or_public,
};
pub use clearance::{
    ApprovalPolicy, ApprovalScope, Approver, Clearance, ClearanceSpec, DURATION, MAX_APPROVALS, MAX_APPROVERS,
    MESH_POLICY_NAME, MaxGrantDuration, MeshPolicy, MeshPolicySpec, Person,
};
pub use common::{
    CONDITION_REASON, Condition, ConditionStatus, DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, DataProductRef,
    Owner, OwnerKind, PORT_NAME, condition_type, find_condition, set_condition,
};
pub use dataproduct::{
    Contract, DataProduct, DataProductInput, DataProductSpec, DataProductStatus, EnvVar, InputState, InputStatus,
    MAX_INPUTS, OutputPort, OutputProtocol, Resources, Runtime, ServiceLevels,
};
pub use datasource::{DataSource, DataSourceSpec, DataSourceStatus, DataSourceType, Endpoint, SecretRef};

/// API group of every drmesh kind.
pub const GROUP: &str = "drmesh.io";
/// API version of every drmesh kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every drmesh object.
pub const API_VERSION: &str = "drmesh.io/v1alpha1";

/// Most owners an object may list.
pub const MAX_OWNERS: u32 = 16;
/// Most ports a product serves, a grant allows or an input selects.
pub const MAX_PORTS: u32 = 16;
/// An output port's name, or its number.
pub const PORT_NAME_OR_NUMBER: &str = "^([a-z]([a-z0-9]|-[a-z0-9])*|[1-9][0-9]{0,4})$";

/// Transition rule on `spec.classification`: the new level is at least the old one.
pub(crate) const NO_DECLASSIFICATION: &str =
    "self == oldSelf || self == 'Restricted' || (self == 'Internal' && oldSelf == 'Public')";
pub(crate) const NO_DECLASSIFICATION_MESSAGE: &str =
    "spec.classification cannot be lowered (declassification is not an edit: create a new object)";

/// The CRDs, in a fixed order: DataSource, DataProduct, AccessPolicy, then the
/// cluster-wide Clearance and MeshPolicy.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![DataSource::crd(), DataProduct::crd(), AccessPolicy::crd(), Clearance::crd(), MeshPolicy::crd()]
}

/// Header of the generated CRD file.
const CRDS_HEADER: &str = "# Generated from crates/api by `drmesh crds` (run `make crds`). Do not edit by hand.\n";

/// The CRDs as one multi-document YAML stream, as committed in `crds/` and the chart.
pub fn crds_yaml() -> String {
    let mut out = String::from(CRDS_HEADER);
    for crd in crds() {
        out.push_str("---\n");
        // Serializing our own derived CRD types cannot fail (no maps with non-string
        // keys, no custom serializers that error); tests cover it.
        out.push_str(&drmesh_yaml::to_string(&crd).expect("CRD serializes to YAML"));
    }
    out
}
