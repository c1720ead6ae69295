//! The whole access matrix of the reference mesh, exhaustively, three ways: what
//! `drmesh access-review --cluster` says, what the API server's own RBAC answers
//! (`kubectl auth can-i`, as each test person with their own certificate) for every
//! person x product x port, and what np-guard's analyzer finds for every
//! product x product x port. A kubectl or analyzer error fails the test; it is never
//! read as "no".

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::harness::{self, TIMEOUT};

const DOMAINS: [&str; 6] = ["police", "gendarmerie", "sdis", "transport", "sante", "cnc"];

/// The test people of the local cluster and their groups (tests/e2e/cluster/cluster.sh).
const PEOPLE: [(&str, &[&str]); 3] = [("alice", &["cnc-officers"]), ("bob", &["transport-analysts"]), ("mallory", &[])];

/// `kubectl auth can-i` as `who`: "yes" or "no", anything else fails the test.
fn can_i(who: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = harness::kubectl_as(who, &all);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.code(), answer.as_str()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        (code, _) => panic!(
            "kubectl auth can-i {args:?} as {who} failed (exit {code:?}, stdout {answer:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

struct Product {
    namespace: String,
    name: String,
    ports: Vec<(i64, String)>,
    /// The dataProduct inputs it declares: (namespace, name) -> wanted ports (None: all).
    inputs: BTreeMap<(String, String), Option<Vec<String>>>,
}

fn products() -> Vec<Product> {
    let mut out = Vec::new();
    for ns in DOMAINS {
        let list = harness::kubectl_json(&["get", "dataproducts", "-n", ns, "-o", "json"]);
        for p in list["items"].as_array().into_iter().flatten() {
            let spec = &p["spec"];
            out.push(Product {
                namespace: ns.to_string(),
                name: p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                ports: spec["outputPorts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| {
                        (o["port"].as_i64().unwrap_or_default(), o["name"].as_str().unwrap_or_default().to_string())
                    })
                    .collect(),
                inputs: spec["inputs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| {
                        let p = &i["dataProduct"];
                        let key = (p["namespace"].as_str()?.to_string(), p["name"].as_str()?.to_string());
                        let ports = i["ports"].as_array().map(|ports| {
                            ports.iter().map(|x| x.as_str().map(String::from).unwrap_or(x.to_string())).collect()
                        });
                        Some((key, ports))
                    })
                    .collect(),
            });
        }
    }
    out
}

/// The access review of the live cluster, rows of the reference domains.
fn access_review() -> Vec<Value> {
    let rows = harness::access_review();
    rows.into_iter().filter(|r| r["namespace"].as_str().is_some_and(|n| DOMAINS.contains(&n))).collect()
}

fn granted_on(row: &Value, port: &(i64, String)) -> bool {
    row["status"] == "Granted"
        && row["ports"].as_array().into_iter().flatten().any(|p| p.as_str() == Some(&format!("{}/{}", port.0, port.1)))
}

