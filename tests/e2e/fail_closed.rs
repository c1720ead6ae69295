//! Fail closed, played as the attacker (issue "fail closed everywhere"): each test acts
//! as a test identity (`mallory`, with only the namespaced rights the test gives her,
//! never the cluster admin) who tries to keep or widen access, and checks that drmesh
//! refuses or revokes — with the real API server's RBAC answering `kubectl auth can-i`.
//! The admin only sets the stage (namespaces, clearances, the operator's objects).

use std::time::Duration;

use drmesh::api::{AccessPolicy, ConditionStatus, DataProduct, DataSource, InputState};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::harness::{self, TIMEOUT, TestNamespace, apply};
use crate::operator::{audit_record, has_reason, is_ready, ready, rfc3339_in};

/// The attacker: a person with no cluster rights.
const ATTACKER: &str = "mallory";
/// A finalizer nobody will release (the attacker's).
const FOREIGN_FINALIZER: &str = "example.com/keep-me";

/// Gives `mallory` the namespaced `rules` in `ns` (what a domain's administrator could
/// hand out), and waits until the authorizer answers for the first rule.
async fn let_mallory(ns: &str, rules: Value) {
    apply(
        &serde_json::to_string(&json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "mallory", "namespace": ns},
            "rules": rules,
        }))
        .expect("json"),
    );
    apply(
        &serde_json::to_string(&json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "mallory", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mallory"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": ATTACKER}],
        }))
        .expect("json"),
    );
    harness::eventually("mallory's rights", TIMEOUT, || async {
        let out = harness::kubectl_as(ATTACKER, &["auth", "can-i", "get", "pods", "-n", ns]);
        (out.status.success() || !out.stdout.is_empty()).then_some(())
    })
    .await;
}

/// kubectl as mallory; panics if it fails (the step must be within her rights).
fn as_mallory(args: &[&str], input: Option<&str>) -> String {
    let mut all = vec!["--context", ATTACKER];
    all.extend_from_slice(args);
    let out = match input {
        Some(text) => crate::packaging::kubectl_stdin(&all, text),
        None => harness::kubectl(&all),
    };
    assert!(out.status.success(), "mallory: kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Real RBAC: may `user` in `group` do `verb` on `resource` in `ns`? A kubectl error is
/// a failure of the test, never a "no".
fn can(ns: &str, group: &str, verb: &str, resource: &str, subresource: Option<&str>) -> bool {
    let sub = subresource.map(|s| format!("--subresource={s}"));
    let mut args = vec!["auth", "can-i", verb, resource, "-n", ns, "--as", "someone", "--as-group", group];
    if let Some(sub) = &sub {
        args.push(sub);
    }
    let out = harness::kubectl(&args);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "yes" || answer == "no", "kubectl auth can-i {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    answer == "yes"
}

/// A domain's released source `db` and product `feed` (owned by the group `owners-NS`,
/// reading `db`), at `clearance`.
pub(crate) fn domain_yaml(n: &str, clearance: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: db-credentials, namespace: {n}, labels: {{drmesh.io/credentials: "true"}}}}
stringData: {{password: test}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: db, namespace: {n}}}
spec:
  classification: {clearance}
  type: Postgres
  endpoint: {{cidr: 10.40.0.0/24, port: 5432}}
  credentialsSecretRef: {{name: db-credentials}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: feed, namespace: {n}}}
spec:
  classification: {clearance}
  owners: [{{kind: Group, name: owners-{n}}}]
  inputs: [{{dataSource: db}}]
  runtime: {{image: registry.example/feed:1.0, replicas: 1}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
    )
}

/// A Restricted domain with a released source and a running product `feed`.
async fn domain(prefix: &str, clearance: &str) -> TestNamespace {
    let ns = TestNamespace::create_with_labels(prefix, &[("drmesh.io/clearance", clearance)]).await;
    let n = &ns.name;
    // Its people are cleared (need to know is not what these tests attack).
    harness::ensure_sample_mesh_policy();
    harness::clear_group(&format!("readers-{n}"), "Restricted");
    harness::clear_group(&format!("owners-{n}"), "Restricted");
    apply(&domain_yaml(n, clearance));
    harness::wait_for(&ns.api::<DataProduct>(), "feed", TIMEOUT, is_ready).await;
    ns
}

