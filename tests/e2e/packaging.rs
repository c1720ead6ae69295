//! Packaging for production: the Helm chart (built with helm from Go modules), its
//! least-privilege RBAC, the admission policies it ships, GitOps health checks (Argo CD
//! Lua, Flux's kstatus) and the audit policy — checked offline by independent judges
//! (helm lint, checkov, kubernetes-validate, Lua, kstatus) and on the real control plane.
//!
//! Submodules: `rbac` (the operator as the chart's ServiceAccount: RBAC sufficient and
//! needed; `release` has its fixtures), `policies` (admission), `fail_closed` (the
//! attacker's side of the admission policies, issue 13), `red_team` (the attacker against
//! the policies and the operator under its own identity together), `health` (Argo CD, kstatus),
//! `flux` (Flux's own controllers deliver the chart and the mesh from git, docs/gitops.md),
//! `alerts` (the PrometheusRule's alerts evaluated by promtool).

mod alerts;
mod audit;
mod datapath;
mod domains;
mod fail_closed;
mod flux;
mod health;
mod policies;
mod rbac;
mod red_team;
mod release;
mod restart;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::harness;

/// Label that confines a test's admission policies to the namespaces it created, so the
/// other e2e tests (and the operator they run as the cluster admin) are unaffected.
pub const FENCE_LABEL: &str = "drmesh.io/e2e-packaging";

/// The chart's ValidatingAdmissionPolicies (names after the release's), in the order the
/// chart renders them; docs/install.md lists the same.
pub const ADMISSION_POLICIES: [&str; 10] = [
    "managed-objects",
    "classified-namespaces",
    "clearance-label",
    "security-officers",
    "product-identity",
    "product-pods",
    "datasource-credentials",
    "credentials-label",
    "statuses",
    "host-network",
];

/// The username of kwok, which plays the kubelet of the local cluster's nodes.
pub const KWOK: &str = "kwok-controller";

/// The chart's default `admissionPolicies.productPods.statusWriters` and kwok: on the
/// local cluster, kwok reports the status of product pods.
pub fn status_writers_with_kwok() -> Vec<String> {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    let values: Value = drmesh::yaml::from_str(&text).expect("values.yaml parses");
    let mut writers: Vec<String> =
        serde_json::from_value(values["admissionPolicies"]["productPods"]["statusWriters"].clone())
            .expect("productPods.statusWriters is a list of names");
    writers.push(KWOK.to_string());
    writers
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    repo().join("charts/drmesh")
}

/// A binary built by tests/e2e/cluster/build.sh (helm, kstatus, kubectl, ...).
pub fn tool(name: &str) -> PathBuf {
    harness::kubectl_path().with_file_name(name)
}

/// Panics with the command's output unless it succeeded; returns its stdout.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` with `input` on stdin.
pub fn with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// helm against the local cluster, with its caches in a temporary home.
pub fn helm(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join("drmesh-e2e-helm");
    Command::new(tool("helm"))
        .args(args)
        .env("KUBECONFIG", harness::kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm")
}

/// kubectl as the admin (or `--context`/`--as` given in `args`), with `input` on stdin.
pub fn kubectl_stdin(args: &[&str], input: &str) -> Output {
    with_stdin(
        Command::new(harness::kubectl_path()).arg("--kubeconfig").arg(harness::kubeconfig_path()).args(args),
        input,
    )
}

/// `helm template` of the chart with `values` (YAML) and extra arguments.
pub fn render(release: &str, namespace: &str, values: &str, extra: &[&str]) -> String {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("values file");
    std::fs::write(file.path(), values).expect("write values");
    let chart = chart_dir();
    let path = file.path().to_string_lossy().into_owned();
    let mut args = vec!["template", release, chart.to_str().expect("utf-8 path"), "-n", namespace, "-f", &path];
    args.extend_from_slice(extra);
    ok("helm template", helm(&args))
}

/// The documents of a multi-document YAML stream, as JSON (empty documents skipped).
pub fn documents(yaml: &str) -> Vec<Value> {
    drmesh::yaml::documents(yaml).map(|doc| doc.expect("valid YAML")).filter(|v: &Value| !v.is_null()).collect()
}

/// The first record of the API server's audit log (and its rotated files, newest first)
/// whose line contains `needle` and which `pred` accepts, waiting up to `timeout`.
pub async fn audit_record(needle: &str, timeout: std::time::Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let log = harness::audit_log_path();
    let dir = log.parent().expect("logs dir").to_path_buf();
    let what = format!("an audit record with {needle:?} in {}", dir.display());
    harness::eventually(&what, timeout, || {
        // The current log, then the rotated ones (audit-TIMESTAMP.log), newest first.
        let mut files = vec![log.clone()];
        let mut rotated: Vec<PathBuf> =
            std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
        rotated.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("audit-")));
        rotated.sort();
        files.extend(rotated.into_iter().rev());
        // Substring filter before parsing: the audit log of a shared cluster is large.
        let found = files.iter().find_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            text.lines()
                .filter(|l| l.contains(needle))
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| pred(e))
        });
        async move { found }
    })
    .await
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.ends_with(name_suffix)))
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix} rendered"))
}

