//! `make bench`: measures drmesh on the local control plane against the figures of
//! QUALITY.md and prints a table (also written to bench/results/).
//!
//! Environment: DRMESH_KUBECONFIG, DRMESH_KUBECTL (set by `make bench`),
//! DRMESH_BENCH_PRODUCTS (default 1000), DRMESH_BENCH_IDLE_SECS (default 600),
//! DRMESH_BENCH_LATENCY_SAMPLES (default 40), DRMESH_BENCH_BASELINE (default 1; 0 skips
//! the kubectl baseline for quick iterations on the operator's own figures),
//! DRMESH_BENCH_OPERATOR (another drmesh binary to measure, e.g. one built with other features).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{env_or, kubectl, rendered_children, synthetic};

use drmesh::api::{AccessPolicy, DataProduct};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

fn kubectl_apply_file(path: &Path) -> Duration {
    let started = Instant::now();
    let out = kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// The CRDs as committed (a test keeps them in sync with the types), Established.
fn install_crds() {
    kubectl_apply_file(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/drmesh.io_crds.yaml")));
    let out = kubectl().args(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]).output();
    assert!(out.is_ok_and(|o| o.status.success()), "CRDs not Established");
}

fn write_yaml(path: &Path, docs: &[Value]) {
    let mut text = String::new();
    for d in docs {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(d).expect("yaml"));
    }
    std::fs::write(path, text).expect("write manifests");
}

async fn count_ready(client: &Client, prefix: &str) -> (usize, usize) {
    let all: Api<DataProduct> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.expect("list");
    let mine: Vec<_> =
        list.items.into_iter().filter(|p| p.namespace().is_some_and(|n| n.starts_with(prefix))).collect();
    let ready = mine
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && format!("{:?}", c.status) == "True"))
        })
        .count();
    (ready, mine.len())
}

fn deployments_available(prefix: &str, domains: usize) {
    for d in 0..domains {
        let out = kubectl()
            .args([
                "wait",
                "--for=condition=Available",
                "deployment",
                "--all",
                "-n",
                &format!("{prefix}-d{d}"),
                "--timeout=600s",
            ])
            .stdout(Stdio::null())
            .output()
            .expect("kubectl wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The operator under measurement; killed when dropped, also when the bench panics.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_operator(dir: &Path) -> Operator {
    Command::new(std::env::var("DRMESH_BENCH_OPERATOR").unwrap_or_else(|_| env!("CARGO_BIN_EXE_drmesh").into()))
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:18090",
            "--concurrency",
            &env_or("DRMESH_BENCH_CONCURRENCY", 16u16).to_string(),
        ])
        .arg("--audit-log")
        .arg(dir.join("audit.log"))
        .env("KUBECONFIG", std::env::var("DRMESH_KUBECONFIG").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("operator.log")).expect("log"))
        .spawn()
        .map(Operator)
        .expect("start operator")
}

fn metric(name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "2", "http://127.0.0.1:18090/metrics"])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The reconcile counter once the operator is settled: its queues empty and the counter
/// unchanged for `quiet` (at most 10 minutes; a large mesh may still be draining its queue
/// when every product is already Ready).
async fn settled(quiet: Duration) -> f64 {
    let mut last = metric("drmesh_reconciles_total");
    let mut still = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (still.elapsed() < quiet || metric("drmesh_queue_depth") > 0.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = metric("drmesh_reconciles_total");
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    last
}

fn proc_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// resourceVersions of every child the operator manages in the bench namespaces.
fn child_versions(prefix: &str) -> BTreeMap<String, String> {
    let out = kubectl()
        .args(["get", common::CHILD_KINDS, "-A"])
        .args([
            "-l",
            "app.kubernetes.io/managed-by=drmesh",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} {.metadata.resourceVersion}{\"\\n\"}{end}",
        ])
        .output()
        .expect("kubectl get");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split('/').nth(1).is_some_and(|ns| ns.starts_with(prefix)))
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Objects of the kinds drmesh reads or makes (and their pods) in the whole cluster.
fn objects_in_cluster() -> usize {
    let out = kubectl()
        .arg("get")
        .arg(concat!(
            "dataproducts,datasources,accesspolicies,deployments,replicasets,pods,services,",
            "serviceaccounts,networkpolicies,roles,rolebindings,configmaps,namespaces"
        ))
        .args(["-A", "--no-headers"])
        .output()
        .expect("kubectl get");
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

/// Mutating requests (POST, PUT, PATCH, DELETE) the API server has served on the kinds
/// drmesh watches (and Events), from its own `apiserver_request_total`: what the operator
/// writes, seen from the server. Deployment status (the controller-manager and the kwok
/// nodes write it) and Leases (renewals, allowed) are left out.
fn apiserver_writes() -> BTreeMap<String, f64> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        Some(line[start..].split('"').next()?.to_string())
    };
    let out = kubectl().args(["get", "--raw", "/metrics"]).output().expect("kubectl get --raw /metrics");
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let (Some(verb), Some(resource)) = (label(line, "verb"), label(line, "resource")) else { continue };
        let subresource = label(line, "subresource").unwrap_or_default();
        let mutating = ["POST", "PUT", "PATCH", "DELETE"].contains(&verb.as_str());
        let watched = drmesh::controllers::WATCHED.contains(&resource.as_str()) || resource == "events";
        if !mutating || !watched || (resource == "deployments" && subresource == "status") {
            continue;
        }
        let key = if subresource.is_empty() {
            format!("{verb} {resource}")
        } else {
            format!("{verb} {resource}/{subresource}")
        };
        *counts.entry(key).or_default() += line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    }
    counts
}

