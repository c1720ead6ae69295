//! What the benchmarks share: environment knobs, kubectl, and the synthetic mesh.
#![allow(dead_code)] // each bench uses its part

use std::process::Command;

pub mod judging;
pub mod narrowing;
pub mod sightings;

use drmesh::api::{AccessPolicy, Classification, DataProduct, DataSource};
use drmesh::mesh::{Snapshot, grant, product, rules, source};
use serde_json::{Value, json};

/// The kinds of children the operator manages, as kubectl names them.
pub const CHILD_KINDS: &str = "deployments,services,serviceaccounts,networkpolicies,roles,rolebindings,configmaps";

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn kubectl() -> Command {
    let mut c = Command::new(std::env::var("DRMESH_KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    if let Ok(k) = std::env::var("DRMESH_KUBECONFIG") {
        c.arg("--kubeconfig").arg(k);
    }
    c
}

/// A TCP port free on 127.0.0.1 now (no fixed ports: several clusters and benches may
/// share a machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// The items of a Kubernetes list.
pub fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

/// A client of the local cluster (DRMESH_KUBECONFIG), with short timeouts: a request to
/// an API server that is down fails fast instead of hanging a sample.
pub async fn client() -> kube::Client {
    let path = std::env::var("DRMESH_KUBECONFIG").expect("DRMESH_KUBECONFIG");
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kubeconfig config");
    config.connect_timeout = Some(std::time::Duration::from_secs(2));
    config.read_timeout = Some(std::time::Duration::from_secs(10));
    kube::Client::try_from(config).expect("client")
}

/// How many domains (namespaces) the synthetic mesh of `products` spreads over; product
/// `i` lives in domain `i % domains`.
pub fn domains(products: usize) -> usize {
    (products / 50).max(4)
}

/// People the benches grant access to: cleared Restricted (cluster-scoped Clearances).
pub const BENCH_PEOPLE: [&str; 3] = ["bench-analysts", "bench-owners", "bench-readers"];

/// The reference mesh's MeshPolicy (its EXAMPLE approvers sign the benches' Restricted
/// grants to people) and a Restricted Clearance for each of `groups`.
pub fn people(groups: &[&str], snapshot: &mut Snapshot) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/people.yaml");
    let docs = drmesh::manifest::load_documents(&path).expect("people.yaml");
    let policy = docs.iter().find(|d| d.kind() == "MeshPolicy").expect("MeshPolicy").value.clone();
    snapshot.set_mesh_policy(serde_json::from_value(policy.clone()).expect("MeshPolicy"));
    let mut out = vec![policy];
    for group in groups {
        let clearance = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "Clearance", "metadata": {"name": format!("bench-{group}")},
            "spec": {"subject": {"kind": "Group", "name": group}, "level": "Restricted",
                     "expiresAt": "2030-01-01T00:00:00Z", "reason": "benchmark people, cleared for every level"}});
        snapshot.add_person_clearance(serde_json::from_value(clearance.clone()).expect("Clearance"));
        out.push(clearance);
    }
    out
}

/// Signs an AccessPolicy document with the EXAMPLE approvers 1 and 2 (the two-person rule
/// for Restricted grants to people).
pub fn approve(doc: &mut Value) {
    let policy: AccessPolicy = serde_json::from_value(doc.clone()).expect("AccessPolicy");
    let mut approvals = Vec::new();
    for n in [1, 2] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/example-approvers/example-approver-{n}"));
        let key = ssh_key::PrivateKey::read_openssh_file(&path).expect("example key");
        let signature = drmesh::mesh::people::sign(&policy, &key).expect("sign");
        approvals.push(json!({"approver": format!("example-approver-{n}"), "signature": signature}));
    }
    doc["spec"]["approvals"] = Value::Array(approvals);
}