/// The venv with checkov and kubernetes-validate (created on first use).
fn python_tools() -> PathBuf {
    let script = repo().join("tests/e2e/packaging/tools.sh");
    PathBuf::from(ok("tools.sh python", Command::new(script).arg("python").output().expect("tools.sh")).trim())
}

/// The ids of the checkov checks that fail on `file` (offline, all checks, no skips).
fn checkov_failures(file: &Path) -> BTreeSet<String> {
    let out = Command::new(python_tools().join("checkov"))
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--soft-fail",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "-f",
        ])
        .arg(file)
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .output()
        .expect("run checkov");
    let text = ok("checkov", out);
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("checkov output is not JSON ({e}): {text}"));
    let reports = if report.is_array() { report.as_array().cloned().unwrap_or_default() } else { vec![report] };
    let passed: u64 = reports.iter().filter_map(|r| r.pointer("/summary/passed").and_then(Value::as_u64)).sum();
    assert!(passed > 20, "checkov checked almost nothing on {}: {text}", file.display());
    reports
        .iter()
        .filter_map(|r| r.pointer("/results/failed_checks").and_then(Value::as_array))
        .flatten()
        .map(|c| c["check_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The skips of `target` ("chart" or "children") in charts/drmesh/checkov-skips.yaml.
fn checkov_skips(target: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(chart_dir().join("checkov-skips.yaml")).expect("checkov-skips.yaml");
    let all: BTreeMap<String, BTreeMap<String, String>> =
        drmesh::yaml::from_str(&text).expect("checkov-skips.yaml parses");
    let skips = all.get(target).cloned().unwrap_or_default();
    for (id, reason) in &skips {
        assert!(reason.split_whitespace().count() >= 8, "{target}/{id}: a skip needs a real justification");
    }
    skips
}

/// checkov fails exactly the justified skips, and kubernetes-validate (strict, the local
/// cluster's Kubernetes version) accepts every object.
pub fn judge_manifests(yaml: &str, target: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{target}.yaml"));
    std::fs::write(&file, yaml).expect("write manifests");

    let failed = checkov_failures(&file);
    let skips: BTreeSet<String> = checkov_skips(target).into_keys().collect();
    let unexpected: Vec<_> = failed.difference(&skips).collect();
    let stale: Vec<_> = skips.difference(&failed).collect();
    assert!(
        unexpected.is_empty(),
        "checkov fails {unexpected:?} on the {target} (fix, or justify in checkov-skips.yaml)"
    );
    assert!(stale.is_empty(), "skips {stale:?} of {target} in checkov-skips.yaml are no longer needed: remove them");

    let out = Command::new(python_tools().join("kubernetes-validate"))
        .args(["--strict", "--no-warn", "-k", "1.35.0"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate");
    let text = ok(&format!("kubernetes-validate --strict on the {target}"), out);
    let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert!(passed >= documents(yaml).len().saturating_sub(1), "kubernetes-validate checked too little:\n{text}");
}

const DEFAULTS: &str = "{}";

#[test]
fn the_chart_lints_and_renders_a_hardened_operator_with_least_privilege_rbac() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("utf-8");
    ok("helm lint --strict", helm(&["lint", "--strict", chart]));
    ok(
        "helm lint --strict (every option on)",
        helm(&[
            "lint",
            "--strict",
            chart,
            "--set",
            "metrics.serviceMonitor.enabled=true,podAntiAffinity=hard,image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ]),
    );

    let text = render("drmesh", "drmesh-system", DEFAULTS, &[]);
    let docs = documents(&text);
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.contains(kind), "no {kind} rendered: {kinds:?}");
    }
    assert!(!kinds.contains("ServiceMonitor"), "the ServiceMonitor is optional (off by default)");
    // The chart's objects are Helm's: none may pass as one of the operator's children.
    for d in &docs {
        assert_ne!(
            d.pointer("/metadata/labels/app.kubernetes.io~1managed-by"),
            Some(&json!("drmesh")),
            "{}",
            d["metadata"]["name"]
        );
    }

    // RBAC: no wildcard, no Secret list/watch, no escalate/bind/impersonate, and a comment
    // with the reason above every rule.
    for role in docs.iter().filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role") {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                for v in rule[field].as_array().into_iter().flatten() {
                    assert!(
                        !v.as_str().unwrap_or_default().contains('*'),
                        "wildcard in {}: {rule}",
                        role["metadata"]["name"]
                    );
                }
            }
            let verbs: Vec<&str> = rule["verbs"].as_array().expect("verbs").iter().filter_map(Value::as_str).collect();
            for forbidden in ["escalate", "bind", "impersonate", "deletecollection"] {
                assert!(!verbs.contains(&forbidden), "{forbidden} granted: {rule}");
            }
            if rule["resources"].as_array().expect("resources").contains(&json!("secrets")) {
                assert_eq!(verbs, ["get"], "Secrets: get only (no list/watch): {rule}");
            }
        }
    }
    let mut rules = 0;
    for doc in text.split("\n---").filter(|d| d.contains("\nkind: ClusterRole\n") || d.contains("\nkind: Role\n")) {
        let lines: Vec<&str> = doc.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.trim_start().starts_with("- apiGroups:")) {
            assert!(
                lines[i - 1].trim_start().starts_with('#'),
                "RBAC rule without a comment giving its reason:\n{line}"
            );
            rules += 1;
        }
    }
    assert!(rules >= 15, "only {rules} commented RBAC rules found");

    // The operator's Deployment: HA, restricted, probed, sized, spread.
    let deployment = find(&docs, "Deployment", "drmesh");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "drmesh");
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    for arg in ["run", "--http-addr=0.0.0.0:8080", "--leader-election", "--lease-name=drmesh-leader", "--log-json"] {
        assert!(args.contains(&arg), "operator args lack {arg}: {args:?}");
    }
    let env: Vec<&str> = container["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
    assert!(
        container["resources"]["limits"]["memory"].is_string() && container["resources"]["requests"]["cpu"].is_string()
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    assert_eq!(find(&docs, "PodDisruptionBudget", "drmesh")["spec"]["minAvailable"], 1);
    let np = find(&docs, "NetworkPolicy", "drmesh");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));

    // The policies decide on the chart's ServiceAccount's username.
    let managed = find(&docs, "ValidatingAdmissionPolicy", "managed-objects").to_string();
    assert!(managed.contains("system:serviceaccount:drmesh-system:drmesh"), "{managed}");
    let lease_role = find(&docs, "Role", "leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "drmesh-system");

    // Options render; wrong values are refused with a message.
    let with_monitor =
        documents(&render("drmesh", "drmesh-system", "metrics: {serviceMonitor: {enabled: true}}\n", &[]));
    assert!(with_monitor.iter().any(|d| d["kind"] == "ServiceMonitor"));
    let with_rules = documents(&render("drmesh", "drmesh-system", "metrics: {prometheusRule: {enabled: true}}\n", &[]));
    let rules = with_rules.iter().find(|d| d["kind"] == "PrometheusRule").expect("PrometheusRule").to_string();
    for metric in [
        "drmesh_clock_offset_seconds",
        "drmesh_leader",
        "drmesh_foreign_access_objects",
        "drmesh_audit_write_failures_total",
        "drmesh_audit_sink_failing",
        "drmesh_reconcile_failures_total",
        "drmesh_grants_next_expiry_timestamp_seconds",
    ] {
        assert!(rules.contains(metric), "the alerts read {metric}: {rules}");
    }
    // Every metric an alert reads is one the operator exports (a renamed metric would
    // leave its alert silent forever).
    let exported = drmesh::telemetry::Metrics::default();
    exported.failed("dataproduct", "probe");
    let exported = exported.encode();
    let names: std::collections::BTreeSet<&str> =
        rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("drmesh_")).collect();
    for name in &names {
        assert!(
            exported.lines().any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{"))),
            "alert reads {name}, which the operator does not export:\n{exported}"
        );
    }
    for alert in [
        "DrmeshNotLeading",
        "DrmeshOperatorDown",
        "DrmeshAuditWriteFailing",
        "DrmeshReconcileErrors",
        "DrmeshGrantExpiringSoon",
    ] {
        assert!(rules.contains(&format!("\"alert\":\"{alert}\"")), "no alert {alert}: {rules}");
    }
    let refuse = documents(&render("drmesh", "drmesh-system", "operator: {foreignAccess: refuse}\n", &[]));
    assert!(find(&refuse, "Deployment", "drmesh").to_string().contains("--foreign-access=refuse"));
    let warn =
        documents(&render("drmesh", "drmesh-system", "admissionPolicies: {validationActions: [Warn, Audit]}\n", &[]));
    assert_eq!(
        find(&warn, "ValidatingAdmissionPolicyBinding", "managed-objects")["spec"]["validationActions"],
        json!(["Warn", "Audit"])
    );
    for (values, expected) in [
        ("operator: {concurency: 2}\n", "additional properties 'concurency' not allowed"),
        ("admissionPolicies: {validationActions: [Deny, Warn]}\n", "Deny and Warn cannot be combined"),
        ("replicaCount: 2\noperator: {leaderElection: {enabled: false}}\n", "needs operator.leaderElection.enabled"),
        ("admissionPolicies: {validationActions: [Block]}\n", "validationActions"),
        ("operator: {foreignAccess: ignore}\n", "foreignAccess"),
    ] {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("values");
        std::fs::write(file.path(), values).expect("write");
        let out = helm(&["template", "x", chart, "-f", file.path().to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "values {values:?} accepted or wrong message: {stderr}"
        );
    }
}

#[test]
fn checkov_and_strict_schema_validation_pass_on_the_chart_and_rendered_children() {
    let text = render("drmesh", "drmesh-system", "metrics: {serviceMonitor: {enabled: true}}\n", &["--include-crds"]);
    // kubernetes-validate has no schema for the ServiceMonitor CRD: it is checked by checkov only.
    judge_manifests(&text, "chart");

    // What the operator generates, rendered offline by `drmesh render` for the reference mesh.
    let samples = repo().join("config/samples");
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["render", "--now", "2026-01-01T00:00:00Z", "-f"])
        .arg(&samples)
        .output()
        .expect("drmesh render");
    let rendered = ok("drmesh render -f config/samples", out);
    assert!(documents(&rendered).len() >= 30, "drmesh render produced too little:\n{rendered}");
    judge_manifests(&rendered, "children");
}

