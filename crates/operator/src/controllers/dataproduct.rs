//! DataProduct controller: plan (pure) -> build (pure) -> apply -> status.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::child_set::{ChildSet, Network};
use super::children::prune;
use super::context::Context;
use super::error::Error;
use super::wait_until;
use crate::api::{DataProduct, DataProductStatus, condition_type};
use crate::audit;
use crate::mesh::MeshView;
use crate::mesh::labels::DATA_PRODUCT;
use crate::mesh::product::{self, ProductBundle};
use crate::mesh::rules::{self, Reason};
use crate::mesh::status;

pub const CONTROLLER: &str = "dataproduct";

#[instrument(skip_all, fields(product = %product.name_any(), namespace = product.namespace().unwrap_or_default()))]
/// Reconciles one DataProduct: returns when to look again unprompted (None: on a change).
pub async fn reconcile(product: &DataProduct, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = product.namespace().ok_or(Error::MissingNamespace)?;
    let uid = product.uid().ok_or(Error::MissingUid)?;
    let name = product.name_any();
    let now = ctx.now();
    let mut plan = rules::plan_product(&ctx.caches, product, now);
    let exposure = foreign_access(ctx, &namespace);
    if ctx.refuse_foreign_access
        && plan.blocker.is_none()
        && let Some(problem) = &exposure
    {
        plan.blocker = Some(problem.clone());
    }
    let mut bundle = product::build(product, &plan);
    if bundle.deployment.is_some()
        && ctx.caches.deployments.get(&namespace, &name).is_none()
        && !still_there(ctx, product).await?
    {
        return Ok(None);
    }
    // Owners who gain the product's data are recorded before their access is applied;
    // when the record cannot be written (and the audit refuses), they do not gain it.
    let had = product.status.as_ref().map(|s| s.owners_with_data_access.clone()).unwrap_or_default();
    let gained: Vec<String> =
        status::owners_with_data_access(product, &plan).into_iter().filter(|o| !had.contains(o)).collect();
    if !gained.is_empty()
        && record_owners(ctx, product, audit::Decision::Granted, gained, &plan.owners_cleared_by).await.is_err()
    {
        plan.owners_read_data = false;
        bundle = product::build(product, &plan);
    }
    if let Err(error) = apply(ctx, product, &namespace, &uid, bundle).await {
        if let Some(problem) = error.problem() {
            // Owners' access goes; if the isolation is not ours, the workload goes too:
            // no pod runs without drmesh's deny-by-default in front of it.
            ctx.withdraw(&namespace, &uid, (DATA_PRODUCT, &name), false).await?;
            if matches!(&error, Error::NameConflict { kind, .. } | Error::Apply { kind, .. } if kind == "NetworkPolicy")
            {
                prune::<k8s_openapi::api::apps::v1::Deployment, _>(
                    &ctx.client,
                    &ctx.fence,
                    &ctx.caches.deployments,
                    &namespace,
                    &uid,
                    (DATA_PRODUCT, &name),
                    &BTreeSet::new(),
                )
                .await?;
            }
            let mut blocked = plan.clone();
            blocked.blocker = Some(problem);
            let status = status::product(product, &blocked, None, vec![], exposure.as_ref(), now);
            let (_, why, _, _) = status::product_readiness(product, &blocked, None);
            write_status(ctx, product, &namespace, status, why).await?;
        }
        return Err(error);
    }
    let consumers = rules::product_consumers(&ctx.caches, &namespace, &name, now);
    let available = ctx.caches.deployments.get(&namespace, &name).map_or(0, |d| d.detail as i32);
    let available = plan.runnable().then_some(available);
    let status = status::product(product, &plan, available, consumers, exposure.as_ref(), now);
    let (_, why, _, _) = status::product_readiness(product, &plan, available);
    write_status(ctx, product, &namespace, status, why).await?;
    Ok(wait_until(plan.next_expiry, now))
}

