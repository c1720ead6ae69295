//! One installation of the chart for one test, and `drmesh run` acting as its
//! ServiceAccount (impersonated by the admin's kubeconfig).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::{Value, json};

use super::{FENCE_LABEL, documents, helm, kubectl_stdin, ok, render};
use crate::harness::{self, ClusterScoped, TestNamespace};

/// How long our operator may take to bring an object to Ready. Most tests run it
/// cluster-wide (as the chart installs it by default), so it first works through every
/// other test's objects (its writes there are refused by the fence, then backed off):
/// on a cluster shared with `make bench` that is thousands of objects.
/// One test operator at a time: each watches the whole cluster, and every write it tries
/// outside its fence is refused work for the API server that the other tests share.
pub static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const CONVERGE: std::time::Duration = std::time::Duration::from_secs(240);

/// One installation of the chart, in its own namespace, for one test.
pub struct Release {
    pub id: String,
    pub name: String,
    pub values: String,
    _guards: Vec<ClusterScoped>,
    pub namespace: TestNamespace,
}

impl Release {
    /// A release namespace (Pod Security "restricted" enforced) and the test's values:
    /// the ServiceAccount is called `drmesh`, the policies bind to the fence label only.
    pub async fn new(prefix: &str) -> Self {
        let id = harness::unique_name(prefix);
        let namespace = TestNamespace::create_with_labels(
            &format!("{prefix}-sys"),
            &[(FENCE_LABEL, id.as_str()), ("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await;
        Self { name: format!("drmesh-{id}"), values: Self::values_for(&id), id, _guards: Vec::new(), namespace }
    }

    /// A release called `name` in `namespace`, installed by something other than helm (Flux
    /// applying the rendered chart): the same values, fence and identity as [`Release::new`].
    /// The namespace is deleted when dropped, with the chart's cluster-scoped objects.
    pub fn adopt(id: String, name: &str, namespace: TestNamespace) -> Self {
        let mut release =
            Self { name: name.to_string(), values: Self::values_for(&id), id, _guards: Vec::new(), namespace };
        release.guard_cluster_scoped();
        release
    }

    /// The test's values: the ServiceAccount is called `drmesh`, the policies bind to the
    /// fence label only, and kwok (playing the nodes) reports the status of product pods.
    fn values_for(id: &str) -> String {
        let writers = serde_json::to_string(&super::status_writers_with_kwok()).expect("JSON");
        format!(
            "serviceAccount: {{name: drmesh}}\nadmissionPolicies:\n  namespaceSelector:\n    matchLabels: {{{FENCE_LABEL}: {id}}}\n  productPods: {{statusWriters: {writers}}}\n  securityOfficers: {{groups: [\"drmesh:security-officers\", \"system:masters\"]}}\n"
        )
    }

    /// Deletes the chart's cluster-scoped objects when dropped (also after a failed uninstall).
    fn guard_cluster_scoped(&mut self) {
        for kind in ["clusterrole", "clusterrolebinding"] {
            self._guards.push(ClusterScoped { kind, name: self.name.clone() });
        }
        for policy in super::ADMISSION_POLICIES {
            let name = format!("{}-{policy}", self.name);
            self._guards.push(ClusterScoped { kind: "validatingadmissionpolicy", name: name.clone() });
            self._guards.push(ClusterScoped { kind: "validatingadmissionpolicybinding", name });
        }
    }

    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:drmesh", self.namespace.name)
    }

    /// Labels for the test's other namespaces, inside the fence.
    pub fn fenced<'a>(&'a self, more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut labels = vec![(FENCE_LABEL, self.id.as_str())];
        labels.extend_from_slice(more);
        labels
    }

    pub fn render(&self, extra: &[&str]) -> String {
        render(&self.name, &self.namespace.name, &self.values, extra)
    }

    /// Server dry-run of everything the chart renders, then `helm install --wait`: the
    /// operator's Deployment (two replicas on kwok nodes) passes Pod Security and
    /// becomes Available.
    pub fn install(&mut self) {
        let manifests = self.render(&[]);
        ok(
            "server dry-run of the rendered chart",
            kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], &manifests),
        );
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("values");
        std::fs::write(file.path(), &self.values).expect("write values");
        let chart = super::chart_dir();
        let out = helm(&[
            "install",
            &self.name,
            chart.to_str().expect("utf-8"),
            "-n",
            &self.namespace.name,
            "-f",
            file.path().to_str().expect("utf-8"),
            "--wait",
            "--timeout",
            "120s",
        ]);
        let notes = ok("helm install", out);
        assert!(notes.contains(&self.username()), "NOTES name the operator's identity:\n{notes}");
        // helm uninstall removes these too; the guards also cover a failed uninstall.
        self.guard_cluster_scoped();
    }

    /// A test-only policy, so that this release's operator and the other tests' one (run
    /// cluster-wide as the admin) do not meet: "fence-out" refuses our operator's writes
    /// outside our namespaces. Inside them, the chart's own policies, bound to our
    /// namespaces, refuse the other operator: `managed-objects` its children, `statuses`
    /// its status writes.
    pub fn fence(&mut self) {
        let (id, user) = (&self.id, self.username());
        let children = r#"
      - {apiGroups: ["drmesh.io"], apiVersions: ["*"], resources: ["datasources/status", "dataproducts/status", "accesspolicies/status"], operations: ["UPDATE"]}
      - {apiGroups: ["apps"], apiVersions: ["*"], resources: ["deployments"], operations: ["CREATE", "UPDATE", "DELETE"]}
      - {apiGroups: [""], apiVersions: ["*"], resources: ["services", "serviceaccounts", "configmaps"], operations: ["CREATE", "UPDATE", "DELETE"]}
      - {apiGroups: ["networking.k8s.io"], apiVersions: ["*"], resources: ["networkpolicies"], operations: ["CREATE", "UPDATE", "DELETE"]}
      - {apiGroups: ["rbac.authorization.k8s.io"], apiVersions: ["*"], resources: ["roles", "rolebindings"], operations: ["CREATE", "UPDATE", "DELETE"]}
      - {apiGroups: ["events.k8s.io"], apiVersions: ["*"], resources: ["events"], operations: ["CREATE", "UPDATE"]}"#;
        let yaml = format!(
            r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {id}-fence-out}}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector:
      matchExpressions: [{{key: {FENCE_LABEL}, operator: NotIn, values: [{id}]}}]
    resourceRules:{children}
  validations:
    - expression: "request.userInfo.username != '{user}'"
      message: "e2e fence: this test's operator stays in its own namespaces"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {id}-fence-out}}
