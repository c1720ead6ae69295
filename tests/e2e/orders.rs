//! The reference mesh applied one manifest at a time in several random orders (seeded;
//! the seed is printed, `DRMESH_E2E_SEED` replays it) converges to the same children.
//! Each order runs in its own copy of the six domains (namespaces renamed with a prefix,
//! every reference to them rewritten); the children are compared with the prefix taken
//! out again. Namespaces come first: nothing can be created in a namespace that does not
//! exist.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{self, TIMEOUT};

#[path = "../support/samples.rs"]
mod samples;

const DOMAINS: [&str; 6] = ["police", "gendarmerie", "sdis", "transport", "sante", "cnc"];
const CHILD_KINDS: &str = "deployments,services,serviceaccounts,networkpolicies,roles,rolebindings,configmaps";

/// The same declarations in domains renamed `<prefix>-<domain>`.
fn renamed(doc: &Value, prefix: &str) -> Value {
    let mut doc = doc.clone();
    let rename = |v: Option<&mut Value>| {
        if let Some(v) = v
            && let Some(ns) = v.as_str().filter(|ns| DOMAINS.contains(ns))
        {
            *v = json!(format!("{prefix}-{ns}"));
        }
    };
    if doc["kind"] == "Namespace" {
        rename(doc.pointer_mut("/metadata/name"));
    }
    rename(doc.pointer_mut("/metadata/namespace"));
    for i in doc.pointer_mut("/spec/inputs").and_then(Value::as_array_mut).into_iter().flatten() {
        rename(i.pointer_mut("/dataProduct/namespace"));
    }
    for s in doc.pointer_mut("/spec/subjects").and_then(Value::as_array_mut).into_iter().flatten() {
        rename(s.get_mut("namespace"));
        if s["kind"] == "Namespace" {
            rename(s.get_mut("name"));
        }
    }
    if doc["kind"] == "AccessPolicy" && doc["spec"]["approvals"].is_array() {
        // A signature covers the grant's namespace: the renamed copy is signed again.
        doc = serde_json::from_str(&crate::harness::approved_by_examples(&doc.to_string(), &[1, 2])).expect("json");
    }
    doc
}

/// A small deterministic generator (xorshift64*), so an order is replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, (self.next() % (i as u64 + 1)) as usize);
        }
    }
}

/// The children of the prefixed domains, with what the API server adds taken out and the
/// prefix taken out of every string: `Kind/domain/name` -> content.
fn children(prefix: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for ns in DOMAINS {
        let namespace = format!("{prefix}-{ns}");
        let list = harness::kubectl_json(&[
            "get",
            CHILD_KINDS,
            "-n",
            &namespace,
            "-l",
            "app.kubernetes.io/managed-by=drmesh",
            "-o",
            "json",
        ]);
        for c in list["items"].as_array().into_iter().flatten() {
            let mut content = json!({
                "labels": c["metadata"]["labels"], "spec": c["spec"], "rules": c["rules"],
                "subjects": c["subjects"], "roleRef": c["roleRef"], "data": c["data"],
                "automount": c["automountServiceAccountToken"],
                "owner": c["metadata"]["ownerReferences"][0]["kind"],
            });
            if let Some(spec) = content["spec"].as_object_mut() {
                for server_set in ["clusterIP", "clusterIPs"] {
                    spec.remove(server_set);
                }
            }
            let mut text = content.to_string();
            for d in DOMAINS {
                text = text.replace(&format!("{prefix}-{d}"), d);
            }
            let key = format!(
                "{}/{ns}/{}",
                c["kind"].as_str().unwrap_or_default(),
                c["metadata"]["name"].as_str().unwrap_or_default()
            );
            out.insert(key, serde_json::from_str(&text).expect("json"));
        }
    }
    out
}

#[tokio::test]
async fn applying_the_samples_in_random_orders_converges_to_the_same_children() {
    let seed: u64 = std::env::var("DRMESH_E2E_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
    });
    eprintln!("random apply orders, seed {seed} (DRMESH_E2E_SEED={seed} replays them)");
    let mut rng = Rng(seed);
    let docs = samples::reference();
    let mut results: Vec<(String, Vec<String>, BTreeMap<String, Value>)> = Vec::new();
    for order in 0..3 {
        let prefix = harness::unique_name(&format!("ord{order}"));
        let mut namespaces: Vec<Value> =
            docs.iter().filter(|d| d["kind"] == "Namespace").map(|d| renamed(d, &prefix)).collect();
        for ns in &mut namespaces {
            ns["metadata"]["labels"]["drmesh.io/e2e"] = json!("true");
        }
        let mut rest: Vec<Value> =
            docs.iter().filter(|d| d["kind"] != "Namespace").map(|d| renamed(d, &prefix)).collect();
        rng.shuffle(&mut namespaces);
        rng.shuffle(&mut rest);
        let sequence: Vec<String> = rest
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d["kind"].as_str().unwrap_or_default(),
                    d["metadata"]["name"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let _cleanup: Vec<NamespaceGuard> = namespaces
            .iter()
            .map(|n| NamespaceGuard(n["metadata"]["name"].as_str().unwrap_or_default().into()))
            .collect();
        for doc in namespaces.iter().chain(&rest) {
            harness::apply_text(&doc.to_string());
        }
        let domains: Vec<String> = DOMAINS.iter().map(|d| format!("{prefix}-{d}")).collect();
        harness::wait_all_ready(&domains, TIMEOUT * 3).await;
        let found = children(&prefix);
        assert!(found.len() >= 40, "order {order} (seed {seed}): only {} children", found.len());
        results.push((prefix, sequence, found));
    }
    let (_, first_order, first) = &results[0];
    for (prefix, order, found) in &results[1..] {
        let differ: Vec<&String> =
            first.keys().chain(found.keys()).filter(|k| first.get(*k) != found.get(*k)).collect();
        assert!(
            differ.is_empty(),
            "seed {seed}: {prefix} (order {order:?}) differs from the first order ({first_order:?}) on {differ:#?}"
        );
    }
    eprintln!("3 orders, {} children each, identical", first.len());
}

/// Deletes a namespace when dropped (without waiting).
struct NamespaceGuard(String);

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        if std::env::var_os("DRMESH_E2E_KEEP").is_none() {
            let _ = harness::kubectl(&["delete", "namespace", &self.0, "--wait=false", "--ignore-not-found"]);
        }
    }
}
