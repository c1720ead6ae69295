//! The mesh's product-to-product edges, kept up to date from watch events, so that a
//! trigger can wake what an edit changes even when the edit removes the edge: a product
//! that drops an input changes its former producer's consumer list, which the new object
//! alone no longer names (security model, O13).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use crate::api::DataProduct;
use crate::rules::product_inputs;

/// `namespace/name` of a product.
pub type Key = (String, String);

/// Each product's declared product inputs, and the reverse edges.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InputIndex {
    inputs: BTreeMap<Key, BTreeSet<Key>>,
    consumers: BTreeMap<Key, BTreeSet<Key>>,
}

impl InputIndex {
    /// The key and declared product inputs of `product`.
    pub fn edges(product: &DataProduct) -> (Key, BTreeSet<Key>) {
        let key = (product.namespace().unwrap_or_default(), product.name_any());
        (key, product_inputs(product).map(|k| (k.namespace, k.name)).collect())
    }

    /// Records that `product` now declares `inputs` (`None`: it is gone). Returns every
    /// product whose consumers this may change: the inputs it had and the ones it has.
    pub fn update(&mut self, product: Key, inputs: Option<BTreeSet<Key>>) -> BTreeSet<Key> {
        let old = match &inputs {
            Some(new) => self.inputs.insert(product.clone(), new.clone()),
            None => self.inputs.remove(&product),
        }
        .unwrap_or_default();
        let new = inputs.unwrap_or_default();
        for gone in old.difference(&new) {
            if let Some(set) = self.consumers.get_mut(gone) {
                set.remove(&product);
                if set.is_empty() {
                    self.consumers.remove(gone);
                }
            }
        }
        for added in new.difference(&old) {
            self.consumers.entry(added.clone()).or_default().insert(product.clone());
        }
        old.union(&new).cloned().collect()
    }

    /// The products that declare `producer` as an input.
    pub fn consumers(&self, producer: &Key) -> BTreeSet<Key> {
        self.consumers.get(producer).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(i: u8) -> Key {
        ("ns".into(), format!("p{i}"))
    }

    #[test]
    fn a_dropped_input_wakes_its_former_producer() {
        let mut index = InputIndex::default();
        let woken = index.update(key(1), Some([key(2), key(3)].into()));
        assert_eq!(woken, [key(2), key(3)].into());
        assert_eq!(index.consumers(&key(2)), [key(1)].into());
        // p1 drops p2: p2 (no longer named by p1) is woken, and has no consumer left.
        let woken = index.update(key(1), Some([key(3)].into()));
        assert!(woken.contains(&key(2)) && woken.contains(&key(3)));
        assert!(index.consumers(&key(2)).is_empty());
        assert_eq!(index.update(key(1), None), [key(3)].into());
        assert!(index.consumers(&key(3)).is_empty());
    }

    proptest! {
        /// After any sequence of events, the index equals one built from scratch from
        /// the last state of every product, and each event woke at least the producers
        /// whose consumer lists it changed.
        #[test]
        fn the_index_equals_a_from_scratch_build(events in prop::collection::vec(
            (0u8..6, prop::option::of(prop::collection::btree_set(0u8..6, 0..4))), 0..40)) {
            let mut index = InputIndex::default();
            let mut state: BTreeMap<Key, BTreeSet<Key>> = BTreeMap::new();
            for (product, inputs) in events {
                let inputs: Option<BTreeSet<Key>> = inputs.map(|s| s.into_iter().map(key).collect());
                let before: BTreeMap<Key, BTreeSet<Key>> =
                    (0..6).map(|p| (key(p), index.consumers(&key(p)))).collect();
                let woken = index.update(key(product), inputs.clone());
                match inputs {
                    Some(i) => { state.insert(key(product), i); }
                    None => { state.remove(&key(product)); }
                }
                for p in 0..6 {
                    if index.consumers(&key(p)) != before[&key(p)] {
                        prop_assert!(woken.contains(&key(p)), "{:?} changed but was not woken", key(p));
                    }
                }
            }
            let mut scratch = InputIndex::default();
            for (product, inputs) in &state {
                scratch.update(product.clone(), Some(inputs.clone()));
            }
            prop_assert_eq!(&index.inputs, &scratch.inputs);
            for p in 0..6 {
                prop_assert_eq!(index.consumers(&key(p)), scratch.consumers(&key(p)));
            }
        }
    }
}
