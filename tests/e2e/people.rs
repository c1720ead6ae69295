//! Issue 16 on the real control plane: a person reads a classified product only while
//! cleared at its level, inside the grant's window and, for Restricted, with two approvals
//! of the grant's exact spec. Each step is checked with real `kubectl auth can-i` as the
//! person (a test-unique user and group the admin impersonates, so that the tests beside
//! this one keep their people), and a kubectl error is a failure, not a "no".

use drmesh::api::{AccessPolicy, AccessPolicyStatus};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::Api;
use serde_json::json;

use crate::harness::{self, ClusterScoped, TIMEOUT, TestNamespace};

/// `kubectl auth can-i get services/SVC:8080 --subresource=proxy` as `user` in `group`.
fn can_read(user: &str, group: &str, ns: &str, service: &str) -> bool {
    let target = format!("services/{service}:8080");
    let out = harness::kubectl(&[
        "auth",
        "can-i",
        "get",
        &target,
        "--subresource=proxy",
        "-n",
        ns,
        "--as",
        user,
        "--as-group",
        group,
    ]);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match (out.status.code(), answer.as_str()) {
        (Some(0), "yes") => true,
        (Some(1), "no") => false,
        (code, _) => {
            panic!("kubectl auth can-i as {user} failed (exit {code:?}): {}", String::from_utf8_lossy(&out.stderr))
        }
    }
}

async fn until_can_read(user: &str, group: &str, ns: &str, service: &str, expected: bool, what: &str) {
    harness::eventually(what, TIMEOUT, || {
        let answer = can_read(user, group, ns, service);
        async move { (answer == expected).then_some(()) }
    })
    .await;
}

fn clearance(name: &str, group: &str, level: &str, until: Timestamp) -> ClusterScoped {
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "Clearance", "metadata": {"name": name},
            "spec": {"subject": {"kind": "Group", "name": group}, "level": level, "expiresAt": until.to_string(),
                     "reason": "e2e habilitation decision"}})
        .to_string(),
    );
    ClusterScoped { kind: "clearance", name: name.to_string() }
}

/// The grant's reason for a subject it denies, or "Granted".
async fn subject_state(api: &Api<AccessPolicy>, name: &str) -> String {
    let policy = api.get(name).await.expect("policy");
    let status = policy.status.unwrap_or_default();
    if !status.effective_subjects.is_empty() && status.denied_subjects.is_empty() {
        return "Granted".into();
    }
    status.denied_subjects.first().map(|d| d.reason.clone()).unwrap_or_else(|| "Pending".into())
}

/// Applies `text`, a new version of the grant `name`, and waits until the operator has
/// decided that very version (its status's `observedGeneration` is the generation the
/// apply produced): what the test checks next is about this version, not the one before.
async fn apply_and_observe(api: &Api<AccessPolicy>, name: &str, text: &str) -> AccessPolicyStatus {
    let generation = |p: &AccessPolicy| p.metadata.generation.unwrap_or_default();
    let before = generation(&api.get(name).await.expect("policy"));
    harness::apply_text(text);
    let applied = generation(&api.get(name).await.expect("policy"));
    assert!(applied > before, "the apply changed the spec of {name} (generation {before} -> {applied})");
    harness::wait_for(api, name, TIMEOUT, move |p: Option<&AccessPolicy>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| s.observed_generation == Some(applied))
    })
    .await
    .and_then(|p| p.status)
    .expect("a status")
}

/// Waits for a Warning Event `reason` about the object `name` in `ns`.
async fn until_warning(ns: &str, name: &str, reason: &str) {
    harness::eventually(&format!("a Warning Event {reason} about {name}"), TIMEOUT, || async {
        let events = harness::events_about(ns, name, reason, "Warning").await;
        events.into_iter().next()
    })
    .await;
}

/// The grant's RoleBinding (one per grant, deleted when no subject of it is effective).
const BINDING: &str = "drmesh-grant-readers";

async fn until_state(api: &Api<AccessPolicy>, name: &str, expected: &str) {
    harness::eventually(&format!("{name} {expected}"), TIMEOUT, || async move {
        (subject_state(api, name).await == expected).then_some(())
    })
    .await;
}

