//! DataSource controller: credentials RBAC and endpoint egress for exactly the products
//! allowed to use the source.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::children::{self, apply_access};
use super::context::Context;
use super::error::Error;
use crate::api::{ConditionStatus, DataSource, DataSourceStatus, condition_type, find_condition};
use crate::mesh::MeshView;
use crate::mesh::labels::DATA_SOURCE;
use crate::mesh::source::{self, SecretState, SourceBundle, lends_to};
use crate::mesh::status;

pub const CONTROLLER: &str = "datasource";
/// While a source's Secret is missing, look again this often (Secrets are not watched:
/// the operator may not list or watch Secrets cluster-wide).
pub const SECRET_RECHECK: Duration = Duration::from_secs(3);
/// While it exists, look again this often (a deleted Secret is noticed; reads only).
pub const SECRET_PRESENT_RECHECK: Duration = Duration::from_secs(60);

#[instrument(skip_all, fields(source = %source.name_any(), namespace = source.namespace().unwrap_or_default()))]
/// Reconciles one DataSource: returns when to look again unprompted (None: on a change).
pub async fn reconcile(source: &DataSource, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = source.namespace().ok_or(Error::MissingNamespace)?;
    let uid = source.uid().ok_or(Error::MissingUid)?;
    let now = ctx.now();
    let secret = secret_state(ctx, &namespace, &source.spec.credentials_secret_ref.name).await?;
    let clearance = ctx.caches.clearance(&namespace);
    // A source that is not Ready lends nothing: no credentials RBAC, no endpoint egress.
    let consumers = lends_to(&ctx.caches, source, secret, now);
    let bundle = source::build(source, &consumers);
    let checked = if ctx.refused.is_marked(&uid) {
        children::dry_run_access(&ctx.sources, &ctx.caches, bundle.role.as_ref(), bundle.egress.as_ref()).await
    } else {
        Ok(())
    };
    if let Err(error) = match checked {
        Ok(()) => apply(ctx, &namespace, &uid, &source.name_any(), bundle).await,
        Err(error) => Err(error),
    } {
        // Credentials and egress that cannot be applied whole are not lent at all.
        if let Some(problem) = error.problem() {
            ctx.refused.mark(&uid, source.meta().generation);
            children::withdraw(&ctx.client, &ctx.caches, &namespace, &uid, (DATA_SOURCE, &source.name_any()), true)
                .await?;
            let status = status::source(source, &[], secret, clearance, Some(&problem), now);
            write_status(ctx, source, &namespace, status).await?;
        }
        return Err(error);
    }
    ctx.refused.clear(&uid);
    let status = status::source(source, &consumers, secret, clearance, None, now);
    write_status(ctx, source, &namespace, status).await?;
    let released = secret == SecretState::Released;
    Ok(Some(if released { SECRET_PRESENT_RECHECK } else { SECRET_RECHECK }))
}

/// The Secret's state from its metadata (its data is never read).
async fn secret_state(ctx: &Context, namespace: &str, name: &str) -> Result<SecretState, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_metadata_opt(name).await {
        Ok(Some(secret)) => Ok(SecretState::of(secret.metadata.labels.as_ref())),
        Ok(None) => Ok(SecretState::Missing),
        Err(source) => Err(Error::Read { what: format!("Secret {namespace}/{name}"), source }),
    }
}

async fn apply(ctx: &Context, namespace: &str, uid: &str, name: &str, bundle: SourceBundle) -> Result<(), Error> {
    let SourceBundle { role, binding, egress } = bundle;
    apply_access(&ctx.sources, &ctx.caches, namespace, uid, (DATA_SOURCE, name), role, binding, egress).await
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
    api.patch_status(
        &source.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&super::status_patch(&previous, &status)),
    )
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
