//! Compact caches of the children: what the operator must remember of each object it
//! manages, and nothing else.
//!
//! A child's metadata as a reflector stores it (`PartialObjectMeta`, an `ObjectMeta`
//! with label and annotation maps, plus the store's key) costs about 1.8 KB; the
//! controllers read six things of it — the resourceVersion (is it still as we left it?),
//! the UID and the controlling owner (may it be pruned, and whom does a change wake?),
//! our labels, for two kinds one figure (a Deployment's available replicas, a hash
//! of a Role's rules), and a hash of what drmesh's last apply left in force (would an
//! apply change anything? [`applied`]). A [`ChildRecord`] keeps exactly that, indexed by namespace so
//! pruning one parent's children reads one namespace, not the cluster.
//! `make bench-memory` measures the difference.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::runtime::watcher::{self, Event};

use super::applied;
use crate::mesh::labels;

/// The labels naming a child's parent (one of them is on every child).
const PARENT_LABELS: [&str; 3] = [labels::DATA_PRODUCT, labels::DATA_SOURCE, labels::ACCESS_POLICY];

/// The controller owner reference of a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: Known,
    pub kind: Known,
    pub name: Box<str>,
    pub uid: Uid,
}

/// The owner apiVersions and kinds nearly every child carries: kept as an index into this
/// one copy, not a string per child.
const KNOWN: [&str; 4] = ["drmesh.io/v1alpha1", "DataProduct", "DataSource", "AccessPolicy"];

/// A string that is most often one of [`KNOWN`] (then an index into it: 16 bytes in all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    Shared(u8),
    Own(Box<str>),
}

impl Known {
    fn of(s: &str) -> Self {
        KNOWN.iter().position(|k| *k == s).map_or_else(|| Known::Own(s.into()), |i| Known::Shared(i as u8))
    }
}

impl std::ops::Deref for Known {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Known::Shared(i) => KNOWN[*i as usize],
            Known::Own(s) => s,
        }
    }
}

impl std::fmt::Display for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

/// An object's UID: the API server's are UUIDs (36 characters), kept in 16 bytes; any
/// other text, as it is. The text round-trips exactly: only the lower-case, hyphenated
/// form is kept as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uid {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Uid {
    pub fn of(s: &str) -> Self {
        Self::uuid(s).map_or_else(|| Uid::Text(s.into()), Uid::Uuid)
    }

    fn uuid(s: &str) -> Option<[u8; 16]> {
        let text = s.as_bytes();
        if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut digits = text.iter().filter(|c| **c != b'-');
        let mut bytes = [0u8; 16];
        for byte in &mut bytes {
            *byte = nibble(*digits.next()?)? << 4 | nibble(*digits.next()?)?;
        }
        Some(bytes)
    }

    /// Whether this is the UID written `other`.
    pub fn is(&self, other: &str) -> bool {
        match self {
            Uid::Uuid(bytes) => Self::uuid(other).is_some_and(|b| b == *bytes),
            Uid::Text(text) => **text == *other,
        }
    }
}

impl std::fmt::Display for Uid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uid::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if [4, 6, 8, 10].contains(&i) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Uid::Text(text) => f.write_str(text),
        }
    }
}

/// What the operator remembers of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRecord {
    pub uid: Uid,
    pub resource_version: Box<str>,
    /// Carries `app.kubernetes.io/managed-by=drmesh`.
    pub managed: bool,
    /// The parent labels it carries (index into [`PARENT_LABELS`], value).
    parents: Box<[(u8, Box<str>)]>,
    pub owner: Option<Owner>,
    /// The one figure a controller reads of this kind (see [`ChildCache::new`]).
    pub detail: u64,
    /// What drmesh's field managers own on the live object, with its values
    /// ([`applied::live`]): equal to [`applied::desired`] of the child a controller would
    /// apply, an apply would change nothing.
    pub applied: u64,
}

/// Whether an object labelled as drmesh's is not a drmesh parent's child: no controller
/// owner of a drmesh kind, or not labelled with that owner's name. A label forged by
/// hand: such an object would pass for drmesh's and be neither pruned (no parent claims
/// it) nor reported as foreign.
pub fn forged(meta: &ObjectMeta) -> bool {
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str);
    if label(labels::MANAGED_BY) != Some(labels::MANAGER) {
        return false;
    }
    let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    owner.is_none_or(|o| parent_label(&o.api_version, &o.kind).is_none_or(|l| label(l) != Some(o.name.as_str())))
}