/// A grant of `feed` to the group `readers-NS` and to the namespace `ns` itself.
fn grant(ns: &str, name: &str, expires_at: &str) {
    // Signed by the EXAMPLE approvers: the two-person rule holds for its people.
    apply(&harness::approved_by_examples(
        &format!(
            r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  dataProduct: feed
  subjects:
    - {{kind: Group, name: readers-{ns}}}
    - {{kind: Namespace, name: {ns}}}
  purpose: end-to-end test of fail-closed grants
  expiresAt: "{expires_at}"
"#
        ),
        &[1, 2],
    ));
}

fn exists<K>() -> impl Fn(Option<&K>) -> bool {
    |o| o.is_some()
}

async fn wait_granted(ns: &TestNamespace, name: &str) {
    harness::wait_for(&ns.api::<AccessPolicy>(), name, TIMEOUT, is_ready).await;
    let child = format!("drmesh-grant-{name}");
    harness::wait_for(&ns.api::<RoleBinding>(), &child, TIMEOUT, exists()).await;
    harness::wait_for(&ns.api::<NetworkPolicy>(), &child, TIMEOUT, exists()).await;
}

/// Removes every finalizer from an object the test left held (so the namespace goes).
fn release(kind: &str, ns: &str, name: &str) {
    let _ =
        harness::kubectl(&["patch", kind, name, "-n", ns, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
}

/// Mallory, allowed to create NetworkPolicies in `ns`, creates `name` letting everything in.
async fn mallory_opens_a_door(ns: &str, name: &str) {
    let_mallory(
        ns,
        json!([{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get"]}]),
    )
    .await;
    let door = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  ingress: [{{}}]\n"
    );
    as_mallory(&["create", "-f", "-"], Some(&door));
}

#[tokio::test]
async fn a_deleted_grant_held_by_a_foreign_finalizer_grants_nothing() {
    let ns = domain("fc-held", "Restricted").await;
    let n = ns.name.as_str();
    let (expires, _) = rfc3339_in(Duration::from_secs(3600));
    grant(n, "held", &expires);
    wait_granted(&ns, "held").await;
    let readers = format!("readers-{n}");
    assert!(can(n, &readers, "get", "services/feed:8080", Some("proxy")), "granted before the attack");

    // Mallory, who may edit and delete grants in her domain, keeps one alive with a finalizer.
    let_mallory(
        n,
        json!([{"apiGroups": ["drmesh.io"], "resources": ["accesspolicies"], "verbs": ["get", "patch", "delete"]}]),
    )
    .await;
    let patch = format!(r#"{{"metadata":{{"finalizers":["{FOREIGN_FINALIZER}"]}}}}"#);
    as_mallory(&["patch", "accesspolicy", "held", "-n", n, "--type=merge", "-p", &patch], None);
    as_mallory(&["delete", "accesspolicy", "held", "-n", n, "--wait=false"], None);

    // The grant is terminating, not gone: its access must be.
    let child = "drmesh-grant-held";
    harness::wait_deleted(&ns.api::<RoleBinding>(), child, TIMEOUT).await;
    harness::wait_deleted(&ns.api::<NetworkPolicy>(), child, TIMEOUT).await;
    assert!(!can(n, &readers, "get", "services/feed:8080", Some("proxy")), "a terminating grant grants nothing");
    let policy = ns.api::<AccessPolicy>().get("held").await.expect("still held by the finalizer");
    assert!(policy.meta().deletion_timestamp.is_some());
    let record = audit_record("the revocation of the terminating grant", |r| {
        r["policy"]["name"] == "held" && r["decision"] == "Revoked" && r["reason"] == "PolicyDeleting"
    })
    .await;
    assert_eq!(record["product"]["name"], "feed");
    release("accesspolicy", n, "held");
}

#[tokio::test]
async fn a_foreign_finalizer_on_a_grant_binding_does_not_outlive_the_expiry() {
    let ns = domain("fc-fin", "Restricted").await;
    let n = ns.name.as_str();
    let (expires, expiry) = rfc3339_in(Duration::from_secs(6));
    grant(n, "brief", &expires);
    wait_granted(&ns, "brief").await;
    let readers = format!("readers-{n}");

    // Mallory may patch RoleBindings and NetworkPolicies of her domain (no admission
    // policy here): she pins the grant's children with finalizers.
    let_mallory(
        n,
        json!([
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "patch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "patch"]},
        ]),
    )
    .await;
    let patch = format!(r#"{{"metadata":{{"finalizers":["{FOREIGN_FINALIZER}"]}}}}"#);
    for kind in ["rolebinding", "networkpolicy"] {
        as_mallory(&["patch", kind, "drmesh-grant-brief", "-n", n, "--type=merge", "-p", &patch], None);
    }
    harness::wait_deleted(&ns.api::<RoleBinding>(), "drmesh-grant-brief", Duration::from_secs(30)).await;
    harness::wait_deleted(&ns.api::<NetworkPolicy>(), "drmesh-grant-brief", Duration::from_secs(30)).await;
    let late = jiff::Timestamp::now().duration_since(expiry);
    assert!(late < jiff::SignedDuration::from_secs(3), "held children gone {late} after expiresAt");
    assert!(!can(n, &readers, "get", "services/feed:8080", Some("proxy")));
}

#[tokio::test]
async fn a_grant_that_cannot_be_parsed_loses_its_access() {
    let ns = domain("fc-parse", "Restricted").await;
    let n = ns.name.as_str();
    let (expires, _) = rfc3339_in(Duration::from_secs(3600));
    grant(n, "garbled", &expires);
    wait_granted(&ns, "garbled").await;

    // Mallory may write the status of grants in her domain: she writes a count the API
    // server's schema accepts (an integer) but no int32 holds, so the operator cannot
    // parse the grant any more.
    let_mallory(n, json!([{"apiGroups": ["drmesh.io"], "resources": ["accesspolicies", "accesspolicies/status"], "verbs": ["get", "patch"]}]))
        .await;
    as_mallory(
        &[
            "patch",
            "accesspolicy",
            "garbled",
            "-n",
            n,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"subjectCount":99999999999}}"#,
        ],
        None,
    );
    harness::wait_deleted(&ns.api::<RoleBinding>(), "drmesh-grant-garbled", TIMEOUT).await;
    harness::wait_deleted(&ns.api::<NetworkPolicy>(), "drmesh-grant-garbled", TIMEOUT).await;
    assert!(!can(n, &format!("readers-{n}"), "get", "services/feed:8080", Some("proxy")));
    audit_record("the revocation of the unparseable grant", |r| {
        r["reason"] == "Unparseable" && r["decision"] == "Revoked" && r["product"]["namespace"] == n
    })
    .await;
}

/// Mallory may write the status of `resource` in `ns` (no admission policy here; the
/// chart's `statuses` policy refuses it, packaging::fail_closed): she writes a count the
/// schema accepts (an integer) but no int32 holds, so the operator cannot parse `name`.
async fn mallory_garbles(ns: &str, resource: &str, name: &str) {
    let_mallory(ns, json!([{"apiGroups": ["drmesh.io"], "resources": [resource, format!("{resource}/status")], "verbs": ["get", "patch"]}]))
        .await;
    let patch = r#"{"status":{"consumerCount":99999999999}}"#;
    as_mallory(&["patch", resource, name, "-n", ns, "--subresource=status", "--type=merge", "-p", patch], None);
}

#[tokio::test]
async fn a_source_that_cannot_be_parsed_lends_nothing() {
    let ns = domain("fc-parse-src", "Restricted").await;
    let n = ns.name.as_str();
    // The source lends its Secret to feed's ServiceAccount.
    let binding = "drmesh-source-db";
    harness::wait_for(&ns.api::<RoleBinding>(), binding, TIMEOUT, exists()).await;
    let feed_sa = format!("system:serviceaccount:{n}:feed");
    let reads_secret = || {
        let out = harness::kubectl(&["auth", "can-i", "get", "secrets/db-credentials", "-n", n, "--as", &feed_sa]);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(answer == "yes" || answer == "no", "can-i: {}", String::from_utf8_lossy(&out.stderr));
        answer == "yes"
    };
    assert!(reads_secret(), "lent before the attack");
    mallory_garbles(n, "datasources", "db").await;
    harness::wait_deleted(&ns.api::<RoleBinding>(), binding, TIMEOUT).await;
    harness::wait_deleted(&ns.api::<NetworkPolicy>(), "drmesh-source-db-egress", TIMEOUT).await;
    assert!(!reads_secret(), "an unparseable source lends nothing");
    audit_record("the withdrawal of the unparseable source's loans", |r| {
        r["reason"] == "Unparseable" && r["decision"] == "Revoked" && r["product"]["namespace"] == n
    })
    .await;
}

#[tokio::test]
async fn a_product_that_cannot_be_parsed_loses_its_workload_and_its_owners_access() {
    let ns = domain("fc-parse-dp", "Restricted").await;
    let n = ns.name.as_str();
    harness::wait_for(&ns.api::<RoleBinding>(), "feed-owners", TIMEOUT, exists()).await;
    assert!(can(n, &format!("owners-{n}"), "get", "dataproducts.drmesh.io/feed", None), "owners before");
    mallory_garbles(n, "dataproducts", "feed").await;
    // Its pods mounted the source's Secret: the workload goes, and the owners' access.
    harness::wait_deleted(&ns.api::<Deployment>(), "feed", TIMEOUT).await;
    harness::wait_deleted(&ns.api::<RoleBinding>(), "feed-owners", TIMEOUT).await;
    assert!(!can(n, &format!("owners-{n}"), "get", "dataproducts.drmesh.io/feed", None), "owners after");
    // Deny by default stays.
    assert!(ns.api::<NetworkPolicy>().get_opt("feed-isolation").await.expect("get").is_some(), "isolation kept");
    audit_record("the withdrawal of the unparseable product", |r| {
        r["reason"] == "Unparseable"
            && r["decision"] == "Revoked"
            && r["product"] == json!({"namespace": n, "name": "feed"})
    })
    .await;
}

#[tokio::test]
async fn a_foreign_finalizer_on_a_product_workload_does_not_keep_it_running() {
    let ns = domain("fc-fin-dp", "Restricted").await;
    let n = ns.name.as_str();
    harness::wait_for(&ns.api::<Deployment>(), "feed", TIMEOUT, exists()).await;
    // Mallory may patch the workloads of her domain and delete products: she pins the
    // product's Deployment (whose pods mount the source's Secret), then deletes the product.
    let_mallory(
        n,
        json!([
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
            {"apiGroups": ["drmesh.io"], "resources": ["dataproducts"], "verbs": ["get", "delete"]},
        ]),
    )
    .await;
    let patch = format!(r#"{{"metadata":{{"finalizers":["{FOREIGN_FINALIZER}"]}}}}"#);
    as_mallory(&["patch", "deployment", "feed", "-n", n, "--type=merge", "-p", &patch], None);
    as_mallory(&["delete", "dataproduct", "feed", "-n", n, "--wait=false"], None);
    // The garbage collector deletes the Deployment; the finalizer must not hold it.
    harness::wait_deleted(&ns.api::<Deployment>(), "feed", TIMEOUT).await;
    harness::eventually("no pod of feed left", TIMEOUT, || {
        let pods = ns.api::<Pod>();
        async move {
            let list = pods.list(&ListParams::default().labels("drmesh.io/data-product=feed")).await.ok()?;
            list.items.is_empty().then_some(())
        }
    })
    .await;
    release("deployment", n, "feed");
}

#[tokio::test]
async fn owners_read_a_restricted_product_only_through_a_grant() {
    let restricted = domain("fc-own-dr", "Restricted").await;
    let internal = domain("fc-own-int", "Internal").await;
    let (r, i) = (restricted.name.as_str(), internal.name.as_str());
    // Owners see what they own, but a Restricted product's data needs purpose and expiry.
    assert!(can(r, &format!("owners-{r}"), "get", "dataproducts.drmesh.io/feed", None));
    assert!(!can(r, &format!("owners-{r}"), "get", "services/feed:8080", Some("proxy")), "owners of Restricted data");
    assert!(can(i, &format!("owners-{i}"), "get", "services/feed:8080", Some("proxy")), "owners of Internal data");
    let product = internal.api::<DataProduct>().get("feed").await.expect("product");
    assert_eq!(product.status.expect("status").owners_with_data_access, vec![format!("Group:owners-{i}")]);
    audit_record("the owners' access, recorded", |rec| {
        rec["reason"] == "OwnersAccess" && rec["decision"] == "Granted" && rec["product"]["namespace"] == i
    })
    .await;
}

#[tokio::test]
async fn access_objects_left_from_before_classification_are_reported() {
    let ns = domain("fc-raise", "Public").await;
    let n = ns.name.as_str();
    // While the domain is Public, mallory (a namespace administrator) opens the door.
    mallory_opens_a_door(n, "open-door").await;
    // The security officer raises the domain: the old door must not go unnoticed.
    let out = harness::kubectl(&["label", "namespace", n, "drmesh.io/clearance=Restricted", "--overwrite"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let product = harness::wait_for(&ns.api::<DataProduct>(), "feed", TIMEOUT, |p: Option<&DataProduct>| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Isolated" && c.status == ConditionStatus::False))
    })
    .await
    .expect("product");
    let isolated = product.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Isolated").expect("c");
    assert_eq!(isolated.reason, "ForeignAccessObjects");
    assert!(isolated.message.contains("NetworkPolicy/open-door"), "{}", isolated.message);
    audit_record("the exposure, recorded", |r| {
        r["decision"] == "Exposed"
            && r["product"]["namespace"] == n
            && r["message"].as_str().is_some_and(|m| m.contains("open-door"))
    })
    .await;
    let events =
        harness::kubectl(&["get", "events", "-n", n, "--field-selector", "reason=ForeignAccessObjects", "-o", "name"]);
    assert!(!events.stdout.is_empty(), "a Warning Event on the product");
}

#[tokio::test]
async fn an_access_object_passing_for_drmeshs_with_a_forged_label_is_reported() {
    let ns = domain("fc-forged", "Restricted").await;
    let n = ns.name.as_str();
    let_mallory(
        n,
        json!([{"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "get"]}]),
    )
    .await;
    // Without the chart's managed-objects policy, mallory labels her door as drmesh's own:
    // drmesh's children are not foreign, and no parent claims this one.
    let door = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: disguised\n  namespace: {n}\n  labels: {{app.kubernetes.io/managed-by: drmesh, drmesh.io/data-product: feed}}\nspec:\n  podSelector: {{}}\n  ingress: [{{}}]\n"
    );
    as_mallory(&["create", "-f", "-"], Some(&door));
    // (mallory's own RoleBinding is a foreign access object already: the door must join it.)
    let product = harness::wait_for(&ns.api::<DataProduct>(), "feed", TIMEOUT, |p: Option<&DataProduct>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Isolated" && c.status == ConditionStatus::False && c.message.contains("disguised"))
        })
    })
    .await
    .expect("product");
    let isolated = product.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Isolated").expect("c");
    assert!(isolated.message.contains("NetworkPolicy/disguised (forged label)"), "{}", isolated.message);
    audit_record("the exposure, recorded", |r| {
        r["decision"] == "Exposed" && r["message"].as_str().is_some_and(|m| m.contains("disguised"))
    })
    .await;
}

#[tokio::test]
async fn a_grant_whose_network_policy_is_refused_is_withdrawn_whole() {
    let ns = domain("fc-part", "Restricted").await;
    let n = ns.name.as_str();
    let (expires, _) = rfc3339_in(Duration::from_secs(3600));
    grant(n, "partial", &expires);
    wait_granted(&ns, "partial").await;

    // An admission policy (standing in for any refusal by the API server) rejects every
    // NetworkPolicy write in this namespace from now on.
    let vap = harness::unique_name("fc-refuse-np");
    apply(&format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {vap}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {n}}}}}
    resourceRules:
      - {{apiGroups: [networking.k8s.io], apiVersions: [v1], resources: [networkpolicies], operations: [CREATE, UPDATE]}}
  validations:
    - expression: "false"
      message: "e2e: NetworkPolicies are refused here"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {vap}}}
spec:
  policyName: {vap}
  validationActions: [Deny]
"#
    ));
    let _cleanup = [
        harness::ClusterScoped { kind: "validatingadmissionpolicybinding", name: vap.clone() },
        harness::ClusterScoped { kind: "validatingadmissionpolicy", name: vap.clone() },
    ];
    harness::eventually("the refusal in force", TIMEOUT, || async {
        let probe = format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: probe, namespace: {n}}}\nspec: {{podSelector: {{}}}}\n"
        );
        let out = crate::packaging::kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &probe);
        (!out.status.success()).then_some(())
    })
    .await;
    // Mallory, who writes the domain's grants, narrows this one to the group and the
    // reader pods (re-approved): RBAC would narrow, the NetworkPolicy update is refused.
    // Nothing of the grant may stay.
    let_mallory(n, json!([{"apiGroups": ["drmesh.io"], "resources": ["accesspolicies"], "verbs": ["get", "patch"]}]))
        .await;
    let narrowed = harness::approved_by_examples(
        &format!(
            r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: partial, namespace: {n}}}