#[test]
fn the_local_audit_policy_is_the_production_one() {
    let rules = |path: &Path| -> Value {
        let v: Value =
            drmesh::yaml::from_str(&std::fs::read_to_string(path).expect("audit policy")).expect("audit policy parses");
        json!({"omitStages": v["omitStages"], "rules": v["rules"]})
    };
    let production = rules(&repo().join("config/audit/audit-policy.yaml"));
    assert_eq!(rules(&repo().join("tests/e2e/cluster/audit-policy.yaml")), production);
    // services/proxy: metadata only, before any rule that could log bodies.
    let rules = production["rules"].as_array().expect("rules");
    let proxy = rules.iter().position(|r| r.to_string().contains("services/proxy")).expect("a services/proxy rule");
    assert_eq!(rules[proxy]["level"], "Metadata");
    let drmesh = rules.iter().position(|r| r.to_string().contains("drmesh.io")).expect("a drmesh.io rule");
    assert_eq!(rules[drmesh]["level"], "RequestResponse");
    assert!(proxy < drmesh);
    // The audit head's saves with their body, before the rule that logs ConfigMaps (and
    // Secrets) without; no rule logs a Secret's body.
    let head = rules.iter().position(|r| r.to_string().contains("drmesh-audit-head")).expect("a rule for the head");
    assert_eq!(rules[head]["level"], "Request");
    assert_eq!(
        rules[head]["resources"],
        json!([{"group": "", "resources": ["configmaps"], "resourceNames": ["drmesh-audit-head"]}])
    );
    let configmaps = rules.iter().position(|r| r.to_string().contains("\"secrets\"")).expect("the Secrets rule");
    assert!(head < configmaps, "the head's rule comes first");
    for rule in rules.iter().filter(|r| r.to_string().contains("secrets")) {
        assert_eq!(rule["level"], "Metadata", "{rule}");
    }
}