/// The label a child of a drmesh parent of `kind` carries its parent's name in.
fn parent_label(api_version: &str, kind: &str) -> Option<&'static str> {
    if !api_version.starts_with("drmesh.io/") {
        return None;
    }
    match kind {
        "DataProduct" => Some(labels::DATA_PRODUCT),
        "DataSource" => Some(labels::DATA_SOURCE),
        "AccessPolicy" => Some(labels::ACCESS_POLICY),
        _ => None,
    }
}

impl ChildRecord {
    /// A drmesh parent's child (see [`forged`]).
    fn parented(&self) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| parent_label(&o.api_version, &o.kind).is_some_and(|l| self.label(l) == Some(&*o.name)))
    }

    fn of<K: Resource>(obj: &K, detail: u64, applied: u64) -> Self {
        let meta = obj.meta();
        let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key));
        let parents = PARENT_LABELS
            .iter()
            .enumerate()
            .filter_map(|(i, key)| label(key).map(|v| (i as u8, Box::from(v.as_str()))))
            .collect();
        let owner = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| Owner {
            api_version: Known::of(&o.api_version),
            kind: Known::of(&o.kind),
            name: o.name.as_str().into(),
            uid: Uid::of(&o.uid),
        });
        Self {
            uid: Uid::of(meta.uid.as_deref().unwrap_or_default()),
            resource_version: meta.resource_version.as_deref().unwrap_or_default().into(),
            managed: label(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGER),
            parents,
            owner,
            detail,
            applied,
        }
    }

    /// The value of `key` if it is one of the parent labels the record keeps.
    pub fn label(&self, key: &str) -> Option<&str> {
        let index = PARENT_LABELS.iter().position(|k| *k == key)? as u8;
        self.parents.iter().find(|(i, _)| *i == index).map(|(_, v)| &**v)
    }

    /// The metadata this record stands for (what the record keeps of it).
    fn meta(&self, namespace: &str, name: &str) -> ObjectMeta {
        let mut labels: BTreeMap<String, String> =
            self.parents.iter().map(|(i, v)| (PARENT_LABELS[*i as usize].to_string(), v.to_string())).collect();
        if self.managed {
            labels.insert(labels::MANAGED_BY.into(), labels::MANAGER.into());
        }
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            uid: Some(self.uid.to_string()),
            resource_version: Some(self.resource_version.to_string()),
            labels: Some(labels),
            owner_references: self.owner.as_ref().map(|o| {
                vec![OwnerReference {
                    api_version: o.api_version.to_string(),
                    kind: o.kind.to_string(),
                    name: o.name.to_string(),
                    uid: o.uid.to_string(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }]
            }),
            ..ObjectMeta::default()
        }
    }
}

/// Records by namespace, then by name.
type Index = HashMap<Box<str>, HashMap<Box<str>, ChildRecord>>;

/// A watch cache of one child kind, kept as [`ChildRecord`]s. Cheap to clone (shared).
pub struct ChildCache<K> {
    index: Arc<RwLock<Index>>,
    detail: fn(&K) -> u64,
}

impl<K> Clone for ChildCache<K> {
    fn clone(&self) -> Self {
        Self { index: self.index.clone(), detail: self.detail }
    }
}

/// No figure beyond the record.
pub fn no_detail<K>(_: &K) -> u64 {
    0
}

