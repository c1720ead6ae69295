//! The three controllers and what wires them to the API server: one watch cache per
//! kind (managedFields dropped, children watched as metadata only and filtered by our
//! label), shared by the controllers and by the pure core's [`MeshView`].

pub mod accesspolicy;
pub mod children;
pub mod context;
pub mod datasource;
pub mod dataproduct;
pub mod error;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::core::DeserializeGuard;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

pub use context::{Caches, Context, SyncGate};
pub use error::Error;

use crate::api::{AccessPolicy, DataProduct, DataSource};
use crate::mesh::labels;
use crate::mesh::rules::subject_namespace;
use crate::mesh::MeshView;
use crate::telemetry::{AuditSink, Metrics};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reconciles run at once, per controller.
    pub concurrency: u16,
    /// Identity recorded in audit records.
    pub actor: String,
    /// Set once every watch cache has listed its objects (served as /readyz).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for Options {
    fn default() -> Self {
        Self { concurrency: 8, actor: "drmesh".into(), ready: Arc::default() }
    }
}

/// Requeue at `at` (an expiry) with a small margin, or wait for a change.
pub fn requeue_at(at: Option<Timestamp>, now: Timestamp) -> Action {
    match at {
        Some(at) if at > now => {
            let wait = now.duration_until(at).unsigned_abs();
            // Far expiries are re-planned hourly: timer wheels do not take years.
            Action::requeue((Duration::from(wait) + Duration::from_millis(20)).min(Duration::from_secs(3600)))
        }
        Some(_) => Action::requeue(Duration::from_millis(20)),
        None => Action::await_change(),
    }
}

/// Per-object exponential backoff for transient errors, reset on success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    pub fn failed(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 2u64.saturating_pow((*n).min(8)).min(300);
        Duration::from_millis(250 * secs)
    }
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
}

/// A watch that keeps `writer`'s cache up to date and tells `gate` when it has listed.
fn cached<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    gate: Arc<SyncGate>,
    kind: &'static str,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(api, cfg)
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event {
                gate.listed(kind);
            }
        })
        .reflect(writer)
}

/// Like [`cached`], for metadata only.
fn cached_meta<K>(
    api: Api<K>,
    cfg: watcher::Config,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
    gate: Arc<SyncGate>,
    kind: &'static str,
) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(api.into_client());
    cached(api, cfg, writer, gate, kind).touched_objects()
}

type Events<K> = futures::channel::mpsc::UnboundedReceiver<watcher::Event<K>>;
type EventSender<K> = futures::channel::mpsc::UnboundedSender<watcher::Event<K>>;

/// Copies every event of a cache's watch, after the cache applied it, to the other
/// controllers: their triggers then never run ahead of the cache they read (a trigger
/// from a separate watch could arrive first and be planned on the old state).
fn fan_out<K: Clone>(count: usize) -> (Vec<EventSender<K>>, Vec<Events<K>>) {
    (0..count).map(|_| futures::channel::mpsc::unbounded()).unzip()
}

fn send_all<K: Clone>(senders: &[EventSender<K>], event: &Result<watcher::Event<K>, watcher::Error>) {
    if let Ok(event) = event {
        for tx in senders {
            let _ = tx.unbounded_send(event.clone());
        }
    }
}

/// The objects of fanned-out events that matter to another controller: with
/// `spec_only`, those whose spec changed (a new `metadata.generation`) or that were
/// deleted; another controller's status writes then wake nothing.
fn changes<K>(events: Events<K>, spec_only: bool) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
{
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    events.filter_map(move |event| {
        let changed = match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                let generation = obj.meta().generation;
                let new = generations.insert(obj.uid().unwrap_or_default(), generation) != Some(generation);
                (new || !spec_only).then_some(Ok(obj))
            }
            watcher::Event::Delete(obj) => {
                generations.remove(&obj.uid().unwrap_or_default());
                Some(Ok(obj))
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        future::ready(changed)
    })
}

