//! `drmesh diff`: what a change to the manifests does. Widened access comes first (new
//! subjects, new ports, longer or removed expiries, less clearance required, domains
//! cleared higher), then updates the API server would refuse (transition rules such as
//! "no declassification"), then narrowed access, then the drmesh objects and the
//! rendered children that are added, removed or changed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use super::access_review::{self, Access};
use super::admission::Admission;
use super::render;
use super::report::ObjectId;
use super::snapshot::Mesh;
use crate::api::Classification;
use crate::mesh::MeshView;

/// One change, said for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The object (or `Kind ns/name -> subject` for access).
    pub what: String,
    pub detail: String,
}

fn change(what: impl Into<String>, detail: impl Into<String>) -> Change {
    Change { what: what.into(), detail: detail.into() }
}

/// Everything that differs between the old and the new mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub widened: Vec<Change>,
    /// Grants whose signed spec the change edits: their approvals no longer count.
    pub approvals_voided: Vec<Change>,
    pub rejected: Vec<Change>,
    pub narrowed: Vec<Change>,
    pub objects: Vec<Change>,
    pub children: Vec<Change>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.widened.is_empty()
            && self.approvals_voided.is_empty()
            && self.rejected.is_empty()
            && self.narrowed.is_empty()
            && self.objects.is_empty()
            && self.children.is_empty()
    }
}

/// One subject's access to one object through one grant (policy, ownership or input).
#[derive(Clone, Debug, Default)]
struct Reach {
    access: BTreeSet<String>,
    ports: BTreeSet<String>,
    /// `None`: never expires.
    until: Option<Timestamp>,
}

type ReachKey = (String, String, String);

fn reach(rows: &[Access]) -> BTreeMap<ReachKey, Reach> {
    let mut map: BTreeMap<ReachKey, Reach> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.granted()) {
        let entry = map.entry((row.object(), row.subject.clone(), row.via.clone())).or_default();
        entry.access.extend(row.access.split('+').map(str::to_string));
        entry.ports.extend(row.ports.iter().cloned());
        entry.until = row.until.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    }
    map
}

fn until_text(until: Option<Timestamp>) -> String {
    until.map(|t| t.to_string()).unwrap_or_else(|| "no expiry".into())
}

/// Later is wider; `None` (no expiry) is widest.
fn later(new: Option<Timestamp>, old: Option<Timestamp>) -> bool {
    match (new, old) {
        (None, Some(_)) => true,
        (Some(n), Some(o)) => n > o,
        _ => false,
    }
}

fn access_changes(old: &Mesh, new: &Mesh, now: Timestamp, diff: &mut Diff) {
    let before = reach(&access_review::review(&old.snapshot, now));
    let after = reach(&access_review::review(&new.snapshot, now));
    for ((object, subject, via), n) in &after {
        let what = format!("{subject} -> {object}");
        let Some(o) = before.get(&(object.clone(), subject.clone(), via.clone())) else {
            let detail = format!(
                "new access: {} on {} {} (via {via})",
                n.access.iter().cloned().collect::<Vec<_>>().join("+"),
                if n.ports.is_empty() {
                    "all ports".into()
                } else {
                    n.ports.iter().cloned().collect::<Vec<_>>().join(",")
                },
                n.until.map(|t| format!("until {t}")).unwrap_or_else(|| "with no expiry".into())
            );
            diff.widened.push(change(what, detail));
            continue;
        };
        let more_ports: Vec<String> = n.ports.difference(&o.ports).cloned().collect();
        let fewer_ports: Vec<String> = o.ports.difference(&n.ports).cloned().collect();
        let more_access: Vec<String> = n.access.difference(&o.access).cloned().collect();
        if !more_ports.is_empty() {
            diff.widened.push(change(&what, format!("new ports: {} (via {via})", more_ports.join(","))));
        }
        if !more_access.is_empty() {
            diff.widened.push(change(&what, format!("new kind of access: {} (via {via})", more_access.join("+"))));
        }
        if later(n.until, o.until) {
            diff.widened.push(change(
                &what,
                format!("longer expiry: {} -> {} (via {via})", until_text(o.until), until_text(n.until)),
            ));
        } else if later(o.until, n.until) {
            diff.narrowed.push(change(
                &what,
                format!("shorter expiry: {} -> {} (via {via})", until_text(o.until), until_text(n.until)),
            ));
        }
        if !fewer_ports.is_empty() {
            diff.narrowed.push(change(&what, format!("ports removed: {} (via {via})", fewer_ports.join(","))));
        }
    }
    for (object, subject, via) in before.keys().filter(|k| !after.contains_key(*k)) {
        diff.narrowed.push(change(format!("{subject} -> {object}"), format!("access removed (via {via})")));
    }
}

