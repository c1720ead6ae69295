//! Need to know for people: clearances, the grant's window and the two-person rule, on
//! small meshes (pure), and as properties over generated clearances and edits.

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::people::{self, parse_duration};
use super::rules::{self, GrantPlan, Reason};
use super::{MeshView, Snapshot};
use crate::api::{AccessPolicy, Approval, Classification, Clearance, DataProduct, MeshPolicy, SubjectKind};

fn now() -> Timestamp {
    "2026-11-28T12:00:00Z".parse().expect("time")
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    drmesh_yaml::from_str(text).expect("fixture parses")
}

/// Approver `n`'s key, from a fixed seed: tests sign with it, the MeshPolicy trusts 1 and 2.
pub fn approver_key(n: u8) -> ssh_key::PrivateKey {
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[n; 32]))
}

fn public_key(n: u8) -> String {
    approver_key(n).public_key().to_openssh().expect("openssh")
}

/// The MeshPolicy: approvers `approver-1` and `approver-2` (keys 1 and 2), with `extra`
/// lines under `spec`.
pub(crate) fn mesh_policy(extra: &str) -> MeshPolicy {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: MeshPolicy
metadata: {{name: default}}
spec:
  approvals:
    required: 2
    approvers:
      - {{name: approver-1, publicKey: "{}"}}
      - {{name: approver-2, publicKey: "{}"}}
  {extra}
"#,
        public_key(1),
        public_key(2)
    ))
}

pub(crate) fn clearance(kind: &str, name: &str, level: &str, until: &str) -> Clearance {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: Clearance
metadata: {{name: {name}-{level}}}
spec:
  subject: {{kind: {kind}, name: {name}}}
  level: {level}
  expiresAt: "{until}"
  reason: "habilitation decision 2026-001"
"#
    ))
}

fn product(ns: &str, name: &str, classification: &str, owners: &str) -> DataProduct {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: {name}, namespace: {ns}, uid: uid-{name}, generation: 1}}
spec:
  classification: {classification}
  owners: {owners}
  runtime: {{image: registry.example/{name}:1.0}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
    ))
}

fn grant(product: &str, subjects: &str, extra: &str) -> AccessPolicy {
    yaml(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: g, namespace: police, uid: uid-g, generation: 1, creationTimestamp: "2026-11-01T00:00:00Z"}}
spec:
  dataProduct: {product}
  subjects: {subjects}
  purpose: Olympic hypervision of public safety
  expiresAt: "2027-01-01T00:00:00Z"
  {extra}
"#
    ))
}

/// Adds approver `n`'s signature (as `who`) over the policy's current spec.
fn signed_by(mut policy: AccessPolicy, who: &str, n: u8) -> AccessPolicy {
    let signature = people::sign(&policy, &approver_key(n)).expect("sign");
    policy.spec.approvals.push(Approval { approver: who.into(), signature });
    policy
}

pub(crate) fn approved(policy: AccessPolicy) -> AccessPolicy {
    signed_by(signed_by(policy, "approver-1", 1), "approver-2", 2)
}

const BOTH: &str = "[{kind: Group, name: cnc-officers}, {kind: DataProduct, namespace: cnc, name: picture}]";

/// police/feed (Restricted), police/stats (Internal), police/open (Public); cnc cleared
/// Restricted; cnc-officers cleared Restricted until 2027-06-01.
fn mesh() -> Snapshot {
    let mut mesh = Snapshot::default();
    mesh.set_clearance("police", Classification::Restricted);
    mesh.set_clearance("cnc", Classification::Restricted);
    mesh.add_product(product("police", "feed", "Restricted", "[]"));
    mesh.add_product(product("police", "stats", "Internal", "[{kind: Group, name: police-owners}]"));
    mesh.add_product(product("police", "open", "Public", "[]"));
    mesh.add_product(product("cnc", "picture", "Restricted", "[{kind: User, name: carol}]"));
    mesh.set_mesh_policy(mesh_policy(""));
    mesh.add_person_clearance(clearance("Group", "cnc-officers", "Restricted", "2027-06-01T00:00:00Z"));
    mesh
}

fn plan(mesh: &Snapshot, policy: &AccessPolicy) -> GrantPlan {
    rules::plan_grant(mesh, policy, now())
}