impl<K: Resource<DynamicType = ()> + Default + Clone> ChildCache<K> {
    /// `detail` computes the one figure kept beside the metadata (or [`no_detail`]).
    pub fn new(detail: fn(&K) -> u64) -> Self {
        Self { index: Arc::default(), detail }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<ChildRecord> {
        self.read().get(namespace)?.get(name).cloned()
    }

    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        Some(self.read().get(namespace)?.get(name)?.resource_version.to_string())
    }

    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Children of `namespace` managed by drmesh, labelled `label`, whose controller
    /// owner has `owner_uid`: (name, UID), sorted by name.
    pub fn owned(&self, namespace: &str, owner_uid: &str, label: (&str, &str)) -> Vec<(String, String)> {
        let owner_uid = Uid::of(owner_uid);
        let index = self.read();
        let mut found: Vec<(String, String)> = index
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, r)| {
                r.managed && r.label(label.0) == Some(label.1) && r.owner.as_ref().is_some_and(|o| o.uid == owner_uid)
            })
            .map(|(name, r)| (name.to_string(), r.uid.to_string()))
            .collect();
        found.sort();
        found
    }

    /// Objects of `namespace` that carry drmesh's managed-by label without being a drmesh
    /// parent's child ([`forged`]). Names, sorted.
    pub fn forged(&self, namespace: &str) -> Vec<String> {
        let index = self.read();
        let mut found: Vec<String> = index
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r.managed && !r.parented())
            .map(|(name, _)| name.to_string())
            .collect();
        found.sort();
        found
    }

    /// Every child of `namespace`, as objects carrying what the records keep.
    pub fn in_namespace(&self, namespace: &str) -> Vec<K> {
        self.read()
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(name, record)| self.object(namespace, name, record))
            .collect()
    }

    fn object(&self, namespace: &str, name: &str, record: &ChildRecord) -> K {
        let mut obj = K::default();
        *obj.meta_mut() = record.meta(namespace, name);
        obj
    }
}

impl<K: Resource<DynamicType = ()> + Default + Clone + serde::Serialize> ChildCache<K> {
    /// Keeps the cache up to date from `events` and passes them on; after a re-list, a
    /// `Delete` is passed on for every child the new list no longer has (so whoever
    /// owned it is told). Until the first list is complete, the cache is empty.
    pub fn reflect<S>(self, events: S) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
    where
        K: Send + 'static,
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    {
        let mut listing: Option<Index> = None;
        events.flat_map(move |event| {
            let out = match event {
                Ok(event) => self.step(&mut listing, event).into_iter().map(Ok).collect(),
                Err(error) => vec![Err(error)],
            };
            stream::iter(out)
        })
    }

    fn step(&self, listing: &mut Option<Index>, event: Event<K>) -> Vec<Event<K>> {
        let key = |obj: &K| {
            let meta = obj.meta();
            (meta.namespace.as_deref().unwrap_or_default().into(), meta.name.as_deref().unwrap_or_default().into())
        };
        match event {
            Event::Init => {
                *listing = Some(Index::new());
                vec![Event::Init]
            }
            Event::InitApply(obj) => {
                let (ns, name): (Box<str>, Box<str>) = key(&obj);
                let record = ChildRecord::of(&obj, (self.detail)(&obj), applied::live(&obj));
                listing.get_or_insert_default().entry(ns).or_default().insert(name, record);
                vec![Event::InitApply(obj)]
            }
            Event::InitDone => {
                let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
                let old = std::mem::replace(&mut *index, listing.take().unwrap_or_default());
                let mut out: Vec<Event<K>> = old
                    .iter()
                    .flat_map(|(ns, names)| names.iter().map(move |(name, r)| (ns, name, r)))
                    .filter(|(ns, name, _)| index.get(*ns).is_none_or(|names| !names.contains_key(*name)))
                    .map(|(ns, name, record)| Event::Delete(self.object(ns, name, record)))
                    .collect();
                out.push(Event::InitDone);
                out
            }
            Event::Apply(obj) => {
                let (ns, name) = key(&obj);
                let record = ChildRecord::of(&obj, (self.detail)(&obj), applied::live(&obj));
                self.index.write().unwrap_or_else(|p| p.into_inner()).entry(ns).or_default().insert(name, record);
                vec![Event::Apply(obj)]
            }
            Event::Delete(obj) => {
                let (ns, name): (Box<str>, Box<str>) = key(&obj);
                let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
                if let Some(names) = index.get_mut(&ns) {
                    names.remove(&name);
                    if names.is_empty() {
                        index.remove(&ns);
                    }
                }
                vec![Event::Delete(obj)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::PartialObjectMeta;

    type Meta = PartialObjectMeta<Service>;

    fn child(ns: &str, name: &str, rv: &str, owner_uid: &str, product: &str) -> Meta {
        let metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some(rv.into()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
                (labels::DATA_PRODUCT.to_string(), product.to_string()),
                ("app.kubernetes.io/name".to_string(), product.to_string()),
            ])),
            annotations: Some(BTreeMap::from([("note".to_string(), "not kept".to_string())])),
            owner_references: Some(vec![
                OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: "other".into(),
                    uid: "not-the-controller".into(),
                    controller: Some(false),
                    block_owner_deletion: None,
                },
                OwnerReference {
                    api_version: "drmesh.io/v1alpha1".into(),
                    kind: "DataProduct".into(),
                    name: product.into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                },
            ]),
            ..ObjectMeta::default()
        };
        Meta { metadata, ..Meta::default() }
    }