spec:
  dataProduct: feed
  subjects:
    - {{kind: Group, name: readers-{n}}}
    - {{kind: Namespace, name: {n}, podSelector: {{matchLabels: {{role: reader}}}}}}
  purpose: end-to-end test of fail-closed grants
  expiresAt: "{expires}"
"#
        ),
        &[1, 2],
    );
    as_mallory(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&narrowed));
    let policy =
        harness::wait_for(&ns.api::<AccessPolicy>(), "partial", TIMEOUT, has_reason::<AccessPolicy>("ApplyFailed"))
            .await
            .expect("policy");
    let stalled =
        policy.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Stalled").expect("Stalled");
    assert_eq!(stalled.status, ConditionStatus::True);
    assert!(
        stalled.message.contains("NetworkPolicies are refused here"),
        "the API server's message: {}",
        stalled.message
    );
    assert!(ns.api::<RoleBinding>().get_opt("drmesh-grant-partial").await.expect("get").is_none(), "RBAC withdrawn");
    assert!(
        ns.api::<NetworkPolicy>().get_opt("drmesh-grant-partial").await.expect("get").is_none(),
        "old ingress withdrawn"
    );
    assert!(!can(n, &format!("readers-{n}"), "get", "services/feed:8080", Some("proxy")));
    audit_record("the withdrawal", |r| {
        r["policy"]["name"] == "partial" && r["decision"] == "Revoked" && r["reason"] == "ApplyFailed"
    })
    .await;
    // The refusal lifted, the grant converges by itself (retried with backoff).
    drop(_cleanup);
    harness::wait_for(&ns.api::<AccessPolicy>(), "partial", Duration::from_secs(120), is_ready).await;
    assert!(can(n, &format!("readers-{n}"), "get", "services/feed:8080", Some("proxy")));
}

