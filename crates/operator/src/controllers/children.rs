//! Applying children and removing orphans, shared by the three controllers.
//!
//! Children are server-side applied with one field manager per controller and `force`
//! (the operator owns every field it sets). Nothing is sent when the live child already
//! holds what the apply would set: its cache record carries a hash of the fields
//! drmesh's managers own, with their live values ([`applied`]), compared with the hash
//! of the child to apply — so neither an idle mesh nor a restarted operator writes
//! anything, and an edit of a field drmesh set (its value, or its ownership) makes them
//! differ and the child is applied again (drift is reverted). The [`Applier`] also
//! remembers, per child, what it last applied and the resourceVersion the API server
//! answered with, for a kind whose stored form would not read back as applied.
//! Orphans are deleted only when both our labels and a controller owner reference to
//! the parent's UID match.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use super::applied;
use super::error::Error;
use super::fence::Fence;
use super::foreign::Foreign;
use super::records::ChildCache;
use crate::mesh::labels;

/// A child kind the operator manages: a namespaced, typed Kubernetes object.
pub trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Applies children for one controller (one field manager), skipping unchanged ones.
pub struct Applier {
    client: Client,
    manager: &'static str,
    /// Per child (a hash of its kind, namespace and name): a hash of what the last apply
    /// set ([`applied::desired`]) and of the resourceVersion it answered with. Hashes, not
    /// strings: one entry per child drmesh wrote, 66,600 of them at 10,000 products.
    last: Mutex<HashMap<u64, (u64, u64)>>,
    writes: prometheus_client::metrics::counter::Counter,
    foreign: Foreign,
    fence: Fence,
}

impl Applier {
    /// `writes` counts the applies actually sent (the idle-write figure of the benchmarks);
    /// `foreign` holds the names of objects drmesh did not create, never taken over.
    pub fn new(
        client: Client,
        manager: &'static str,
        writes: prometheus_client::metrics::counter::Counter,
        foreign: Foreign,
    ) -> Self {
        Self { client, manager, last: Mutex::default(), writes, foreign, fence: Fence::default() }
    }

