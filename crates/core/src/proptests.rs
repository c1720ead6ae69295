//! Property tests: over thousands of generated meshes, every pod the builders produce is
//! restricted, and no child grants more than the policies and rules allow.

use std::collections::BTreeSet;

use jiff::Timestamp;
use kube::ResourceExt;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::rules::{self, Reach};
use super::{MeshView, Snapshot, grant, product, source};
use crate::api::{AccessPolicy, Classification, DataProduct, DataSource, SubjectKind};

const NAMESPACES: [&str; 4] = ["ns-a", "ns-b", "ns-c", "ns-d"];
const LEVELS: [&str; 3] = ["Public", "Internal", "Restricted"];

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().expect("time")
}

fn level() -> impl Strategy<Value = usize> {
    0..3usize
}

/// (namespace, level, inputs as (is_source, namespace, index), replicas)
type GenProduct = (usize, usize, Vec<(bool, usize, usize)>, u8);
/// (namespace, product index, subjects as (kind, namespace, index), purpose, expiry offset in hours, ports)
type GenPolicy = (usize, usize, Vec<(u8, usize, usize)>, bool, i8, Vec<u8>);

#[derive(Debug, Clone)]
struct Gen {
    clearances: Vec<Option<usize>>,
    sources: Vec<(usize, usize)>, // (namespace, level)
    products: Vec<GenProduct>,
    policies: Vec<GenPolicy>,
}

fn mesh_strategy() -> impl Strategy<Value = Gen> {
    (
        prop::collection::vec(prop::option::of(level()), 4),
        prop::collection::vec((0..4usize, level()), 0..4),
        prop::collection::vec(
            (0..4usize, level(), prop::collection::vec((any::<bool>(), 0..4usize, 0..6usize), 0..3), 0..4u8),
            1..6,
        ),
        prop::collection::vec(
            (
                0..4usize,
                0..6usize,
                prop::collection::vec((0..5u8, 0..4usize, 0..6usize), 0..4),
                any::<bool>(),
                -3..3i8,
                prop::collection::vec(0..3u8, 0..3),
            ),
            0..6,
        ),
    )
        .prop_map(|(clearances, sources, products, policies)| Gen { clearances, sources, products, policies })
}

fn build_mesh(g: &Gen) -> Snapshot {
    let mut mesh = Snapshot::default();
    for (i, c) in g.clearances.iter().enumerate() {
        if let Some(c) = c {
            mesh.set_clearance(NAMESPACES[i], LEVELS[*c].parse().expect("level"));
        }
    }
    for (i, (ns, lvl)) in g.sources.iter().enumerate() {
        let source: DataSource = serde_json::from_value(json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "DataSource",
            "metadata": {"name": format!("src-{i}"), "namespace": NAMESPACES[*ns], "uid": format!("u-src-{i}")},
            "spec": {"classification": LEVELS[*lvl], "type": "Postgres",
                     "endpoint": {"cidr": "10.0.0.0/24", "port": 5432}, "credentialsSecretRef": {"name": format!("s-{i}")}}
        }))
        .expect("source");
        mesh.add_source(source);
    }
    for (i, (ns, lvl, inputs, replicas)) in g.products.iter().enumerate() {
        let inputs: Vec<Value> = inputs
            .iter()
            .map(|(is_source, ins, idx)| {
                if *is_source {
                    json!({"dataSource": format!("src-{idx}")})
                } else {
                    json!({"dataProduct": {"namespace": NAMESPACES[*ins], "name": format!("p-{idx}")}})
                }
            })
            .collect();
        let product: DataProduct = serde_json::from_value(json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": format!("p-{i}"), "namespace": NAMESPACES[*ns], "uid": format!("u-p-{i}")},
            "spec": {"classification": LEVELS[*lvl], "inputs": inputs,
                     "runtime": {"image": "registry.example/x:1", "replicas": replicas},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}, {"name": "grpc", "port": 9090, "protocol": "GRPC"}]}
        }))
        .expect("product");
        mesh.add_product(product);
    }
    for (i, (ns, pidx, subjects, purpose, offset, ports)) in g.policies.iter().enumerate() {
        let subjects: Vec<Value> = subjects
            .iter()
            .map(|(kind, sns, idx)| match kind {
                0 => json!({"kind": "User", "name": format!("user-{idx}")}),
                1 => json!({"kind": "Group", "name": format!("group-{idx}")}),
                2 => json!({"kind": "ServiceAccount", "namespace": NAMESPACES[*sns], "name": format!("sa-{idx}")}),
                3 => json!({"kind": "DataProduct", "namespace": NAMESPACES[*sns], "name": format!("p-{idx}")}),
                _ => json!({"kind": "Namespace", "name": NAMESPACES[*sns]}),
            })
            .collect();
        let mut spec = json!({"dataProduct": format!("p-{pidx}"), "subjects": subjects});
        if *purpose {
            spec["purpose"] = json!("a written purpose for the test");
        }
        if *offset != 0 {
            let at = now() + jiff::SignedDuration::from_hours(i64::from(*offset));
            spec["expiresAt"] = json!(at.to_string());
        }
        if !ports.is_empty() {
            spec["ports"] = json!(ports.iter().map(|p| ["http", "grpc", "9090"][*p as usize]).collect::<Vec<_>>());
        }
        let policy: AccessPolicy = serde_json::from_value(json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": format!("ap-{i}"), "namespace": NAMESPACES[*ns], "uid": format!("u-ap-{i}")},
            "spec": spec,
        }))
        .expect("policy");
        mesh.add_policy(policy);
    }
    mesh
}

