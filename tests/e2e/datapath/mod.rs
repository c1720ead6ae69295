//! The data path, on the real node (`DRMESH_REAL_NODE=1 make cluster-up`): products run
//! the reference product image in real pods, kube-router enforces their NetworkPolicies,
//! and every access decision is proven with a real connection made from inside a
//! product's pod (`product probe URL`). Without a real node these tests say so and pass,
//! unless DRMESH_REAL_NODE=1 asks for one (then its absence is a failure).

use std::time::{Duration, Instant};

use drmesh::api::AccessPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::harness::{self, TIMEOUT, TestNamespace, apply};

mod deletion;
pub(crate) mod matrix;

/// The reference product image (images/product), imported into the node by node.sh.
pub(crate) const PRODUCT_IMAGE: &str = "drmesh.local/product:1";
/// How long a probe waits for an answer before it calls the connection refused.
pub(crate) const PROBE_TIMEOUT: &str = "2s";

pub(crate) fn real_node() -> bool {
    let out = harness::kubectl(&["get", "nodes", "-l", harness::REAL_NODE_SELECTOR, "-o", "name"]);
    assert!(out.status.success(), "kubectl get nodes: {}", String::from_utf8_lossy(&out.stderr));
    if !out.stdout.is_empty() {
        return true;
    }
    assert!(
        std::env::var("DRMESH_REAL_NODE").as_deref() != Ok("1"),
        "DRMESH_REAL_NODE=1 but the cluster has no real node: run `DRMESH_REAL_NODE=1 make cluster-up`"
    );
    eprintln!("skipped: no real node in the cluster (DRMESH_REAL_NODE=1 make cluster-up adds one)");
    false
}

/// What one probe from inside a product's pod saw.
#[derive(Debug)]
pub(crate) struct Probe {
    pub answered: bool,
    pub output: String,
}

/// `kubectl exec -n NS deploy/NAME -- product probe URL`.
pub(crate) fn probe(ns: &str, deployment: &str, url: &str) -> Probe {
    let target = format!("deploy/{deployment}");
    // PROBE_TIMEOUT comes from the product's env (product_yaml).
    let out = harness::kubectl(&["exec", "-n", ns, &target, "--", "product", "probe", url]);
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // A failed exec (no pod, API error) is neither an answer nor a refusal.
    assert!(
        out.status.success() || output.contains("no answer after"),
        "kubectl exec into {ns}/{deployment} failed: {output}"
    );
    Probe { answered: out.status.success(), output }
}

/// Polls until a probe answers (policies take a moment to reach the node's iptables).
pub(crate) async fn eventually_answers(ns: &str, deployment: &str, url: &str) -> Probe {
    let what = format!("{ns}/{deployment} to reach {url}");
    harness::eventually(&what, TIMEOUT, || {
        let p = probe(ns, deployment, url);
        async move { p.answered.then_some(p) }
    })
    .await
}

pub(crate) fn assert_refused(ns: &str, deployment: &str, url: &str) {
    let p = probe(ns, deployment, url);
    assert!(!p.answered, "{ns}/{deployment} reached {url} but must not: {}", p.output);
    // Dropped by the network, not refused by the application: no HTTP answer at all.
    assert!(!p.output.contains("HTTP "), "{ns}/{deployment} -> {url}: {}", p.output);
}

/// Waits until the product's Deployment has finished its rollout and only its current
/// pods are left: a probe run by `kubectl exec deploy/NAME` may otherwise land in a pod
/// being replaced (a product first rolls out without the credentials of a source that
/// is not yet Ready, then again with them; the CI run caught an exec into the stopped
/// container of the first pod).
pub(crate) async fn wait_available(ns: &TestNamespace, name: &str) {
    let done = |d: Option<&Deployment>| {
        let Some(d) = d else { return false };
        let (Some(spec), Some(status)) = (d.spec.as_ref(), d.status.as_ref()) else { return false };
        let want = spec.replicas.unwrap_or(1);
        status.observed_generation >= d.metadata.generation
            && status.updated_replicas == Some(want)
            && status.replicas == Some(want)
            && status.available_replicas == Some(want)
    };
    harness::wait_for(&ns.api::<Deployment>(), name, Duration::from_secs(180), done).await;
    let selector = format!("{}={name}", drmesh::mesh::labels::DATA_PRODUCT);
    let pods = ns.api::<k8s_openapi::api::core::v1::Pod>();
    harness::eventually(&format!("{}/{name}: only its current pods", ns.name), Duration::from_secs(180), || {
        let pods = pods.clone();
        let selector = selector.clone();
        async move {
            let list = pods.list(&kube::api::ListParams::default().labels(&selector)).await.ok()?;
            list.items.iter().all(|p| p.metadata.deletion_timestamp.is_none()).then_some(())
        }
    })
    .await;
}