/// Whether the product still exists as the cache shows it, asked of the API server before
/// its workload is created: a reconcile can start from a cache that has not yet seen the
/// product's deletion (the deletion of its Deployment wakes it), and server-side apply
/// would create the workload again, whose pods could outlive the isolation being
/// released (the CI run caught one). One GET, only when the Deployment does not exist.
async fn still_there(ctx: &Context, product: &DataProduct) -> Result<bool, Error> {
    let namespace = product.namespace().unwrap_or_default();
    let api: Api<DataProduct> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.get_metadata_opt(&product.name_any()).await {
        Ok(Some(live)) => Ok(live.metadata.uid == product.metadata.uid && live.metadata.deletion_timestamp.is_none()),
        Ok(None) => Ok(false),
        Err(source) => Err(Error::Read { what: format!("DataProduct {namespace}/{}", product.name_any()), source }),
    }
}

/// In a classified domain, the NetworkPolicies and RoleBindings drmesh did not create
/// that may open access beside its grants (created while the domain was Public, by
/// break-glass identities, or passing for drmesh's with a forged label).
fn foreign_access(ctx: &Context, namespace: &str) -> Option<rules::Problem> {
    if ctx.caches.clearance(namespace) == crate::api::Classification::Public {
        return None;
    }
    let objects = ctx.caches.access_objects(namespace);
    (!objects.is_empty()).then(|| {
        rules::Problem::new(
            Reason::ForeignAccessObjects,
            format!(
                "domain {namespace} holds {} object(s) drmesh did not create that may open access to its products: {}",
                objects.len(),
                objects.join(", ")
            ),
        )
    })
}

/// A product being deleted (or in a namespace being deleted): its owners' access goes
/// now; the isolation stays until its pods are gone (see [`super::isolation`]).
pub async fn withdraw(product: &DataProduct, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = product.namespace().ok_or(Error::MissingNamespace)?;
    let uid = product.uid().ok_or(Error::MissingUid)?;
    let withdrawn = ctx.withdraw(&namespace, &uid, (DATA_PRODUCT, &product.name_any()), false).await?;
    let had = product.status.as_ref().map(|s| s.owners_with_data_access.clone()).unwrap_or_default();
    if withdrawn > 0 && !had.is_empty() {
        let _ = record_owners(ctx, product, audit::Decision::Revoked, had, &[]).await;
    }
    Ok(None)
}

/// Applies the bundle in the core's order (isolation first: deny by default before
/// anything runs), revoking owners' access the plan no longer gives before, and pruning
/// the rest after.
async fn apply(
    ctx: &Context,
    product: &DataProduct,
    namespace: &str,
    uid: &str,
    bundle: ProductBundle,
) -> Result<(), Error> {
    let name = product.name_any();
    ChildSet {
        applier: &ctx.products,
        caches: &ctx.caches,
        namespace,
        owner_uid: uid,
        label: (DATA_PRODUCT, &name),
        network: Network::Isolates,
        children: bundle.into_ordered(),
    }
    .reconcile()
    .await
}

async fn write_status(
    ctx: &Context,
    product: &DataProduct,
    namespace: &str,
    status: DataProductStatus,
    ready: Reason,
) -> Result<(), Error> {
    let previous = product.status.clone().unwrap_or_default();
    if product.status.is_some() && previous == status {
        return Ok(()); // quiet: no write when nothing changed
    }
    ctx.fence.pass()?;
    let api: Api<DataProduct> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = super::status_patch(&previous, &status);
    api.patch_status(&product.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Status { name: product.name_any(), source })?;
    report_transition(ctx, product, &previous, &status, ready).await;
    Ok(())
}

const DENIALS: [Reason; 7] = [
    Reason::ClassificationViolation,
    Reason::InputNotGranted,
    Reason::NamespaceClearanceTooLow,
    Reason::ClearanceTooLow,
    Reason::ApplyFailed,
    Reason::NameConflict,
    Reason::ForeignAccessObjects,
];

