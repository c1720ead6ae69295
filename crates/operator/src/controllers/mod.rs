//! The three controllers and what wires them to the API server: one watch cache per
//! kind (managedFields dropped, children watched as metadata only and filtered by our
//! label), shared by the controllers and by the pure core's [`MeshView`].

pub mod accesspolicy;
pub mod applied;
pub mod child_set;
pub mod children;
pub mod context;
pub mod dataproduct;
pub mod datasource;
pub mod error;
pub mod events;
pub mod fence;
pub mod finalizers;
pub mod foreign;
pub mod graph;
pub mod people;
pub mod queue;
pub mod records;
pub mod scope;
pub mod timers;
pub mod watches;

#[cfg(test)]
pub(crate) mod order_tests;
#[cfg(test)]
mod report_tests;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource, ResourceExt};

pub use context::{Caches, Context, Queues, Report, Standing, SyncGate};
pub use error::Error;
use records::{ChildCache, no_detail};
pub use scope::Scope;
use watches::{
    Events, FanOut, any_change, cached, cached_children, cached_cluster, changes, changes_or, generation, keep_all,
};

use crate::api::{AccessPolicy, Clearance, DataProduct, DataSource, MeshPolicy};
use crate::mesh::MeshView;
use crate::mesh::index::{GrantEdges, MeshIndex, ProductEdges};
use crate::mesh::labels;
use crate::mesh::rules::subject_namespace;
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
    /// The namespaces whose mesh objects and children are watched and reconciled.
    pub scope: Scope,
    /// Triggers of one object arriving within this window are merged into one reconcile.
    pub debounce: Duration,
    /// Products in a classified domain holding foreign access objects do not run.
    pub refuse_foreign_access: bool,
    /// A grant whose audit record cannot be written is not applied (fail closed).
    pub audit_refuses: bool,
    /// The API server's addresses, admitted to products on the ports granted to people.
    pub api_server: crate::mesh::grant::ApiServer,
    /// Whether this replica leads (with leader election): the caches are filled either
    /// way (a warm standby), but nothing is written until it is true. None: always.
    pub leading: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            concurrency: 8,
            actor: "drmesh".into(),
            ready: Arc::default(),
            scope: Scope::Cluster,
            debounce: Duration::from_millis(100),
            refuse_foreign_access: false,
            audit_refuses: true,
            api_server: crate::mesh::grant::ApiServer::none(),
            leading: None,
        }
    }
}

/// How long in-flight reconciles may take to finish after a termination signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long to wait to look again at `at` (an expiry) with a small margin; None: wait
/// for a change.
pub fn wait_until(at: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
    at.map(|at| {
        let wait = if at > now { now.duration_until(at).unsigned_abs() } else { Duration::ZERO };
        // Far expiries are re-planned hourly: timer wheels do not take years.
        (wait + Duration::from_millis(20)).min(Duration::from_secs(3600))
    })
}

/// Retry delays per object after failed reconciles: exponential from 250 ms, doubling up
/// to 64 s, with jitter (backon's: a random part of up to the delay itself), so that
/// objects failing together (an API server restart) do not retry in lockstep.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, backon::ExponentialBackoff>>,
}

/// The first retry delay and the longest.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
pub const BACKOFF_MAX: Duration = Duration::from_secs(64);

impl Backoff {
    pub fn failed(&self, key: String) -> Duration {
        use backon::BackoffBuilder;
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let delays = failures.entry(key).or_insert_with(|| {
            backon::ExponentialBuilder::default()
                .with_min_delay(BACKOFF_MIN)
                .with_max_delay(BACKOFF_MAX)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build()
        });
        delays.next().unwrap_or(BACKOFF_MAX * 2)
    }
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// The JSON merge patch that makes `previous` status into `status`. The status types
/// omit empty lists and absent values when serialized, and a merge patch keeps what it
/// does not mention: each field the old status had and the new one lacks is set to
/// null, so a list that became empty (the last consumer gone) is cleared.
pub fn status_patch<S: serde::Serialize>(previous: &S, status: &S) -> serde_json::Value {
    let mut new = serde_json::to_value(status).unwrap_or_default();
    if let (Some(old), Some(fields)) =
        (serde_json::to_value(previous).ok().and_then(|v| v.as_object().cloned()), new.as_object_mut())
    {
        for key in old.keys() {
            fields.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    serde_json::json!({ "status": new })
}

fn key_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}/{}", K::kind(&()), obj.namespace().unwrap_or_default(), obj.name_any())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An object as the watches deliver it: parsed, or kept aside as unparseable.
type Guarded<K> = DeserializeGuard<K>;

fn product_ref(namespace: &str, name: &str) -> ObjectRef<Guarded<DataProduct>> {
    ObjectRef::new(name).within(namespace)
}

/// Which objects of a resource a watch sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objects {
    /// All of them (drmesh's kinds, namespaces, cluster-wide objects).
    All,
    /// Those drmesh created (`app.kubernetes.io/managed-by=drmesh`): its children.
    Managed,
    /// The others, in the kinds drmesh writes: never taken over, and a NetworkPolicy or
    /// RoleBinding among them may open access beside the grants.
    Foreign,
}

/// One watch: a resource, which of its objects, and its name for the sync gate.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    pub resource: &'static str,
    pub objects: Objects,
    pub key: &'static str,
}

const fn watch(resource: &'static str, objects: Objects, key: &'static str) -> Watch {
    Watch { resource, objects, key }
}

/// Every watch the operator runs, one cache each: the sync gate waits for all of them
/// to have listed before any decision. `run` destructures this table row by row, so a
/// row added here without its wiring does not compile.
pub const WATCHES: [Watch; 20] = [
    watch("namespaces", Objects::All, "namespaces"),
    watch("clearances", Objects::All, "clearances"),
    watch("meshpolicies", Objects::All, "meshpolicies"),
    watch("datasources", Objects::All, "datasources"),
    watch("dataproducts", Objects::All, "dataproducts"),
    watch("accesspolicies", Objects::All, "accesspolicies"),
    watch("deployments", Objects::Managed, "deployments"),
    watch("services", Objects::Managed, "services"),
    watch("serviceaccounts", Objects::Managed, "serviceaccounts"),
    watch("networkpolicies", Objects::Managed, "networkpolicies"),
    watch("roles", Objects::Managed, "roles"),
    watch("rolebindings", Objects::Managed, "rolebindings"),
    watch("configmaps", Objects::Managed, "configmaps"),
    watch("deployments", Objects::Foreign, "foreign deployments"),
    watch("services", Objects::Foreign, "foreign services"),
    watch("serviceaccounts", Objects::Foreign, "foreign serviceaccounts"),
    watch("networkpolicies", Objects::Foreign, "foreign networkpolicies"),
    watch("roles", Objects::Foreign, "foreign roles"),
    watch("rolebindings", Objects::Foreign, "foreign rolebindings"),
    watch("configmaps", Objects::Foreign, "foreign configmaps"),
];

