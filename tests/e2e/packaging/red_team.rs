//! Issue 13, "fail closed everywhere", played as a whole: the chart installed with its
//! admission policies, the operator running as the chart's ServiceAccount (impersonated,
//! with the chart's RBAC and nothing more, `--foreign-access=refuse`), and the attacker —
//! mallory, a domain administrator with only the namespaced rights this test gives her,
//! never the cluster admin — trying classes 1 to 6 and 10 against both at once. Each step says
//! whether admission refuses her or the operator revokes what she gained.
//!
//! The classes played one by one, without the policies and with the shared operator, are
//! in tests/e2e/fail_closed.rs; the policies alone, without an operator, in `fail_closed`.

use std::path::{Path, PathBuf};

use drmesh::api::{AccessPolicy, ConditionStatus, DataProduct, DataSource};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::policies::{accepted, as_identity, refused, stderr};
use super::rbac::ready;
use super::release::{CONVERGE, ONE_OPERATOR, Operator, Release};
use super::{kubectl_stdin, ok};
use crate::harness::{self, ClusterScoped, TestNamespace};

const MALLORY: &str = "mallory";
const FINALIZER: &str = "example.com/keep-me";

/// kubectl as mallory: her own RBAC (no system:masters), so RBAC and admission both decide.
fn as_mallory(args: &[&str], input: &str) -> std::process::Output {
    let mut all = vec!["--as", MALLORY];
    all.extend_from_slice(args);
    kubectl_stdin(&all, input)
}

/// What a domain administrator could hand mallory: drmesh's resources and their status,
/// NetworkPolicies, RoleBindings (binding the Role `door` only), ServiceAccounts, and
/// patching workloads — no Secrets. Bound cluster-wide (she only acts in this test's
/// namespaces): a RoleBinding in a classified domain is itself a foreign access object,
/// which the operator run with `--foreign-access=refuse` would rightly hold against the
/// domain's products. Applied before the policies.
fn let_mallory(id: &str) -> Vec<ClusterScoped> {
    let name = format!("{id}-mallory");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [
            {"apiGroups": ["drmesh.io"], "resources": ["datasources", "dataproducts", "accesspolicies",
              "datasources/status", "dataproducts/status", "accesspolicies/status"],
             "verbs": ["get", "list", "create", "patch", "update", "delete"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "create", "patch", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "create", "patch"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["door"]},
            {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]},
        ],
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": MALLORY}],
    });
    for object in [role, binding] {
        ok("mallory's RBAC", kubectl_stdin(&["apply", "-f", "-"], &object.to_string()));
    }
    vec![ClusterScoped { kind: "clusterrole", name: name.clone() }, ClusterScoped { kind: "clusterrolebinding", name }]
}