#[tokio::test]
async fn a_foreign_object_holding_a_child_name_is_never_taken_over() {
    let ns = TestNamespace::create_with_labels("fc-squat", &[("drmesh.io/clearance", "Internal")]).await;
    let n = ns.name.as_str();
    // Mallory squats the name of the isolation policy of a product about to be declared.
    mallory_opens_a_door(n, "late-isolation").await;
    let before = ns.api::<NetworkPolicy>().get("late-isolation").await.expect("squat");
    apply(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: late, namespace: {n}}}
spec:
  classification: Internal
  runtime: {{image: registry.example/late:1.0, replicas: 1}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
    ));
    let product =
        harness::wait_for(&ns.api::<DataProduct>(), "late", TIMEOUT, has_reason::<DataProduct>("NameConflict"))
            .await
            .expect("product");
    let (status, _) = ready(&product).expect("Ready");
    assert_eq!(status, "False");
    let after = ns.api::<NetworkPolicy>().get("late-isolation").await.expect("squat");
    assert_eq!(after.resource_version(), before.resource_version(), "drmesh wrote nothing to it");
    assert!(after.owner_references().is_empty() && after.labels().get("app.kubernetes.io/managed-by").is_none());
    assert!(ns.api::<Deployment>().get_opt("late").await.expect("get").is_none(), "no pod runs without our isolation");
}