fn denied_for(plan: &GrantPlan, kind: SubjectKind) -> Option<Reason> {
    plan.denied.iter().find(|(s, _)| s.kind == kind).map(|(_, p)| p.reason)
}

fn people_effective(plan: &GrantPlan) -> bool {
    plan.effective.iter().any(|s| matches!(s.kind, SubjectKind::User | SubjectKind::Group))
}

#[test]
fn people_read_classified_products_only_while_cleared_at_their_level() {
    let mut mesh = mesh();
    // Public: no clearance needed.
    assert!(people_effective(&plan(&mesh, &grant("open", "[{kind: User, name: bob}]", ""))));
    // Internal, bob holds nothing: denied, and the message says what he holds.
    let bob = grant("stats", "[{kind: User, name: bob}]", "");
    let p = plan(&mesh, &bob);
    assert_eq!(denied_for(&p, SubjectKind::User), Some(Reason::SubjectNotCleared));
    assert!(p.denied[0].1.message.contains("no Clearance in force"), "{}", p.denied[0].1.message);
    // An expired clearance and a Public one clear nobody for Internal.
    mesh.add_person_clearance(clearance("User", "bob", "Internal", "2026-11-28T11:59:59Z"));
    mesh.add_person_clearance(clearance("User", "bob", "Public", "2030-01-01T00:00:00Z"));
    assert_eq!(denied_for(&plan(&mesh, &bob), SubjectKind::User), Some(Reason::SubjectNotCleared));
    assert!(plan(&mesh, &bob).cleared_by.is_empty(), "nobody cleared");
    // Cleared Internal: effective, re-planned when the clearance ends; the Clearance it
    // rests on is named (the audit record names it), not the expired or Public ones.
    mesh.add_person_clearance(clearance("User", "bob", "Internal", "2026-12-01T00:00:00Z"));
    let p = plan(&mesh, &bob);
    assert!(people_effective(&p), "{:?}", p.denied);
    assert_eq!(p.next_change, Some("2026-12-01T00:00:00Z".parse().expect("time")));
    assert_eq!(p.cleared_by, ["User:bob: Clearance bob-Internal (Internal until 2026-12-01T00:00:00Z)"]);
    // Of two clearances in force, the one giving the level (the highest, then the latest).
    mesh.add_person_clearance(clearance("User", "bob", "Restricted", "2026-11-30T00:00:00Z"));
    assert_eq!(
        plan(&mesh, &bob).cleared_by,
        ["User:bob: Clearance bob-Restricted (Restricted until 2026-11-30T00:00:00Z)"]
    );
    // A workload subject rests on its domain's clearance, not a person's: none named.
    let picture = grant("stats", "[{kind: DataProduct, namespace: cnc, name: picture}]", "");
    assert!(plan(&mesh, &picture).cleared_by.is_empty());
    // A group's clearance clears the group subject only, not a user of the same name.
    let user = grant("feed", "[{kind: User, name: cnc-officers}]", "");
    assert_eq!(denied_for(&plan(&mesh, &approved(user)), SubjectKind::User), Some(Reason::SubjectNotCleared));
    // At the clearance's expiry, the access goes.
    let later: Timestamp = "2026-12-01T00:00:00Z".parse().expect("time");
    assert!(!people_effective(&rules::plan_grant(&mesh, &bob, later)));
}

#[test]
fn owners_read_an_internal_product_only_when_every_owner_is_cleared() {
    let mut mesh = mesh();
    let stats = mesh.product("police", "stats").expect("stats");
    let p = rules::plan_product(&mesh, &stats, now());
    assert!(!p.owners_read_data);
    assert_eq!(p.owners_not_cleared, ["Group:police-owners"]);
    mesh.add_person_clearance(clearance("Group", "police-owners", "Internal", "2027-01-01T00:00:00Z"));
    let p = rules::plan_product(&mesh, &stats, now());
    assert!(p.owners_read_data);
    assert_eq!(p.next_expiry, Some("2027-01-01T00:00:00Z".parse().expect("time")), "re-planned at its end");
    assert_eq!(
        p.owners_cleared_by,
        ["Group:police-owners: Clearance police-owners-Internal (Internal until 2027-01-01T00:00:00Z)"]
    );
    let role = super::product::build(&stats, &p).owners_role.expect("role");
    assert!(role.rules.unwrap_or_default().iter().any(|r| r.resources.iter().flatten().any(|x| x == "services/proxy")));
}

