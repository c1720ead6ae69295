//! NetworkPolicies, judged as Kubernetes enforces them: a rule opens traffic between the
//! pods its policy selects and its peers, on its ports; a pod is isolated in a direction
//! once any policy of that type selects it. Every opening must be one the guides allow:
//! ingress to a product from the pods of an effective `DataProduct` or `Namespace`
//! subject on a granted port; egress from a product to DNS, to a product that granted it
//! on a granted port, and to the `cidr:port` of a source it may use. People read through
//! the API server's proxy: ingress from the API server's own addresses is allowed on the
//! ports a grant gives a User, Group or ServiceAccount.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Finding, Grant, NAMESPACE_NAME_LABEL, PRODUCT_LABEL, Subject, World, id, items, str_of};
use super::{product_pod_labels, required_values, selects};

/// A class of pods a selector picks in one namespace.
#[derive(Clone, Debug, PartialEq)]
enum Target {
    /// The pods of a product (declared or not), as labelled by the guide.
    Product(String),
    /// Pods that are no product's, or any product's: the selector does not confine them.
    Other,
}

/// One class of peer, split so that each names at most one namespace and one product.
#[derive(Clone, Debug)]
enum Peer {
    /// Everything: an empty `from`/`to`, or a peer without fields.
    Anything,
    Ip(String),
    Pods {
        /// None: any namespace (the selector does not name them).
        namespace: Option<String>,
        /// The pod selector (Null: every pod of the namespace).
        selector: Value,
        /// The one product the selector confines the pods to, if it does.
        product: Option<String>,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Anything => write!(f, "anywhere"),
            Peer::Ip(c) => write!(f, "ipBlock {c}"),
            Peer::Pods { namespace, selector, product } => {
                let ns = namespace.as_deref().unwrap_or("any namespace");
                match product {
                    Some(p) => write!(f, "pods of product {ns}/{p}"),
                    None if selector.as_object().is_none_or(|o| {
                        o.values().all(|v| v.is_null() || v == &serde_json::json!({}) || v == &serde_json::json!([]))
                    }) =>
                    {
                        write!(f, "every pod of {ns}")
                    }
                    None => write!(f, "pods of {ns} matching {selector}"),
                }
            }
        }
    }
}

/// (policy selects ingress, selects egress), with the API server's defaults.
fn policy_types(spec: &Value) -> (bool, bool) {
    match spec["policyTypes"].as_array() {
        Some(types) if !types.is_empty() => (types.iter().any(|t| t == "Ingress"), types.iter().any(|t| t == "Egress")),
        _ => (true, spec["egress"].as_array().is_some_and(|e| !e.is_empty())),
    }
}

/// The product names that pods in `namespace` may carry: declared products and the pod
/// labels of Deployments there.
fn product_names(world: &World, namespace: &str) -> BTreeSet<String> {
    let declared = world.products.values().filter(|p| p.namespace == namespace).map(|p| p.name.clone());
    let running = world
        .deployments
        .iter()
        .filter(|d| d["metadata"]["namespace"] == namespace)
        .filter_map(|d| d["spec"]["template"]["metadata"]["labels"][PRODUCT_LABEL].as_str().map(String::from));
    declared.chain(running).collect()
}

fn targets(world: &World, namespace: &str, selector: &Value) -> Vec<Target> {
    let confined = required_values(selector, PRODUCT_LABEL);
    let mut names = product_names(world, namespace);
    names.extend(confined.iter().flatten().cloned());
    let mut targets: Vec<Target> =
        names.into_iter().filter(|n| selects(selector, &product_pod_labels(n))).map(Target::Product).collect();
    if confined.is_none() {
        targets.push(Target::Other);
    }
    targets
}

fn peers(world_ns: &str, list: &Value) -> Vec<Peer> {
    let Some(list) = list.as_array().filter(|l| !l.is_empty()) else {
        return vec![Peer::Anything];
    };
    let mut out = Vec::new();
    for peer in list {
        if let Some(cidr) = peer["ipBlock"]["cidr"].as_str() {
            out.push(Peer::Ip(cidr.to_string())); // `except` only narrows
            continue;
        }
        let (ns_sel, pod_sel) = (&peer["namespaceSelector"], &peer["podSelector"]);
        if ns_sel.is_null() && pod_sel.is_null() {
            out.push(Peer::Anything);
            continue;
        }
        let namespaces: Vec<Option<String>> = if ns_sel.is_null() {
            vec![Some(world_ns.to_string())]
        } else {
            match required_values(ns_sel, NAMESPACE_NAME_LABEL) {
                Some(names) => names.into_iter().map(Some).collect(),
                None => vec![None],
            }
        };
        let products: Vec<Option<String>> = match required_values(pod_sel, PRODUCT_LABEL) {
            Some(names) => names.into_iter().map(Some).collect(),
            None => vec![None],
        };
        for namespace in &namespaces {
            for product in &products {
                out.push(Peer::Pods {
                    namespace: namespace.clone(),
                    selector: pod_sel.clone(),
                    product: product.clone(),
                });
            }
        }
    }
    out
}

