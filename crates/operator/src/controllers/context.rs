//! What every reconcile shares: the client, the watch caches, metrics, Events, audit.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::PartialObjectMeta;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use super::children::Applier;
use super::queue::Queue;
use super::records::ChildCache;
use crate::api::{
    AccessPolicy, Classification, Clearance, DataProduct, DataSource, MESH_POLICY_NAME, MeshPolicy, OwnerKind,
    clearance_from_labels,
};
use crate::mesh::labels;
use crate::mesh::{MeshView, Readiness};
use crate::telemetry::{AuditSink, Metrics};

/// Watch caches of the mesh and of the children.
#[derive(Clone)]
pub struct Caches {
    pub sources: Store<DeserializeGuard<DataSource>>,
    pub products: Store<DeserializeGuard<DataProduct>>,
    pub policies: Store<DeserializeGuard<AccessPolicy>>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// People's clearances and the cluster's MeshPolicy (cluster-scoped).
    pub clearances: Store<DeserializeGuard<Clearance>>,
    pub mesh_policies: Store<DeserializeGuard<MeshPolicy>>,
    /// Children, as compact records (see [`ChildCache`]). Detail: available replicas.
    pub deployments: ChildCache<Deployment>,
    pub services: ChildCache<Service>,
    pub service_accounts: ChildCache<ServiceAccount>,
    pub network_policies: ChildCache<NetworkPolicy>,
    /// Detail: a hash of the rules, compared before a Role changes (see `apply_access`).
    pub roles: ChildCache<Role>,
    pub role_bindings: ChildCache<RoleBinding>,
    pub config_maps: ChildCache<ConfigMap>,
    /// Objects of the same kinds that drmesh did not create.
    pub foreign: super::foreign::Foreign,
    /// Turns true once every cache has listed its objects (see [`Caches::watch_ready`]).
    pub synced: tokio::sync::watch::Receiver<bool>,
    /// The API server's addresses: people's reads through the proxy come from them.
    pub api_server: crate::mesh::grant::ApiServer,
    /// Who reads whom and who is granted what, fed by the product and policy watches.
    pub index: super::graph::SharedIndex,
}