pub(crate) fn product_yaml(ns: &str, name: &str, inputs: &str) -> String {
    format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: {name}, namespace: {ns}}}
spec:
  classification: Internal
  inputs: {inputs}
  runtime:
    image: {PRODUCT_IMAGE}
    env:
      - {{name: PRODUCT_NAME, value: {ns}/{name}}}
      - {{name: PRODUCT_PORTS, value: "8080,9090"}}
      - {{name: PROBE_TIMEOUT, value: {PROBE_TIMEOUT}}}
  outputPorts:
    - {{name: http, port: 8080, protocol: HTTP}}
    - {{name: admin, port: 9090, protocol: HTTP}}
"#
    )
}

pub(crate) fn grant_yaml(ns: &str, consumer_ns: &str, expires_at: &str) -> String {
    format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: reader, namespace: {ns}}}
spec:
  dataProduct: feed
  ports: [http]
  subjects: [{{kind: DataProduct, namespace: {consumer_ns}, name: reader}}]
  expiresAt: "{expires_at}"
"#
    )
}

/// A whole second `d` from now, as RFC 3339, and as an instant of this process's clock.
pub(crate) fn whole_second_in(d: Duration) -> (String, Instant) {
    let now = jiff::Timestamp::now();
    let at = jiff::Timestamp::from_second(now.as_second() + d.as_secs() as i64 + 1).expect("time");
    let wait = (at - now).total(jiff::Unit::Millisecond).expect("span") as u64;
    (at.to_string(), Instant::now() + Duration::from_millis(wait))
}

/// `feed` in `producer`, granted on `http` to `reader` in `consumer`; `intruder` in
/// `outsider` asks for it without a grant. Proves: reader gets HTTP 200 from feed on the
/// granted port, and no answer on the other one; intruder gets no answer on either.
/// Returns feed's granted URL.
pub(crate) async fn prove_a_grant(
    producer: &TestNamespace,
    consumer: &TestNamespace,
    outsider: &TestNamespace,
) -> String {
    let (p, c, o) = (&producer.name, &consumer.name, &outsider.name);
    let feed_input = format!("[{{dataProduct: {{namespace: {p}, name: feed}}, ports: [http]}}]");
    let (expires_at, _) = whole_second_in(Duration::from_secs(600));
    apply(
        &[
            product_yaml(p, "feed", "[]"),
            product_yaml(c, "reader", &feed_input),
            product_yaml(o, "intruder", &feed_input),
            grant_yaml(p, c, &expires_at),
        ]
        .join("---\n"),
    );
    for (ns, name) in [(producer, "feed"), (consumer, "reader"), (outsider, "intruder")] {
        wait_available(ns, name).await;
    }
    let http = format!("http://feed.{p}.svc.cluster.local:8080/");
    let admin = format!("http://feed.{p}.svc.cluster.local:9090/");
    let answer = eventually_answers(c, "reader", &http).await;
    assert!(answer.output.contains("HTTP 200") && answer.output.contains(&format!("{p}/feed")), "{answer:?}");
    // The port outside the grant, and a product without a grant, get no answer.
    assert_refused(c, "reader", &admin);
    assert_refused(o, "intruder", &http);
    assert_refused(o, "intruder", &admin);
    http
}

