//! Which namespaces the operator watches: the whole cluster, or a list of domains.
//!
//! With a list, each kind is watched once per namespace and the streams are merged into
//! one event stream for one cache. A reflector's writer swaps its whole store on every
//! `InitDone`, so the per-namespace lists cannot be passed through as they are: the
//! merged stream lists once for all namespaces (one `Init` … `InitDone` when every
//! namespace has listed), and later re-lists of one namespace (after a watch expired)
//! become `Apply` events plus a `Delete` for every cached object of that namespace the
//! new list no longer has — so the cache never keeps an object that is gone.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;

use futures::{Stream, StreamExt, stream};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::records::ChildCache;
use super::watches::watch_backoff;

/// The namespaces the operator watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace (cluster-wide watches).
    #[default]
    Cluster,
    /// Only these namespaces (sorted, without duplicates; never empty).
    Namespaces(BTreeSet<String>),
}

impl Scope {
    /// `Cluster` for an empty list.
    pub fn of<I: IntoIterator<Item = S>, S: Into<String>>(namespaces: I) -> Self {
        let set: BTreeSet<String> = namespaces.into_iter().map(Into::into).filter(|n| !n.is_empty()).collect();
        if set.is_empty() { Scope::Cluster } else { Scope::Namespaces(set) }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            Scope::Cluster => true,
            Scope::Namespaces(set) => set.contains(namespace),
        }
    }
}

type WatchResult<K> = Result<Event<K>, watcher::Error>;

/// The watch of one namespaced kind in `scope`, as one stream of events for one cache.
pub fn watch<K>(
    client: Client,
    scope: &Scope,
    cfg: watcher::Config,
    cache: impl Listing<K>,
) -> stream::BoxStream<'static, WatchResult<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    match scope {
        Scope::Cluster => watcher(Api::<K>::all(client), cfg).backoff(watch_backoff()).boxed(),
        Scope::Namespaces(set) if set.len() == 1 => {
            let ns = set.iter().next().map(String::as_str).unwrap_or_default();
            watcher(Api::<K>::namespaced(client, ns), cfg).backoff(watch_backoff()).boxed()
        }
        Scope::Namespaces(set) => {
            let streams = set.iter().map(|ns| {
                let ns_owned = ns.clone();
                watcher(Api::<K>::namespaced(client.clone(), ns), cfg.clone())
                    .backoff(watch_backoff())
                    .map(move |e| (ns_owned.clone(), e))
                    .boxed()
            });
            merge(stream::select_all(streams), set.len(), cache).boxed()
        }
    }
}

/// What the cache fed by a merged stream holds in one namespace.
pub trait Listing<K>: Send + 'static {
    fn in_namespace(&self, namespace: &str) -> Vec<K>;
}

impl<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> Listing<K> for Store<K> {
    fn in_namespace(&self, namespace: &str) -> Vec<K> {
        self.state().iter().filter(|o| o.namespace().as_deref() == Some(namespace)).map(|o| (**o).clone()).collect()
    }
}

impl<K: Resource<DynamicType = ()> + Default + Clone + Send + Sync + 'static> Listing<K> for ChildCache<K> {
    fn in_namespace(&self, namespace: &str) -> Vec<K> {
        ChildCache::in_namespace(self, namespace)
    }
}

/// Merges per-namespace watch streams (`(namespace, event)`) as the module explains.
/// `cache` is what the merged stream feeds: it is read to find objects that a
/// namespace's re-list no longer has.
pub fn merge<K, S>(events: S, namespaces: usize, cache: impl Listing<K>) -> impl Stream<Item = WatchResult<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = (String, WatchResult<K>)> + Send,
{
    let mut state = Merge::<K, _> {
        namespaces,
        listed: HashSet::new(),
        initial: Some(HashMap::new()),
        relisting: HashMap::new(),
        cache,
    };
    events.flat_map(move |(ns, event)| stream::iter(state.step(ns, event)))
}

