//! The watch streams behind the caches, and how their events reach the controllers.
//!
//! Each kind is watched once (per namespace in scope). The stream feeds its cache, then
//! its events are copied to every controller that needs them ([`fan_out`]), so a
//! trigger never runs ahead of the cache the reconcile reads, and no controller opens a
//! watch of its own.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, future};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::context::SyncGate;
use super::foreign::ForeignNames;
use super::records::ChildCache;
use super::scope::{self, Scope};

/// Reconnects quickly after the API server comes back (kube's default backoff climbs
/// to 30 s and stays there for 2 minutes; a restarted API server is usually back in
/// seconds, and every second of a stale cache delays revocations).
pub type WatchBackoff = ResetTimerBackoff<watcher::ExponentialBackoff>;

pub fn watch_backoff() -> WatchBackoff {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

pub type WatchResult<K> = Result<Event<K>, watcher::Error>;

/// A watch of the namespaced kind `K` in `scope` that keeps `writer`'s cache up to date
/// (objects trimmed by `trim` first, managedFields always dropped) and tells `gate`
/// when it has listed. A re-list's objects are passed on once the store has them
/// ([`relists_after_swap`]).
pub fn cached<K>(
    client: Client,
    scope: &Scope,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    gate: Arc<SyncGate>,
    kind: &'static str,
    trim: fn(&mut K),
) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let events = scope::watch(client, scope, cfg, writer.as_reader());
    listed(relists_after_swap(trimmed(events, trim).reflect(writer)), gate, kind)
}

/// A cache that keeps itself up to date from a watch stream: the children's records
/// ([`ChildCache`]) or the names of objects drmesh did not create ([`ForeignNames`]).
pub trait Reflecting<K>: scope::Listing<K> + Clone {
    fn reflect_events<S>(self, events: S) -> impl Stream<Item = WatchResult<K>> + Send
    where
        S: Stream<Item = WatchResult<K>> + Send;
}

impl<K: Resource<DynamicType = ()> + Clone + Default + serde::Serialize + Send + Sync + 'static> Reflecting<K>
    for ChildCache<K>
{
    fn reflect_events<S>(self, events: S) -> impl Stream<Item = WatchResult<K>> + Send
    where
        S: Stream<Item = WatchResult<K>> + Send,
    {
        self.reflect(events)
    }
}

impl<K: Resource<DynamicType = ()> + Clone + Default + Send + Sync + 'static> Reflecting<K> for ForeignNames<K> {
    fn reflect_events<S>(self, events: S) -> impl Stream<Item = WatchResult<K>> + Send
    where
        S: Stream<Item = WatchResult<K>> + Send,
    {
        self.reflect(events)
    }
}

/// Like [`cached`], for a cache of compact entries: the children's records, or the
/// names of the objects drmesh did not create. The cache sees each object whole (a
/// child's record is read from its managedFields and values); the controllers get it
/// trimmed.
pub fn cached_children<K, C: Reflecting<K>>(
    client: Client,
    scope: &Scope,
    cfg: watcher::Config,
    cache: C,
    gate: Arc<SyncGate>,
    kind: &'static str,
    trim: fn(&mut K),
) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Default
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let events = scope::watch(client, scope, cfg, cache.clone());
    listed(trimmed(cache.reflect_events(events), trim), gate, kind)
}

/// Like [`cached`], for a cluster-scoped kind (always watched cluster-wide).
pub fn cached_cluster<K>(
    client: Client,
    cfg: watcher::Config,
    writer: reflector::store::Writer<K>,
    gate: Arc<SyncGate>,
    kind: &'static str,
) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let events = watcher(Api::<K>::all(client), cfg).backoff(watch_backoff());
    listed(relists_after_swap(trimmed(events, keep_all).reflect(writer)), gate, kind)
}

/// Drops managedFields (never read) and what `trim` says is not needed.
fn trimmed<K, S>(events: S, trim: fn(&mut K)) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Resource<DynamicType = ()> + Send,
    S: Stream<Item = WatchResult<K>> + Send,
{
    events.modify(move |o| {
        o.managed_fields_mut().clear();
        trim(o);
    })
}