impl Caches {
    /// What in `namespace` may open access to products beside drmesh's grants, as
    /// `Kind/name`: the NetworkPolicies and RoleBindings drmesh did not create, and those
    /// that pass for drmesh's with a forged managed-by label.
    pub fn access_objects(&self, namespace: &str) -> Vec<String> {
        let mut objects = self.foreign.access_objects(namespace);
        for (kind, names) in [
            ("NetworkPolicy", self.network_policies.forged(namespace)),
            ("RoleBinding", self.role_bindings.forged(namespace)),
        ] {
            objects.extend(names.into_iter().map(|n| format!("{kind}/{n} (forged label)")));
        }
        objects
    }

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
    /// The same fact for /readyz.
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl SyncGate {
    pub fn new(
        kinds: &[&'static str],
        synced: tokio::sync::watch::Sender<bool>,
        ready: Arc<std::sync::atomic::AtomicBool>,
    ) -> Arc<Self> {
        Arc::new(Self { pending: std::sync::Mutex::new(kinds.iter().copied().collect()), synced, ready })
    }

    /// `kind`'s watch has listed everything (later relists are ignored).
    pub fn listed(&self, kind: &'static str) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.remove(kind) && pending.is_empty() {
            let _ = self.synced.send(true);
            self.ready.store(true, std::sync::atomic::Ordering::Relaxed);
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
        valid(self.sources.get(&ObjectRef::new(name).within(namespace))?)
    }
    fn product(&self, namespace: &str, name: &str) -> Option<Arc<DataProduct>> {
        valid(self.products.get(&ObjectRef::new(name).within(namespace))?)
    }
    fn secret_exists(&self, _namespace: &str, _name: &str) -> Option<bool> {
        None // the operator does not cache Secrets; the DataSource controller asks the API server
    }
    fn source_ready(&self, namespace: &str, name: &str) -> Readiness {
        match self.source(namespace, name) {
            Some(source) => readiness(
                source.metadata.generation,
                source.status.as_ref().map(|s| (s.observed_generation, &s.conditions)),
            ),
            None => Readiness::NotReady("the DataSource does not exist".into()),
        }
    }
    fn product_ready(&self, namespace: &str, name: &str) -> Readiness {
        match self.product(namespace, name) {
            Some(product) => readiness(
                product.metadata.generation,
                product.status.as_ref().map(|s| (s.observed_generation, &s.conditions)),
            ),
            None => Readiness::NotReady("the DataProduct does not exist".into()),
        }
    }
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<Arc<AccessPolicy>> {
        cached(&self.policies, self.index.read().policies_of(&crate::mesh::index::key(namespace, product)))
    }
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<Arc<DataProduct>> {
        cached(&self.products, self.index.read().source_users(namespace, source))
    }
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<Arc<DataProduct>> {
        cached(&self.products, self.index.read().consumers(&crate::mesh::index::key(namespace, product)))
    }
    fn api_server(&self) -> &crate::mesh::grant::ApiServer {
        &self.api_server
    }
    fn clearances_of(&self, kind: OwnerKind, name: &str) -> Vec<Arc<Clearance>> {
        // Few objects (people and groups, not products): a scan is cheaper than an index.
        select(&self.clearances, |c| c.spec.subject.kind == kind && c.spec.subject.name == name)
    }
    fn mesh_policy(&self) -> Option<Arc<MeshPolicy>> {
        valid(self.mesh_policies.get(&ObjectRef::new(MESH_POLICY_NAME))?)
    }
}

/// Readiness as the object's own status states it, for the generation it has now: the
/// Secret check of a DataSource is only known to its controller, which reads the API.
fn readiness(generation: Option<i64>, status: Option<(Option<i64>, &Vec<crate::api::Condition>)>) -> Readiness {
    let Some((observed, conditions)) = status else {
        return Readiness::NotReady("not reconciled yet".into());
    };
    if observed != generation {
        return Readiness::NotReady(format!("generation {} not reconciled yet", generation.unwrap_or_default()));
    }
    match crate::api::find_condition(conditions, crate::api::condition_type::READY) {
        Some(c) if c.status == crate::api::ConditionStatus::True => Readiness::Ready,
        Some(c) => Readiness::NotReady(format!("{}: {}", c.reason, c.message)),
        None => Readiness::NotReady("no Ready condition yet".into()),
    }
}

/// The object, if it could be parsed (unparseable objects are skipped everywhere).
fn valid<K: Clone>(guarded: Arc<DeserializeGuard<K>>) -> Option<Arc<K>> {
    guarded.0.as_ref().ok().map(|k| Arc::new(k.clone()))
}

/// The parseable cached objects of these keys (the index's answer), in their order: a
/// key the cache no longer holds, or holds unparseable, is skipped.
fn cached<K>(
    store: &Store<DeserializeGuard<K>>,
    keys: std::collections::BTreeSet<crate::mesh::index::Key>,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    keys.iter().filter_map(|(ns, name)| valid(store.get(&ObjectRef::new(name).within(ns))?)).collect()
}

/// Parseable objects of a cache matching `keep`, ordered by namespace and name.
fn select<K>(store: &Store<DeserializeGuard<K>>, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut found: Vec<Arc<K>> = store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().filter(|k| keep(k)).map(|k| Arc::new(k.clone())))
        .collect();
    found.sort_by(|a, b| {
        (a.meta().namespace.as_ref(), a.meta().name.as_ref())
            .cmp(&(b.meta().namespace.as_ref(), b.meta().name.as_ref()))
    });
    found
}

fn writes(metrics: &Metrics, controller: &'static str) -> prometheus_client::metrics::counter::Counter {
    metrics.child_writes.get_or_create(&crate::telemetry::ControllerLabels { controller }).clone()
}

/// Shared by the three controllers.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditSink>,
    pub events: super::events::Announcer,
    /// The operator's identity, as audit records name it.
    pub actor: String,
    pub products: Applier,
    pub sources: Applier,
    pub policies: Applier,
    pub backoff: super::Backoff,
    /// The reconciles each object asked for at a time it computed.
    pub timers: super::timers::Timers,
    pub queues: Arc<Queues>,
    /// Products in a classified domain holding foreign access objects do not run.
    pub refuse_foreign_access: bool,
    /// A grant whose audit record cannot be written is not applied (`--audit-failure`).
    pub audit_refuses: bool,
    /// Parents whose last apply the API server refused (dry-run before trying again).
    pub refused: super::children::Refused,
    /// Objects whose status the API server refuses (reported once per generation).
    pub status_refused: super::children::StatusRefused,
    /// Secret states read lately (sources' credentials).
    pub secrets: super::datasource::SecretStates,
    /// Closed while this replica stands by (see [`super::Options::leading`]): every write
    /// of a reconcile passes it.
    pub fence: super::fence::Fence,
}