#[tokio::test]
async fn the_api_server_audits_drmesh_changes_and_service_proxy_reads() {
    let ns = harness::TestNamespace::create("pkg-audit").await;
    crate::admission::install_crds(&ns.client).await;
    let name = harness::unique_name("audited");
    ok(
        "create a DataSource",
        kubectl_stdin(
            &["apply", "--server-side", "-f", "-"],
            &format!(
                "apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {{name: {name}, namespace: {}}}\nspec:\n  classification: Public\n  type: Http\n  endpoint: {{cidr: 10.50.0.0/24, port: 443}}\n  credentialsSecretRef: {{name: none}}\n",
                ns.name
            ),
        ),
    );
    // mallory tries to read a product through the service proxy (refused, still audited).
    let path = format!("/api/v1/namespaces/{}/services/{name}:8080/proxy/", ns.name);
    let out = harness::kubectl_as("mallory", &["get", "--raw", &path]);
    assert!(!out.status.success());

    let (n, s) = (ns.name.clone(), name.clone());
    let change = audit_record(&ns.name, harness::TIMEOUT, move |e| {
        e["objectRef"]["namespace"] == n.as_str()
            && e["objectRef"]["name"] == s.as_str()
            && e["objectRef"]["resource"] == "datasources"
            && e["verb"] == "patch"
    })
    .await;
    assert_eq!(change["level"], "RequestResponse");
    assert!(change["requestObject"].is_object(), "the change's body is recorded");
    let n = ns.name.clone();
    let proxy = audit_record(&ns.name, harness::TIMEOUT, move |e| {
        e["objectRef"]["namespace"] == n.as_str() && e["objectRef"]["subresource"] == "proxy"
    })
    .await;
    assert_eq!(proxy["level"], "Metadata");
    assert_eq!(proxy["user"]["username"], "mallory");
    assert_eq!(proxy["objectRef"]["resource"], "services");
    assert!(proxy.get("responseObject").is_none(), "never the product's data");

    // The audit chain's head, saved as the operator saves it (a merge patch of the
    // drmesh-audit-head ConfigMap): the value is in the request body this log keeps.
    let head = format!("7:{}", "ab".repeat(32));
    ok(
        "create the head ConfigMap",
        harness::kubectl(&["-n", &ns.name, "create", "configmap", "drmesh-audit-head", "--from-literal=head=0:0"]),
    );
    ok(
        "save a head",
        harness::kubectl(&[
            "-n",
            &ns.name,
            "patch",
            "configmap",
            "drmesh-audit-head",
            "--type=merge",
            "-p",
            &json!({"data": {"head": head}}).to_string(),
        ]),
    );
    let n = ns.name.clone();
    let saved = audit_record(&head, harness::TIMEOUT, move |e| {
        e["objectRef"]["namespace"] == n.as_str()
            && e["objectRef"]["name"] == "drmesh-audit-head"
            && e["verb"] == "patch"
            && e["stage"] == "ResponseComplete"
    })
    .await;
    assert_eq!(saved["level"], "Request");
    assert!(saved.get("responseObject").is_none(), "the request, not the response");
    // Other ConfigMaps and Secrets: never their bodies.
    ok(
        "another ConfigMap",
        harness::kubectl(&["-n", &ns.name, "create", "configmap", "contract", "--from-literal=head=not-logged"]),
    );
    ok(
        "patch it",
        harness::kubectl(&[
            "-n",
            &ns.name,
            "patch",
            "configmap",
            "contract",
            "--type=merge",
            "-p",
            r#"{"data":{"x":"not-logged"}}"#,
        ]),
    );
    let n = ns.name.clone();
    let other = audit_record(&ns.name, harness::TIMEOUT, move |e| {
        e["objectRef"]["namespace"] == n.as_str() && e["objectRef"]["name"] == "contract" && e["verb"] == "patch"
    })
    .await;
    assert_eq!(other["level"], "Metadata");
    assert!(other.get("requestObject").is_none());
}
