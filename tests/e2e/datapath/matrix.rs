//! Agreement of judges on the reference mesh: the pod-to-pod connections measured with
//! traffic on the real node equal np-guard's verdicts on the live NetworkPolicies and
//! `drmesh access-review`'s network grants, pair by pair and port by port.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{PROBE_TIMEOUT, PRODUCT_IMAGE, probe, real_node, wait_available};
use crate::harness::{self, TIMEOUT, TestNamespace, apply};

/// (source product, destination product, port), products as `domain/name`.
type Connection = (String, String, u16);

const DOMAINS: [&str; 6] = ["police", "gendarmerie", "sdis", "transport", "sante", "cnc"];

/// The samples' domain clearances (config/samples/*.yaml).
fn clearance(domain: &str) -> &'static str {
    if matches!(domain, "sdis" | "transport") { "Internal" } else { "Restricted" }
}

/// The samples and their credentials, each domain in a namespace of its own for this
/// test, every product running the reference product image on its output ports.
fn reference_mesh(namespaces: &BTreeMap<String, String>) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = drmesh::manifest::load_documents(&root.join("config/samples")).expect("samples");
    // Its DataSources' dummy credentials, kept apart from the mesh (no GitOps example syncs them).
    documents.extend(drmesh::manifest::load_documents(&root.join("config/sample-credentials")).expect("credentials"));
    // Index with pointers only: `value["key"]` on a mutable Value inserts the key.
    let rename = |v: Option<&mut Value>| {
        if let Some(v) = v
            && let Some(ns) = v.as_str().and_then(|d| namespaces.get(d))
        {
            *v = json!(ns);
        }
    };
    let mut out = Vec::new();
    for doc in documents {
        let mut v = doc.value;
        if v["kind"] == "Namespace" {
            continue; // created by the test, with the same labels
        }
        rename(v.pointer_mut("/metadata/namespace"));
        for input in v.pointer_mut("/spec/inputs").and_then(Value::as_array_mut).into_iter().flatten() {
            rename(input.pointer_mut("/dataProduct/namespace"));
        }
        for subject in v.pointer_mut("/spec/subjects").and_then(Value::as_array_mut).into_iter().flatten() {
            rename(subject.pointer_mut("/namespace"));
            if subject["kind"] == "Namespace" {
                rename(subject.pointer_mut("/name"));
            }
        }
        if v["kind"] == "DataProduct" {
            let name = format!("{}/{}", v["metadata"]["namespace"].as_str().unwrap_or(""), v["metadata"]["name"]);
            let listen: Vec<String> = v["spec"]["outputPorts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("--listen=:{}", p["port"]))
                .collect();
            let runtime = &mut v["spec"]["runtime"];
            runtime.as_object_mut().map(|r| r.remove("command"));
            runtime["image"] = json!(PRODUCT_IMAGE);
            runtime["args"] = json!(listen);
            runtime["env"] =
                json!([{"name": "PRODUCT_NAME", "value": name}, {"name": "PROBE_TIMEOUT", "value": PROBE_TIMEOUT}]);
        }
        if v["kind"] == "AccessPolicy" && v["spec"]["approvals"].is_array() {
            // A signature covers the grant's namespace: sign the renamed copy again.
            v = serde_json::from_str(&crate::harness::approved_by_examples(&v.to_string(), &[1, 2])).expect("json");
        }
        out.push(v);
    }
    out
}

/// Products and their output ports: `domain/name` -> (namespace, name, ports).
fn products(docs: &[Value], domain_of: &BTreeMap<String, String>) -> BTreeMap<String, (String, String, Vec<u16>)> {
    docs.iter()
        .filter(|d| d["kind"] == "DataProduct")
        .map(|d| {
            let ns = d["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
            let name = d["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let ports = d["spec"]["outputPorts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_u64().map(|p| p as u16))
                .collect();
            (format!("{}/{name}", domain_of[&ns]), (ns, name, ports))
        })
        .collect()
}

/// np-guard's connections between the products' Deployments, from the live objects.
fn np_guard(
    namespaces: &[String],
    domain_of: &BTreeMap<String, String>,
    all_ports: &BTreeMap<String, Vec<u16>>,
) -> BTreeSet<Connection> {
    let conns = harness::np_guard_connections(&namespaces.iter().map(String::as_str).collect::<Vec<_>>());
    // "ns/name[Deployment]" -> "domain/name"
    let product = |s: &str| {
        let (ns, rest) = s.split_once('/')?;
        let name = rest.split('[').next()?;
        Some(format!("{}/{name}", domain_of.get(ns)?))
    };
    let mut allowed = BTreeSet::new();
    for c in &conns {
        let (Some(src), Some(dst)) = (c["src"].as_str().and_then(product), c["dst"].as_str().and_then(product)) else {
            continue;
        };
        let Some(dst_ports) = all_ports.get(&dst) else { continue };
        let conn = c["conn"].as_str().unwrap_or_default();
        for &port in dst_ports {
            if src != dst && (conn.contains("All Connections") || tcp_ports(conn).contains(&port)) {
                allowed.insert((src.clone(), dst.clone(), port));
            }
        }
    }
    allowed
}

/// Ports of "TCP 8080,9090-9091" (np-guard's connection strings).
fn tcp_ports(conn: &str) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for part in conn.split(';') {
        let Some(list) = part.trim().strip_prefix("TCP ") else { continue };
        for item in list.split(',') {
            let (lo, hi) = item.split_once('-').unwrap_or((item, item));
            if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                ports.extend(lo..=hi);
            }
        }
    }
    ports
}

