//! The index, tested by applying objects to it (as linkerd's policy-controller index
//! tests do), then property-tested: after any sequence of events it equals an index
//! built from scratch, its lookups equal a scan of the objects, every lookup an event
//! changed was named by that event, and plans made through it equal plans made by
//! scanning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::api::{Classification, Clearance, DataSource, MeshPolicy, OwnerKind};
use crate::grant::ApiServer;
use crate::view::{MeshView, Readiness, Snapshot};

const NAMESPACES: [&str; 3] = ["ns-a", "ns-b", "ns-c"];

fn k(ns: &str, name: &str) -> Key {
    key(ns, name)
}

/// A product of `ns` reading `products` (`ns/name`) and `sources`, serving `ports`.
fn product(ns: &str, name: &str, products: &[(&str, &str)], sources: &[&str], ports: &[(i32, &str)]) -> DataProduct {
    let mut inputs: Vec<Value> =
        products.iter().map(|(n, p)| json!({"dataProduct": {"namespace": n, "name": p}})).collect();
    inputs.extend(sources.iter().map(|s| json!({"dataSource": s})));
    let ports: Vec<Value> = ports.iter().map(|(p, n)| json!({"name": n, "port": p, "protocol": "HTTP"})).collect();
    serde_json::from_value(json!({
        "apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct",
        "metadata": {"name": name, "namespace": ns, "uid": format!("u-{ns}-{name}")},
        "spec": {"classification": "Internal", "inputs": inputs,
                 "runtime": {"image": "registry.example/x:1"}, "outputPorts": ports}
    }))
    .expect("product")
}

/// A policy of `ns` granting `product` to `subjects` (JSON subjects).
fn policy(ns: &str, name: &str, product: &str, subjects: Vec<Value>, extra: Value) -> AccessPolicy {
    let mut spec = json!({"dataProduct": product, "subjects": subjects, "purpose": "a purpose long enough"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": name, "namespace": ns, "uid": format!("u-{ns}-{name}")},
        "spec": spec,
    }))
    .expect("policy")
}

fn consumer(ns: &str, name: &str) -> Value {
    json!({"kind": "DataProduct", "namespace": ns, "name": name})
}

#[test]
fn a_dropped_input_wakes_its_former_producer() {
    let mut index = MeshIndex::default();
    let woken = index.apply_product(&product("ns-a", "p1", &[("ns-b", "p2"), ("ns-c", "p3")], &[], &[]));
    assert!(woken.products.is_superset(&[k("ns-b", "p2"), k("ns-c", "p3"), k("ns-a", "p1")].into()));
    assert_eq!(index.consumers(&k("ns-b", "p2")), [k("ns-a", "p1")].into());
    // p1 drops p2: p2 (no longer named by p1) is woken, and has no consumer left.
    let woken = index.apply_product(&product("ns-a", "p1", &[("ns-c", "p3")], &[], &[]));
    assert!(woken.products.contains(&k("ns-b", "p2")) && woken.products.contains(&k("ns-c", "p3")));
    assert!(index.consumers(&k("ns-b", "p2")).is_empty());
    let woken = index.set_product(k("ns-a", "p1"), None);
    assert!(woken.products.contains(&k("ns-c", "p3")));
    assert!(index.consumers(&k("ns-c", "p3")).is_empty());
    assert!(index.is_empty());
}

#[test]
fn a_dropped_source_input_wakes_its_source() {
    let mut index = MeshIndex::default();
    index.apply_product(&product("ns-a", "p1", &[], &["db", "files"], &[]));
    index.apply_product(&product("ns-a", "p2", &[], &["db"], &[]));
    assert_eq!(index.source_users("ns-a", "db"), [k("ns-a", "p1"), k("ns-a", "p2")].into());
    assert!(index.source_users("ns-b", "db").is_empty(), "sources are read in their own namespace only");
    let woken = index.apply_product(&product("ns-a", "p1", &[], &["files"], &[]));
    assert!(woken.sources.contains(&k("ns-a", "db")), "db lost a consumer: {woken:?}");
    assert_eq!(index.source_users("ns-a", "db"), [k("ns-a", "p2")].into());
}

