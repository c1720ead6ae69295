//! What every reconcile shares: the client, the watch caches, metrics, Events, audit.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

use super::children::Applier;
use crate::api::{AccessPolicy, Classification, DataProduct, DataSource, clearance_from_labels};
use crate::mesh::labels;
use crate::mesh::rules::{product_inputs, source_inputs};
use crate::mesh::MeshView;
use crate::telemetry::{AuditSink, Metrics};

/// Watch caches of the mesh and of the children.
#[derive(Clone)]
pub struct Caches {
    pub sources: Store<DataSource>,
    pub products: Store<DataProduct>,
    pub policies: Store<AccessPolicy>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub deployments: Store<Deployment>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub roles: Store<PartialObjectMeta<Role>>,
    pub role_bindings: Store<PartialObjectMeta<RoleBinding>>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// Turns true once every cache has listed its objects (see [`Caches::watch_ready`]).
    pub synced: tokio::sync::watch::Receiver<bool>,
}

impl Caches {
    /// Resolves once every cache has listed its objects: no decision is taken on a
    /// partial view of the mesh (that could revoke a grant that exists).
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|ready| *ready).await;
    }
}

/// Flips the caches' `synced` flag once every registered watch has listed its objects.
///
/// Fed by the watch streams' `InitDone` events rather than by the stores' own readiness
/// futures: those wake only their most recent waiter, and the controllers already wait
/// on them.
pub struct SyncGate {
    pending: std::sync::Mutex<std::collections::BTreeSet<&'static str>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl SyncGate {
    pub fn new(kinds: &[&'static str], synced: tokio::sync::watch::Sender<bool>) -> Arc<Self> {
        Arc::new(Self { pending: std::sync::Mutex::new(kinds.iter().copied().collect()), synced })
    }

    /// `kind`'s watch has listed everything (later relists are ignored).
    pub fn listed(&self, kind: &'static str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.remove(kind) && pending.is_empty() {
            let _ = self.synced.send(true);
            tracing::info!("caches synced");
        }
    }
}

/// The operator's view of the mesh: its watch caches.
impl MeshView for Caches {
    fn clearance(&self, namespace: &str) -> Classification {
        self.namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| clearance_from_labels(ns.metadata.labels.as_ref()).ok())
            .unwrap_or(Classification::Public)
    }
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<DataSource>> {
        self.sources.get(&ObjectRef::new(name).within(namespace))
    }
    fn product(&self, namespace: &str, name: &str) -> Option<Arc<DataProduct>> {
        self.products.get(&ObjectRef::new(name).within(namespace))
    }
    fn secret_exists(&self, _namespace: &str, _name: &str) -> Option<bool> {
        None // the operator does not cache Secrets; the DataSource controller asks the API server
    }
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<Arc<AccessPolicy>> {
        let mut found: Vec<_> = self
            .policies
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.spec.data_product == product)
            .collect();
        found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        found
    }
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<Arc<DataProduct>> {
        let mut found: Vec<_> = self
            .products
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace) && source_inputs(p).any(|s| s == source))
            .collect();
        found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        found
    }
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<Arc<DataProduct>> {
        let mut found: Vec<_> = self
            .products
            .state()
            .into_iter()
            .filter(|p| product_inputs(p).any(|r| r.namespace == namespace && r.name == product))
            .collect();
        found.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
        found
    }
}

/// Shared by the three controllers.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditSink>,
    pub recorder: Recorder,
    /// The operator's identity, as audit records name it.
    pub actor: String,
    pub products: Applier,
    pub sources: Applier,
    pub policies: Applier,
    pub backoff: super::Backoff,
}

impl Context {
    pub fn new(client: Client, caches: Caches, metrics: Arc<Metrics>, audit: Arc<AuditSink>, actor: String) -> Self {
        let reporter = Reporter { controller: "drmesh".into(), instance: std::env::var("POD_NAME").ok() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            products: Applier::new(client.clone(), labels::MANAGER_DATA_PRODUCT),
            sources: Applier::new(client.clone(), labels::MANAGER_DATA_SOURCE),
            policies: Applier::new(client.clone(), labels::MANAGER_ACCESS_POLICY),
            backoff: super::Backoff::default(),
            client,
            caches,
            metrics,
            audit,
            actor,
        }
    }

    /// The clock: the only place the operator reads the time.
    pub fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
