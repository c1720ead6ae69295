//! The reference mesh in config/samples (its credentials apart, in
//! config/sample-credentials): every object parses into our types without losing a field
//! (a typo in a sample would be silently dropped otherwise), passes the CRDs' CEL rules
//! offline, and the mesh is complete (every reference resolves).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use drmesh::api::{
    AccessPolicy, Classification, Clearance, DataProduct, DataSource, MeshPolicy, SubjectKind, clearance_from_labels,
};
use drmesh::manifest::{Document, MeshObject, load_documents};
use serde_json::Value;

fn load(dir: &str) -> Vec<Document> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    load_documents(&dir).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// The mesh, then its dummy credentials (apart: no GitOps example syncs a Secret).
fn samples() -> Vec<Document> {
    let mut docs = load("config/samples");
    docs.extend(load("config/sample-credentials"));
    docs
}

#[test]
fn the_credentials_are_apart_from_the_mesh() {
    let mesh = load("config/samples");
    let secrets: Vec<String> = mesh.iter().filter(|d| d.kind() == "Secret").map(Document::describe).collect();
    assert!(secrets.is_empty(), "config/samples holds Secrets (GitOps would sync them): {secrets:?}");
    let credentials = load("config/sample-credentials");
    assert!(!credentials.is_empty());
    for doc in &credentials {
        assert_eq!(doc.kind(), "Secret", "config/sample-credentials holds only Secrets: {}", doc.describe());
    }
}

