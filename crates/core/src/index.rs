//! The mesh graph, kept up to date from watch events: who reads whom (product inputs,
//! source inputs) and who is granted what (AccessPolicy edges with their subjects, ports
//! and time window), with every reverse edge. Lookups that would scan every product or
//! policy ("the policies of this product", "the consumers of that one") become map
//! lookups, and each update returns the objects whose plans the edge change may change,
//! computed from the old and the new edges: an input or a subject removed wakes what it
//! named before (security model, O13), which the new object alone no longer names.
//!
//! The index mirrors a set of objects, nothing more: it decides nothing. Whether an edge
//! is in force (clearances, approvals, the grant's window against the clock) is the
//! rules' business ([`crate::rules`]); the window is kept so that "which grants of this
//! product are open at T" needs no parse of every policy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{AccessPolicy, DataProduct, SubjectKind};
use crate::rules::{product_inputs, source_inputs};

/// A small set kept as a sorted vector: most edge sets hold one or two entries, where a
/// `BTreeSet` allocates a whole node (eleven slots) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set<T>(Vec<T>);

impl<T> Default for Set<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> FromIterator<T> for Set<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut v: Vec<T> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        v.shrink_to_fit();
        Self(v)
    }
}

impl<T: Ord + Clone> Set<T> {
    pub fn contains(&self, item: &T) -> bool {
        self.0.binary_search(item).is_ok()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The entries of `self` that `other` lacks.
    pub fn difference<'a>(&'a self, other: &'a Set<T>) -> impl Iterator<Item = &'a T> + 'a {
        self.0.iter().filter(move |x| !other.contains(x))
    }
    fn insert(&mut self, item: T) {
        if let Err(at) = self.0.binary_search(&item) {
            self.0.insert(at, item);
        }
    }
    fn remove(&mut self, item: &T) {
        if let Ok(at) = self.0.binary_search(item) {
            self.0.remove(at);
        }
    }
}

impl<'a, T> IntoIterator for &'a Set<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A name, shared by every map of the index that holds it (a clone is a count, not a
/// copy: the index stores each edge in both directions).
pub type Name = Arc<str>;

/// `(namespace, name)` of a namespaced object.
pub type Key = (Name, Name);

/// The key of `namespace/name`.
pub fn key(namespace: &str, name: &str) -> Key {
    (namespace.into(), name.into())
}

fn key_of<K: ResourceExt>(obj: &K) -> Key {
    key(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

/// A product's outgoing edges: what it reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProductEdges {
    /// Products it declares as inputs (any namespace).
    pub products: Set<Key>,
    /// DataSources it declares as inputs (its own namespace).
    pub sources: Set<Name>,
    /// Its output ports, `(number, name)`: what a grant's `ports` selects from.
    pub ports: Set<(i32, String)>,
}

impl ProductEdges {
    pub fn of(product: &DataProduct) -> Self {
        Self {
            products: product_inputs(product).map(|k| key(&k.namespace, &k.name)).collect(),
            sources: source_inputs(product).map(Name::from).collect(),
            ports: product.spec.output_ports.iter().map(|p| (p.port, p.name.clone())).collect(),
        }
    }
}

/// An AccessPolicy's edges: the product it grants (same namespace), to whom, on which
/// ports, and when.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GrantEdges {
    pub product: Name,
    /// DataProduct subjects (consumers reached through the network).
    pub products: Set<Key>,
    /// Namespace subjects.
    pub namespaces: Set<Name>,
    /// People and ServiceAccounts: `(kind, namespace or "", name)`.
    pub identities: Set<(SubjectKind, String, String)>,
    /// The ports granted as written (`None`: all of them).
    pub ports: Option<Set<String>>,
    /// `[startsAt, expiresAt)`; a bound that does not parse is kept as `None` (the rules
    /// refuse such a grant: the window is only used to find grants, never to allow one).
    pub window: (Option<Timestamp>, Option<Timestamp>),
}

impl GrantEdges {
    pub fn of(policy: &AccessPolicy) -> Self {
        let mut edges = Self { product: policy.spec.data_product.as_str().into(), ..Self::default() };
        for s in &policy.spec.subjects {
            let (namespace, name) = (s.namespace.clone().unwrap_or_default(), s.name.clone().unwrap_or_default());
            match s.kind {
                SubjectKind::DataProduct => {
                    edges.products.insert(key(&namespace, &name));
                }
                SubjectKind::Namespace => {
                    edges.namespaces.insert(name.into());
                }
                kind => {
                    edges.identities.insert((kind, namespace, name));
                }
            }
        }
        edges.ports = policy.spec.ports.as_ref().map(|p| p.iter().cloned().collect());
        let time = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        edges.window = (time(&policy.spec.starts_at), time(&policy.spec.expires_at));
        edges
    }

    /// Whether `at` falls in the grant's window, as written.
    pub fn open_at(&self, at: Timestamp) -> bool {
        self.window.0.is_none_or(|start| start <= at) && self.window.1.is_none_or(|end| at < end)
    }
}

/// What an update may change: the plans to compute again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Affected {
    pub products: BTreeSet<Key>,
    /// DataSources `(namespace, name)` whose allowed consumers may change.
    pub sources: BTreeSet<Key>,
    pub policies: BTreeSet<Key>,
}

