//! What drmesh has set on a child, read from the live object itself.
//!
//! After a restart (or a failover) the operator remembers nothing of what it applied, and
//! re-applying every child of a large mesh before serving a change takes minutes. It need
//! not: server-side apply records, in `metadata.managedFields`, which fields each field
//! manager owns. Projected onto the fields drmesh's managers own (operation `Apply`), the
//! live object says what drmesh's last apply left in force; when that projection equals
//! the child the controller would apply now, applying it would change nothing.
//!
//! Nothing here trusts a marker someone could forge: the values compared are the live
//! values. An edit of a field drmesh owns either changes its value (the projection
//! differs) or, made by another manager, takes the field's ownership away (the
//! projection lacks it); a field added to drmesh's set by a forged managedFields entry
//! shows up in the projection (and a re-apply removes it). A field drmesh never set is
//! in neither — as with a re-apply, which leaves other managers' fields alone.
//!
//! Go's `omitempty` drops zero values (`false`, `0`, `""`, empty lists and maps) from
//! the stored object while the field stays owned, so on both sides a zero value and an
//! owned but absent field read the same; whether the field is there at all is compared
//! exactly.

use std::hash::{Hash, Hasher};

use kube::Resource;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::mesh::labels;

/// The field managers of the three controllers.
pub const MANAGERS: [&str; 3] =
    [labels::MANAGER_DATA_PRODUCT, labels::MANAGER_DATA_SOURCE, labels::MANAGER_ACCESS_POLICY];

/// No field of the object is owned by drmesh's managers (never equal to [`desired`]).
pub const NONE: u64 = 0;

/// The hash of what applying `child` sets: the object without its identity (apiVersion,
/// kind, name, namespace) and status.
pub fn desired<K: Serialize>(child: &K) -> u64 {
    let Ok(mut value) = serde_json::to_value(child) else {
        return NONE;
    };
    if let Value::Object(object) = &mut value {
        for key in ["apiVersion", "kind", "status"] {
            object.remove(key);
        }
        if let Some(Value::Object(meta)) = object.get_mut("metadata") {
            for key in ["name", "namespace"] {
                meta.remove(key);
            }
            if meta.is_empty() {
                object.remove("metadata");
            }
        }
    }
    digest(&normalized(value))
}

/// The hash of the fields of `live` that drmesh's managers own, with their live values
/// ([`NONE`] when they own none).
pub fn live<K: Resource + Serialize>(live: &K) -> u64 {
    match projection(live) {
        Some(value) => digest(&normalized(value)),
        None => NONE,
    }
}

/// The two sides [`live`] and [`desired`] compare, as JSON (for a trace log).
pub fn explain<K: Resource + Serialize>(stored: &K, child: &K) -> (String, String) {
    let live = projection(stored).map(normalized).unwrap_or_default();
    let wanted = serde_json::to_value(child).map(normalized).unwrap_or_default();
    (live.to_string(), wanted.to_string())
}

/// `live` projected onto the fields drmesh's managers own.
pub fn projection<K: Resource + Serialize>(live: &K) -> Option<Value> {
    let mut owned = Value::Object(Map::new());
    let mut any = false;
    for entry in live.meta().managed_fields.iter().flatten() {
        let ours = entry.manager.as_deref().is_some_and(|m| MANAGERS.contains(&m));
        if ours
            && entry.operation.as_deref() == Some("Apply")
            && let Some(fields) = &entry.fields_v1
        {
            merge(&mut owned, &fields.0);
            any = true;
        }
    }
    if !any {
        return None;
    }
    let value = serde_json::to_value(live).ok()?;
    Some(project(Some(&value), &owned))
}

/// Adds the field set `from` to `into` (both fieldsV1 trees).
fn merge(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return;
    };
    for (key, sub) in from {
        merge(into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new())), sub);
    }
}

/// The part of `value` that the field set `set` names. A set without members (`{}`)
/// is a leaf: the whole value. Members are `f:<field>` of an object, `k:<key object>`
/// (items of a list keyed by fields), `v:<value>` (items of a set) or `i:<index>`;
/// `.` (the node itself) adds nothing to what its members say.
fn project(value: Option<&Value>, set: &Value) -> Value {
    let members: Vec<(&String, &Value)> = match set {
        Value::Object(m) => m.iter().filter(|(k, _)| k.as_str() != ".").collect(),
        _ => Vec::new(),
    };
    let Some(value) = value else {
        return Value::Null;
    };
    if members.is_empty() {
        return value.clone();
    }
    if members.iter().all(|(k, _)| k.starts_with("f:")) {
        let object = value.as_object();
        let mut out = Map::new();
        for (key, sub) in members {
            let field = &key[2..];
            out.insert(field.to_string(), project(object.and_then(|o| o.get(field)), sub));
        }
        return Value::Object(out);
    }
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if let Some((_, sub)) = members.iter().find(|(member, _)| names(member, index, item)) {
            out.push(project(Some(item), sub));
        }
    }
    Value::Array(out)
}

/// Whether the list member `member` names the item at `index`.
fn names(member: &str, index: usize, item: &Value) -> bool {
    if let Some(key) = member.strip_prefix("k:") {
        let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
            return false;
        };
        key.iter().all(|(field, wanted)| item.get(field) == Some(wanted))
    } else if let Some(wanted) = member.strip_prefix("v:") {
        serde_json::from_str::<Value>(wanted).is_ok_and(|w| w == *item)
    } else if let Some(i) = member.strip_prefix("i:") {
        i.parse() == Ok(index)
    } else {
        false
    }
}

/// Zero values (`null`, `false`, `0`, `""`, `[]`, `{}`) read as `null`; keys stay.
fn normalized(value: Value) -> Value {
    match value {
        Value::Bool(false) => Value::Null,
        Value::Number(n) if n.as_f64() == Some(0.0) => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Array(items) if items.is_empty() => Value::Null,
        Value::Object(map) if map.is_empty() => Value::Null,
        Value::Array(items) => Value::Array(items.into_iter().map(normalized).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, normalized(v))).collect()),
        other => other,
    }
}

/// A hash of `value` written with its object keys sorted (never [`NONE`]).
fn digest(value: &Value) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    write_sorted(value, &mut hasher);
    match hasher.finish() {
        NONE => 1,
        h => h,
    }
}

fn write_sorted(value: &Value, hasher: &mut impl Hasher) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.write_u8(b'{');
            for key in keys {
                key.hash(hasher);
                write_sorted(&map[key], hasher);
            }
            hasher.write_u8(b'}');
        }
        Value::Array(items) => {
            hasher.write_u8(b'[');
            hasher.write_usize(items.len());
            for item in items {
                write_sorted(item, hasher);
            }
            hasher.write_u8(b']');
        }
        scalar => scalar.to_string().hash(hasher),
    }
}

#[cfg(test)]
#[path = "applied_tests.rs"]
mod tests;