/// Every field of `original` is in `parsed` with the same value (`parsed` may add defaults).
fn contained(original: &Value, parsed: &Value, path: &str) -> Result<(), String> {
    match (original, parsed) {
        (Value::Object(a), Value::Object(b)) => a.iter().try_for_each(|(key, value)| match b.get(key) {
            Some(other) => contained(value, other, &format!("{path}.{key}")),
            None => Err(format!("{path}.{key} was dropped when parsing")),
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().try_for_each(|(i, (x, y))| contained(x, y, &format!("{path}[{i}]")))
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} became {b}")),
    }
}

#[derive(Default)]
struct Mesh {
    clearances: BTreeMap<String, Classification>,
    secrets: BTreeSet<(String, String)>,
    sources: Vec<DataSource>,
    products: Vec<DataProduct>,
    policies: Vec<AccessPolicy>,
    people: Vec<Clearance>,
    mesh_policy: Option<MeshPolicy>,
}

fn ns<K: kube::ResourceExt>(obj: &K) -> String {
    obj.namespace().unwrap_or_default()
}

fn load_mesh() -> Mesh {
    let mut mesh = Mesh::default();
    for doc in samples() {
        let object = doc.to_object().unwrap_or_else(|e| panic!("{e}"));
        let reserialized = match &object {
            MeshObject::DataSource(o) => serde_json::to_value(o),
            MeshObject::DataProduct(o) => serde_json::to_value(o),
            MeshObject::AccessPolicy(o) => serde_json::to_value(o),
            MeshObject::Clearance(o) => serde_json::to_value(o),
            MeshObject::MeshPolicy(o) => serde_json::to_value(o),
            MeshObject::Other => Ok(doc.value.clone()),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", doc.describe()));
        if let Err(e) = contained(&doc.value, &reserialized, "") {
            panic!("{}: {e}", doc.describe());
        }
        let validated = match &object {
            MeshObject::DataSource(o) => o.validate_cel(),
            MeshObject::DataProduct(o) => o.validate_cel(),
            MeshObject::AccessPolicy(o) => o.validate_cel(),
            MeshObject::Clearance(o) => o.validate_cel(),
            MeshObject::MeshPolicy(o) => o.validate_cel(),
            MeshObject::Other => Ok(()),
        };
        if let Err(e) = validated {
            panic!("{} breaks a CRD rule: {e}", doc.describe());
        }
        let cluster_scoped = matches!(doc.kind(), "Namespace" | "Clearance" | "MeshPolicy");
        assert!(cluster_scoped || doc.namespace().is_some(), "{} has no namespace", doc.describe());
        match object {
            MeshObject::DataSource(o) => mesh.sources.push(*o),
            MeshObject::DataProduct(o) => mesh.products.push(*o),
            MeshObject::AccessPolicy(o) => mesh.policies.push(*o),
            MeshObject::Clearance(o) => mesh.people.push(*o),
            MeshObject::MeshPolicy(o) => mesh.mesh_policy = Some(*o),
            MeshObject::Other if doc.kind() == "Namespace" => {
                let labels: Option<BTreeMap<String, String>> =
                    doc.value.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok());
                let clearance =
                    clearance_from_labels(labels.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", doc.describe()));
                mesh.clearances.insert(doc.name().to_string(), clearance);
            }
            MeshObject::Other if doc.kind() == "Secret" => {
                mesh.secrets.insert((doc.namespace().unwrap_or_default().to_string(), doc.name().to_string()));
            }
            MeshObject::Other => panic!("{}: unexpected kind in the samples", doc.describe()),
        }
    }
    mesh
}

#[test]
fn samples_parse_losslessly_and_pass_the_crd_rules() {
    let mesh = load_mesh();
    let domains: Vec<&str> = mesh.clearances.keys().map(String::as_str).collect();
    assert_eq!(domains, ["cnc", "gendarmerie", "police", "sante", "sdis", "transport"]);
    assert_eq!((mesh.sources.len(), mesh.products.len(), mesh.policies.len()), (5, 6, 7));
}

#[test]
fn the_reference_mesh_is_complete_and_consistent() {
    use kube::ResourceExt;
    let mesh = load_mesh();
    let product =
        |namespace: &str, name: &str| mesh.products.iter().find(|p| ns(*p) == namespace && p.name_any() == name);
    for source in &mesh.sources {
        let secret = (ns(source), source.spec.credentials_secret_ref.name.clone());
        assert!(mesh.secrets.contains(&secret), "{}: missing Secret {secret:?}", source.name_any());
    }
    for p in &mesh.products {
        let (namespace, name) = (ns(p), p.name_any());
        assert!(mesh.clearances[&namespace] >= p.spec.classification, "{name}: above its domain's clearance");
        for input in &p.spec.inputs {
            if let Some(source) = &input.data_source {
                let found = mesh.sources.iter().find(|s| ns(*s) == namespace && &s.name_any() == source);
                let found = found.unwrap_or_else(|| panic!("{name}: no DataSource {source}"));
                assert!(found.spec.classification <= p.spec.classification, "{name}: declassifies {source}");
            }
            if let Some(r) = &input.data_product {
                let upstream = product(&r.namespace, &r.name).unwrap_or_else(|| panic!("{name}: no DataProduct {r}"));
                assert!(upstream.spec.classification <= p.spec.classification, "{name}: declassifies {r}");
                let granted = mesh.policies.iter().any(|g| {
                    ns(g) == r.namespace
                        && g.spec.data_product == r.name
                        && g.spec.subjects.iter().any(|s| {
                            s.kind == SubjectKind::DataProduct
                                && s.namespace.as_deref() == Some(namespace.as_str())
                                && s.name.as_deref() == Some(name.as_str())
                        })
                });
                assert!(granted, "{name}: no AccessPolicy grants it {r}");
            }
        }
    }
    for g in &mesh.policies {
        let granted = product(&ns(g), &g.spec.data_product);
        let granted = granted.unwrap_or_else(|| panic!("{}: no DataProduct {}", g.name_any(), g.spec.data_product));
        if granted.spec.classification == Classification::Restricted {
            assert!(
                g.spec.purpose.is_some() && g.spec.expires_at.is_some(),
                "{}: Restricted needs purpose and expiry",
                g.name_any()
            );
        }
    }
    // The situation picture consumes every other domain's product.
    let picture = product("cnc", "situation-picture").expect("cnc/situation-picture");
    assert_eq!(picture.spec.inputs.len(), 5);
}
