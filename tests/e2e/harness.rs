//! Test harness for the real local control plane (`make cluster-up`).
//!
//! Each test gets its own namespace, deleted when the test's [`TestNamespace`] drops.
//! Waiting is always on a watch or on a polled condition with a deadline, never a bare
//! sleep. People (`alice`, `bob`, `mallory`) are contexts of the cluster's kubeconfig,
//! authenticated by client certificates whose organisations are their groups.
#![allow(dead_code)] // each test module uses a different part of the harness

use std::fmt::Debug;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Client, Config, Resource};
use serde::de::DeserializeOwned;

/// Default deadline for a condition to hold on the local cluster.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The real node's label (tests/e2e/cluster/node.sh) and the toleration of its taint.
pub const REAL_NODE_SELECTOR: &str = "drmesh.io/node=real";
pub const REAL_NODE_TOLERATIONS: &str = r#"[{"key":"drmesh.io/real-node","operator":"Exists","effect":"NoSchedule"}]"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cluster_script() -> PathBuf {
    repo_root().join("tests/e2e/cluster/cluster.sh")
}

fn script_output(arg: &str) -> PathBuf {
    let out =
        Command::new(cluster_script()).arg(arg).output().unwrap_or_else(|e| panic!("cannot run cluster.sh {arg}: {e}"));
    assert!(out.status.success(), "cluster.sh {arg} failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The kubeconfig of the local cluster: `$DRMESH_KUBECONFIG`, else what `make -s kubeconfig` prints.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("DRMESH_KUBECONFIG").map(PathBuf::from).unwrap_or_else(|| script_output("kubeconfig"))
}

/// The kubectl built with the control plane (same version as the API server).
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("DRMESH_KUBECTL").map(PathBuf::from).unwrap_or_else(|| script_output("bin").join("kubectl"))
}

/// The API server's audit log.
pub fn audit_log_path() -> PathBuf {
    kubeconfig_path().parent().expect("kubeconfig has a parent dir").join("logs/audit.log")
}

/// A client acting as one context of the cluster's kubeconfig: `admin`, `alice`, `bob`, `mallory`.
pub async fn client_as(context: &str) -> Client {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("no local cluster kubeconfig at {} ({e}); run `make cluster-up`", path.display()));
    let options = KubeConfigOptions { context: Some(context.to_string()), ..Default::default() };
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap_or_else(|e| panic!("context {context}: {e}"));
    Client::try_from(config).expect("client from kubeconfig")
}

/// The cluster administrator (`system:masters`).
pub async fn admin() -> Client {
    client_as("admin").await
}

/// Runs the cluster's kubectl as the admin; `--context NAME` in `args` acts as someone else.
pub fn kubectl(args: &[&str]) -> Output {
    Command::new(kubectl_path()).arg("--kubeconfig").arg(kubeconfig_path()).args(args).output().expect("run kubectl")
}

/// `kubectl apply --server-side -f -` of a YAML document, as the admin; panics on failure.
pub fn apply(yaml: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(out.status.success(), "kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// np-guard's connection list (`netpolicy list -o json`) for the Deployments and
/// NetworkPolicies of `namespaces`, exported from the live cluster.
pub fn np_guard_connections(namespaces: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["get", "namespaces", "-o", "yaml"];
    args.extend(namespaces);
    let out = kubectl(&args);
    std::fs::write(dir.path().join("namespaces.yaml"), &out.stdout).expect("write");
    for ns in namespaces {
        let out = kubectl(&["get", "deployments,networkpolicies", "-n", ns, "-o", "yaml"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(dir.path().join(format!("{ns}.yaml")), &out.stdout).expect("write");
    }
    let out = Command::new(kubectl_path().with_file_name("netpolicy"))
        .args(["list", "-o", "json", "--dirpath"])
        .arg(dir.path())
        .output()
        .expect("run netpolicy");
    assert!(out.status.success(), "netpolicy: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("netpolicy json")
}

/// Runs kubectl as a test person.
pub fn kubectl_as(context: &str, args: &[&str]) -> Output {
    let mut all = vec!["--context", context];
    all.extend_from_slice(args);
    kubectl(&all)
}

/// A DNS-1123 name unique across tests and runs.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{:05x}{n}", (nanos >> 8) & 0xfffff)
}

/// A namespace owned by one test; deleted (without waiting) when dropped.
pub struct TestNamespace {
    pub name: String,
    pub client: Client,
}

impl TestNamespace {
    pub async fn create(prefix: &str) -> Self {
        Self::create_with_labels(prefix, &[]).await
    }

    pub async fn create_with_labels(prefix: &str, labels: &[(&str, &str)]) -> Self {
        Self::create_with(prefix, labels, &[]).await
    }

    /// A namespace whose pods run on the real node (`DRMESH_REAL_NODE=1 make cluster-up`):
    /// the API server's PodNodeSelector and PodTolerationRestriction place them there.
    pub async fn create_on_real_node(prefix: &str, labels: &[(&str, &str)]) -> Self {
        let annotations = [
            ("scheduler.alpha.kubernetes.io/node-selector", REAL_NODE_SELECTOR),
            ("scheduler.alpha.kubernetes.io/defaultTolerations", REAL_NODE_TOLERATIONS),
        ];
        Self::create_with(prefix, labels, &annotations).await
    }

    async fn create_with(prefix: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Self {
        let client = admin().await;
        let name = unique_name(prefix);
        let mut ns = Namespace::default();
        ns.metadata.name = Some(name.clone());
        ns.metadata.annotations = Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        let mut all_labels: std::collections::BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        all_labels.insert("drmesh.io/e2e".into(), "true".into());
        ns.metadata.labels = Some(all_labels);
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        Self { name, client }
    }

    /// A namespaced API in this namespace, as the admin.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("DRMESH_E2E_KEEP").is_some() {
            return;
        }
        // Blocking and short: the API server only marks the namespace Terminating.
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
    }
}

/// Waits on a watch until `cond` holds for the named object (or its absence), with a deadline.
pub async fn wait_for<K>(api: &Api<K>, name: &str, timeout: Duration, cond: impl Condition<K>) -> Option<K>
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(obj)) => obj,
        Ok(Err(e)) => panic!("watch on {name} failed: {e}"),
        Err(_) => {
            let current = api.get_opt(name).await.ok().flatten();
            panic!("timed out after {timeout:?} waiting on {name}; last seen: {current:#?}")
        }
    }
}