/// Where a reconcile leaves its object on this replica.
pub enum Standing {
    /// The ordinary end: this replica leads.
    Done,
    /// A standby's reconcile that failed without needing a write (a read failed).
    Retry,
    /// A standby's reconcile needed a write: the object is reconciled when this replica
    /// leads; `now`: it already does, and the take-over had not taken the object yet.
    Held { now: bool },
    /// A standby's reconcile found nothing to write; `now` as for `Held` (its audit
    /// standing is confirmed by the reconcile that found it).
    InStep { now: bool },
}

impl Context {
    /// Where a reconcile that began with the fence `closed` (a standby), `reached` it or
    /// not, and ended `ok` or not, leaves its object.
    pub fn standing<K>(&self, queue: &Queue<K>, obj: &ObjectRef<K>, closed: bool, reached: bool, ok: bool) -> Standing
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        // Found, then looked at the fence: a take-over in between takes the finding (it
        // opens the fence before it takes them all), or this reconcile takes it back.
        if reached {
            queue.hold(obj);
            return Standing::Held { now: self.fence.open() && queue.take(obj) };
        }
        if !closed {
            return Standing::Done;
        }
        if !ok {
            return Standing::Retry;
        }
        queue.in_step(obj);
        Standing::InStep { now: self.fence.open() && queue.take(obj) }
    }
}

/// One reconcile under way: which object, since when, and whether its own timer started it.
pub struct Run {
    key: String,
    started: std::time::Instant,
    scheduled: bool,
}

impl Context {
    /// Starts the reconcile of `key` once the caches are synced.
    pub async fn start(&self, key: String) -> Run {
        self.caches.ready().await;
        let started = std::time::Instant::now();
        let scheduled = self.timers.fired(&key, started);
        Run { key, started, scheduled }
    }

    /// Ends `run` with `next` (when to look again unprompted, counted from the start of
    /// the reconcile, whose clock was read then): counts it, resets its backoff on
    /// success and sets its timer. A reconcile that waited (for its audit commit, for
    /// the API server) would otherwise wake that much past the instant it computed: an
    /// expiry revoked late.
    pub fn finish(
        &self,
        controller: &'static str,
        run: Run,
        next: Result<Option<std::time::Duration>, super::Error>,
    ) -> Result<kube::runtime::controller::Action, super::Error> {
        self.metrics.reconciled(controller, run.started.elapsed(), run.scheduled);
        self.settle(run, next)
    }

    /// Resets the backoff of `run` on success and sets its timer (see [`Context::finish`]).
    fn settle(
        &self,
        run: Run,
        next: Result<Option<std::time::Duration>, super::Error>,
    ) -> Result<kube::runtime::controller::Action, super::Error> {
        let took = run.started.elapsed();
        let next = next?.map(|after| after.saturating_sub(took));
        self.backoff.succeeded(&run.key);
        Ok(self.timers.next(run.key, next, std::time::Instant::now()))
    }

    /// Withdraws every access-bearing child of one parent (see [`super::children::withdraw`]).
    pub async fn withdraw(
        &self,
        namespace: &str,
        owner_uid: &str,
        label: (&str, &str),
        network: bool,
    ) -> Result<usize, super::Error> {
        super::children::withdraw(&self.client, &self.fence, &self.caches, namespace, owner_uid, label, network).await
    }