fn assert_restricted_pod(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(pod.get("hostNetwork").is_none() && pod.get("hostPID").is_none() && pod.get("hostIPC").is_none());
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        assert!(volume.get("hostPath").is_none(), "no hostPath: {volume}");
    }
    for c in pod["containers"].as_array().into_iter().flatten() {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert!(sc.get("privileged").is_none() && sc["capabilities"].get("add").is_none());
        for e in c["env"].as_array().into_iter().flatten() {
            assert!(e.get("valueFrom").is_none(), "no secret in env: {e}");
        }
    }
}

/// The ports `consumer` may reach on `producer` according to the policies alone.
fn allowed_ports(mesh: &Snapshot, consumer: &DataProduct, producer: &DataProduct) -> BTreeSet<i64> {
    let (cns, pns) = (consumer.namespace().unwrap_or_default(), producer.namespace().unwrap_or_default());
    let mut ports = BTreeSet::new();
    for policy in mesh.policies_for(&pns, &producer.name_any()) {
        let spec = &policy.spec;
        let expired = spec.expires_at.as_deref().and_then(|e| e.parse::<Timestamp>().ok()).is_some_and(|t| t <= now());
        let restricted = producer.spec.classification == Classification::Restricted;
        if expired || (restricted && (spec.purpose.is_none() || spec.expires_at.is_none())) {
            continue;
        }
        let names_consumer = spec.subjects.iter().any(|s| {
            s.kind == SubjectKind::DataProduct
                && s.namespace.as_deref() == Some(cns.as_str())
                && s.name.as_deref() == Some(consumer.name_any().as_str())
        });
        if names_consumer && mesh.clearance(&cns) >= producer.spec.classification {
            let (selected, unknown) = rules::select_ports(producer, spec.ports.as_deref());
            if unknown.is_empty() {
                ports.extend(selected.iter().map(|(n, _)| i64::from(*n)));
            }
        }
    }
    ports
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn pods_are_restricted_and_products_reach_only_what_is_granted(g in mesh_strategy()) {
        let mesh = build_mesh(&g);
        for p in mesh.products.values() {
            let plan = rules::plan_product(&mesh, p, now());
            let bundle = product::build(p, &plan);
            let ns = p.namespace().unwrap_or_default();
            if let Some(d) = &bundle.deployment {
                assert_restricted_pod(&serde_json::to_value(d).expect("json"));
                // A running product is cleared for its domain and classified above its inputs.
                prop_assert!(mesh.clearance(&ns) >= p.spec.classification);
                for input in &plan.inputs {
                    if let Ok(Reach::Source { .. }) = &input.outcome
                        && let rules::InputKey::Source(name) = &input.input {
                            let s = mesh.source(&ns, name).expect("reached sources exist");
                            prop_assert!(s.spec.classification <= p.spec.classification);
                        }
                }
            }
            // Every egress rule but DNS leads to an input the policies allow, on allowed ports.
            let egress = serde_json::to_value(&bundle.isolation).expect("json")["spec"]["egress"].clone();
            for rule in egress.as_array().into_iter().flatten().skip(1) {
                let to_ns = rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str().unwrap_or("");
                let to_name = rule["to"][0]["podSelector"]["matchLabels"]["drmesh.io/data-product"].as_str().unwrap_or("");
                let target = mesh.product(to_ns, to_name).expect("egress only to existing products");
                prop_assert!(target.spec.classification <= p.spec.classification, "no downward flow");
                let allowed = allowed_ports(&mesh, p, &target);
                for port in rule["ports"].as_array().into_iter().flatten() {
                    prop_assert!(allowed.contains(&port["port"].as_i64().unwrap_or(-1)), "port {port} not granted: {rule}");
                }
            }
        }
    }

    /// A source decides whom it lends to without planning its users' grants: the same
    /// products as their whole plans, before and after the grants expire.
    #[test]
    fn a_source_lends_to_exactly_the_users_whose_plans_reach_it(g in mesh_strategy()) {
        let mesh = build_mesh(&g);
        for s in mesh.sources.values() {
            let (ns, name) = (s.namespace().unwrap_or_default(), s.name_any());
            let lent = source::allowed_consumers(&mesh, s);
            for at in [now(), now() + jiff::SignedDuration::from_hours(4)] {
                let planned: Vec<String> = mesh
                    .products
                    .values()
                    .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                    .filter(|p| {
                        let plan = rules::plan_product(&mesh, p, at);
                        plan.runnable()
                            && plan.inputs.iter().any(|i| {
                                i.input == rules::InputKey::Source(name.clone())
                                    && i.outcome.as_ref().map_or_else(|p| p.reason == rules::Reason::InputNotReady, |_| true)
                            })
                    })
                    .map(|p| p.name_any())
                    .collect();
                prop_assert_eq!(&lent, &planned, "source {}/{} at {}", ns, name, at);
            }
        }
    }

    #[test]
    fn no_grant_exceeds_its_policy(g in mesh_strategy()) {
        let mesh = build_mesh(&g);
        for policy in mesh.policies.values() {
            let plan = rules::plan_grant(&mesh, policy, now());
            let bundle = grant::build(policy, &plan);
            if bundle.role.is_none() && bundle.ingress.is_none() {
                continue;
            }
            let ns = policy.namespace().unwrap_or_default();
            let target = mesh.product(&ns, &policy.spec.data_product).expect("grants only on existing products");
            let spec = &policy.spec;
            let expiry = spec.expires_at.as_deref().and_then(|e| e.parse::<Timestamp>().ok());
            prop_assert!(expiry.is_none_or(|t| t > now()), "an expired policy grants nothing");
            if target.spec.classification == Classification::Restricted {
                prop_assert!(spec.purpose.is_some() && expiry.is_some(), "Restricted needs purpose and expiry");
            }
            let (declared_ports, _) = rules::select_ports(&target, spec.ports.as_deref());
            let declared: BTreeSet<i64> = declared_ports.iter().map(|(n, _)| i64::from(*n)).collect();
            if let Some(binding) = &bundle.binding {
                for s in binding.subjects.iter().flatten() {
                    let in_spec = spec.subjects.iter().any(|d| {
                        d.name.as_deref() == Some(s.name.as_str())
                            && match d.kind {
                                SubjectKind::User | SubjectKind::Group => d.kind.to_string() == s.kind,
                                _ => s.kind == "ServiceAccount" && d.namespace == s.namespace,
                            }
                    });
                    prop_assert!(in_spec, "RBAC subject {s:?} not in the policy");
                    if let Some(sns) = &s.namespace {
                        prop_assert!(mesh.clearance(sns) >= target.spec.classification, "clearance");
                    }
                }
            }
            if let Some(role) = &bundle.role {
                for r in role.rules.iter().flatten() {
                    prop_assert!(r.verbs == vec!["get".to_string()], "read-only");
                    prop_assert!(r.resource_names.as_ref().is_some_and(|n| !n.is_empty()), "always named");
                    for name in r.resource_names.iter().flatten().filter(|n| n.contains(':')) {
                        let port = name.rsplit(':').next().unwrap_or("");
                        let ok = declared_ports.iter().any(|(n, pname)| n.to_string() == port || pname == port);
                        prop_assert!(ok, "proxy name {name} outside the granted ports");
                    }
                }
            }
            if let Some(np) = &bundle.ingress {
                let v = serde_json::to_value(np).expect("json");
                for rule in v["spec"]["ingress"].as_array().into_iter().flatten() {
                    for port in rule["ports"].as_array().into_iter().flatten() {
                        prop_assert!(declared.contains(&port["port"].as_i64().unwrap_or(-1)));
                    }
                    for peer in rule["from"].as_array().into_iter().flatten() {
                        let peer_ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"].as_str().unwrap_or("");
                        prop_assert!(mesh.clearance(peer_ns) >= target.spec.classification, "peer clearance");
                    }
                }
            }
        }
    }
}
