//! Queue depth: the objects a controller has been told to reconcile and has not started
//! yet. kube-runtime's scheduler does not expose its queue, so every trigger a
//! controller receives goes through [`Queue::track`] and every reconcile calls
//! [`Queue::started`]; the set de-duplicates as the scheduler does.
//!
//! A standby's queue also keeps what its fenced reconciles found (see [`super::fence`]):
//! objects held for a write, reconciled first when it leads, and objects in step, whose
//! audit standing is confirmed then without a reconcile.

use std::collections::HashSet;
use std::sync::Mutex;

use kube::Resource;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

pub struct Queue<K: Resource<DynamicType = ()>> {
    pending: Mutex<HashSet<ObjectRef<K>>>,
    standby: Mutex<Standby<K>>,
}

/// What a standby's reconciles found, object by object (the last finding counts).
struct Standby<K: Resource<DynamicType = ()>> {
    held: HashSet<ObjectRef<K>>,
    in_step: HashSet<ObjectRef<K>>,
}

impl<K: Resource<DynamicType = ()>> Default for Queue<K> {
    fn default() -> Self {
        Self {
            pending: Mutex::default(),
            standby: Mutex::new(Standby { held: HashSet::new(), in_step: HashSet::new() }),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Queue<K> {
    /// Records triggers and hands them on to the controller.
    pub fn track<I: IntoIterator<Item = ObjectRef<K>>>(&self, refs: I) -> Vec<ObjectRef<K>> {
        let refs: Vec<ObjectRef<K>> = refs.into_iter().collect();
        if !refs.is_empty() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.extend(refs.iter().cloned());
        }
        refs
    }

    pub fn started(&self, obj: &ObjectRef<K>) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(obj);
    }

    /// A standby's reconcile of `obj` needed a write: it is reconciled when this replica leads.
    pub fn hold(&self, obj: &ObjectRef<K>) {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        standby.in_step.remove(obj);
        standby.held.insert(obj.clone());
    }

    /// A standby's reconcile of `obj` found nothing to write.
    pub fn in_step(&self, obj: &ObjectRef<K>) {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        standby.held.remove(obj);
        standby.in_step.insert(obj.clone());
    }

    /// Takes `obj` back out of what the standby found, if the take-over has not taken it
    /// yet: the reconcile that ended as this replica began to lead handles it itself
    /// (each finding is handled once, by one or the other).
    pub fn take(&self, obj: &ObjectRef<K>) -> bool {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        standby.held.remove(obj) | standby.in_step.remove(obj)
    }

    /// At take-over: everything the standby found (held, in step), emptied.
    pub fn take_all(&self) -> (Vec<ObjectRef<K>>, Vec<ObjectRef<K>>) {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        (standby.held.drain().collect(), standby.in_step.drain().collect())
    }

    pub fn is_held(&self, obj: &ObjectRef<K>) -> bool {
        self.standby.lock().unwrap_or_else(|p| p.into_inner()).held.contains(obj)
    }

    /// Objects held for a write, still cached.
    pub fn held(&self, cache: &Store<K>) -> usize {
        let mut standby = self.standby.lock().unwrap_or_else(|p| p.into_inner());
        standby.held.retain(|r| cache.get(r).is_some());
        standby.held.len()
    }

    /// Objects waiting for a reconcile. Triggers for objects no longer in the cache are
    /// dropped: the controller never reconciles those.
    pub fn depth(&self, cache: &Store<K>) -> usize {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|r| cache.get(r).is_some());
        pending.len()
    }
}

/// The object that controls a child, if it is of kind `P` (what `Controller::owns` maps).
pub fn owner<P: Resource<DynamicType = ()>>(child: &ObjectMeta) -> Option<ObjectRef<P>> {
    let owner = child
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == P::kind(&()) && o.api_version == P::api_version(&()))?;
    let mut r = ObjectRef::new(&owner.name);
    if let Some(ns) = &child.namespace {
        r = r.within(ns);
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DataProduct;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn product(name: &str) -> DataProduct {
        let mut p = DataProduct::new(
            name,
            serde_json::from_value(serde_json::json!({"classification": "Public", "runtime": {"image": "x"}}))
                .expect("spec"),
        );
        p.metadata.namespace = Some("ns".into());
        p
    }

    #[test]
    fn depth_counts_distinct_waiting_objects_still_cached() {
        let (store, mut writer) = reflector::store::<DataProduct>();
        writer.apply_watcher_event(&Event::Apply(product("a")));
        writer.apply_watcher_event(&Event::Apply(product("b")));
        let queue = Queue::<DataProduct>::default();
        let a = ObjectRef::new("a").within("ns");
        let b = ObjectRef::new("b").within("ns");
        queue.track([a.clone(), a.clone(), b.clone(), ObjectRef::new("gone").within("ns")]);
        assert_eq!(queue.depth(&store), 2);
        queue.started(&a);
        assert_eq!(queue.depth(&store), 1);
    }

    #[test]
    fn a_standbys_findings_are_handed_over_once_the_last_finding_counting() {
        let queue = Queue::<DataProduct>::default();
        let (a, b, c) =
            (ObjectRef::new("a").within("ns"), ObjectRef::new("b").within("ns"), ObjectRef::new("c").within("ns"));
        queue.in_step(&a);
        queue.hold(&a); // changed since: held
        queue.hold(&b);
        queue.in_step(&b); // the leader caught up: in step
        queue.in_step(&c);
        assert!(queue.take(&c), "a reconcile ending at the take-over handles its own finding");
        assert!(!queue.take(&c), "once");
        let (held, in_step) = queue.take_all();
        assert_eq!((held, in_step), (vec![a.clone()], vec![b.clone()]));
        assert!(!queue.take(&a), "the take-over took it");
        assert_eq!(queue.take_all(), (vec![], vec![]));
    }

    #[test]
    fn owner_is_the_controller_reference_of_that_kind() {
        let reference = |kind: &str, controller| OwnerReference {
            api_version: "drmesh.io/v1alpha1".into(),
            kind: kind.into(),
            name: "p".into(),
            uid: "u".into(),
            controller: Some(controller),
            ..Default::default()
        };
        let mut meta = ObjectMeta { namespace: Some("ns".into()), ..Default::default() };
        meta.owner_references = Some(vec![reference("DataProduct", false)]);
        assert!(owner::<DataProduct>(&meta).is_none(), "not the controller");
        meta.owner_references = Some(vec![reference("AccessPolicy", true), reference("DataProduct", true)]);
        assert_eq!(owner::<DataProduct>(&meta), Some(ObjectRef::new("p").within("ns")));
    }
}