spec: {{policyName: {id}-fence-out, validationActions: [Deny]}}
"#
        );
        ok("apply the e2e fence", kubectl_stdin(&["apply", "-f", "-"], &yaml));
        let name = format!("{id}-fence-out");
        self._guards.push(ClusterScoped { kind: "validatingadmissionpolicy", name: name.clone() });
        self._guards.push(ClusterScoped { kind: "validatingadmissionpolicybinding", name });
    }

    /// A kubeconfig acting as the chart's ServiceAccount (impersonated by the admin).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let admin: Value =
            drmesh::yaml::from_str(&std::fs::read_to_string(harness::kubeconfig_path()).expect("kubeconfig"))
                .expect("kubeconfig parses");
        let cluster = admin["clusters"][0].clone();
        let mut user = admin["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["name"] == "admin")
            .expect("admin user")
            .clone();
        user["name"] = json!("operator");
        user["user"]["as"] = json!(self.username());
        let config = json!({
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user],
            "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
            "current-context": "operator",
        });
        let path = dir.join("operator.kubeconfig");
        std::fs::write(&path, drmesh::yaml::to_string(&config).expect("yaml")).expect("write kubeconfig");
        path
    }

    /// The rendered ClusterRole with the rules matching `drop` taken out, applied.
    pub fn apply_cluster_role_without(&self, drop: impl Fn(&Value) -> bool) -> usize {
        let docs = documents(&self.render(&["--show-only", "templates/rbac.yaml"]));
        let mut role = docs.into_iter().find(|d| d["kind"] == "ClusterRole").expect("ClusterRole");
        let rules = role["rules"].as_array().expect("rules").clone();
        let kept: Vec<Value> = rules.iter().filter(|r| !drop(r)).cloned().collect();
        let removed = rules.len() - kept.len();
        role["rules"] = Value::Array(kept);
        ok(
            "apply the ClusterRole",
            kubectl_stdin(
                &["apply", "--server-side", "--force-conflicts", "--field-manager", "e2e", "-f", "-"],
                &role.to_string(),
            ),
        );
        removed
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if std::env::var_os("DRMESH_E2E_KEEP").is_none() {
            let _ = helm(&["uninstall", &self.name, "-n", &self.namespace.name, "--wait=false"]);
        }
    }
}

