//! Durable or refused: the operator applies a grant only once its audit record is written;
//! when the audit sink fails it stops widening access and goes on narrowing it. Played
//! with the chart's operator (its ServiceAccount, leader election) whose audit log is on
//! a full disk (`/dev/full`).

use drmesh::api::{AccessPolicy, DataProduct};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use serde_json::Value;

use super::rbac::{apply, product, ready, source};
use super::release::{CONVERGE, ONE_OPERATOR, Operator, Release};
use crate::harness::{self, TestNamespace};

/// A grant of `feed` to the product `reader` of `consumer`, until `expires_at`.
fn grant(ns: &str, name: &str, consumer: &str, expires_at: &str) -> String {
    format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  dataProduct: feed
  subjects: [{{kind: DataProduct, namespace: {consumer}, name: reader}}]
  purpose: e2e proof that grants wait for their audit record
  expiresAt: "{expires_at}"
"#
    )
}

fn reason(policy: Option<&AccessPolicy>) -> Option<String> {
    let v = serde_json::to_value(policy?).ok()?;
    let conditions = v.pointer("/status/conditions")?.as_array()?.clone();
    conditions.iter().find(|c| c["type"] == "Granted").and_then(|c| c["reason"].as_str().map(String::from))
}

#[tokio::test]
async fn a_failing_audit_sink_blocks_widening_and_not_narrowing() {
    let _turn = ONE_OPERATOR.lock().await;
    let mut release = Release::new("pkg-sink").await;
    let producer =
        TestNamespace::create_with_labels("pkg-sink-prod", &release.fenced(&[("drmesh.io/clearance", "Restricted")]))
            .await;
    let consumer =
        TestNamespace::create_with_labels("pkg-sink-cons", &release.fenced(&[("drmesh.io/clearance", "Restricted")]))
            .await;
    release.fence();
    release.install();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = release.kubeconfig(dir.path());
    let (p, c) = (producer.name.as_str(), consumer.name.as_str());

    // A working operator grants `expiring`, which ends in 45 s.
    let mut working = Operator::start(&kubeconfig, &release.namespace.name, &format!("{}-ok", release.id), dir.path());
    working.wait_leading().await;
    apply(&source(p, "db"));
    apply(&product(p, "feed", "{dataSource: db}"));
    apply(&product(c, "reader", &format!("{{dataProduct: {{namespace: {p}, name: feed}}}}")));
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(45);
    apply(&grant(p, "expiring", c, &expires.to_string()));
    harness::wait_for(&producer.api::<AccessPolicy>(), "expiring", CONVERGE, ready).await;
    harness::wait_for(&consumer.api::<DataProduct>(), "reader", CONVERGE, ready).await;
    let bindings = producer.api::<RoleBinding>();
    assert!(bindings.get_opt("drmesh-grant-expiring").await.expect("get").is_some(), "granted");
    drop(working);

    // The same operator, its audit log on a full disk.
    let mut failing = Operator::start_with(
        &kubeconfig,
        &release.namespace.name,
        &format!("{}-full", release.id),
        dir.path(),
        &["--audit-log", "/dev/full"],
    );
    failing.wait_leading().await;
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    apply(&grant(p, "refused", c, &later.to_string()));
    let policies = producer.api::<AccessPolicy>();
    harness::wait_for(&policies, "refused", CONVERGE, |p: Option<&AccessPolicy>| {
        reason(p).as_deref() == Some("AuditUnavailable")
    })
    .await;
    assert!(bindings.get_opt("drmesh-grant-refused").await.expect("get").is_none(), "no RoleBinding for it");
    let policies_np = producer.api::<NetworkPolicy>();
    assert!(policies_np.get_opt("drmesh-grant-refused").await.expect("get").is_none(), "no NetworkPolicy for it");
    let status = serde_json::to_value(policies.get("refused").await.expect("get")).expect("json");
    let granted = status.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let message = granted.iter().find(|c| c["type"] == "Granted").map(|c| c["message"].to_string()).unwrap_or_default();
    assert!(message.contains("audit record"), "the condition says why: {message}");
    assert_eq!(failing.metric("drmesh_audit_sink_failing"), Some(1.0), "the metric the alert reads");
    assert!(!failing.is_ready(), "/readyz says the audit sink fails");

    // Narrowing goes on: `expiring` is revoked at its expiry although nothing can be recorded.
    harness::wait_for(&bindings, "drmesh-grant-expiring", CONVERGE, |b: Option<&RoleBinding>| b.is_none()).await;
    harness::wait_for(&policies_np, "drmesh-grant-expiring", CONVERGE, |n: Option<&NetworkPolicy>| n.is_none()).await;
    harness::wait_for(&policies, "expiring", CONVERGE, |p: Option<&AccessPolicy>| {
        reason(p).as_deref() == Some("Expired")
    })
    .await;
    assert!(bindings.get_opt("drmesh-grant-refused").await.expect("get").is_none(), "still refused");
}
