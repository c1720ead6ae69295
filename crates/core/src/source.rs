//! Builds what a DataSource gives its consumers: read access to its credentials Secret
//! for exactly their ServiceAccounts, and egress from exactly their pods to its endpoint.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::ResourceExt;

use super::k8s::{self, ip_block, label_in, port, role_ref, rule};
use super::labels::{self, DATA_PRODUCT, DATA_SOURCE};
use super::rules::{self, Problem, Reason};
use super::{MeshView, owner_reference};
use crate::api::DataSource;

/// What drmesh knows of a source's credentials Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// It exists without the label `drmesh.io/credentials: "true"`: whoever may write it
    /// has not released it to drmesh, so no product may mount it (a DataSource's author
    /// must not be able to mount a Secret they cannot read: confused deputy).
    NotReleased,
    Released,
}

impl SecretState {
    /// From the Secret's labels, when it exists.
    pub fn of(labels: Option<&BTreeMap<String, String>>) -> Self {
        match labels.and_then(|l| l.get(labels::CREDENTIALS)) {
            Some(v) if v == "true" => SecretState::Released,
            _ => SecretState::NotReleased,
        }
    }

    /// Why the source cannot lend this Secret, if it cannot.
    pub fn problem(self, namespace: &str, secret: &str) -> Option<Problem> {
        let problem = match self {
            SecretState::Released => None,
            SecretState::Missing => Some(Problem::new(
                Reason::SecretNotFound,
                format!("spec.credentialsSecretRef: Secret {namespace}/{secret} does not exist"),
            )),
            SecretState::NotReleased => Some(Problem::new(
                Reason::SecretNotReleased,
                format!(
                    "spec.credentialsSecretRef: Secret {namespace}/{secret} is not released to drmesh: someone \
                     who may read it must label it {}=true",
                    labels::CREDENTIALS
                ),
            )),
        };
        problem.map(|p| p.at("spec.credentialsSecretRef"))
    }
}

/// Every child of one DataSource; all absent while no product may use it.
#[derive(Clone, Debug, Default)]
pub struct SourceBundle {
    pub role: Option<Role>,
    pub binding: Option<RoleBinding>,
    pub egress: Option<NetworkPolicy>,
}

/// Builds the children of `source` for its allowed `consumers` (product names, sorted).
pub fn build(source: &DataSource, consumers: &[String]) -> SourceBundle {
    if consumers.is_empty() {
        return SourceBundle::default();
    }
    let namespace = source.namespace().unwrap_or_default();
    let owner = owner_reference(source);
    let labels = BTreeMap::from([
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (DATA_SOURCE.to_string(), source.name_any()),
    ]);
    let rbac_name = labels::source_credentials(&source.name_any());
    let secret = &source.spec.credentials_secret_ref.name;
    let metadata = k8s::meta(&rbac_name, &namespace, &labels, &owner);
    let role =
        Role { metadata: metadata.clone(), rules: Some(vec![rule("", &["secrets"], vec![secret.clone()], &["get"])]) };
    let subjects = consumers.iter().map(|c| k8s::service_account(&namespace, c)).collect();
    let binding = RoleBinding { metadata, role_ref: role_ref(&rbac_name), subjects: Some(subjects) };
    // NetworkPolicies cannot name hosts: without a CIDR the endpoint stays unreachable (fail closed).
    let egress = source.spec.endpoint.cidr.as_ref().map(|cidr| NetworkPolicy {
        metadata: k8s::meta(&labels::source_egress(&source.name_any()), &namespace, &labels, &owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(label_in(DATA_PRODUCT, consumers)),
            policy_types: Some(vec!["Egress".into()]),
            egress: Some(vec![NetworkPolicyEgressRule {
                to: Some(vec![ip_block(cidr)]),
                ports: Some(vec![port("TCP", source.spec.endpoint.port)]),
            }]),
            ingress: None,
        }),
    });
    SourceBundle { role: Some(role), binding: Some(binding), egress }
}

/// Products allowed to use `source`, were it Ready: they declare it, may run, and reach
/// it (or wait only for this source to be Ready). The caller passes none while the source
/// itself is not Ready. Neither part reads a grant or the clock ([`rules::product_blocker`],
/// [`rules::source_input`]): a source with 50 users does not plan 50 products' grants.
pub fn allowed_consumers(view: &dyn MeshView, source: &DataSource) -> Vec<String> {
    let namespace = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let mut consumers: Vec<String> = view
        .products_using_source(&namespace, &name)
        .iter()
        .filter(|product| {
            let reaches = product.spec.inputs.iter().any(|i| i.data_source.as_deref() == Some(name.as_str()))
                && match rules::source_input(view, &namespace, &name, product.spec.classification) {
                    Ok(_) => true,
                    Err(problem) => problem.reason == Reason::InputNotReady,
                };
            reaches && rules::product_blocker(view, product).is_none()
        })
        .map(|p| p.name_any())
        .collect();
    consumers.sort();
    consumers
}

/// The products `source` lends its credentials and endpoint to now: none while it is
/// not Ready (the operator and `drmesh render` both decide here).
pub fn lends_to(view: &dyn MeshView, source: &DataSource, secret: SecretState) -> Vec<String> {
    let clearance = view.clearance(&source.namespace().unwrap_or_default());
    match source_problem(source, secret, clearance) {
        None => allowed_consumers(view, source),
        Some(_) => vec![],
    }
}

/// Why the source cannot lend its credentials and endpoint now, if it cannot (pure).
pub fn source_problem(
    source: &DataSource,
    secret: SecretState,
    clearance: crate::api::Classification,
) -> Option<(rules::Problem, bool)> {
    let namespace = source.namespace().unwrap_or_default();
    let classification = source.spec.classification;
    if clearance < classification {
        let msg = format!(
            "spec.classification {classification} exceeds the clearance {clearance} of domain {namespace} (namespace label drmesh.io/clearance)"
        );
        return Some((rules::Problem::new(Reason::NamespaceClearanceTooLow, msg).at("spec.classification"), true));
    }
    if let Some(problem) = secret.problem(&namespace, &source.spec.credentials_secret_ref.name) {
        return Some((problem, false));
    }
    if source.spec.endpoint.cidr.is_none() {
        let msg =
            "spec.endpoint.cidr is needed for consumers to reach the endpoint (NetworkPolicies cannot name hosts)";
        return Some((rules::Problem::new(Reason::EndpointNeedsCidr, msg).at("spec.endpoint.cidr"), true));
    }
    None
}