#[tokio::test]
async fn people_read_a_restricted_product_only_while_cleared_and_approved() {
    harness::ensure_sample_mesh_policy();
    let ns = TestNamespace::create_with_labels("people", &[("drmesh.io/clearance", "Restricted")]).await;
    let id = ns.name.clone();
    let (user, group) = (format!("reader-{id}"), format!("readers-{id}"));
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "feed", "namespace": id},
            "spec": {"classification": "Restricted", "runtime": {"image": "registry.example/feed:1.0"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
        .to_string(),
    );
    let expires = Timestamp::now().checked_add(SignedDuration::from_hours(1)).expect("time");
    let grant = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "readers", "namespace": id},
        "spec": {"dataProduct": "feed", "subjects": [{"kind": "Group", "name": group}],
                 "purpose": "Olympic hypervision: read the incident feed", "expiresAt": expires.to_string()}});
    let approved = harness::approved_by_examples(&grant.to_string(), &[1, 2]);
    harness::apply_text(&approved);
    let api: Api<AccessPolicy> = ns.api();

    // Approved, but the group holds no clearance: nothing, and the status says why.
    until_state(&api, "readers", "SubjectNotCleared").await;
    assert!(!can_read(&user, &group, &id, "feed"));
    harness::eventually("a Denied record naming SubjectNotCleared", TIMEOUT, || async {
        harness::audit_records().into_iter().find(|r| {
            r["policy"]["name"] == "readers"
                && r["policy"]["namespace"] == id.as_str()
                && r["decision"] == "Denied"
                && r["reason"] == "SubjectNotCleared"
        })
    })
    .await;
    until_warning(&id, "readers", "SubjectNotCleared").await;

    // Cleared for 8 s: readable; at the clearance's expiry, revoked within 1 s (issue 16),
    // measured from expiresAt to the deletion of the group's RoleBinding, as a watch
    // started beforehand sees it (same clock: the operator runs on this machine).
    let bindings: Api<RoleBinding> = ns.api();
    let until = Timestamp::now().checked_add(SignedDuration::from_secs(8)).expect("time");
    let _short = clearance(&format!("short-{id}"), &group, "Restricted", until);
    until_can_read(&user, &group, &id, "feed", true, "the cleared group reads").await;
    let revoked = harness::watch_until(&bindings, BINDING, |b: Option<&RoleBinding>| b.is_none()).await;
    assert!(Timestamp::now() < until, "the watch must start before the clearance's expiry (lengthen the 8 s)");
    // The grant's record names the Clearance the group's access rests on (issue 17).
    let cleared = format!("cleared by Group:{group}: Clearance short-{id} (Restricted until ");
    harness::eventually("a Granted record naming the clearance", TIMEOUT, || async {
        harness::audit_records().into_iter().find(|r| {
            r["policy"]["name"] == "readers"
                && r["policy"]["namespace"] == id.as_str()
                && r["decision"] == "Granted"
                && r["message"].as_str().is_some_and(|m| m.contains(&cleared))
        })
    })
    .await;
    let gone = revoked.await.expect("the watch");
    let late = gone.duration_since(until);
    eprintln!("clearance expiry: RoleBinding deleted {late:?} after expiresAt");
    assert!(late <= SignedDuration::from_secs(1), "revoked {late:?} after the clearance's expiry");
    until_can_read(&user, &group, &id, "feed", false, "the expired clearance revokes").await;
    until_state(&api, "readers", "SubjectNotCleared").await;

    // A clearance in force, then lowered below the product's level: revoked within 1 s of
    // the lowering (from the moment the API server has stored it, when kubectl returns).
    let later = Timestamp::now().checked_add(SignedDuration::from_hours(1)).expect("time");
    let _long = clearance(&format!("long-{id}"), &group, "Restricted", later);
    until_can_read(&user, &group, &id, "feed", true, "a new clearance grants again").await;
    let revocations = || {
        harness::audit_records().into_iter().filter(|r| {
            r["policy"]["name"] == "readers"
                && r["policy"]["namespace"] == id.as_str()
                && r["decision"] == "Revoked"
                && r["reason"] == "SubjectNotCleared"
        })
    };
    let earlier = revocations().count(); // the expiry's
    let revoked = harness::watch_until(&bindings, BINDING, |b: Option<&RoleBinding>| b.is_none()).await;
    let _long = clearance(&format!("long-{id}"), &group, "Internal", later);
    let lowered = Timestamp::now();
    let gone = revoked.await.expect("the watch");
    let took = gone.duration_since(lowered);
    // The operator's own time (its revocation record is written once the binding is gone).
    let record =
        harness::eventually("the lowering's revocation record", TIMEOUT, || async { revocations().nth(earlier) }).await;
    let decided = record["time"].as_str().and_then(|t| t.parse::<Timestamp>().ok()).expect("a record time");
    eprintln!(
        "clearance lowering: RoleBinding deleted {took:?} after the lowering, revocation recorded {:?} after it",
        decided.duration_since(lowered)
    );
    assert!(took <= SignedDuration::from_secs(1), "revoked {took:?} after the clearance was lowered");
    until_can_read(&user, &group, &id, "feed", false, "a lowered clearance revokes").await;
    let _long = clearance(&format!("long-{id}"), &group, "Restricted", later);
    until_can_read(&user, &group, &id, "feed", true, "raised again").await;

    // An edit after approval voids the approvals: revoked until re-approved.
    let edited = approved.replace("read the incident feed", "read the incident feed and its history");
    harness::apply_text(&edited);
    until_can_read(&user, &group, &id, "feed", false, "an edit after approval revokes").await;
    until_state(&api, "readers", "ApprovalMissing").await;
    let message = api.get("readers").await.expect("policy").status.unwrap_or_default().denied_subjects[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(message.contains("example-approver-1, example-approver-2"), "the missing approvers are named: {message}");

    // Forged (example-approver-2's name over a key the MeshPolicy does not trust) and
    // duplicated (example-approver-1 twice) approvals grant nothing. Each version is
    // checked once the operator has decided it (its observedGeneration), not before.
    let base = edited.clone();
    let only_one = vec!["example-approver-1".to_string()];
    let forged = harness::with_approvals(&base, &[("example-approver-1", 1), ("example-approver-2", 3)]);
    let status = apply_and_observe(&api, "readers", &forged).await;
    assert_eq!(status.approved_by, only_one, "the forged signature does not count: {status:?}");
    assert_eq!(status.denied_subjects.first().map(|d| d.reason.as_str()), Some("ApprovalMissing"), "{status:?}");
    assert!(status.effective_subjects.is_empty(), "{status:?}");
    assert!(!can_read(&user, &group, &id, "feed"), "a forged approval grants nothing");
    let duplicated = harness::with_approvals(&base, &[("example-approver-1", 1), ("example-approver-1", 1)]);
    let status = apply_and_observe(&api, "readers", &duplicated).await;
    assert_eq!(status.approved_by, only_one, "a duplicate counts once: {status:?}");
    assert_eq!(status.denied_subjects.first().map(|d| d.reason.as_str()), Some("ApprovalMissing"), "{status:?}");
    assert!(status.effective_subjects.is_empty(), "{status:?}");
    assert!(!can_read(&user, &group, &id, "feed"), "a duplicated approval grants nothing");
    // Re-approved by both: granted again, and the status names the approvers.
    harness::apply_text(&harness::approved_by_examples(&base, &[1, 2]));
    until_can_read(&user, &group, &id, "feed", true, "re-approved").await;
    // The status is written after the access is applied: wait for it (the CI run read it
    // in between and saw the forged round's single approver).
    let both = ["example-approver-1", "example-approver-2"];
    harness::wait_for(&api, "readers", TIMEOUT, |p: Option<&AccessPolicy>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| s.approved_by == both)
    })
    .await;
}

