//! One parent's children for one reconcile, in three explicit phases (as operator-rs's
//! `ClusterResources` does): **revoke** what grants access and is no longer planned,
//! **apply** the planned children in the core's order ([`Child`], isolation before the
//! workload it guards, a Role before its RoleBinding), then **prune** the other children
//! the plan no longer has. Access narrows before anything widens; a Role whose rules
//! change is unbound first and bound again after (nobody ever holds the new rules under
//! the old subjects, or the reverse: O14), at the price of a moment without access.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams};
use kube::{Resource, ResourceExt};

use super::children::{Applier, prune, release_finalizers, rules_hash};
use super::context::Caches;
use super::error::Error;
use crate::mesh::children::Child;

/// What a parent's NetworkPolicies do, which decides when a stale one goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// They open access (a grant's ingress, a source's egress): revoked first.
    Grants,
    /// They close it (a product's deny-by-default isolation): pruned last, once the
    /// planned one is in place.
    Isolates,
}

/// The planned children of one parent (`label` names it; its UID owns them).
pub struct ChildSet<'a> {
    pub applier: &'a Applier,
    pub caches: &'a Caches,
    pub namespace: &'a str,
    pub owner_uid: &'a str,
    pub label: (&'a str, &'a str),
    pub network: Network,
    pub children: Vec<Child>,
}