    fn feed(cache: &ChildCache<Meta>, listing: &mut Option<Index>, events: Vec<Event<Meta>>) -> Vec<Event<Meta>> {
        events.into_iter().flat_map(|e| cache.step(listing, e)).collect()
    }

    #[test]
    fn uids_round_trip_exactly() {
        let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert!(matches!(Uid::of(uuid), Uid::Uuid(_)), "a UUID is kept as bytes");
        assert_eq!(Uid::of(uuid).to_string(), uuid);
        assert!(Uid::of(uuid).is(uuid));
        assert!(!Uid::of(uuid).is("0f8fad5b-d9cb-469f-a165-70867728950f"));
        for other in ["0F8FAD5B-D9CB-469F-A165-70867728950E", "uid-svc", "", "0f8fad5b+d9cb-469f-a165-70867728950e"] {
            assert!(matches!(Uid::of(other), Uid::Text(_)), "{other} is kept as text");
            assert_eq!(Uid::of(other).to_string(), other);
            assert!(Uid::of(other).is(other));
            assert!(!Uid::of(other).is(uuid));
        }
        assert!(!Uid::of(uuid).is(&uuid.to_uppercase()), "UIDs compare as the server wrote them");
    }

    #[test]
    fn a_record_keeps_what_the_controllers_read() {
        let cache = ChildCache::<Meta>::new(|m| m.metadata.name.as_ref().map_or(0, |n| n.len() as u64));
        let mut listing = None;
        feed(
            &cache,
            &mut listing,
            vec![Event::Init, Event::InitApply(child("a", "svc", "7", "owner-1", "p")), Event::InitDone],
        );
        let record = cache.get("a", "svc").expect("cached");
        assert_eq!(record.uid.to_string(), "uid-svc");
        assert_eq!(&*record.resource_version, "7");
        assert!(record.managed);
        assert_eq!(record.label(labels::DATA_PRODUCT), Some("p"));
        assert_eq!(record.label(labels::ACCESS_POLICY), None);
        assert_eq!(record.label("app.kubernetes.io/name"), None, "other labels are not kept");
        let owner = record.owner.expect("controller owner");
        assert_eq!((&*owner.kind, &*owner.name, owner.uid.to_string().as_str()), ("DataProduct", "p", "owner-1"));
        assert!(matches!(owner.kind, Known::Shared(_)), "one copy of the kind");
        assert_eq!(Known::of("ConfigMap"), Known::Own("ConfigMap".into()));
        assert_eq!(&*Known::of("ConfigMap"), "ConfigMap");
        assert_eq!(record.detail, 3);
        assert_eq!(cache.resource_version("a", "svc").as_deref(), Some("7"));
        assert_eq!(cache.resource_version("b", "svc"), None);
    }

    #[test]
    fn owned_selects_by_namespace_label_and_controller_uid() {
        let cache = ChildCache::<Meta>::new(no_detail);
        let mut listing = None;
        let mut foreign = child("a", "x-foreign", "1", "owner-1", "p");
        foreign.metadata.labels.as_mut().expect("labels").remove(labels::MANAGED_BY);
        feed(
            &cache,
            &mut listing,
            vec![
                Event::Init,
                Event::InitApply(child("a", "x2", "1", "owner-1", "p")),
                Event::InitApply(child("a", "x1", "1", "owner-1", "p")),
                Event::InitApply(child("a", "y", "1", "owner-2", "p")),
                Event::InitApply(child("a", "z", "1", "owner-1", "q")),
                Event::InitApply(child("b", "x3", "1", "owner-1", "p")),
                Event::InitApply(foreign),
                Event::InitDone,
            ],
        );
        let owned = cache.owned("a", "owner-1", (labels::DATA_PRODUCT, "p"));
        assert_eq!(owned, [("x1".to_string(), "uid-x1".to_string()), ("x2".to_string(), "uid-x2".to_string())]);
        assert_eq!(cache.len(), 6);
    }

