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
/// when it has listed.
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
    listed(trimmed(events, trim).reflect(writer), gate, kind)
}

/// Like [`cached`], for a child kind kept as compact records (see [`ChildCache`]).
pub fn cached_children<K>(
    client: Client,
    scope: &Scope,
    cfg: watcher::Config,
    cache: ChildCache<K>,
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
    listed(cache.reflect(trimmed(events, trim)), gate, kind)
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
    listed(trimmed(events, keep_all).reflect(writer), gate, kind)
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

pub fn hash<T: Hash>(value: &T) -> u64 {
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
    let mut seen = Seen::new(fingerprint);
    events.filter_map(move |event| {
        let changed = match event {
            Event::Apply(obj) | Event::InitApply(obj) => seen.changed(&obj).then_some(Ok(obj)),
            Event::Delete(obj) => {
                seen.forget(&obj);
                Some(Ok(obj))
            }
            Event::Init | Event::InitDone => None,
        };
        future::ready(changed)
    })
}

/// The fingerprints last seen, by UID (a re-created object is new).
pub struct Seen<K> {
    fingerprint: Fingerprint<K>,
    last: HashMap<String, u64>,
}

impl<K: Resource> Seen<K> {
    pub fn new(fingerprint: Fingerprint<K>) -> Self {
        Self { fingerprint, last: HashMap::new() }
    }

    pub fn changed(&mut self, obj: &K) -> bool {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let print = (self.fingerprint)(obj);
        self.last.insert(uid, print) != Some(print)
    }

    pub fn forget(&mut self, obj: &K) {
        self.last.remove(obj.meta().uid.as_deref().unwrap_or_default());
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

    #[test]
    fn backoff_reconnects_within_seconds() {
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = (0..12).filter_map(|_| backoff.next()).collect();
        assert_eq!(delays.len(), 12, "never gives up");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)), "{delays:?}");
    }
}