/// Whether the peer's pods are all pods an AccessPolicy subject names.
fn subject_covers(subject: &Subject, peer: &Peer) -> bool {
    let Peer::Pods { namespace: Some(ns), selector, product } = peer else {
        return false;
    };
    match subject {
        Subject::DataProduct { namespace, name } => namespace == ns && product.as_ref() == Some(name),
        Subject::Namespace { name, pods } => {
            name == ns
                && pods.iter().all(|(k, v)| {
                    if k == PRODUCT_LABEL {
                        product.as_ref() == Some(v)
                    } else {
                        required_values(selector, k).is_some_and(|vals| vals.iter().all(|x| x == v))
                    }
                })
        }
        _ => false,
    }
}

/// A port entry resolved against the destination's named ports: (protocol, numbers), or
/// Err(what) when it is unbounded or cannot be resolved.
fn resolve(entry: &Value, named: &[(i64, String)]) -> Result<(String, Vec<i64>), String> {
    let Some(entry) = entry.as_object() else {
        return Err("every port".into());
    };
    let proto = entry.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string();
    match entry.get("port") {
        None | Some(Value::Null) => Err(format!("every {proto} port")),
        Some(Value::String(name)) => match named.iter().find(|(_, n)| n == name) {
            Some((n, _)) => Ok((proto, vec![*n])),
            None => Err(format!("named port {name} (not an output port of the destination)")),
        },
        Some(n) => {
            let from = n.as_i64().ok_or_else(|| format!("port {n}"))?;
            let to = entry.get("endPort").and_then(Value::as_i64).unwrap_or(from);
            if to - from > 4096 {
                return Err(format!("{proto} ports {from}-{to}"));
            }
            Ok((proto, (from..=to).collect()))
        }
    }
}

fn port_entries(rule: &Value) -> Vec<Value> {
    match rule["ports"].as_array() {
        Some(p) if !p.is_empty() => p.clone(),
        _ => vec![Value::Null],
    }
}

fn ingress_allowed(grants: &[Grant], ns: &str, product: &str, peer: &Peer, proto: &str, port: i64) -> bool {
    proto == "TCP"
        && grants.iter().any(|g| {
            g.namespace == ns
                && g.product == product
                && g.ports.iter().any(|(n, _)| *n == port)
                && g.subjects.iter().any(|s| subject_covers(s, peer))
        })
}

/// Ingress from `cidr` to `product`: only from within the API server's addresses, on a
/// port some grant gives a person or a ServiceAccount (they read through its proxy).
fn from_api_server(
    world: &World,
    grants: &[Grant],
    ns: &str,
    product: &str,
    cidr: &str,
    proto: &str,
    port: i64,
) -> bool {
    proto == "TCP"
        && world.api_server.iter().any(|a| cidr_within(cidr, a))
        && grants.iter().any(|g| {
            g.namespace == ns
                && g.product == product
                && g.ports.iter().any(|(n, _)| *n == port)
                && g.subjects
                    .iter()
                    .any(|s| matches!(s, Subject::User(_) | Subject::Group(_) | Subject::ServiceAccount { .. }))
        })
}

fn dns(peer: &Peer, proto: &str, port: i64) -> bool {
    matches!(peer, Peer::Pods { namespace: Some(ns), selector, .. }
        if ns == "kube-system" && required_values(selector, "k8s-app").is_some_and(|v| v.len() == 1 && v.contains("kube-dns")))
        && port == 53
        && (proto == "UDP" || proto == "TCP")
}

/// Egress from `consumer` to a product that granted it, on a granted port.
fn egress_to_product(grants: &[Grant], ns: &str, consumer: &str, peer: &Peer, proto: &str, port: i64) -> bool {
    let Peer::Pods { namespace: Some(peer_ns), product: Some(producer), .. } = peer else {
        return false;
    };
    let me = Subject::DataProduct { namespace: ns.to_string(), name: consumer.to_string() };
    proto == "TCP"
        && grants.iter().any(|g| {
            &g.namespace == peer_ns
                && &g.product == producer
                && g.ports.iter().any(|(n, _)| *n == port)
                && g.subjects.contains(&me)
        })
}