#[tokio::test]
async fn a_grant_is_effective_from_its_start_and_warns_when_its_reassessment_is_due() {
    harness::ensure_sample_mesh_policy();
    let ns = TestNamespace::create_with_labels("window", &[("drmesh.io/clearance", "Internal")]).await;
    let id = ns.name.clone();
    let (user, group) = (format!("analyst-{id}"), format!("analysts-{id}"));
    let year = Timestamp::now().checked_add(SignedDuration::from_hours(24 * 30)).expect("time");
    let _cleared = clearance(&format!("window-{id}"), &group, "Internal", year);
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "stats", "namespace": id},
            "spec": {"classification": "Internal", "runtime": {"image": "registry.example/stats:1.0"},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
        .to_string(),
    );
    let start = Timestamp::now().checked_add(SignedDuration::from_secs(6)).expect("time");
    let reassess = start.checked_add(SignedDuration::from_secs(4)).expect("time");
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "analysts", "namespace": id},
            "spec": {"dataProduct": "stats", "subjects": [{"kind": "Group", "name": group}],
                     "startsAt": start.to_string(), "reassessBy": reassess.to_string(), "expiresAt": year.to_string()}})
        .to_string(),
    );
    let api: Api<AccessPolicy> = ns.api();
    harness::eventually("NotYetValid", TIMEOUT, || async {
        let p = api.get("analysts").await.ok()?;
        let granted = p.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Granted").cloned())?;
        (granted.reason == "NotYetValid").then_some(())
    })
    .await;
    assert!(!can_read(&user, &group, &id, "stats"), "nothing before the start");
    until_can_read(&user, &group, &id, "stats", true, "granted from its start").await;
    let late = Timestamp::now().duration_since(start);
    eprintln!("grant effective {late:?} after startsAt");
    assert!(late < SignedDuration::from_secs(3), "effective {late:?} after its start");
    // After reassessBy: still granted (the grace runs), with the ReassessmentDue condition.
    let due = |expected: drmesh::api::ConditionStatus| {
        let api = api.clone();
        async move {
            harness::eventually(&format!("ReassessmentDue={expected:?}"), TIMEOUT, || async {
                let p = api.get("analysts").await.ok()?;
                let due = p
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "ReassessmentDue").cloned())?;
                (due.status == expected).then_some(())
            })
            .await
        }
    };
    due(drmesh::api::ConditionStatus::True).await;
    assert!(can_read(&user, &group, &id, "stats"), "still granted during the grace");
    // The security officers are told: a Warning Event, a Warned audit record, the metric.
    until_warning(&id, "analysts", "ReassessmentDue").await;
    let record = harness::eventually("the reassessment's audit record", TIMEOUT, || async {
        harness::audit_records().into_iter().find(|r| {
            r["policy"]["name"] == "analysts"
                && r["policy"]["namespace"] == id.as_str()
                && r["reason"] == "ReassessmentDue"
        })
    })
    .await;
    assert_eq!(record["decision"], "Warned", "{record}");
    assert_eq!(record["subjects"], json!([format!("Group:{group}")]), "{record}");
    // Only this test lets a grant fall due: the gauge counts it, and forgets it once
    // reassessed (reassessBy moved, an edit).
    let counted = harness::eventually("drmesh_grants_reassessment_due counts the grant", TIMEOUT, || async {
        harness::metric("drmesh_grants_reassessment_due").filter(|n| *n >= 1.0)
    })
    .await;
    let reassessed = year.checked_sub(SignedDuration::from_hours(24)).expect("time");
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "analysts", "namespace": id},
            "spec": {"dataProduct": "stats", "subjects": [{"kind": "Group", "name": group}],
                     "startsAt": start.to_string(), "reassessBy": reassessed.to_string(), "expiresAt": year.to_string()}})
        .to_string(),
    );
    due(drmesh::api::ConditionStatus::False).await;
    harness::eventually("drmesh_grants_reassessment_due forgets the reassessed grant", TIMEOUT, || async {
        harness::metric("drmesh_grants_reassessment_due").filter(|n| *n <= counted - 1.0)
    })
    .await;
    assert!(can_read(&user, &group, &id, "stats"), "a reassessed grant holds");
}