#[test]
fn owners_read_through_a_grant_where_the_mesh_policy_bounds_grants_of_the_level() {
    let mut mesh = mesh();
    mesh.add_person_clearance(clearance("Group", "police-owners", "Internal", "2027-01-01T00:00:00Z"));
    let stats = mesh.product("police", "stats").expect("stats");
    assert!(rules::plan_product(&mesh, &stats, now()).owners_read_data, "cleared owners, no bound");
    // A bound on Restricted grants only: Internal owners still read by being owners.
    mesh.set_mesh_policy(mesh_policy("maxGrantDuration: {Restricted: 30d}"));
    assert!(rules::plan_product(&mesh, &stats, now()).owners_read_data);
    // Internal grants last at most 90 days: owning the product is no way around it.
    mesh.set_mesh_policy(mesh_policy("maxGrantDuration: {Internal: 90d}"));
    let p = rules::plan_product(&mesh, &stats, now());
    assert!(!p.owners_read_data);
    let role = super::product::build(&stats, &p).owners_role.expect("owners still see the product");
    assert!(
        !role.rules.unwrap_or_default().iter().any(|r| r.resources.iter().flatten().any(|x| x == "services/proxy"))
    );
}

#[test]
fn a_restricted_grant_to_people_needs_two_distinct_valid_approvals_of_its_exact_spec() {
    let mesh = mesh();
    let unsigned = grant("feed", BOTH, "");
    // None: the people are denied, the product subject keeps its grant (scope People).
    let p = plan(&mesh, &unsigned);
    assert_eq!(denied_for(&p, SubjectKind::Group), Some(Reason::ApprovalMissing));
    assert!(p.effective.iter().any(|s| s.kind == SubjectKind::DataProduct));
    let message = &p.denied[0].1.message;
    assert!(message.contains("0 of 2") && message.contains("approver-1, approver-2"), "{message}");

    let one = signed_by(unsigned.clone(), "approver-1", 1);
    assert_eq!(denied_for(&plan(&mesh, &one), SubjectKind::Group), Some(Reason::ApprovalMissing));
    let twice = signed_by(one.clone(), "approver-1", 1);
    let p = plan(&mesh, &twice);
    assert_eq!(denied_for(&p, SubjectKind::Group), Some(Reason::ApprovalMissing), "a duplicate counts once");
    assert_eq!(p.approvals.as_ref().map(|a| a.valid.len()), Some(1));
    // Forged: approver-2's name over key 3; a name the MeshPolicy does not know.
    let forged = signed_by(one.clone(), "approver-2", 3);
    assert_eq!(denied_for(&plan(&mesh, &forged), SubjectKind::Group), Some(Reason::ApprovalMissing));
    let stranger = signed_by(one.clone(), "approver-3", 3);
    assert_eq!(denied_for(&plan(&mesh, &stranger), SubjectKind::Group), Some(Reason::ApprovalMissing));
    // Two distinct valid approvals: effective, and the status lists them.
    let both = approved(unsigned.clone());
    let p = plan(&mesh, &both);
    assert!(people_effective(&p), "{:?}", p.denied);
    assert_eq!(p.approvals.map(|a| a.valid), Some(vec!["approver-1".to_string(), "approver-2".to_string()]));

    // Any edit of the spec voids them: purpose, expiry, a subject, a port.
    let mut edited = both.clone();
    edited.spec.purpose = Some("Olympic hypervision of public safety, extended".into());
    assert_eq!(denied_for(&plan(&mesh, &edited), SubjectKind::Group), Some(Reason::ApprovalMissing));
    let mut edited = both.clone();
    edited.spec.ports = Some(vec!["http".into()]);
    assert_eq!(denied_for(&plan(&mesh, &edited), SubjectKind::Group), Some(Reason::ApprovalMissing));
    // Reordering subjects is no edit (the digest sorts them).
    let mut reordered = both.clone();
    reordered.spec.subjects.reverse();
    assert!(people_effective(&plan(&mesh, &reordered)));
    // Another grant's name: the signature does not carry over.
    let mut renamed = both.clone();
    renamed.metadata.name = Some("g2".into());
    assert_eq!(denied_for(&plan(&mesh, &renamed), SubjectKind::Group), Some(Reason::ApprovalMissing));

    // A key removed from the MeshPolicy voids its signatures.
    let mut rotated = mesh.clone();
    let mut policy = mesh_policy("");
    if let Some(a) = policy.spec.approvals.as_mut() {
        a.approvers[1].public_key = public_key(4);
    }
    rotated.set_mesh_policy(policy);
    assert_eq!(denied_for(&plan(&rotated, &both), SubjectKind::Group), Some(Reason::ApprovalMissing));
    // No MeshPolicy: nobody can approve.
    let mut none = mesh.clone();
    none.mesh_policy = None;
    assert_eq!(denied_for(&plan(&none, &both), SubjectKind::Group), Some(Reason::ApprovalMissing));
}

