//! Objects drmesh did not create, in the kinds it writes: their names, so that the
//! operator never takes one over by applying a child of the same name, and, for the
//! kinds that open access (NetworkPolicies selecting product pods, RoleBindings), what a
//! classified domain holds beside drmesh's own grants.
//!
//! Fed by watches with the selector `app.kubernetes.io/managed-by!=drmesh` (objects
//! without the label match too); only names and one flag are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use kube::api::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};

use crate::mesh::labels;

/// Names by namespace, each with whether the object may open access.
type Index = HashMap<Box<str>, BTreeMap<Box<str>, bool>>;

/// Names of foreign objects of one kind, by namespace; each with whether it may open
/// access to a product's pods.
#[derive(Clone)]
pub struct ForeignNames<K> {
    index: Arc<RwLock<Index>>,
    opens_access: fn(&K) -> bool,
}

impl<K> ForeignNames<K> {
    pub fn new(opens_access: fn(&K) -> bool) -> Self {
        Self { index: Arc::default(), opens_access }
    }

    /// Whether an object drmesh did not create holds `namespace/name`.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.index.read().map(|i| i.get(namespace).is_some_and(|n| n.contains_key(name))).unwrap_or(false)
    }

    /// The foreign objects of `namespace` that may open access, by name.
    pub fn opening_access(&self, namespace: &str) -> BTreeSet<String> {
        self.index
            .read()
            .map(|i| {
                i.get(namespace)
                    .map(|n| n.iter().filter(|(_, open)| **open).map(|(name, _)| name.to_string()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

impl<K: Resource> ForeignNames<K> {
    fn apply(&self, index: &mut Index, obj: &K) {
        let meta = obj.meta();
        let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) else {
            return;
        };
        index.entry(namespace.into()).or_default().insert(name.into(), (self.opens_access)(obj));
    }

    fn delete(index: &mut Index, obj: &K) {
        let meta = obj.meta();
        if let (Some(namespace), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref())
            && let Some(names) = index.get_mut(namespace)
        {
            names.remove(name);
            if names.is_empty() {
                index.remove(namespace);
            }
        }
    }

    /// Keeps the index up to date from a watch; a re-list replaces it when complete.
    pub fn reflect<S>(self, events: S) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
    where
        S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
        K: Send + Sync + 'static,
    {
        let mut relist: Option<Index> = None;
        events.inspect(move |event| {
            let Ok(event) = event else { return };
            match event {
                Event::Init => relist = Some(HashMap::new()),
                Event::InitApply(obj) => {
                    if let Some(next) = relist.as_mut() {
                        self.apply(next, obj);
                    }
                }
                Event::InitDone => {
                    if let (Some(next), Ok(mut index)) = (relist.take(), self.index.write()) {
                        *index = next;
                    }
                }
                Event::Apply(obj) => {
                    if let Ok(mut index) = self.index.write() {
                        self.apply(&mut index, obj);
                    }
                }
                Event::Delete(obj) => {
                    if let Ok(mut index) = self.index.write() {
                        Self::delete(&mut index, obj);
                    }
                }
            }
        })
    }
}

/// The foreign objects of every kind the operator writes.
#[derive(Clone)]
pub struct Foreign {
    pub deployments: ForeignNames<PartialObjectMeta<Deployment>>,
    pub services: ForeignNames<PartialObjectMeta<Service>>,
    pub service_accounts: ForeignNames<PartialObjectMeta<ServiceAccount>>,
    pub config_maps: ForeignNames<PartialObjectMeta<ConfigMap>>,
    pub roles: ForeignNames<PartialObjectMeta<Role>>,
    pub role_bindings: ForeignNames<PartialObjectMeta<RoleBinding>>,
    pub network_policies: ForeignNames<NetworkPolicy>,
}

impl Default for Foreign {
    fn default() -> Self {
        Self {
            deployments: ForeignNames::new(name_only),
            services: ForeignNames::new(name_only),
            service_accounts: ForeignNames::new(name_only),
            config_maps: ForeignNames::new(name_only),
            roles: ForeignNames::new(name_only),
            role_bindings: ForeignNames::new(always),
            network_policies: ForeignNames::new(selects_product_pods),
        }
    }
}

impl Foreign {
    /// Whether an object of `kind` that drmesh did not create holds `namespace/name`.
    pub fn holds(&self, kind: &str, namespace: &str, name: &str) -> bool {
        match kind {
            "Deployment" => self.deployments.contains(namespace, name),
            "Service" => self.services.contains(namespace, name),
            "ServiceAccount" => self.service_accounts.contains(namespace, name),
            "ConfigMap" => self.config_maps.contains(namespace, name),
            "Role" => self.roles.contains(namespace, name),
            "RoleBinding" => self.role_bindings.contains(namespace, name),
            "NetworkPolicy" => self.network_policies.contains(namespace, name),
            _ => false,
        }
    }

    /// What in `namespace` may open access to products beside drmesh's grants:
    /// `Kind/name`, sorted.
    pub fn access_objects(&self, namespace: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .network_policies
            .opening_access(namespace)
            .into_iter()
            .map(|n| format!("NetworkPolicy/{n}"))
            .chain(self.role_bindings.opening_access(namespace).into_iter().map(|n| format!("RoleBinding/{n}")))
            .collect();
        found.sort();
        found
    }
}

impl<K> super::scope::Listing<K> for ForeignNames<K>
where
    K: Resource<DynamicType = ()> + Default + Send + Sync + 'static,
{
    fn in_namespace(&self, namespace: &str) -> Vec<K> {
        let names: Vec<String> = self
            .index
            .read()
            .map(|i| i.get(namespace).map(|n| n.keys().map(|k| k.to_string()).collect()).unwrap_or_default())
            .unwrap_or_default();
        names
            .into_iter()
            .map(|name| {
                let mut obj = K::default();
                obj.meta_mut().name = Some(name);
                obj.meta_mut().namespace = Some(namespace.to_string());
                obj
            })
            .collect()
    }
}

/// Any kind: the name alone matters (it could be taken over).
pub fn name_only<K>(_: &K) -> bool {
    false
}

/// A RoleBinding drmesh did not create may grant anything in its namespace.
pub fn always<K>(_: &K) -> bool {
    true
}

/// Whether a foreign NetworkPolicy may select a product's pods: they carry only
/// `drmesh.io/data-product`, `app.kubernetes.io/managed-by: drmesh` and the
/// ReplicaSet's `pod-template-hash`, so a selector requiring any other label cannot.
pub fn selects_product_pods(policy: &NetworkPolicy) -> bool {
    let selector = policy.spec.as_ref().and_then(|s| s.pod_selector.as_ref());
    selector.is_none_or(selector_may_match_product_pods)
}

const PRODUCT_POD_LABELS: [&str; 3] = [labels::DATA_PRODUCT, labels::MANAGED_BY, "pod-template-hash"];

fn selector_may_match_product_pods(selector: &LabelSelector) -> bool {
    let labels_ok = selector.match_labels.iter().flatten().all(|(key, value)| {
        PRODUCT_POD_LABELS.contains(&key.as_str()) && (key != labels::MANAGED_BY || value == labels::MANAGER)
    });
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| {
        PRODUCT_POD_LABELS.contains(&e.key.as_str()) || matches!(e.operator.as_str(), "NotIn" | "DoesNotExist")
    });
    labels_ok && expressions_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::networking::v1::NetworkPolicySpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn policy(selector: LabelSelector) -> NetworkPolicy {
        NetworkPolicy {
            spec: Some(NetworkPolicySpec { pod_selector: Some(selector), ..Default::default() }),
            ..Default::default()
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_selector_that_product_pods_cannot_meet_is_not_counted() {
        assert!(selects_product_pods(&policy(LabelSelector::default())), "an empty selector selects every pod");
        assert!(selects_product_pods(&policy(LabelSelector {
            match_labels: labels(&[(labels::DATA_PRODUCT, "incident-feed")]),
            ..Default::default()
        })));
        assert!(!selects_product_pods(&policy(LabelSelector {
            match_labels: labels(&[("app", "web")]),
            ..Default::default()
        })));
        assert!(!selects_product_pods(&policy(LabelSelector {
            match_labels: labels(&[(labels::MANAGED_BY, "helm")]),
            ..Default::default()
        })));
        let expression = |key: &str, operator: &str| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(vec!["x".into()]),
            }]),
            ..Default::default()
        };
        assert!(selects_product_pods(&policy(expression("app", "NotIn"))), "product pods have no app label");
        assert!(!selects_product_pods(&policy(expression("app", "In"))));
        assert!(selects_product_pods(&policy(expression(labels::DATA_PRODUCT, "In"))));
    }

    #[tokio::test]
    async fn the_index_follows_the_watch_and_swaps_a_relist_in_whole() {
        let names = ForeignNames::<NetworkPolicy>::new(selects_product_pods);
        let named = |ns: &str, name: &str, selector: LabelSelector| {
            let mut p = policy(selector);
            p.metadata.namespace = Some(ns.into());
            p.metadata.name = Some(name.into());
            p
        };
        let narrow = LabelSelector { match_labels: labels(&[("app", "web")]), ..Default::default() };
        let events = futures::stream::iter(
            [
                Event::Init,
                Event::InitApply(named("police", "allow-all", LabelSelector::default())),
                Event::InitApply(named("police", "web", narrow.clone())),
                Event::InitDone,
                Event::Delete(named("police", "allow-all", LabelSelector::default())),
                Event::Apply(named("sante", "allow-all", LabelSelector::default())),
            ]
            .map(Ok),
        );
        let seen: Vec<_> = names.clone().reflect(events).collect().await;
        assert_eq!(seen.len(), 6);
        assert!(names.contains("police", "web"));
        assert!(!names.contains("police", "allow-all"), "deleted");
        assert!(names.opening_access("police").is_empty(), "web selects no product pod");
        assert_eq!(names.opening_access("sante"), BTreeSet::from(["allow-all".to_string()]));
    }
}