/// Tells `gate` once the cache behind `events` holds its first list (the events pass
/// here after the cache applied them, so nobody reads a cache still being filled).
fn listed<K, S>(events: S, gate: Arc<SyncGate>, kind: &'static str) -> impl Stream<Item = WatchResult<K>> + Send
where
    S: Stream<Item = WatchResult<K>> + Send,
{
    events.inspect(move |event| {
        if let Ok(Event::InitDone) = event {
            gate.listed(kind);
        }
    })
}

/// Holds back the objects of a re-list until its `InitDone`, i.e. until the reflector
/// store upstream has swapped the new list in.
///
/// A kube-runtime controller looks its trigger up in its store and silently drops it when
/// the object is not there. During a re-list (after a watch expired or the API server
/// restarted) the store still shows the old list, so an object created meanwhile would
/// be triggered, dropped, and — its fingerprint being already seen — never reconciled
/// (found by `make chaos`: a product created right after an API server restart). The
/// first list needs no holding back: controllers wait for their store to be ready.
fn relists_after_swap<K, S>(events: S) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Send + 'static,
    S: Stream<Item = WatchResult<K>> + Send,
{
    let mut listed_once = false;
    let mut held: Option<Vec<Event<K>>> = None;
    events.flat_map(move |event| {
        let out = match event {
            Ok(Event::Init) if listed_once => {
                held = Some(Vec::new());
                vec![Ok(Event::Init)]
            }
            Ok(Event::InitApply(obj)) if held.is_some() => {
                held.get_or_insert_default().push(Event::InitApply(obj));
                vec![]
            }
            Ok(Event::InitDone) => {
                listed_once = true;
                let mut out: Vec<WatchResult<K>> = held.take().unwrap_or_default().into_iter().map(Ok).collect();
                out.push(Ok(Event::InitDone));
                out
            }
            other => vec![other],
        };
        futures::stream::iter(out)
    })
}

/// Keeps everything but managedFields.
pub fn keep_all<K>(_: &mut K) {}

pub type Events<K> = futures::channel::mpsc::UnboundedReceiver<Event<K>>;
pub type EventSender<K> = futures::channel::mpsc::UnboundedSender<Event<K>>;

/// Copies of a cache's events, after the cache applied them, for every controller that
/// subscribed (subscriptions are taken while the controllers are built).
pub struct FanOut<K> {
    subscribers: std::sync::Mutex<Vec<EventSender<K>>>,
}

impl<K: Clone> FanOut<K> {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { subscribers: std::sync::Mutex::new(Vec::new()) })
    }

    pub fn subscribe(&self) -> Events<K> {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }

    pub fn send(&self, event: &WatchResult<K>) {
        if let Ok(event) = event {
            for tx in self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let _ = tx.unbounded_send(event.clone());
            }
        }
    }
}

/// What about an object matters to a controller: it is woken only when this changes.
pub type Fingerprint<K> = fn(&K) -> u64;

/// The metadata generation: it changes with the spec, not with the status.
pub fn generation<K: Resource>(obj: &K) -> u64 {
    obj.meta().generation.map_or(u64::MAX, |g| g as u64)
}

/// Any change (each write gives a new resourceVersion).
pub fn any_change<K: Resource>(obj: &K) -> u64 {
    hash(&obj.meta().resource_version)
}

