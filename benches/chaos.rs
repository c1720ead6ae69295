//! `make chaos`: faults while a mesh converges, with an invariant judge sampling the
//! cluster all along. The judge (tests/support/judge) shares no code with the operator:
//! written from the user guides, it looks at every child field that grants access
//! (NetworkPolicy selectors, types, peers, ports and ipBlocks; RoleBinding subjects and
//! roleRef; Role rules and resourceNames; the Secrets, pod labels and ServiceAccount of
//! Deployments) and reports any access beyond the declarations. Samples it cannot judge
//! (API server down, a failed list) are counted apart, never as passes.
//!
//! Phases: kill -9 the operator every few seconds during convergence, while grants
//! expire, are deleted and a domain's clearance is lowered; restart kube-apiserver and
//! etcd under a running operator; two replicas, kill -9 the leader while a grant expires,
//! another is deleted and a clearance is lowered; delete and hand-edit children and time
//! their restoration. The judge times how late each narrowing lands. After each phase:
//! everything converges, no child outlives its owner.
//!
//! Environment: DRMESH_KUBECONFIG, DRMESH_KUBECTL (set by `make chaos`),
//! DRMESH_CHAOS_PRODUCTS (default 1000, as QUALITY.md asks), DRMESH_CHAOS_KILLS (default 20),
//! DRMESH_CHAOS_PHASES (default `kills,restart,failover,drift`; without `kills` the mesh
//! converges under one calm operator first; the failover always runs),
//! DRMESH_CHAOS_JUDGE_PAUSE_MS (default 100: the pause between two judged samples; at
//! 10,000 products a sample lists about 100,000 objects). Results also go to
//! bench/results/chaos-<unix time>-n<products>.md and chaos-latest.md. The operators'
//! HTTP ports are picked free (no fixed ports: several clusters may share a machine).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};

mod common;
use common::judging::{Narrowing, Record};
use common::narrowing::{Domains, FAILOVER_READERS};
use common::sightings::{Sightings, watch_grant_children};
use common::{env_or, free_port};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;

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
    let mut docs = common::people(&["chaos-readers"], &mut drmesh::mesh::Snapshot::default());
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
                         "subjects": [{"kind": "DataProduct", "namespace": ns, "name": format!("p{i}")}, {"kind": "Group", "name": "chaos-readers"}]}}));
        }
        docs.push(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": format!("p{i}"), "namespace": ns},
            "spec": {"classification": "Internal", "inputs": inputs, "runtime": {"image": "registry.example/chaos:1"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}}));
    }
    docs
}

struct Operator(Child);

/// Where each operator process of the run writes its part of the one audit chain.
const AUDIT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.drmesh/chaos/audit");

/// The run's audit head ConfigMap (in `default`, which outlives the run's namespaces).
fn audit_head_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("drmesh-chaos-audit-{}", Timestamp::now().as_second())).clone()
}

impl Operator {
    /// Logs go to .drmesh/chaos/operator.log, every run appended, for the post-mortem;
    /// audit records to one file per process under AUDIT_DIR, all on the run's chain.
    fn start(extra: &[&str]) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/.drmesh/chaos");
        std::fs::create_dir_all(AUDIT_DIR).expect("audit dir");
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let audit = format!("{AUDIT_DIR}/operator-{n:03}.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/operator.log"))
            .expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_drmesh"))
            .arg("run")
            .args(extra)
            .args(["--audit-log", &audit, "--audit-head", &audit_head_name()])
            .args(["--lease-namespace", "default", "--lease-name", &format!("{}-leader", audit_head_name())])
            .env("KUBECONFIG", std::env::var("DRMESH_KUBECONFIG").unwrap_or_default())
            // Watch reconnects and each reconcile's start are logged: enough to tell, after
            // a failed phase, whether an object's event arrived and whether it was taken.
            .env("RUST_LOG", "info,kube_runtime::watcher=debug,drmesh_operator::controllers=debug")
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

