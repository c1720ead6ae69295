//! The operator against the real control plane (started by `tests/e2e/with-operator.sh`):
//! the reference mesh converges, real RBAC and an independent NetworkPolicy analyzer
//! agree with the grants, and expiry, clearance changes, grant deletion and drift are
//! handled end to end. Each test builds its own small mesh in its own namespaces.

use std::time::{Duration, Instant};

use drmesh::api::{AccessPolicy, DataProduct, DataSource};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{self, TIMEOUT, TestNamespace, apply};

/// The Ready condition of any drmesh object: (status, reason).
pub(crate) fn ready<K: serde::Serialize>(obj: &K) -> Option<(String, String)> {
    let v = serde_json::to_value(obj).ok()?;
    let conditions = v.pointer("/status/conditions")?.as_array()?.clone();
    let c = conditions.into_iter().find(|c| c["type"] == "Ready")?;
    Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
}

pub(crate) fn is_ready<K: serde::Serialize>(obj: Option<&K>) -> bool {
    obj.and_then(ready).is_some_and(|(s, _)| s == "True")
}

pub(crate) fn has_reason<K: serde::Serialize>(reason: &'static str) -> impl Fn(Option<&K>) -> bool {
    move |obj| obj.and_then(ready).is_some_and(|(_, r)| r == reason)
}

/// A producer domain with a source and a product, and a consumer domain reading it
/// through a grant that expires at `expires_at`.
struct Mesh {
    producer: TestNamespace,
    consumer: TestNamespace,
}

impl Mesh {
    async fn new(prefix: &str, consumer_clearance: &str) -> Self {
        let producer = TestNamespace::create_with_labels(
            &format!("{prefix}-prod"),
            &[("drmesh.io/clearance", "Restricted"), ("pod-security.kubernetes.io/enforce", "restricted")],
        )
        .await;
        let consumer = TestNamespace::create_with_labels(
            &format!("{prefix}-cons"),
            &[("drmesh.io/clearance", consumer_clearance)],
        )
        .await;
        let (p, c) = (&producer.name, &consumer.name);
        apply(&format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: db-credentials, namespace: {p}, labels: {{drmesh.io/credentials: "true"}}}}
stringData: {{password: test}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: db, namespace: {p}}}
spec:
  classification: Restricted
  type: Postgres
  endpoint: {{host: db.example, cidr: 10.30.0.0/24, port: 5432}}
  credentialsSecretRef: {{name: db-credentials}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: feed, namespace: {p}}}
spec:
  classification: Restricted
  owners: [{{kind: Group, name: feed-owners}}]
  inputs: [{{dataSource: db}}]
  runtime: {{image: registry.example/feed:1.0, replicas: 1}}
  outputPorts:
    - {{name: http, port: 8080, protocol: HTTP}}
    - {{name: admin, port: 9090, protocol: HTTP}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: reader, namespace: {c}}}