/// `drmesh access-review`'s network grants between products, from the same manifests.
fn access_review(
    docs: &[Value],
    domain_of: &BTreeMap<String, String>,
    namespaces: &BTreeMap<String, String>,
) -> BTreeSet<Connection> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all: Vec<Value> = namespaces
        .iter()
        .map(|(domain, ns)| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "labels": {"drmesh.io/clearance": clearance(domain)}}})
        })
        .collect();
    all.extend(docs.iter().cloned());
    for (i, d) in all.iter().enumerate() {
        std::fs::write(dir.path().join(format!("{i:03}.yaml")), serde_json::to_vec(d).expect("json")).expect("write");
    }
    let drmesh = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/drmesh");
    let drmesh = std::env::var_os("DRMESH_BIN").map(Into::into).unwrap_or(drmesh);
    let out = std::process::Command::new(drmesh)
        .args(["access-review", "--granted-only", "-o", "json", "-f"])
        .arg(dir.path())
        .output()
        .expect("drmesh access-review");
    assert!(out.status.success(), "access-review: {}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("access-review json");
    let product = |ns: &str, name: &str| Some(format!("{}/{name}", domain_of.get(ns)?));
    let mut allowed = BTreeSet::new();
    for r in rows
        .iter()
        .filter(|r| r["kind"] == "DataProduct" && r["access"].as_str().is_some_and(|a| a.contains("network")))
    {
        let Some(src) = r["subject"].as_str().and_then(|s| s.strip_prefix("DataProduct:")) else { continue };
        let Some((sns, sname)) = src.split_once('/') else { continue };
        let (Some(src), Some(dst)) =
            (product(sns, sname), product(r["namespace"].as_str().unwrap_or(""), r["name"].as_str().unwrap_or("")))
        else {
            continue;
        };
        for p in r["ports"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Ok(port) = p.split('/').next().unwrap_or("").parse::<u16>() {
                allowed.insert((src.clone(), dst.clone(), port));
            }
        }
    }
    allowed
}

fn matrix(all_ports: &BTreeMap<String, Vec<u16>>, judges: &[(&str, &BTreeSet<Connection>)]) -> String {
    let mut s = format!("{:<60}", "source -> destination:port");
    for (name, _) in judges {
        s += &format!(" {name:>13}");
    }
    s.push('\n');
    for src in all_ports.keys() {
        for (dst, ports) in all_ports {
            for &port in ports {
                if src == dst {
                    continue;
                }
                let key = (src.clone(), dst.clone(), port);
                let verdicts: Vec<bool> = judges.iter().map(|(_, set)| set.contains(&key)).collect();
                let mark = if verdicts.iter().all(|v| *v == verdicts[0]) { " " } else { "!" };
                s += &format!("{mark}{:<59}", format!("{src} -> {dst}:{port}"));
                for v in verdicts {
                    s += &format!(" {:>13}", if v { "allowed" } else { "refused" });
                }
                s.push('\n');
            }
        }
    }
    s
}

/// What each judge allows on the reference mesh, deployed on the real node, and the
/// products' ports: (ports, traffic, np-guard, access-review).
pub(crate) type Verdicts =
    (BTreeMap<String, Vec<u16>>, BTreeSet<Connection>, BTreeSet<Connection>, BTreeSet<Connection>);