/// `drmesh run` acting as the chart's ServiceAccount; killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
    http: String,
}

impl Operator {
    /// A replica with leader election on the Lease `drmesh-leader` in `lease_namespace`.
    pub fn start(kubeconfig: &Path, lease_namespace: &str, identity: &str, dir: &Path) -> Self {
        Self::spawn(kubeconfig, Some(lease_namespace), identity, dir, &[])
    }

    /// A replica with leader election and more flags (e.g. its own `--audit-log`).
    pub fn start_with(kubeconfig: &Path, lease_namespace: &str, identity: &str, dir: &Path, extra: &[&str]) -> Self {
        Self::spawn(kubeconfig, Some(lease_namespace), identity, dir, extra)
    }

    /// A lone operator without leader election (it runs its controllers at once), in the
    /// release namespace `home` (where it keeps the audit chain's head, as the chart's).
    pub fn start_alone(kubeconfig: &Path, home: &str, identity: &str, dir: &Path) -> Self {
        Self::spawn(kubeconfig, None, identity, dir, &["--lease-namespace", home])
    }

    /// A lone operator watching only `namespaces` (`--namespaces`), in the release
    /// namespace `home`.
    pub fn start_scoped(kubeconfig: &Path, home: &str, identity: &str, dir: &Path, namespaces: &[&str]) -> Self {
        Self::spawn(
            kubeconfig,
            None,
            identity,
            dir,
            &["--lease-namespace", home, "--namespaces", &namespaces.join(",")],
        )
    }

    fn spawn(kubeconfig: &Path, lease_namespace: Option<&str>, identity: &str, dir: &Path, extra: &[&str]) -> Self {
        let election: Vec<&str> = match lease_namespace {
            Some(ns) => vec!["--leader-election", "--lease-name", "drmesh-leader", "--lease-namespace", ns],
            None => vec![],
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let log = dir.join(format!("{identity}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_drmesh"))
            .args(["run", "--log-json"])
            .args(&election)
            .args([
                "--identity",
                identity,
                "--actor",
                identity,
                "--http-addr",
                &format!("127.0.0.1:{port}"),
                "--concurrency",
                "16",
            ])
            .args(extra)
            .args(if extra.contains(&"--audit-log") {
                vec![]
            } else {
                vec!["--audit-log".into(), dir.join(format!("{identity}-audit.log")).into_os_string()]
            })
            .env("KUBECONFIG", kubeconfig)
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start drmesh");
        Self { child, log, http: format!("http://127.0.0.1:{port}") }
    }

    /// Whether /readyz answers 200 (the watch caches have synced).
    pub fn is_ready(&self) -> bool {
        self.get("/readyz").is_some()
    }

    fn get(&self, path: &str) -> Option<String> {
        let out =
            Command::new("curl").args(["-fsS", "--max-time", "1", &format!("{}{path}", self.http)]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until this replica leads and its caches have synced.
    pub async fn wait_leading(&mut self) {
        let what = format!("the operator to lead and be ready (log: {})", self.log.display());
        harness::eventually(&what, CONVERGE, || {
            let exited = self.child.try_wait().ok().flatten();
            assert!(exited.is_none(), "the operator exited ({exited:?}): {}", self.log_text());
            let leading = self.get("/metrics").is_some_and(|m| m.lines().any(|l| l == "drmesh_leader 1"));
            let ready = self.get("/readyz").is_some();
            async move { (leading && ready).then_some(()) }
        })
        .await;
    }

    /// A metric's value (summed over its labels), if /metrics answers.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics")?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing every needle.
    pub async fn wait_log(&self, needles: &[&str]) -> String {
        let what = format!("a log line with {needles:?} in {}", self.log.display());
        harness::eventually(&what, CONVERGE, || {
            let line = self.log_text().lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_string);
            async move { line }
        })
        .await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