spec:
  classification: Restricted
  inputs: [{{dataProduct: {{namespace: {p}, name: feed}}}}]
  runtime: {{image: registry.example/reader:1.0, replicas: 1}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
        ));
        Self { producer, consumer }
    }

    fn grant(&self, expires_at: &str) {
        self.grant_with(expires_at, true);
    }

    /// The grant on feed to the officers' group, and to the consumer's reader when
    /// `to_reader`.
    fn grant_with(&self, expires_at: &str, to_reader: bool) {
        let (p, c) = (&self.producer.name, &self.consumer.name);
        // Its officers are cleared and the grant approved (need to know is tested apart).
        harness::ensure_sample_mesh_policy();
        harness::clear_group(&format!("e2e-officers-{p}"), "Restricted");
        let reader = if to_reader {
            format!("\n    - {{kind: DataProduct, namespace: {c}, name: reader}}")
        } else {
            String::new()
        };
        apply(&harness::approved_by_examples(
            &format!(
                r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: grant, namespace: {p}}}
spec:
  dataProduct: feed
  ports: [http]
  subjects:{reader}
    - {{kind: Group, name: e2e-officers-{p}}}
  purpose: end-to-end test of a time-bounded grant
  expiresAt: "{expires_at}"
"#
            ),
            &[1, 2],
        ));
    }

    fn products_in(&self, ns: &TestNamespace) -> Api<DataProduct> {
        ns.api()
    }

    async fn wait_granted(&self) {
        harness::wait_for(&self.producer.api::<AccessPolicy>(), "grant", TIMEOUT, is_ready).await;
        harness::wait_for(&self.products_in(&self.consumer), "reader", TIMEOUT, is_ready).await;
        harness::wait_for(
            &self.producer.api::<RoleBinding>(),
            "drmesh-grant-grant",
            TIMEOUT,
            |b: Option<&RoleBinding>| b.is_some(),
        )
        .await;
        harness::wait_for(
            &self.producer.api::<NetworkPolicy>(),
            "drmesh-grant-grant",
            TIMEOUT,
            |n: Option<&NetworkPolicy>| n.is_some(),
        )
        .await;
    }

    /// Egress rules of the reader's isolation policy that lead to the producer.
    async fn reader_egress_to_producer(&self) -> usize {
        let np = self.consumer.api::<NetworkPolicy>().get("reader-isolation").await.expect("isolation policy");
        let v = serde_json::to_value(np).expect("json");
        v.pointer("/spec/egress")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter(|r| {
                        r.pointer("/to/0/namespaceSelector/matchLabels/kubernetes.io~1metadata.name")
                            == Some(&json!(self.producer.name))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    fn can_i(&self, group_member: bool, resource: &str) -> bool {
        let group = format!("e2e-officers-{}", self.producer.name);
        let mut args = vec!["auth", "can-i", "get", resource, "-n", &self.producer.name, "--as", "someone"];
        if group_member {
            args.extend(["--as-group", group.as_str()]);
        }
        let out = harness::kubectl(&args);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }
}

pub(crate) fn rfc3339_in(d: Duration) -> (String, jiff::Timestamp) {
    let at = jiff::Timestamp::now() + d;
    let at = jiff::Timestamp::from_second(at.as_second() + 1).expect("time"); // whole seconds
    (at.to_string(), at)
}

pub(crate) fn audit_records() -> Vec<Value> {
    let path = std::env::var("DRMESH_E2E_AUDIT_LOG").expect("run through tests/e2e/with-operator.sh");
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub(crate) async fn audit_record(what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    harness::eventually(what, TIMEOUT, || {
        let found = audit_records().into_iter().find(|r| matches(r));
        async move { found }
    })
    .await
}

#[tokio::test]
async fn a_grant_gives_exactly_the_granted_access_and_expires_on_time() {
    let mesh = Mesh::new("e2e-expiry", "Restricted").await;
    let (expires, expiry) = rfc3339_in(Duration::from_secs(8));
    mesh.grant(&expires);
    mesh.wait_granted().await;

    // Real RBAC: the granted group may proxy to the granted port only; others may not.
    let proxy = |port: &str, member: bool| {
        let group = format!("e2e-officers-{}", mesh.producer.name);
        let target = format!("services/feed:{port}");
        let mut args = vec![
            "auth",
            "can-i",
            "get",
            target.as_str(),
            "--subresource=proxy",
            "-n",
            &mesh.producer.name,
            "--as",
            "someone",
        ];
        if member {
            args.extend(["--as-group", group.as_str()]);
        }
        String::from_utf8_lossy(&harness::kubectl(&args).stdout).trim() == "yes"
    };
    assert!(proxy("8080", true), "the granted group can use the service proxy on the granted port");
    assert!(!proxy("9090", true), "ports outside the grant stay closed");
    assert!(!proxy("8080", false), "people outside the grant are denied");
    assert!(mesh.can_i(true, "dataproducts.drmesh.io/feed"));
    assert!(!mesh.can_i(false, "dataproducts.drmesh.io/feed"));
    assert_eq!(mesh.reader_egress_to_producer().await, 1, "the consumer may reach the producer");

    // At expiry the RoleBinding and the ingress go, the consumer loses its egress.
    let bindings = mesh.producer.api::<RoleBinding>();
    harness::wait_deleted(&bindings, "drmesh-grant-grant", Duration::from_secs(30)).await;
    let late = jiff::Timestamp::now().duration_since(expiry);
    assert!(late < jiff::SignedDuration::from_secs(2), "revoked {late} after expiresAt");
    harness::wait_deleted(&mesh.producer.api::<NetworkPolicy>(), "drmesh-grant-grant", TIMEOUT).await;
    harness::wait_for(&mesh.producer.api::<AccessPolicy>(), "grant", TIMEOUT, has_reason::<AccessPolicy>("Expired"))
        .await;
    harness::wait_for(
        &mesh.products_in(&mesh.consumer),
        "reader",
        TIMEOUT,
        has_reason::<DataProduct>("InputNotGranted"),
    )
    .await;
    assert_eq!(mesh.reader_egress_to_producer().await, 0);
    assert!(!mesh.can_i(true, "dataproducts.drmesh.io/feed"));

    let ns = mesh.producer.name.clone();
    let granted = audit_record("the grant's audit record", |r| {
        r["decision"] == "Granted" && r["policy"]["namespace"] == ns.as_str()
    })
    .await;
    assert_eq!(granted["purpose"], "end-to-end test of a time-bounded grant");
    assert_eq!(granted["classification"], "Restricted");
    audit_record("the expiry's audit record", |r| {
        r["decision"] == "Expired" && r["policy"]["namespace"] == ns.as_str()
    })
    .await;
}

#[tokio::test]
async fn lowering_the_consumer_clearance_revokes_its_access() {
    let mesh = Mesh::new("e2e-clearance", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;

    let namespaces: Api<Namespace> = Api::all(mesh.consumer.client.clone());
    let patch = json!({"metadata": {"labels": {"drmesh.io/clearance": "Internal"}}});
    namespaces.patch(&mesh.consumer.name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("relabel");

    // The DataProduct subject is denied: its ingress goes; people keep their RBAC, and
    // the API server (through which they read) stays the only peer admitted.
    let api_server = format!("{}/32", crate::datapath::api_server_address());
    harness::wait_for(
        &mesh.producer.api::<NetworkPolicy>(),
        "drmesh-grant-grant",
        TIMEOUT,
        |np: Option<&NetworkPolicy>| {
            let ingress = np.and_then(|np| np.spec.as_ref()).and_then(|s| s.ingress.clone()).unwrap_or_default();
            let peers: Vec<_> = ingress.iter().flat_map(|r| r.from.clone().unwrap_or_default()).collect();
            !peers.is_empty()
                && peers.iter().all(|p| {
                    p.ip_block.as_ref().is_some_and(|b| b.cidr == api_server)
                        && p.pod_selector.is_none()
                        && p.namespace_selector.is_none()
                })
        },
    )
    .await;
    let policy = harness::wait_for(
        &mesh.producer.api::<AccessPolicy>(),
        "grant",
        TIMEOUT,
        has_reason::<AccessPolicy>("ClearanceTooLow"),
    )
    .await
    .expect("policy");
    let denied = policy.status.expect("status").denied_subjects;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].reason, "ClearanceTooLow");
    harness::wait_for(&mesh.products_in(&mesh.consumer), "reader", TIMEOUT, |p: Option<&DataProduct>| {
        p.and_then(ready).is_some_and(|(s, _)| s == "False")
    })
    .await;
    assert_eq!(mesh.reader_egress_to_producer().await, 0);
    assert!(mesh.can_i(true, "dataproducts.drmesh.io/feed"), "the group subject is unaffected");
}

#[tokio::test]
async fn deleting_a_grant_removes_access_and_is_audited() {
    let mesh = Mesh::new("e2e-revoke", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    mesh.producer.api::<AccessPolicy>().delete("grant", &DeleteParams::default()).await.expect("delete grant");
    harness::wait_deleted(&mesh.producer.api::<RoleBinding>(), "drmesh-grant-grant", TIMEOUT).await;
    harness::wait_deleted(&mesh.producer.api::<NetworkPolicy>(), "drmesh-grant-grant", TIMEOUT).await;
    harness::wait_for(
        &mesh.products_in(&mesh.consumer),
        "reader",
        TIMEOUT,
        has_reason::<DataProduct>("InputNotGranted"),
    )
    .await;
    assert_eq!(mesh.reader_egress_to_producer().await, 0);
    let ns = mesh.producer.name.clone();
    audit_record("the revocation's audit record", |r| {
        r["decision"] == "Revoked" && r["policy"]["namespace"] == ns.as_str()
    })
    .await;
}

#[tokio::test]
async fn hand_edits_and_deletions_of_children_are_reverted() {
    let mesh = Mesh::new("e2e-drift", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;

    // A deleted isolation policy comes back.
    let policies = mesh.producer.api::<NetworkPolicy>();
    let before = policies.get("feed-isolation").await.expect("isolation").uid();
    policies.delete("feed-isolation", &DeleteParams::default()).await.expect("delete");
    harness::wait_for(&policies, "feed-isolation", TIMEOUT, |n: Option<&NetworkPolicy>| {
        n.is_some_and(|n| n.uid() != before)
    })
    .await;

    // A widened grant Role is narrowed again.
    let roles = mesh.producer.api::<Role>();
    let original = roles.get("drmesh-grant-grant").await.expect("role").rules;
    let widen = json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]});
    roles.patch("drmesh-grant-grant", &PatchParams::default(), &Patch::Merge(&widen)).await.expect("widen");
    harness::wait_for(&roles, "drmesh-grant-grant", TIMEOUT, |r: Option<&Role>| r.is_some_and(|r| r.rules == original))
        .await;

    // A deleted Deployment is recreated.
    let deployments = mesh.producer.api::<Deployment>();
    let before = deployments.get("feed").await.expect("deployment").uid();
    deployments.delete("feed", &DeleteParams::default()).await.expect("delete");
    harness::wait_for(&deployments, "feed", TIMEOUT, |d: Option<&Deployment>| d.is_some_and(|d| d.uid() != before))
        .await;
}

#[tokio::test]
async fn a_classification_violation_never_runs_and_is_reported() {
    let mesh = Mesh::new("e2e-violation", "Restricted").await;
    let p = &mesh.producer.name;
    apply(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: leak, namespace: {p}}}
spec:
  classification: Internal
  inputs: [{{dataSource: db}}]
  runtime: {{image: registry.example/leak:1.0}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
    ));
    let products = mesh.producer.api::<DataProduct>();
    let leak = harness::wait_for(&products, "leak", TIMEOUT, has_reason::<DataProduct>("ClassificationViolation"))
        .await
        .expect("leak");
    let stalled = leak.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Stalled").expect("Stalled");
    assert_eq!(format!("{:?}", stalled.status), "True");
    assert!(mesh.producer.api::<Deployment>().get_opt("leak").await.expect("get").is_none(), "no Deployment runs");
    // The isolation policy exists all the same (deny by default).
    assert!(mesh.producer.api::<NetworkPolicy>().get_opt("leak-isolation").await.expect("get").is_some());
    let events: Api<Event> = mesh.producer.api();
    harness::eventually("the Warning Event", TIMEOUT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("ClassificationViolation")
                    && e.involved_object.name.as_deref() == Some("leak")
            })
        }
    })
    .await;
    let ns = p.clone();
    audit_record("the denial's audit record", |r| {
        r["decision"] == "Denied" && r["product"]["namespace"] == ns.as_str() && r["product"]["name"] == "leak"
    })
    .await;
}