/// After this replica's first reconcile of `product` since it took the audit chain over,
/// when that reconcile recorded nothing about its owners: those the previous leader left
/// reading its data who no longer do, with no record of it in the chain, are recorded now
/// (see `accesspolicy::record_found_narrowed`).
pub async fn record_found_narrowed(ctx: &Context, product: &DataProduct) {
    let key = crate::audit_sink::owners_key(&product.namespace().unwrap_or_default(), &product.name_any());
    let Some(entry) = ctx.audit.left_in_force(&key) else { return };
    let now = product.status.as_ref().map(|s| s.owners_with_data_access.clone()).unwrap_or_default();
    let lost: Vec<String> =
        crate::audit_sink::standing_subjects(&entry).into_iter().filter(|o| !now.contains(o)).collect();
    if !lost.is_empty() {
        let _ = record_owners(ctx, product, audit::Decision::Revoked, lost, &[]).await;
    }
}

/// The owners' data access gained or lost (`subjects`), as an audit record, an Event and
/// a metric; a gain names the Clearances it rests on (`cleared_by`, above Public). An
/// error when a gain could not be recorded and the audit refuses.
async fn record_owners(
    ctx: &Context,
    product: &DataProduct,
    decision: audit::Decision,
    subjects: Vec<String>,
    cleared_by: &[String],
) -> Result<(), crate::telemetry::AuditError> {
    let level = product.spec.classification;
    let message = match decision {
        audit::Decision::Granted if !cleared_by.is_empty() => {
            format!("owners read the {level} product's data by being owners; cleared by {}", cleared_by.join(", "))
        }
        audit::Decision::Granted => format!("owners read the {level} product's data by being owners"),
        _ => "the product's owners no longer read its data by being owners".to_string(),
    };
    ctx.record(super::Report {
        object: product.object_ref(&()),
        decision,
        reason: Reason::OwnersAccess,
        message,
        product: audit::ObjectRef { namespace: product.namespace().unwrap_or_default(), name: product.name_any() },
        classification: level.to_string(),
        subjects,
        purpose: None,
        expires_at: None,
        policy: None,
    })
    .await
}

/// An Event on every change of the Ready reason but a new product's first, progressing one
/// (an audit record when it is a denial);
/// an audit record when owners lose the product's data, or foreign access objects appear
/// in its domain.
pub(super) async fn report_transition(
    ctx: &Context,
    product: &DataProduct,
    before: &DataProductStatus,
    after: &DataProductStatus,
    why: Reason,
) {
    let namespace = product.namespace().unwrap_or_default();
    let base = |decision, why: Reason, message: String, subjects: Vec<String>| super::Report {
        object: product.object_ref(&()),
        decision,
        reason: why,
        message,
        product: audit::ObjectRef { namespace: namespace.clone(), name: product.name_any() },
        classification: product.spec.classification.to_string(),
        subjects,
        purpose: None,
        expires_at: None,
        policy: None,
    };
    // Owners who gained the data were recorded before it was applied (`reconcile`); those
    // who lost it, once it is withdrawn.
    let lost: Vec<String> =
        before.owners_with_data_access.iter().filter(|o| !after.owners_with_data_access.contains(o)).cloned().collect();
    if !lost.is_empty() {
        let _ = record_owners(ctx, product, audit::Decision::Revoked, lost, &[]).await;
    }
    let isolated = |s: &DataProductStatus| crate::api::find_condition(&s.conditions, condition_type::ISOLATED).cloned();
    if let Some(exposed) = isolated(after)
        && isolated(before).map(|c| c.message) != Some(exposed.message.clone())
    {
        let _ = ctx.report(base(audit::Decision::Exposed, Reason::ForeignAccessObjects, exposed.message, vec![])).await;
    }
    let ready = |s: &DataProductStatus| crate::api::find_condition(&s.conditions, condition_type::READY).cloned();
    let (Some(new), old) = (ready(after), ready(before)) else {
        return;
    };
    if old.as_ref().map(|o| (&o.status, &o.reason)) == Some((&new.status, &new.reason)) {
        return;
    }
    // A new product on its way says so in its status; its Event comes with the outcome.
    if old.is_none() && why == Reason::Progressing {
        return;
    }
    if DENIALS.contains(&why) {
        let _ = ctx.report(base(audit::Decision::Denied, why, new.message.clone(), vec![])).await;
    } else {
        ctx.announce(&product.object_ref(&()), false, &new.reason, new.message.clone(), "Reconcile").await;
    }
}