#[tokio::test]
async fn the_whole_access_matrix_matches_real_rbac_and_an_independent_analyzer() {
    let samples = format!("{}/config/samples", env!("CARGO_MANIFEST_DIR"));
    // The mesh, then its DataSources' dummy credentials (apart: no GitOps example syncs
    // them), once their namespaces exist.
    let credentials = format!("{}/config/sample-credentials", env!("CARGO_MANIFEST_DIR"));
    for dir in [&samples, &credentials] {
        let out = harness::kubectl(&["apply", "--server-side", "-f", dir]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let domains: Vec<String> = DOMAINS.iter().map(|d| d.to_string()).collect();
    let objects = harness::wait_all_ready(&domains, TIMEOUT * 2).await;
    let products = products();
    let rows = access_review();
    assert!(
        products.len() >= 6 && rows.len() >= 10,
        "{objects} objects, {} products, {} rows",
        products.len(),
        rows.len()
    );

    // People x products x ports: the review against the API server's RBAC.
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (person, groups) in PEOPLE {
        let subjects: BTreeSet<String> =
            groups.iter().map(|g| format!("Group:{g}")).chain([format!("User:{person}")]).collect();
        for p in &products {
            let mine: Vec<&Value> = rows
                .iter()
                .filter(|r| {
                    r["kind"] == "DataProduct" && r["namespace"] == p.namespace.as_str() && r["name"] == p.name.as_str()
                })
                .filter(|r| r["subject"].as_str().is_some_and(|s| subjects.contains(s)))
                .filter(|r| r["access"].as_str().is_some_and(|a| a.contains("api+proxy")))
                .collect();
            let ns = p.namespace.as_str();
            let any = mine.iter().any(|r| r["status"] == "Granted");
            let product_ref = format!("dataproducts.drmesh.io/{}", p.name);
            let mut check = |what: String, expected: bool, args: &[&str]| {
                checked += 1;
                let actual = can_i(person, args);
                if actual != expected {
                    mismatches.push(format!("{person} {what} in {ns}: review says {expected}, RBAC says {actual}"));
                }
            };
            check(format!("get {product_ref}"), any, &["get", &product_ref, "-n", ns]);
            // The bare name would proxy to the first port whatever was granted: never.
            check(
                format!("proxy {}", p.name),
                false,
                &["get", &format!("services/{}", p.name), "--subresource=proxy", "-n", ns],
            );
            for port in &p.ports {
                let expected = mine.iter().any(|r| granted_on(r, port));
                for form in [port.0.to_string(), port.1.clone()] {
                    let target = format!("services/{}:{form}", p.name);
                    check(format!("proxy {target}"), expected, &["get", &target, "--subresource=proxy", "-n", ns]);
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "{} of {checked} RBAC checks differ: {mismatches:#?}", mismatches.len());
    eprintln!("{checked} RBAC checks agree with the access review");

    // Products x products x ports: the review (and each consumer's declared inputs, for
    // its own egress) against np-guard's analysis of the exported NetworkPolicies.
    let mut expected = BTreeSet::new();
    for r in rows.iter().filter(|r| r["kind"] == "DataProduct" && r["status"] == "Granted") {
        let Some(consumer) = r["subject"].as_str().and_then(|s| s.strip_prefix("DataProduct:")) else { continue };
        let dst = (
            r["namespace"].as_str().unwrap_or_default().to_string(),
            r["name"].as_str().unwrap_or_default().to_string(),
        );
        let Some(src) = products.iter().find(|p| format!("{}/{}", p.namespace, p.name) == consumer) else { continue };
        let Some(wanted) = src.inputs.get(&dst) else { continue }; // no input: no egress
        let dst_product = products.iter().find(|p| (p.namespace.clone(), p.name.clone()) == dst).expect("dst");
        for port in dst_product.ports.iter().filter(|port| granted_on(r, port)) {
            if wanted.as_ref().is_none_or(|w| w.contains(&port.1) || w.contains(&port.0.to_string())) {
                expected.insert((consumer.to_string(), format!("{}/{}", dst.0, dst.1), port.0));
            }
        }
    }
    let actual = np_guard_connections(&products);
    assert!(!expected.is_empty(), "the reference mesh grants product-to-product access");
    let missing: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "np-guard and the access review differ: reachable per the review but not per np-guard {missing:#?}; reachable per np-guard only {extra:#?}"
    );
    eprintln!("{} product-to-product connections agree with np-guard", expected.len());
}

/// (src product, dst product, TCP port) that np-guard finds open between the reference
/// products' workloads.
fn np_guard_connections(products: &[Product]) -> BTreeSet<(String, String, i64)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["get", "namespaces", "-o", "yaml"];
    args.extend(DOMAINS);
    let out = harness::kubectl(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("namespaces.yaml"), &out.stdout).expect("write");
    for ns in DOMAINS {
        let out = harness::kubectl(&["get", "deployments,networkpolicies", "-n", ns, "-o", "yaml"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(dir.path().join(format!("{ns}.yaml")), &out.stdout).expect("write");
    }
    let analyzer = harness::kubectl_path().with_file_name("netpolicy");
    let out = std::process::Command::new(&analyzer)
        .args(["list", "-o", "json", "--dirpath"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", analyzer.display()));
    assert!(out.status.success(), "netpolicy: {}", String::from_utf8_lossy(&out.stderr));
    let conns: Vec<Value> = serde_json::from_slice(&out.stdout).expect("netpolicy json");
    let workload = |s: &str| {
        let name = s.strip_suffix("[Deployment]")?;
        products.iter().any(|p| format!("{}/{}", p.namespace, p.name) == name).then(|| name.to_string())
    };
    let mut found = BTreeSet::new();
    for c in &conns {
        let (Some(src), Some(dst)) = (c["src"].as_str().and_then(workload), c["dst"].as_str().and_then(workload))
        else {
            continue;
        };
        let conn = c["conn"].as_str().unwrap_or_default();
        for part in conn.split(';').map(str::trim) {
            let Some(ports) = part.strip_prefix("TCP ") else {
                panic!("{src} -> {dst}: {conn:?} is more than TCP ports (np-guard output {c})");
            };
            for p in ports.split(',') {
                let (from, to) = p.split_once('-').unwrap_or((p, p));
                let (from, to): (i64, i64) = (from.trim().parse().expect("port"), to.trim().parse().expect("port"));
                assert!(to - from < 100, "{src} -> {dst}: a range of ports {p}");
                for port in from..=to {
                    found.insert((src.clone(), dst.clone(), port));
                }
            }
        }
    }
    found
}