pub fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Objects whose fingerprint changed since last seen, and deleted ones.
pub fn changes<K>(
    events: Events<K>,
    fingerprint: Fingerprint<K>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
{
    changes_or(events, fingerprint, |_| false)
}

/// [`changes`], and also any event of an object `also` names, changed or not.
pub fn changes_or<K>(
    events: Events<K>,
    fingerprint: Fingerprint<K>,
    also: impl Fn(&K) -> bool + Send + 'static,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
{
    let mut seen = Seen::new(fingerprint);
    events.filter_map(move |event| {
        let changed = match event {
            Event::Apply(obj) | Event::InitApply(obj) => (seen.changed(&obj) || also(&obj)).then_some(Ok(obj)),
            Event::Delete(obj) => {
                seen.forget(&obj);
                Some(Ok(obj))
            }
            Event::Init | Event::InitDone => None,
        };
        future::ready(changed)
    })
}

/// The fingerprints last seen, by UID (a re-created object is new). Keyed by a hash of the
/// UID: one map per trigger stream of a child kind, about 240,000 entries in all at
/// 10,000 products, 16 bytes each instead of a 36-character string's 72.
pub struct Seen<K> {
    fingerprint: Fingerprint<K>,
    last: HashMap<u64, u64>,
}

impl<K: Resource> Seen<K> {
    pub fn new(fingerprint: Fingerprint<K>) -> Self {
        Self { fingerprint, last: HashMap::new() }
    }

    fn key(obj: &K) -> u64 {
        hash(obj.meta().uid.as_deref().unwrap_or_default())
    }

    pub fn changed(&mut self, obj: &K) -> bool {
        let print = (self.fingerprint)(obj);
        self.last.insert(Self::key(obj), print) != Some(print)
    }

    pub fn forget(&mut self, obj: &K) {
        self.last.remove(&Self::key(obj));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    fn deployment(uid: &str, generation: i64, version: &str) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.uid = Some(uid.into());
        d.metadata.generation = Some(generation);
        d.metadata.resource_version = Some(version.into());
        d
    }

    #[tokio::test]
    async fn changes_pass_only_new_fingerprints_and_deletions() {
        let fan = FanOut::<Deployment>::new();
        let rx = fan.subscribe();
        for e in [
            Event::InitApply(deployment("a", 1, "1")),
            Event::Apply(deployment("a", 1, "2")), // status only: same generation
            Event::Apply(deployment("a", 2, "3")),
            Event::Delete(deployment("a", 2, "3")),
            Event::Apply(deployment("a", 2, "4")), // re-created with the same UID: new again
        ] {
            fan.send(&Ok(e));
        }
        drop(fan);
        let out: Vec<_> = changes(rx, generation)
            .map(|r| r.expect("ok").metadata.resource_version.unwrap_or_default())
            .collect()
            .await;
        assert_eq!(out, ["1", "3", "3", "4"]);
    }

    #[tokio::test]
    async fn a_relist_reaches_the_controllers_only_once_the_store_has_it() {
        let named = |uid: &str, version: &str| {
            let mut d = deployment(uid, 1, version);
            d.metadata.name = Some(uid.into());
            d
        };
        let (store, mut writer) = reflector::store::<Deployment>();
        let events = futures::stream::iter(
            [
                Event::Init,
                Event::InitApply(named("a", "1")),
                Event::InitDone,
                Event::Init,
                Event::InitApply(named("a", "1")),
                Event::InitApply(named("b", "2")), // created while the watch was down
                Event::InitDone,
                Event::Apply(named("b", "3")),
            ]
            .map(Ok),
        );
        let store_seen = store.clone();
        let seen: Vec<(String, usize)> = relists_after_swap(events.map(move |e| {
            if let Ok(e) = &e {
                writer.apply_watcher_event(e);
            }
            e
        }))
        .filter_map(|e| {
            let label = match e.expect("ok") {
                Event::Init => "Init".to_string(),
                Event::InitApply(d) => format!("InitApply {}", d.metadata.uid.unwrap_or_default()),
                Event::InitDone => "InitDone".to_string(),
                Event::Apply(d) => format!("Apply {}", d.metadata.uid.unwrap_or_default()),
                Event::Delete(_) => "Delete".to_string(),
            };
            future::ready(Some((label, store_seen.len())))
        })
        .collect()
        .await;
        let labels: Vec<&str> = seen.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(
            labels,
            ["Init", "InitApply a", "InitDone", "Init", "InitApply a", "InitApply b", "InitDone", "Apply b"],
            "the first list passes as it comes; the re-list is held until its InitDone"
        );
        // Each re-listed object is passed on once the store holds both objects.
        assert!(seen[4..6].iter().all(|(_, in_store)| *in_store == 2), "{seen:?}");
    }

    #[test]
    fn backoff_reconnects_within_seconds() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = (0..12).filter_map(|_| backoff.next()).collect();
        assert_eq!(delays.len(), 12, "never gives up");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)), "{delays:?}");
    }
}