async fn wait_binding(api: &Api<RoleBinding>, name: &str, present: bool, deadline: Duration) -> Option<Instant> {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if api.get_opt(name).await.ok().flatten().is_some() == present {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::main]
async fn main() {
    let products: usize = env_or("DRMESH_BENCH_PRODUCTS", 1000);
    let idle_secs: u64 = env_or("DRMESH_BENCH_IDLE_SECS", 600);
    let samples: usize = env_or("DRMESH_BENCH_LATENCY_SAMPLES", 40);
    let run_id = jiff::Timestamp::now().as_second();
    let dir = PathBuf::from(format!("{}/.drmesh/bench/{run_id}", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let kubeconfig =
        kube::config::Kubeconfig::read_from(std::env::var("DRMESH_KUBECONFIG").expect("DRMESH_KUBECONFIG"))
            .expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    let client = Client::try_from(config).expect("client");
    let mut table: Vec<(String, String, String)> = Vec::new();
    // A previous run's namespaces still being deleted would load the API server.
    let waited = Instant::now();
    while waited.elapsed() < Duration::from_secs(900) {
        let out = kubectl().args(["get", "namespaces", "--no-headers"]).output().expect("kubectl");
        if !String::from_utf8_lossy(&out.stdout).contains("Terminating") {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("cluster quiet after {:?}", waited.elapsed());
    install_crds();

    // 1. Baseline: a person applying the operator's children by hand.
    let base_prefix = format!("bb{}", run_id % 100_000);
    let (base_docs, base_snapshot) = synthetic(&base_prefix, products);
    let domains = base_docs.iter().filter(|d| d["kind"] == "Namespace").count();
    let baseline = (env_or("DRMESH_BENCH_BASELINE", 1u8) != 0).then(|| {
        let namespaces: Vec<Value> = base_docs.iter().filter(|d| d["kind"] == "Namespace").cloned().collect();
        write_yaml(&dir.join("base-namespaces.yaml"), &namespaces);
        kubectl_apply_file(&dir.join("base-namespaces.yaml"));
        let children = rendered_children(&base_snapshot, false);
        write_yaml(&dir.join("base-children.yaml"), &children);
        let started = Instant::now();
        kubectl_apply_file(&dir.join("base-children.yaml"));
        deployments_available(&base_prefix, domains);
        let took = started.elapsed();
        eprintln!("baseline: {} children applied and Available in {took:?}", children.len());
        // Its children carry drmesh's labels: left in place, the operator would cache
        // them too, and its memory would be that of 2N products.
        let names: Vec<String> = (0..domains).map(|d| format!("namespace/{base_prefix}-d{d}")).collect();
        let out = kubectl().arg("delete").args(&names).args(["--wait=true", "--timeout=900s"]).output();
        assert!(out.is_ok_and(|o| o.status.success()), "baseline namespaces not deleted");
        (took, children.len())
    });

    // 2. The operator from cold: the declarations are applied, then the operator starts.
    let op_prefix = format!("bo{}", run_id % 100_000);
    let (docs, _) = synthetic(&op_prefix, products);
    write_yaml(&dir.join("mesh.yaml"), &docs);
    kubectl_apply_file(&dir.join("mesh.yaml"));
    let operator = start_operator(&dir);
    let pid = operator.0.id();
    let started = Instant::now();
    // 900 s, or 0.3 s per product beyond 3,000: past it, the figure says how far it got
    // and the other figures are still measured.
    let limit = Duration::from_secs(env_or("DRMESH_BENCH_CONVERGE_SECS", (products as u64 * 3 / 10).max(900)));
    let converged = loop {
        let (ready, total) = count_ready(&client, &op_prefix).await;
        if total > 0 && ready == total {
            break Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            break Err(format!("not converged in {} s: {ready}/{total} Ready", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("operator: {products} products: {converged:?}");
    let convergence = converged.as_ref().map_or(started.elapsed(), |t| *t);
    let figure = converged.map_or_else(|e| e, |t| format!("{:.1} s", t.as_secs_f64()));
    table.push(("cold convergence, operator".into(), figure, "<= 120 s (1,000 products)".into()));
    let (baseline_time, ratio) = match baseline {
        Some((t, _)) => {
            (format!("{:.1} s", t.as_secs_f64()), format!("{:.2}", convergence.as_secs_f64() / t.as_secs_f64()))
        }
        None => ("skipped".into(), "skipped".into()),
    };
    table.push(("same children, kubectl apply --server-side".into(), baseline_time, "".into()));
    table.push(("ratio operator / baseline".into(), ratio, "<= 1.0".into()));

    let converge_reconciles = metric("drmesh_reconciles_total");
    table.push((
        "reconciles per product during cold convergence (all controllers)".into(),
        format!("{:.2}", converge_reconciles / products as f64),
        "".into(),
    ));

    // 3. Reconciles per spec change: every reconcile of every controller that one change
    // of one product's spec causes, counted from a settled operator until it settles again.
    let mut per_change = Vec::new();
    let dps: Api<DataProduct> = Api::namespaced(client.clone(), &format!("{op_prefix}-d1"));
    for k in 0..5 {
        let before = settled(Duration::from_secs(2)).await;
        let product = format!("p{}", 1 + k * common::domains(products)); // all in domain 1
        let patch = json!({"spec": {"description": format!("changed by the benchmark ({k})")}});
        dps.patch(&product, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
        let after = settled(Duration::from_secs(2)).await;
        per_change.push(after - before);
    }
    per_change.sort_by(f64::total_cmp);
    table.push((
        format!("reconciles per spec change, median of {} (max)", per_change.len()),
        format!("{} ({})", per_change[per_change.len() / 2], per_change[per_change.len() - 1]),
        "<= 2".into(),
    ));

    // 4. Reaction latency: grant create -> RoleBinding, delete -> gone, expiry -> gone.
    let ns = format!("{op_prefix}-d0");
    let policies: Api<AccessPolicy> = Api::namespaced(client.clone(), &ns);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    let (mut created, mut deleted, mut expired) = (Vec::new(), Vec::new(), Vec::new());
    let objects = objects_in_cluster();
    for k in 0..samples {
        let name = format!("lat-{k}");
        let ap: AccessPolicy = serde_json::from_value(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"dataProduct": "p0", "subjects": [{"kind": "Group", "name": format!("g{k}")}], "purpose": "latency sample", "expiresAt": "2030-01-01T00:00:00Z"}}))
        .expect("ap");
        let t = Instant::now();
        policies.create(&PostParams::default(), &ap).await.expect("create");
        if let Some(at) = wait_binding(&bindings, &format!("drmesh-grant-{name}"), true, Duration::from_secs(30)).await
        {
            created.push(at - t);
        }
        let t = Instant::now();
        policies.delete(&name, &DeleteParams::default()).await.expect("delete");
        if let Some(at) = wait_binding(&bindings, &format!("drmesh-grant-{name}"), false, Duration::from_secs(30)).await
        {
            deleted.push(at - t);
        }
    }
    let expiring: Vec<(String, jiff::Timestamp)> = (0..samples.min(20))
        .map(|k| {
            let at =
                jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 4 + (k as i64 % 3)).expect("time");
            (format!("exp-{k}"), at)
        })
        .collect();
    for (name, at) in &expiring {
        let ap: AccessPolicy = serde_json::from_value(json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"dataProduct": "p0", "subjects": [{"kind": "Group", "name": name}], "purpose": "expiry sample", "expiresAt": at.to_string()}}))
        .expect("ap");
        policies.create(&PostParams::default(), &ap).await.expect("create");
    }
    // Every grant must be in force before its expiry is timed (else "gone" means "not yet made").
    let mut expiring_in_force = Vec::new();
    for item in &expiring {
        let in_force = wait_binding(&bindings, &format!("drmesh-grant-{}", item.0), true, Duration::from_secs(3)).await;
        if in_force.is_some() && jiff::Timestamp::now() < item.1 {
            expiring_in_force.push(item);
        }
    }
    // Watch all of them at once: each revocation is timed when first seen.
    let mut pending: Vec<&(String, jiff::Timestamp)> = expiring_in_force;
    let until = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() && Instant::now() < until {
        let mut still = Vec::new();
        for item in pending {
            let (name, at) = item;
            if bindings.get_opt(&format!("drmesh-grant-{name}")).await.ok().flatten().is_none() {
                let late = jiff::Timestamp::now().duration_since(*at);
                // Gone before its expiry would be a bug in the operator: make it visible.
                assert!(late.is_positive(), "grant {name} revoked {late:#} before its expiresAt");
                expired.push(Duration::try_from(late).unwrap_or(Duration::ZERO));
            } else {
                still.push(item);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (name, _) in &expiring {
        let _ = policies.delete(name, &DeleteParams::default()).await;
    }
    for (label, v) in [
        ("grant create -> RoleBinding", &mut created),
        ("grant delete -> RoleBinding gone", &mut deleted),
        ("expiresAt -> RoleBinding gone", &mut expired),
    ] {
        v.sort();
        table.push((
            format!("{label} p50 / p99 (n={}, {objects} objects in the cluster)", v.len()),
            format!(
                "{:.0} / {:.0} ms",
                percentile(v, 0.5).as_secs_f64() * 1000.0,
                percentile(v, 0.99).as_secs_f64() * 1000.0
            ),
            "p99 <= 1000 ms".into(),
        ));
    }

    // 5. Idle: no writes, no resourceVersion changes, little CPU.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let versions_before = child_versions(&op_prefix);
    let writes_before = metric("drmesh_child_writes_total");
    let server_writes_before = apiserver_writes();
    let ticks_before = cpu_ticks(pid);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle = idle_started.elapsed();
    let ticks = cpu_ticks(pid) - ticks_before;
    let writes = metric("drmesh_child_writes_total") - writes_before;
    let server_writes: BTreeMap<String, f64> = apiserver_writes()
        .into_iter()
        .filter_map(|(k, v)| {
            let during = v - server_writes_before.get(&k).copied().unwrap_or(0.0);
            (during > 0.0).then_some((k, during))
        })
        .collect();
    let server_writes_total: f64 = server_writes.values().sum();
    let server_writes_detail: Vec<String> = server_writes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let versions_after = child_versions(&op_prefix);
    let changed = versions_after.iter().filter(|(k, v)| versions_before.get(*k) != Some(*v)).count();
    table.push((
        format!("child writes while idle ({} s), counted by the operator", idle.as_secs()),
        format!("{writes}"),
        "0".into(),
    ));
    table.push((
        format!(
            "mutating requests on drmesh and child kinds while idle ({} s), apiserver_request_total",
            idle.as_secs()
        ),
        if server_writes_detail.is_empty() {
            "0".into()
        } else {
            format!("{server_writes_total} ({})", server_writes_detail.join(", "))
        },
        "0".into(),
    ));
    table.push((
        format!("children whose resourceVersion changed ({})", versions_before.len()),
        format!("{changed}"),
        "0".into(),
    ));
    let ticks_per_sec = 100.0;
    table.push((
        "idle CPU".into(),
        format!("{:.2} % of a core", ticks as f64 / ticks_per_sec / idle.as_secs_f64() * 100.0),
        "<= 2 %".into(),
    ));
    table.push((
        "operator peak RSS".into(),
        format!("{:.1} MiB", proc_field(pid, "VmHWM:") as f64 / 1024.0),
        if products >= 10_000 { "<= 256 MiB at 10,000" } else { "<= 64 MiB at 1,000" }.into(),
    ));
    table.push((
        "operator RSS after the idle period".into(),
        format!("{:.1} MiB", proc_field(pid, "VmRSS:") as f64 / 1024.0),
        "".into(),
    ));

    drop(operator);

    // Report.
    let mut report = String::new();
    let _ = writeln!(report, "# drmesh benchmark — {products} products, {} domains", domains);
    let _ = writeln!(
        report,
        "\nrun {} on {} cores; `make bench` (DRMESH_BENCH_PRODUCTS={products}, DRMESH_BENCH_IDLE_SECS={idle_secs})\n",
        jiff::Timestamp::now(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let _ = writeln!(report, "| figure | measured | target |\n|---|---|---|");
    for (k, v, t) in &table {
        let _ = writeln!(report, "| {k} | {v} | {t} |");
    }
    println!("{report}");
    let results = PathBuf::from(format!("{}/bench/results", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&results).expect("results dir");
    std::fs::write(results.join(format!("{run_id}-n{products}.md")), &report).expect("write results");
    std::fs::write(results.join("latest.md"), &report).expect("write results");

    // Clean up the bench namespaces (without waiting).
    for prefix in [&base_prefix, &op_prefix] {
        for d in 0..domains {
            let _ = kubectl().args(["delete", "namespace", &format!("{prefix}-d{d}"), "--wait=false"]).output();
        }
    }
}
