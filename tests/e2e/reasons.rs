//! One test per status reason that the other end-to-end tests do not reach: the reason is
//! reported, nothing unsafe is acted on meanwhile (no workload, no grant children), and
//! fixing the declaration converges without anything else.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{self, TIMEOUT, TestNamespace};

/// Waits until the object's Ready condition carries `reason` (for its current generation).
async fn wait_reason(kind: &str, ns: &str, name: &str, reason: &str) -> Value {
    harness::eventually(&format!("{kind} {ns}/{name} to report {reason}"), TIMEOUT, || {
        let obj = harness::kubectl_json(&["get", kind, name, "-n", ns, "-o", "json"]);
        let current = obj["status"]["observedGeneration"] == obj["metadata"]["generation"];
        let found = current && harness::ready_of(&obj).is_some_and(|(_, r)| r == reason);
        async move { found.then_some(obj) }
    })
    .await
}

/// Whether the object exists; a kubectl error other than NotFound fails the test.
fn exists(kind: &str, ns: &str, name: &str) -> bool {
    let out = harness::kubectl(&["get", kind, name, "-n", ns, "-o", "name", "--ignore-not-found"]);
    assert!(out.status.success(), "kubectl get {kind} {ns}/{name}: {}", String::from_utf8_lossy(&out.stderr));
    !out.stdout.is_empty()
}

/// A Restricted domain with a Restricted product `feed` serving http.
async fn producer(prefix: &str) -> TestNamespace {
    let ns = TestNamespace::create_with_labels(prefix, &[("drmesh.io/clearance", "Restricted")]).await;
    harness::apply_text(&product_yaml(&ns.name, "feed", "Restricted", ""));
    ns
}

fn product_yaml(ns: &str, name: &str, classification: &str, inputs: &str) -> String {
    format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataProduct\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec:\n  classification: {classification}\n  inputs: [{inputs}]\n  runtime: {{image: registry.example/{name}:1.0}}\n  \
         outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]\n"
    )
}

/// A grant on `product` to a Group (cleared, and the grant approved by the EXAMPLE
/// approvers: each version is signed, as a reviewed fix would be), with the given extra
/// spec lines.
fn policy_yaml(ns: &str, product: &str, extra: &str) -> String {
    harness::ensure_sample_mesh_policy();
    harness::clear_group(&format!("reasons-{ns}"), "Restricted");
    let text = format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: AccessPolicy\nmetadata: {{name: grant, namespace: {ns}}}\n\
         spec:\n  dataProduct: {product}\n  subjects: [{{kind: Group, name: reasons-{ns}}}]\n{extra}"
    );
    harness::approved_by_examples(&text, &[1, 2])
}

fn grant_children_exist(ns: &str) -> bool {
    ["role", "rolebinding", "networkpolicy"].iter().any(|k| exists(k, ns, "drmesh-grant-grant"))
}

const PURPOSE: &str = "  purpose: End-to-end test of the status reasons.\n";
const EXPIRY: &str = "  expiresAt: \"2030-01-01T00:00:00Z\"\n";

