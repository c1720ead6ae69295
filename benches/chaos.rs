//! `make chaos`: faults while a mesh converges, with an invariant checker sampling the
//! cluster all along: at no moment may a RoleBinding or NetworkPolicy that drmesh
//! manages grant more than the AccessPolicies allow (judged by the pure core on the
//! live declarations, every half second).
//!
//! Phases: kill -9 the operator every few seconds during convergence; restart
//! kube-apiserver and etcd under a running operator; two replicas, kill -9 the leader;
//! delete and hand-edit children and time their restoration. After each: everything
//! converges, no duplicate or orphaned child.
//!
//! Environment: DRMESH_KUBECONFIG, DRMESH_KUBECTL (set by `make chaos`),
//! DRMESH_CHAOS_PRODUCTS (default 1000, as QUALITY.md asks), DRMESH_CHAOS_KILLS (default 20). Results also go to
//! bench/results/chaos-<unix time>-n<products>.md and chaos-latest.md.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use drmesh::api::SubjectKind;
use drmesh::cli::{admission::Admission, live, snapshot};
use drmesh::mesh::rules;
use serde_json::{Value, json};

mod common;
use common::env_or;

fn kubectl(args: &[&str]) -> std::process::Output {
    let mut c = Command::new(std::env::var("DRMESH_KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    if let Ok(k) = std::env::var("DRMESH_KUBECONFIG") {
        c.arg("--kubeconfig").arg(k);
    }
    c.args(args).output().expect("kubectl")
}

fn kubectl_json(args: &[&str]) -> Option<Value> {
    let out = kubectl(args);
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn apply(docs: &[Value]) {
    let dir = std::env::temp_dir().join(format!("drmesh-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("mesh.json");
    std::fs::write(&path, json!({"apiVersion": "v1", "kind": "List", "items": docs}).to_string()).expect("write");
    let out = kubectl(&["apply", "--server-side", "-f", &path.to_string_lossy()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `products` products over a few domains; every third one reads the previous one of
/// another domain through a grant that also names a group.
fn mesh(prefix: &str, products: usize) -> Vec<Value> {
    let domains = (products / 40).max(3);
    let mut docs = Vec::new();
    for d in 0..domains {
        let ns = format!("{prefix}-d{d}");
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"drmesh.io/clearance": "Restricted"}}}));
        docs.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-credentials", "namespace": ns, "labels": {"drmesh.io/credentials": "true"}}, "stringData": {"p": "x"}}));
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataSource", "metadata": {"name": "db", "namespace": ns},
            "spec": {"classification": "Internal", "type": "Postgres", "endpoint": {"cidr": "10.60.0.0/24", "port": 5432}, "credentialsSecretRef": {"name": "db-credentials"}}}));
    }
    for i in 0..products {
        let ns = format!("{prefix}-d{}", i % domains);
        let mut inputs = vec![json!({"dataSource": "db"})];
        if i % 3 == 2 {
            let producer = format!("{prefix}-d{}", (i - 1) % domains);
            inputs.push(json!({"dataProduct": {"namespace": producer, "name": format!("p{}", i - 1)}}));
            docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": format!("to-p{i}"), "namespace": producer},
                "spec": {"dataProduct": format!("p{}", i - 1), "purpose": "chaos test grant",
                         "subjects": [{"kind": "DataProduct", "namespace": ns, "name": format!("p{i}")}, {"kind": "Group", "name": format!("g{i}")}]}}));
        }
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": format!("p{i}"), "namespace": ns},
            "spec": {"classification": "Internal", "inputs": inputs, "runtime": {"image": "registry.example/chaos:1"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}));
    }
    docs
}

struct Operator(Child);

