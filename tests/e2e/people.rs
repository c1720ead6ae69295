//! Issue 16 on the real control plane: a person reads a classified product only while
//! cleared at its level, inside the grant's window and, for Restricted, with two approvals
//! of the grant's exact spec. Each step is checked with real `kubectl auth can-i` as the
//! person (a test-unique user and group the admin impersonates, so that the tests beside
//! this one keep their people), and a kubectl error is a failure, not a "no".

use std::time::Instant;

use drmesh::api::AccessPolicy;
use jiff::{SignedDuration, Timestamp};
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
                && r["reason"] == "SubjectNotCleared"
        })
    })
    .await;

    // Cleared for 8 s: readable; at the clearance's expiry, revoked on time.
    let until = Timestamp::now().checked_add(SignedDuration::from_secs(8)).expect("time");
    let _short = clearance(&format!("short-{id}"), &group, "Restricted", until);
    until_can_read(&user, &group, &id, "feed", true, "the cleared group reads").await;
    until_can_read(&user, &group, &id, "feed", false, "the expired clearance revokes").await;
    let late = Timestamp::now().duration_since(until);
    eprintln!("clearance expiry revoked {late:?} after expiresAt");
    assert!(late < SignedDuration::from_secs(3), "revoked {late:?} late");
    until_state(&api, "readers", "SubjectNotCleared").await;

    // A clearance in force, then lowered below the product's level: revoked at once.
    let later = Timestamp::now().checked_add(SignedDuration::from_hours(1)).expect("time");
    let _long = clearance(&format!("long-{id}"), &group, "Restricted", later);
    until_can_read(&user, &group, &id, "feed", true, "a new clearance grants again").await;
    let lowered = Instant::now();
    let _long = clearance(&format!("long-{id}"), &group, "Internal", later);
    until_can_read(&user, &group, &id, "feed", false, "a lowered clearance revokes").await;
    eprintln!("clearance lowering revoked in {:?}", lowered.elapsed());
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
    // duplicated (example-approver-1 twice) approvals grant nothing.
    let base = edited.clone();
    let forged = harness::with_approvals(&base, &[("example-approver-1", 1), ("example-approver-2", 3)]);
    harness::apply_text(&forged);
    until_state(&api, "readers", "ApprovalMissing").await;
    let duplicated = harness::with_approvals(&base, &[("example-approver-1", 1), ("example-approver-1", 1)]);
    harness::apply_text(&duplicated);
    until_state(&api, "readers", "ApprovalMissing").await;
    assert!(!can_read(&user, &group, &id, "feed"));
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
    harness::eventually("ReassessmentDue", TIMEOUT, || async {
        let p = api.get("analysts").await.ok()?;
        let due =
            p.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "ReassessmentDue").cloned())?;
        (due.status == drmesh::api::ConditionStatus::True).then_some(())
    })
    .await;
    assert!(can_read(&user, &group, &id, "stats"), "still granted during the grace");
}