/// Deploys the reference mesh in namespaces of its own (labelled with `labels` too), runs
/// `operator` with their names (the chart-installed operator's test installs it there;
/// the shared one already runs), and judges it.
pub(crate) async fn judge_reference_mesh(labels: &[(&str, &str)], operator: impl FnOnce(&[String])) -> Verdicts {
    let mut created = Vec::new();
    let mut namespaces = BTreeMap::new();
    for domain in DOMAINS {
        let mut all = vec![("drmesh.io/clearance", clearance(domain))];
        all.extend_from_slice(labels);
        let ns = TestNamespace::create_on_real_node(&format!("rm-{domain}"), &all).await;
        namespaces.insert(domain.to_string(), ns.name.clone());
        created.push(ns);
    }
    operator(&namespaces.values().cloned().collect::<Vec<_>>());
    let domain_of: BTreeMap<String, String> = namespaces.iter().map(|(d, n)| (n.clone(), d.clone())).collect();
    let docs = reference_mesh(&namespaces);
    apply(&docs.iter().map(|d| serde_json::to_string(d).expect("json")).collect::<Vec<_>>().join("\n---\n"));
    let products = products(&docs, &domain_of);
    // Every object Ready first (a product's Deployment is final only once its inputs are
    // reachable), then every rollout finished.
    harness::wait_all_ready(&namespaces.values().cloned().collect::<Vec<_>>(), TIMEOUT * 2).await;
    for (ns, name, _) in products.values() {
        let owner = created.iter().find(|n| &n.name == ns).expect("namespace");
        wait_available(owner, name).await;
    }
    let all_ports: BTreeMap<String, Vec<u16>> = products.iter().map(|(k, (_, _, p))| (k.clone(), p.clone())).collect();

    let np = np_guard(&namespaces.values().cloned().collect::<Vec<_>>(), &domain_of, &all_ports);
    let review = access_review(&docs, &domain_of, &namespaces);
    // Steady state first: every connection np-guard allows answers once the policies
    // have reached the node (a pair that never answers is measured refused below).
    let url = |dst: &str, port: u16| {
        let (dns, dname, _) = &products[dst];
        format!("http://{dname}.{dns}.svc.cluster.local:{port}/")
    };
    for (src, dst, port) in &np {
        let (sns, sname, _) = &products[src];
        let target = url(dst, *port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !probe(sns, sname, &target).answered && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Traffic: every product's pod tries every other product's every port, in parallel.
    let mut tries = Vec::new();
    for (src, (sns, sname, _)) in &products {
        for (dst, (_, _, ports)) in &products {
            for &port in ports.iter().filter(|_| src != dst) {
                let (key, sns, sname, target) =
                    ((src.clone(), dst.clone(), port), sns.clone(), sname.clone(), url(dst, port));
                tries.push(tokio::task::spawn_blocking(move || (key, probe(&sns, &sname, &target))));
            }
        }
    }
    let mut measured = BTreeSet::new();
    for t in tries {
        let (key, p) = t.await.expect("probe");
        if p.answered {
            measured.insert(key);
        }
    }

    // People, on the path the guides give them: alice (cnc-officers, granted by
    // incident-feed-cnc) reads the incident feed through the API server's proxy; bob and
    // mallory are refused.
    let police = &namespaces["police"];
    let path = format!("/api/v1/namespaces/{police}/services/incident-feed:8080/proxy/");
    let data = harness::eventually("alice reads incident-feed through the proxy", TIMEOUT, || {
        let (read, output) = super::read_as("alice", &path);
        async move { read.then_some(output) }
    })
    .await;
    assert!(data.contains("incident-feed"), "alice got: {data}");
    for person in ["bob", "mallory"] {
        let (read, output) = super::read_as(person, &path);
        assert!(!read && output.contains("Forbidden"), "{person}: {output}");
    }

    (all_ports, measured, np, review)
}

/// Three judges of one deployment of the reference mesh, pair by pair and port by port:
/// traffic measured from inside the pods, np-guard on the live NetworkPolicies, and
/// `drmesh access-review` on the manifests. (access-review once listed a DataProduct
/// subject's grant ports where the consumer's egress opens only the ports its input asks
/// for: the samples' situation-picture reads transit-disruptions' `http` only, the grant
/// gives `grpc` too; its `network` row now lists what the input opens.)
#[tokio::test]
async fn traffic_np_guard_and_access_review_agree_on_the_reference_mesh() {
    if !real_node() {
        return;
    }
    assert_judges_agree(judge_reference_mesh(&[], |_| ()).await);
}

/// Traffic equals np-guard's and access-review's verdicts (the matrix is printed).
pub(crate) fn assert_judges_agree((ports, measured, np, review): Verdicts) {
    let judges = [("traffic", &measured), ("np-guard", &np), ("access-review", &review)];
    let table = matrix(&ports, &judges);
    assert!(measured == np && !measured.is_empty(), "traffic and np-guard disagree (!):\n{table}");
    assert!(measured == review, "traffic and access-review disagree (!):\n{table}");
    eprintln!("{table}");
}
