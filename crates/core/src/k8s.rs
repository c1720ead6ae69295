//! Small typed builders of the Kubernetes objects drmesh writes: k8s-openapi structs all
//! the way, so that a misspelt field does not compile (a `json!` shape converted at run
//! time would silently lose it).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{IPBlock, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The metadata of a child: its name, namespace, labels and controller owner.
pub fn meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// `get` (or `verbs`) on `resources` of `group`, limited to `names`.
pub fn rule(group: &str, resources: &[&str], names: Vec<String>, verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.to_string()).collect()),
        resource_names: Some(names),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// A reference to the Role `name` of the same namespace.
pub fn role_ref(name: &str) -> RoleRef {
    RoleRef { api_group: RBAC_GROUP.into(), kind: "Role".into(), name: name.to_string() }
}

/// A User or Group subject.
pub fn person(kind: &str, name: &str) -> Subject {
    Subject { api_group: Some(RBAC_GROUP.into()), kind: kind.to_string(), name: name.to_string(), namespace: None }
}

/// A ServiceAccount subject.
pub fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.to_string(),
        namespace: Some(namespace.into()),
    }
}

/// A selector of `labels` exactly.
pub fn match_labels<K: Into<String>, V: Into<String>>(labels: impl IntoIterator<Item = (K, V)>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels.into_iter().map(|(k, v)| (k.into(), v.into())).collect()),
        match_expressions: None,
    }
}

/// A selector of `key In values`.
pub fn label_in(key: &str, values: &[String]) -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.to_string(),
            operator: "In".into(),
            values: Some(values.to_vec()),
        }]),
    }
}

/// Pods selected by `pods` in the namespaces selected by `namespaces`.
pub fn pods_in(namespaces: LabelSelector, pods: LabelSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer { namespace_selector: Some(namespaces), pod_selector: Some(pods), ip_block: None }
}

/// The addresses of `cidr`.
pub fn ip_block(cidr: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock { cidr: cidr.to_string(), except: None }),
        namespace_selector: None,
        pod_selector: None,
    }
}

/// One port (by number) of `protocol`.
pub fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.to_string()), port: Some(IntOrString::Int(number)), end_port: None }
}