#[test]
fn approvers_limited_to_domains_or_on_the_consumer_side_do_not_count() {
    // approver-2 owns cnc/picture, a consumer of this grant.
    let mut mesh = mesh();
    mesh.add_product(product("cnc", "picture", "Restricted", "[{kind: User, name: approver-2}]"));
    let with_owner = approved(grant("feed", BOTH, ""));
    // The owner is on the consumer side: the rule holds unless the policy allows it.
    let p = plan(&mesh, &with_owner);
    let rejected = p.approvals.as_ref().map(|a| a.rejected.clone()).unwrap_or_default();
    assert!(rejected.iter().any(|(who, why)| who == "approver-2" && why.contains("consumer side")), "{rejected:?}");
    assert_eq!(denied_for(&p, SubjectKind::Group), Some(Reason::ApprovalMissing));
    mesh.set_mesh_policy(mesh_policy("").tap(|m| {
        if let Some(a) = m.spec.approvals.as_mut() {
            a.consumers_may_approve = true;
        }
    }));
    assert!(people_effective(&plan(&mesh, &with_owner)));
    // An approver limited to other domains does not count.
    mesh.set_mesh_policy(mesh_policy("").tap(|m| {
        if let Some(a) = m.spec.approvals.as_mut() {
            a.consumers_may_approve = true;
            a.approvers[0].domains = vec!["sante".into()];
        }
    }));
    assert_eq!(denied_for(&plan(&mesh, &with_owner), SubjectKind::Group), Some(Reason::ApprovalMissing));
    // Scope All: the whole grant waits for the approvals.
    let unsigned = grant("feed", BOTH, "");
    mesh.set_mesh_policy(mesh_policy("").tap(|m| {
        if let Some(a) = m.spec.approvals.as_mut() {
            a.applies_to = crate::api::ApprovalScope::All;
        }
    }));
    let p = plan(&mesh, &unsigned);
    assert_eq!(p.problem.map(|p| p.reason), Some(Reason::ApprovalMissing));
    assert!(p.effective.is_empty());
    // Internal grants need no approval.
    mesh.add_person_clearance(clearance("User", "bob", "Internal", "2030-01-01T00:00:00Z"));
    assert!(people_effective(&plan(&mesh, &grant("stats", "[{kind: User, name: bob}]", ""))));
}

trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl<T> Tap for T {}