/// A synthetic mesh: `domains` namespaces, one source per domain, products reading it,
/// every fifth product also reading a product of the next domain through a grant.
pub fn synthetic(prefix: &str, products: usize) -> (Vec<Value>, Snapshot) {
    let domains = domains(products);
    let mut snapshot = Snapshot::default();
    let mut docs = people(&BENCH_PEOPLE, &mut snapshot);
    for d in 0..domains {
        let ns = format!("{prefix}-d{d}");
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"drmesh.io/clearance": "Restricted", "drmesh.io/bench": prefix}}}));
        docs.push(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials", "namespace": ns, "labels": {"drmesh.io/credentials": "true"}},
            "stringData": {"password": "bench"}}),
        );
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataSource", "metadata": {"name": "db", "namespace": ns},
            "spec": {"classification": "Internal", "type": "Postgres",
                     "endpoint": {"cidr": "10.50.0.0/24", "port": 5432}, "credentialsSecretRef": {"name": "db-credentials"}}}));
        snapshot.set_clearance(&ns, Classification::Restricted);
        snapshot.add_secret(&ns, "db-credentials");
    }
    for i in 0..products {
        let d = i % domains;
        let ns = format!("{prefix}-d{d}");
        let mut inputs = vec![json!({"dataSource": "db"})];
        if i % 5 == 4 {
            let producer_ns = format!("{prefix}-d{}", (i - 1) % domains);
            inputs.push(json!({"dataProduct": {"namespace": producer_ns, "name": format!("p{}", i - 1)}}));
            docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
                "metadata": {"name": format!("to-p{i}"), "namespace": producer_ns},
                "spec": {"dataProduct": format!("p{}", i - 1),
                         "subjects": [{"kind": "DataProduct", "namespace": ns, "name": format!("p{i}")},
                                      {"kind": "Group", "name": "bench-analysts"}],
                         "purpose": "benchmark of the mesh", "expiresAt": "2030-01-01T00:00:00Z"}}));
        }
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": format!("p{i}"), "namespace": ns},
            "spec": {"classification": "Internal", "owners": [{"kind": "Group", "name": "bench-owners"}], "inputs": inputs,
                     "runtime": {"image": "registry.example/bench:1.0", "replicas": 1},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}));
    }
    for doc in &docs {
        match doc["kind"].as_str() {
            Some("DataSource") => {
                snapshot.add_source(serde_json::from_value::<DataSource>(doc.clone()).expect("source"))
            }
            Some("DataProduct") => {
                snapshot.add_product(serde_json::from_value::<DataProduct>(doc.clone()).expect("product"))
            }
            Some("AccessPolicy") => {
                snapshot.add_policy(serde_json::from_value::<AccessPolicy>(doc.clone()).expect("policy"))
            }
            _ => {}
        }
    }
    (docs, snapshot)
}

/// The children the operator would create, as the pure core builds them; without
/// owner references and finalizers unless `owners` (the kubectl baseline has neither).
pub fn rendered_children(snapshot: &Snapshot, owners: bool) -> Vec<Value> {
    let now = jiff::Timestamp::now();
    let mut out = Vec::new();
    let mut push = |v: Value| {
        let mut v = v;
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut)
            && !owners
        {
            meta.remove("ownerReferences");
            // The isolation's finalizer is released by the operator: none runs beside
            // the baseline, whose namespaces would never go.
            meta.remove("finalizers");
        }
        out.push(v);
    };
    // In the operator's apply order (drmesh_core::children).
    for p in snapshot.products.values() {
        let plan = rules::plan_product(snapshot, p, now);
        product::build(p, &plan).into_ordered().iter().for_each(|c| push(c.to_value()));
    }
    for s in snapshot.sources.values() {
        let consumers = drmesh::mesh::source::allowed_consumers(snapshot, s);
        source::build(s, &consumers).into_ordered().iter().for_each(|c| push(c.to_value()));
    }
    for a in snapshot.policies.values() {
        let plan = rules::plan_grant(snapshot, a, now);
        grant::build(a, &plan).into_ordered().iter().for_each(|c| push(c.to_value()));
    }
    out
}

/// Deletes namespaces and waits (up to 5 minutes) until they are gone. Call it while the
/// operator still runs: it releases the isolation finalizers once the pods are gone.
pub fn delete_namespaces(names: &[String]) {
    let mut args = vec!["delete".to_string(), "namespace".into(), "--wait=true".into(), "--timeout=300s".into()];
    args.extend(names.iter().cloned());
    args.push("--ignore-not-found".into());
    let out = kubectl().args(&args).output().expect("kubectl delete namespace");
    if !out.status.success() {
        eprintln!("namespaces not deleted: {}", String::from_utf8_lossy(&out.stderr));
    }
}