    /// Ends a standby's reconcile (counted apart from reconciles). Held: nothing more
    /// until the take-over reconciles it, or at once if this replica leads `now`. In
    /// step: its timer is set as a leader's would be, so that an expiry falling while
    /// it stands by is found (and held) on time.
    pub fn finish_standby(
        &self,
        controller: &'static str,
        run: Run,
        next: Result<Option<std::time::Duration>, super::Error>,
        standing: Standing,
    ) -> Result<kube::runtime::controller::Action, super::Error> {
        use kube::runtime::controller::Action;
        match standing {
            Standing::Held { now } => {
                tracing::debug!(object = %run.key, outcome = ?next.as_ref().err().map(|e| e.to_string()), "standby: held until this replica leads");
                self.metrics.verified(controller, true);
                Ok(if now { Action::requeue(std::time::Duration::ZERO) } else { Action::await_change() })
            }
            Standing::InStep { .. } => {
                self.metrics.verified(controller, false);
                self.settle(run, next)
            }
            // A failed read: retried with backoff, as a leader's would be.
            Standing::Retry => self.settle(run, next),
            Standing::Done => self.finish(controller, run, next),
        }
    }
}

/// What each controller has been asked to reconcile and has not started.
#[derive(Default)]
pub struct Queues {
    pub products: Arc<Queue<DeserializeGuard<DataProduct>>>,
    pub sources: Arc<Queue<DeserializeGuard<DataSource>>>,
    pub policies: Arc<Queue<DeserializeGuard<AccessPolicy>>>,
}

/// One decision about access, as it is reported: a Kubernetes Event on the object, a
/// metric, and an audit record, all from this one value.
pub struct Report {
    pub object: k8s_openapi::api::core::v1::ObjectReference,
    pub decision: crate::audit::Decision,
    pub reason: crate::mesh::rules::Reason,
    pub message: String,
    pub product: crate::audit::ObjectRef,
    pub classification: String,
    pub subjects: Vec<String>,
    pub purpose: Option<String>,
    pub expires_at: Option<String>,
    pub policy: Option<crate::audit::PolicyRef>,
}

impl Context {
    /// Writes the audit record of `report`, then publishes it as an Event (Warning unless
    /// access was granted) and counts it. A grant whose record could not be written is
    /// not announced when grants wait for their record (`--audit-failure=refuse`): the
    /// caller does not apply it.
    pub async fn report(&self, report: Report) -> Result<(), crate::telemetry::AuditError> {
        self.report_with_ports(report, vec![]).await
    }

    /// [`Context::report`], the record naming the ports the grant gives (`NUMBER/NAME`).
    pub async fn report_with_ports(
        &self,
        report: Report,
        ports: Vec<String>,
    ) -> Result<(), crate::telemetry::AuditError> {
        self.write_report(report, ports, true).await
    }

    /// Writes the audit record of `report` and counts it, without an Event: for the
    /// access a declaration brings with it (owners' access to their product, credentials
    /// a source lends to its consumers), which the object's status lists and whose
    /// Events would repeat, per product, what its Ready transitions already say. In a
    /// cold start of 1,000 products they were 2,088 Event writes.
    pub async fn record(&self, report: Report) -> Result<(), crate::telemetry::AuditError> {
        self.write_report(report, vec![], false).await
    }

    async fn write_report(
        &self,
        report: Report,
        ports: Vec<String>,
        announced: bool,
    ) -> Result<(), crate::telemetry::AuditError> {
        if self.fence.pass().is_err() {
            return Err(crate::telemetry::AuditError::Standby);
        }
        let granted = report.decision == crate::audit::Decision::Granted;
        let written = self
            .audit
            .record(crate::audit::Event {
                time: self.now().to_string(),
                actor: self.actor.clone(),
                decision: report.decision,
                reason: report.reason.to_string(),
                message: report.message.clone(),
                product: report.product,
                classification: report.classification,
                subjects: report.subjects,
                purpose: report.purpose,
                expires_at: report.expires_at,
                policy: report.policy,
                ports,
                while_no_operator_led: None,
            })
            .await;
        if let Err(error) = &written {
            // Counted and logged by the sink.
            tracing::debug!(%error, "audit record not written");
            if granted && self.audit_refuses {
                return written;
            }
        }
        if announced {
            let action = format!("{:?}", report.decision);
            self.announce(&report.object, !granted, report.reason.as_ref(), report.message, &action).await;
        }
        self.metrics
            .decisions
            .get_or_create(&crate::telemetry::DecisionLabels {
                decision: report.decision.label(),
                reason: report.reason.to_string(),
            })
            .inc();
        written
    }

