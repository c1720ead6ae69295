//! `drmesh render`: the children the operator would apply for the manifests, built by the
//! same pure functions the controllers call (plan, then build), in a stable apply order.
//!
//! Order: every DataProduct's bundle (products sorted by namespace and name, each in its
//! controller's apply order: isolation NetworkPolicy first, then ServiceAccount,
//! Service, Deployment, owners' Role and RoleBinding, contract ConfigMap), then every
//! DataSource's (Role, RoleBinding, egress NetworkPolicy), then every AccessPolicy's
//! (Role, RoleBinding, ingress NetworkPolicy). Offline, owner references carry no UID.

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::report::ObjectId;
use crate::mesh::children::Child as Typed;
use crate::mesh::source::{self, SecretState, lends_to};
use crate::mesh::{Snapshot, grant, product, rules};

/// One child and the drmesh object it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    pub parent: ObjectId,
    /// The child as JSON: apiVersion, kind, metadata and the rest.
    pub object: Value,
}

impl Child {
    /// `Kind namespace/name` of the child.
    pub fn id(&self) -> ObjectId {
        let s = |p: &str| self.object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        ObjectId::new(&s("/kind"), &s("/metadata/namespace"), &s("/metadata/name"))
    }
}

/// Every child of every drmesh object of `view`, as the operator would apply them at `now`.
pub fn children(view: &Snapshot, now: Timestamp) -> Vec<Child> {
    let mut out = Vec::new();
    let mut push = |parent: ObjectId, children: Vec<Typed>| {
        out.extend(children.into_iter().map(|c| Child { parent: parent.clone(), object: c.to_value() }));
    };
    for product in view.products.values() {
        let parent = ObjectId::new("DataProduct", &product.namespace().unwrap_or_default(), &product.name_any());
        let plan = rules::plan_product(view, product, now);
        push(parent, product::build(product, &plan).into_ordered());
    }
    for source_object in view.sources.values() {
        let namespace = source_object.namespace().unwrap_or_default();
        let parent = ObjectId::new("DataSource", &namespace, &source_object.name_any());
        let secret = view
            .secret_state(&namespace, &source_object.spec.credentials_secret_ref.name)
            .unwrap_or(SecretState::Released);
        let consumers = lends_to(view, source_object, secret);
        push(parent, source::build(source_object, &consumers).into_ordered());
    }
    for policy in view.policies.values() {
        let parent = ObjectId::new("AccessPolicy", &policy.namespace().unwrap_or_default(), &policy.name_any());
        let plan = rules::plan_grant(view, policy, now);
        push(parent, grant::build(policy, &plan).into_ordered());
    }
    out
}

/// Multi-document YAML, each child headed by a comment naming its parent.
pub fn yaml(children: &[Child]) -> String {
    let mut out = String::new();
    for child in children {
        out.push_str(&format!("---\n# {} -> {}\n", child.parent, child.id()));
        out.push_str(&drmesh_yaml::to_string(&child.object).unwrap_or_default());
    }
    out
}

/// A `v1` List of the children, as `kubectl get -o json` prints several objects.
pub fn json_list(children: &[Child]) -> String {
    let items: Vec<&Value> = children.iter().map(|c| &c.object).collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let mut out = serde_json::to_string_pretty(&list).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::admission::Admission;
    use crate::snapshot::load_path;

    fn reference_children(now: &str) -> Vec<Child> {
        let admission = Admission::new().expect("schemas");
        let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples"));
        let mesh = load_path(samples, &admission).expect("samples");
        children(&mesh.snapshot, now.parse().expect("time"))
    }

    #[test]
    fn renders_every_child_with_kind_and_metadata_in_apply_order() {
        let children = reference_children("2026-06-01T00:00:00Z");
        for child in &children {
            for field in ["/apiVersion", "/kind", "/metadata/name", "/metadata/namespace"] {
                assert!(
                    child.object.pointer(field).and_then(Value::as_str).is_some_and(|s| !s.is_empty()),
                    "{field} in {:?}",
                    child.id()
                );
            }
            let owner = &child.object["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], json!(child.parent.kind));
            assert_eq!(owner["name"], json!(child.parent.name));
        }
        let kinds: Vec<String> = children.iter().take(7).map(|c| c.id().kind).collect();
        assert_eq!(
            kinds,
            ["NetworkPolicy", "ServiceAccount", "Service", "Deployment", "Role", "RoleBinding", "ConfigMap"]
        );
        assert_eq!(children[0].parent, ObjectId::new("DataProduct", "cnc", "situation-picture"));
        // 6 products: 6 isolations, 6 SAs, 6 Services, 6 Deployments, 6 owner Roles and bindings, 5 contracts;
        // 5 sources: Role + RoleBinding + egress; 7 grants: Role + RoleBinding, and an ingress
        // NetworkPolicy for the 6 that name a product or a namespace.
        let count = |kind: &str| children.iter().filter(|c| c.id().kind == kind).count();
        assert_eq!(count("Deployment"), 6);
        assert_eq!(count("ConfigMap"), 5);
        assert_eq!(count("Role"), 6 + 5 + 7);
        assert_eq!(count("NetworkPolicy"), 6 + 5 + 6);
        // Stable: the same input renders the same bytes.
        assert_eq!(yaml(&children), yaml(&reference_children("2026-06-01T00:00:00Z")));
    }

    #[test]
    fn expired_grants_render_nothing_and_cut_the_inputs() {
        let children = reference_children("2028-01-01T00:00:00Z");
        assert!(!children.iter().any(|c| c.parent.kind == "AccessPolicy" && c.parent.namespace != "transport"));
        let picture_isolation = children
            .iter()
            .find(|c| c.id() == ObjectId::new("NetworkPolicy", "cnc", "situation-picture-isolation"))
            .expect("isolation always rendered");
        // Only DNS egress is left.
        assert_eq!(picture_isolation.object["spec"]["egress"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn json_list_round_trips_through_the_loader() {
        let children = reference_children("2026-06-01T00:00:00Z");
        let list: Value = serde_json::from_str(&json_list(&children)).expect("json");
        assert_eq!(list["items"].as_array().map(Vec::len), Some(children.len()));
        let docs: Vec<Value> = drmesh_yaml::documents(&yaml(&children)).map(|d| d.expect("yaml")).collect();
        assert_eq!(docs.len(), children.len());
        assert_eq!(docs[3], children[3].object);
    }
}