impl Operator {
    /// Logs go to .drmesh/chaos/operator.log, every run appended, for the post-mortem.
    fn start(extra: &[&str]) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/.drmesh/chaos");
        std::fs::create_dir_all(dir).expect("log dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/operator.log"))
            .expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_drmesh"))
            .arg("run")
            .args(extra)
            .env("KUBECONFIG", std::env::var("DRMESH_KUBECONFIG").unwrap_or_default())
            // Watch reconnects and each reconcile's start are logged: enough to tell, after
            // a failed phase, whether an object's event arrived and whether it was taken.
            .env("RUST_LOG", "info,kube_runtime::watcher=debug,drmesh::controllers=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start drmesh");
        Operator(child)
    }
    fn kill9(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Checks, on the live cluster, that every managed grant child is within its policy.
/// Returns the violations found.
fn check_invariants(prefix: &str, admission: &Admission) -> Vec<String> {
    // One consistent state: the grant children, then the mesh, all read at the
    // resourceVersion of the first list (separate lists could mix two moments and
    // report a child next to a policy or product that did not exist together).
    let selector = "labelSelector=drmesh.io%2Faccess-policy";
    let Some(bindings) =
        kubectl_json(&["get", "--raw", &format!("/apis/rbac.authorization.k8s.io/v1/rolebindings?{selector}")])
    else {
        return vec![]; // API server down: nothing to judge
    };
    let Some(version) = bindings["metadata"]["resourceVersion"].as_str().map(str::to_string) else {
        return vec![];
    };
    let exact = format!("resourceVersion={version}&resourceVersionMatch=Exact");
    let Some(policies) =
        kubectl_json(&["get", "--raw", &format!("/apis/networking.k8s.io/v1/networkpolicies?{selector}&{exact}")])
    else {
        return vec![];
    };
    let Ok(texts) = live::texts_at(Some(version)) else {
        return vec![];
    };
    let mesh = snapshot::load_texts(&texts, "default", &[], admission);
    let now = jiff::Timestamp::now();
    let mut violations = Vec::new();
    let children = [("RoleBinding", &bindings), ("NetworkPolicy", &policies)].into_iter().flat_map(|(kind, list)| {
        list["items"].as_array().into_iter().flatten().map(move |item| {
            let mut item = item.clone();
            item["kind"] = json!(kind); // raw list items carry no kind
            item
        })
    });
    for child in children {
        let child = &child;
        let ns = child["metadata"]["namespace"].as_str().unwrap_or("");
        if !ns.starts_with(prefix) {
            continue;
        }
        let policy_name = child["metadata"]["labels"]["drmesh.io/access-policy"].as_str().unwrap_or("");
        let id = format!(
            "{} {ns}/{}",
            child["kind"].as_str().unwrap_or(""),
            child["metadata"]["name"].as_str().unwrap_or("")
        );
        let Some(policy) = mesh.snapshot.policies.get(&(ns.to_string(), policy_name.to_string())) else {
            // The garbage collector removes children of deleted policies; until then they
            // carry an owner reference to a UID that no longer exists. Not a widening of
            // a live policy, but counted if it outlives the policy for long (see orphans).
            continue;
        };
        let plan = rules::plan_grant(&mesh.snapshot, policy, now);
        if !plan.grants_anything() {
            violations
                .push(format!("{id}: exists while the policy grants nothing ({:?})", plan.problem.map(|p| p.reason)));
            continue;
        }
        let allowed: BTreeSet<String> = plan.effective.iter().map(rules::subject_display).collect();
        match child["kind"].as_str() {
            Some("RoleBinding") => {
                for s in child["subjects"].as_array().into_iter().flatten() {
                    let kind = s["kind"].as_str().unwrap_or("");
                    let name = s["name"].as_str().unwrap_or("");
                    let key = match kind {
                        "ServiceAccount" => {
                            let sns = s["namespace"].as_str().unwrap_or("");
                            let as_product = format!("DataProduct:{sns}/{name}");
                            if allowed.contains(&as_product) {
                                as_product
                            } else {
                                format!("ServiceAccount:{sns}/{name}")
                            }
                        }
                        _ => format!("{kind}:{name}"),
                    };
                    if !allowed.contains(&key) {
                        violations.push(format!("{id}: subject {key} is not granted"));
                    }
                }
            }
            _ => {
                for rule in child["spec"]["ingress"].as_array().into_iter().flatten() {
                    for peer in rule["from"].as_array().into_iter().flatten() {
                        let pns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                            .as_str()
                            .unwrap_or("");
                        let pname = peer["podSelector"]["matchLabels"]["drmesh.io/data-product"].as_str();
                        let ok = plan.effective.iter().any(|s| match (s.kind, pname) {
                            (SubjectKind::DataProduct, Some(n)) => {
                                s.namespace.as_deref() == Some(pns) && s.name.as_deref() == Some(n)
                            }
                            (SubjectKind::Namespace, None) => s.name.as_deref() == Some(pns),
                            _ => false,
                        });
                        if !ok {
                            violations.push(format!("{id}: ingress from {pns}/{pname:?} is not granted"));
                        }
                    }
                }
            }
        }
    }
    violations
}

fn ready_count(prefix: &str) -> (usize, usize) {
    let Some(list) = kubectl_json(&["get", "dataproducts", "-A", "-o", "json"]) else {
        return (0, usize::MAX);
    };
    let items: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["namespace"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .collect();
    let ready = items
        .iter()
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter(|p| p["status"]["observedGeneration"] == p["metadata"]["generation"])
        .count();
    (ready, items.len())
}

/// Objects waiting for a reconcile in the operator serving metrics on `port`.
/// The operator's /metrics text, if it answers on `port`.
fn metrics_text(port: u16) -> Option<String> {
    let out =
        Command::new("curl").args(["-fsS", "--max-time", "2", &format!("http://127.0.0.1:{port}/metrics")]).output();
    Some(String::from_utf8_lossy(&out.ok()?.stdout).to_string())
}

fn queue_depth(port: u16) -> Option<f64> {
    let text = metrics_text(port)?;
    let lines: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("drmesh_queue_depth{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!lines.is_empty()).then(|| lines.iter().sum())
}

/// Waits until the operator on `port` has an empty queue for a second; returns the wait.
fn wait_settled(port: u16, deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    while started.elapsed() < deadline {
        match queue_depth(port) {
            Some(0.0) => {
                if empty_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(1) {
                    break;
                }
            }
            _ => empty_since = None,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    started.elapsed()
}

fn wait_converged(prefix: &str, what: &str, deadline: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (ready, total) = ready_count(prefix);
        if total > 0 && total != usize::MAX && ready == total {
            return started.elapsed();
        }
        if started.elapsed() >= deadline {
            // The operator's own view, for the post-mortem (its log is in .drmesh/chaos).
            for port in [18091, 18092, 18093] {
                if let Some(text) = metrics_text(port) {
                    text.lines()
                        .filter(|l| {
                            ["drmesh_queue_depth", "drmesh_reconciles_total", "drmesh_reconcile_failures"]
                                .iter()
                                .any(|m| l.starts_with(m))
                        })
                        .for_each(|l| eprintln!("operator :{port} {l}"));
                }
            }
            let not_ready = kubectl(&["get", "dataproducts", "-A", "--no-headers"]);
            String::from_utf8_lossy(&not_ready.stdout)
                .lines()
                .filter(|l| l.starts_with(&format!("{prefix}-")) && !l.contains(" True "))
                .for_each(|l| eprintln!("not ready: {l}"));
            panic!("{what}: not converged ({ready}/{total})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Managed children whose owner is gone, and (kind, namespace, name) duplicates.
fn orphans_and_duplicates(prefix: &str) -> (Vec<String>, usize) {
    let Some(children) =
        kubectl_json(&["get", common::CHILD_KINDS, "-A", "-l", "app.kubernetes.io/managed-by=drmesh", "-o", "json"])
    else {
        return (vec!["cannot list children".into()], 0);
    };
    let mut owners = BTreeSet::new();
    for kind in ["datasources", "dataproducts", "accesspolicies"] {
        for o in kubectl_json(&["get", kind, "-A", "-o", "json"])
            .map(|l| l["items"].clone())
            .and_then(|i| i.as_array().cloned())
            .unwrap_or_default()
        {
            owners.insert(o["metadata"]["uid"].as_str().unwrap_or("").to_string());
        }
    }
    let mut seen = BTreeMap::new();
    let mut orphans = Vec::new();
    for c in children["items"].as_array().into_iter().flatten() {
        let ns = c["metadata"]["namespace"].as_str().unwrap_or("");
        if !ns.starts_with(prefix) {
            continue;
        }
        let id = format!("{}/{ns}/{}", c["kind"].as_str().unwrap_or(""), c["metadata"]["name"].as_str().unwrap_or(""));
        *seen.entry(id.clone()).or_insert(0) += 1;
        let owner = c["metadata"]["ownerReferences"][0]["uid"].as_str().unwrap_or("");
        if !owners.contains(owner) {
            orphans.push(id);
        }
    }
    (orphans, seen.values().filter(|n| **n > 1).count())
}

fn cluster_script(arg: &str) {
    let script = format!("{}/tests/e2e/cluster/cluster.sh", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(script).arg(arg).output().expect("cluster.sh");
    assert!(out.status.success(), "cluster.sh {arg}: {}", String::from_utf8_lossy(&out.stderr));
}

fn kill_component(name: &str) {
    let pid_file = std::path::Path::new(&std::env::var("DRMESH_KUBECONFIG").unwrap_or_default())
        .with_file_name(format!("run/{name}.pid"));
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let pid = pid.trim();
    let _ = Command::new("kill").args(["-9", pid]).output();
    // SIGKILL is asynchronous: wait until the process is gone before restarting it.
    let gone = Instant::now();
    let running = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        !stat.is_empty() && stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z")
    };
    while running() && gone.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    if let Ok(kubeconfig) = std::env::var("DRMESH_KUBECONFIG") {
        // SAFETY: set before any other thread starts; the live loader reads KUBECONFIG.
        unsafe { std::env::set_var("KUBECONFIG", kubeconfig) };
    }
    let products: usize = env_or("DRMESH_CHAOS_PRODUCTS", 1000);
    let prefix = format!("chaos{}", jiff::Timestamp::now().as_second() % 100_000);
    let mut rows: Vec<(String, String)> = Vec::new();

    // The checker samples the cluster twice a second for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (stop, samples, prefix) = (stop.clone(), samples.clone(), prefix.clone());
        std::thread::spawn(move || {
            let admission = Admission::new().expect("schemas");
            let mut violations = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                violations.extend(check_invariants(&prefix, &admission));
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
            violations
        })
    };

    // A previous run's namespaces still being deleted would load the API server.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(900)
        && String::from_utf8_lossy(&kubectl(&["get", "namespaces", "--no-headers"]).stdout).contains("Terminating")
    {
        std::thread::sleep(Duration::from_secs(2));
    }
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/drmesh.io_crds.yaml");
    assert!(kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]).status.success(), "CRDs");
    assert!(kubectl(&["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]).status.success());

    // 1. kill -9 the operator every 2-4 s while the mesh converges.
    // At most DRMESH_CHAOS_KILLS kills (default 20), then it must converge on its own:
    // every restart lists and re-verifies the whole mesh, so endless kills every few
    // seconds at 1,000 products would measure only the restarts.
    let max_kills: usize = env_or("DRMESH_CHAOS_KILLS", 20);
    apply(&mesh(&prefix, products));
    let started = Instant::now();
    let mut kills = 0;
    let mut operator = Operator::start(&["--http-addr", "127.0.0.1:18091"]);
    let (mut ready, mut total) = (0, 0);
    while kills < max_kills {
        std::thread::sleep(Duration::from_millis(2000 + (kills * 700 % 2000) as u64));
        (ready, total) = ready_count(&prefix);
        if total > 0 && ready == total {
            break;
        }
        operator.kill9();
        kills += 1;
        operator = Operator::start(&["--http-addr", "127.0.0.1:18091"]);
    }
    let ready_at_last_kill =
        format!("{ready}/{total} Ready at the last kill, {:.0} s in", started.elapsed().as_secs_f64());
    wait_converged(&prefix, "after the kills", Duration::from_secs(600));
    rows.push(("state when the kills stopped".into(), ready_at_last_kill));
    let (orphans, duplicates) = orphans_and_duplicates(&prefix);
    rows.push((
        format!("converged under {kills} kill -9 ({products} products)"),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    ));
    rows.push(("orphaned / duplicated children after the kills".into(), format!("{} / {duplicates}", orphans.len())));
    assert!(orphans.is_empty(), "orphans: {orphans:?}");

    // 2. Restart kube-apiserver and etcd under the running operator, then change the mesh.
    kill_component("kube-apiserver");
    kill_component("etcd");
    std::thread::sleep(Duration::from_secs(1));
    cluster_script("up");
    let change = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "after-restart", "namespace": format!("{prefix}-d0")},
        "spec": {"classification": "Internal", "inputs": [{"dataSource": "db"}], "runtime": {"image": "registry.example/chaos:1"},
                 "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}});
    apply(&[change]);
    let t = wait_converged(&prefix, "after an API server and etcd restart", Duration::from_secs(180));
    rows.push((
        "a change after kube-apiserver+etcd restart, converged in".into(),
        format!("{:.1} s (operator not restarted)", t.as_secs_f64()),
    ));

    // 3. Two replicas with leader election; kill -9 the leader; a change still converges.
    drop(operator);
    let lease_ns = format!("{prefix}-d0");
    let mut a = Operator::start(&[
        "--leader-election",
        "--lease-namespace",
        &lease_ns,
        "--identity",
        "chaos-a",
        "--http-addr",
        "127.0.0.1:18092",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let b = Operator::start(&[
        "--leader-election",
        "--lease-namespace",
        &lease_ns,
        "--identity",
        "chaos-b",
        "--http-addr",
        "127.0.0.1:18093",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    a.kill9();
    let killed = Instant::now();
    let patch = json!({"spec": {"description": "after failover"}});
    let _ = kubectl(&[
        "patch",
        "dataproduct",
        "p0",
        "-n",
        &format!("{prefix}-d0"),
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ]);
    let t = wait_converged(&prefix, "after a leader failover", Duration::from_secs(120));
    rows.push((
        "change converged after kill -9 of the leader".into(),
        format!("{:.1} s after the kill", killed.elapsed().as_secs_f64().max(t.as_secs_f64())),
    ));

    // A new leader lists everything and re-verifies every product once (its memory of
    // what it applied is empty): drift is measured on a settled operator, after that.
    let settled = wait_settled(18093, Duration::from_secs(300));
    rows.push(("new leader's queue empty after".into(), format!("{:.1} s", settled.as_secs_f64())));

    // 4. Drift: delete and hand-edit children; time their restoration.
    let mut restore = Vec::new();
    for i in 0..10 {
        let ns = format!("{prefix}-d{}", i % 3);
        let Some(list) = kubectl_json(&[
            "get",
            "networkpolicies,roles",
            "-n",
            &ns,
            "-l",
            "app.kubernetes.io/managed-by=drmesh",
            "-o",
            "json",
        ]) else {
            continue;
        };
        let Some(target) = list["items"].as_array().and_then(|items| items.get(i % items.len().max(1))).cloned() else {
            continue;
        };
        let (kind, name) = (
            target["kind"].as_str().unwrap_or("").to_lowercase(),
            target["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        let uid = target["metadata"]["uid"].clone();
        let rv = target["metadata"]["resourceVersion"].clone();
        let t = Instant::now();
        if i % 2 == 0 {
            let _ = kubectl(&["delete", &kind, &name, "-n", &ns, "--wait=false"]);
        } else {
            // A widening hand edit of a field drmesh owns: select every pod / grant everything.
            let widen = if kind == "role" {
                json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
            } else {
                json!({"spec": {"podSelector": {"matchLabels": null}}})
            };
            let _ = kubectl(&["patch", &kind, &name, "-n", &ns, "--type", "merge", "-p", &widen.to_string()]);
        }
        loop {
            let now = kubectl_json(&["get", &kind, &name, "-n", &ns, "-o", "json"]);
            let restored = match &now {
                Some(o) if i % 2 == 0 => o["metadata"]["uid"] != uid,
                Some(o) => {
                    o["metadata"]["resourceVersion"] != rv
                        && o["rules"] == target["rules"]
                        && o["spec"] == target["spec"]
                }
                None => false,
            };
            if restored || t.elapsed() > Duration::from_secs(30) {
                restore.push(t.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    restore.sort();
    let p99 = restore.last().copied().unwrap_or_default();
    rows.push((
        format!("drift restored (n={}), median / max", restore.len()),
        format!(
            "{:.2} / {:.2} s",
            restore.get(restore.len() / 2).copied().unwrap_or_default().as_secs_f64(),
            p99.as_secs_f64()
        ),
    ));
    drop(b);

    stop.store(true, Ordering::Relaxed);
    let violations = checker.join().expect("checker");
    rows.push((
        "invariant samples / violations".to_string(),
        format!("{} / {}", samples.load(Ordering::Relaxed), violations.len()),
    ));
    let (orphans, duplicates) = orphans_and_duplicates(&prefix);
    rows.push(("orphaned / duplicated children at the end".into(), format!("{} / {duplicates}", orphans.len())));

    let mut report = format!(
        "# drmesh chaos — {products} products\n\nrun {} on {} cores; `make chaos` (DRMESH_CHAOS_PRODUCTS={products})\n\n| phase | result |\n|---|---|\n",
        jiff::Timestamp::now(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    for (k, v) in &rows {
        report.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("\n{report}");
    let results = std::path::PathBuf::from(format!("{}/bench/results", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&results).expect("results dir");
    let run_id = jiff::Timestamp::now().as_second();
    std::fs::write(results.join(format!("chaos-{run_id}-n{products}.md")), &report).expect("write results");
    std::fs::write(results.join("chaos-latest.md"), &report).expect("write results");
    for ns in 0..(products / 40).max(3) {
        let _ = kubectl(&["delete", "namespace", &format!("{prefix}-d{ns}"), "--wait=false"]);
    }
    assert!(violations.is_empty(), "grants exceeded the policies: {violations:#?}");
    assert!(orphans.is_empty() && duplicates == 0, "orphans {orphans:?}, duplicates {duplicates}");
    assert!(p99 < Duration::from_secs(5), "drift restoration took {p99:?}");
}