fn classification_changes(old: &Mesh, new: &Mesh, diff: &mut Diff) {
    let levels = |mesh: &Mesh| -> BTreeMap<String, Classification> {
        let mut map = BTreeMap::new();
        for ((ns, name), s) in &mesh.snapshot.sources {
            map.insert(format!("DataSource {ns}/{name}"), s.spec.classification);
        }
        for ((ns, name), p) in &mesh.snapshot.products {
            map.insert(format!("DataProduct {ns}/{name}"), p.spec.classification);
        }
        map
    };
    let (before, after) = (levels(old), levels(new));
    for (what, n) in &after {
        match before.get(what) {
            Some(o) if n < o => diff.widened.push(change(
                what,
                format!("classification lowered {o} -> {n}: less clearance is required to read it"),
            )),
            Some(o) if n > o => diff.narrowed.push(change(what, format!("classification raised {o} -> {n}"))),
            _ => {}
        }
    }
    let domains: BTreeSet<&String> = old.known_namespaces.iter().chain(&new.known_namespaces).collect();
    for ns in domains {
        let (o, n) = (old.snapshot.clearance(ns), new.snapshot.clearance(ns));
        if n > o {
            diff.widened.push(change(
                format!("Namespace {ns}"),
                format!("clearance raised {o} -> {n}: the domain may hold and receive more"),
            ));
        } else if n < o {
            diff.narrowed.push(change(format!("Namespace {ns}"), format!("clearance lowered {o} -> {n}")));
        }
    }
}