/// Waits until the named object is gone.
pub async fn wait_deleted<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Clone + Debug + Send + DeserializeOwned + Resource + 'static,
{
    wait_for(api, name, timeout, |obj: Option<&K>| obj.is_none()).await;
}

/// Starts a watch on the named object and returns once the watch has listed it (so that
/// it is in place before what the test does next): the task returned ends with the
/// instant this process saw `cond` hold for the object (None: deleted), on the same
/// clock as `jiff::Timestamp::now()` (the operator's, on the local cluster). Panics when
/// `cond` already holds when the watch starts: a measurement must not start late.
pub async fn watch_until<K>(
    api: &Api<K>,
    name: &str,
    cond: impl Fn(Option<&K>) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<jiff::Timestamp>
where
    K: Clone + Debug + Send + Sync + DeserializeOwned + Resource + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api.clone(), config).boxed();
    let what = name.to_string();
    let mut current: Option<K> = None;
    let mut listing: Option<K> = None;
    // The initial list, here: the caller acts only once the watch is in place.
    let listed = tokio::time::timeout(TIMEOUT, async {
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Init) => listing = None,
                Ok(Event::InitApply(object)) => listing = Some(object),
                Ok(Event::InitDone) => return,
                Ok(Event::Apply(object)) => current = Some(object),
                Ok(Event::Delete(_)) => current = None,
                Err(error) => panic!("watch on {what} failed: {error}"),
            }
        }
        panic!("the watch on {what} ended");
    })
    .await;
    assert!(listed.is_ok(), "the watch on {name} did not list it within {TIMEOUT:?}");
    current = listing.or(current);
    assert!(!cond(current.as_ref()), "{name} already holds the condition when the watch starts: {current:#?}");
    let what = name.to_string();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(object) | Event::InitApply(object)) => current = Some(object),
                Ok(Event::Delete(_)) => current = None,
                Ok(Event::Init | Event::InitDone) => {}
                Err(error) => panic!("watch on {what} failed: {error}"),
            }
            if cond(current.as_ref()) {
                return jiff::Timestamp::now();
            }
        }
        panic!("the watch on {what} ended");
    })
}

/// A metric's value on the operator `with-operator.sh` runs (summed over its labels), or
/// None when it is not exported.
pub fn metric(name: &str) -> Option<f64> {
    let url = std::env::var("DRMESH_E2E_METRICS").expect("run through tests/e2e/with-operator.sh");
    let out = Command::new("curl").args(["-fsS", "--max-time", "5", &url]).output().expect("curl");
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The Events of the namespace `ns` about the object `name` with `reason`, of type `type_`.
pub async fn events_about(ns: &str, name: &str, reason: &str, type_: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    let api: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin().await, ns);
    let list = api.list(&kube::api::ListParams::default()).await.expect("list Events");
    list.items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some(type_)
        })
        .collect()
}

/// Polls an async probe until it returns `Some`, with a deadline. For conditions that no
/// watch can observe (authorization caches, admission policy propagation, files).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_explained(what, timeout, || {
        let probed = probe();
        async move { probed.await.ok_or_else(String::new) }
    })
    .await
}

/// [`eventually`], for a probe that says what it still waits for (`Err`): the last answer
/// is in the timeout's message.
pub async fn eventually_explained<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let waiting = match probe().await {
            Ok(v) => return v,
            Err(waiting) => waiting,
        };
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}{waiting}");
    }
}

/// Deletes a cluster-scoped object when dropped (admission policies, cluster roles).
pub struct ClusterScoped {
    pub kind: &'static str,
    pub name: String,
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", self.kind, &self.name, "--wait=false", "--ignore-not-found"]);
    }
}

/// Background delete so dependents are left to the garbage collector.
pub fn background() -> DeleteParams {
    DeleteParams::background()
}