#[tokio::test]
async fn a_secret_not_released_to_drmesh_is_never_mounted() {
    let ns = TestNamespace::create_with_labels("fc-deputy", &[("drmesh.io/clearance", "Internal")]).await;
    let n = ns.name.as_str();
    // A Secret of the domain that mallory cannot read (not released to drmesh).
    apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: payroll, namespace: {n}}}\nstringData: {{password: secret}}\n"
    ));
    // Mallory may declare sources and products, not read Secrets.
    let_mallory(
        n,
        json!([{"apiGroups": ["drmesh.io"], "resources": ["datasources", "dataproducts"], "verbs": ["create", "get"]}]),
    )
    .await;
    assert!(!harness::kubectl_as(ATTACKER, &["auth", "can-i", "get", "secrets", "-n", n]).stdout.starts_with(b"yes"));
    as_mallory(
        &["create", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: loot, namespace: {n}}}
spec:
  classification: Internal
  type: Other
  endpoint: {{cidr: 10.41.0.0/24, port: 443}}
  credentialsSecretRef: {{name: payroll}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: exfil, namespace: {n}}}
spec:
  classification: Internal
  inputs: [{{dataSource: loot}}]
  runtime: {{image: registry.example/exfil:1.0, replicas: 1}}
"#
        )),
    );
    harness::wait_for(&ns.api::<DataSource>(), "loot", TIMEOUT, has_reason::<DataSource>("SecretNotReleased")).await;
    let product =
        harness::wait_for(&ns.api::<DataProduct>(), "exfil", TIMEOUT, has_reason::<DataProduct>("InputNotReady"))
            .await
            .expect("product");
    let input = &product.status.expect("status").inputs[0];
    assert_eq!(input.reason.as_deref(), Some("InputNotReady"));
    let deployment = harness::wait_for(&ns.api::<Deployment>(), "exfil", TIMEOUT, exists()).await.expect("runs");
    let volumes =
        serde_json::to_string(&deployment.spec.expect("spec").template.spec.expect("pod").volumes).expect("json");
    assert!(!volumes.contains("payroll"), "the unreleased Secret is not mounted: {volumes}");
    assert!(ns.api::<RoleBinding>().get_opt("drmesh-source-loot").await.expect("get").is_none(), "no credentials RBAC");
}