impl Affected {
    pub fn extend(&mut self, other: Affected) {
        self.products.extend(other.products);
        self.sources.extend(other.sources);
        self.policies.extend(other.policies);
    }
}

/// The mesh graph: edges of every product and policy, and the reverse edges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MeshIndex {
    products: BTreeMap<Key, ProductEdges>,
    grants: BTreeMap<Key, GrantEdges>,
    /// Producer -> the products that declare it as an input.
    consumers: BTreeMap<Key, Set<Key>>,
    /// `(namespace, source)` -> the products that declare it.
    source_users: BTreeMap<Key, Set<Key>>,
    /// Product -> the policies that grant it (same namespace).
    policies_of: BTreeMap<Key, Set<Key>>,
    /// DataProduct subject -> the policies that name it.
    granted_to: BTreeMap<Key, Set<Key>>,
}

fn link(map: &mut BTreeMap<Key, Set<Key>>, from: &Key, to: &Key) {
    map.entry(from.clone()).or_default().insert(to.clone());
}

fn unlink(map: &mut BTreeMap<Key, Set<Key>>, from: &Key, to: &Key) {
    if let Some(set) = map.get_mut(from) {
        set.remove(to);
        if set.is_empty() {
            map.remove(from);
        }
    }
}

fn lookup(map: &BTreeMap<Key, Set<Key>>, key: &Key) -> BTreeSet<Key> {
    map.get(key).map(|set| set.iter().cloned().collect()).unwrap_or_default()
}