#[tokio::test]
async fn a_grant_opens_exactly_its_port_to_its_consumer_until_it_expires() {
    if !real_node() {
        return;
    }
    let labels = [("drmesh.io/clearance", "Internal")];
    let producer = TestNamespace::create_on_real_node("dp-prod", &labels).await;
    let consumer = TestNamespace::create_on_real_node("dp-cons", &labels).await;
    let outsider = TestNamespace::create_on_real_node("dp-out", &labels).await;
    let http = prove_a_grant(&producer, &consumer, &outsider).await;
    let c = &consumer.name;

    // Expiry: a grant moved to expire in a few seconds closes within 1 s of expiresAt.
    let (soon, at) = whole_second_in(Duration::from_secs(8));
    let patch = json!({"spec": {"expiresAt": soon}});
    producer
        .api::<AccessPolicy>()
        .patch("reader", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch expiresAt");
    let before = probe(c, "reader", &http);
    assert!(before.answered, "the grant still runs until {soon}: {before:?}");
    tokio::time::sleep_until((at + Duration::from_secs(1)).into()).await;
    let after = probe(c, "reader", &http);
    assert!(!after.answered, "expired at {soon}, yet reader still connects 1 s later: {}", after.output);
}

/// A test host behind the real node (`cluster.sh testhost`), serving HTTP on `ports`.
fn test_host(index: u32, ports: &str) -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/cluster/cluster.sh");
    let out = std::process::Command::new(script)
        .args(["testhost", &index.to_string(), ports])
        .output()
        .expect("cluster.sh testhost");
    assert!(out.status.success(), "cluster.sh testhost: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_product_reaches_only_dns_its_granted_inputs_and_its_sources() {
    if !real_node() {
        return;
    }
    let source_host = test_host(1, "5432,8080");
    let labels = [("drmesh.io/clearance", "Internal")];
    let producer = TestNamespace::create_on_real_node("dp-src", &labels).await;
    let consumer = TestNamespace::create_on_real_node("dp-egress", &labels).await;
    let (p, c) = (&producer.name, &consumer.name);
    let inputs = format!("[{{dataSource: db}}, {{dataProduct: {{namespace: {p}, name: feed}}, ports: [http]}}]");
    let (expires_at, _) = whole_second_in(Duration::from_secs(600));
    apply(
        &[
            product_yaml(p, "feed", "[]"),
            product_yaml(p, "other", "[]"),
            format!(
                r#"
apiVersion: v1
kind: Secret
metadata: {{name: db-credentials, namespace: {c}, labels: {{drmesh.io/credentials: "true"}}}}
stringData: {{password: test}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: db, namespace: {c}}}
spec:
  classification: Internal
  type: Postgres
  endpoint: {{cidr: {source_host}/32, port: 5432}}
  credentialsSecretRef: {{name: db-credentials}}
"#
            ),
            product_yaml(c, "reader", &inputs),
            grant_yaml(p, c, &expires_at),
        ]
        .join("---\n"),
    );
    for (ns, name) in [(&producer, "feed"), (&producer, "other"), (&consumer, "reader")] {
        wait_available(ns, name).await;
    }

    // Allowed: its granted input, its source's endpoint, and names through DNS.
    let feed = format!("http://feed.{p}.svc.cluster.local:8080/");
    eventually_answers(c, "reader", &feed).await;
    let source = format!("http://{source_host}:5432/");
    let answer = eventually_answers(c, "reader", &source).await;
    assert!(answer.output.contains("testhost-1"), "{answer:?}");
    // Everything else: another port of the source's host, another product of the
    // producer, the API server, DNS servers on another port.
    assert_refused(c, "reader", &format!("http://{source_host}:8080/"));
    assert_refused(c, "reader", &format!("http://other.{p}.svc.cluster.local:8080/"));
    assert_refused(c, "reader", "https://kubernetes.default.svc.cluster.local:443/");
    assert_refused(c, "reader", "http://kube-dns.kube-system.svc.cluster.local:8080/health");
    // And a product without the source does not reach its host.
    assert_refused(p, "feed", &source);
}

#[tokio::test]
async fn a_deleted_grant_refuses_new_connections_within_a_second() {
    if !real_node() {
        return;
    }
    let labels = [("drmesh.io/clearance", "Internal")];
    let producer = TestNamespace::create_on_real_node("dp-del", &labels).await;
    let consumer = TestNamespace::create_on_real_node("dp-delc", &labels).await;
    let (p, c) = (&producer.name, &consumer.name);
    let feed_input = format!("[{{dataProduct: {{namespace: {p}, name: feed}}, ports: [http]}}]");
    let (expires_at, _) = whole_second_in(Duration::from_secs(600));
    apply(
        &[product_yaml(p, "feed", "[]"), product_yaml(c, "reader", &feed_input), grant_yaml(p, c, &expires_at)]
            .join("---\n"),
    );
    for (ns, name) in [(&producer, "feed"), (&consumer, "reader")] {
        wait_available(ns, name).await;
    }
    let http = format!("http://feed.{p}.svc.cluster.local:8080/");
    eventually_answers(c, "reader", &http).await;

    producer.api::<AccessPolicy>().delete("reader", &Default::default()).await.expect("delete grant");
    harness::wait_deleted(&producer.api::<AccessPolicy>(), "reader", TIMEOUT).await;
    let deleted = Instant::now();
    tokio::time::sleep_until((deleted + Duration::from_secs(1)).into()).await;
    let after = probe(c, "reader", &http);
    assert!(!after.answered, "the grant was deleted 1 s ago, yet reader still connects: {}", after.output);
}

/// The API server's address as the `default/kubernetes` EndpointSlice publishes it: the
/// operator (`--api-server-cidrs=auto`) admits it on the ports granted to people.
pub(crate) fn api_server_address() -> String {
    let out = harness::kubectl(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-n",
        "default",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]}",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A person's read through the API server's service proxy: (succeeded, output).
