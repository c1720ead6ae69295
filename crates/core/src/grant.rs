//! Builds what an AccessPolicy grants: RBAC for people and ServiceAccounts, and the
//! NetworkPolicy ingress from granted products' and namespaces' pods.

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use super::k8s::{self, ip_block, match_labels, pods_in, port, role_ref, rule};
use super::labels::{self, ACCESS_POLICY, DATA_PRODUCT};
use super::owner_reference;
use super::rules::GrantPlan;
use crate::api::{AccessPolicy, Subject, SubjectKind};

/// Where people's reads come from: the API server's own addresses, in CIDR notation.
/// People read a product through `services/proxy`, so the API server opens the
/// connection to the product's pod; the grant's NetworkPolicy admits these addresses on
/// the granted ports when the grant names a User or Group (docs/security-model.md O11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiServer {
    cidrs: Vec<String>,
}

impl ApiServer {
    /// No address: people's reads through the proxy are not let through the network.
    pub fn none() -> Self {
        Self::NONE
    }

    /// Parses addresses (`10.0.0.1`, `10.0.0.0/24`, `fd00::1`, `fd00::/64`); a bare
    /// address becomes a /32 (IPv4) or /128 (IPv6). Errors name the bad value.
    pub fn parse<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let mut cidrs = Vec::new();
        for value in values {
            let value = value.as_ref().trim();
            if value.is_empty() {
                continue;
            }
            let (address, prefix) = match value.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (value, None),
            };
            let ip: std::net::IpAddr =
                address.parse().map_err(|_| format!("{value:?} is not an IP address or a CIDR such as 10.0.0.1/32"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("{value:?}: the prefix length must be 0 to {max}"))?,
            };
            let cidr = format!("{ip}/{prefix}");
            if !cidrs.contains(&cidr) {
                cidrs.push(cidr);
            }
        }
        Ok(Self { cidrs })
    }

    pub fn cidrs(&self) -> &[String] {
        &self.cidrs
    }

    /// No address at all.
    pub const NONE: ApiServer = ApiServer { cidrs: Vec::new() };
}

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

fn rbac_subject(subject: &Subject) -> Option<k8s_openapi::api::rbac::v1::Subject> {
    let name = subject.name.as_deref()?;
    match subject.kind {
        SubjectKind::User | SubjectKind::Group => Some(k8s::person(&subject.kind.to_string(), name)),
        // A product acts through its ServiceAccount, named after it.
        SubjectKind::ServiceAccount | SubjectKind::DataProduct => {
            Some(k8s::service_account(subject.namespace.as_deref()?, name))
        }
        SubjectKind::Namespace => None,
    }
}

fn network_peer(subject: &Subject) -> Option<NetworkPolicyPeer> {
    let namespace = |ns: &str| match_labels([(labels::NAMESPACE_NAME, ns)]);
    match subject.kind {
        SubjectKind::DataProduct => Some(pods_in(
            namespace(subject.namespace.as_deref()?),
            match_labels([(DATA_PRODUCT, subject.name.as_deref()?)]),
        )),
        SubjectKind::Namespace => {
            let pods = subject
                .pod_selector
                .as_ref()
                .map(|s| LabelSelector { match_labels: Some(s.match_labels.clone()), match_expressions: None })
                .unwrap_or_default();
            Some(pods_in(namespace(subject.name.as_deref()?), pods))
        }
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
    let metadata = k8s::meta(&name, &namespace, &labels, &owner);

    let subjects: Vec<_> = plan.effective.iter().filter_map(rbac_subject).collect();
    let (role, binding) = if subjects.is_empty() {
        (None, None)
    } else {
        let role = Role {
            metadata: metadata.clone(),
            rules: Some(vec![
                rule("drmesh.io", &["dataproducts"], vec![product.clone()], &["get"]),
                rule("", &["services"], vec![product.clone()], &["get"]),
                rule("", &["services/proxy"], proxy_names(product, &plan.ports), &["get"]),
            ]),
        };
        let binding = RoleBinding { metadata: metadata.clone(), role_ref: role_ref(&name), subjects: Some(subjects) };
        (Some(role), Some(binding))
    };

    let ports: Vec<_> = plan.ports.iter().map(|(p, _)| port("TCP", *p)).collect();
    let mut rules = Vec::new();
    let peers: Vec<_> = plan.effective.iter().filter_map(network_peer).collect();
    if !peers.is_empty() {
        rules.push(NetworkPolicyIngressRule { from: Some(peers), ports: Some(ports.clone()) });
    }
    // People read through the API server's proxy: its connection must reach the pod, on
    // the granted ports only, and only while a person holds the grant.
    if !plan.proxy_from.is_empty() {
        let from = plan.proxy_from.iter().map(|c| ip_block(c)).collect();
        rules.push(NetworkPolicyIngressRule { from: Some(from), ports: Some(ports) });
    }
    let ingress = (!rules.is_empty()).then(|| NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels([(DATA_PRODUCT, product.as_str())])),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            egress: None,
        }),
    });
    GrantBundle { role, binding, ingress }
}