/// Whether the operator watches (and so may write) this resource.
pub fn watched(resource: &str) -> bool {
    WATCHES.iter().any(|w| w.resource == resource)
}

/// A child as the controllers need it once its cache has its record: the metadata.
pub fn metadata_only<K: Resource + Default>(obj: &mut K) {
    let meta = std::mem::take(obj.meta_mut());
    *obj = K::default();
    *obj.meta_mut() = meta;
}

/// A Deployment as the product controller needs it: identity and status. The spec is
/// not kept (a drifted spec shows as a new generation and resourceVersion).
pub fn trim_deployment(d: &mut Deployment) {
    d.spec = None;
    if let Some(status) = &mut d.status {
        status.conditions = None;
    }
}

/// What the Deployment cache keeps beside the metadata.
pub fn available_replicas(d: &Deployment) -> u64 {
    d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0).max(0) as u64
}

/// A Deployment wakes its product when its spec, metadata or available replicas change,
/// not on each intermediate status update of a rollout, nor on the revision annotation
/// the Deployment controller sets right after the product's first apply (its own field,
/// which grants nothing).
fn deployment_change(d: &Deployment) -> u64 {
    let m = &d.metadata;
    let annotations: Vec<_> =
        m.annotations.iter().flatten().filter(|(key, _)| !key.starts_with("deployment.kubernetes.io/")).collect();
    watches::hash(&(
        m.generation,
        &m.labels,
        annotations,
        m.owner_references.as_ref().map(|o| o.iter().map(|r| &r.uid).collect::<Vec<_>>()),
        m.deletion_timestamp.is_some(),
        d.status.as_ref().and_then(|s| s.available_replicas),
    ))
}

/// Which controller's [`children::Applier`] a child stream answers to.
type ApplierOf = fn(&Context) -> &children::Applier;

/// Triggers from a child cache: the controlling owner of kind `P` of each changed child,
/// except the watch's echo of the owner's own apply (the version that apply answered
/// with: the reconcile that wrote it knew what it holds, and waking it again would only
/// find it unchanged). Any other version — someone's edit, a status or finalizer write,
/// a deletion — wakes the owner.
fn owned<C, P>(
    events: Events<C>,
    fingerprint: watches::Fingerprint<C>,
    queue: Arc<queue::Queue<P>>,
    (ctx, applier): (Arc<Context>, ApplierOf),
) -> impl futures::Stream<Item = Result<C, watcher::Error>> + Send
where
    C: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    P: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    changes(events, fingerprint)
        .filter(move |child| future::ready(!child.as_ref().is_ok_and(|c| applier(&ctx).wrote(c))))
        .inspect(move |child| {
            if let Ok(child) = child {
                queue.track(queue::owner::<P>(child.meta()));
            }
        })
}

/// What every watch needs: the client, the namespaces in scope, the sync gate.
struct Wiring {
    client: Client,
    scope: Scope,
    gate: Arc<SyncGate>,
}

impl Wiring {
    fn config(watch: Watch) -> watcher::Config {
        let managed = format!("{}={}", labels::MANAGED_BY, labels::MANAGER);
        match watch.objects {
            Objects::All => watcher::Config::default(),
            Objects::Managed => watcher::Config::default().labels(&managed),
            Objects::Foreign => watcher::Config::default().labels(&managed.replace('=', "!=")),
        }
    }

    /// A watch of children (or of foreign objects of a child kind) into `cache`, its
    /// events copied to the controllers subscribed to `fan` (none: the cache is all).
    fn child<K, C>(&self, watch: Watch, cache: C, trim: fn(&mut K), fan: Option<&Arc<FanOut<K>>>) -> Fed<'_>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + Default
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        C: watches::Reflecting<K> + Send + Sync + 'static,
    {
        let (client, config, gate) = (self.client.clone(), Self::config(watch), self.gate.clone());
        fed_to(cached_children(client, &self.scope, config, cache, gate, watch.key, trim), fan)
    }

    /// A watch of a cluster-scoped kind (always cluster-wide, whatever the scope).
    fn cluster<K>(&self, watch: Watch, writer: reflector::store::Writer<K>, fan: &Arc<FanOut<K>>) -> Fed<'_>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let (client, config, gate) = (self.client.clone(), Self::config(watch), self.gate.clone());
        fed_to(cached_cluster(client, config, writer, gate, watch.key), Some(fan))
    }
}

/// A watch stream, driven to its end (it never ends on its own).
type Fed<'a> = futures::future::BoxFuture<'a, ()>;

/// Drives a cache's watch stream, copying each event to the controllers subscribed to
/// `fan` once the cache has applied it.
fn fed_to<'a, K, S>(stream: S, fan: Option<&Arc<FanOut<K>>>) -> Fed<'a>
where
    K: Clone + Send + 'a,
    S: futures::Stream<Item = watches::WatchResult<K>> + Send + 'a,
{
    let fan = fan.cloned();
    stream
        .for_each(move |e| {
            if let Some(fan) = &fan {
                fan.send(&e);
            }
            future::ready(())
        })
        .boxed()
}