#[test]
fn the_grant_window_starts_holds_asks_for_reassessment_then_suspends() {
    let mut mesh = mesh();
    mesh.add_person_clearance(clearance("User", "bob", "Internal", "2030-01-01T00:00:00Z"));
    let t = |s: &str| -> Timestamp { s.parse().expect("time") };
    // Not yet: nothing effective, re-planned exactly at the start.
    let later = grant("stats", "[{kind: User, name: bob}]", "startsAt: \"2026-12-01T08:00:00Z\"");
    let p = plan(&mesh, &later);
    assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::NotYetValid));
    assert_eq!(p.next_change, Some(t("2026-12-01T08:00:00Z")));
    assert!(rules::plan_grant(&mesh, &later, t("2026-12-01T08:00:00Z")).grants_anything());
    // Reassessment due (default grace 7d): still granted, with a warning, until the grace ends.
    let due = grant("stats", "[{kind: User, name: bob}]", "reassessBy: \"2026-11-25T00:00:00Z\"");
    let p = plan(&mesh, &due);
    assert!(p.grants_anything());
    assert_eq!(p.reassessment_due.as_ref().map(|p| p.reason), Some(Reason::ReassessmentDue));
    assert_eq!(p.next_change, Some(t("2026-12-02T00:00:00Z")), "the end of the grace");
    let status = super::status::policy(&due, &p, now());
    let condition = crate::api::find_condition(&status.conditions, "ReassessmentDue").expect("condition");
    assert_eq!(condition.status, crate::api::ConditionStatus::True);
    let suspended = rules::plan_grant(&mesh, &due, t("2026-12-02T00:00:00Z"));
    assert_eq!(suspended.problem.map(|p| p.reason), Some(Reason::ReassessmentDue));
    // A configured grace.
    mesh.set_mesh_policy(mesh_policy("reassessmentGrace: 1d"));
    assert!(!plan(&mesh, &due).grants_anything(), "grace of one day ended on 2026-11-26");
    // The next reassessment is a boundary too.
    let ahead = grant("stats", "[{kind: User, name: bob}]", "reassessBy: \"2026-11-30T00:00:00Z\"");
    assert_eq!(plan(&mesh, &ahead).next_change, Some(t("2026-11-30T00:00:00Z")));
}

#[test]
fn grants_longer_than_the_mesh_policy_allows_are_refused() {
    let mut mesh = mesh();
    mesh.add_person_clearance(clearance("User", "bob", "Internal", "2030-01-01T00:00:00Z"));
    mesh.set_mesh_policy(mesh_policy("maxGrantDuration: {Internal: 30d, Restricted: 90d}"));
    // Created 2026-11-01, expires 2027-01-01: 61 days > 30d.
    let long = grant("stats", "[{kind: User, name: bob}]", "");
    let p = plan(&mesh, &long);
    assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::DurationTooLong));
    assert!(p.problem.as_ref().is_some_and(|p| p.message.contains("30d")), "{:?}", p.problem);
    // Counted from startsAt when given.
    let short = grant("stats", "[{kind: User, name: bob}]", "startsAt: \"2026-12-15T00:00:00Z\"");
    assert_eq!(plan(&mesh, &short).problem.map(|p| p.reason), Some(Reason::NotYetValid));
    let at: Timestamp = "2026-12-16T00:00:00Z".parse().expect("time");
    assert!(rules::plan_grant(&mesh, &short, at).grants_anything());
    // No expiry where a limit is set: refused.
    let mut open = grant("open", "[{kind: User, name: bob}]", "");
    open.spec.expires_at = None;
    mesh.set_mesh_policy(mesh_policy("maxGrantDuration: {Public: 365d}"));
    assert_eq!(plan(&mesh, &open).problem.map(|p| p.reason), Some(Reason::DurationTooLong));
}

