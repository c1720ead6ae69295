//! Builds what an AccessPolicy grants: RBAC for people and ServiceAccounts, and the
//! NetworkPolicy ingress from granted products' and namespaces' pods.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::labels::{self, ACCESS_POLICY, DATA_PRODUCT};
use super::rules::GrantPlan;
use super::{meta, owner_reference, typed};
use crate::api::{AccessPolicy, Subject, SubjectKind};

/// Every child of one AccessPolicy; all absent when nothing is granted.
#[derive(Clone, Debug, Default)]
pub struct GrantBundle {
    pub role: Option<Role>,
    pub binding: Option<RoleBinding>,
    pub ingress: Option<NetworkPolicy>,
}

/// The `services/proxy` resource names that reach exactly the granted ports
/// (`NAME:PORT`, by number or name, with or without scheme). The bare service name is
/// never granted: it proxies to whichever port comes first.
pub fn proxy_names(service: &str, ports: &[(i32, String)]) -> Vec<String> {
    let mut names = Vec::new();
    for (number, name) in ports {
        for port in [number.to_string(), name.clone()] {
            for scheme in ["", "http:", "https:"] {
                let n = format!("{scheme}{service}:{port}");
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
    }
    names
}

fn rbac_subject(subject: &Subject) -> Option<Value> {
    let name = subject.name.clone()?;
    match subject.kind {
        SubjectKind::User | SubjectKind::Group => Some(json!({
            "apiGroup": "rbac.authorization.k8s.io", "kind": subject.kind.to_string(), "name": name,
        })),
        // A product acts through its ServiceAccount, named after it.
        SubjectKind::ServiceAccount | SubjectKind::DataProduct => Some(json!({
            "kind": "ServiceAccount", "namespace": subject.namespace.clone()?, "name": name,
        })),
        SubjectKind::Namespace => None,
    }
}

fn network_peer(subject: &Subject) -> Option<Value> {
    match subject.kind {
        SubjectKind::DataProduct => Some(json!({
            "namespaceSelector": {"matchLabels": {labels::NAMESPACE_NAME: subject.namespace.clone()?}},
            "podSelector": {"matchLabels": {DATA_PRODUCT: subject.name.clone()?}},
        })),
        SubjectKind::Namespace => Some(json!({
            "namespaceSelector": {"matchLabels": {labels::NAMESPACE_NAME: subject.name.clone()?}},
            "podSelector": subject.pod_selector.as_ref().map(|s| serde_json::to_value(s).unwrap_or(json!({}))).unwrap_or(json!({})),
        })),
        _ => None,
    }
}

/// Builds the children of `policy` as `plan` allows.
pub fn build(policy: &AccessPolicy, plan: &GrantPlan) -> GrantBundle {
    if !plan.grants_anything() {
        return GrantBundle::default();
    }
    let product = &policy.spec.data_product;
    let namespace = policy.namespace().unwrap_or_default();
    let owner = owner_reference(policy);
    let labels = std::collections::BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (ACCESS_POLICY.to_string(), policy.name_any()),
    ]);
    let name = labels::grant(&policy.name_any());
    let metadata = meta(&name, &namespace, &labels, &owner);

    let subjects: Vec<Value> = plan.effective.iter().filter_map(rbac_subject).collect();
    let (role, binding) = if subjects.is_empty() {
        (None, None)
    } else {
        let role = typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": metadata,
            "rules": [
                {"apiGroups": ["drmesh.io"], "resources": ["dataproducts"], "resourceNames": [product], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["services"], "resourceNames": [product], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["services/proxy"], "resourceNames": proxy_names(product, &plan.ports), "verbs": ["get"]},
            ]
        }));
        let binding = typed(json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": subjects,
        }));
        (Some(role), Some(binding))
    };

    let peers: Vec<Value> = plan.effective.iter().filter_map(network_peer).collect();
    let ingress = (!peers.is_empty()).then(|| {
        typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata,
            "spec": {
                "podSelector": {"matchLabels": {DATA_PRODUCT: product}},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": peers,
                    "ports": plan.ports.iter().map(|(p, _)| json!({"protocol": "TCP", "port": p})).collect::<Vec<_>>(),
                }],
            }
        }))
    });
    GrantBundle { role, binding, ingress }
}
