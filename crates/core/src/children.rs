//! The children of one drmesh object, typed, in the one order they are applied: the
//! isolation before the workload it guards, a Role before the RoleBinding that names it.
//! `drmesh render` and the benches take this order from here; the controllers apply the
//! same bundles field by field (destructured without `..`, so a new child kind does not
//! compile until each of them handles it).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::Value;

use crate::grant::GrantBundle;
use crate::product::ProductBundle;
use crate::source::SourceBundle;

/// One child. (Variants differ in size; a list of them lives for one render, so boxing
/// would buy nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(ServiceAccount),
    Service(Service),
    Deployment(Deployment),
    Role(Role),
    RoleBinding(RoleBinding),
    ConfigMap(ConfigMap),
}

impl Child {
    /// The child as JSON, with its apiVersion and kind.
    pub fn to_value(&self) -> Value {
        let value = match self {
            Child::NetworkPolicy(o) => serde_json::to_value(o),
            Child::ServiceAccount(o) => serde_json::to_value(o),
            Child::Service(o) => serde_json::to_value(o),
            Child::Deployment(o) => serde_json::to_value(o),
            Child::Role(o) => serde_json::to_value(o),
            Child::RoleBinding(o) => serde_json::to_value(o),
            Child::ConfigMap(o) => serde_json::to_value(o),
        };
        // k8s-openapi's types always serialize; a failure would be a bug of theirs.
        value.unwrap_or(Value::Null)
    }
}

/// A Role and its RoleBinding come together or not at all.
fn rbac(role: Option<Role>, binding: Option<RoleBinding>) -> Vec<Child> {
    match (role, binding) {
        (Some(role), Some(binding)) => vec![Child::Role(role), Child::RoleBinding(binding)],
        _ => vec![],
    }
}

impl ProductBundle {
    /// Isolation, ServiceAccount, Service, Deployment, owners' Role and RoleBinding,
    /// contract ConfigMap.
    pub fn into_ordered(self) -> Vec<Child> {
        let ProductBundle { isolation, service_account, service, deployment, owners_role, owners_binding, contract } =
            self;
        let mut out = vec![Child::NetworkPolicy(isolation), Child::ServiceAccount(service_account)];
        out.extend(service.map(Child::Service));
        out.extend(deployment.map(Child::Deployment));
        out.extend(rbac(owners_role, owners_binding));
        out.extend(contract.map(Child::ConfigMap));
        out
    }
}

impl SourceBundle {
    /// Credentials Role and RoleBinding, endpoint egress NetworkPolicy.
    pub fn into_ordered(self) -> Vec<Child> {
        let SourceBundle { role, binding, egress } = self;
        let mut out = rbac(role, binding);
        out.extend(egress.map(Child::NetworkPolicy));
        out
    }
}

impl GrantBundle {
    /// Role and RoleBinding, ingress NetworkPolicy.
    pub fn into_ordered(self) -> Vec<Child> {
        let GrantBundle { role, binding, ingress } = self;
        let mut out = rbac(role, binding);
        out.extend(ingress.map(Child::NetworkPolicy));
        out
    }
}
