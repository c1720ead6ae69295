//! What the pure core may know about the mesh: a read-only view that the operator
//! backs with its watch caches and the CLI with manifests loaded from files.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::grant::ApiServer;
use crate::api::{AccessPolicy, Classification, Clearance, DataProduct, DataSource, MeshPolicy, OwnerKind};

/// A read-only view of the mesh.
pub trait MeshView {
    /// The clearance of a domain: its namespace's `drmesh.io/clearance` label;
    /// `Public` when the label is missing or the namespace is unknown (fail closed).
    fn clearance(&self, namespace: &str) -> Classification;
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<DataSource>>;
    fn product(&self, namespace: &str, name: &str) -> Option<Arc<DataProduct>>;
    /// Whether the Secret exists (`None`: unknown, e.g. offline without the Secret's manifest).
    fn secret_exists(&self, namespace: &str, name: &str) -> Option<bool>;
    /// Whether a DataSource is Ready to lend its credentials (its Secret exists and is
    /// released for drmesh, its endpoint is usable).
    fn source_ready(&self, namespace: &str, name: &str) -> Readiness;
    /// Whether a DataProduct is Ready (runs with all its inputs).
    fn product_ready(&self, namespace: &str, name: &str) -> Readiness;
    /// AccessPolicies in `namespace` whose `spec.dataProduct` is `product`, ordered by name.
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<Arc<AccessPolicy>>;
    /// DataProducts in `namespace` with an input `dataSource: source`, ordered by name.
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<Arc<DataProduct>>;
    /// DataProducts (any namespace) with an input `dataProduct: {namespace, name}`, ordered.
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<Arc<DataProduct>>;
    /// The API server's addresses, from which people's reads through `services/proxy`
    /// reach products; none by default (people's reads are not let through the network).
    fn api_server(&self) -> &ApiServer {
        static NONE: ApiServer = ApiServer::NONE;
        &NONE
    }
    /// The Clearances naming this User or Group (in force or not). A view that does not
    /// know clearances has none: people read Public products only (fail closed).
    fn clearances_of(&self, _kind: OwnerKind, _name: &str) -> Vec<Arc<Clearance>> {
        vec![]
    }
    /// The cluster's MeshPolicy (`default`), if any.
    fn mesh_policy(&self) -> Option<Arc<MeshPolicy>> {
        None
    }
}

/// Whether an input is Ready, as far as the view can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not Ready, with why (reason: message).
    NotReady(String),
    /// The view cannot tell (offline, without status): taken as Ready.
    Unknown,
}

type Key = (String, String);

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

/// An in-memory mesh: the CLI's view of manifests, and the fixture of pure tests.
#[derive(Default, Clone)]
pub struct Snapshot {
    pub clearances: BTreeMap<String, Classification>,
    pub sources: BTreeMap<Key, Arc<DataSource>>,
    pub products: BTreeMap<Key, Arc<DataProduct>>,
    pub policies: BTreeMap<Key, Arc<AccessPolicy>>,
    /// Secrets known to exist and released to drmesh. `None`: the snapshot does not know
    /// about Secrets at all.
    pub secrets: Option<std::collections::BTreeSet<Key>>,
    /// Secrets known to exist without the `drmesh.io/credentials: "true"` label.
    pub unreleased_secrets: std::collections::BTreeSet<Key>,
    /// The API server's addresses (`drmesh render --api-server-cidrs`).
    pub api_server: ApiServer,
    /// People's clearances.
    pub people: Vec<Arc<Clearance>>,
    /// The cluster's MeshPolicy.
    pub mesh_policy: Option<Arc<MeshPolicy>>,
}

fn ns_of<K: kube::ResourceExt>(obj: &K) -> String {
    obj.namespace().unwrap_or_default()
}