/// Real RBAC: may a member of `group` `get` the proxy of `service:port` in `ns`?
fn group_may_proxy(ns: &str, group: &str, target: &str) -> bool {
    let out = harness::kubectl(&[
        "auth",
        "can-i",
        "get",
        &format!("services/{target}"),
        "--subresource=proxy",
        "-n",
        ns,
        "--as",
        "someone",
        "--as-group",
        group,
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(answer == "yes" || answer == "no", "kubectl auth can-i: {}", stderr(&out));
    answer == "yes"
}

/// A record of this test's operator's audit stream matching `pred`, waited for.
async fn record(log: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    harness::eventually(what, CONVERGE, || {
        let found = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|r| pred(r));
        async move { found }
    })
    .await
}

fn grant(ns: &str, name: &str) -> String {
    let (expires, _) = crate::operator::rfc3339_in(std::time::Duration::from_secs(3600));
    harness::approved_by_examples(
        &format!(
            r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  dataProduct: feed
  subjects: [{{kind: Group, name: readers-{ns}}}]
  purpose: red-team test of the chart-installed operator
  expiresAt: "{expires}"
"#
        ),
        &[1, 2],
    )
}

fn apply(yaml: &str) {
    ok("admin applies the stage", kubectl_stdin(&["apply", "-f", "-"], yaml));
}

#[tokio::test]
async fn the_attacker_meets_the_charts_policies_and_the_operator_under_its_own_identity() {
    let _turn = ONE_OPERATOR.lock().await;
    let mut release = Release::new("pkg-red").await;
    let classified =
        TestNamespace::create_with_labels("pkg-red-dr", &release.fenced(&[("drmesh.io/clearance", "Restricted")]))
            .await;
    let public = TestNamespace::create_with_labels("pkg-red-pub", &release.fenced(&[])).await;
    let (dr, pb) = (classified.name.as_str(), public.name.as_str());
    harness::ensure_sample_mesh_policy();
    for group in [format!("readers-{dr}"), format!("owners-{dr}"), format!("owners-{pb}")] {
        harness::clear_group(&group, "Restricted");
    }
    let _mallory = let_mallory(&release.id);
    // A Role of the Public domain, harmless, that mallory may bind.
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: door, namespace: {pb}}}\nrules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}}]\n"
    ));
    release.fence();
    release.install();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = release.kubeconfig(dir.path());
    let identity = format!("{}-op", release.id);
    let mut operator = Operator::start_with(
        &kubeconfig,
        &release.namespace.name,
        &identity,
        dir.path(),
        &["--foreign-access", "refuse"],
    );
    operator.wait_leading().await;
    let audit: PathBuf = dir.path().join(format!("{identity}-audit.log"));

    // The stage, set by the admin: a Restricted domain with a source, a product and a
    // grant to its readers; a Public domain with a Public product.
    apply(&crate::fail_closed::domain_yaml(dr, "Restricted"));
    apply(&grant(dr, "readers"));
    apply(&crate::fail_closed::domain_yaml(pb, "Public"));
    harness::wait_for(&classified.api::<DataProduct>(), "feed", CONVERGE, ready).await;
    harness::wait_for(&classified.api::<AccessPolicy>(), "readers", CONVERGE, ready).await;
    harness::wait_for(&public.api::<DataProduct>(), "feed", CONVERGE, ready).await;
    assert!(group_may_proxy(dr, &format!("readers-{dr}"), "feed:8080"), "granted before the attacks");

    // Class 2: owners of a Restricted product read it only through a grant.
    assert!(!group_may_proxy(dr, &format!("owners-{dr}"), "feed:8080"), "owners of Restricted data");

    // Class 6: the statuses the operator reads back are the operator's alone, and a
    // DataSource may not name a Secret its author cannot read.
    let forged = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Ready","message":"forged","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    refused(
        "mallory forges a source's status",
        as_mallory(&["patch", "datasource", "db", "-n", dr, "--subresource=status", "--type=merge", "-p", forged], ""),
        "may not write the status of datasources",
    );
    refused(
        "mallory garbles a grant's status",
        as_mallory(
            &[
                "patch",
                "accesspolicy",
                "readers",
                "-n",
                dr,
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"subjectCount":99999999999}}"#,
            ],
            "",
        ),
        "may not write the status of accesspolicies",
    );
    let deputy = format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {{name: borrowed, namespace: {dr}}}\nspec: {{classification: Restricted, type: Postgres, endpoint: {{cidr: 10.40.0.0/24, port: 5432}}, credentialsSecretRef: {{name: db-credentials}}}}\n"
    );
    refused(
        "mallory names a Secret she cannot read",
        as_mallory(&["create", "-f", "-"], &deputy),
        "may not name Secret db-credentials",
    );

    // Class 1: a foreign finalizer on a drmesh child is refused; one on the grant itself,
    // then a deletion, leaves a terminating grant that grants nothing.
    let pin = format!(r#"{{"metadata":{{"finalizers":["{FINALIZER}"]}}}}"#);
    refused(
        "mallory pins the grant's RoleBinding",
        as_mallory(&["patch", "rolebinding", "drmesh-grant-readers", "-n", dr, "--type=merge", "-p", &pin], ""),
        // Both managed-objects and classified-namespaces refuse it; the first to answer says so.
        "mallory may not update rolebindings",
    );
    accepted(
        "mallory pins the grant",
        as_mallory(&["patch", "accesspolicy", "readers", "-n", dr, "--type=merge", "-p", &pin], ""),
    );
    accepted(
        "mallory deletes the grant",
        as_mallory(&["delete", "accesspolicy", "readers", "-n", dr, "--wait=false"], ""),
    );
    harness::wait_deleted(&classified.api::<RoleBinding>(), "drmesh-grant-readers", CONVERGE).await;
    harness::wait_deleted(&classified.api::<NetworkPolicy>(), "drmesh-grant-readers", CONVERGE).await;
    assert!(!group_may_proxy(dr, &format!("readers-{dr}"), "feed:8080"), "a terminating grant grants nothing");
    record(&audit, "the terminating grant's revocation", |r| {
        r["policy"]["name"] == "readers" && r["decision"] == "Revoked" && r["reason"] == "PolicyDeleting"
    })
    .await;
    let _ = harness::kubectl(&[
        "patch",
        "accesspolicy",
        "readers",
        "-n",
        dr,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    // Class 5: a name squatted before the product exists is never taken over.
    let squat = format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: squat, namespace: {dr}}}\n");
    accepted("mallory squats a product's ServiceAccount name", as_mallory(&["create", "-f", "-"], &squat));
    apply(
        &crate::fail_closed::domain_yaml(dr, "Restricted")
            .replace("name: feed,", "name: squat,")
            .replace("registry.example/feed", "registry.example/squat"),
    );
    let product = harness::wait_for(&classified.api::<DataProduct>(), "squat", CONVERGE, |p: Option<&DataProduct>| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.reason == "NameConflict"))
    })
    .await
    .expect("squat");
    assert_eq!(
        product.status.expect("status").conditions.iter().find(|c| c.type_ == "Ready").expect("Ready").status,
        ConditionStatus::False
    );
    let account = classified.api::<ServiceAccount>().get("squat").await.expect("the squatted account");
    assert!(account.owner_references().is_empty(), "drmesh took mallory's ServiceAccount over");
    assert!(classified.api::<Deployment>().get_opt("squat").await.expect("get").is_none(), "no workload");

    // Class 3 (refuse mode, RoleBinding variant): while her domain is Public, mallory
    // binds someone to her Role; the clearance administrators then classify the domain.
    let door = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: side-door, namespace: {pb}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: door}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: eve}}]\n"
    );
    accepted("mallory binds eve while the domain is Public", as_mallory(&["create", "-f", "-"], &door));
    harness::wait_for(&public.api::<Deployment>(), "feed", CONVERGE, |d: Option<&Deployment>| d.is_some()).await;
    accepted(
        "a clearance administrator classifies the domain",
        as_identity(
            "officer",
            &["drmesh:clearance-admins"],
            &["label", "namespace", pb, "drmesh.io/clearance=Restricted", "--overwrite"],
            "",
        ),
    );
    // Refused: the product stops running, says why, and it is recorded and counted.
    harness::wait_deleted(&public.api::<Deployment>(), "feed", CONVERGE).await;
    let product = harness::wait_for(&public.api::<DataProduct>(), "feed", CONVERGE, |p: Option<&DataProduct>| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Isolated" && c.status == ConditionStatus::False))
    })
    .await
    .expect("feed");
    let isolated = product.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Isolated").expect("c");
    assert_eq!(isolated.reason, "ForeignAccessObjects");
    assert!(isolated.message.contains("RoleBinding/side-door"), "{}", isolated.message);
    record(&audit, "the exposure, recorded", |r| {
        r["decision"] == "Exposed" && r["reason"] == "ForeignAccessObjects" && r["product"]["namespace"] == pb
    })
    .await;
    harness::eventually("drmesh_foreign_access_objects to count the side door", CONVERGE, || {
        let counted = operator.metric("drmesh_foreign_access_objects").unwrap_or(0.0) >= 1.0;
        async move { counted.then_some(()) }
    })
    .await;
    // Classified now: no new door, and the old one's Role is not widened.
    let door2 = door.replace("side-door", "side-door-2");
    refused(
        "mallory opens another door in the classified domain",
        as_mallory(&["create", "-f", "-"], &door2),
        "access to classified data is granted with an AccessPolicy",
    );
    // Class 4: mallory writes a grant of feed to her domain's reader pods, then narrows it
    // with a label key no NetworkPolicy can hold: the grant is withdrawn whole, not left
    // half applied.
    let pods_grant = |key: &str| {
        format!(
            "apiVersion: drmesh.io/v1alpha1\nkind: AccessPolicy\nmetadata: {{name: pods, namespace: {dr}}}\nspec:\n  dataProduct: feed\n  subjects: [{{kind: Namespace, name: {dr}, podSelector: {{matchLabels: {{\"{key}\": reader}}}}}}]\n  purpose: red-team test of partial applies\n  expiresAt: \"{}\"\n",
            crate::operator::rfc3339_in(std::time::Duration::from_secs(3600)).0
        )
    };
    accepted("mallory grants her reader pods", as_mallory(&["apply", "--server-side", "-f", "-"], &pods_grant("role")));
    harness::wait_for(
        &classified.api::<NetworkPolicy>(),
        "drmesh-grant-pods",
        CONVERGE,
        |n: Option<&NetworkPolicy>| n.is_some(),
    )
    .await;
    // Admission does not check label keys (a CEL rule over map keys exceeds the cost
    // budget): the operator refuses the grant whole before building anything.
    accepted(
        "mallory narrows it with an invalid label key",
        as_mallory(&["apply", "--server-side", "-f", "-"], &pods_grant("role/bad key!")),
    );
    harness::wait_deleted(&classified.api::<NetworkPolicy>(), "drmesh-grant-pods", CONVERGE).await;
    harness::wait_for(&classified.api::<AccessPolicy>(), "pods", CONVERGE, |p: Option<&AccessPolicy>| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Granted" && c.reason == "InvalidPodSelector"))
    })
    .await;
    assert!(classified.api::<RoleBinding>().get_opt("drmesh-grant-pods").await.expect("get").is_none());

    // Class 10: a product mallory makes on an input that is not Ready (its Secret is
    // missing) does not claim Ready, and nothing mounts the missing Secret.
    apply(&format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataSource\nmetadata: {{name: nosecret, namespace: {dr}}}\nspec: {{classification: Restricted, type: Postgres, endpoint: {{cidr: 10.40.0.0/24, port: 5432}}, credentialsSecretRef: {{name: not-there}}}}\n"
    ));
    let hungry = format!(
        "apiVersion: drmesh.io/v1alpha1\nkind: DataProduct\nmetadata: {{name: hungry, namespace: {dr}}}\nspec:\n  classification: Restricted\n  inputs: [{{dataSource: nosecret}}]\n  runtime: {{image: registry.example/hungry:1.0}}\n  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]\n"
    );
    accepted("mallory makes a product on a source that is not Ready", as_mallory(&["create", "-f", "-"], &hungry));
    let product = harness::wait_for(&classified.api::<DataProduct>(), "hungry", CONVERGE, |p: Option<&DataProduct>| {
        p.and_then(|p| p.status.as_ref())
            .is_some_and(|s| s.inputs.iter().any(|i| i.reason.as_deref() == Some("InputNotReady")))
    })
    .await
    .expect("hungry");
    assert!(!ready(Some(&product)), "a product on an input that is not Ready is not Ready: {:?}", product.status);
    let mounts_missing = classified
        .api::<Deployment>()
        .get_opt("hungry")
        .await
        .expect("get")
        .is_some_and(|d| serde_json::to_string(&d.spec).unwrap_or_default().contains("not-there"));
    assert!(!mounts_missing, "the missing Secret is not mounted");

    // The source's status is still the operator's word: the product's source is Ready.
    let source = classified.api::<DataSource>().get("db").await.expect("source");
    assert!(ready(Some(&source)), "the forged status never landed: {:?}", source.status);
    drop(operator);
}