fn ready_count(prefix: &str) -> (usize, usize) {
    let Some(list) = kubectl_json(&["get", "dataproducts", "-A", "-o", "json"]) else {
        return (0, usize::MAX);
    };
    let items: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["namespace"].as_str().is_some_and(|n| n.starts_with(&format!("{prefix}-"))))
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

fn wait_converged(prefix: &str, what: &str, deadline: Duration, ports: &[u16]) -> Duration {
    let started = Instant::now();
    loop {
        let (ready, total) = ready_count(prefix);
        if total > 0 && total != usize::MAX && ready == total {
            return started.elapsed();
        }
        if started.elapsed() >= deadline {
            // The operator's own view, for the post-mortem (its log is in .drmesh/chaos).
            for &port in ports {
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

/// Managed children without exactly one controller owner reference to a live drmesh object.
/// (Duplicates are not counted: Kubernetes keeps (kind, namespace, name) unique itself.)
fn orphans(prefix: &str) -> Vec<String> {
    let Some(children) =
        kubectl_json(&["get", common::CHILD_KINDS, "-A", "-l", "app.kubernetes.io/managed-by=drmesh", "-o", "json"])
    else {
        return vec!["cannot list children".into()];
    };
    let mut owners = BTreeSet::new();
    for kind in ["datasources", "dataproducts", "accesspolicies"] {
        let Some(list) = kubectl_json(&["get", kind, "-A", "-o", "json"]) else {
            return vec![format!("cannot list {kind}")];
        };
        owners.extend(common::items(&list).filter_map(|o| o["metadata"]["uid"].as_str().map(String::from)));
    }
    let mut orphans = Vec::new();
    for c in common::items(&children) {
        let ns = c["metadata"]["namespace"].as_str().unwrap_or("");
        if !ns.starts_with(prefix) {
            continue;
        }
        let controllers: Vec<&str> = c["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["controller"] == true)
            .filter_map(|o| o["uid"].as_str())
            .collect();
        if controllers.len() != 1 || !owners.contains(controllers[0]) {
            orphans.push(format!(
                "{}/{ns}/{}",
                c["kind"].as_str().unwrap_or(""),
                c["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
    }
    orphans
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

/// The judge samples the cluster as often as it can (a list of every kind at one
/// resourceVersion, judged) until `stop`.
fn start_judge(prefix: String, record: Arc<Mutex<Record>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let client = common::client().await;
            let pause = Duration::from_millis(env_or("DRMESH_CHAOS_JUDGE_PAUSE_MS", 100));
            while !stop.load(Ordering::Relaxed) {
                let sample = common::judging::sample(&client, &|ns: &str| ns.starts_with(&prefix)).await;
                lock(&record).add(sample);
                tokio::time::sleep(pause).await;
            }
        })
    })
}

fn lock(record: &Mutex<Record>) -> std::sync::MutexGuard<'_, Record> {
    record.lock().unwrap_or_else(|p| p.into_inner())
}

fn seconds_after(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(secs)).expect("time")
}

/// A narrowing the bench causes now: registered with the judge, then done.
fn narrow(record: &Mutex<Record>, mut narrowing: Narrowing, act: impl FnOnce()) {
    narrowing.at = Timestamp::now();
    narrowing.due = None;
    let index = lock(record).narrow(narrowing);
    act();
    lock(record).due(index, Timestamp::now());
}

fn delete_policy(record: &Mutex<Record>, domains: &Domains, name: &str, phase: &str) {
    let n = Narrowing::new(
        "deletion",
        format!("grant {name} deleted ({phase})"),
        Timestamp::now(),
        domains.grant_children(name),
    );
    narrow(record, n, || {
        let out = kubectl(&["delete", "accesspolicy", name, "-n", &domains.producer, "--wait=false"]);
        assert!(out.status.success(), "delete {name}: {}", String::from_utf8_lossy(&out.stderr));
    });
}

/// Lowers a reader's domain to Internal: what it narrows is that domain's children and the
/// producer's children of `grants` (the reader's grants there; the kill phase's reader
/// is named by many grants, so any of the producer's children may be it).
fn lower_clearance(record: &Mutex<Record>, domains: &Domains, namespace: &str, grants: Option<&str>, phase: &str) {
    let children = grants.map(|g| domains.grant_children(g)).unwrap_or_default();
    let mut n = Narrowing::new(
        "clearance lowering",
        format!("{namespace} lowered to Internal ({phase})"),
        Timestamp::now(),
        children,
    );
    n.namespaces = [namespace.to_string()].into();
    if grants.is_none() {
        n.namespaces.insert(domains.producer.clone());
    }
    narrow(record, n, || {
        let out = kubectl(&["label", "namespace", namespace, "drmesh.io/clearance=Internal", "--overwrite"]);
        assert!(out.status.success(), "lower {namespace}: {}", String::from_utf8_lossy(&out.stderr));
    });
}

fn wait_granted(namespace: &str, policies: &[String]) {
    for p in policies {
        let out = kubectl(&["wait", "--for=condition=Granted", "accesspolicy", p, "-n", namespace, "--timeout=180s"]);
        assert!(out.status.success(), "grant {p} not in force: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn expire(record: &Mutex<Record>, domains: &Domains, grants: &[(String, Timestamp)], phase: &str, reader_domain: bool) {
    apply(&grants.iter().map(|(n, at)| domains.expiring(n, *at, reader_domain)).collect::<Vec<_>>());
    let mut r = lock(record);
    for (name, at) in grants {
        r.narrow(Narrowing::new(
            "expiry",
            format!("grant {name} expires ({phase})"),
            *at,
            domains.grant_children(name),
        ));
    }
}

fn main() {
    // This run's audit chain starts empty.
    let _ = std::fs::remove_dir_all(AUDIT_DIR);
    if let Ok(kubeconfig) = std::env::var("DRMESH_KUBECONFIG") {
        // SAFETY: set before any other thread starts; the operators read KUBECONFIG.
        unsafe { std::env::set_var("KUBECONFIG", kubeconfig) };
    }
    let products: usize = env_or("DRMESH_CHAOS_PRODUCTS", 1000);
    let prefix = format!("chaos{}", Timestamp::now().as_second() % 100_000);
    let mut rows: Vec<(String, String)> = Vec::new();

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

    // The judge samples the cluster for the whole run.
    let record = Arc::new(Mutex::new(Record::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let judge = start_judge(prefix.clone(), record.clone(), stop.clone());

    // 0. The narrowing domains, in force under a calm operator before the faults.
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let domains = Domains::new(&prefix);
    let deletable: Vec<String> = ["del-0", "del-1", "del-2", "fo-del"].map(String::from).to_vec();
    apply(&domains.docs(&deletable));
    let mut operator = Operator::start(&["--http-addr", &http]);
    let mut in_force = deletable.clone();
    in_force.extend(["to-reader".into(), "to-alt".into()]);
    wait_granted(&domains.producer, &in_force);

    // 1. kill -9 the operator every 2-4 s while the mesh converges and access narrows:
    // grants expire (+15..+30 s), are deleted (+12..+22 s), the reader's domain loses its
    // clearance (+28 s). At most DRMESH_CHAOS_KILLS kills (default 20), then it must
    // converge on its own: every restart lists and re-verifies the whole mesh, so endless
    // kills every few seconds at 1,000 products would measure only the restarts.
    let phases = std::env::var("DRMESH_CHAOS_PHASES").unwrap_or_else(|_| "kills,restart,failover,drift".into());
    let phase = |name: &str| phases.split(',').any(|p| p.trim() == name);
    // Large meshes take long to converge: the deadlines grow with them.
    let converge_within = Duration::from_secs((products as u64 * 3 / 10).max(600));
    // A judged sample lists every child: at 10,000 products one takes tens of seconds, and
    // a narrowing lands only on a sample started after it was due.
    let judge_within = Duration::from_millis((products as u64 * 20).max(60_000));
    let max_kills: usize = if phase("kills") { env_or("DRMESH_CHAOS_KILLS", 20) } else { 0 };
    apply(&mesh(&prefix, products));
    let started = Instant::now();
    let t0 = Timestamp::now();
    let mut actions: Vec<(Duration, Option<String>)> = Vec::new();
    if phase("kills") {
        let expiring: Vec<(String, Timestamp)> =
            (0..4).map(|k| (format!("exp-{k}"), seconds_after(t0, 15 + 5 * k as i64))).collect();
        expire(&record, &domains, &expiring, "kill -9 phase", true);
        actions = vec![(12, Some("del-0")), (17, Some("del-1")), (22, Some("del-2")), (28, None)]
            .into_iter()
            .map(|(s, a)| (Duration::from_secs(s), a.map(String::from)))
            .collect();
    }
    let narrowing_end = if phase("kills") { Duration::from_secs(36) } else { Duration::ZERO };
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_secs(2);
    let (mut ready, mut total) = (0, 0);
    loop {
        while actions.first().is_some_and(|(at, _)| started.elapsed() >= *at) {
            match actions.remove(0).1 {
                Some(policy) => delete_policy(&record, &domains, &policy, "kill -9 phase"),
                None => lower_clearance(&record, &domains, &domains.reader, None, "kill -9 phase"),
            }
        }
        if Instant::now() >= next_kill && kills < max_kills {
            (ready, total) = ready_count(&prefix);
            if started.elapsed() >= narrowing_end && total > 0 && ready == total {
                break;
            }
            operator.kill9();
            kills += 1;
            operator = Operator::start(&["--http-addr", &http]);
            next_kill = Instant::now() + Duration::from_millis(2000 + (kills * 700 % 2000) as u64);
        }
        if actions.is_empty() && started.elapsed() >= narrowing_end && kills >= max_kills {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ready_at_last_kill =
        format!("{ready}/{total} Ready at the last kill, {:.0} s in", started.elapsed().as_secs_f64());
    wait_converged(&prefix, "after the kills", converge_within, &[port]);
    if phase("kills") {
        rows.push(("state when the kills stopped".into(), ready_at_last_kill));
    }
    rows.push((
        format!("converged under {kills} kill -9 ({products} products)"),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    ));
    let orphaned = wait_no_orphans(&prefix);
    rows.push(("children without a live controller owner after the kills".into(), format!("{}", orphaned.len())));
    assert!(orphaned.is_empty(), "orphans: {orphaned:?}");

    // 2. Restart kube-apiserver and etcd under the running operator, then change the mesh.
    if phase("restart") {
        restart_control_plane(&prefix, port, &mut rows);
    }

    // 3. Two replicas with leader election. The standby is warm before the leader fails:
    // it has listed the mesh and run every reconcile on its caches with its writes fenced
    // off. Then kill -9 the leader; before its Lease can be taken, a grant expires,
    // another is deleted, a new one is made, a reader's domain (`n-alt`) loses its
    // clearance and a product changes. The grant's children are watched for exact times.
    drop(operator);
    let (port_a, port_b) = (free_port(), free_port());
    let replica = |identity: &str, port: u16| {
        let http = format!("127.0.0.1:{port}");
        Operator::start(&["--leader-election", "--identity", identity, "--http-addr", &http])
    };
    let mut a = replica("chaos-a", port_a);
    wait_metric(port_a, "drmesh_leader", 1.0, Duration::from_secs(120));
    let started_b = Instant::now();
    let b = replica("chaos-b", port_b);
    wait_ready(port_b, converge_within);
    wait_settled(port_b, converge_within);
    let in_step =
        metric_where(port_b, "drmesh_standby_verifications_total{", "outcome=\"in_step\"").unwrap_or_default();
    let held_seen = metric_where(port_b, "drmesh_standby_verifications_total{", "outcome=\"held\"").unwrap_or_default();
    let held = metric_sum(port_b, "drmesh_standby_held{").unwrap_or_default();
    rows.push((
        "standby warm (caches listed, every object reconciled with its writes fenced off)".into(),
        format!(
            "{:.1} s after it started; {in_step:.0} reconciles on the standby found their object in step, {held_seen:.0} needed a write (the leader had not made it yet), {held:.0} objects held for the take-over at the end",
            started_b.elapsed().as_secs_f64()
        ),
    ));
    let seen = Arc::new(Mutex::new(Sightings::default()));
    let watching = watch_grants(domains.producer.clone(), seen.clone(), stop.clone());
    // In force first, then expires 3 s after the leader's kill below.
    let expiry = seconds_after(Timestamp::now(), 8);
    expire(&record, &domains, &[("fo-exp".into(), expiry)], "failover", false);
    wait_granted(&domains.producer, &["fo-exp".to_string()]);
    while Timestamp::now() < seconds_after(expiry, -3) {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.kill9();
    let killed = Instant::now();
    let killed_at = Timestamp::now();
    let takeable = lease_takeable();
    let reconciles_before = metric_sum(port_b, "drmesh_reconciles_total").unwrap_or_default();
    delete_policy(&record, &domains, "fo-del", "failover");
    lower_clearance(&record, &domains, &domains.alt, Some("to-alt"), "failover");
    let granted_at = Timestamp::now();
    apply(&[domains.policy(
        "fo-new",
        json!([{"kind": "Group", "name": FAILOVER_READERS}]),
        None,
        "2030-01-01T00:00:00Z",
    )]);
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
    let t = wait_converged(&prefix, "after a leader failover", converge_within, &[port_b]);
    rows.push((
        "change converged after kill -9 of the leader".into(),
        format!("{:.1} s after the kill", killed.elapsed().as_secs_f64().max(t.as_secs_f64())),
    ));
    let new_grant = sighted_blocking(&seen, "RoleBinding/drmesh-grant-fo-new", false, Duration::from_secs(120));
    let expired = sighted_blocking(&seen, "RoleBinding/drmesh-grant-fo-exp", true, Duration::from_secs(120));
    let reconciles_after = metric_sum(port_b, "drmesh_reconciles_total").unwrap_or_default();
    rows.extend(takeover_rows(takeable, granted_at, new_grant, expiry, expired));
    rows.push((
        "failover: the new leader's reconciles, from the kill until the change converged".into(),
        format!(
            "{:.0} (the standby had found the rest in step; {} products, {} objects in all)",
            reconciles_after - reconciles_before,
            products,
            products + products / 3 + (products / 40).max(3)
        ),
    ));

    // A new leader's queue: what it still had to do after the change converged.
    let settled = wait_settled(port_b, converge_within);
    rows.push(("new leader's queue empty after".into(), format!("{:.1} s", settled.as_secs_f64())));
    wait_landed(&record, judge_within);
    rows.extend(failover_rows(&lock(&record), killed_at, takeable));
    drop(watching);

    // 4. Drift: delete and hand-edit children; time their restoration. A widening edit (or
    // a deleted isolation) is a narrowing for the judge: it times when access is back
    // within the policies.
    let mut restore = Vec::new();
    for i in 0..if phase("drift") { 10 } else { 0 } {
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
            target["kind"].as_str().unwrap_or("").to_string(),
            target["metadata"]["name"].as_str().unwrap_or("").to_string(),
        );
        // What the edit can widen: the child, the binding of a Role, the pods of an isolation.
        let mut touched: BTreeSet<String> = [format!("{kind} {ns}/{name}")].into();
        if kind == "Role" {
            touched.insert(format!("RoleBinding {ns}/{name}"));
        }
        if let Some(product) = name.strip_suffix("-isolation") {
            touched.insert(format!("Deployment {ns}/{product}"));
        }
        let kind = kind.to_lowercase();
        let uid = target["metadata"]["uid"].clone();
        let rv = target["metadata"]["resourceVersion"].clone();
        let t = Instant::now();
        let edit =
            Narrowing::new("hand edit", format!("{kind} {ns}/{name} edited or deleted"), Timestamp::now(), touched);
        narrow(&record, edit, || {
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
        });
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
    wait_landed(&record, judge_within);

    stop.store(true, Ordering::Relaxed);
    judge.join().expect("judge");
    let mut record =
        Arc::try_unwrap(record).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).unwrap_or_default();
    record.finish();
    let unjudged: Vec<String> = record.unjudged.iter().map(|(k, v)| format!("{v} × {k}")).collect();
    rows.push((
        "judge: samples judged / not judged (API server down, failed list)".to_string(),
        format!(
            "{} / {}{}",
            record.judged,
            record.unjudged_total(),
            if unjudged.is_empty() { String::new() } else { format!(" ({})", unjudged.join("; ")) }
        ),
    ));
    rows.push(("judge: accesses beyond the policies (violations)".into(), format!("{}", record.violations.len())));
    let orphaned = wait_no_orphans(&prefix);
    rows.push(("children without a live controller owner at the end".into(), format!("{}", orphaned.len())));
    let (audit_intact, audit_summary) = verify_audit();
    rows.push((
        "audit: `drmesh audit verify` over every process's output, against the head in the cluster".into(),
        audit_summary,
    ));

    let mut report = format!(
        "# drmesh chaos — {products} products\n\nrun {} on {} cores; `make chaos` (DRMESH_CHAOS_PRODUCTS={products})\n\n| phase | result |\n|---|---|\n",
        Timestamp::now(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    for (k, v) in &rows {
        report.push_str(&format!("| {k} | {v} |\n"));
    }
    report.push_str(&narrowing_table(&record));
    println!("\n{report}");
    let results = std::path::PathBuf::from(format!("{}/bench/results", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&results).expect("results dir");
    let run_id = Timestamp::now().as_second();
    std::fs::write(results.join(format!("chaos-{run_id}-n{products}.md")), &report).expect("write results");
    std::fs::write(results.join("chaos-latest.md"), &report).expect("write results");
    // The namespaces go while the leader runs (it releases the isolation finalizers).
    let mut namespaces: Vec<String> = (0..(products / 40).max(3)).map(|d| format!("{prefix}-d{d}")).collect();
    namespaces.extend([domains.producer.clone(), domains.reader.clone(), domains.alt.clone()]);
    common::delete_namespaces(&namespaces);
    drop(b);
    assert!(record.violations.is_empty(), "access beyond the policies: {:#?}", record.violations);
    assert!(orphaned.is_empty(), "orphans {orphaned:?}");
    assert!(p99 < Duration::from_secs(5), "drift restoration took {p99:?}");
    assert!(audit_intact, "the run's audit chain does not verify");
}

/// Checks the run's audit chain as an auditor would: every operator process's output at
/// once (each `kill -9`, each failover), against the head the last leader saved.
fn verify_audit() -> (bool, String) {
    let head = kubectl(&["get", "configmap", &audit_head_name(), "-n", "default", "-o", "jsonpath={.data.head}"]);
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let mut files: Vec<_> =
        std::fs::read_dir(AUDIT_DIR).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.sort();
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["audit", "verify"])
        .args(&files)
        .args(["--head", &head])
        .output()
        .expect("drmesh audit verify");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("audit verify ({} files, head {head}):\n{said}{}", files.len(), String::from_utf8_lossy(&out.stderr));
    let _ = kubectl(&["delete", "configmap", &audit_head_name(), "-n", "default"]);
    let first = said.lines().next().unwrap_or_default().to_string();
    (out.status.success(), format!("{} files: {first}", files.len()))
}

/// Children of deleted owners go with the garbage collector: orphans are those it left.
fn wait_no_orphans(prefix: &str) -> Vec<String> {
    let started = Instant::now();
    loop {
        let found = orphans(prefix);
        if found.is_empty() || started.elapsed() > Duration::from_secs(60) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Waits (up to `deadline`) until every narrowing due has landed.
fn wait_landed(record: &Mutex<Record>, deadline: Duration) {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let now = Timestamp::now();
        if lock(record).narrowings.iter().all(|n| n.at > now || n.landed.is_some()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Restarts kube-apiserver and etcd under the running operator (on `port`), then changes
/// the mesh: the change must converge without restarting the operator.
fn restart_control_plane(prefix: &str, port: u16, rows: &mut Vec<(String, String)>) {
    kill_component("kube-apiserver");
    kill_component("etcd");
    std::thread::sleep(Duration::from_secs(1));
    cluster_script("up");
    let change = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "after-restart", "namespace": format!("{prefix}-d0")},
        "spec": {"classification": "Internal", "inputs": [{"dataSource": "db"}], "runtime": {"image": "registry.example/chaos:1"},
                 "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}});
    apply(&[change]);
    let t = wait_converged(prefix, "after an API server and etcd restart", Duration::from_secs(180), &[port]);
    rows.push((
        "a change after kube-apiserver+etcd restart, converged in".into(),
        format!("{:.1} s (operator not restarted)", t.as_secs_f64()),
    ));
}

/// The sum of the samples of the metric lines starting with `prefix`, on `port`.
fn metric_sum(port: u16, prefix: &str) -> Option<f64> {
    metric_where(port, prefix, "")
}

/// [`metric_sum`] of the lines that also contain `having` (a label).
fn metric_where(port: u16, prefix: &str, having: &str) -> Option<f64> {
    let text = metrics_text(port)?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(having))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Waits until `metric` on `port` reads `value`.
fn wait_metric(port: u16, metric: &str, value: f64, deadline: Duration) {
    let started = Instant::now();
    while metric_sum(port, &format!("{metric} ")) != Some(value) {
        assert!(started.elapsed() < deadline, "{metric} on :{port} is not {value} after {deadline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the operator on `port` answers /readyz (every cache has listed).
fn wait_ready(port: u16, deadline: Duration) {
    let started = Instant::now();
    loop {
        let out =
            Command::new("curl").args(["-fsS", "--max-time", "2", &format!("http://127.0.0.1:{port}/readyz")]).output();
        if out.is_ok_and(|o| o.status.success()) {
            return;
        }
        assert!(started.elapsed() < deadline, "the operator on :{port} is not ready after {deadline:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Watches the grant children of `namespace` (RoleBindings, NetworkPolicies) until `stop`
/// or the handle is dropped.
fn watch_grants(namespace: String, seen: Arc<Mutex<Sightings>>, stop: Arc<AtomicBool>) -> Watching {
    let done = Arc::new(AtomicBool::new(false));
    let own = done.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let client = common::client().await;
            watch_grant_children(
                Api::<RoleBinding>::namespaced(client.clone(), &namespace),
                "RoleBinding",
                seen.clone(),
            );
            watch_grant_children(Api::<NetworkPolicy>::namespaced(client, &namespace), "NetworkPolicy", seen);
            while !stop.load(Ordering::Relaxed) && !own.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    Watching(done)
}

struct Watching(Arc<AtomicBool>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// [`common::sightings::sighted`] from a thread without a runtime.
fn sighted_blocking(seen: &Mutex<Sightings>, key: &str, deleted: bool, deadline: Duration) -> Option<Timestamp> {
    let until = Instant::now() + deadline;
    loop {
        {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let map = if deleted { &seen.deleted } else { &seen.applied };
            if let Some((_, at)) = map.get(key) {
                return Some(*at);
            }
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The take-over's first decisions, from the watch of the grant children: a grant made
/// while no operator led becomes effective, a grant expiring in that window is revoked;
/// each counted from the later of its own instant and the instant the Lease could be taken.
fn takeover_rows(
    takeable: Option<Timestamp>,
    granted_at: Timestamp,
    new_grant: Option<Timestamp>,
    expiry: Timestamp,
    expired: Option<Timestamp>,
) -> Vec<(String, String)> {
    let Some(takeable) = takeable else {
        return vec![("failover: when the Lease could be taken".into(), "not read".into())];
    };
    let late = |at: Timestamp, seen: Option<Timestamp>| match seen {
        None => "never (120 s)".to_string(),
        Some(seen) => format!("{:.0} ms", seen.duration_since(at.max(takeable)).as_secs_f64() * 1e3),
    };
    vec![
        (
            "failover: a grant made while no operator led, its RoleBinding seen applied, from max(its creation, Lease takeable)".into(),
            late(granted_at, new_grant),
        ),
        (
            "failover: a grant expiring while no operator led, its RoleBinding seen deleted, from max(expiresAt, Lease takeable)".into(),
            late(expiry, expired),
        ),
    ]
}

/// When the leader's Lease could be taken over: its last renewal plus its duration, as
/// the leader wrote them (on this machine's clock, the bench's too). Read right after the
/// leader's `kill -9`, before a standby can change it.
fn lease_takeable() -> Option<Timestamp> {
    let lease =
        kubectl_json(&["get", "lease", &format!("{}-leader", audit_head_name()), "-n", "default", "-o", "json"])?;
    let renewed: Timestamp = lease["spec"]["renewTime"].as_str()?.parse().ok()?;
    let duration = jiff::SignedDuration::from_secs(lease["spec"]["leaseDurationSeconds"].as_i64()?);
    renewed.checked_add(duration).ok()
}

/// The failover's narrowings timed from when a standby could first act: the later of the
/// narrowing's instant and the instant the killed leader's Lease could be taken over.
fn failover_rows(record: &Record, killed: Timestamp, takeable: Option<Timestamp>) -> Vec<(String, String)> {
    let Some(takeable) = takeable else {
        return vec![("failover: when the Lease could be taken".into(), "not read".into())];
    };
    let mut rows = vec![(
        "failover: the killed leader's Lease could be taken (renewTime + leaseDurationSeconds)".into(),
        format!("{:.1} s after the kill", takeable.duration_since(killed).as_secs_f64()),
    )];
    for n in record.narrowings.iter().filter(|n| n.what.ends_with("(failover)")) {
        let from = n.at.max(takeable);
        let late = match n.landed {
            None => "never".into(),
            // Landed with no leader: the garbage collector deletes a deleted policy's
            // children (owner references) without the operator.
            Some(l) if l < takeable => format!(
                "landed before the Lease could be taken ({:.0} ms after its instant, without a leader)",
                l.duration_since(n.at).as_secs_f64() * 1e3
            ),
            Some(l) => format!("{:.0} ms", l.duration_since(from).as_secs_f64() * 1e3),
        };
        rows.push((
            format!("failover: {} — {}, from max(its instant, Lease takeable) to landed", n.kind, n.what),
            late,
        ));
    }
    rows
}

/// How late each narrowing landed, by kind and phase, then each one.
fn narrowing_table(record: &Record) -> String {
    let mut out = String::from(
        "\nNarrowings: from the instant access had to narrow (expiresAt, the delete or label request, the hand edit) to the first judged sample without the access (an upper bound; samples every ~100 ms plus a list of every kind).\n\n| narrowing | in force before | late |\n|---|---|---|\n",
    );
    for n in &record.narrowings {
        out.push_str(&format!(
            "| {} — {} | {} | {} |\n",
            n.kind,
            n.what,
            if n.in_force { "yes" } else { "no (nothing to narrow)" },
            n.late_ms().map_or("never".into(), |ms| format!("{ms:.0} ms"))
        ));
    }
    out
}