impl Snapshot {
    pub fn add_source(&mut self, source: DataSource) {
        self.sources.insert(key(&ns_of(&source), &source.name_any()), Arc::new(source));
    }
    pub fn add_product(&mut self, product: DataProduct) {
        self.products.insert(key(&ns_of(&product), &product.name_any()), Arc::new(product));
    }
    pub fn add_policy(&mut self, policy: AccessPolicy) {
        self.policies.insert(key(&ns_of(&policy), &policy.name_any()), Arc::new(policy));
    }
    /// A Secret released to drmesh (labelled `drmesh.io/credentials: "true"`).
    pub fn add_secret(&mut self, namespace: &str, name: &str) {
        self.secrets.get_or_insert_with(Default::default).insert(key(namespace, name));
    }
    /// A Secret that exists but is not released to drmesh.
    pub fn add_unreleased_secret(&mut self, namespace: &str, name: &str) {
        self.secrets.get_or_insert_with(Default::default);
        self.unreleased_secrets.insert(key(namespace, name));
    }
    /// What the snapshot knows of a Secret (`None`: nothing about that namespace's Secrets).
    pub fn secret_state(&self, namespace: &str, name: &str) -> Option<super::source::SecretState> {
        use super::source::SecretState;
        let known = self.secrets.as_ref()?;
        let in_namespace = |set: &std::collections::BTreeSet<Key>| {
            set.range(key(namespace, "")..).next().is_some_and(|(ns, _)| ns == namespace)
        };
        if !in_namespace(known) && !in_namespace(&self.unreleased_secrets) {
            return None;
        }
        Some(if known.contains(&key(namespace, name)) {
            SecretState::Released
        } else if self.unreleased_secrets.contains(&key(namespace, name)) {
            SecretState::NotReleased
        } else {
            SecretState::Missing
        })
    }
    pub fn add_person_clearance(&mut self, clearance: Clearance) {
        self.people.push(Arc::new(clearance));
    }
    pub fn set_mesh_policy(&mut self, policy: MeshPolicy) {
        self.mesh_policy = Some(Arc::new(policy));
    }
    pub fn set_clearance(&mut self, namespace: &str, clearance: Classification) {
        self.clearances.insert(namespace.to_string(), clearance);
    }
}

use kube::ResourceExt;

impl MeshView for Snapshot {
    fn clearance(&self, namespace: &str) -> Classification {
        self.clearances.get(namespace).copied().unwrap_or(Classification::Public)
    }
    fn source(&self, namespace: &str, name: &str) -> Option<Arc<DataSource>> {
        self.sources.get(&key(namespace, name)).cloned()
    }
    fn product(&self, namespace: &str, name: &str) -> Option<Arc<DataProduct>> {
        self.products.get(&key(namespace, name)).cloned()
    }
    fn secret_exists(&self, namespace: &str, name: &str) -> Option<bool> {
        self.secret_state(namespace, name).map(|s| s != super::source::SecretState::Missing)
    }
    fn source_ready(&self, namespace: &str, name: &str) -> Readiness {
        let Some(source) = self.source(namespace, name) else {
            return Readiness::Unknown;
        };
        let secret = &source.spec.credentials_secret_ref.name;
        match self.secret_state(namespace, secret).and_then(|state| state.problem(namespace, secret)) {
            Some(problem) => Readiness::NotReady(format!("{}: {}", problem.reason, problem.message)),
            None => Readiness::Unknown,
        }
    }
    fn product_ready(&self, _namespace: &str, _name: &str) -> Readiness {
        Readiness::Unknown
    }
    fn policies_for(&self, namespace: &str, product: &str) -> Vec<Arc<AccessPolicy>> {
        self.policies
            .range(key(namespace, "")..)
            .take_while(|((ns, _), _)| ns == namespace)
            .filter(|(_, p)| p.spec.data_product == product)
            .map(|(_, p)| p.clone())
            .collect()
    }
    fn products_using_source(&self, namespace: &str, source: &str) -> Vec<Arc<DataProduct>> {
        self.products
            .range(key(namespace, "")..)
            .take_while(|((ns, _), _)| ns == namespace)
            .filter(|(_, p)| super::rules::source_inputs(p).any(|s| s == source))
            .map(|(_, p)| p.clone())
            .collect()
    }
    fn products_using_product(&self, namespace: &str, product: &str) -> Vec<Arc<DataProduct>> {
        self.products
            .values()
            .filter(|p| super::rules::product_inputs(p).any(|r| r.namespace == namespace && r.name == product))
            .cloned()
            .collect()
    }
    fn api_server(&self) -> &ApiServer {
        &self.api_server
    }
    fn clearances_of(&self, kind: OwnerKind, name: &str) -> Vec<Arc<Clearance>> {
        self.people.iter().filter(|c| c.spec.subject.kind == kind && c.spec.subject.name == name).cloned().collect()
    }
    fn mesh_policy(&self) -> Option<Arc<MeshPolicy>> {
        self.mesh_policy.clone()
    }
}