#[tokio::test]
async fn a_product_above_its_domain_clearance_does_not_run_until_the_domain_is_cleared() {
    let ns = TestNamespace::create_with_labels("e2e-nsclear", &[("drmesh.io/clearance", "Internal")]).await;
    harness::apply_text(&product_yaml(&ns.name, "secret", "Restricted", ""));
    wait_reason("dataproduct", &ns.name, "secret", "NamespaceClearanceTooLow").await;
    assert!(!exists("deployment", &ns.name, "secret"), "a product above its domain's clearance runs");
    assert!(
        exists("networkpolicy", &ns.name, "secret-isolation"),
        "isolation exists even for a product that may not run"
    );

    let out = harness::kubectl(&["label", "namespace", &ns.name, "drmesh.io/clearance=Restricted", "--overwrite"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_reason("dataproduct", &ns.name, "secret", "Ready").await;
    assert!(exists("deployment", &ns.name, "secret"));
}

/// A grant refused for `reason` has no children; `fixed` (the same grant, corrected) is granted.
async fn refused_until_fixed(ns: &str, product: &str, broken: &str, reason: &str, fixed: &str) {
    harness::apply_text(&policy_yaml(ns, product, broken));
    wait_reason("accesspolicy", ns, "grant", reason).await;
    assert!(!grant_children_exist(ns), "a grant refused for {reason} has children");
    harness::apply_text(&policy_yaml(ns, product, fixed));
    wait_reason("accesspolicy", ns, "grant", "Granted").await;
    assert!(exists("rolebinding", ns, "drmesh-grant-grant"));
}

#[tokio::test]
async fn a_restricted_grant_without_purpose_grants_nothing_until_it_has_one() {
    let ns = producer("e2e-purpose").await;
    refused_until_fixed(&ns.name, "feed", EXPIRY, "MissingPurpose", &format!("{EXPIRY}{PURPOSE}")).await;
}

#[tokio::test]
async fn a_restricted_grant_without_expiry_grants_nothing_until_it_has_one() {
    let ns = producer("e2e-expiry").await;
    refused_until_fixed(&ns.name, "feed", PURPOSE, "MissingExpiry", &format!("{PURPOSE}{EXPIRY}")).await;
}

#[tokio::test]
async fn a_grant_on_an_unknown_product_grants_nothing_until_the_product_exists() {
    let ns = TestNamespace::create_with_labels("e2e-noproduct", &[("drmesh.io/clearance", "Restricted")]).await;
    let both = format!("{PURPOSE}{EXPIRY}");
    harness::apply_text(&policy_yaml(&ns.name, "ghost", &both));
    wait_reason("accesspolicy", &ns.name, "grant", "DataProductNotFound").await;
    assert!(!grant_children_exist(&ns.name), "a grant on no product has children");
    harness::apply_text(&product_yaml(&ns.name, "ghost", "Restricted", ""));
    wait_reason("accesspolicy", &ns.name, "grant", "Granted").await;
    assert!(exists("rolebinding", &ns.name, "drmesh-grant-grant"));
}

#[tokio::test]
async fn a_grant_on_an_unknown_port_grants_nothing_until_the_port_is_fixed() {
    let ns = producer("e2e-noport").await;
    let (broken, fixed) =
        (format!("{PURPOSE}{EXPIRY}  ports: [grpc]\n"), format!("{PURPOSE}{EXPIRY}  ports: [http]\n"));
    refused_until_fixed(&ns.name, "feed", &broken, "PortNotFound", &fixed).await;
    let role = harness::kubectl_json(&["get", "role", "drmesh-grant-grant", "-n", &ns.name, "-o", "json"]);
    let names: Vec<&str> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["resourceNames"].as_array().into_iter().flatten().filter_map(Value::as_str))
        .collect();
    assert!(names.contains(&"feed:8080") && names.contains(&"feed:http"), "{names:?}");
}

#[tokio::test]
async fn a_missing_input_is_pending_until_it_is_declared() {
    let ns = TestNamespace::create_with_labels("e2e-noinput", &[("drmesh.io/clearance", "Restricted")]).await;
    harness::apply_text(&product_yaml(&ns.name, "reader", "Internal", "{dataSource: later}"));
    let product = wait_reason("dataproduct", &ns.name, "reader", "InputNotFound").await;
    assert_eq!(product["status"]["inputs"][0]["state"], "Pending", "{product}");
    // No credentials and no egress for a source that does not exist.
    assert!(!exists("rolebinding", &ns.name, "drmesh-source-later"));

    let n = &ns.name;
    harness::apply_text(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: later-credentials, namespace: {n}, labels: {{drmesh.io/credentials: \"true\"}}}}\nstringData: {{p: x}}\n---\n\
         apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {{name: later, namespace: {n}}}\n\
         spec: {{classification: Internal, type: Postgres, endpoint: {{cidr: 10.80.0.0/24, port: 5432}}, credentialsSecretRef: {{name: later-credentials}}}}\n"
    ));
    wait_reason("dataproduct", n, "reader", "Ready").await;
    harness::eventually("the source's credentials binding", Duration::from_secs(30), || {
        let bound = exists("rolebinding", n, "drmesh-source-later");
        async move { bound.then_some(()) }
    })
    .await;
}