struct Merge<K: Resource<DynamicType = ()> + Clone + 'static, L> {
    namespaces: usize,
    /// Namespaces that have completed their first list.
    listed: HashSet<String>,
    /// Until every namespace has listed: the objects seen so far (then `None`).
    initial: Option<HashMap<ObjectRef<K>, K>>,
    /// Namespaces re-listing after the first list: the names their new list has.
    relisting: HashMap<String, HashSet<String>>,
    cache: L,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static, L: Listing<K>> Merge<K, L> {
    fn step(&mut self, ns: String, event: WatchResult<K>) -> Vec<WatchResult<K>> {
        let event = match event {
            Ok(event) => event,
            Err(error) => return vec![Err(error)],
        };
        if let Some(initial) = &mut self.initial {
            match event {
                Event::Init => initial.retain(|r, _| r.namespace.as_deref() != Some(ns.as_str())),
                Event::InitApply(obj) | Event::Apply(obj) => {
                    initial.insert(ObjectRef::from_obj(&obj), obj);
                }
                Event::Delete(obj) => {
                    initial.remove(&ObjectRef::from_obj(&obj));
                }
                Event::InitDone => {
                    self.listed.insert(ns);
                }
            }
            if self.listed.len() < self.namespaces {
                return vec![];
            }
            let objects = self.initial.take().unwrap_or_default();
            let mut out = Vec::with_capacity(objects.len() + 2);
            out.push(Ok(Event::Init));
            out.extend(objects.into_values().map(|o| Ok(Event::InitApply(o))));
            out.push(Ok(Event::InitDone));
            return out;
        }
        match event {
            Event::Init => {
                self.relisting.insert(ns, HashSet::new());
                vec![]
            }
            Event::InitApply(obj) => {
                if let Some(seen) = self.relisting.get_mut(&ns) {
                    seen.insert(obj.name_any());
                }
                vec![Ok(Event::Apply(obj))]
            }
            Event::InitDone => {
                let seen = self.relisting.remove(&ns).unwrap_or_default();
                self.cache
                    .in_namespace(&ns)
                    .into_iter()
                    .filter(|o| !seen.contains(&o.name_any()))
                    .map(|gone| Ok(Event::Delete(gone)))
                    .collect()
            }
            event => vec![Ok(event)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn cm(ns: &str, name: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c
    }

    fn names(store: &Store<ConfigMap>) -> BTreeSet<String> {
        store.state().iter().map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())).collect()
    }

    /// Feeds `events` through the merge into a real reflector store.
    async fn run(
        events: Vec<(&str, Event<ConfigMap>)>,
        store: &Store<ConfigMap>,
        writer: &mut reflector::store::Writer<ConfigMap>,
    ) -> usize {
        let input = stream::iter(events.into_iter().map(|(ns, e)| (ns.to_string(), Ok(e))));
        let merged: Vec<_> = merge(input, 2, store.clone()).collect().await;
        for e in &merged {
            writer.apply_watcher_event(e.as_ref().expect("no error"));
        }
        merged.len()
    }

    #[tokio::test]
    async fn first_list_waits_for_every_namespace_and_keeps_their_updates() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (merged, mut state) = {
            let mut state = Merge {
                namespaces: 2,
                listed: HashSet::new(),
                initial: Some(HashMap::new()),
                relisting: HashMap::new(),
                cache: store.clone(),
            };
            let mut out = vec![];
            for (ns, e) in [
                ("a", Event::Init),
                ("a", Event::InitApply(cm("a", "1"))),
                ("a", Event::InitDone),
                ("a", Event::Apply(cm("a", "2"))),
                ("b", Event::Init),
                ("b", Event::InitApply(cm("b", "1"))),
                ("a", Event::Delete(cm("a", "1"))),
            ] {
                out.extend(state.step(ns.into(), Ok(e)));
            }
            assert!(out.is_empty(), "nothing reaches the cache before every namespace listed");
            out.extend(state.step("b".into(), Ok(Event::InitDone)));
            (out, state)
        };
        for e in &merged {
            writer.apply_watcher_event(e.as_ref().expect("ok"));
        }
        assert_eq!(names(&store), BTreeSet::from(["a/2".to_string(), "b/1".to_string()]));
        assert!(matches!(merged.last(), Some(Ok(Event::InitDone))), "one InitDone marks the cache ready");
        // Later events pass straight through.
        let later = state.step("b".into(), Ok(Event::Apply(cm("b", "2"))));
        assert!(matches!(later.as_slice(), [Ok(Event::Apply(_))]));
    }

    #[tokio::test]
    async fn relist_of_one_namespace_deletes_only_what_it_lost() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        run(
            vec![
                ("a", Event::Init),
                ("a", Event::InitApply(cm("a", "1"))),
                ("a", Event::InitApply(cm("a", "2"))),
                ("a", Event::InitDone),
                ("b", Event::Init),
                ("b", Event::InitApply(cm("b", "1"))),
                ("b", Event::InitDone),
            ],
            &store,
            &mut writer,
        )
        .await;
        assert_eq!(names(&store).len(), 3);
        // A fresh merge state past its first list, as after a watch expired in namespace a.
        let mut state = Merge {
            namespaces: 2,
            listed: HashSet::new(),
            initial: None,
            relisting: HashMap::new(),
            cache: store.clone(),
        };
        for (ns, e) in [
            ("a", Event::Init),
            ("a", Event::InitApply(cm("a", "2"))),
            ("a", Event::InitApply(cm("a", "3"))),
            ("a", Event::InitDone),
        ] {
            for out in state.step(ns.into(), Ok(e)) {
                writer.apply_watcher_event(out.as_ref().expect("ok"));
            }
        }
        assert_eq!(names(&store), BTreeSet::from(["a/2".to_string(), "a/3".to_string(), "b/1".to_string()]));
    }

    #[test]
    fn scope_of_an_empty_list_is_the_cluster() {
        assert_eq!(Scope::of(Vec::<String>::new()), Scope::Cluster);
        assert_eq!(Scope::of([""]), Scope::Cluster);
        let scope = Scope::of(["b", "a", "b"]);
        assert!(scope.contains("a") && scope.contains("b") && !scope.contains("c"));
    }
}