#[test]
fn a_subject_removed_from_a_grant_wakes_the_product_it_named() {
    let mut index = MeshIndex::default();
    let grant = policy("ns-a", "g", "feed", vec![consumer("ns-b", "reader"), consumer("ns-c", "other")], json!({}));
    let woken = index.apply_policy(&grant);
    assert_eq!(woken.products, [k("ns-a", "feed"), k("ns-b", "reader"), k("ns-c", "other")].into());
    assert_eq!(index.policies_of(&k("ns-a", "feed")), [k("ns-a", "g")].into());
    assert_eq!(index.granted_to(&k("ns-b", "reader")), [k("ns-a", "g")].into());
    let narrowed = policy("ns-a", "g", "feed", vec![consumer("ns-c", "other")], json!({}));
    let woken = index.apply_policy(&narrowed);
    assert!(woken.products.contains(&k("ns-b", "reader")), "the removed subject must be re-evaluated: {woken:?}");
    assert!(index.granted_to(&k("ns-b", "reader")).is_empty());
    let woken = index.set_policy(k("ns-a", "g"), None);
    assert!(woken.products.contains(&k("ns-c", "other")) && woken.products.contains(&k("ns-a", "feed")));
    assert!(index.policies_of(&k("ns-a", "feed")).is_empty() && index.is_empty());
}

#[test]
fn a_product_whose_ports_change_wakes_the_policies_that_grant_it() {
    let mut index = MeshIndex::default();
    index.apply_product(&product("ns-a", "feed", &[], &[], &[(8080, "http")]));
    index.apply_policy(&policy("ns-a", "g", "feed", vec![consumer("ns-b", "reader")], json!({"ports": ["grpc"]})));
    // A description edit keeps the edges: no policy to re-plan.
    let same = index.apply_product(&product("ns-a", "feed", &[], &[], &[(8080, "http")]));
    assert!(same.policies.is_empty(), "{same:?}");
    // A port the grant names appears: the grant's plan changes.
    let more = index.apply_product(&product("ns-a", "feed", &[], &[], &[(8080, "http"), (9090, "grpc")]));
    assert_eq!(more.policies, [k("ns-a", "g")].into());
    let ports = index.policy(&k("ns-a", "g")).and_then(|g| g.ports.clone());
    assert_eq!(ports.map(|p| p.iter().cloned().collect::<Vec<_>>()), Some(vec!["grpc".to_string()]));
}

#[test]
fn grants_are_found_by_their_window() {
    let mut index = MeshIndex::default();
    let t = |s: &str| s.parse::<Timestamp>().expect("time");
    let window = json!({"startsAt": "2026-12-01T00:00:00Z", "expiresAt": "2026-12-31T00:00:00Z"});
    index.apply_policy(&policy("ns-a", "december", "feed", vec![consumer("ns-b", "r")], window));
    index.apply_policy(&policy("ns-a", "open", "feed", vec![consumer("ns-b", "r")], json!({})));
    let feed = k("ns-a", "feed");
    assert_eq!(index.open_grants(&feed, t("2026-11-30T23:59:59Z")), [k("ns-a", "open")].into());
    assert_eq!(index.open_grants(&feed, t("2026-12-01T00:00:00Z")).len(), 2);
    assert_eq!(index.open_grants(&feed, t("2026-12-31T00:00:00Z")), [k("ns-a", "open")].into(), "expiry excluded");
}

#[test]
fn a_relist_forgets_what_is_gone() {
    let mut index = MeshIndex::default();
    index.apply_product(&product("ns-a", "p1", &[("ns-b", "p2")], &[], &[]));
    index.apply_product(&product("ns-b", "p2", &[], &[], &[]));
    index.apply_policy(&policy("ns-b", "g", "p2", vec![consumer("ns-a", "p1")], json!({})));
    let woken = index.retain_products(&[k("ns-b", "p2")].into());
    assert!(woken.products.contains(&k("ns-b", "p2")), "p2 lost its consumer: {woken:?}");
    index.retain_policies(&BTreeSet::new());
    assert_eq!(index, MeshIndex::from_objects(&[product("ns-b", "p2", &[], &[], &[])], &[]));
}

/// The lookups through an index, every other question to the snapshot: what the
/// operator's caches do.
struct Indexed<'a> {
    scan: &'a Snapshot,
    index: &'a MeshIndex,
}

impl Indexed<'_> {
    fn products(&self, keys: BTreeSet<Key>) -> Vec<Arc<DataProduct>> {
        keys.iter().filter_map(|(ns, name)| self.scan.product(ns, name)).collect()
    }
}

