//! The pure core: the rules of the mesh, the builders of every child, the statuses and
//! the audit record. The operator and the offline CLI both call it; it never touches the
//! network or the clock, and this crate cannot (it has no Kubernetes client).

/// The API types this core decides on.
pub use drmesh_api as api;

pub mod audit;
pub mod children;
pub mod grant;
pub mod index;
pub mod k8s;
pub mod labels;
pub mod people;
pub mod product;
pub mod reason;
pub mod rules;
pub mod source;
pub mod status;
pub mod view;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

pub use view::{MeshView, Readiness, Snapshot};

/// The controller owner reference to `parent`. Offline (no UID yet) the UID is empty.
pub fn owner_reference<K: Resource<DynamicType = ()>>(parent: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: parent.name_any(),
        uid: parent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod people_tests;