impl MeshIndex {
    /// An index of these objects, built at once.
    pub fn from_objects<'a>(
        products: impl IntoIterator<Item = &'a DataProduct>,
        policies: impl IntoIterator<Item = &'a AccessPolicy>,
    ) -> Self {
        let mut index = Self::default();
        for p in products {
            index.set_product(key_of(p), Some(ProductEdges::of(p)));
        }
        for p in policies {
            index.set_policy(key_of(p), Some(GrantEdges::of(p)));
        }
        index
    }

    /// `product` as it is now (added or changed).
    pub fn apply_product(&mut self, product: &DataProduct) -> Affected {
        self.set_product(key_of(product), Some(ProductEdges::of(product)))
    }

    /// `policy` as it is now (added or changed).
    pub fn apply_policy(&mut self, policy: &AccessPolicy) -> Affected {
        self.set_policy(key_of(policy), Some(GrantEdges::of(policy)))
    }

    /// Records a product's edges (`None`: it is gone). Returns what the change may
    /// affect: the product itself, the producers and sources it read before or reads now
    /// (their consumer lists), and the policies that grant it when its ports changed.
    pub fn set_product(&mut self, key: Key, edges: Option<ProductEdges>) -> Affected {
        let old = match &edges {
            Some(new) => self.products.insert(key.clone(), new.clone()),
            None => self.products.remove(&key),
        };
        let (old, new) = (old.unwrap_or_default(), edges.unwrap_or_default());
        let (ns, _) = &key;
        for gone in old.products.difference(&new.products) {
            unlink(&mut self.consumers, gone, &key);
        }
        for added in new.products.difference(&old.products) {
            link(&mut self.consumers, added, &key);
        }
        for gone in old.sources.difference(&new.sources) {
            unlink(&mut self.source_users, &(ns.clone(), gone.clone()), &key);
        }
        for added in new.sources.difference(&old.sources) {
            link(&mut self.source_users, &(ns.clone(), added.clone()), &key);
        }
        let mut affected = Affected { products: [key.clone()].into(), ..Affected::default() };
        affected.products.extend(old.products.iter().chain(new.products.iter()).cloned());
        affected.sources.extend(old.sources.iter().chain(new.sources.iter()).map(|s| (ns.clone(), s.clone())));
        if old.ports != new.ports {
            affected.policies.extend(lookup(&self.policies_of, &key));
        }
        affected
    }

    /// Records a policy's edges (`None`: it is gone). Returns the policy, the product it
    /// grants, and every DataProduct subject it named before or names now.
    pub fn set_policy(&mut self, key: Key, edges: Option<GrantEdges>) -> Affected {
        let old = match &edges {
            Some(new) => self.grants.insert(key.clone(), new.clone()),
            None => self.grants.remove(&key),
        };
        let ns = &key.0;
        let mut affected = Affected { policies: [key.clone()].into(), ..Affected::default() };
        if let Some(old) = &old {
            let product = (ns.clone(), old.product.clone());
            unlink(&mut self.policies_of, &product, &key);
            for subject in &old.products {
                unlink(&mut self.granted_to, subject, &key);
            }
            affected.products.insert(product);
            affected.products.extend(old.products.iter().cloned());
        }
        if let Some(new) = &edges {
            let product = (ns.clone(), new.product.clone());
            link(&mut self.policies_of, &product, &key);
            for subject in &new.products {
                link(&mut self.granted_to, subject, &key);
            }
            affected.products.insert(product);
            affected.products.extend(new.products.iter().cloned());
        }
        affected
    }

    /// Forgets every object of one kind that is not in `keep` (after a relist).
    pub fn retain_products(&mut self, keep: &BTreeSet<Key>) -> Affected {
        let gone: Vec<Key> = self.products.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        let mut affected = Affected::default();
        for key in gone {
            affected.extend(self.set_product(key, None));
        }
        affected
    }

    /// Forgets every policy not in `keep` (after a relist).
    pub fn retain_policies(&mut self, keep: &BTreeSet<Key>) -> Affected {
        let gone: Vec<Key> = self.grants.keys().filter(|k| !keep.contains(*k)).cloned().collect();
        let mut affected = Affected::default();
        for key in gone {
            affected.extend(self.set_policy(key, None));
        }
        affected
    }

    /// The products that declare `producer` as an input, ordered.
    pub fn consumers(&self, producer: &Key) -> BTreeSet<Key> {
        lookup(&self.consumers, producer)
    }

    /// The products of `namespace` that declare the DataSource `source`, ordered.
    pub fn source_users(&self, namespace: &str, source: &str) -> BTreeSet<Key> {
        lookup(&self.source_users, &key(namespace, source))
    }

    /// The policies that grant `product`, ordered by name.
    pub fn policies_of(&self, product: &Key) -> BTreeSet<Key> {
        lookup(&self.policies_of, product)
    }

    /// The policies that name `product` as a DataProduct subject.
    pub fn granted_to(&self, product: &Key) -> BTreeSet<Key> {
        lookup(&self.granted_to, product)
    }

    /// A product's edges, if the index knows it.
    pub fn product(&self, key: &Key) -> Option<&ProductEdges> {
        self.products.get(key)
    }

    /// A policy's edges, if the index knows it.
    pub fn policy(&self, key: &Key) -> Option<&GrantEdges> {
        self.grants.get(key)
    }

    /// The policies of `product` whose window is open at `at` (as written; the rules
    /// still decide whether each is in force).
    pub fn open_grants(&self, product: &Key, at: Timestamp) -> BTreeSet<Key> {
        self.policies_of(product).into_iter().filter(|p| self.grants.get(p).is_some_and(|g| g.open_at(at))).collect()
    }

    /// How many products and policies the index holds.
    pub fn len(&self) -> (usize, usize) {
        (self.products.len(), self.grants.len())
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty() && self.grants.is_empty()
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