impl ChildSet<'_> {
    /// The three phases, in order.
    pub async fn reconcile(&self) -> Result<(), Error> {
        self.revoke().await?;
        self.apply().await?;
        self.prune().await?;
        Ok(())
    }

    /// Asks the API server whether the access-bearing children (NetworkPolicies, Roles)
    /// would be accepted, changing nothing: used before re-applying a parent whose last
    /// apply was refused, so that a refused grant is not half-applied again on each retry.
    /// Not the RoleBindings: applied last (a refusal there grants nothing), and refused
    /// in a dry run while the Role they name does not exist yet.
    pub async fn dry_run(&self) -> Result<(), Error> {
        for child in &self.children {
            match child {
                Child::NetworkPolicy(o) => self.applier.dry_run(o, &self.caches.network_policies).await?,
                Child::Role(o) => self.applier.dry_run(o, &self.caches.roles).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Names of the planned children of one kind.
    fn planned(&self, of: impl Fn(&Child) -> Option<String>) -> BTreeSet<String> {
        self.children.iter().filter_map(of).collect()
    }

    fn planned_bindings(&self) -> BTreeSet<String> {
        self.planned(|c| matches!(c, Child::RoleBinding(_)).then(|| name(c)))
    }

    /// Deletes the access-bearing children the plan no longer has: RoleBindings, then
    /// Roles, then granting NetworkPolicies. Returns how many were deleted.
    pub async fn revoke(&self) -> Result<usize, Error> {
        let (client, fence, c, ns, uid, label) =
            (self.applier.client(), self.applier.fence(), self.caches, self.namespace, self.owner_uid, self.label);
        let mut deleted =
            prune::<RoleBinding, _>(client, fence, &c.role_bindings, ns, uid, label, &self.planned_bindings()).await?;
        let roles = self.planned(|c| matches!(c, Child::Role(_)).then(|| name(c)));
        deleted += prune::<Role, _>(client, fence, &c.roles, ns, uid, label, &roles).await?;
        if self.network == Network::Grants {
            deleted +=
                prune::<NetworkPolicy, _>(client, fence, &c.network_policies, ns, uid, label, &self.policies()).await?;
        }
        Ok(deleted)
    }

    fn policies(&self) -> BTreeSet<String> {
        self.planned(|c| matches!(c, Child::NetworkPolicy(_)).then(|| name(c)))
    }

    /// Applies the planned children in their order; stops at the first refusal.
    pub async fn apply(&self) -> Result<(), Error> {
        let (applier, c) = (self.applier, self.caches);
        for child in &self.children {
            match child {
                Child::NetworkPolicy(o) => applier.apply(o, &c.network_policies).await?,
                Child::ServiceAccount(o) => applier.apply(o, &c.service_accounts).await?,
                Child::Service(o) => applier.apply(o, &c.services).await?,
                Child::Deployment(o) => applier.apply(o, &c.deployments).await?,
                Child::Role(o) => {
                    self.unbind_if_rules_change(o).await?;
                    applier.apply(o, &c.roles).await?
                }
                Child::RoleBinding(o) => applier.apply(o, &c.role_bindings).await?,
                Child::ConfigMap(o) => applier.apply(o, &c.config_maps).await?,
            };
        }
        Ok(())
    }

    /// Before a Role's rules change, deletes the planned RoleBindings that name it (they
    /// are applied again right after the Role).
    async fn unbind_if_rules_change(&self, role: &Role) -> Result<(), Error> {
        let current = self.caches.roles.get(self.namespace, &role.name_any());
        if current.is_none_or(|c| c.detail == rules_hash(role)) {
            return Ok(());
        }
        let api: Api<RoleBinding> = Api::namespaced(self.applier.client().clone(), self.namespace);
        for child in &self.children {
            let Child::RoleBinding(binding) = child else { continue };
            let binding_name = binding.name_any();
            if binding.role_ref.name != role.name_any()
                || self.caches.role_bindings.get(self.namespace, &binding_name).is_none()
            {
                continue;
            }
            self.applier.fence().pass()?;
            match api.delete(&binding_name, &DeleteParams::default()).await {
                Ok(either::Either::Left(held)) => {
                    release_finalizers(&api, held.meta()).await?;
                }
                Ok(either::Either::Right(_)) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(Error::Delete { kind: "RoleBinding".into(), name: binding_name, source }),
            }
            self.applier.forget::<RoleBinding>(self.namespace, &binding_name);
        }
        Ok(())
    }

    /// Deletes the other children the plan no longer has (and isolating NetworkPolicies,
    /// now that the planned one is in place). Returns how many were deleted.
    pub async fn prune(&self) -> Result<usize, Error> {
        let (client, fence, c, ns, uid, label) =
            (self.applier.client(), self.applier.fence(), self.caches, self.namespace, self.owner_uid, self.label);
        let of = |kind: fn(&Child) -> bool| self.planned(|c| kind(c).then(|| name(c)));
        let mut deleted = 0;
        deleted +=
            prune::<Service, _>(client, fence, &c.services, ns, uid, label, &of(|c| matches!(c, Child::Service(_))))
                .await?;
        deleted += prune::<Deployment, _>(
            client,
            fence,
            &c.deployments,
            ns,
            uid,
            label,
            &of(|c| matches!(c, Child::Deployment(_))),
        )
        .await?;
        deleted += prune::<ConfigMap, _>(
            client,
            fence,
            &c.config_maps,
            ns,
            uid,
            label,
            &of(|c| matches!(c, Child::ConfigMap(_))),
        )
        .await?;
        if self.network == Network::Isolates {
            deleted +=
                prune::<NetworkPolicy, _>(client, fence, &c.network_policies, ns, uid, label, &self.policies()).await?;
        }
        let accounts = of(|c| matches!(c, Child::ServiceAccount(_)));
        deleted += prune::<ServiceAccount, _>(client, fence, &c.service_accounts, ns, uid, label, &accounts).await?;
        Ok(deleted)
    }
}

fn name(child: &Child) -> String {
    match child {
        Child::NetworkPolicy(o) => o.name_any(),
        Child::ServiceAccount(o) => o.name_any(),
        Child::Service(o) => o.name_any(),
        Child::Deployment(o) => o.name_any(),
        Child::Role(o) => o.name_any(),
        Child::RoleBinding(o) => o.name_any(),
        Child::ConfigMap(o) => o.name_any(),
    }
}