#[tokio::test]
async fn a_product_does_not_claim_ready_on_an_input_that_is_not_ready() {
    let ns = TestNamespace::create_with_labels("fc-input", &[("drmesh.io/clearance", "Internal")]).await;
    let n = ns.name.as_str();
    apply(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: feedstock, namespace: {n}}}
spec:
  classification: Internal
  type: Postgres
  endpoint: {{cidr: 10.42.0.0/24, port: 5432}}
  credentialsSecretRef: {{name: feedstock-credentials}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: digest, namespace: {n}}}
spec:
  classification: Internal
  inputs: [{{dataSource: feedstock}}]
  runtime: {{image: registry.example/digest:1.0, replicas: 1}}
"#
    ));
    let products = ns.api::<DataProduct>();
    // Not Ready, and why: the source's own reason once it has one.
    let product = harness::wait_for(&products, "digest", TIMEOUT, |p: Option<&DataProduct>| {
        has_reason::<DataProduct>("InputNotReady")(p)
            && p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                s.inputs.first().and_then(|i| i.message.as_deref()).is_some_and(|m| m.contains("SecretNotFound"))
            })
    })
    .await
    .expect("p");
    let status = product.status.expect("status");
    assert_eq!(status.inputs[0].state, InputState::Pending);
    let deployment = harness::wait_for(&ns.api::<Deployment>(), "digest", TIMEOUT, exists()).await.expect("d");
    let volumes =
        serde_json::to_string(&deployment.spec.expect("spec").template.spec.expect("pod").volumes).expect("json");
    assert!(!volumes.contains("feedstock-credentials"), "a missing Secret is not mounted: {volumes}");
    // The Secret arrives, released: the product converges.
    apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: feedstock-credentials, namespace: {n}, labels: {{drmesh.io/credentials: \"true\"}}}}\nstringData: {{password: x}}\n"
    ));
    harness::wait_for(&products, "digest", Duration::from_secs(90), is_ready).await;
    let deployment = ns.api::<Deployment>().get("digest").await.expect("deployment");
    let volumes =
        serde_json::to_string(&deployment.spec.expect("spec").template.spec.expect("pod").volumes).expect("json");
    assert!(volumes.contains("feedstock-credentials"), "mounted once Ready: {volumes}");
}