#[tokio::test]
async fn a_missing_secret_is_reported_then_converges_and_pods_pass_pod_security() {
    let mesh = Mesh::new("e2e-secret", "Restricted").await;
    let p = &mesh.producer.name;
    apply(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: late, namespace: {p}}}
spec:
  classification: Internal
  type: Http
  endpoint: {{host: api.example, cidr: 10.40.0.0/24, port: 443}}
  credentialsSecretRef: {{name: late-credentials}}
"#
    ));
    let sources = mesh.producer.api::<DataSource>();
    harness::wait_for(&sources, "late", TIMEOUT, has_reason::<DataSource>("SecretNotFound")).await;
    apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: late-credentials, namespace: {p}, labels: {{drmesh.io/credentials: \"true\"}}}}\nstringData: {{token: x}}\n"
    ));
    harness::wait_for(&sources, "late", TIMEOUT, is_ready).await;

    // The producer namespace enforces Pod Security "restricted": the product's pods run.
    let feed = harness::wait_for(&mesh.producer.api::<DataProduct>(), "feed", TIMEOUT, is_ready).await.expect("feed");
    let owner = feed.meta().uid.clone();
    assert_eq!(feed.status.and_then(|s| s.available_replicas), Some(1));
    let deployment = mesh.producer.api::<Deployment>().get("feed").await.expect("deployment");
    assert_eq!(deployment.owner_references().first().map(|o| Some(o.uid.clone())), Some(owner));
}

