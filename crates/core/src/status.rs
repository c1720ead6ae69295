//! The status each drmesh object should have, from its plan (pure): the controllers write
//! it, `drmesh validate` reads the same conditions. Conditions follow kstatus: `Ready`,
//! `Reconciling` (waiting for something that may still arrive) and `Stalled` (a person
//! must act), plus `Granted` on AccessPolicies and `Isolated` on DataProducts.

use jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::api::{
    AccessPolicy, AccessPolicyStatus, Condition, ConditionStatus, DataProduct, DataProductRef, DataProductStatus,
    DataSource, DataSourceStatus, DeniedSubject, InputState, InputStatus, condition_type, set_condition,
};
use crate::rules::{self, GrantPlan, ProductPlan, Reason};
use crate::source::{SecretState, source_problem};

/// The status the policy should have (pure).
/// Why a policy is Ready or not, as its `Ready` condition says: (ready, reason, message).
/// Its `Granted` condition carries `Granted` when the plan grants anything, else the same.
pub fn policy_readiness(plan: &GrantPlan) -> (bool, Reason, String) {
    match (&plan.problem, plan.denied.first()) {
        (Some(problem), _) => (false, problem.reason, problem.message.clone()),
        (None, Some((_, problem))) => {
            (false, problem.reason, format!("{} subject(s) denied: {}", plan.denied.len(), problem.message))
        }
        (None, None) if !plan.grants_anything() => (false, Reason::NoSubjectGranted, "nothing to grant".to_string()),
        (None, None) => {
            let until = plan.expires_at.map(|t| format!(" until {t}")).unwrap_or_default();
            (true, Reason::Granted, format!("{} subject(s) granted{until}", plan.effective.len()))
        }
    }
}

pub fn policy(policy: &AccessPolicy, plan: &GrantPlan, now: Timestamp) -> AccessPolicyStatus {
    let generation = policy.meta().generation;
    let mut conditions = policy.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let granted = plan.grants_anything();
    let (ready, why, message) = policy_readiness(plan);
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    let status_of = |b: bool| {
        if b { ConditionStatus::True } else { ConditionStatus::False }
    };
    set_condition(
        &mut conditions,
        Condition::new(condition_type::READY, status_of(ready), why, message.clone(), generation, time.clone()),
    );
    let granted_reason = if granted { Reason::Granted } else { why };
    set_condition(
        &mut conditions,
        Condition::new(
            condition_type::GRANTED,
            status_of(granted),
            granted_reason,
            message.clone(),
            generation,
            time.clone(),
        ),
    );
    // kstatus: a missing product may still arrive (any-order apply), a grant may not have
    // started yet: Reconciling. Every other refusal needs a person to act: Stalled.
    // So may a grant waiting for its audit record (retried until the sink writes again).
    let waiting = !ready && matches!(why, Reason::DataProductNotFound | Reason::NotYetValid | Reason::AuditUnavailable);
    // A warning while the grant still holds; once suspended, the Granted condition says so.
    let (due, due_reason, due_message) = match (&plan.reassessment_due, &plan.problem) {
        (Some(p), _) => (true, Reason::ReassessmentDue, p.message.clone()),
        (None, Some(p)) if p.reason == Reason::ReassessmentDue => (true, Reason::ReassessmentDue, p.message.clone()),
        _ => (false, Reason::Ready, "no reassessment due".to_string()),
    };
    if due || crate::api::find_condition(&conditions, condition_type::REASSESSMENT_DUE).is_some() {
        set_condition(
            &mut conditions,
            Condition::new(
                condition_type::REASSESSMENT_DUE,
                status_of(due),
                due_reason,
                due_message,
                generation,
                time.clone(),
            ),
        );
    }
    set_condition(
        &mut conditions,
        Condition::new(condition_type::RECONCILING, status_of(waiting), why, message.clone(), generation, time.clone()),
    );
    set_condition(
        &mut conditions,
        Condition::new(condition_type::STALLED, status_of(!ready && !waiting), why, message, generation, time),
    );
    AccessPolicyStatus {
        observed_generation: generation,
        conditions,
        effective_subjects: plan.effective.clone(),
        denied_subjects: plan
            .denied
            .iter()
            .map(|(subject, problem)| DeniedSubject {
                subject: subject.clone(),
                reason: problem.reason.to_string(),
                message: Some(problem.message.clone()),
            })
            .collect(),
        subject_count: Some(plan.effective.len() as i32),
        expires_at: plan.expires_at.map(|t| t.to_string()),
        approved_by: plan.approvals.as_ref().map(|a| a.valid.clone()).unwrap_or_default(),
    }
}