/// Before its start a grant is effective for nobody, but it is checked whole: a grant
/// that will not be valid as written says why now — longer than allowed
/// (`DurationTooLong`), then approvals missing (`ApprovalMissing`, naming who has not
/// signed), each before `NotYetValid`; a subject's own refusal (a clearance that will
/// have ended at the start) is listed for that subject.
#[test]
fn a_grant_before_its_start_is_checked_whole_and_says_first_what_a_person_must_do() {
    let mut mesh = mesh();
    mesh.set_mesh_policy(mesh_policy("maxGrantDuration: {Restricted: 90d}"));
    let t = |s: &str| -> Timestamp { s.parse().expect("time") };
    let start = "startsAt: \"2026-12-01T00:00:00Z\"";
    let group = |p: &GrantPlan| denied_for(p, SubjectKind::Group);
    let product = |p: &GrantPlan| denied_for(p, SubjectKind::DataProduct);

    // Scheduled and approved: it only waits (Reconciling, not Stalled), re-planned at the start.
    let scheduled = approved(grant("feed", BOTH, start));
    let p = plan(&mesh, &scheduled);
    assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::NotYetValid));
    assert!(p.effective.is_empty() && !p.grants_anything());
    assert_eq!((group(&p), product(&p)), (Some(Reason::NotYetValid), Some(Reason::NotYetValid)));
    assert_eq!((p.next_change, p.reach_until), (Some(t("2026-12-01T00:00:00Z")), Some(t("2026-12-01T00:00:00Z"))));
    let status = super::status::policy(&scheduled, &p, now());
    let holds = |kind: &str| {
        crate::api::find_condition(&status.conditions, kind).map(|c| c.status)
            == Some(crate::api::ConditionStatus::True)
    };
    assert!(holds("Reconciling") && !holds("Stalled"));
    assert!(rules::plan_grant(&mesh, &scheduled, t("2026-12-01T00:00:00Z")).grants_anything());

    // Scheduled, unapproved: ApprovalMissing now, naming the approvers, not NotYetValid.
    let unsigned = grant("feed", BOTH, start);
    let p = plan(&mesh, &unsigned);
    let problem = p.problem.clone().expect("a reason");
    assert_eq!(problem.reason, Reason::ApprovalMissing);
    assert!(problem.message.contains("approver-1, approver-2"), "{}", problem.message);
    assert!(problem.message.contains("starts at 2026-12-01T00:00:00Z"), "{}", problem.message);
    assert_eq!((group(&p), product(&p)), (Some(Reason::ApprovalMissing), Some(Reason::NotYetValid)));
    assert!(p.effective.is_empty());
    let status = super::status::policy(&unsigned, &p, now());
    let stalled = crate::api::find_condition(&status.conditions, "Stalled").expect("Stalled");
    assert_eq!((stalled.status, stalled.reason.as_str()), (crate::api::ConditionStatus::True, "ApprovalMissing"));
    // An edit of the scheduled grant voids its approvals like any other.
    let mut edited = scheduled.clone();
    edited.spec.starts_at = Some("2026-12-02T00:00:00Z".into());
    assert_eq!(plan(&mesh, &edited).problem.map(|p| p.reason), Some(Reason::ApprovalMissing));

    // Longer than the MeshPolicy allows, approved or not: DurationTooLong before its start.
    let mut long = grant("feed", BOTH, start);
    long.spec.expires_at = Some("2027-06-01T00:00:00Z".into());
    for candidate in [long.clone(), approved(long)] {
        let p = plan(&mesh, &candidate);
        assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::DurationTooLong), "{:?}", p.problem);
        assert!(p.problem.as_ref().is_some_and(|p| p.message.contains("90d")));
    }

    // Clearances are judged at the start: one that ends before it refuses the group now.
    mesh.people.clear();
    mesh.add_person_clearance(clearance("Group", "cnc-officers", "Restricted", "2026-11-30T00:00:00Z"));
    let p = plan(&mesh, &scheduled);
    assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::NotYetValid));
    assert_eq!((group(&p), product(&p)), (Some(Reason::SubjectNotCleared), Some(Reason::NotYetValid)));
    let message = &p.denied.iter().find(|(s, _)| s.kind == SubjectKind::Group).expect("denied").1.message;
    assert!(message.contains("at the grant's start 2026-12-01T00:00:00Z"), "{message}");
    // Uncleared and unapproved: the grant still says its approvals are missing.
    let p = plan(&mesh, &unsigned);
    assert_eq!(p.problem.as_ref().map(|p| p.reason), Some(Reason::ApprovalMissing));
    assert_eq!(group(&p), Some(Reason::SubjectNotCleared));
}

#[test]
fn durations_read_days_hours_and_minutes_only() {
    let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
    assert_eq!(secs("90d"), Some(90 * 86_400));
    assert_eq!(secs("1d12h"), Some(36 * 3_600));
    assert_eq!(secs("30m"), Some(1_800));
    for bad in ["", "d", "1w", "12h1d", "-1d", "1.5d", "1d 2h"] {
        assert_eq!(secs(bad), None, "{bad:?}");
    }
    assert_eq!(parse_duration(people::DEFAULT_REASSESSMENT_GRACE), Some(SignedDuration::from_hours(7 * 24)));
}

