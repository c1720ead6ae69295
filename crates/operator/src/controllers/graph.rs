//! The caches' mesh index ([`MeshIndex`]): fed by the DataProduct and AccessPolicy
//! watches right after their caches apply an event, and read by the caches' lookups
//! ("the policies of a product", "the consumers of a product", "the users of a source"),
//! which were scans of every cached object.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use super::watches::WatchResult;
use crate::api::{AccessPolicy, DataProduct};
use crate::mesh::index::{GrantEdges, Key, MeshIndex, ProductEdges};

/// The index the caches share.
#[derive(Clone, Default)]
pub struct SharedIndex(Arc<RwLock<MeshIndex>>);

impl SharedIndex {
    pub fn read(&self) -> RwLockReadGuard<'_, MeshIndex> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn update<T>(&self, f: impl FnOnce(&mut MeshIndex) -> T) -> T {
        f(&mut self.0.write().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A kind the index keeps.
pub trait Indexed: Resource<DynamicType = ()> + Sized {
    /// Records `obj`'s edges under `key` (`None`: gone, or not parseable).
    fn set(index: &mut MeshIndex, key: Key, obj: Option<&Self>);
    /// Forgets every object of this kind not in `keep`.
    fn retain(index: &mut MeshIndex, keep: &BTreeSet<Key>);
}

impl Indexed for DataProduct {
    fn set(index: &mut MeshIndex, key: Key, obj: Option<&Self>) {
        index.set_product(key, obj.map(ProductEdges::of));
    }
    fn retain(index: &mut MeshIndex, keep: &BTreeSet<Key>) {
        index.retain_products(keep);
    }
}

impl Indexed for AccessPolicy {
    fn set(index: &mut MeshIndex, key: Key, obj: Option<&Self>) {
        index.set_policy(key, obj.map(GrantEdges::of));
    }
    fn retain(index: &mut MeshIndex, keep: &BTreeSet<Key>) {
        index.retain_policies(keep);
    }
}

fn key<K: Resource<DynamicType = ()>>(obj: &DeserializeGuard<K>) -> Key
where
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    crate::mesh::index::key(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// Keeps `index` equal to the cache these events fill: an object that cannot be parsed
/// has no edges (the caches' lookups skip it too); a relist forgets what it did not see.
pub fn indexed<K, S>(events: S, index: SharedIndex) -> impl Stream<Item = WatchResult<DeserializeGuard<K>>> + Send
where
    K: Indexed + Clone + Send + Sync + 'static,
    DeserializeGuard<K>: Resource<DynamicType = ()>,
    S: Stream<Item = WatchResult<DeserializeGuard<K>>> + Send,
{
    let mut relisted: Option<BTreeSet<Key>> = None;
    events.inspect(move |event| {
        let Ok(event) = event else { return };
        match event {
            Event::Init => relisted = Some(BTreeSet::new()),
            Event::InitApply(obj) => {
                let key = key(obj);
                relisted.get_or_insert_with(BTreeSet::new).insert(key.clone());
                index.update(|i| K::set(i, key, obj.0.as_ref().ok()));
            }
            Event::InitDone => {
                let keep = relisted.take().unwrap_or_default();
                index.update(|i| K::retain(i, &keep));
            }
            Event::Apply(obj) => index.update(|i| K::set(i, key(obj), obj.0.as_ref().ok())),
            Event::Delete(obj) => index.update(|i| K::set(i, key(obj), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn product(name: &str, inputs: &[&str]) -> DeserializeGuard<DataProduct> {
        let inputs: Vec<_> = inputs.iter().map(|p| json!({"dataProduct": {"namespace": "ns", "name": p}})).collect();
        DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"classification": "Public", "inputs": inputs, "runtime": {"image": "x:1"}, "outputPorts": []}
        }))
        .expect("product")))
    }

    fn key(name: &str) -> Key {
        crate::mesh::index::key("ns", name)
    }

    /// Events as a watch delivers them, a relist included: the index ends equal to one
    /// built from the objects the cache holds.
    #[tokio::test]
    async fn the_index_follows_the_watch_through_a_relist() {
        let index = SharedIndex::default();
        let events = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(product("a", &["b"]))),
            Ok(Event::InitApply(product("c", &["b"]))),
            Ok(Event::InitDone),
            Ok(Event::Apply(product("a", &[]))),
            // A relist that no longer sees c (deleted while the watch was down).
            Ok(Event::Init),
            Ok(Event::InitApply(product("a", &["b"]))),
            Ok(Event::InitDone),
        ];
        let seen: Vec<_> = indexed(futures::stream::iter(events), index.clone()).collect().await;
        assert_eq!(seen.len(), 8, "every event is passed on");
        assert_eq!(index.read().consumers(&key("b")), [key("a")].into());
        let expected = MeshIndex::from_objects([product("a", &["b"]).0.as_ref().expect("parsed")], []);
        assert_eq!(*index.read(), expected);
    }
}