impl MeshView for Indexed<'_> {
    fn clearance(&self, namespace: &str) -> Classification {
        self.scan.clearance(namespace)
    }
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<DataSource>> {
        self.scan.source(namespace, name)
    }
    fn product(&self, namespace: &str, name: &str) -> Option<Arc<DataProduct>> {
        self.scan.product(namespace, name)
    }
    fn secret_exists(&self, namespace: &str, name: &str) -> Option<bool> {
        self.scan.secret_exists(namespace, name)
    }
    fn source_ready(&self, namespace: &str, name: &str) -> Readiness {
        self.scan.source_ready(namespace, name)
    }
    fn product_ready(&self, namespace: &str, name: &str) -> Readiness {
        self.scan.product_ready(namespace, name)
    }
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<Arc<AccessPolicy>> {
        let keys = self.index.policies_of(&k(namespace, product));
        keys.iter()
            .filter_map(|(ns, name)| self.scan.policies.get(&(ns.to_string(), name.to_string())).cloned())
            .collect()
    }
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<Arc<DataProduct>> {
        self.products(self.index.source_users(namespace, source))
    }
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<Arc<DataProduct>> {
        self.products(self.index.consumers(&k(namespace, product)))
    }
    fn api_server(&self) -> &ApiServer {
        self.scan.api_server()
    }
    fn clearances_of(&self, kind: OwnerKind, name: &str) -> Vec<Arc<Clearance>> {
        self.scan.clearances_of(kind, name)
    }
    fn mesh_policy(&self) -> Option<Arc<MeshPolicy>> {
        self.scan.mesh_policy()
    }
}

/// An event: a product or a policy set (generated content) or deleted.
#[derive(Debug, Clone)]
enum Event {
    Product { ns: usize, name: usize, inputs: Vec<(bool, usize, usize)>, ports: Vec<u8> },
    Policy { ns: usize, name: usize, product: usize, subjects: Vec<(u8, usize, usize)>, ports: Vec<u8> },
    DeleteProduct { ns: usize, name: usize },
    DeletePolicy { ns: usize, name: usize },
}

fn event() -> impl Strategy<Value = Event> {
    let n = || 0..NAMESPACES.len();
    prop_oneof![
        4 => (n(), 0..4usize, prop::collection::vec((any::<bool>(), n(), 0..4usize), 0..4),
              prop::collection::vec(0..3u8, 0..3))
            .prop_map(|(ns, name, inputs, ports)| Event::Product { ns, name, inputs, ports }),
        4 => (n(), 0..3usize, 0..4usize, prop::collection::vec((0..4u8, n(), 0..4usize), 1..4),
              prop::collection::vec(0..3u8, 0..3))
            .prop_map(|(ns, name, product, subjects, ports)| Event::Policy { ns, name, product, subjects, ports }),
        1 => (n(), 0..4usize).prop_map(|(ns, name)| Event::DeleteProduct { ns, name }),
        1 => (n(), 0..3usize).prop_map(|(ns, name)| Event::DeletePolicy { ns, name }),
    ]
}

const PORTS: [(i32, &str); 3] = [(8080, "http"), (9090, "grpc"), (5432, "sql")];

fn make_product(ns: usize, name: usize, inputs: &[(bool, usize, usize)], ports: &[u8]) -> DataProduct {
    let products: Vec<(&str, String)> =
        inputs.iter().filter(|i| !i.0).map(|(_, n, p)| (NAMESPACES[*n], format!("p{p}"))).collect();
    let products: Vec<(&str, &str)> = products.iter().map(|(n, p)| (*n, p.as_str())).collect();
    let sources: Vec<String> = inputs.iter().filter(|i| i.0).map(|(_, _, s)| format!("src{s}")).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    let ports: BTreeSet<(i32, &str)> = ports.iter().map(|p| PORTS[*p as usize]).collect();
    let ports: Vec<(i32, &str)> = ports.into_iter().collect();
    product(NAMESPACES[ns], &format!("p{name}"), &products, &sources, &ports)
}

fn make_policy(ns: usize, name: usize, product: usize, subjects: &[(u8, usize, usize)], ports: &[u8]) -> AccessPolicy {
    let mut seen = BTreeSet::new();
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, sns, i)| match kind {
            0 => json!({"kind": "Group", "name": format!("group{i}")}),
            1 => json!({"kind": "Namespace", "name": NAMESPACES[*sns]}),
            2 => json!({"kind": "ServiceAccount", "namespace": NAMESPACES[*sns], "name": format!("sa{i}")}),
            _ => consumer(NAMESPACES[*sns], &format!("p{i}")),
        })
        .filter(|s| seen.insert(s.to_string()))
        .collect();
    let extra = if ports.is_empty() {
        json!({})
    } else {
        json!({"ports": ports.iter().map(|p| PORTS[*p as usize].1).collect::<BTreeSet<_>>()})
    };
    policy(NAMESPACES[ns], &format!("g{name}"), &format!("p{product}"), subjects, extra)
}