#[tokio::test]
async fn reference_mesh_converges_and_an_independent_analyzer_agrees_with_the_grants() {
    let samples = format!("{}/config/samples", env!("CARGO_MANIFEST_DIR"));
    // The mesh, then its DataSources' dummy credentials (apart: no GitOps example syncs
    // them), once their namespaces exist.
    let credentials = format!("{}/config/sample-credentials", env!("CARGO_MANIFEST_DIR"));
    for dir in [&samples, &credentials] {
        let out = harness::kubectl(&["apply", "--server-side", "-f", dir]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let client = harness::admin().await;
    let started = Instant::now();
    for doc in drmesh::manifest::load_documents(std::path::Path::new(&samples)).expect("samples") {
        let (ns, name) = (doc.namespace().unwrap_or_default().to_string(), doc.name().to_string());
        match doc.kind() {
            "DataSource" => drop(
                harness::wait_for(&Api::<DataSource>::namespaced(client.clone(), &ns), &name, TIMEOUT, is_ready).await,
            ),
            "DataProduct" => drop(
                harness::wait_for(&Api::<DataProduct>::namespaced(client.clone(), &ns), &name, TIMEOUT, is_ready).await,
            ),
            "AccessPolicy" => drop(
                harness::wait_for(&Api::<AccessPolicy>::namespaced(client.clone(), &ns), &name, TIMEOUT, is_ready)
                    .await,
            ),
            _ => {}
        }
    }
    eprintln!("reference mesh Ready after {:?}", started.elapsed());

    // Real RBAC for the test people, with their own certificates.
    let can = |who: &str, ns: &str, target: &str| {
        let out = harness::kubectl_as(who, &["auth", "can-i", "get", target, "--subresource=proxy", "-n", ns]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can("alice", "police", "services/incident-feed:8080"), "cnc-officers are granted the incident feed");
    assert!(can("alice", "cnc", "services/situation-picture:8080"));
    assert!(!can("bob", "police", "services/incident-feed:8080"), "transport analysts are not");
    assert!(can("bob", "transport", "services/transit-disruptions:8080"));
    for (ns, svc) in [("police", "incident-feed"), ("cnc", "situation-picture"), ("transport", "transit-disruptions")] {
        assert!(!can("mallory", ns, &format!("services/{svc}:8080")), "mallory has no grant on {svc}");
    }

    // np-guard's analyzer judges the NetworkPolicies and workloads of the reference
    // domains, exported from the live cluster (other tests' namespaces come and go).
    let domains = ["police", "gendarmerie", "sdis", "transport", "sante", "cnc"];
    let conns = harness::np_guard_connections(&domains);
    let from_to = |src: &str, dst: &str| {
        conns.iter().any(|c| {
            c["src"].as_str().is_some_and(|s| s.starts_with(src))
                && c["dst"].as_str().is_some_and(|d| d.starts_with(dst))
        })
    };
    assert!(
        from_to("cnc/situation-picture", "police/incident-feed"),
        "the situation picture reaches the incident feed"
    );
    assert!(from_to("cnc/situation-picture", "transport/transit-disruptions"));
    assert!(!from_to("transport/", "police/incident-feed"), "transport pods cannot reach the incident feed");
    let into_feed: Vec<&Value> =
        conns.iter().filter(|c| c["dst"].as_str().is_some_and(|d| d.starts_with("police/incident-feed"))).collect();
    // People (cnc-officers) read through the API server's proxy: its address is the one
    // other source.
    let api_server = crate::datapath::api_server_address();
    assert!(
        into_feed.iter().all(|c| c["src"]
            .as_str()
            .is_some_and(|s| s.starts_with("cnc/situation-picture") || s == format!("{api_server}-{api_server}"))),
        "only the situation picture and the API server reach the incident feed: {into_feed:?}"
    );
}

/// HTTP status of `url` (0 when nothing answers).
fn http_status(url: &str) -> u16 {
    std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1", url])
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_operator_that_cannot_list_is_live_not_ready_and_stops_on_sigterm() {
    // mallory may list nothing drmesh watches: the caches never sync.
    let kubeconfig = std::env::temp_dir().join(format!("{}-kubeconfig", harness::unique_name("mallory")));
    let out = harness::kubectl(&["config", "view", "--raw", "--minify", "--flatten", "--context", "mallory"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&kubeconfig, &out.stdout).expect("kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = kubeconfig.with_extension("log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["run", "--http-addr", &format!("127.0.0.1:{port}"), "--identity", "mallory-run"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start drmesh");
    harness::eventually("/healthz to answer", TIMEOUT, || {
        let up = http_status(&format!("{base}/healthz")) == 200;
        async move { up.then_some(()) }
    })
    .await;
    // Its watches are refused (and retried): it stays live but not ready.
    harness::eventually("a refused watch in the log", TIMEOUT, || {
        let refused = std::fs::read_to_string(&log_path).unwrap_or_default().contains("forbidden");
        async move { refused.then_some(()) }
    })
    .await;
    assert_eq!(http_status(&format!("{base}/readyz")), 503, "not ready without synced caches");
    assert_eq!(http_status(&format!("{base}/healthz")), 200, "live while it retries");

    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(term.success());
    let sent = Instant::now();
    let status = harness::eventually("drmesh to exit after SIGTERM", Duration::from_secs(30), || {
        let exited = child.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    let _ = std::fs::remove_file(&kubeconfig);
    let _ = std::fs::remove_file(&log_path);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(sent.elapsed() < Duration::from_secs(25), "shutdown took {:?}", sent.elapsed());
}

/// An operator process of the test's own; killed when dropped.
struct Replica {
    child: std::process::Child,
    metrics: String,
}

fn replica_audit_log(identity: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("drmesh-{identity}-audit.log"))
}

/// The records of an audit log (none if it does not exist yet).
fn records_in(path: &std::path::Path) -> Vec<drmesh::audit::Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()))).collect()
}

/// Grants on a fresh mesh and deletes the grant: a PolicyDeleted record from the leader.
async fn revoke_a_grant(prefix: &str) {
    let mesh = Mesh::new(prefix, "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    mesh.producer.api::<AccessPolicy>().delete("grant", &Default::default()).await.expect("delete the grant");
}

impl Replica {
    fn start(identity: &str, lease_namespace: &str) -> Self {
        // A fresh log per run (the chain goes on in the cluster's head, not in old files).
        let _ = std::fs::remove_file(replica_audit_log(identity));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("drmesh-{identity}.log"))).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_drmesh"))
            .args(["run", "--leader-election", "--lease-name", "e2e-leader", "--lease-namespace", lease_namespace])
            .args(["--identity", identity, "--http-addr", &format!("127.0.0.1:{port}")])
            .args(["--audit-log", &replica_audit_log(identity).to_string_lossy()])
            .env("KUBECONFIG", harness::kubeconfig_path())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start drmesh");
        Self { child, metrics: format!("http://127.0.0.1:{port}/metrics") }
    }

    fn scrape(&self) -> Option<String> {
        let out = std::process::Command::new("curl").args(["-fsS", "--max-time", "1", &self.metrics]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn is_leader(&self) -> Option<bool> {
        self.scrape()?.lines().find(|l| l.starts_with("drmesh_leader ")).map(|l| l.ends_with(" 1"))
    }

    /// The sum of a metric's samples whose line starts with `prefix`.
    fn sum(&self, prefix: &str) -> Option<f64> {
        let text = self.scrape()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn lease_holder(ns: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(harness::admin().await, ns);
    leases.get_opt("e2e-leader").await.ok().flatten()?.spec?.holder_identity
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over_with_one_audit_chain() {
    let ns = TestNamespace::create("e2e-leader").await;
    let a = Replica::start("replica-a", &ns.name);
    harness::eventually("replica-a to lead", TIMEOUT, || {
        let ns = ns.name.clone();
        async move { (lease_holder(&ns).await.as_deref() == Some("replica-a")).then_some(()) }
    })
    .await;
    let b = Replica::start("replica-b", &ns.name);
    harness::eventually("both replicas to report their role", TIMEOUT, || {
        let roles = (a.is_leader(), b.is_leader());
        async move { (roles == (Some(true), Some(false))).then_some(()) }
    })
    .await;
    // The leader records a revocation; the standby writes nothing.
    revoke_a_grant("e2e-chain-a").await;
    let (log_a, log_b) = (replica_audit_log("replica-a"), replica_audit_log("replica-b"));
    let deleted = |path: &std::path::Path, prefix: &str| {
        records_in(path)
            .iter()
            .any(|r| r.event.reason == "PolicyDeleted" && r.event.product.namespace.starts_with(prefix))
    };
    harness::eventually("replica-a to record the revocation", TIMEOUT, || {
        let seen = deleted(&log_a, "e2e-chain-a");
        async move { seen.then_some(()) }
    })
    .await;
    assert!(records_in(&log_b).is_empty(), "a standby writes no audit record");
    // A grant in force, as the head in the cluster lists it for the next leader.
    let kept = Mesh::new("e2e-chain-k", "Restricted").await;
    kept.grant("2030-01-01T00:00:00Z");
    kept.wait_granted().await;
    let kept_policies = kept.producer.api::<AccessPolicy>();
    let uid = kept_policies.get("grant").await.expect("the grant").uid().expect("uid");
    let heads: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(harness::admin().await, &ns.name);
    harness::eventually("the grants in force saved beside the audit head", TIMEOUT, || {
        let (heads, uid) = (heads.clone(), uid.clone());
        async move {
            let map = heads.get_opt(&drmesh::audit_sink::granted_name("drmesh-audit-head")).await.ok().flatten()?;
            drmesh::audit_sink::granted_in(&map).contains_key(&uid).then_some(())
        }
    })
    .await;

    // The standby ran the reconciles on its warm caches with every write fenced off: it
    // found objects in step with what the leader left, and wrote nothing.
    harness::eventually("replica-b to find the leader's objects in step", TIMEOUT, || {
        let in_step = b.sum("drmesh_standby_verifications_total{controller=\"accesspolicy\",outcome=\"in_step\"}");
        async move { in_step.is_some_and(|n| n >= 1.0).then_some(()) }
    })
    .await;
    assert_eq!(b.sum("drmesh_child_writes_total"), Some(0.0), "a standby applies nothing");
    assert_eq!(b.sum("drmesh_reconciles_total"), Some(0.0), "a standby's reconciles are verifications");

    // kill -9 the leader: the standby takes over once the Lease expires. Meanwhile, with
    // no operator leading, the grant is deleted.
    let mut a = a;
    a.child.kill().expect("kill leader");
    let killed = Instant::now();
    kept_policies.delete("grant", &Default::default()).await.expect("delete the grant");
    harness::eventually("replica-b to take over", Duration::from_secs(30), || {
        let ns = ns.name.clone();
        async move { (lease_holder(&ns).await.as_deref() == Some("replica-b")).then_some(()) }
    })
    .await;
    let failover = killed.elapsed();
    assert!(failover < Duration::from_secs(15), "failover took {failover:?}");
    harness::eventually("replica-b to report leading", TIMEOUT, || {
        let leading = b.is_leader();
        async move { (leading == Some(true)).then_some(()) }
    })
    .await;
    eprintln!("leader failover after kill -9: {failover:?}");
    // The new leader records the deletion it did not see happen.
    harness::eventually("replica-b to record the grant deleted while no operator led", TIMEOUT, || {
        let seen = records_in(&log_b).iter().any(|r| {
            r.event.reason == "PolicyDeleted"
                && r.event.policy.as_ref().is_some_and(|p| p.uid == uid)
                && r.event.message.contains("while no operator led")
        });
        async move { seen.then_some(()) }
    })
    .await;

    // The new leader continues the killed one's chain, from the head kept in the cluster.
    revoke_a_grant("e2e-chain-b").await;
    harness::eventually("replica-b to record the revocation", TIMEOUT, || {
        let seen = deleted(&log_b, "e2e-chain-b");
        async move { seen.then_some(()) }
    })
    .await;
    let (written_a, after) = (records_in(&log_a), records_in(&log_b));
    let first_b = after.first().expect("replica-b's records");
    // replica-a may have written a last group it was killed before committing (the head
    // in the cluster not yet saved): those decisions were not applied, and replica-b
    // goes on from the committed head. At most the records after the head it last saved.
    let before: Vec<_> = written_a.iter().filter(|r| r.seq < first_b.seq).cloned().collect();
    let uncommitted = written_a.len() - before.len();
    assert!(uncommitted <= 2, "replica-a's uncommitted tail: {:?}", &written_a[before.len()..]);
    let last_a = before.last().expect("replica-a's committed records");
    assert_eq!(first_b.seq, last_a.seq + 1, "replica-b goes on where replica-a's committed chain stopped");
    assert_eq!(first_b.prev_hash, last_a.hash, "and links to its last committed record");
    let lines: Vec<String> = before.iter().chain(&after).map(|r| serde_json::to_string(r).expect("json")).collect();
    let count = drmesh::audit::verify(lines.join("\n").as_bytes()).expect("one verifiable chain");
    assert_eq!(count as usize, before.len() + after.len());
    // The head in the cluster is the last record written.
    let head = harness::eventually("the head in the cluster to be replica-b's last record", TIMEOUT, || {
        let heads = heads.clone();
        let last = records_in(&log_b).last().map(|r| format!("{}:{}", r.seq, r.hash));
        async move {
            let map = heads.get_opt("drmesh-audit-head").await.ok().flatten()?;
            let head = map.data?.get("head").cloned();
            (head.is_some() && head == last).then_some(head?)
        }
    })
    .await;
    // An auditor checks both replicas' outputs as one chain, against that anchor.
    let verify = |files: &[&std::path::Path]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_drmesh"))
            .args(["audit", "verify"])
            .args(files)
            .args(["--head", &head])
            .output()
            .expect("drmesh audit verify")
    };
    let both = verify(&[&log_a, &log_b]);
    let said = String::from_utf8_lossy(&both.stdout).into_owned() + &String::from_utf8_lossy(&both.stderr);
    assert!(both.status.success(), "one intact chain across the failover:\n{said}");
    // Without the killed leader's part, the chain is cut: the auditor is told.
    let alone = verify(&[&log_b]);
    assert_eq!(alone.status.code(), Some(3), "{}", String::from_utf8_lossy(&alone.stdout));
}

#[tokio::test]
async fn editing_a_granted_policy_rebinds_and_is_audited() {
    let mesh = Mesh::new("e2e-edit", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    let roles = mesh.producer.api::<Role>();
    let bindings = mesh.producer.api::<RoleBinding>();
    let old_binding = bindings.get("drmesh-grant-grant").await.expect("binding").uid();

    // Move the grant from port http to port admin: the Role changes, so the binding is
    // withdrawn and bound again (never the new rules under the old binding).
    let policies = mesh.producer.api::<AccessPolicy>();
    let patch = json!({"spec": {"ports": ["admin"]}});
    policies.patch("grant", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("edit grant");
    let has_port = |port: &'static str| {
        move |r: Option<&Role>| {
            r.is_some_and(|r| {
                r.rules
                    .iter()
                    .flatten()
                    .any(|rule| rule.resource_names.iter().flatten().any(|n| n == &format!("feed:{port}")))
            })
        }
    };
    harness::wait_for(&roles, "drmesh-grant-grant", TIMEOUT, has_port("9090")).await;
    let role = roles.get("drmesh-grant-grant").await.expect("role");
    assert!(!has_port("8080")(Some(&role)), "the old port is gone");
    harness::wait_for(&bindings, "drmesh-grant-grant", TIMEOUT, |b: Option<&RoleBinding>| {
        b.is_some_and(|b| b.uid() != old_binding)
    })
    .await;
    let ns = mesh.producer.name.clone();
    harness::eventually("two Granted records (the grant and its edit)", TIMEOUT, || {
        let n = audit_records()
            .iter()
            .filter(|r| r["decision"] == "Granted" && r["policy"]["namespace"] == ns.as_str())
            .count();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    // The edit's record says what the grant gives now and what it gave before.
    let edit = audit_records()
        .into_iter()
        .rfind(|r| r["decision"] == "Granted" && r["policy"]["namespace"] == ns.as_str())
        .expect("the edit's record");
    let message = edit["message"].as_str().unwrap_or_default();
    assert!(message.contains("access now:") && message.contains("9090/"), "the new access: {message}");
    assert!(!message.contains("8080/"), "the old port is not given now: {message}");
    assert!(message.contains("; before the edit: "), "the access before: {message}");
    // The consumer asked for every port; it now reaches the producer on the admin port only.
    harness::wait_for(&mesh.products_in(&mesh.consumer), "reader", TIMEOUT, is_ready).await;
}

/// Whether every field of `rendered` is in `live` with the same value (the API server
/// adds defaults and server-set fields; the operator sets nothing else).
fn subset(rendered: &Value, live: &Value, path: &str, diffs: &mut Vec<String>) {
    match (rendered, live) {
        (Value::Object(r), Value::Object(l)) => {
            for (k, v) in r {
                match l.get(k) {
                    Some(lv) => subset(v, lv, &format!("{path}.{k}"), diffs),
                    // The API server drops empty lists (`ingress: []` reads back as absent).
                    None if v.as_array().is_some_and(Vec::is_empty) => {}
                    None => diffs.push(format!("{path}.{k} missing on the cluster")),
                }
            }
        }
        (Value::Array(r), Value::Array(l)) if r.len() == l.len() => {
            for (i, (rv, lv)) in r.iter().zip(l).enumerate() {
                subset(rv, lv, &format!("{path}[{i}]"), diffs);
            }
        }
        // Quantities are normalised by the API server (e.g. 0.05 -> 50m).
        (r, l) if r == l => {}
        (r, l) => diffs.push(format!("{path}: rendered {r} but the cluster has {l}")),
    }
}

#[tokio::test]
async fn render_shows_exactly_what_the_operator_creates() {
    let mesh = Mesh::new("e2e-render", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    harness::wait_for(&mesh.producer.api::<DataSource>(), "db", TIMEOUT, is_ready).await;

    // The declarations as the cluster holds them (JSON is YAML), rendered offline.
    let dir = tempfile::tempdir().expect("tempdir");
    let (p, c) = (mesh.producer.name.as_str(), mesh.consumer.name.as_str());
    for (file, args) in [
        ("namespaces.yaml", vec!["get", "namespace", p, c, "-o", "json"]),
        ("producer.yaml", vec!["get", "secrets,datasources,dataproducts,accesspolicies", "-n", p, "-o", "json"]),
        ("consumer.yaml", vec!["get", "datasources,dataproducts,accesspolicies", "-n", c, "-o", "json"]),
        // The security officers' objects decide which people are effective.
        ("people.yaml", vec!["get", "clearances,meshpolicies", "-o", "json"]),
    ] {
        let out = harness::kubectl(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(dir.path().join(file), &out.stdout).expect("write");
    }
    // The operator admits the API server's address (--api-server-cidrs=auto) to products
    // granted to people: render is told the same address.
    let api_server = crate::datapath::api_server_address();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["render", "-o", "json", "--api-server-cidrs", &api_server, "-f"])
        .arg(dir.path())
        .output()
        .expect("drmesh render");
    assert!(out.status.success(), "render: {}", String::from_utf8_lossy(&out.stderr));
    let rendered: Value = serde_json::from_slice(&out.stdout).expect("render json");
    let rendered = rendered["items"].as_array().cloned().unwrap_or_default();
    assert!(rendered.len() >= 10, "rendered {} children", rendered.len());

    // Every rendered child is on the cluster as rendered (owner UIDs are only known there).
    let mut rendered_ids = std::collections::BTreeSet::new();
    for mut child in rendered {
        let (kind, ns, name) = (
            child["kind"].as_str().unwrap_or_default().to_string(),
            child["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
            child["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        );
        if let Some(owners) = child["metadata"]["ownerReferences"].as_array_mut() {
            owners.iter_mut().for_each(|o| drop(o.as_object_mut().map(|o| o.remove("uid"))));
        }
        let out = harness::kubectl(&["get", &kind, &name, "-n", &ns, "-o", "json"]);
        assert!(out.status.success(), "{kind} {ns}/{name} rendered but not on the cluster");
        let live: Value = serde_json::from_slice(&out.stdout).expect("json");
        let mut diffs = Vec::new();
        subset(&child, &live, &format!("{kind}/{name}"), &mut diffs);
        assert!(diffs.is_empty(), "render differs from the cluster: {diffs:#?}");
        rendered_ids.insert(format!("{kind}/{ns}/{name}"));
    }

    // The access review of the live cluster lists the grant as the operator applied it.
    let rows = harness::access_review();
    let group = format!("Group:e2e-officers-{p}");
    let row = rows
        .iter()
        .find(|r| r["namespace"] == p && r["name"] == "feed" && r["subject"] == group.as_str())
        .expect("the grant's row");
    assert_eq!(row["status"], "Granted");
    assert_eq!(row["ports"], json!(["8080/http"]));

    // And the operator created nothing that render does not show.
    for ns in [p, c] {
        let out = harness::kubectl(&[
            "get",
            "deployments,services,serviceaccounts,networkpolicies,roles,rolebindings,configmaps",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/managed-by=drmesh",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
        ]);
        for id in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
            assert!(rendered_ids.contains(id), "{id} exists on the cluster but render does not show it");
        }
    }
}

/// O13: a product that drops an input leaves its former producer's consumer list at once,
/// though nothing in the new product names that producer any more.
#[tokio::test]
async fn a_dropped_input_leaves_the_producers_consumer_list() {
    let mesh = Mesh::new("e2e-drop", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    let (p, c) = (mesh.producer.name.clone(), mesh.consumer.name.clone());
    let consumers = |d: Option<&DataProduct>| {
        d.and_then(|d| d.status.as_ref()).map(|s| s.consumers.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    };
    harness::wait_for(&mesh.products_in(&mesh.producer), "feed", TIMEOUT, |d: Option<&DataProduct>| {
        consumers(d) == Some(vec![format!("{c}/reader")])
    })
    .await;
    let patch = json!({"spec": {"inputs": []}});
    mesh.products_in(&mesh.consumer)
        .patch("reader", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("drop the input");
    // Not the grant's expiry, not a periodic re-plan: the drop itself re-evaluates feed.
    harness::wait_for(&mesh.products_in(&mesh.producer), "feed", Duration::from_secs(10), |d: Option<&DataProduct>| {
        consumers(d) == Some(vec![])
    })
    .await;
    eprintln!("{p}/feed lost {c}/reader as a consumer");
}

/// A DataProduct subject removed from a grant: the edit re-plans the consumer it named
/// (an edge diff of the grant's old and new subjects), whose input turns Denied, and its
/// egress to the producer goes. Not the grant's expiry, not a periodic re-plan.
#[tokio::test]
async fn a_subject_removed_from_a_grant_re_plans_the_consumer_it_named() {
    let mesh = Mesh::new("e2e-subj", "Restricted").await;
    mesh.grant("2030-01-01T00:00:00Z");
    mesh.wait_granted().await;
    let (p, c) = (mesh.producer.name.clone(), mesh.consumer.name.clone());
    let feed_input = move |d: Option<&DataProduct>| {
        d.and_then(|d| d.status.as_ref())
            .and_then(|s| s.inputs.iter().find(|i| i.reference.ends_with("/feed")).map(|i| i.state))
    };
    harness::wait_for(&mesh.products_in(&mesh.consumer), "reader", TIMEOUT, |d: Option<&DataProduct>| {
        feed_input(d) == Some(drmesh::api::InputState::Ready)
    })
    .await;
    // The same grant without the DataProduct subject (approved again: the approvals sign
    // the spec).
    mesh.grant_with("2030-01-01T00:00:00Z", false);
    harness::wait_for(
        &mesh.products_in(&mesh.consumer),
        "reader",
        Duration::from_secs(10),
        |d: Option<&DataProduct>| feed_input(d) == Some(drmesh::api::InputState::Denied),
    )
    .await;
    // The consumer's isolation no longer lets it out to the producer.
    let isolation = mesh.consumer.api::<NetworkPolicy>().get("reader-isolation").await.expect("isolation");
    let egress = serde_json::to_string(&isolation.spec.and_then(|s| s.egress)).expect("json");
    assert!(!egress.contains(&p), "{c}/reader still reaches {p}: {egress}");
}

/// Lending a source's credentials to a product's ServiceAccount is an access decision:
/// recorded when given, and when taken back.
#[tokio::test]
async fn credentials_lent_and_taken_back_are_audited() {
    let mesh = Mesh::new("e2e-cred", "Restricted").await;
    let p = mesh.producer.name.clone();
    let account = format!("ServiceAccount:{p}/feed");
    let seq_of = |reason: &'static str| {
        let account = account.clone();
        move || {
            let seq = audit_records()
                .iter()
                .find(|r| {
                    r["reason"] == reason && r["subjects"].as_array().is_some_and(|s| s.iter().any(|x| x == &account))
                })
                .and_then(|r| r["seq"].as_u64());
            async move { seq }
        }
    };
    let lent = harness::eventually("a CredentialsLent record for feed", TIMEOUT, seq_of("CredentialsLent")).await;
    let record = audit_records().into_iter().find(|r| r["seq"].as_u64() == Some(lent)).expect("the record");
    assert_eq!(record["decision"], "Granted");
    assert_eq!(record["product"]["name"], "db", "the source whose credentials are lent");
    // The product stops reading the source: the credentials are taken back.
    let patch = json!({"spec": {"inputs": null}});
    mesh.producer
        .api::<DataProduct>()
        .patch("feed", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let taken =
        harness::eventually("a CredentialsWithdrawn record for feed", TIMEOUT, seq_of("CredentialsWithdrawn")).await;
    assert!(taken > lent, "taken back after being lent");
}