    /// Writes only while `fence` is open (a standby's applier writes nothing).
    pub fn fenced(&mut self, fence: Fence) {
        self.fence = fence;
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    fn key<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> u64 {
        super::watches::hash(&(K::kind(&()), namespace, name))
    }

    /// Server-side applies `child` unless the cache shows it is already as we left it.
    /// Returns whether a request was sent.
    pub async fn apply<K, C>(&self, child: &K, cache: &ChildCache<C>) -> Result<bool, Error>
    where
        K: Child,
        C: Resource<DynamicType = ()> + Default + Clone,
    {
        let namespace = child.namespace().ok_or(Error::MissingNamespace)?;
        let name = child.name_any();
        self.check_ours(child, cache, &namespace, &name)?;
        let key = Self::key::<K>(&namespace, &name);
        let desired = applied::desired(child);
        let cached = cache.get(&namespace, &name);
        // The live child already holds what this apply would set (read from its values
        // and managedFields: true after a restart too, with nothing remembered).
        if cached.as_ref().is_some_and(|c| c.applied == desired) {
            return Ok(false);
        }
        // Or it is still the version this applier last wrote, from the same object.
        if let (Some(cached), Some((hash, last_rv))) = (&cached, self.remembered(key))
            && hash == desired
            && super::watches::hash(&*cached.resource_version) == last_rv
        {
            return Ok(false);
        }
        // Counted when sent: a standby's fenced apply is not a write.
        if let Err(standby) = self.fence.pass() {
            tracing::debug!(kind = K::kind(&()).as_ref(), %namespace, %name, live = ?cached.as_ref().map(|c| c.applied), desired, "standby: this child differs from what drmesh would apply");
            return Err(standby);
        }
        self.writes.inc();
        let stored = self.send(child, &namespace, &name, PatchParams::apply(self.manager).force()).await?;
        // Serializing the stored child costs as much as the apply's own encoding: only
        // when someone reads the log.
        if tracing::enabled!(tracing::Level::DEBUG) && applied::live(&stored) != desired {
            // Harmless (the resourceVersion check above still spares idle writes), but
            // this child will be applied again after a restart: worth knowing.
            tracing::debug!(kind = K::kind(&()).as_ref(), %namespace, %name, "applied child does not read back as applied");
            if tracing::enabled!(tracing::Level::TRACE) {
                let (live, wanted) = applied::explain(&stored, child);
                tracing::trace!(%live, %wanted, "what drmesh owns on the stored child, and what it applied");
            }
        }
        if let Some(rv) = stored.resource_version() {
            self.remember(key, desired, super::watches::hash(&rv));
        }
        Ok(true)
    }

    /// One server-side apply of `child` with `params`.
    async fn send<K: Child>(&self, child: &K, namespace: &str, name: &str, params: PatchParams) -> Result<K, Error> {
        self.fence.pass()?;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        api.patch(name, &params, &Patch::Apply(child)).await.map_err(|source| Error::Apply {
            kind: K::kind(&()).to_string(),
            name: name.to_string(),
            source,
        })
    }

    /// Refuses to write over an object drmesh did not create for this parent: a foreign
    /// object of the same name, or a drmesh object controlled by another parent (UID).
    fn check_ours<K, C>(&self, child: &K, cache: &ChildCache<C>, namespace: &str, name: &str) -> Result<(), Error>
    where
        K: Child,
        C: Resource<DynamicType = ()> + Default + Clone,
    {
        let kind = K::kind(&()).to_string();
        if self.foreign.holds(&kind, namespace, name) {
            let holder = "an object drmesh did not create (without app.kubernetes.io/managed-by=drmesh)".to_string();
            return Err(Error::NameConflict { kind, name: name.to_string(), holder });
        }
        let parent = child.meta().owner_references.iter().flatten().find(|o| o.controller == Some(true));
        if let Some(record) = cache.get(namespace, name) {
            let same = match (&record.owner, parent) {
                (Some(owner), Some(parent)) => owner.uid.is(&parent.uid),
                _ => false,
            };
            if !same {
                let holder = record
                    .owner
                    .as_ref()
                    .map(|o| format!("{} {} (uid {})", o.kind, o.name, o.uid))
                    .unwrap_or_else(|| "an object without a controller owner reference".into());
                return Err(Error::NameConflict { kind, name: name.to_string(), holder });
            }
        }
        Ok(())
    }

    /// Asks the API server whether `child` would be accepted, changing nothing (used
    /// before re-applying a parent whose last apply failed, so that a refused grant is
    /// not half-applied again on each retry).
    pub async fn dry_run<K, C>(&self, child: &K, cache: &ChildCache<C>) -> Result<(), Error>
    where
        K: Child,
        C: Resource<DynamicType = ()> + Default + Clone,
    {
        let namespace = child.namespace().ok_or(Error::MissingNamespace)?;
        let name = child.name_any();
        self.check_ours(child, cache, &namespace, &name)?;
        self.send(child, &namespace, &name, PatchParams::apply(self.manager).force().dry_run()).await?;
        Ok(())
    }

    /// Whether `child` is the version this applier's last apply of it answered with: the
    /// watch echoing drmesh's own write.
    pub fn wrote<K: Resource<DynamicType = ()>>(&self, child: &K) -> bool {
        let meta = child.meta();
        let (Some(namespace), Some(name), Some(version)) = (&meta.namespace, &meta.name, &meta.resource_version) else {
            return false;
        };
        // Read under the lock, not cloned: every child event of the owner's kind asks.
        let key = Self::key::<K>(namespace, name);
        let version = super::watches::hash(version.as_str());
        self.last.lock().is_ok_and(|m| m.get(&key).is_some_and(|(_, last)| *last == version))
    }

    fn remembered(&self, key: u64) -> Option<(u64, u64)> {
        self.last.lock().map(|m| m.get(&key).copied()).unwrap_or(None)
    }

    fn remember(&self, key: u64, hash: u64, rv: u64) {
        if let Ok(mut m) = self.last.lock() {
            m.insert(key, (hash, rv));
        }
    }

    /// Forgets a child (after it was deleted).
    pub fn forget<K: Child>(&self, namespace: &str, name: &str) {
        if let Ok(mut m) = self.last.lock() {
            m.remove(&Self::key::<K>(namespace, name));
        }
    }
}

/// A hash of what `value` serializes to (stable within one build of the operator).
pub fn fingerprint<K: Serialize>(child: &K) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(child).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Deletes children of `kind` that carry our managed-by label and `label=value`, are
/// controlled by `owner_uid`, and are not in `keep`. Reads candidates from the cache (one
/// namespace); deletes with a UID precondition so a newer object of the same name is
/// never removed by mistake.
pub async fn prune<K: Child, C: Resource<DynamicType = ()> + Default + Clone>(
    client: &Client,
    fence: &Fence,
    cache: &ChildCache<C>,
    namespace: &str,
    owner_uid: &str,
    label: (&str, &str),
    keep: &BTreeSet<String>,
) -> Result<usize, Error> {
    let mut deleted = 0;
    for (name, uid) in cache.owned(namespace, owner_uid, label) {
        if keep.contains(&name) {
            continue;
        }
        fence.pass()?;
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::background()
        };
        match api.delete(&name, &params).await {
            Ok(either) => {
                deleted += 1;
                // Still there: a finalizer holds it, and a terminating RoleBinding or
                // NetworkPolicy still grants. Foreign finalizers never keep access alive.
                if let either::Either::Left(held) = either {
                    release_finalizers(&api, held.meta()).await?;
                }
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(source) => return Err(Error::Delete { kind: K::kind(&()).to_string(), name, source }),
        }
    }
    Ok(deleted)
}

/// Removes every finalizer but drmesh's own from a child being deleted, so that what it
/// grants goes now. The finalizer list is replaced under a resourceVersion precondition.
pub async fn release_finalizers<K: Child>(
    api: &Api<K>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Result<bool, Error> {
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    let keep: Vec<&String> = finalizers.iter().filter(|f| f.as_str() == labels::ISOLATION_FINALIZER).collect();
    if meta.deletion_timestamp.is_none() || keep.len() == finalizers.len() {
        return Ok(false);
    }
    let name = meta.name.clone().unwrap_or_default();
    tracing::info!(kind = %K::kind(&()), %name, ?finalizers, "removing foreign finalizers from a child being deleted");
    let patch = serde_json::json!({
        "metadata": {"finalizers": keep, "resourceVersion": meta.resource_version}
    });
    match api.patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(Error::Apply { kind: K::kind(&()).to_string(), name, source }),
    }
}

/// Withdraws every access-bearing child (RoleBindings, Roles, and NetworkPolicies when
/// `network`) of one parent; bindings first. Returns how many were deleted.
pub async fn withdraw(
    client: &Client,
    fence: &Fence,
    caches: &super::Caches,
    namespace: &str,
    owner_uid: &str,
    label: (&str, &str),
    network: bool,
) -> Result<usize, Error> {
    let none = BTreeSet::new();
    let mut deleted =
        prune::<RoleBinding, _>(client, fence, &caches.role_bindings, namespace, owner_uid, label, &none).await?;
    deleted += prune::<Role, _>(client, fence, &caches.roles, namespace, owner_uid, label, &none).await?;
    if network {
        deleted +=
            prune::<NetworkPolicy, _>(client, fence, &caches.network_policies, namespace, owner_uid, label, &none)
                .await?;
    }
    Ok(deleted)
}

/// What the Role cache keeps of a Role's rules.
pub fn rules_hash(role: &Role) -> u64 {
    fingerprint(&role.rules)
}

/// Parents whose last apply was refused, with the generation it was refused at: their
/// next attempts are dry-run first, so a refused grant is never half-applied again.
#[derive(Default)]
pub struct Refused(Mutex<HashMap<String, Option<i64>>>);

/// Objects whose status the API server refuses (by UID and generation): reported once.
#[derive(Default)]
pub struct StatusRefused(Mutex<HashMap<String, Option<i64>>>);

impl StatusRefused {
    /// True the first time `uid` at `generation` is seen here.
    pub fn first_time(&self, uid: &str, generation: Option<i64>) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert(uid.to_string(), generation) != Some(generation)
    }
}

impl Refused {
    pub fn mark(&self, uid: &str, generation: Option<i64>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(uid.to_string(), generation);
        }
    }
    pub fn clear(&self, uid: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(uid);
        }
    }
    pub fn is_marked(&self, uid: &str) -> bool {
        self.0.lock().map(|m| m.contains_key(uid)).unwrap_or(false)
    }
}