/// Every lookup the index answers, for every key the events can name.
fn lookups(index: &MeshIndex) -> BTreeMap<String, BTreeSet<Key>> {
    let mut out = BTreeMap::new();
    for ns in NAMESPACES {
        for i in 0..4 {
            let p = k(ns, &format!("p{i}"));
            out.insert(format!("consumers {p:?}"), index.consumers(&p));
            out.insert(format!("policies {p:?}"), index.policies_of(&p));
            out.insert(format!("granted {p:?}"), index.granted_to(&p));
            out.insert(format!("source users {ns}/src{i}"), index.source_users(ns, &format!("src{i}")));
        }
    }
    out
}

/// The keys of the products, sources and policies a lookup's name is about.
fn concerns(lookup: &str, affected: &Affected) -> bool {
    affected.products.iter().chain(affected.policies.iter()).any(|key| lookup.ends_with(&format!("{key:?}")))
        || affected.sources.iter().any(|(ns, s)| lookup == format!("source users {ns}/{s}"))
}

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().expect("time")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// After any sequence of events: the index equals one built from scratch from the
    /// last state of every object; its lookups equal the snapshot's scans; each event
    /// named every object whose lookups it changed (an input, source or subject removed
    /// included); and plans made through the index equal plans made by scanning.
    #[test]
    fn the_index_equals_a_from_scratch_build_and_a_scan(events in prop::collection::vec(event(), 0..40)) {
        let mut index = MeshIndex::default();
        let mut state = Snapshot::default();
        for ns in NAMESPACES {
            state.set_clearance(ns, Classification::Restricted);
        }
        for event in &events {
            let before = lookups(&index);
            let affected = match event {
                Event::Product { ns, name, inputs, ports } => {
                    let p = make_product(*ns, *name, inputs, ports);
                    state.add_product(p.clone());
                    index.apply_product(&p)
                }
                Event::Policy { ns, name, product, subjects, ports } => {
                    let p = make_policy(*ns, *name, *product, subjects, ports);
                    state.add_policy(p.clone());
                    index.apply_policy(&p)
                }
                Event::DeleteProduct { ns, name } => {
                    let name = format!("p{name}");
                    state.products.remove(&(NAMESPACES[*ns].to_string(), name.clone()));
                    index.set_product(k(NAMESPACES[*ns], &name), None)
                }
                Event::DeletePolicy { ns, name } => {
                    let name = format!("g{name}");
                    state.policies.remove(&(NAMESPACES[*ns].to_string(), name.clone()));
                    index.set_policy(k(NAMESPACES[*ns], &name), None)
                }
            };
            for (lookup, now) in lookups(&index) {
                if now != before[&lookup] {
                    prop_assert!(concerns(&lookup, &affected), "{lookup} changed by {event:?}, not in {affected:?}");
                }
            }
        }
        let scratch = MeshIndex::from_objects(
            state.products.values().map(|p| p.as_ref()),
            state.policies.values().map(|p| p.as_ref()),
        );
        prop_assert_eq!(&index, &scratch);

        let indexed = Indexed { scan: &state, index: &index };
        let names = |v: Vec<Arc<DataProduct>>| v.iter().map(|p| key_of(p.as_ref())).collect::<Vec<_>>();
        for ns in NAMESPACES {
            for i in 0..4 {
                let (p, s) = (format!("p{i}"), format!("src{i}"));
                prop_assert_eq!(names(indexed.products_using_product(ns, &p)), names(state.products_using_product(ns, &p)));
                prop_assert_eq!(names(indexed.products_using_source(ns, &s)), names(state.products_using_source(ns, &s)));
                let policies = |v: Vec<Arc<AccessPolicy>>| v.iter().map(|p| key_of(p.as_ref())).collect::<Vec<_>>();
                prop_assert_eq!(policies(indexed.policies_for(ns, &p)), policies(state.policies_for(ns, &p)));
            }
        }
        for product in state.products.values() {
            prop_assert_eq!(
                format!("{:?}", crate::rules::plan_product(&indexed, product, now())),
                format!("{:?}", crate::rules::plan_product(&state, product, now()))
            );
        }
        for policy in state.policies.values() {
            prop_assert_eq!(
                format!("{:?}", crate::rules::plan_grant(&indexed, policy, now())),
                format!("{:?}", crate::rules::plan_grant(&state, policy, now()))
            );
        }
    }
}