#[test]
fn the_digest_covers_the_whole_spec_but_the_approvals() {
    let g = grant("feed", BOTH, "");
    let signed = approved(g.clone());
    assert_eq!(people::digest(&g), people::digest(&signed));
    assert!(people::canonical(&g).starts_with(r#"{"apiVersion":"drmesh.io/v1alpha1","kind":"AccessPolicy","metadata":{"name":"g","namespace":"police"},"spec":{"#));
    let mut other_ns = g.clone();
    other_ns.metadata.namespace = Some("sante".into());
    assert_ne!(people::digest(&g), people::digest(&other_ns));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// No person is effective without a clearance in force at least at the product's
    /// level, nor on a Restricted product without two distinct approvals that verify
    /// over the exact spec, whatever the clearances and signatures.
    #[test]
    fn no_person_is_effective_without_clearance_and_approvals(
        level in 0..3usize,
        clearances in prop::collection::vec((0..2u8, 0..3usize, -48..48i64), 0..4),
        signers in prop::collection::vec((1..4u8, 1..4u8), 0..4),
        edit in 0..4u8,
        hours in 0..72i64,
        start in prop::option::of(-24..96i64),
    ) {
        let mut mesh = mesh();
        mesh.people.clear();
        let levels = ["Public", "Internal", "Restricted"];
        let names = ["Group:cnc-officers", "User:bob"];
        for (who, l, offset) in &clearances {
            let (kind, name) = names[*who as usize].split_once(':').expect("kind:name");
            let until = now().checked_add(SignedDuration::from_hours(*offset)).expect("time");
            mesh.add_person_clearance(clearance(kind, name, levels[*l], &until.to_string()));
        }
        let product = ["open", "stats", "feed"][level];
        let starts_at = start.map(|h| now().checked_add(SignedDuration::from_hours(h)).expect("time"));
        let window = starts_at.map(|t| format!("startsAt: \"{t}\"")).unwrap_or_default();
        let mut policy = grant(product, "[{kind: Group, name: cnc-officers}, {kind: User, name: bob}]", &window);
        for (key, claimed) in &signers {
            policy = signed_by(policy, &format!("approver-{claimed}"), *key);
        }
        // An edit after the signatures (0: none).
        match edit {
            1 => policy.spec.purpose = Some("another purpose, longer than ten".into()),
            2 => policy.spec.expires_at = Some("2026-12-31T00:00:00Z".into()),
            3 => policy.spec.subjects.push(crate::api::Subject::named(SubjectKind::User, "eve")),
            _ => {}
        }
        let at = now().checked_add(SignedDuration::from_hours(hours)).expect("time");
        let plan = rules::plan_grant(&mesh, &policy, at);
        let classification = Classification::ALL[level];
        let mut valid: Vec<u8> = signers.iter().filter(|(k, c)| k == c && *k <= 2).map(|(k, _)| *k).collect();
        valid.sort();
        valid.dedup();
        let approved = edit == 0 && valid.len() >= 2;
        if starts_at.is_some_and(|s| s > at) {
            prop_assert!(plan.effective.is_empty(), "effective before its start: {:?}", plan.effective);
            // Waiting for the start never hides missing approvals.
            if classification == Classification::Restricted && !approved {
                prop_assert_eq!(plan.problem.as_ref().map(|p| p.reason), Some(Reason::ApprovalMissing));
            }
        }
        for subject in plan.effective.iter().filter(|s| matches!(s.kind, SubjectKind::User | SubjectKind::Group)) {
            let kind = if subject.kind == SubjectKind::User { "User" } else { "Group" };
            let name = subject.name.clone().unwrap_or_default();
            if classification > Classification::Public {
                // Judged here from the generated data, not from the core's lookup.
                let cleared = clearances.iter().any(|(who, l, offset)| {
                    names[*who as usize] == format!("{kind}:{name}")
                        && Classification::ALL[*l] >= classification
                        && *offset > hours
                });
                prop_assert!(cleared, "{kind}:{name} effective on {classification} without clearance at +{hours}h");
            }
            if classification == Classification::Restricted {
                prop_assert_eq!(edit, 0, "an edit after approval is never effective");
                prop_assert!(approved, "effective with approvals {:?}", signers);
            }
        }
    }
}

// The view lookup the operator overrides returns what the snapshot holds.
#[test]
fn the_snapshot_finds_clearances_by_kind_and_name() {
    let mesh = mesh();
    assert_eq!(mesh.clearances_of(crate::api::OwnerKind::Group, "cnc-officers").len(), 1);
    assert!(mesh.clearances_of(crate::api::OwnerKind::User, "cnc-officers").is_empty());
}