fn egress_to_source(world: &World, ns: &str, consumer: &str, cidr: &str, proto: &str, port: i64) -> bool {
    proto == "TCP"
        && world.sources.values().any(|s| {
            s.namespace == ns
                && s.port == port
                && s.cidr.as_deref().is_some_and(|outer| cidr_within(cidr, outer))
                && world.source_users(s).iter().any(|p| p.name == consumer)
        })
}

/// (IPv6, address left-aligned in 128 bits, prefix length): IPv4 sits in the top 32 bits,
/// so one mask serves both families.
fn parse_cidr(c: &str) -> Option<(bool, u128, u32)> {
    let (addr, len) = c.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match addr.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) if len <= 32 => Some((false, u128::from(u32::from(a)) << 96, len)),
        std::net::IpAddr::V6(a) if len <= 128 => Some((true, u128::from(a), len)),
        _ => None,
    }
}

/// Whether every address of `inner` is in `outer`.
pub fn cidr_within(inner: &str, outer: &str) -> bool {
    let (Some((v6a, a, la)), Some((v6b, b, lb))) = (parse_cidr(inner), parse_cidr(outer)) else {
        return false;
    };
    let mask = if lb == 0 { 0 } else { u128::MAX << (128 - lb) };
    v6a == v6b && la >= lb && (a & mask) == (b & mask)
}

/// Every opening no grant, input or source use allows.
pub(super) fn judge(world: &World, grants: &[Grant]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for np in &world.network_policies {
        let child = id("NetworkPolicy", np);
        let ns = str_of(&np["metadata"]["namespace"]);
        let spec = &np["spec"];
        let (ingress, egress) = policy_types(spec);
        let selected = targets(world, &ns, &spec["podSelector"]);
        let mut report = |what: String| findings.push(Finding { child: child.clone(), what });
        for (direction, on, rules) in [("ingress", ingress, &spec["ingress"]), ("egress", egress, &spec["egress"])] {
            if !on {
                continue;
            }
            for (r, rule) in items(rules).enumerate() {
                let peer_list = if direction == "ingress" { &rule["from"] } else { &rule["to"] };
                for target in &selected {
                    let Target::Product(product) = target else {
                        report(format!("{direction} rule {r} applies to pods that are no single product's"));
                        continue;
                    };
                    for peer in peers(&ns, peer_list) {
                        // Named ports are the destination's: the product itself for ingress.
                        let dest_ports = match (&peer, direction) {
                            (_, "ingress") => world.product(&ns, product).map(|p| p.ports.clone()),
                            (Peer::Pods { namespace: Some(n), product: Some(p), .. }, _) => {
                                world.product(n, p).map(|p| p.ports.clone())
                            }
                            _ => None,
                        }
                        .unwrap_or_default();
                        for entry in port_entries(rule) {
                            let (proto, ports) = match resolve(&entry, &dest_ports) {
                                Ok(p) => p,
                                Err(what) => {
                                    report(format!(
                                        "{direction} rule {r}: {ns}/{product} {} {peer} on {what}",
                                        if direction == "ingress" { "reached from" } else { "reaches" }
                                    ));
                                    continue;
                                }
                            };
                            for port in ports {
                                let allowed = if direction == "ingress" {
                                    match &peer {
                                        Peer::Ip(cidr) => {
                                            from_api_server(world, grants, &ns, product, cidr, &proto, port)
                                        }
                                        _ => ingress_allowed(grants, &ns, product, &peer, &proto, port),
                                    }
                                } else {
                                    match &peer {
                                        Peer::Ip(cidr) => egress_to_source(world, &ns, product, cidr, &proto, port),
                                        _ => {
                                            dns(&peer, &proto, port)
                                                || egress_to_product(grants, &ns, product, &peer, &proto, port)
                                        }
                                    }
                                };
                                if !allowed {
                                    report(format!(
                                        "{direction} rule {r}: {ns}/{product} {} {peer} on {proto}/{port}, which nothing declared allows",
                                        if direction == "ingress" { "reached from" } else { "reaches" }
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    findings
}

/// Whether pods with these labels in `namespace` are isolated (ingress, egress): some
/// policy of that type selects them.
pub(super) fn isolated(world: &World, namespace: &str, labels: &BTreeMap<String, String>) -> (bool, bool) {
    let mut isolated = (false, false);
    for np in world.network_policies.iter().filter(|np| np["metadata"]["namespace"] == namespace) {
        if selects(&np["spec"]["podSelector"], labels) {
            let (i, e) = policy_types(&np["spec"]);
            isolated = (isolated.0 || i, isolated.1 || e);
        }
    }
    isolated
}