    #[test]
    fn a_forged_managed_by_label_is_told_from_a_child() {
        let cache = ChildCache::<Meta>::new(no_detail);
        let mut listing = None;
        let mut unowned = child("a", "no-owner", "1", "owner-1", "p");
        unowned.metadata.owner_references = None;
        let mut mislabelled = child("a", "other-label", "1", "owner-1", "p");
        mislabelled.metadata.labels.as_mut().expect("labels").insert(labels::DATA_PRODUCT.into(), "q".into());
        let mut foreign_owner = child("a", "helm-owned", "1", "owner-1", "p");
        for r in foreign_owner.metadata.owner_references.as_mut().expect("refs") {
            r.api_version = "apps/v1".into();
        }
        let mut unlabelled = child("a", "not-managed", "1", "owner-1", "p");
        unlabelled.metadata.owner_references = None;
        unlabelled.metadata.labels.as_mut().expect("labels").remove(labels::MANAGED_BY);
        let events = [child("a", "real", "1", "owner-1", "p"), unowned, mislabelled, foreign_owner, unlabelled];
        let mut all = vec![Event::Init];
        all.extend(events.into_iter().map(Event::InitApply));
        all.push(Event::InitDone);
        feed(&cache, &mut listing, all);
        assert_eq!(cache.forged("a"), ["helm-owned", "no-owner", "other-label"]);
        assert!(cache.forged("b").is_empty());
    }

    #[test]
    fn the_first_list_is_atomic_and_a_relist_reports_what_is_gone() {
        let cache = ChildCache::<Meta>::new(no_detail);
        let mut listing = None;
        feed(
            &cache,
            &mut listing,
            vec![
                Event::Init,
                Event::InitApply(child("a", "kept", "1", "o", "p")),
                Event::InitApply(child("a", "lost", "1", "o", "p")),
            ],
        );
        assert!(cache.is_empty(), "nothing visible before the list completes");
        feed(&cache, &mut listing, vec![Event::InitDone]);
        assert_eq!(cache.len(), 2);
        let out = feed(
            &cache,
            &mut listing,
            vec![Event::Init, Event::InitApply(child("a", "kept", "2", "o", "p")), Event::InitDone],
        );
        let deleted: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                Event::Delete(m) => Some(m.metadata.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted.len(), 1, "{out:?}");
        assert_eq!(deleted[0].name.as_deref(), Some("lost"));
        let owner = &deleted[0].owner_references.as_ref().expect("owner kept")[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("DataProduct", "o"), "the owner is told");
        assert_eq!(cache.resource_version("a", "kept").as_deref(), Some("2"));
        assert_eq!(cache.get("a", "lost"), None);
    }

    #[test]
    fn apply_and_delete_keep_the_index_current() {
        let cache = ChildCache::<Meta>::new(no_detail);
        let mut listing = None;
        feed(&cache, &mut listing, vec![Event::Init, Event::InitDone]);
        feed(&cache, &mut listing, vec![Event::Apply(child("a", "s", "1", "o", "p"))]);
        feed(&cache, &mut listing, vec![Event::Apply(child("a", "s", "2", "o", "p"))]);
        assert_eq!(cache.resource_version("a", "s").as_deref(), Some("2"));
        let synthesized = cache.in_namespace("a");
        assert_eq!(synthesized.len(), 1);
        assert_eq!(synthesized[0].metadata.labels.as_ref().map(BTreeMap::len), Some(2), "managed-by and parent");
        feed(&cache, &mut listing, vec![Event::Delete(child("a", "s", "3", "o", "p"))]);
        assert!(cache.is_empty());
        assert!(cache.in_namespace("a").is_empty());
    }
}
