//! DataSource controller: credentials RBAC and endpoint egress for exactly the products
//! allowed to use the source.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::instrument;

use super::child_set::{ChildSet, Network};
use super::context::Context;
use super::error::Error;
use crate::api::{ConditionStatus, DataSource, DataSourceStatus, condition_type, find_condition};
use crate::audit;
use crate::mesh::MeshView;
use crate::mesh::labels::DATA_SOURCE;
use crate::mesh::rules::Reason;
use crate::mesh::source::{self, SecretState, lends_to};
use crate::mesh::status;

pub const CONTROLLER: &str = "datasource";
/// While a source's Secret is missing, look again this often (Secrets are not watched:
/// the operator may not list or watch Secrets cluster-wide).
pub const SECRET_RECHECK: Duration = Duration::from_secs(3);
/// While it exists, a change of it (deleted, labels) is noticed within this long: the
/// source looks again when the state it used is this old (it may have been read up to
/// [`SECRET_STATE_REUSE`] before the reconcile that used it).
pub const SECRET_PRESENT_RECHECK: Duration = Duration::from_secs(60);

#[instrument(skip_all, fields(source = %source.name_any(), namespace = source.namespace().unwrap_or_default()))]
/// Reconciles one DataSource: returns when to look again unprompted (None: on a change).
pub async fn reconcile(source: &DataSource, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = source.namespace().ok_or(Error::MissingNamespace)?;
    let uid = source.uid().ok_or(Error::MissingUid)?;
    let now = ctx.now();
    let (secret, age) = secret_state(ctx, &namespace, &source.spec.credentials_secret_ref.name).await?;
    let clearance = ctx.caches.clearance(&namespace);
    // A source that is not Ready lends nothing: no credentials RBAC, no endpoint egress.
    let consumers = lends_to(&ctx.caches, source, secret);
    let name = source.name_any();
    let children = ChildSet {
        applier: &ctx.sources,
        caches: &ctx.caches,
        namespace: &namespace,
        owner_uid: &uid,
        label: (DATA_SOURCE, &name),
        network: Network::Grants,
        children: source::build(source, &consumers).into_ordered(),
    };
    let checked = if ctx.refused.is_marked(&uid) { children.dry_run().await } else { Ok(()) };
    // Durable or refused: credentials newly lent are recorded before they are.
    let lent_before = lent(source.status.as_ref());
    let newly: Vec<String> = consumers.iter().filter(|c| !lent_before.contains(*c)).cloned().collect();
    let mut recorded = false;
    if let Err(error) = match checked {
        Ok(()) => match record_credentials(ctx, source, &newly, audit::Decision::Granted).await {
            Ok(()) => {
                recorded = true;
                children.reconcile().await
            }
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    } {
        // Credentials and egress that cannot be applied whole are not lent at all.
        if let Some(problem) = error.problem() {
            ctx.refused.mark(&uid, source.meta().generation);
            ctx.withdraw(&namespace, &uid, (DATA_SOURCE, &source.name_any()), true).await?;
            if recorded {
                // Recorded as lent, then not applied: say they were taken back.
                let _ = record_credentials(ctx, source, &newly, audit::Decision::Revoked).await;
            }
            let status = status::source(source, &[], secret, clearance, Some(&problem), now);
            write_status(ctx, source, &namespace, status).await?;
        }
        return Err(error);
    }
    ctx.refused.clear(&uid);
    let status = status::source(source, &consumers, secret, clearance, None, now);
    write_status(ctx, source, &namespace, status).await?;
    Ok(Some(recheck_after(secret, age)))
}

/// When a source looks at its Secret again, given the state it used and how long ago that
/// was read: a released Secret when that state is [`SECRET_PRESENT_RECHECK`] old (an
/// idle source reads it every 60 s), any other in [`SECRET_RECHECK`].
fn recheck_after(secret: SecretState, age: Duration) -> Duration {
    match secret {
        SecretState::Released => SECRET_PRESENT_RECHECK.saturating_sub(age),
        _ => SECRET_RECHECK,
    }
}

/// A source being deleted (or in a namespace being deleted): its credentials and egress
/// are taken from every product now, and that is recorded.
pub async fn withdraw(source: &DataSource, ctx: &Context) -> Result<Option<Duration>, Error> {
    let namespace = source.namespace().ok_or(Error::MissingNamespace)?;
    let uid = source.uid().ok_or(Error::MissingUid)?;
    let name = source.name_any();
    let withdrawn = ctx.withdraw(&namespace, &uid, (DATA_SOURCE, &name), true).await?;
    let had: Vec<String> = lent(source.status.as_ref()).into_iter().collect();
    if withdrawn > 0 {
        record_credentials(ctx, source, &had, audit::Decision::Revoked).await?;
    }
    Ok(None)
}

/// After this replica's first reconcile of `source` since it took the audit chain over,
/// when that reconcile recorded nothing about its credentials: the ServiceAccounts the
/// previous leader left them lent to that they no longer are, with no record of it in the
/// chain, are recorded now (see `accesspolicy::record_found_narrowed`).
pub async fn record_found_narrowed(ctx: &Context, source: &DataSource) {
    let namespace = source.namespace().unwrap_or_default();
    let key = crate::audit_sink::credentials_key(&namespace, &source.name_any());
    let Some(entry) = ctx.audit.left_in_force(&key) else { return };
    let now = lent(source.status.as_ref());
    let taken: Vec<String> = crate::audit_sink::standing_subjects(&entry)
        .iter()
        .filter_map(|sa| sa.strip_prefix(&format!("ServiceAccount:{namespace}/")).map(String::from))
        .filter(|product| !now.contains(product))
        .collect();
    let _ = record_credentials(ctx, source, &taken, audit::Decision::Revoked).await;
}

/// The products a status says the source lends its credentials to.
fn lent(status: Option<&DataSourceStatus>) -> std::collections::BTreeSet<String> {
    status.map(|s| s.consumers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default()
}

/// Records credentials lent to (`Granted`) or taken from (`Revoked`) the ServiceAccounts of
/// `products`. A loan whose record cannot be written is refused (`--audit-failure`).
async fn record_credentials(
    ctx: &Context,
    source: &DataSource,
    products: &[String],
    decision: audit::Decision,
) -> Result<(), Error> {
    if products.is_empty() {
        return Ok(());
    }
    let namespace = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let (reason, verb) = match decision {
        audit::Decision::Granted => (Reason::CredentialsLent, "lent to"),
        _ => (Reason::CredentialsWithdrawn, "taken from"),
    };
    let written = ctx
        .record(super::Report {
            object: source.object_ref(&()),
            decision,
            reason,
            message: format!(
                "the credentials of DataSource {namespace}/{name} (Secret {}) {verb} the ServiceAccount of {}",
                source.spec.credentials_secret_ref.name,
                products.join(", ")
            ),
            product: audit::ObjectRef { namespace: namespace.clone(), name: name.clone() },
            classification: source.spec.classification.to_string(),
            subjects: products.iter().map(|p| format!("ServiceAccount:{namespace}/{p}")).collect(),
            purpose: None,
            expires_at: None,
            policy: None,
        })
        .await;
    match written {
        Err(error) if decision == audit::Decision::Granted && ctx.audit_refuses => Err(Error::Audit(error)),
        _ => Ok(()),
    }
}

/// A Secret's state read less than this long ago is reused: while products join a source
/// (a cold start of 1,000 products reconciled each of 20 sources about 100 times, one GET
/// each), a source is reconciled several times a second. Changes of the Secret are still
/// noticed within [`SECRET_PRESENT_RECHECK`]. Only a released Secret's state is kept: a
/// missing or unreleased one is looked at again every [`SECRET_RECHECK`], so a Secret
/// created or released is lent as soon as before.
pub const SECRET_STATE_REUSE: Duration = Duration::from_secs(10);

/// When each Secret was last read released, by namespace and name (see
/// [`SECRET_STATE_REUSE`]).
#[derive(Default)]
pub struct SecretStates(std::sync::Mutex<std::collections::HashMap<(String, String), Instant>>);

impl SecretStates {
    /// A released state read less than [`SECRET_STATE_REUSE`] before `now`, and its age.
    fn fresh(&self, namespace: &str, name: &str, now: Instant) -> Option<(SecretState, Duration)> {
        let read = self.0.lock().unwrap_or_else(|p| p.into_inner());
        read.get(&(namespace.to_string(), name.to_string()))
            .map(|at| now.saturating_duration_since(*at))
            .filter(|age| *age < SECRET_STATE_REUSE)
            .map(|age| (SecretState::Released, age))
    }

    fn read(&self, namespace: &str, name: &str, state: SecretState, at: Instant) {
        let mut read = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Old entries go as new ones come: the map holds the Secrets read in the last
        // [`SECRET_STATE_REUSE`], at most.
        read.retain(|_, then| at.saturating_duration_since(*then) < SECRET_STATE_REUSE);
        let key = (namespace.to_string(), name.to_string());
        if state == SecretState::Released {
            read.insert(key, at);
        } else {
            read.remove(&key);
        }
    }
}

/// The Secret's state from its metadata (its data is never read), read again when the
/// last read is older than [`SECRET_STATE_REUSE`]; with how long ago it was read.
async fn secret_state(ctx: &Context, namespace: &str, name: &str) -> Result<(SecretState, Duration), Error> {
    if let Some(fresh) = ctx.secrets.fresh(namespace, name, Instant::now()) {
        return Ok(fresh);
    }
    let asked = Instant::now();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let state = match api.get_metadata_opt(name).await {
        Ok(Some(secret)) => SecretState::of(secret.metadata.labels.as_ref()),
        Ok(None) => SecretState::Missing,
        Err(source) => return Err(Error::Read { what: format!("Secret {namespace}/{name}"), source }),
    };
    ctx.secrets.read(namespace, name, state, asked);
    Ok((state, asked.elapsed()))
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
    ctx.fence.pass()?;
    let api: Api<DataSource> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &source.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&super::status_patch(&previous, &status)),
    )
    .await
    .map_err(|e| Error::Status { name: format!("{namespace}/{}", source.name_any()), source: e })?;
    let now_lent = lent(Some(&status));
    let taken: Vec<String> = lent(Some(&previous)).into_iter().filter(|c| !now_lent.contains(c)).collect();
    let _ = record_credentials(ctx, source, &taken, audit::Decision::Revoked).await;
    let ready = |s: &DataSourceStatus| find_condition(&s.conditions, condition_type::READY).cloned();
    if let Some(new) = ready(&status)
        && ready(&previous).map(|o| o.reason) != Some(new.reason.clone())
    {
        let warning = new.status != ConditionStatus::True;
        ctx.announce(&source.object_ref(&()), warning, &new.reason, new.message.clone(), "Reconcile").await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_secret_is_reused_for_a_while_and_any_other_is_looked_at_again() {
        let states = SecretStates::default();
        let t0 = Instant::now();
        assert_eq!(states.fresh("ns", "db", t0), None, "nothing read yet");
        states.read("ns", "db", SecretState::Released, t0);
        let nine = Duration::from_secs(9);
        assert_eq!(states.fresh("ns", "db", t0 + nine), Some((SecretState::Released, nine)), "with its age");
        assert_eq!(states.fresh("ns", "other", t0), None, "per Secret");
        assert_eq!(states.fresh("ns", "db", t0 + SECRET_STATE_REUSE), None, "read again once old");
        // No longer released: not kept, so the 3-second recheck asks the API server (a
        // Secret released again is lent as soon as it is seen).
        states.read("ns", "db", SecretState::Released, t0);
        states.read("ns", "db", SecretState::NotReleased, t0 + Duration::from_secs(1));
        assert_eq!(states.fresh("ns", "db", t0 + Duration::from_secs(1)), None);
        // Deleted: not kept either.
        states.read("ns", "db", SecretState::Released, t0);
        states.read("ns", "db", SecretState::Missing, t0 + Duration::from_secs(1));
        assert_eq!(states.fresh("ns", "db", t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_released_secret_is_looked_at_again_when_the_state_used_is_a_minute_old() {
        // Read just now (an idle source): in 60 s.
        assert_eq!(recheck_after(SecretState::Released, Duration::ZERO), SECRET_PRESENT_RECHECK);
        // A state read 9 s before the reconcile that reused it: 9 s sooner.
        let nine = Duration::from_secs(9);
        assert_eq!(recheck_after(SecretState::Released, nine), SECRET_PRESENT_RECHECK - nine);
        // Missing or not released: every 3 s, whatever its age.
        for state in [SecretState::Missing, SecretState::NotReleased] {
            assert_eq!(recheck_after(state, nine), SECRET_RECHECK);
        }
        // The state reused is never older than the bound when the recheck comes.
        let states = SecretStates::default();
        let t0 = Instant::now();
        states.read("ns", "db", SecretState::Released, t0);
        let (state, age) = states.fresh("ns", "db", t0 + nine).expect("reused");
        assert_eq!(age + recheck_after(state, age), SECRET_PRESENT_RECHECK);
    }
}
