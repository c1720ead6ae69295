//! DataSource controller: credentials RBAC and endpoint egress for exactly the products
//! allowed to use the source.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::instrument;

use super::children::apply_access;
use super::context::Context;
use super::error::Error;
use crate::api::{
    Condition, ConditionStatus, DataProductRef, DataSource, DataSourceStatus, condition_type, find_condition,
    set_condition,
};
use crate::mesh::MeshView;
use crate::mesh::labels::DATA_SOURCE;
use crate::mesh::rules::{self, InputKey, reason};
use crate::mesh::source::{self, SourceBundle};

pub const CONTROLLER: &str = "datasource";
/// While a source's Secret is missing, look again this often (Secrets are not watched:
/// the operator may not list or watch Secrets cluster-wide).
pub const SECRET_RECHECK: Duration = Duration::from_secs(3);
/// While it exists, look again this often (a deleted Secret is noticed; reads only).
pub const SECRET_PRESENT_RECHECK: Duration = Duration::from_secs(60);

#[instrument(skip_all, fields(source = %source.name_any(), namespace = source.namespace().unwrap_or_default()))]
pub async fn reconcile(source: Arc<DataSource>, ctx: Arc<Context>) -> Result<Action, Error> {
    tracing::debug!("waiting for caches");
    ctx.caches.ready().await;
    tracing::debug!("reconciling");
    let started = Instant::now();
    let result = reconcile_inner(&source, &ctx).await;
    ctx.metrics.reconciled(CONTROLLER, started.elapsed());
    result
}

/// Products allowed to use `source` now: they declare it and their plan reaches it.
pub fn allowed_consumers(view: &dyn MeshView, source: &DataSource, now: Timestamp) -> Vec<String> {
    let namespace = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let mut consumers: Vec<String> = view
        .products_using_source(&namespace, &name)
        .iter()
        .filter(|product| {
            let plan = rules::plan_product(view, product, now);
            plan.runnable()
                && plan.inputs.iter().any(|i| i.input == InputKey::Source(name.clone()) && i.outcome.is_ok())
        })
        .map(|p| p.name_any())
        .collect();
    consumers.sort();
    consumers
}

async fn reconcile_inner(source: &DataSource, ctx: &Context) -> Result<Action, Error> {
    let namespace = source.namespace().ok_or(Error::MissingNamespace)?;
    let uid = source.uid().ok_or(Error::MissingUid)?;
    let now = ctx.now();
    let secret_found = secret_exists(ctx, &namespace, &source.spec.credentials_secret_ref.name).await?;
    let consumers = allowed_consumers(&ctx.caches, source, now);
    let bundle = source::build(source, &consumers);
    apply(ctx, &namespace, &uid, &source.name_any(), bundle).await?;
    let clearance = ctx.caches.clearance(&namespace);
    let status = desired_status(source, &consumers, secret_found, clearance, now);
    write_status(ctx, source, &namespace, status).await?;
    Ok(Action::requeue(if secret_found { SECRET_PRESENT_RECHECK } else { SECRET_RECHECK }))
}

async fn secret_exists(ctx: &Context, namespace: &str, name: &str) -> Result<bool, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_metadata_opt(name).await {
        Ok(found) => Ok(found.is_some()),
        Err(source) => Err(Error::Read { what: format!("Secret {namespace}/{name}"), source }),
    }
}

async fn apply(ctx: &Context, namespace: &str, uid: &str, name: &str, bundle: SourceBundle) -> Result<(), Error> {
    let SourceBundle { role, binding, egress } = bundle;
    apply_access(&ctx.sources, &ctx.caches, namespace, uid, (DATA_SOURCE, name), role, binding, egress).await
}

/// The status the source should have (pure).
pub fn desired_status(
    source: &DataSource,
    consumers: &[String],
    secret_found: bool,
    clearance: crate::api::Classification,
    now: Timestamp,
) -> DataSourceStatus {
    let generation = source.meta().generation;
    let namespace = source.namespace().unwrap_or_default();
    let mut conditions = source.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let classification = source.spec.classification;
    let (ready, reconciling, stalled, why, message) = if clearance < classification {
        let msg = format!(
            "spec.classification {classification} exceeds the clearance {clearance} of domain {namespace} (namespace label drmesh.io/clearance)"
        );
        (false, false, true, reason::NAMESPACE_CLEARANCE_TOO_LOW, msg)
    } else if !secret_found {
        let secret = &source.spec.credentials_secret_ref.name;
        (
            false,
            true,
            false,
            reason::SECRET_NOT_FOUND,
            format!("spec.credentialsSecretRef: Secret {namespace}/{secret} does not exist"),
        )
    } else if source.spec.endpoint.cidr.is_none() {
        let msg =
            "spec.endpoint.cidr is needed for consumers to reach the endpoint (NetworkPolicies cannot name hosts)";
        (false, false, true, reason::ENDPOINT_NEEDS_CIDR, msg.to_string())
    } else {
        (true, false, false, reason::READY, format!("{} consumer(s)", consumers.len()))
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

async fn write_status(
    ctx: &Context,
    source: &DataSource,
    namespace: &str,
    status: DataSourceStatus,
) -> Result<(), Error> {
    let previous = source.status.clone().unwrap_or_default();
    if source.status.is_some() && previous == status {
        return Ok(());
    }
    let api: Api<DataSource> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(&source.name_any(), &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
        .await
        .map_err(|e| Error::Status { name: format!("{namespace}/{}", source.name_any()), source: e })?;
    let ready = |s: &DataSourceStatus| find_condition(&s.conditions, condition_type::READY).cloned();
    if let Some(new) = ready(&status)
        && ready(&previous).map(|o| o.reason) != Some(new.reason.clone())
    {
        let event = KubeEvent {
            type_: if new.status == ConditionStatus::True { EventType::Normal } else { EventType::Warning },
            reason: new.reason.clone(),
            note: Some(new.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(error) = ctx.recorder.publish(&event, &source.object_ref(&())).await {
            tracing::warn!(%error, "cannot publish event");
        }
    }
    Ok(())
}
