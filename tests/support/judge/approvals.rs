//! The two-person rule as docs/guide/accesspolicy.md ("Approvals") and
//! docs/guide/people.md state it, written apart from drmesh: the digest is rebuilt from
//! the grant's JSON with sha2, and the SSH signatures are checked with the ssh-key crate.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Policy, World, items};

const NAMESPACE: &str = "drmesh.io/approval";

/// Whether `a` carries valid signatures of its exact spec by enough distinct approvers of
/// the MeshPolicy (none without a MeshPolicy).
pub fn approved(world: &World, a: &Policy) -> bool {
    let Some(mesh) = world.mesh_policy.as_ref() else { return false };
    let rules = &mesh["approvals"];
    let required = rules["required"].as_u64().unwrap_or(2).max(2) as usize;
    let consumers_may_approve = rules["consumersMayApprove"].as_bool().unwrap_or(false);
    let consumer_side = consumer_side(world, a);
    let digest = digest(a);
    let mut valid = BTreeSet::new();
    for approval in items(&a.spec["approvals"]) {
        let Some(who) = approval["approver"].as_str() else { continue };
        let Some(approver) = items(&rules["approvers"]).find(|x| x["name"] == who) else { continue };
        let domains: Vec<&str> = items(&approver["domains"]).filter_map(Value::as_str).collect();
        if !domains.is_empty() && !domains.contains(&a.namespace.as_str()) {
            continue;
        }
        if !consumers_may_approve && consumer_side.contains(who) {
            continue;
        }
        let key = ssh_key::PublicKey::from_openssh(approver["publicKey"].as_str().unwrap_or_default());
        let signature = ssh_key::SshSig::from_pem(approval["signature"].as_str().unwrap_or_default().trim());
        if let (Ok(key), Ok(signature)) = (key, signature)
            && key.verify(NAMESPACE, digest.as_bytes(), &signature).is_ok()
        {
            valid.insert(who.to_string());
        }
    }
    valid.len() >= required
}

/// Whether the MeshPolicy makes the whole grant wait for its approvals.
pub fn whole_grant(world: &World) -> bool {
    world.mesh_policy.as_ref().is_some_and(|m| m["approvals"]["appliesTo"] == "All")
}

/// User names on the grant's consumer side: its User subjects and the User owners of
/// its DataProduct subjects.
fn consumer_side(world: &World, a: &Policy) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for s in items(&a.spec["subjects"]) {
        match s["kind"].as_str() {
            Some("User") => names.extend(s["name"].as_str().map(String::from)),
            Some("DataProduct") => {
                let (ns, name) = (s["namespace"].as_str().unwrap_or(""), s["name"].as_str().unwrap_or(""));
                if let Some(p) = world.product(ns, name) {
                    names.extend(p.owners.iter().filter_map(|o| o.strip_prefix("User:")).map(String::from));
                }
            }
            _ => {}
        }
    }
    names
}

/// `sha256:` and the hex SHA-256 of the canonical JSON of apiVersion, kind, metadata
/// (name, namespace) and the spec without approvals, subjects and ports sorted.
fn digest(a: &Policy) -> String {
    let mut spec = a.spec.clone();
    if let Some(map) = spec.as_object_mut() {
        map.remove("approvals");
    }
    if let Some(subjects) = spec.get_mut("subjects").and_then(Value::as_array_mut) {
        subjects.sort_by(subject_order);
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        ports.sort_by_key(|p| p.as_str().unwrap_or_default().to_string());
        ports.dedup();
    }
    let whole = serde_json::json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy",
        "metadata": {"name": a.name, "namespace": a.namespace}, "spec": spec});
    let mut text = String::new();
    canonical(&whole, &mut text);
    let hash = Sha256::digest(text.as_bytes());
    format!("sha256:{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Subjects by kind (User, Group, ServiceAccount, DataProduct, Namespace), then name,
/// then namespace, then pod selector; a missing field first.
fn subject_order(x: &Value, y: &Value) -> Ordering {
    let kind = |v: &Value| {
        ["User", "Group", "ServiceAccount", "DataProduct", "Namespace"]
            .iter()
            .position(|k| v["kind"] == *k)
            .unwrap_or(usize::MAX)
    };
    let field = |v: &Value, f: &str| v.get(f).map(|s| s.as_str().unwrap_or_default().to_string());
    let selector = |v: &Value| {
        v.get("podSelector").map(|s| {
            let labels = s["matchLabels"].as_object().cloned().unwrap_or_default();
            labels.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect::<Vec<_>>()
        })
    };
    (kind(x), field(x, "name"), field(x, "namespace"), selector(x)).cmp(&(
        kind(y),
        field(y, "name"),
        field(y, "namespace"),
        selector(y),
    ))
}

fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(list) => {
            out.push('[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