/// Samples, every 50 ms until the product's pods are gone, whether the isolation policy
/// is still there while a pod of the product remains; returns the number of samples.
async fn isolation_outlives_pods(ns: &TestNamespace, product: &str) -> usize {
    let pods: Api<Pod> = ns.api();
    let policies: Api<NetworkPolicy> = ns.api();
    let selector = ListParams::default().labels(&format!("drmesh.io/data-product={product}"));
    let isolation = format!("{product}-isolation");
    let mut samples = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        // Policy first, then pods: a pod seen after the policy was seen gone is a breach.
        let policy = policies.get_opt(&isolation).await.expect("get policy");
        let remaining = pods.list_metadata(&selector).await.map(|l| l.items.len()).unwrap_or(0);
        samples += 1;
        assert!(policy.is_some() || remaining == 0, "{remaining} pod(s) of {product} left without isolation");
        if remaining == 0 && policy.is_none() {
            return samples;
        }
        assert!(tokio::time::Instant::now() < deadline, "the product's pods or isolation never went");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running pod of `feed`, held by a finalizer: it takes its time to stop, as a real
/// pod does within its grace period.
async fn a_pod_slow_to_stop(ns: &TestNamespace) -> (Api<Pod>, String) {
    harness::wait_for(&ns.api::<Deployment>(), "feed", TIMEOUT, |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas).unwrap_or(0) >= 1
    })
    .await;
    let pods: Api<Pod> = ns.api();
    let listed = pods.list_metadata(&ListParams::default().labels("drmesh.io/data-product=feed")).await.expect("pods");
    let pod = listed.items.first().expect("a pod").name_any();
    let patch = json!({"metadata": {"finalizers": [FOREIGN_FINALIZER]}});
    pods.patch_metadata(&pod, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("hold the pod");
    (pods, pod)
}

