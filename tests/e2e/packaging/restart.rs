//! A restarted operator (a new process: nothing remembered of what it applied) serves a
//! settled mesh without re-applying its unchanged children, and still reverts what
//! changed while no operator ran — judged from the live objects, not from a marker.

use drmesh::api::{AccessPolicy, DataProduct};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use std::process::Command;

use super::ok;
use super::rbac::{apply, grant, grant_until, product, ready, source};
use super::release::{CONVERGE, ONE_OPERATOR, Operator, Release};
use crate::harness::{self, TestNamespace};

/// Waits until `operator` has no reconcile queued or running and its child writes have
/// not moved for two seconds; returns them.
async fn settled_writes(operator: &Operator) -> f64 {
    let mut last: Option<f64> = None;
    harness::eventually("the operator to settle", CONVERGE, || {
        let (writes, queued) = (operator.metric("drmesh_child_writes_total"), operator.metric("drmesh_queue_depth"));
        let before = last;
        last = writes;
        async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            (queued == Some(0.0) && writes.is_some() && writes == before).then_some(writes?)
        }
    })
    .await
}

#[tokio::test]
async fn a_restarted_operator_re_applies_nothing_unchanged_and_reverts_what_changed_while_it_was_down() {
    let _turn = ONE_OPERATOR.lock().await;
    let mut release = Release::new("pkg-restart").await;
    let labels = release.fenced(&[("drmesh.io/clearance", "Restricted")]);
    let producer = TestNamespace::create_with_labels("pkg-restart-prod", &labels).await;
    let consumer = TestNamespace::create_with_labels("pkg-restart-cons", &labels).await;
    let (p, c) = (producer.name.as_str(), consumer.name.as_str());
    release.values.push_str(&format!("operator: {{watchNamespaces: [{p}, {c}]}}\n"));
    release.fence();
    release.install();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = release.kubeconfig(dir.path());
    let identity = format!("{}-op", release.id);
    let start = || Operator::start_scoped(&kubeconfig, &release.namespace.name, &identity, dir.path(), &[p, c]);

    let first = start();
    apply(&source(p, "db"));
    apply(&product(p, "feed", "{dataSource: db}"));
    apply(&product(c, "reader", &format!("{{dataProduct: {{namespace: {p}, name: feed}}}}")));
    apply(&grant(p, "grant", "feed", &format!("{{kind: DataProduct, namespace: {c}, name: reader}}")));
    harness::wait_for(&producer.api::<DataProduct>(), "feed", CONVERGE, ready).await;
    harness::wait_for(&producer.api::<AccessPolicy>(), "grant", CONVERGE, ready).await;
    harness::wait_for(&consumer.api::<DataProduct>(), "reader", CONVERGE, ready).await;
    let first_writes = settled_writes(&first).await;
    drop(first);

    // While no operator runs: the isolation of `feed` is opened to every pod (as the
    // operator's own identity would be let through the admission policies), and the
    // grant's RoleBinding is deleted.
    // (The operator's identity may patch and delete its children, not get them: an
    // apply under another field manager takes the field over without a read.)
    let as_operator = |args: &[&str], input: &str| {
        let mut cmd = Command::new(harness::kubectl_path());
        cmd.env("KUBECONFIG", &kubeconfig).args(args);
        ok(&format!("kubectl {args:?} as the operator's identity"), super::with_stdin(&mut cmd, input))
    };
    let opened = format!(
        "{{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {{name: feed-isolation, namespace: {p}}}, \
         spec: {{ingress: [{{}}]}}}}"
    );
    as_operator(&["apply", "--server-side", "--force-conflicts", "--field-manager", "hand-edit", "-f", "-"], &opened);
    let isolation = producer.api::<NetworkPolicy>().get("feed-isolation").await.expect("the isolation");
    assert_eq!(
        isolation.spec.and_then(|s| s.ingress).map(|i| i.len()),
        Some(1),
        "the isolation is open to every pod while no operator runs"
    );
    let bindings = producer.api::<RoleBinding>();
    let granted: Vec<String> = bindings
        .list(&Default::default())
        .await
        .expect("list RoleBindings")
        .items
        .into_iter()
        .filter(|b| b.metadata.labels.as_ref().is_some_and(|l| l.contains_key("drmesh.io/access-policy")))
        .filter_map(|b| b.metadata.name)
        .collect();
    let [binding] = granted.as_slice() else { panic!("one RoleBinding of the grant, found {granted:?}") };
    as_operator(&["-n", p, "delete", "rolebinding", binding], "");

    let children = {
        let out = ok(
            "count the children",
            Command::new(harness::kubectl_path())
                .env("KUBECONFIG", harness::kubeconfig_path())
                .args(["get", "deployments,services,serviceaccounts,configmaps,networkpolicies,roles,rolebindings"])
                .args(["-A", "-l", "app.kubernetes.io/managed-by=drmesh", "--no-headers"])
                .args(["-o", "custom-columns=NS:.metadata.namespace"])
                .output()
                .expect("kubectl"),
        );
        out.lines().filter(|ns| *ns == p || *ns == c).count()
    };

    let second = start();
    harness::wait_for(&producer.api::<NetworkPolicy>(), "feed-isolation", CONVERGE, |np: Option<&NetworkPolicy>| {
        np.and_then(|np| np.spec.as_ref()).is_some_and(|s| s.ingress.as_ref().is_none_or(Vec::is_empty))
    })
    .await;
    harness::wait_for(&bindings, binding, CONVERGE, |b: Option<&RoleBinding>| b.is_some()).await;
    let writes = settled_writes(&second).await;
    let unread: Vec<String> = second
        .log_text()
        .lines()
        .filter(|l| l.contains("does not read back") || l.contains("what drmesh owns"))
        .map(str::to_string)
        .collect();
    assert_eq!(
        writes, 2.0,
        "the restarted operator applied {writes} children of {children} (the first run wrote {first_writes}): \
         only the opened isolation and the deleted RoleBinding had to be; children that did not read back as \
         applied (with RUST_LOG=info,drmesh_operator=debug): {unread:#?}"
    );

    // The audit trail: while no operator runs, the grant is edited (its expiry brought
    // forward, approved again). The next operator takes the chain over and records the
    // edit as a change made while no operator led, with when it can have been made.
    drop(second);
    let subjects = format!("{{kind: DataProduct, namespace: {c}, name: reader}}");
    let edited_from = jiff::Timestamp::now();
    apply(&grant_until(p, "grant", "feed", &subjects, "2029-06-01T00:00:00Z"));
    let edited_by = jiff::Timestamp::now();
    let third = start();
    let audit_log = dir.path().join(format!("{identity}-audit.log"));
    let record = harness::eventually("the edit recorded as made while no operator led", CONVERGE, || {
        let text = std::fs::read_to_string(&audit_log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<drmesh::audit::Record>(l).ok())
            .find(|r| r.event.expires_at.as_deref() == Some("2029-06-01T00:00:00Z"));
        async move { found }
    })
    .await;
    let event = &record.event;
    assert_eq!(event.policy.as_ref().map(|p| p.name.as_str()), Some("grant"), "{event:?}");
    assert!(event.message.contains("changed while no operator led"), "{}", event.message);
    let window = event.while_no_operator_led.as_ref().unwrap_or_else(|| panic!("no window: {event:?}"));
    let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap_or_else(|e| panic!("{t:?}: {e}"));
    assert!(
        at(&window.after) <= edited_from && edited_by <= at(&window.before),
        "the window {window:?} brackets the edit, made between {edited_from} and {edited_by}"
    );
    drop(third);
}