    /// Publishes an Event on `object` (a Warning when `warning`); a failure is logged,
    /// never fatal: the status and the audit record are the durable trace.
    pub async fn announce(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
        action: &str,
    ) {
        if self.fence.pass().is_err() {
            return;
        }
        let said = super::events::Announcement { regarding: object, warning, action, reason, note };
        if let Err(error) = self.events.publish(&said, self.now()).await {
            tracing::warn!(%error, "cannot publish event");
        }
    }

    pub fn new(
        client: Client,
        caches: Caches,
        metrics: Arc<Metrics>,
        audit: Arc<AuditSink>,
        actor: String,
        queues: Arc<Queues>,
    ) -> Self {
        Self {
            events: super::events::Announcer::new(client.clone(), "drmesh", std::env::var("POD_NAME").ok()),
            products: Applier::new(
                client.clone(),
                labels::MANAGER_DATA_PRODUCT,
                writes(&metrics, "dataproduct"),
                caches.foreign.clone(),
            ),
            sources: Applier::new(
                client.clone(),
                labels::MANAGER_DATA_SOURCE,
                writes(&metrics, "datasource"),
                caches.foreign.clone(),
            ),
            policies: Applier::new(
                client.clone(),
                labels::MANAGER_ACCESS_POLICY,
                writes(&metrics, "accesspolicy"),
                caches.foreign.clone(),
            ),
            backoff: super::Backoff::default(),
            timers: Default::default(),
            queues,
            refuse_foreign_access: false,
            audit_refuses: true,
            refused: Default::default(),
            status_refused: Default::default(),
            secrets: Default::default(),
            fence: Default::default(),
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

#[cfg(test)]
impl Caches {
    /// Empty caches that count as listed for the whole test (tests replace the stores
    /// they fill).
    pub fn listed() -> Self {
        use super::records::{ChildCache, no_detail};
        let (synced_tx, synced) = tokio::sync::watch::channel(true);
        std::mem::forget(synced_tx);
        Caches {
            sources: kube::runtime::reflector::store().0,
            products: kube::runtime::reflector::store().0,
            policies: kube::runtime::reflector::store().0,
            namespaces: kube::runtime::reflector::store().0,
            clearances: kube::runtime::reflector::store().0,
            mesh_policies: kube::runtime::reflector::store().0,
            deployments: ChildCache::new(super::available_replicas),
            services: ChildCache::new(no_detail),
            service_accounts: ChildCache::new(no_detail),
            network_policies: ChildCache::new(no_detail),
            roles: ChildCache::new(super::children::rules_hash),
            role_bindings: ChildCache::new(no_detail),
            config_maps: ChildCache::new(no_detail),
            foreign: super::foreign::Foreign::default(),
            synced,
            api_server: crate::mesh::grant::ApiServer::none(),
            index: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use kube::runtime::controller::Action;

    use super::*;

    /// The time a reconcile asks to run again at counts from its start: one that took
    /// 300 ms (waiting for its audit commit) and computed an expiry 1 s away is due 1 s
    /// after it started, not 1 s after it ended (the revocation would land 300 ms late).
    #[tokio::test]
    async fn a_reconcile_wakes_at_the_instant_it_computed_however_long_it_took() {
        use super::super::order_tests::{Log, context, mock_client};
        let (ctx, _) = context(mock_client(Log::default()));
        let started = Instant::now() - Duration::from_millis(300);
        for key in ["ns/a", "ns/b"] {
            let run = Run { key: key.into(), started, scheduled: false };
            let action = ctx.finish("accesspolicy", run, Ok(Some(Duration::from_secs(1)))).expect("action");
            assert_ne!(action, Action::await_change());
        }
        let second = Duration::from_secs(1);
        assert!(!ctx.timers.fired("ns/a", started + second - Duration::from_millis(100)), "not early");
        assert!(ctx.timers.fired("ns/b", started + second), "due 1 s after the reconcile started");
        // Past its instant when it ends: at once.
        let run = Run { key: "ns/c".into(), started: Instant::now() - 2 * second, scheduled: false };
        let action = ctx.finish("accesspolicy", run, Ok(Some(second))).expect("action");
        assert_eq!(action, Action::requeue(Duration::ZERO));
    }
}