pub(crate) fn read_as(person: &str, path: &str) -> (bool, String) {
    let out = harness::kubectl_as(person, &["get", "--raw", path, "--request-timeout=15s"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Waits until the network drops the API server's connection to `path` for the cluster
/// admin, whom RBAC never stops, so only the network can (policies take a moment to
/// reach the node's iptables); then checks that it stays dropped.
async fn proxy_dropped(what: &str, path: &str) {
    harness::eventually(what, TIMEOUT, || {
        let (read, output) = read_as("admin", path);
        async move { (!read && !output.contains("Forbidden")).then_some(()) }
    })
    .await;
    let (read, output) = read_as("admin", path);
    assert!(!read, "{what}: read again: {output}");
}

#[tokio::test]
async fn people_read_through_the_api_server_proxy_once_the_proxy_may_reach_the_product() {
    if !real_node() {
        return;
    }
    let producer = TestNamespace::create_on_real_node("dp-people", &[("drmesh.io/clearance", "Internal")]).await;
    let p = &producer.name;
    let (expires_at, _) = whole_second_in(Duration::from_secs(600));
    apply(
        &[
            product_yaml(p, "feed", "[]"),
            product_yaml(p, "quiet", "[]"),
            format!(
                r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: officers, namespace: {p}}}
spec:
  dataProduct: feed
  ports: [http]
  subjects: [{{kind: Group, name: cnc-officers}}]
  purpose: end-to-end test of the people path
  expiresAt: "{expires_at}"
"#
            ),
        ]
        .join("---\n"),
    );
    wait_available(&producer, "feed").await;
    wait_available(&producer, "quiet").await;
    let path = |product: &str, port: u16| format!("/api/v1/namespaces/{p}/services/{product}:{port}/proxy/");

    // O11: the grant's NetworkPolicy admits the API server's own address on the granted
    // port, so the proxy's connection reaches the pod and alice reads.
    let data = harness::eventually("alice reads feed through the proxy", TIMEOUT, || {
        let (read, output) = read_as("alice", &path("feed", 8080));
        async move { read.then_some(output) }
    })
    .await;
    assert!(data.contains(&format!("{p}/feed")), "alice got: {data}");
    let grant: serde_json::Value = serde_json::from_slice(
        &harness::kubectl(&["get", "networkpolicy", "drmesh-grant-officers", "-n", p, "-o", "json"]).stdout,
    )
    .expect("the grant's NetworkPolicy");
    assert_eq!(
        grant["spec"]["ingress"],
        json!([{"from": [{"ipBlock": {"cidr": format!("{}/32", api_server_address())}}],
                "ports": [{"port": 8080, "protocol": "TCP"}]}]),
        "the narrowest rule: the API server's address, on the granted port only"
    );
    // RBAC lets nobody else in.
    for person in ["bob", "mallory"] {
        let (read, output) = read_as(person, &path("feed", 8080));
        assert!(!read && output.contains("Forbidden"), "{person}: {output}");
    }
    // The network lets the proxy in on the granted port only, and only to the granted
    // product: the admin, whom RBAC does not stop, gets nothing from the admin port or
    // from a product nobody was granted.
    proxy_dropped("the admin port stays closed to the proxy", &path("feed", 9090)).await;
    proxy_dropped("an ungranted product stays closed to the proxy", &path("quiet", 8080)).await;

    // Every read is in the API server's audit log, with who and what.
    let reads = harness::eventually("audit records of the proxy reads", TIMEOUT, || {
        let log = std::fs::read_to_string(harness::audit_log_path()).unwrap_or_default();
        let records: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["objectRef"]["namespace"] == p.as_str()
                    && e["objectRef"]["subresource"] == "proxy"
                    && e["stage"] == "ResponseComplete"
            })
            .collect();
        let people = ["alice", "bob", "mallory"];
        async move { people.iter().all(|u| records.iter().any(|e| e["user"]["username"] == *u)).then_some(records) }
    })
    .await;
    assert!(
        reads.iter().any(|e| e["user"]["username"] == "alice" && e["responseStatus"]["code"] == 200),
        "no audited successful read by alice: {reads:#?}"
    );

    // Once the grant is gone, RBAC refuses alice and the network rule goes with it. (The
    // API server may keep an established connection to the pod alive: conntrack lets it
    // through until it closes; the security model says so, O11.)
    producer.api::<AccessPolicy>().delete("officers", &Default::default()).await.expect("delete grant");
    harness::wait_deleted(&producer.api::<NetworkPolicy>(), "drmesh-grant-officers", TIMEOUT).await;
    let (read, output) = read_as("alice", &path("feed", 8080));
    assert!(!read && output.contains("Forbidden"), "alice after the grant's deletion: {output}");
}
