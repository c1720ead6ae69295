//! AccessPolicy controller: decide the grant (pure) -> build (pure) -> apply -> status,
//! revoke at expiry, and record every grant, denial, expiry and revocation.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::child_set::{ChildSet, Network};
use super::context::Context;
use super::error::Error;
use super::wait_until;
use crate::api::{AccessPolicy, AccessPolicyStatus, ConditionStatus, condition_type, find_condition};
use crate::audit;
use crate::mesh::grant;
use crate::mesh::labels::ACCESS_POLICY;
use crate::mesh::rules::{self, GrantPlan, Reason, subject_display};
use crate::mesh::status;

pub const CONTROLLER: &str = "accesspolicy";

#[instrument(skip_all, fields(policy = %policy.name_any(), namespace = policy.namespace().unwrap_or_default()))]
/// Reconciles one AccessPolicy: returns when to look again unprompted (None: on a change).
pub async fn reconcile(policy: &AccessPolicy, ctx: &Context, withdrawing: bool) -> Result<Option<Duration>, Error> {
    let namespace = policy.namespace().ok_or(Error::MissingNamespace)?;
    let uid = policy.uid().ok_or(Error::MissingUid)?;
    let now = ctx.now();
    let mut plan = rules::plan_grant(&ctx.caches, policy, now);
    if withdrawing && plan.problem.is_none() {
        let problem = rules::Problem::new(Reason::Deleting, format!("namespace {namespace} is being deleted"));
        plan = GrantPlan::refused(plan.product.clone(), &policy.spec.subjects, problem, plan.expires_at);
    }
    let name = policy.name_any();
    let children = ChildSet {
        applier: &ctx.policies,
        caches: &ctx.caches,
        namespace: &namespace,
        owner_uid: &uid,
        label: (ACCESS_POLICY, &name),
        network: Network::Grants,
        children: grant::build(policy, &plan).into_ordered(),
    };
    // After a refusal, ask first: a grant that would be refused again stays withdrawn
    // instead of being half-applied on each retry.
    let checked = if ctx.refused.is_marked(&uid) { children.dry_run().await } else { Ok(()) };
    // Durable or refused: a grant that widens access is recorded before it is applied.
    let mut recorded = false;
    if let Err(error) = match checked {
        Ok(()) => match record_before_granting(ctx, policy, &plan, now).await {
            Ok(done) => {
                recorded = done;
                children.reconcile().await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    } {
        // A grant that cannot be applied whole is not applied at all: withdraw what it
        // had, then say why (the API server's message) and retry with backoff.
        if let Some(problem) = error.problem() {
            ctx.refused.mark(&uid, policy.meta().generation);
            ctx.withdraw(&namespace, &uid, (ACCESS_POLICY, &policy.name_any()), true).await?;
            let refused = GrantPlan::refused(plan.product.clone(), &policy.spec.subjects, problem, plan.expires_at);
            let status = status::policy(policy, &refused, now);
            write_status(ctx, policy, &namespace, &refused, status, false).await?;
        }
        return Err(error);
    }
    ctx.refused.clear(&uid);
    let status = status::policy(policy, &plan, now);
    write_status(ctx, policy, &namespace, &plan, status, recorded).await?;
    // Wake up at the next boundary (expiry, start, reassessment, end of its grace, end of
    // a clearance it relies on) to re-decide; expired grants need nothing more.
    let next = plan.next_change.filter(|t| *t > now);
    Ok(wait_until(next, now))
}

/// A grant that widens access (a new grant, or an edit of one in force) is recorded before
/// anything is applied; if its record cannot be written it is not applied (unless
/// `--audit-failure=proceed`). Returns whether its record was written here.
async fn record_before_granting(
    ctx: &Context,
    policy: &AccessPolicy,
    plan: &GrantPlan,
    now: jiff::Timestamp,
) -> Result<bool, Error> {
    let before = policy.status.clone().unwrap_or_default();
    let after = status::policy(policy, plan, now);
    if policy.status.is_some() && before == after {
        return Ok(false);
    }
    let Some(report) = transition(policy, plan, &before, &after) else { return Ok(false) };
    if report.decision != audit::Decision::Granted {
        return Ok(false);
    }
    match ctx.report_with_ports(report, granted_ports(plan)).await {
        Err(error) if ctx.audit_refuses => Err(Error::Audit(error)),
        _ => Ok(true),
    }
}

/// `recorded`: the grant's own record was written before it was applied.
async fn write_status(
    ctx: &Context,
    policy: &AccessPolicy,
    namespace: &str,
    plan: &GrantPlan,
    status: AccessPolicyStatus,
    recorded: bool,
) -> Result<(), Error> {
    let previous = policy.status.clone().unwrap_or_default();
    if policy.status.is_some() && previous == status {
        return Ok(());
    }
    ctx.fence.pass()?;
    let api: Api<AccessPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    let written = api
        .patch_status(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&super::status_patch(&previous, &status)),
        )
        .await;
    match written {
        Ok(_) => {}
        // A grant created before the CRD refused its name: the CRD's name rule sits at the
        // object's root, so the API server refuses every status write of it. Its access is
        // withdrawn already; say so once (Event, audit record) instead of retrying forever.
        Err(kube::Error::Api(response))
            if response.code == 422 && plan.problem.as_ref().is_some_and(|p| p.reason == Reason::InvalidName) =>
        {
            if ctx.status_refused.first_time(policy.uid().as_deref().unwrap_or_default(), policy.meta().generation) {
                tracing::warn!(message = %response.message, "the API server refuses the status of a grant with an invalid name");
                report_transition(ctx, policy, plan, &previous, &status, recorded).await;
            }
            return Ok(());
        }
        Err(source) => return Err(Error::Status { name: policy.name_any(), source }),
    }
    report_transition(ctx, policy, plan, &previous, &status, recorded).await;
    Ok(())
}

/// The audit decision for a change of the Granted condition (or of the denied subjects).
fn decision(
    was: bool,
    is: bool,
    reason_changed: bool,
    reason_now: Reason,
    denials_changed: bool,
) -> Option<audit::Decision> {
    let expired = reason_now == Reason::Expired;
    match (was, is) {
        (false, true) => Some(audit::Decision::Granted),
        (true, false) if expired => Some(audit::Decision::Expired),
        (true, false) => Some(audit::Decision::Revoked),
        (false, false) if reason_changed && expired => Some(audit::Decision::Expired),
        (false, false) if reason_changed => Some(audit::Decision::Denied),
        _ if denials_changed => Some(audit::Decision::Denied),
        _ => None,
    }
}

async fn report_transition(
    ctx: &Context,
    policy: &AccessPolicy,
    plan: &GrantPlan,
    before: &AccessPolicyStatus,
    after: &AccessPolicyStatus,
    recorded: bool,
) {
    if let Some(report) = reassessment_falls_due(policy, plan, before, after) {
        // Counted and alerted by the sink when it cannot be written, like a narrowing.
        let _ = ctx.report(report).await;
    }
    let Some(report) = transition(policy, plan, before, after) else { return };
    if recorded && report.decision == audit::Decision::Granted {
        return; // written before the grant was applied
    }
    // A record that cannot be written is counted and alerted by the sink; what it
    // narrows is applied anyway, and the sink writes it once it can.
    let ports = if report.decision == audit::Decision::Granted { granted_ports(plan) } else { vec![] };
    let _ = ctx.report_with_ports(report, ports).await;
}

/// The ports a grant gives, as its `Granted` record names them (`NUMBER/NAME`): `drmesh
/// audit reads` covers a read through the proxy only on them.
fn granted_ports(plan: &GrantPlan) -> Vec<String> {
    plan.ports.iter().map(|(number, name)| format!("{number}/{name}")).collect()
}

/// The report of a status change of `policy`: a grant, an edit of one in force, a
/// revocation, an expiry or a denial; None when access did not change.
fn transition(
    policy: &AccessPolicy,
    plan: &GrantPlan,
    before: &AccessPolicyStatus,
    after: &AccessPolicyStatus,
) -> Option<super::Report> {
    let granted = |s: &AccessPolicyStatus| find_condition(&s.conditions, condition_type::GRANTED).cloned();
    let now_granted = granted(after)?;
    let old = granted(before);
    let was = old.as_ref().is_some_and(|c| c.status == ConditionStatus::True);
    let is = now_granted.status == ConditionStatus::True;
    let reason_changed = old.as_ref().map(|c| &c.reason) != Some(&now_granted.reason);
    // The reason of the Granted condition just written, from the plan it was written from.
    let (_, ready_reason, ready_message) = status::policy_readiness(plan);
    let granted_reason = if plan.grants_anything() { Reason::Granted } else { ready_reason };
    let denials_changed = before.denied_subjects != after.denied_subjects && !after.denied_subjects.is_empty();
    // A grant edited while in force (subjects, ports, expiry) is a new grant: record it.
    let grant_changed = was
        && is
        && (before.effective_subjects != after.effective_subjects
            || before.expires_at != after.expires_at
            || before.observed_generation != after.observed_generation);
    let record = if grant_changed {
        Some(audit::Decision::Granted)
    } else {
        decision(was, is, reason_changed, granted_reason, denials_changed)
    };
    let decision = record?;

    let namespace = policy.namespace().unwrap_or_default();
    let subjects: Vec<String> = match decision {
        audit::Decision::Granted => plan.effective.iter().map(subject_display).collect(),
        audit::Decision::Denied if plan.problem.is_none() => {
            plan.denied.iter().map(|(s, _)| subject_display(s)).collect()
        }
        _ => policy.spec.subjects.iter().map(subject_display).collect(),
    };
    let (why, message) = match decision {
        audit::Decision::Denied => plan
            .problem
            .clone()
            .or_else(|| plan.denied.first().map(|(_, p)| p.clone()))
            .map(|p| (p.reason, p.message))
            .unwrap_or((granted_reason, ready_message)),
        // What the grant gives now, and what it gave before an edit in force.
        audit::Decision::Granted => {
            (granted_reason, format!("{ready_message}; {}", access_given(plan, before, grant_changed)))
        }
        _ => (granted_reason, ready_message),
    };
    Some(super::Report {
        object: policy.object_ref(&()),
        decision,
        reason: why,
        message,
        product: audit::ObjectRef { namespace: namespace.clone(), name: policy.spec.data_product.clone() },
        classification: plan
            .product
            .as_ref()
            .map(|p| p.spec.classification.to_string())
            .unwrap_or_else(|| "Unknown".into()),
        subjects,
        purpose: policy.spec.purpose.clone(),
        expires_at: policy.spec.expires_at.clone(),
        policy: Some(policy_ref(policy)),
    })
}

/// The access a grant gives, as its record says it: subjects, ports, expiry, approvers,
/// the Clearances its people's access rests on;
/// and, for an edit of a grant in force, what it gave before (a narrowing edit reads as
/// such: fewer subjects or ports, an earlier expiry).
fn access_given(plan: &GrantPlan, before: &AccessPolicyStatus, edited: bool) -> String {
    let ports = granted_ports(plan);
    let subjects: Vec<String> = plan.effective.iter().map(subject_display).collect();
    let mut text = format!(
        "access now: {} on port(s) {} until {}",
        subjects.join(", "),
        ports.join(", "),
        plan.expires_at.map_or("no expiry".to_string(), |t| t.to_string())
    );
    if let Some(approvals) = plan.approvals.as_ref().filter(|a| !a.valid.is_empty()) {
        text.push_str(&format!("; approved by {}", approvals.valid.join(", ")));
    }
    if !plan.cleared_by.is_empty() {
        text.push_str(&format!("; cleared by {}", plan.cleared_by.join(", ")));
    }
    if edited {
        let was: Vec<String> = before.effective_subjects.iter().map(subject_display).collect();
        text.push_str(&format!(
            "; before the edit: {} until {}",
            was.join(", "),
            before.expires_at.as_deref().unwrap_or("no expiry")
        ));
    }
    text
}

/// The report when `reassessBy` passes: the grant holds until the grace ends (its
/// suspension is then recorded as a revocation), but a person must act, so the security
/// officers get a `Warned` audit record and a Warning Event, reason `ReassessmentDue`,
/// once per passing (the condition turning True), naming the subjects still in force.
fn reassessment_falls_due(
    policy: &AccessPolicy,
    plan: &GrantPlan,
    before: &AccessPolicyStatus,
    after: &AccessPolicyStatus,
) -> Option<super::Report> {
    fn due(s: &AccessPolicyStatus) -> Option<&crate::api::Condition> {
        find_condition(&s.conditions, condition_type::REASSESSMENT_DUE).filter(|c| c.status == ConditionStatus::True)
    }
    let (None, Some(condition)) = (due(before), due(after)) else { return None };
    let namespace = policy.namespace().unwrap_or_default();
    Some(super::Report {
        object: policy.object_ref(&()),
        decision: audit::Decision::Warned,
        reason: Reason::ReassessmentDue,
        message: condition.message.clone(),
        product: audit::ObjectRef { namespace, name: policy.spec.data_product.clone() },
        classification: plan
            .product
            .as_ref()
            .map(|p| p.spec.classification.to_string())
            .unwrap_or_else(|| "Unknown".into()),
        subjects: plan.effective.iter().map(subject_display).collect(),
        purpose: policy.spec.purpose.clone(),
        expires_at: policy.spec.expires_at.clone(),
        policy: Some(policy_ref(policy)),
    })
}

/// Policies whose status says they grant access now.
fn policy_ref(policy: &AccessPolicy) -> audit::PolicyRef {
    audit::PolicyRef {
        namespace: policy.namespace().unwrap_or_default(),
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
        generation: policy.meta().generation.unwrap_or_default(),
    }
}

/// After this replica's first reconcile of `policy` since it took the audit chain over,
/// when that reconcile recorded nothing: the previous leader left it in force, and it no
/// longer grants, with no record of the change in the chain (the previous leader's was
/// held while its sink failed and lost with it, or the change was made while no operator
/// led). Recorded now, marked as found at take-over (see `AuditSink::left_in_force`).
pub async fn record_found_narrowed(ctx: &Context, policy: &AccessPolicy) {
    let Some(uid) = policy.uid() else { return };
    if ctx.audit.left_in_force(&uid).is_none() {
        return;
    }
    let status = policy.status.clone().unwrap_or_default();
    let granted = find_condition(&status.conditions, condition_type::GRANTED);
    if granted.is_some_and(|c| c.status == ConditionStatus::True) {
        return;
    }
    let reason = granted.map_or_else(|| "Unknown".to_string(), |c| c.reason.clone());
    let decision = if reason == Reason::Expired.as_str() { audit::Decision::Expired } else { audit::Decision::Revoked };
    let namespace = policy.namespace().unwrap_or_default();
    let message = format!(
        "AccessPolicy {namespace}/{} no longer grants access ({reason}), and the chain has no record of it: \
         found when this replica took the audit chain over",
        policy.name_any()
    );
    let written = ctx.audit.record(withdrawal(ctx, policy, decision, reason, message)).await;
    if let Err(error) = written {
        tracing::warn!(%error, "audit record of access found narrowed not written");
    }
}

/// A deleted policy: its children go with the garbage collector; the revocation is recorded
/// (by the leader only: standbys see the same deletion).
pub async fn record_deletion(ctx: &Context, policy: &AccessPolicy) {
    if !ctx.fence.open() {
        return;
    }
    let was_granted = policy
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, condition_type::GRANTED))
        .is_some_and(|c| c.status == ConditionStatus::True);
    if !was_granted {
        return;
    }
    let namespace = policy.namespace().unwrap_or_default();
    ctx.metrics
        .decisions
        .get_or_create(&crate::telemetry::DecisionLabels { decision: "Revoked", reason: Reason::PolicyDeleted.into() })
        .inc();
    let message = format!("AccessPolicy {namespace}/{} was deleted", policy.name_any());
    let record = withdrawal(ctx, policy, audit::Decision::Revoked, Reason::PolicyDeleted.into(), message);
    let written = ctx.audit.record(record).await;
    if let Err(error) = written {
        tracing::debug!(%error, "audit record not written");
    }
}

/// The record of access a policy no longer gives (no ports: the whole grant goes).
fn withdrawal(
    ctx: &Context,
    policy: &AccessPolicy,
    decision: audit::Decision,
    reason: String,
    message: String,
) -> audit::Event {
    let namespace = policy.namespace().unwrap_or_default();
    audit::Event {
        time: ctx.now().to_string(),
        actor: ctx.actor.clone(),
        decision,
        reason,
        message,
        product: audit::ObjectRef { namespace: namespace.clone(), name: policy.spec.data_product.clone() },
        classification: ctx
            .caches
            .product(&namespace, &policy.spec.data_product)
            .map(|p| p.spec.classification.to_string())
            .unwrap_or_else(|| "Unknown".into()),
        subjects: policy.spec.subjects.iter().map(subject_display).collect(),
        purpose: policy.spec.purpose.clone(),
        expires_at: policy.spec.expires_at.clone(),
        policy: Some(policy_ref(policy)),
        ports: vec![],
        while_no_operator_led: None,
    }
}

use crate::mesh::MeshView;