/// `kubectl apply --server-side` of a YAML or JSON text, as the admin; a failure fails the test.
pub fn apply_text(text: &str) {
    apply(text)
}

/// `kubectl ... -o json` as the admin, parsed; a kubectl error fails the test.
pub fn kubectl_json(args: &[&str]) -> serde_json::Value {
    let out = kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON: {e}"))
}

/// The (status, reason) of an object's Ready condition, from its JSON.
pub fn ready_of(obj: &serde_json::Value) -> Option<(String, String)> {
    let c = obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?;
    Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
}

/// Waits until every DataSource, DataProduct and AccessPolicy of `namespaces` is Ready
/// for its current generation; returns how many there are.
pub async fn wait_all_ready(namespaces: &[String], timeout: Duration) -> usize {
    let what = format!("every drmesh object of {namespaces:?} Ready");
    eventually_explained(&what, timeout, || {
        let mut total = 0;
        let mut waiting = Vec::new();
        for ns in namespaces {
            let list = kubectl_json(&["get", "datasources,dataproducts,accesspolicies", "-n", ns, "-o", "json"]);
            for o in list["items"].as_array().into_iter().flatten() {
                total += 1;
                let current = o["status"]["observedGeneration"] == o["metadata"]["generation"];
                let ready = ready_of(o);
                if !(current && ready.as_ref().is_some_and(|(s, _)| s == "True")) {
                    waiting.push(format!(
                        "{} {ns}/{}: generation {} observed {}, Ready {:?}",
                        o["kind"].as_str().unwrap_or_default(),
                        o["metadata"]["name"].as_str().unwrap_or_default(),
                        o["metadata"]["generation"],
                        o["status"]["observedGeneration"],
                        ready
                    ));
                }
            }
        }
        // The objects still waiting are named, so a timeout says which and why.
        let ready = if waiting.is_empty() && total > 0 {
            Ok(total)
        } else {
            Err(format!(" ({total} found); not yet: {waiting:#?}"))
        };
        async move { ready }
    })
    .await
}

/// `drmesh access-review --cluster -o json` on the local cluster: every row.
pub fn access_review() -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["access-review", "--cluster", "-o", "json"])
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .expect("drmesh access-review");
    assert!(out.status.success(), "access-review: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("access-review json")
}

/// The drmesh operator's audit records (the stream `with-operator.sh` writes).
pub fn audit_records() -> Vec<serde_json::Value> {
    let path = std::env::var("DRMESH_E2E_AUDIT_LOG").expect("run through tests/e2e/with-operator.sh");
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The reference mesh's MeshPolicy (config/samples/people.yaml: the EXAMPLE approvers 1
/// and 2), applied once per run; tests beside each other all expect this one.
pub fn ensure_sample_mesh_policy() {
    static APPLIED: std::sync::Once = std::sync::Once::new();
    APPLIED.call_once(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples/people.yaml");
        let docs = drmesh::manifest::load_documents(&path).expect("people.yaml");
        let policy = docs.iter().find(|d| d.kind() == "MeshPolicy").expect("a MeshPolicy in people.yaml");
        apply(&policy.value.to_string());
    });
}

/// The EXAMPLE approver key `n` (tests/fixtures/example-approvers).
pub fn example_key(n: u8) -> ssh_key::PrivateKey {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/example-approvers/example-approver-{n}"));
    ssh_key::PrivateKey::read_openssh_file(&path).expect("example key")
}

/// An AccessPolicy (JSON or YAML text) with its approvals replaced by `signers`: each
/// (approver name, example key number) signs the policy's current spec.
pub fn with_approvals(text: &str, signers: &[(&str, u8)]) -> String {
    let mut policy: drmesh::api::AccessPolicy = drmesh::yaml::from_str(text).expect("an AccessPolicy");
    policy.spec.approvals.clear();
    let approvals: Vec<drmesh::api::Approval> = signers
        .iter()
        .map(|(who, n)| drmesh::api::Approval {
            approver: who.to_string(),
            signature: drmesh::mesh::people::sign(&policy, &example_key(*n)).expect("sign"),
        })
        .collect();
    policy.spec.approvals = approvals;
    serde_json::to_string(&policy).expect("json")
}

/// An AccessPolicy signed by the EXAMPLE approvers `numbers` under their own names.
pub fn approved_by_examples(text: &str, numbers: &[u8]) -> String {
    let names: Vec<(String, u8)> = numbers.iter().map(|n| (format!("example-approver-{n}"), *n)).collect();
    let signers: Vec<(&str, u8)> = names.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    with_approvals(text, &signers)
}

/// Clears the group `name` at `level` for the next two hours (a cluster-scoped Clearance
/// named after it; it clears nobody once expired).
pub fn clear_group(name: &str, level: &str) {
    let until = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_hours(2)).expect("time");
    apply(
        &serde_json::json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "Clearance", "metadata": {"name": format!("e2e-{name}")},
            "spec": {"subject": {"kind": "Group", "name": name}, "level": level, "expiresAt": until.to_string(),
                     "reason": "end-to-end test people"}})
        .to_string(),
    );
}