/// The status the source should have (pure).
pub fn source(
    source: &DataSource,
    consumers: &[String],
    secret: SecretState,
    clearance: crate::api::Classification,
    failure: Option<&rules::Problem>,
    now: Timestamp,
) -> DataSourceStatus {
    let generation = source.meta().generation;
    let namespace = source.namespace().unwrap_or_default();
    let mut conditions = source.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let problem = failure.map(|p| (p.clone(), true)).or_else(|| source_problem(source, secret, clearance));
    let (ready, reconciling, stalled, why, message) = match problem {
        Some((problem, stalled)) => (false, !stalled, stalled, problem.reason, problem.message),
        None => (true, false, false, Reason::Ready, format!("{} consumer(s)", consumers.len())),
    };
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    let status_of = |b: bool| {
        if b { ConditionStatus::True } else { ConditionStatus::False }
    };
    for (type_, truth) in
        [(condition_type::READY, ready), (condition_type::RECONCILING, reconciling), (condition_type::STALLED, stalled)]
    {
        set_condition(
            &mut conditions,
            Condition::new(type_, status_of(truth), why, message.clone(), generation, time.clone()),
        );
    }
    DataSourceStatus {
        observed_generation: generation,
        conditions,
        consumers: consumers.iter().map(|c| DataProductRef::new(namespace.clone(), c.clone())).collect(),
        consumer_count: Some(consumers.len() as i32),
    }
}

fn input_status(input: &rules::InputPlan) -> InputStatus {
    let reference = match &input.input {
        rules::InputKey::Source(name) => format!("DataSource {name}"),
        rules::InputKey::Product(key) => format!("DataProduct {key}"),
    };
    match (&input.outcome, &input.waiting) {
        (Ok(_), None) => InputStatus { reference, state: InputState::Ready, reason: None, message: None },
        (Ok(_), Some(problem)) | (Err(problem), _) => {
            let pending = [Reason::InputNotFound, Reason::InputNotReady].contains(&problem.reason);
            let state = if pending { InputState::Pending } else { InputState::Denied };
            InputStatus {
                reference,
                state,
                reason: Some(problem.reason.to_string()),
                message: Some(problem.message.clone()),
            }
        }
    }
}

/// The status the product should have (pure). `available` is `None` when no Deployment may run.
/// Why a product is Ready or not, as its `Ready` condition says: whether it is, the
/// reason, the message, and whether it waits (`Reconciling`) or needs a person (`Stalled`).
pub fn product_readiness(
    product: &DataProduct,
    plan: &ProductPlan,
    available: Option<i32>,
) -> (bool, Reason, String, Wait) {
    let desired = product.spec.runtime.replicas;
    if let Some(blocker) = &plan.blocker {
        (false, blocker.reason, format!("{} — the product does not run", blocker.message), Wait::Stalled)
    } else if let Some(problem) = plan.input_problem() {
        (false, problem.reason, problem.message.clone(), Wait::Reconciling)
    } else if available.unwrap_or(0) < desired {
        (
            false,
            Reason::Progressing,
            format!("{} of {desired} replicas available", available.unwrap_or(0)),
            Wait::Reconciling,
        )
    } else {
        (true, Reason::Ready, format!("{desired} replicas available; all inputs granted"), Wait::No)
    }
}

/// What a not-Ready object waits for (kstatus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Ready.
    No,
    /// Something that may still arrive: `Reconciling`.
    Reconciling,
    /// A person: `Stalled`.
    Stalled,
}

/// The owners who read the product's data by being owners (`status.ownersWithDataAccess`),
/// as `Kind:name`.
pub fn owners_with_data_access(product: &DataProduct, plan: &ProductPlan) -> Vec<String> {
    if plan.owners_read_data {
        product.spec.owners.iter().map(|o| format!("{:?}:{}", o.kind, o.name)).collect()
    } else {
        vec![]
    }
}

pub fn product(
    product: &DataProduct,
    plan: &ProductPlan,
    available: Option<i32>,
    consumers: Vec<DataProductRef>,
    exposure: Option<&rules::Problem>,
    now: Timestamp,
) -> DataProductStatus {
    let generation = product.meta().generation;
    let previous = product.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions.clone();
    let (is_ready, why, msg, wait) = product_readiness(product, plan, available);
    let (ready, reconciling, stalled) = (
        (is_ready, why, msg.clone()),
        (wait == Wait::Reconciling, why, msg.clone()),
        (wait == Wait::Stalled, why, msg),
    );
    let time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now);
    for (type_, (truth, why, message)) in
        [(condition_type::READY, ready), (condition_type::RECONCILING, reconciling), (condition_type::STALLED, stalled)]
    {
        let status = if truth { ConditionStatus::True } else { ConditionStatus::False };
        set_condition(&mut conditions, Condition::new(type_, status, why, message, generation, time.clone()));
    }
    match exposure {
        Some(problem) => {
            _ = set_condition(
                &mut conditions,
                Condition::new(
                    condition_type::ISOLATED,
                    ConditionStatus::False,
                    problem.reason,
                    problem.message.clone(),
                    generation,
                    time.clone(),
                ),
            )
        }
        None => conditions.retain(|c| c.type_ != condition_type::ISOLATED),
    };
    let name = product.name_any();
    let namespace = product.namespace().unwrap_or_default();
    let endpoint = product.spec.output_ports.first().map(|p| format!("{name}.{namespace}.svc:{}", p.port));
    let owners_with_data_access = owners_with_data_access(product, plan);
    DataProductStatus {
        observed_generation: generation,
        conditions,
        available_replicas: available,
        endpoint,
        inputs: plan.inputs.iter().map(input_status).collect(),
        consumer_count: Some(consumers.len() as i32),
        consumers,
        owners_with_data_access,
    }
}
