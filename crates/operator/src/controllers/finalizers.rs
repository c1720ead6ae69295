//! Finalizers on drmesh's children: the one drmesh puts on a product's isolation, and
//! the ones it never lets keep access alive.
//!
//! - A product's isolation NetworkPolicy carries `drmesh.io/isolation`: when the product
//!   or its namespace is deleted, the policy stays (deny by default) until none of the
//!   product's pods is left, then drmesh releases it (the CVE-2024-7598 class: pods
//!   outliving their NetworkPolicy during deletion).
//! - A RoleBinding, Role or NetworkPolicy of drmesh's being deleted still grants while a
//!   finalizer holds it, and a Deployment being deleted keeps its pods: drmesh removes
//!   every finalizer but its own from any of its children being deleted.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;
use kube::{Client, Resource};

use super::Caches;
use super::children::release_finalizers;
use super::watches::Events;
use crate::mesh::MeshView;
use crate::mesh::labels;

/// How often a held isolation looks again for the product's pods.
const POD_RECHECK: Duration = Duration::from_millis(250);

/// The children being deleted that a task is already looking after, by UID.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashSet<String>>>);

impl InFlight {
    fn start(&self, uid: &str) -> bool {
        self.0.lock().map(|mut s| s.insert(uid.to_string())).unwrap_or(false)
    }
    fn done(&self, uid: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(uid);
        }
    }
}

fn being_deleted(event: &Event<impl Resource>) -> Option<ObjectMeta> {
    match event {
        Event::Apply(obj) | Event::InitApply(obj) if obj.meta().deletion_timestamp.is_some() => {
            Some(obj.meta().clone())
        }
        _ => None,
    }
}

fn holds_ours(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == labels::ISOLATION_FINALIZER)
}

fn holds_foreign(meta: &ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f != labels::ISOLATION_FINALIZER)
}

/// Looks after the managed NetworkPolicies being deleted: foreign finalizers go at once,
/// drmesh's isolation finalizer once the product has no pod left.
/// Only while `leading` (a standby writes nothing).
pub async fn network_policies(
    client: Client,
    caches: Caches,
    events: Events<NetworkPolicy>,
    leading: tokio::sync::watch::Receiver<bool>,
) {
    let in_flight = InFlight::default();
    events
        .for_each(|event| {
            if let Some(meta) = being_deleted(&event) {
                let namespace = meta.namespace.clone().unwrap_or_default();
                let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &namespace);
                if holds_foreign(&meta) {
                    let api = api.clone();
                    let meta = meta.clone();
                    let mut leading = leading.clone();
                    tokio::spawn(async move {
                        let _ = leading.wait_for(|l| *l).await;
                        if let Err(error) = release_finalizers(&api, &meta).await {
                            tracing::warn!(%error, "cannot remove foreign finalizers");
                        }
                    });
                }
                let uid = meta.uid.clone().unwrap_or_default();
                if holds_ours(&meta) && in_flight.start(&uid) {
                    let (client, caches, in_flight) = (client.clone(), caches.clone(), in_flight.clone());
                    let mut leading = leading.clone();
                    tokio::spawn(async move {
                        let _ = leading.wait_for(|l| *l).await;
                        release_isolation_when_no_pod_is_left(client, &caches, api, meta).await;
                        in_flight.done(&uid);
                    });
                }
            }
            futures::future::ready(())
        })
        .await;
}

/// Removes foreign finalizers from managed children of kind `K` being deleted (every
/// kind but the NetworkPolicies, which [`network_policies`] looks after): a terminating
/// RoleBinding or Role still grants, a terminating Deployment keeps its pods (and the
/// Secrets they mount) running, and a ServiceAccount, Service or ConfigMap held by a
/// finalizer outlives its product.
pub async fn foreign<K>(client: Client, events: Events<K>, leading: tokio::sync::watch::Receiver<bool>)
where
    K: super::children::Child,
{
    events
        .for_each(|event| {
            if let Some(meta) = being_deleted(&event).filter(holds_foreign) {
                let api: Api<K> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or_default());
                let mut leading = leading.clone();
                tokio::spawn(async move {
                    let _ = leading.wait_for(|l| *l).await;
                    if let Err(error) = release_finalizers(&api, &meta).await {
                        tracing::warn!(%error, "cannot remove foreign finalizers");
                    }
                });
            }
            futures::future::ready(())
        })
        .await;
}

/// Whether the product that owns an isolation lives on (not being deleted, nor its
/// namespace): then the isolation was deleted by hand and its controller restores it
/// as soon as it is gone (drift), so it is not held.
fn owner_lives(caches: &Caches, meta: &ObjectMeta) -> bool {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let Some(owner) = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)) else {
        return false;
    };
    let namespace_alive =
        caches.namespaces.get(&ObjectRef::new(namespace)).is_some_and(|ns| ns.metadata.deletion_timestamp.is_none());
    namespace_alive
        && caches.product(namespace, &owner.name).is_some_and(|p| {
            p.metadata.uid.as_deref() == Some(owner.uid.as_str()) && p.metadata.deletion_timestamp.is_none()
        })
}

/// Waits until no pod of the product the isolation protects is left (or the product
/// lives on: a hand deletion, restored at once), then removes drmesh's finalizer (and
/// only it) from the policy.
async fn release_isolation_when_no_pod_is_left(
    client: Client,
    caches: &Caches,
    api: Api<NetworkPolicy>,
    meta: ObjectMeta,
) {
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let Some(product) = meta.labels.as_ref().and_then(|l| l.get(labels::DATA_PRODUCT)).cloned() else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let selector = ListParams::default().labels(&format!("{}={product}", labels::DATA_PRODUCT)).limit(1);
    let uid = meta.uid.clone().unwrap_or_default();
    loop {
        // Gone meanwhile (released by someone with the right to): nothing left to do.
        if caches.network_policies.get(&namespace, &name).is_none_or(|r| !r.uid.is(&uid)) {
            return;
        }
        if owner_lives(caches, &meta) {
            break;
        }
        // A workload of the product still there (one re-created from a stale view is
        // garbage-collected soon) may start pods: not released until it is gone.
        let workload = caches.deployments.get(&namespace, &product).is_some();
        match pods.list_metadata(&selector).await {
            Ok(list) if list.items.is_empty() && !workload => break,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, %namespace, %product, "cannot list the product's pods"),
        }
        tokio::time::sleep(POD_RECHECK).await;
    }
    // Every finalizer goes: drmesh's (no pod left) and any foreign one (a policy being
    // deleted is not kept for anyone else). No precondition: nothing is lost by racing.
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    match api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => tracing::info!(%namespace, %name, %product, "no pod of the product is left: isolation released"),
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => {
            tracing::warn!(%error, %namespace, %name, "cannot release the isolation policy (will retry on the next event)")
        }
    }
}