/// Runs the three controllers until a termination signal.
pub async fn run(client: Client, options: Options, metrics: Arc<Metrics>, audit: Arc<AuditSink>) {
    let scope = options.scope.clone();
    if let Scope::Namespaces(set) = &scope {
        tracing::info!(namespaces = ?set, "watching only these namespaces");
    }

    let (sources, sources_w) = reflector::store();
    let (products, products_w) = reflector::store();
    let (policies, policies_w) = reflector::store();
    let (namespaces, namespaces_w) = reflector::store();
    let (clearances, clearances_w) = reflector::store();
    let (mesh_policies, mesh_policies_w) = reflector::store();
    let deployments = ChildCache::new(available_replicas);
    let services = ChildCache::new(no_detail);
    let service_accounts = ChildCache::new(no_detail);
    let network_policies = ChildCache::new(no_detail);
    let roles = ChildCache::new(children::rules_hash);
    let role_bindings = ChildCache::new(no_detail);
    let config_maps = ChildCache::new(no_detail);
    let foreign = foreign::Foreign::default();
    let (synced_tx, synced) = tokio::sync::watch::channel(false);
    let caches = Caches {
        sources,
        products,
        policies,
        namespaces,
        clearances,
        mesh_policies,
        deployments,
        services,
        service_accounts,
        network_policies,
        roles,
        role_bindings,
        config_maps,
        foreign: foreign.clone(),
        synced,
        api_server: options.api_server.clone(),
        index: graph::SharedIndex::default(),
    };
    let gate = SyncGate::new(&WATCHES.map(|w| w.key), synced_tx, options.ready.clone());
    let queues = Arc::new(Queues::default());
    metrics.observe_with(live_figures(caches.clone(), queues.clone()));
    let mut context =
        Context::new(client.clone(), caches.clone(), metrics, audit, options.actor.clone(), queues.clone());
    context.refuse_foreign_access = options.refuse_foreign_access;
    context.audit_refuses = options.audit_refuses;
    context.timers = timers::Timers::debounced(options.debounce);
    if let Some(leading) = &options.leading {
        let fence = fence::Fence::following(leading.clone());
        context.products.fenced(fence.clone());
        context.sources.fenced(fence.clone());
        context.policies.fenced(fence.clone());
        context.fence = fence;
    }
    let ctx = Arc::new(context);
    let audit_tasks = tokio::spawn(audit_upkeep(ctx.clone()));
    let config = ControllerConfig::default().concurrency(options.concurrency).debounce(options.debounce);

    // One watch per kind feeds its cache; its events are then copied to the controllers.
    let ns = FanOut::<PartialObjectMeta<Namespace>>::new();
    let clr = FanOut::<Guarded<Clearance>>::new();
    let mp = FanOut::<Guarded<MeshPolicy>>::new();
    let dp = FanOut::<Guarded<DataProduct>>::new();
    let ds = FanOut::<Guarded<DataSource>>::new();
    let ap = FanOut::<Guarded<AccessPolicy>>::new();
    let deploy = FanOut::<Deployment>::new();
    let svc = FanOut::<Service>::new();
    let sa = FanOut::<ServiceAccount>::new();
    let cm = FanOut::<ConfigMap>::new();
    let np = FanOut::<NetworkPolicy>::new();
    let role = FanOut::<Role>::new();
    let rb = FanOut::<RoleBinding>::new();

    // Foreign NetworkPolicies and RoleBindings wake the products of their domain; the
    // other foreign kinds only keep names (never taken over).
    let foreign_np = FanOut::<NetworkPolicy>::new();
    let foreign_rb = FanOut::<PartialObjectMeta<RoleBinding>>::new();

    // One watch per row of WATCHES feeds its cache; its events then go to the controllers.
    let [
        namespaces_watch,
        clearances_watch,
        mesh_policies_watch,
        sources_watch,
        products_watch,
        policies_watch,
        deployments_watch,
        services_watch,
        service_accounts_watch,
        network_policies_watch,
        roles_watch,
        role_bindings_watch,
        config_maps_watch,
        foreign_deployments,
        foreign_services,
        foreign_service_accounts,
        foreign_network_policies,
        foreign_roles,
        foreign_role_bindings,
        foreign_config_maps,
    ] = WATCHES;
    let w = Wiring { client: client.clone(), scope: scope.clone(), gate: gate.clone() };
    let c = client.clone();
    let caches_fed = future::join_all([
        // Namespaces, people's clearances and the MeshPolicy are watched cluster-wide
        // whatever the scope: clearances of consumers outside the scope are still needed
        // (their products are not, and fail closed).
        w.cluster(namespaces_watch, namespaces_w, &ns),
        w.cluster(clearances_watch, clearances_w, &clr),
        w.cluster(mesh_policies_watch, mesh_policies_w, &mp),
        fed_to(
            cached(
                c.clone(),
                &scope,
                Wiring::config(sources_watch),
                sources_w,
                gate.clone(),
                sources_watch.key,
                keep_all,
            ),
            Some(&ds),
        ),
        // The mesh index follows the product and policy caches, before any controller
        // hears of the change.
        fed_to(
            graph::indexed(
                cached(
                    c.clone(),
                    &scope,
                    Wiring::config(products_watch),
                    products_w,
                    gate.clone(),
                    products_watch.key,
                    keep_all,
                ),
                caches.index.clone(),
            ),
            Some(&dp),
        ),
        fed_to(
            graph::indexed(
                policy_watch(c, &scope, policies_watch, policies_w, gate.clone(), ctx.clone()),
                caches.index.clone(),
            ),
            Some(&ap),
        ),
        w.child(deployments_watch, caches.deployments.clone(), trim_deployment, Some(&deploy)),
        w.child(services_watch, caches.services.clone(), metadata_only, Some(&svc)),
        w.child(service_accounts_watch, caches.service_accounts.clone(), metadata_only, Some(&sa)),
        w.child(network_policies_watch, caches.network_policies.clone(), metadata_only, Some(&np)),
        w.child(roles_watch, caches.roles.clone(), keep_all, Some(&role)),
        w.child(role_bindings_watch, caches.role_bindings.clone(), metadata_only, Some(&rb)),
        w.child(config_maps_watch, caches.config_maps.clone(), metadata_only, Some(&cm)),
        w.child(foreign_deployments, foreign.deployments.clone(), keep_all, None),
        w.child(foreign_services, foreign.services.clone(), keep_all, None),
        w.child(foreign_service_accounts, foreign.service_accounts.clone(), keep_all, None),
        w.child(foreign_network_policies, foreign.network_policies.clone(), keep_all, Some(&foreign_np)),
        w.child(foreign_roles, foreign.roles.clone(), keep_all, None),
        w.child(foreign_role_bindings, foreign.role_bindings.clone(), keep_all, Some(&foreign_rb)),
        w.child(foreign_config_maps, foreign.config_maps.clone(), keep_all, None),
    ]);

    let products_ctrl = {
        let (c1, c2, c3, c4) = (caches.clone(), caches.clone(), caches.clone(), caches.clone());
        let (c5, c6, c7, c8, c9) = (caches.clone(), caches.clone(), caches.clone(), caches.clone(), caches.clone());
        let q = queues.products.clone();
        let (q1, q2, q3, q4) = (q.clone(), q.clone(), q.clone(), q.clone());
        let (q5, q6, q7, q8, q9) = (q.clone(), q.clone(), q.clone(), q.clone(), q.clone());
        // Edges as each trigger last saw them: an input or subject an edit removes wakes
        // what it named (O13), which the new object alone no longer says.
        let products_seen = Mutex::new(MeshIndex::default());
        let policies_seen = Mutex::new(MeshIndex::default());
        let owners_seen = people::ClearanceSubjects::default();
        let mine = || -> (Arc<Context>, ApplierOf) { (ctx.clone(), |c| &c.products) };
        Controller::for_stream(primary(dp.subscribe(), q.clone()), caches.products.clone())
            .with_config(config.clone())
            .reconcile_on(take_over(ctx.clone(), q.clone(), caches.products.clone(), |c, g| {
                Box::pin(confirm_product(c, g))
            }))
            .owns_stream(owned(deploy.subscribe(), deployment_change, q.clone(), mine()))
            .owns_stream(owned(svc.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(sa.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(np.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(role.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(rb.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(cm.subscribe(), any_change, q, mine()))
            .watches_stream(changes(ap.subscribe(), generation), move |guarded| {
                let DeserializeGuard(Ok(policy)) = guarded else {
                    return vec![];
                };
                let namespace = policy.namespace().unwrap_or_default();
                // The product, and its subjects, named by the policy now or before.
                let key = crate::mesh::index::key(&namespace, &policy.name_any());
                let edges = policy.metadata.deletion_timestamp.is_none().then(|| GrantEdges::of(&policy));
                let mut affected = lock(&policies_seen).set_policy(key, edges).products;
                // Consumers that read the product, named by the policy or not any more.
                affected
                    .extend(c1.index.read().consumers(&crate::mesh::index::key(&namespace, &policy.spec.data_product)));
                q1.track(affected.into_iter().map(|(ns, name)| product_ref(&ns, &name)))
            })
            .watches_stream(changes(ds.subscribe(), source_spec_and_readiness), move |source| {
                let namespace = source.namespace().unwrap_or_default();
                q2.track(
                    c2.products_using_source(&namespace, &source.name_any())
                        .iter()
                        .map(|p| product_ref(&namespace, &p.name_any())),
                )
            })
            .watches_stream(changes(dp.subscribe(), product_spec_and_readiness), move |guarded| {
                let DeserializeGuard(Ok(product)) = guarded else {
                    return vec![];
                };
                // The products it reads or read (their consumer lists: a dropped input's
                // changes too, O13), and the products reading it (their grants and inputs).
                let key = crate::mesh::index::key(&product.namespace().unwrap_or_default(), &product.name_any());
                let edges = product.metadata.deletion_timestamp.is_none().then(|| ProductEdges::of(&product));
                let mut woken = lock(&products_seen).set_product(key.clone(), edges).products;
                woken.extend(c3.index.read().consumers(&key));
                // Not the product itself: its own spec changes are its primary trigger, and
                // its readiness (its own status write) must not wake it again.
                woken.remove(&key);
                q3.track(woken.into_iter().map(|(ns, name)| product_ref(&ns, &name)))
            })
            .watches_stream(changes(ns.subscribe(), any_change), move |ns| {
                q4.track(in_namespace(&c4.products, &ns.name_any()))
            })
            .watches_stream(changes(foreign_np.subscribe(), any_change), move |np| {
                q5.track(in_namespace(&c5.products, &np.namespace().unwrap_or_default()))
            })
            .watches_stream(changes(clr.subscribe(), any_change), move |clearance| {
                let concerned = owners_seen.changed(&clearance);
                q7.track(
                    c7.products
                        .state()
                        .iter()
                        .filter(|g| g.0.as_ref().is_ok_and(|p| people::owned_by(p, &concerned)))
                        .map(|g| ObjectRef::from_obj(g.as_ref())),
                )
            })
            .watches_stream(changes(foreign_rb.subscribe(), any_change), move |rb| {
                q6.track(in_namespace(&c6.products, &rb.namespace().unwrap_or_default()))
            })
            // An access object passing for drmesh's (a forged managed-by label) is foreign
            // too: its namespace's products say so.
            .watches_stream(changes(np.subscribe(), any_change), move |np| {
                q8.track(woken_by_forged(&c8.products, np.meta()))
            })
            .watches_stream(changes(rb.subscribe(), any_change), move |rb| {
                q9.track(woken_by_forged(&c9.products, rb.meta()))
            })
            .shutdown_on_signal()
            .run(reconcile_product, error_policy::<Guarded<DataProduct>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    let sources_ctrl = {
        let (c, c2) = (caches.clone(), caches.clone());
        let q = queues.sources.clone();
        let (q1, q2) = (q.clone(), q.clone());
        let mine = || -> (Arc<Context>, ApplierOf) { (ctx.clone(), |c| &c.sources) };
        Controller::for_stream(primary(ds.subscribe(), q.clone()), caches.sources.clone())
            .with_config(config.clone())
            .reconcile_on(take_over(ctx.clone(), q.clone(), caches.sources.clone(), |c, g| {
                Box::pin(confirm_source(c, g))
            }))
            .owns_stream(owned(role.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(rb.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(np.subscribe(), any_change, q, mine()))
            .watches_stream(changes(dp.subscribe(), product_as_a_source_consumer), move |product| {
                q1.track(in_namespace(&c.sources, &product.namespace().unwrap_or_default()))
            })
            .watches_stream(changes(ns.subscribe(), any_change), move |ns| {
                q2.track(in_namespace(&c2.sources, &ns.name_any()))
            })
            .shutdown_on_signal()
            .run(reconcile_source, error_policy::<Guarded<DataSource>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    let policies_ctrl = {
        let (c, c2, c3, c4) = (caches.clone(), caches.clone(), caches.clone(), caches.clone());
        let q = queues.policies.clone();
        let (q1, q2, q3, q4) = (q.clone(), q.clone(), q.clone(), q.clone());
        let subjects_seen = people::ClearanceSubjects::default();
        let mine = || -> (Arc<Context>, ApplierOf) { (ctx.clone(), |c| &c.policies) };
        Controller::for_stream(primary(ap.subscribe(), q.clone()), caches.policies.clone())
            .with_config(config)
            .reconcile_on(take_over(ctx.clone(), q.clone(), caches.policies.clone(), |c, g| {
                Box::pin(confirm_policy(c, g))
            }))
            .owns_stream(owned(role.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(rb.subscribe(), any_change, q.clone(), mine()))
            .owns_stream(owned(np.subscribe(), any_change, q, mine()))
            .watches_stream(changes(dp.subscribe(), product_as_granted), move |product| {
                let namespace = product.namespace().unwrap_or_default();
                q1.track(
                    c.policies_for(&namespace, &product.name_any())
                        .iter()
                        .map(|p| ObjectRef::new(&p.name_any()).within(&namespace)),
                )
            })
            .watches_stream(changes(ns.subscribe(), any_change), move |ns| {
                let name = ns.name_any();
                q2.track(
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
                        .map(|p| ObjectRef::from_obj(p.as_ref())),
                )
            })
            // A clearance given, lowered, expired or withdrawn re-decides the grants that
            // name its person (revoked at once when lowered; at its expiry by requeue).
            .watches_stream(changes(clr.subscribe(), any_change), move |clearance| {
                let concerned = subjects_seen.changed(&clearance);
                q3.track(
                    c3.policies
                        .state()
                        .iter()
                        .filter(|g| g.0.as_ref().is_ok_and(|p| people::names(p, &concerned)))
                        .map(|g| ObjectRef::from_obj(g.as_ref())),
                )
            })
            // The MeshPolicy (grant lengths, grace, approvers and their keys) re-decides
            // every grant.
            .watches_stream(changes(mp.subscribe(), any_change), move |_| {
                q4.track(c4.policies.state().iter().map(|g| ObjectRef::from_obj(g.as_ref())))
            })
            .shutdown_on_signal()
            .run(reconcile_policy, error_policy::<Guarded<AccessPolicy>>, ctx.clone())
            .for_each(|_| future::ready(()))
    };

    let leading = || ctx.fence.receiver();
    let finalizers_kept = future::join(
        finalizers::network_policies(client.clone(), caches.clone(), np.subscribe(), leading()),
        future::join3(
            future::join(
                finalizers::foreign(client.clone(), rb.subscribe(), leading()),
                finalizers::foreign(client.clone(), role.subscribe(), leading()),
            ),
            future::join(
                finalizers::foreign(client.clone(), deploy.subscribe(), leading()),
                finalizers::foreign(client.clone(), svc.subscribe(), leading()),
            ),
            future::join(
                finalizers::foreign(client.clone(), sa.subscribe(), leading()),
                finalizers::foreign(client.clone(), cm.subscribe(), leading()),
            ),
        ),
    );

    tracing::info!("drmesh controllers started");
    let controllers = futures::future::join3(products_ctrl, sources_ctrl, policies_ctrl);
    tokio::select! {
        _ = controllers => {}
        _ = caches_fed => tracing::error!("a watch stream ended"),
        _ = finalizers_kept => tracing::error!("a watch stream of children ended"),
        // The controllers stop taking work on the signal and finish what is in flight;
        // a reconcile that cannot finish (caches that never sync) does not hold the exit.
        _ = async { shutdown_signal().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running after the grace period: stopping anyway");
        }
    }
    audit_tasks.abort();
    // The grants in force as last recorded, for the next leader.
    ctx.audit.checkpoint().await;
    tracing::info!("drmesh controllers stopped");
}

/// A DataSource's spec and whether it is Ready: products mount its Secret only then.
fn source_spec_and_readiness(source: &Guarded<DataSource>) -> u64 {
    let ready = source.0.as_ref().ok().and_then(|s| s.status.as_ref()).map(|s| ready_of(&s.conditions));
    watches::hash(&(generation(source), ready))
}

/// What a product's inputs and consumers read of it: its inputs, classification,
/// ports, readiness and deletion (an edit of its description or runtime wakes nobody
/// else). Any change of an unparseable one.
fn product_spec_and_readiness(product: &Guarded<DataProduct>) -> u64 {
    let Ok(p) = &product.0 else { return any_change(product) };
    let ready = p.status.as_ref().map(|s| ready_of(&s.conditions));
    watches::hash(&(
        &p.metadata.uid,
        p.metadata.deletion_timestamp.is_some(),
        serde_json::to_string(&(&p.spec.inputs, &p.spec.output_ports)).unwrap_or_default(),
        p.spec.classification,
        ready,
    ))
}

/// What a source's decision reads of a product using it: its inputs, classification and
/// deletion.
fn product_as_a_source_consumer(product: &Guarded<DataProduct>) -> u64 {
    let Ok(p) = &product.0 else { return any_change(product) };
    watches::hash(&(
        &p.metadata.uid,
        p.metadata.deletion_timestamp.is_some(),
        serde_json::to_string(&p.spec.inputs).unwrap_or_default(),
        p.spec.classification,
    ))
}

/// What a grant's decision reads of its product: classification, ports and deletion.
fn product_as_granted(product: &Guarded<DataProduct>) -> u64 {
    let Ok(p) = &product.0 else { return any_change(product) };
    watches::hash(&(
        &p.metadata.uid,
        p.metadata.deletion_timestamp.is_some(),
        serde_json::to_string(&p.spec.output_ports).unwrap_or_default(),
        p.spec.classification,
    ))
}

fn ready_of(conditions: &[crate::api::Condition]) -> Option<bool> {
    crate::api::find_condition(conditions, crate::api::condition_type::READY)
        .map(|c| c.status == crate::api::ConditionStatus::True)
}

/// The primary trigger of a controller: its objects, when their spec changed (its own
/// status writes wake nothing) or they were deleted.
fn primary<K>(
    events: Events<Guarded<K>>,
    queue: Arc<queue::Queue<Guarded<K>>>,
) -> impl futures::Stream<Item = Result<Guarded<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    Guarded<K>: Resource<DynamicType = ()> + Clone,
{
    // A status write wakes nothing, except on a standby holding the object: the leader's
    // status write is often the last of its reconcile, after which the standby finds the
    // object in step.
    let held = queue.clone();
    changes_or(events, spec_or_unparseable, move |obj| held.is_held(&ObjectRef::from_obj(obj))).inspect(move |obj| {
        if let Ok(obj) = obj {
            queue.track([ObjectRef::from_obj(obj)]);
        }
    })
}

/// The generation of a parsed object (its status writes wake nothing); any change of one
/// that cannot be parsed (a status write may be what broke it: its access is withdrawn).
fn spec_or_unparseable<K: Resource<DynamicType = ()>>(guarded: &Guarded<K>) -> u64 {
    match &guarded.0 {
        Ok(obj) => generation(obj),
        Err(_) => any_change(guarded),
    }
}

/// The AccessPolicy watch: a deletion is a revocation, recorded as it is seen.
fn policy_watch(
    client: Client,
    scope: &Scope,
    watch: Watch,
    writer: reflector::store::Writer<Guarded<AccessPolicy>>,
    gate: Arc<SyncGate>,
    ctx: Arc<Context>,
) -> impl futures::Stream<Item = watches::WatchResult<Guarded<AccessPolicy>>> + Send {
    cached(client, scope, Wiring::config(watch), writer, gate, watch.key, keep_all).inspect(move |event| {
        if let Ok(Event::Delete(DeserializeGuard(Ok(policy)))) = event {
            let (ctx, policy) = (ctx.clone(), policy.clone());
            tokio::spawn(async move { accesspolicy::record_deletion(&ctx, &policy).await });
        }
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Figures computed when /metrics is scraped: queue depths and grants by state.
fn live_figures(
    caches: Caches,
    queues: Arc<Queues>,
) -> impl Fn() -> crate::telemetry::LiveFigures + Send + Sync + 'static {
    move || {
        let mut grants = crate::telemetry::GrantCounts::default();
        for policy in caches.policies.state().iter().filter_map(|g| g.0.as_ref().ok()) {
            grants.count(policy.status.as_ref());
        }
        crate::telemetry::LiveFigures {
            queue_depth: [
                (dataproduct::CONTROLLER, queues.products.depth(&caches.products)),
                (datasource::CONTROLLER, queues.sources.depth(&caches.sources)),
                (accesspolicy::CONTROLLER, queues.policies.depth(&caches.policies)),
            ],
            standby_held: [
                (dataproduct::CONTROLLER, queues.products.held(&caches.products)),
                (datasource::CONTROLLER, queues.sources.held(&caches.sources)),
                (accesspolicy::CONTROLLER, queues.policies.held(&caches.policies)),
            ],
            grants,
            foreign_access_objects: caches
                .namespaces
                .state()
                .iter()
                .map(|ns| ns.name_any())
                .filter(|ns| caches.clearance(ns) > crate::api::Classification::Public)
                .map(|ns| caches.access_objects(&ns).len())
                .sum(),
        }
    }
}

fn namespace_terminating(caches: &Caches, namespace: Option<&str>) -> bool {
    namespace
        .and_then(|ns| caches.namespaces.get(&ObjectRef::new(ns)))
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
}

/// The objects of `store` in the namespace of an access object passing for drmesh's with
/// a forged managed-by label; none for any other object.
fn woken_by_forged<K>(
    store: &Store<K>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    if !records::forged(meta) {
        return vec![];
    }
    in_namespace(store, meta.namespace.as_deref().unwrap_or_default())
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

/// What a reconcile is about: a live object, one whose access is being withdrawn (the
/// object or its namespace is being deleted), or one that cannot be parsed.
enum Seen<K> {
    Live(Arc<K>),
    /// Being deleted (a foreign finalizer may keep it for long): nothing new is applied,
    /// what it grants is withdrawn at once.
    Withdrawing(Arc<K>),
    /// Cannot be parsed: what its children grant is withdrawn (one bad object never
    /// blocks the others, nor keeps access alive).
    Unparseable(Box<kube::core::error_boundary::InvalidObject>),
}

fn seen<K: Resource<DynamicType = ()> + Clone>(guarded: &Guarded<K>, caches: &Caches) -> Seen<K> {
    match &guarded.0 {
        Ok(obj) if obj.meta().deletion_timestamp.is_some() => Seen::Withdrawing(Arc::new(obj.clone())),
        Ok(obj) if namespace_terminating(caches, obj.meta().namespace.as_deref()) => {
            Seen::Withdrawing(Arc::new(obj.clone()))
        }
        Ok(obj) => Seen::Live(Arc::new(obj.clone())),
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
            tracing::warn!(kind = %K::kind(&()), %namespace, %name, error = %invalid.error, "an object that cannot be parsed: withdrawing what it grants");
            Seen::Unparseable(Box::new(invalid.clone()))
        }
    }
}

async fn reconcile_product(guarded: Arc<Guarded<DataProduct>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let reconcile = async {
        match seen(&guarded, &ctx.caches) {
            Seen::Live(product) => dataproduct::reconcile(&product, &ctx).await,
            Seen::Withdrawing(product) => dataproduct::withdraw(&product, &ctx).await,
            // Owners' RBAC and the workload (its pods mount the sources' Secrets): the
            // isolation stays (deny by default), grants on the product are refused by
            // their own controller (it cannot be read), and its sources drop it.
            Seen::Unparseable(invalid) => {
                withdraw_unparseable::<DataProduct>(&ctx, &invalid, labels::DATA_PRODUCT, false).await
            }
        }
    };
    let confirm: Confirm<DataProduct> = |c, g| Box::pin(confirm_product(c, g));
    run_reconcile(&ctx, &guarded, &ctx.queues.products, dataproduct::CONTROLLER, reconcile, confirm).await
}

async fn reconcile_source(guarded: Arc<Guarded<DataSource>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let reconcile = async {
        match seen(&guarded, &ctx.caches) {
            Seen::Live(source) => datasource::reconcile(&source, &ctx).await,
            Seen::Withdrawing(source) => datasource::withdraw(&source, &ctx).await,
            Seen::Unparseable(invalid) => {
                withdraw_unparseable::<DataSource>(&ctx, &invalid, labels::DATA_SOURCE, true).await
            }
        }
    };
    let confirm: Confirm<DataSource> = |c, g| Box::pin(confirm_source(c, g));
    run_reconcile(&ctx, &guarded, &ctx.queues.sources, datasource::CONTROLLER, reconcile, confirm).await
}

async fn reconcile_policy(guarded: Arc<Guarded<AccessPolicy>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let reconcile = async {
        match seen(&guarded, &ctx.caches) {
            Seen::Live(policy) => accesspolicy::reconcile(&policy, &ctx, false).await,
            Seen::Withdrawing(policy) => accesspolicy::reconcile(&policy, &ctx, true).await,
            Seen::Unparseable(invalid) => {
                withdraw_unparseable::<AccessPolicy>(&ctx, &invalid, labels::ACCESS_POLICY, true).await
            }
        }
    };
    let confirm: Confirm<AccessPolicy> = |c, g| Box::pin(confirm_policy(c, g));
    run_reconcile(&ctx, &guarded, &ctx.queues.policies, accesspolicy::CONTROLLER, reconcile, confirm).await
}

/// One reconcile of `guarded`, on a leader or (every write fenced off) on a standby:
/// counted, timed, its object held or found in step on a standby, and confirmed for the
/// audit chain once reconciled while leading.
async fn run_reconcile<K>(
    ctx: &Context,
    guarded: &Guarded<K>,
    queue: &queue::Queue<Guarded<K>>,
    controller: &'static str,
    reconcile: impl std::future::Future<Output = Result<Option<Duration>, Error>>,
    confirm: Confirm<K>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    Guarded<K>: Resource<DynamicType = ()> + Clone,
{
    let obj = ObjectRef::from_obj(guarded);
    queue.started(&obj);
    let run =
        ctx.start(format!("{}/{}/{}", K::kind(&()), guarded.namespace().unwrap_or_default(), guarded.name_any())).await;
    let closed = !ctx.fence.open();
    let (next, reached) = fence::watched(reconcile).await;
    let standing = ctx.standing(queue, &obj, closed, reached, next.is_ok());
    if next.is_ok() && matches!(standing, Standing::Done | Standing::InStep { now: true }) {
        confirm(ctx, guarded).await;
    }
    ctx.finish_standby(controller, run, next, standing)
}

// After the first reconcile of an object while leading, or at the take-over for an object
// the standby found in step: access the previous leader left in force that the object no
// longer gives, with no record in the chain, is recorded; then the object counts as
// reconciled, so a later record of it is this replica's own decision, not a change found
// at take-over (see AuditSink::reconciled).

async fn confirm_product(ctx: &Context, guarded: &Guarded<DataProduct>) {
    if let Seen::Live(product) = seen(guarded, &ctx.caches) {
        dataproduct::record_found_narrowed(ctx, &product).await;
    }
    let namespace = guarded.namespace().unwrap_or_default();
    ctx.audit.reconciled(&crate::audit_sink::owners_key(&namespace, &guarded.name_any()));
}

async fn confirm_source(ctx: &Context, guarded: &Guarded<DataSource>) {
    if let Seen::Live(source) = seen(guarded, &ctx.caches) {
        datasource::record_found_narrowed(ctx, &source).await;
    }
    let namespace = guarded.namespace().unwrap_or_default();
    ctx.audit.reconciled(&crate::audit_sink::credentials_key(&namespace, &guarded.name_any()));
}

async fn confirm_policy(ctx: &Context, guarded: &Guarded<AccessPolicy>) {
    if let Seen::Live(policy) = seen(guarded, &ctx.caches) {
        accesspolicy::record_found_narrowed(ctx, &policy).await;
    }
    if let Some(uid) = guarded.uid() {
        ctx.audit.reconciled(&uid);
    }
}

type Confirm<K> = for<'a> fn(&'a Context, &'a Guarded<K>) -> futures::future::BoxFuture<'a, ()>;

/// The take-over, for one controller: once this replica leads (its fence open, its audit
/// chain taken over), the objects its standby held are reconciled first, and those it
/// found in step are confirmed without a reconcile. Without leader election it finds
/// nothing and ends.
fn take_over<K>(
    ctx: Arc<Context>,
    queue: Arc<queue::Queue<Guarded<K>>>,
    store: Store<Guarded<K>>,
    confirm: Confirm<K>,
) -> impl futures::Stream<Item = ObjectRef<Guarded<K>>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    futures::stream::once(async move {
        ctx.caches.ready().await;
        let mut leading = ctx.fence.receiver();
        let _ = leading.wait_for(|l| *l).await;
        let (held, in_step) = queue.take_all();
        if !held.is_empty() || !in_step.is_empty() {
            tracing::info!(kind = %K::kind(&()), held = held.len(), in_step = in_step.len(), "taking over what the standby found");
        }
        let held = queue.track(held);
        let ctx2 = ctx.clone();
        // Confirmed beside the held objects' reconciles, not before them.
        tokio::spawn(async move {
            for obj in in_step {
                if let Some(guarded) = store.get(&obj) {
                    confirm(&ctx2, &guarded).await;
                }
            }
        });
        futures::stream::iter(held)
    })
    .flatten()
}

/// Once this replica leads with synced caches: records the access the previous leader left
/// in force whose object was deleted while no operator led (an AccessPolicy, a product
/// with owners' access, a source lending credentials: their children went with the
/// garbage collector, unrecorded). Then saves the access in force when it changed, and
/// runs the anchor command when due.
async fn audit_upkeep(ctx: Arc<Context>) {
    ctx.caches.ready().await;
    let mut leading = ctx.fence.receiver();
    if leading.wait_for(|l| *l).await.is_err() {
        return;
    }
    let policies: std::collections::HashSet<String> = ctx
        .caches
        .policies
        .state()
        .iter()
        .filter_map(|g| match &g.0 {
            Ok(policy) => policy.uid(),
            Err(invalid) => invalid.metadata.uid.clone(),
        })
        .collect();
    let exists = |key: &str| match crate::audit_sink::Standing::of(key) {
        crate::audit_sink::Standing::Policy { uid } => policies.contains(uid),
        crate::audit_sink::Standing::Owners { namespace, product } => {
            ctx.caches.products.get(&ObjectRef::new(product).within(namespace)).is_some()
        }
        crate::audit_sink::Standing::Credentials { namespace, source } => {
            ctx.caches.sources.get(&ObjectRef::new(source).within(namespace)).is_some()
        }
    };
    let (deleted, window) = ctx.audit.deleted_while_nobody_led(exists).await;
    for (key, entry) in deleted {
        let record = deleted_while_nobody_led(&ctx, &key, entry, window.clone());
        tracing::warn!(object = %record.product.name, "{}", record.message);
        let _ = ctx.audit.record(record).await;
    }
    // Every second: the last change of a burst is saved within a second of its record,
    // so the operator is quiet soon after the mesh is (nothing is saved when nothing
    // changed); the anchor command keeps its own pace.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        ctx.audit.checkpoint().await;
        ctx.audit.anchor_if_due().await;
    }
}

/// The record of access the previous leader left in force whose object was deleted while
/// no operator led (`key`, `entry`: see [`crate::audit_sink::Granted`]).
fn deleted_while_nobody_led(
    ctx: &Context,
    key: &str,
    entry: (String, String),
    window: Option<crate::audit::Unled>,
) -> crate::audit::Event {
    use crate::audit_sink::Standing;
    let when = window.as_ref().map(crate::audit_sink::unled_message).unwrap_or_default();
    let subjects = crate::audit_sink::standing_subjects(&entry);
    let (reason, namespace, product, subjects, policy, message) = match Standing::of(key) {
        Standing::Policy { uid } => {
            let (policy, product) = entry;
            let (namespace, name) = policy.split_once('/').unwrap_or_default();
            let message = format!(
                "AccessPolicy {policy} (uid {uid}) was deleted while no operator led: its access went with it; \
                 observed when this replica took the audit chain over; {when}"
            );
            let policy = crate::audit::PolicyRef {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid: uid.to_string(),
                generation: 0,
            };
            (crate::mesh::rules::Reason::PolicyDeleted, namespace.to_string(), product, vec![], Some(policy), message)
        }
        Standing::Owners { namespace, product } => {
            let message = format!(
                "DataProduct {namespace}/{product} was deleted while no operator led: its owners' access to its data \
                 ({}) went with it; {when}",
                subjects.join(", ")
            );
            (
                crate::mesh::rules::Reason::OwnersAccess,
                namespace.to_string(),
                product.to_string(),
                subjects,
                None,
                message,
            )
        }
        Standing::Credentials { namespace, source } => {
            let message = format!(
                "DataSource {namespace}/{source} was deleted while no operator led: its credentials, lent to {}, \
                 went with it; {when}",
                subjects.join(", ")
            );
            (
                crate::mesh::rules::Reason::CredentialsWithdrawn,
                namespace.to_string(),
                source.to_string(),
                subjects,
                None,
                message,
            )
        }
    };
    crate::audit::Event {
        time: ctx.now().to_string(),
        actor: ctx.actor.clone(),
        decision: crate::audit::Decision::Revoked,
        reason: reason.to_string(),
        message,
        product: crate::audit::ObjectRef { namespace, name: product },
        classification: "Unknown".into(),
        subjects,
        purpose: None,
        expires_at: None,
        policy,
        ports: vec![],
        while_no_operator_led: window,
    }
}

/// Withdraws what the children of an unparseable object grant (and a product's workload,
/// whose pods mount its sources' Secrets), and says so once (Event, audit record,
/// metric) when something was withdrawn.
async fn withdraw_unparseable<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    invalid: &kube::core::error_boundary::InvalidObject,
    label: &str,
    network: bool,
) -> Result<Option<Duration>, Error> {
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let uid = invalid.metadata.uid.clone().unwrap_or_default();
    let mut withdrawn = ctx.withdraw(&namespace, &uid, (label, &name), network).await?;
    if K::kind(&()) == "DataProduct" {
        let none = std::collections::BTreeSet::new();
        withdrawn += children::prune::<Deployment, _>(
            &ctx.client,
            &ctx.fence,
            &ctx.caches.deployments,
            &namespace,
            &uid,
            (label, &name),
            &none,
        )
        .await?;
    }
    if withdrawn == 0 {
        return Ok(None);
    }
    let kind = K::kind(&()).to_string();
    let message = format!(
        "{kind} {namespace}/{name} cannot be parsed ({}): the access its children granted is withdrawn ({withdrawn} object(s))",
        invalid.error
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(crate::api::API_VERSION.into()),
        kind: Some(kind.clone()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        uid: Some(uid),
        ..Default::default()
    };
    let _ = ctx
        .report(Report {
            object: reference,
            decision: crate::audit::Decision::Revoked,
            reason: crate::mesh::rules::Reason::Unparseable,
            message,
            product: crate::audit::ObjectRef {
                namespace,
                name: if kind == "DataProduct" { name } else { String::new() },
            },
            classification: "Unknown".into(),
            subjects: vec![],
            purpose: None,
            expires_at: None,
            policy: None,
        })
        .await;
    Ok(None)
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

#[cfg(test)]
mod backoff_tests {
    use super::{BACKOFF_MAX, BACKOFF_MIN, Backoff};

    #[test]
    fn a_status_patch_clears_what_the_new_status_no_longer_has() {
        use crate::api::{DataProductRef, DataProductStatus};
        let old = DataProductStatus {
            consumers: vec![DataProductRef::new("cnc", "situation-picture")],
            consumer_count: Some(1),
            ..Default::default()
        };
        let new = DataProductStatus { consumer_count: Some(0), ..Default::default() };
        let patch = super::status_patch(&old, &new);
        assert_eq!(patch["status"]["consumers"], serde_json::Value::Null);
        assert!(patch["status"].as_object().is_some_and(|s| s.contains_key("consumers")), "{patch}");
        assert_eq!(patch["status"]["consumerCount"], 0);
    }

    /// A Deployment wakes its product when what the product reads or set changes: not
    /// when the Deployment controller stamps its revision right after the first apply.
    #[test]
    fn a_deployment_wakes_its_product_on_its_availability_and_drmeshs_fields_not_on_its_revision() {
        use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
        let with = |annotations: &[(&str, &str)], available: Option<i32>| {
            let mut d = Deployment::default();
            d.metadata.generation = Some(1);
            d.metadata.annotations = Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            d.status = Some(DeploymentStatus { available_replicas: available, ..Default::default() });
            d
        };
        let applied = super::deployment_change(&with(&[], None));
        let revision = super::deployment_change(&with(&[("deployment.kubernetes.io/revision", "1")], None));
        assert_eq!(applied, revision, "the revision stamp wakes nothing");
        let available = super::deployment_change(&with(&[("deployment.kubernetes.io/revision", "1")], Some(1)));
        assert_ne!(revision, available, "availability wakes the product");
        let edited = super::deployment_change(&with(&[("example.com/note", "x")], None));
        assert_ne!(applied, edited, "any other annotation (drmesh's, or an edit) wakes it");
    }

    #[test]
    fn retries_back_off_with_jitter_up_to_a_cap_and_reset_on_success() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (0..12).map(|_| backoff.failed("a".into())).collect();
        assert!(delays[0] >= BACKOFF_MIN && delays[0] <= BACKOFF_MIN * 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX * 2), "capped: {delays:?}");
        assert!(delays[11] >= BACKOFF_MAX, "reaches the cap: {delays:?}");
        // Jitter: many objects failing at once do not all get the same delay.
        let firsts: std::collections::BTreeSet<_> = (0..20).map(|i| backoff.failed(format!("k{i}"))).collect();
        assert!(firsts.len() > 1, "no jitter: {firsts:?}");
        backoff.succeeded("a");
        assert!(backoff.failed("a".into()) <= BACKOFF_MIN * 2, "reset after a success");
    }
}