fn meta_stream<K>(client: Client, cfg: watcher::Config) -> impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    watcher(Api::<PartialObjectMeta<K>>::all(client), cfg).default_backoff().touched_objects()
}

/// An object as the watches deliver it: parsed, or kept aside as unparseable.
type Guarded<K> = DeserializeGuard<K>;

fn product_ref(namespace: &str, name: &str) -> ObjectRef<Guarded<DataProduct>> {
    ObjectRef::new(name).within(namespace)
}

/// Runs the three controllers until a termination signal.
pub async fn run(client: Client, options: Options, metrics: Arc<Metrics>, audit: Arc<AuditSink>) {
    let managed = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let all = watcher::Config::default();

    let (sources, sources_w) = reflector::store();
    let (products, products_w) = reflector::store();
    let (policies, policies_w) = reflector::store();
    let (namespaces, namespaces_w) = reflector::store();
    let (deployments, deployments_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (service_accounts, service_accounts_w) = reflector::store();
    let (network_policies, network_policies_w) = reflector::store();
    let (roles, roles_w) = reflector::store();
    let (role_bindings, role_bindings_w) = reflector::store();
    let (config_maps, config_maps_w) = reflector::store();
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let caches = Caches {
        sources,
        products,
        policies,
        namespaces,
        deployments,
        services,
        service_accounts,
        network_policies,
        roles,
        role_bindings,
        config_maps,
        synced,
    };
    let gate = SyncGate::new(
        &["datasources", "dataproducts", "accesspolicies", "namespaces", "deployments", "services", "serviceaccounts",
          "networkpolicies", "roles", "rolebindings", "configmaps"],
        synced_tx,
        options.ready.clone(),
    );
    let ctx = Arc::new(Context::new(client.clone(), caches.clone(), metrics, audit, options.actor.clone()));
    let config = ControllerConfig::default().concurrency(options.concurrency);

    // Namespaces: the cache behind clearances; each controller gets its own trigger watch.
    let (ns_tx, mut ns_rx) = fan_out::<PartialObjectMeta<Namespace>>(3);
    let ns_api: Api<PartialObjectMeta<Namespace>> = Api::all(client.clone());
    let ns_cache = cached(ns_api, all.clone(), namespaces_w, gate.clone(), "namespaces").inspect(move |e| send_all(&ns_tx, e));
    tokio::spawn(ns_cache.for_each(|_| future::ready(())));
    let (ns_for_products, ns_for_sources, ns_for_policies) = (ns_rx.remove(0), ns_rx.remove(0), ns_rx.remove(0));
    let (dp_tx, mut dp_rx) = fan_out::<Guarded<DataProduct>>(3);
    let (ds_tx, mut ds_rx) = fan_out::<Guarded<DataSource>>(1);
    let (ap_tx, mut ap_rx) = fan_out::<Guarded<AccessPolicy>>(1);
    let (dp_for_products, dp_for_sources, dp_for_policies) = (dp_rx.remove(0), dp_rx.remove(0), dp_rx.remove(0));
    let ds_for_products = ds_rx.remove(0);
    let ap_for_products = ap_rx.remove(0);

    // AccessPolicy deletions are revocations: record them (children go with the GC).
    let audit_ctx = ctx.clone();
    let policy_gate = gate.clone();
    let policy_stream = watcher(Api::<Guarded<AccessPolicy>>::all(client.clone()), all.clone())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .inspect(move |event| match event {
            Ok(watcher::Event::Delete(DeserializeGuard(Ok(policy)))) => accesspolicy::record_deletion(&audit_ctx, policy),
            Ok(watcher::Event::InitDone) => policy_gate.listed("accesspolicies"),
            _ => {}
        })
        .reflect(policies_w)
        .inspect(move |e| send_all(&ap_tx, e))
        .applied_objects();

    let products_ctrl = {
        let c1 = caches.clone();
        let c2 = caches.clone();
        let c3 = caches.clone();
        let c4 = caches.clone();
        Controller::for_stream(cached(Api::<Guarded<DataProduct>>::all(client.clone()), all.clone(), products_w, gate.clone(), "dataproducts").inspect(move |e| send_all(&dp_tx, e)).applied_objects(), caches.products.clone())
            .with_config(config.clone())
            .owns_stream(cached(Api::<Deployment>::all(client.clone()), managed.clone(), deployments_w, gate.clone(), "deployments").touched_objects())
            .owns_stream(cached_meta(Api::<Service>::all(client.clone()), managed.clone(), services_w, gate.clone(), "services"))
            .owns_stream(cached_meta(Api::<ServiceAccount>::all(client.clone()), managed.clone(), service_accounts_w, gate.clone(), "serviceaccounts"))
            .owns_stream(cached_meta(Api::<NetworkPolicy>::all(client.clone()), managed.clone(), network_policies_w, gate.clone(), "networkpolicies"))
            .owns_stream(cached(Api::<Role>::all(client.clone()), managed.clone(), roles_w, gate.clone(), "roles").touched_objects())
            .owns_stream(cached_meta(Api::<RoleBinding>::all(client.clone()), managed.clone(), role_bindings_w, gate.clone(), "rolebindings"))
            .owns_stream(cached_meta(Api::<ConfigMap>::all(client.clone()), managed.clone(), config_maps_w, gate.clone(), "configmaps"))
            .watches_stream(changes(ap_for_products, true), move |guarded| {
                let DeserializeGuard(Ok(policy)) = guarded else { return vec![] };
                let namespace = policy.namespace().unwrap_or_default();
                let mut refs = vec![product_ref(&namespace, &policy.spec.data_product)];
                // Consumers that read the product, named by the policy or not any more.
                for user in c1.products_using_product(&namespace, &policy.spec.data_product) {
                    refs.push(product_ref(&user.namespace().unwrap_or_default(), &user.name_any()));
                }
                for s in &policy.spec.subjects {
                    if s.kind == crate::api::SubjectKind::DataProduct {
                        if let (Some(ns), Some(name)) = (&s.namespace, &s.name) {
                            refs.push(product_ref(ns, name));
                        }
                    }
                }
                refs
            })
            .watches_stream(changes(ds_for_products, true), move |source| {
                let namespace = source.namespace().unwrap_or_default();
                c2.products_using_source(&namespace, &source.name_any())
                    .iter()
                    .map(|p| product_ref(&namespace, &p.name_any()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(changes(dp_for_products, true), move |guarded| {
                let DeserializeGuard(Ok(product)) = guarded else { return vec![] };
                dataproduct::related_products(&c3, &product)
                    .into_iter()
                    .map(|(ns, name)| product_ref(&ns, &name))
                    .collect::<Vec<_>>()
            })
            .watches_stream(changes(ns_for_products, false), move |ns| in_namespace(&c4.products, &ns.name_any()))
            .shutdown_on_signal()
            .run(reconcile_product, error_policy::<Guarded<DataProduct>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    let sources_ctrl = {
        let c = caches.clone();
        let c2 = caches.clone();
        Controller::for_stream(cached(Api::<Guarded<DataSource>>::all(client.clone()), all.clone(), sources_w, gate.clone(), "datasources").inspect(move |e| send_all(&ds_tx, e)).applied_objects(), caches.sources.clone())
            .with_config(config.clone())
            .owns_stream(meta_stream::<Role>(client.clone(), managed.clone()))
            .owns_stream(meta_stream::<RoleBinding>(client.clone(), managed.clone()))
            .owns_stream(meta_stream::<NetworkPolicy>(client.clone(), managed.clone()))
            .watches_stream(changes(dp_for_sources, true), move |product| {
                in_namespace(&c.sources, &product.namespace().unwrap_or_default())
            })
            .watches_stream(changes(ns_for_sources, false), move |ns| in_namespace(&c2.sources, &ns.name_any()))
            .shutdown_on_signal()
            .run(reconcile_source, error_policy::<Guarded<DataSource>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    let policies_ctrl = {
        let c = caches.clone();
        let c2 = caches.clone();
        Controller::for_stream(policy_stream, caches.policies.clone())
            .with_config(config)
            .owns_stream(meta_stream::<Role>(client.clone(), managed.clone()))
            .owns_stream(meta_stream::<RoleBinding>(client.clone(), managed.clone()))
            .owns_stream(meta_stream::<NetworkPolicy>(client.clone(), managed))
            .watches_stream(changes(dp_for_policies, true), move |product| {
                let namespace = product.namespace().unwrap_or_default();
                c.policies_for(&namespace, &product.name_any())
                    .iter()
                    .map(|p| ObjectRef::new(&p.name_any()).within(&namespace))
                    .collect::<Vec<_>>()
            })
            .watches_stream(changes(ns_for_policies, false), move |ns| {
                let name = ns.name_any();
                c2.policies
                    .state()
                    .iter()
                    .filter(|g| match &g.0 {
                        Ok(p) => {
                            p.metadata.namespace.as_deref() == Some(name.as_str())
                                || p.spec.subjects.iter().any(|s| subject_namespace(s) == Some(name.as_str()))
                        }
                        Err(_) => false,
                    })
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            })
            .shutdown_on_signal()
            .run(reconcile_policy, error_policy::<Guarded<AccessPolicy>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    tracing::info!("drmesh controllers started");
    futures::join!(products_ctrl, sources_ctrl, policies_ctrl);
    tracing::info!("drmesh controllers stopped");
}

fn namespace_terminating(caches: &Caches, namespace: Option<&str>) -> bool {
    namespace
        .and_then(|ns| caches.namespaces.get(&ObjectRef::new(ns)))
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
}

fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(namespace))
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

/// The parsed object, or `None` after logging why it is skipped: one unparseable object
/// must never block the others (nor crash the operator). Objects being deleted, or in a
/// namespace being deleted, are left to the garbage collector and the namespace
/// controller: re-creating their children would only fight the deletion.
fn parsed<K: Resource<DynamicType = ()> + Clone>(guarded: &Guarded<K>, caches: &Caches) -> Option<Arc<K>> {
    match &guarded.0 {
        Ok(obj) if obj.meta().deletion_timestamp.is_some() => None,
        Ok(obj) if namespace_terminating(caches, obj.meta().namespace.as_deref()) => None,
        Ok(obj) => Some(Arc::new(obj.clone())),
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
            tracing::warn!(kind = %K::kind(&()), %namespace, %name, error = %invalid.error, "skipping an object that cannot be parsed");
            None
        }
    }
}

async fn reconcile_product(guarded: Arc<Guarded<DataProduct>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(product) = parsed(&guarded, &ctx.caches) else { return Ok(Action::await_change()) };
    let key = key_of(product.as_ref());
    let action = dataproduct::reconcile(product, ctx.clone()).await?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}

async fn reconcile_source(guarded: Arc<Guarded<DataSource>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(source) = parsed(&guarded, &ctx.caches) else { return Ok(Action::await_change()) };
    let key = key_of(source.as_ref());
    let action = datasource::reconcile(source, ctx.clone()).await?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}

async fn reconcile_policy(guarded: Arc<Guarded<AccessPolicy>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(policy) = parsed(&guarded, &ctx.caches) else { return Ok(Action::await_change()) };
    let key = key_of(policy.as_ref());
    let action = accesspolicy::reconcile(policy, ctx.clone()).await?;
    ctx.backoff.succeeded(&key);
    Ok(action)
}

fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let controller = match K::kind(&()).as_ref() {
        "DataProduct" => dataproduct::CONTROLLER,
        "DataSource" => datasource::CONTROLLER,
        _ => accesspolicy::CONTROLLER,
    };
    ctx.metrics.failed(controller, error.label());
    let wait = ctx.backoff.failed(key_of(obj.as_ref()));
    tracing::warn!(%error, error_label = error.label(), object = %key_of(obj.as_ref()), retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}