/// Lets the held pod go after 2 s, while the test samples the deletion.
fn let_go_later(pods: &Api<Pod>, pod: String) -> tokio::task::JoinHandle<()> {
    let pods = pods.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let release = json!({"metadata": {"finalizers": null}});
        pods.patch_metadata(&pod, &PatchParams::default(), &Patch::Merge(&release)).await.expect("release the pod");
    })
}

#[tokio::test]
async fn a_deleted_product_stays_isolated_until_its_pods_are_gone() {
    let ns = domain("fc-order", "Internal").await;
    let (pods, pod) = a_pod_slow_to_stop(&ns).await;
    // Mallory, who may delete the domain's products, deletes this one while its pod runs.
    let n = ns.name.as_str();
    let_mallory(n, json!([{"apiGroups": ["drmesh.io"], "resources": ["dataproducts"], "verbs": ["get", "delete"]}]))
        .await;
    as_mallory(&["delete", "dataproduct", "feed", "-n", n, "--wait=false"], None);
    // The pod is held: the isolation must be there after the product, Deployment and
    // ReplicaSet are gone.
    harness::wait_deleted(&ns.api::<Deployment>(), "feed", TIMEOUT).await;
    let isolation = ns.api::<NetworkPolicy>().get("feed-isolation").await.expect("isolation still there");
    assert!(isolation.meta().deletion_timestamp.is_some(), "being deleted, held for the pod");
    let releaser = let_go_later(&pods, pod);
    let samples = isolation_outlives_pods(&ns, "feed").await;
    releaser.await.expect("releaser");
    assert!(samples > 10, "sampled the whole deletion ({samples} samples)");
}

#[tokio::test]
async fn a_deleted_namespace_keeps_its_products_isolated_until_their_pods_are_gone() {
    let ns = domain("fc-nsdel", "Internal").await;
    let (pods, pod) = a_pod_slow_to_stop(&ns).await;
    let out = harness::kubectl(&["delete", "namespace", &ns.name, "--wait=false"]);
    assert!(out.status.success());
    // The namespace controller deletes the pod (held by its finalizer): the isolation
    // must still be there.
    harness::wait_for(&pods, &pod, TIMEOUT, |p: Option<&Pod>| p.is_some_and(|p| p.meta().deletion_timestamp.is_some()))
        .await;
    // Kubernetes >= 1.33 deletes a namespace's pods before the rest of its content
    // (OrderedNamespaceDeletion); drmesh's finalizer holds the isolation on older API
    // servers and for product deletion (the garbage collector has no order).
    assert!(ns.api::<NetworkPolicy>().get_opt("feed-isolation").await.expect("get").is_some(), "isolation held");
    let releaser = let_go_later(&pods, pod);
    isolation_outlives_pods(&ns, "feed").await;
    releaser.await.expect("releaser");
}