/// Paths (at most a few) where two JSON values differ.
fn changed_paths(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    const MAX: usize = 8;
    if out.len() >= MAX || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                changed_paths(a.get(key).unwrap_or(&Value::Null), b.get(key).unwrap_or(&Value::Null), &sub, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                changed_paths(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => out.push(if path.is_empty() { "(whole object)".into() } else { path.to_string() }),
    }
}

fn changed(old: &Value, new: &Value, skip: &[&str]) -> Option<String> {
    let mut paths = Vec::new();
    changed_paths(old, new, "", &mut paths);
    paths.retain(|p| !skip.iter().any(|s| p == s || p.starts_with(&format!("{s}."))));
    (!paths.is_empty()).then(|| format!("changed: {}", paths.join(", ")))
}

/// Grants that carried approvals and whose signed spec (the canonical digest) changes.
fn approval_changes(old: &Mesh, new: &Mesh, diff: &mut Diff) {
    use kube::ResourceExt;
    for (key, before) in &old.snapshot.policies {
        let Some(after) = new.snapshot.policies.get(key) else { continue };
        if before.spec.approvals.is_empty() {
            continue;
        }
        let (was, is) = (crate::mesh::people::digest(before), crate::mesh::people::digest(after));
        if was != is {
            let signers: Vec<&str> = before.spec.approvals.iter().map(|a| a.approver.as_str()).collect();
            diff.approvals_voided.push(change(
                format!("AccessPolicy {}/{}", after.namespace().unwrap_or_default(), after.name_any()),
                format!(
                    "the edit changes the signed spec ({was} -> {is}): the approvals of {} no longer count; re-approve with drmesh approve",
                    signers.join(", ")
                ),
            ));
        }
    }
}

fn object_changes(old: &Mesh, new: &Mesh, admission: &Admission, diff: &mut Diff) {
    for (id, value) in &new.raw {
        match old.raw.get(id) {
            None => diff.objects.push(change(id.to_string(), "added")),
            Some(before) => {
                if let Some(detail) = changed(
                    before,
                    value,
                    &[
                        "status",
                        "metadata.resourceVersion",
                        "metadata.generation",
                        "metadata.uid",
                        "metadata.creationTimestamp",
                    ],
                ) {
                    diff.objects.push(change(id.to_string(), detail));
                }
                for v in admission.check_update(&id.kind, value, before) {
                    diff.rejected.push(change(
                        id.to_string(),
                        format!("{}: {} (the API server refuses this update)", v.field, v.message),
                    ));
                }
            }
        }
    }
    for id in old.raw.keys().filter(|id| !new.raw.contains_key(*id)) {
        diff.objects.push(change(id.to_string(), "removed"));
    }
}

fn children_changes(old: &Mesh, new: &Mesh, now: Timestamp, diff: &mut Diff) {
    let index = |mesh: &Mesh| -> BTreeMap<ObjectId, Value> {
        render::children(&mesh.snapshot, now).into_iter().map(|c| (c.id(), c.object)).collect()
    };
    let (before, after) = (index(old), index(new));
    for (id, value) in &after {
        match before.get(id) {
            None => diff.children.push(change(id.to_string(), "added")),
            Some(o) => {
                if let Some(detail) = changed(o, value, &[]) {
                    diff.children.push(change(id.to_string(), detail));
                }
            }
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        diff.children.push(change(id.to_string(), "removed"));
    }
}

/// What changes from `old` to `new` at `now`.
pub fn diff(old: &Mesh, new: &Mesh, admission: &Admission, now: Timestamp) -> Diff {
    let mut d = Diff::default();
    access_changes(old, new, now, &mut d);
    approval_changes(old, new, &mut d);
    classification_changes(old, new, &mut d);
    object_changes(old, new, admission, &mut d);
    children_changes(old, new, now, &mut d);
    d
}

/// The text report, widened access first.
pub fn text(diff: &Diff) -> String {
    if diff.is_empty() {
        return "no change\n".into();
    }
    let mut out = String::new();
    let sections = [
        ("ACCESS WIDENED (review these first)", &diff.widened, "+"),
        ("APPROVALS VOIDED (the grant is revoked until re-approved)", &diff.approvals_voided, "!"),
        ("REFUSED BY THE API SERVER", &diff.rejected, "!"),
        ("ACCESS NARROWED", &diff.narrowed, "-"),
        ("DRMESH OBJECTS", &diff.objects, "~"),
        ("CHILDREN THE OPERATOR APPLIES", &diff.children, "~"),
    ];
    for (title, changes, mark) in sections {
        if changes.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title} ({})", changes.len());
        for c in changes {
            let _ = writeln!(out, "  {mark} {}: {}", c.what, c.detail);
        }
        out.push('\n');
    }
    out
}

/// The JSON report.
pub fn json(diff: &Diff) -> String {
    let mut out = serde_json::to_string_pretty(diff).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::snapshot::load_texts;

    fn samples() -> Vec<(PathBuf, String)> {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples"));
        crate::manifest::manifest_files(dir)
            .expect("samples")
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).expect("sample");
                (f, text)
            })
            .collect()
    }

    fn mesh(texts: &[(PathBuf, String)], admission: &Admission) -> Mesh {
        load_texts(texts, "default", &[], admission)
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().expect("time")
    }

    #[test]
    fn no_change_is_no_change() {
        let admission = Admission::new().expect("schemas");
        let m = mesh(&samples(), &admission);
        let d = diff(&m, &m, &admission, now());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(text(&d), "no change\n");
    }

    #[test]
    fn widening_is_listed_first_and_declassification_is_refused() {
        let admission = Admission::new().expect("schemas");
        let old = samples();
        let new: Vec<(PathBuf, String)> = old
            .iter()
            .map(|(f, t)| {
                let t = t
                    .replace("name: transport-analysts", "name: transport-analysts\n    - kind: User\n      name: eve")
                    .replace("  ports: [http]\n  subjects:", "  subjects:")
                    .replace(
                        "classification: Internal\n  inputs:\n    - dataSource: intervention-reports",
                        "classification: Restricted\n  inputs:\n    - dataSource: intervention-reports",
                    )
                    .replace(
                        "  classification: Restricted\n  type: Postgres\n  endpoint:\n    host: beds",
                        "  classification: Internal\n  type: Postgres\n  endpoint:\n    host: beds",
                    );
                let t =
                    if f.ends_with("cnc.yaml") { t.replace("2027-12-31T23:59:59Z", "2028-06-30T00:00:00Z") } else { t };
                (f.clone(), t)
            })
            .collect();
        let d = diff(&mesh(&old, &admission), &mesh(&new, &admission), &admission, now());
        let widened: Vec<String> = d.widened.iter().map(|c| format!("{}: {}", c.what, c.detail)).collect();
        assert!(
            widened.iter().any(|w| w.starts_with("User:eve -> DataProduct transport/transit-disruptions: new access")),
            "{widened:#?}"
        );
        assert!(
            widened.iter().any(|w| w.contains("transport-analysts") && w.contains("new ports: 9090/grpc")),
            "{widened:#?}"
        );
        assert!(
            widened.iter().any(|w| w.contains("DataSource sante/hospital-beds-db: classification lowered")),
            "{widened:#?}"
        );
        // The longer expiry edits a signed Restricted grant: its approvals are void, so the
        // officers lose the access instead of keeping it longer.
        assert!(
            d.approvals_voided.iter().any(|c| c.what == "AccessPolicy cnc/situation-picture-officers"),
            "{:#?}",
            d.approvals_voided
        );
        assert!(
            d.narrowed.iter().any(|c| c.what.starts_with("Group:cnc-officers -> DataProduct cnc/situation-picture")),
            "{:#?}",
            d.narrowed
        );
        assert_eq!(d.rejected.len(), 1, "{:#?}", d.rejected);
        assert!(d.rejected[0].detail.starts_with("spec.classification"), "{:#?}", d.rejected);
        assert!(d.narrowed.iter().any(|c| c.detail.starts_with("classification raised")));
        assert!(
            d.children
                .iter()
                .any(|c| { c.what.starts_with("RoleBinding transport/drmesh-grant-transit-disruptions-analysts") })
        );
        let report = text(&d);
        assert!(report.starts_with("ACCESS WIDENED"), "{report}");
        let json: Value = serde_json::from_str(&json(&d)).expect("json");
        assert!(json["widened"].as_array().is_some_and(|w| !w.is_empty()));
    }

    #[test]
    fn changed_paths_name_the_fields() {
        let a = serde_json::json!({"spec": {"a": 1, "b": [1, 2]}, "status": {"x": 1}});
        let b = serde_json::json!({"spec": {"a": 2, "b": [1, 3]}, "status": {"x": 2}});
        assert_eq!(changed(&a, &b, &["status"]).as_deref(), Some("changed: spec.a, spec.b[1]"));
        assert_eq!(changed(&a, &a, &[]), None);
    }
}
