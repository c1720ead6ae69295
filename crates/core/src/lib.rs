//! The pure core: the rules of the mesh, the builders of every child, the statuses and
//! the audit record. The operator and the offline CLI both call it; it never touches the
//! network or the clock, and this crate cannot (it has no Kubernetes client).

/// The API types this core decides on.
pub use drmesh_api as api;

pub mod audit;
pub mod grant;
pub mod labels;
pub mod product;
pub mod reason;
pub mod rules;
pub mod source;
pub mod status;
pub mod view;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

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

/// Object metadata of a child.
pub fn meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>, owner: &OwnerReference) -> Value {
    json!({"name": name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]})
}

/// Turns a builder's JSON into its typed object. The shapes are static and covered by
/// tests; should one ever fail to convert, debug builds stop and release builds log and
/// fall back to the empty object rather than crash the operator.
pub fn typed<T: DeserializeOwned + Default>(value: Value) -> T {
    match serde_json::from_value(value) {
        Ok(t) => t,
        Err(error) => {
            debug_assert!(false, "builder produced an invalid {}: {error}", std::any::type_name::<T>());
            tracing::error!(%error, kind = std::any::type_name::<T>(), "builder produced an invalid object");
            T::default()
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
