//! Every read accounted for: the drmesh audit chain replayed into the grants in force
//! over time, and each read of a product through the API server's service proxy (from
//! the API server's audit log) matched against them. Pure: no files, no clock.
//!
//! What the chain says, and how it is replayed (see docs/guide/accesspolicy.md, "Events
//! and audit records"):
//! - a `Granted` record of a policy (`policy` set) states the subjects in force for that
//!   policy from its time on; a later `Granted` record of the same policy (an edit)
//!   replaces them: a subject the edit leaves out is no longer covered from the edit on;
//! - a `Revoked` or `Expired` record of the policy ends its grant;
//! - a `Denied` record of the policy withdraws the subjects it names (a denial of the
//!   whole policy names all of them: the grant ends);
//! - `OwnersAccess` records (no policy) give and take the product's owners' reads;
//! - a grant covers nothing at or after its `expiresAt`, whatever the chain says next.
//!
//! - `CredentialsLent` / `CredentialsWithdrawn` records (no policy; `product` is the
//!   DataSource) lend a source's credentials to the ServiceAccounts they name and take
//!   them back: windows of their own, which never cover a read of a product.
//!
//! Ports: a policy's `Granted` record names the ports it gives (`NUMBER/NAME`); a read
//! through `services/[SCHEME:]NAME:PORT/proxy` is covered only by a grant that gives that
//! port, by number or by name. A record that names no port (owners' access, records
//! written before ports were recorded) is matched on any port; a read through the bare
//! service name (no port) only by such a record.
//!
//! Other ways to a product's data: `pods/proxy`, `pods/portforward`, `pods/exec` and
//! `pods/attach` on a product's pods. Grants give `services/proxy` only, so such a read is
//! never covered. The API server's audit log names the pod, not its product: a pod is a
//! product's when its name is `<product>-<replicaset hash>-<suffix>` (the operator runs a
//! product as a Deployment named after it) and the chain names that product in that
//! namespace.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

use crate::audit::{Decision, ObjectRef, Record};

/// Through what a grant was given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Via {
    /// `AccessPolicy` or `owners`.
    pub kind: String,
    /// The policy's namespace/name (empty for owners).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl Via {
    /// Whether the window gives reads of a product (a policy's grant, the owners'
    /// access); credentials lent to a product do not.
    pub fn gives_reads(&self) -> bool {
        self.kind == "AccessPolicy" || self.kind == "owners"
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.name.is_empty() { write!(f, "{}", self.kind) } else { write!(f, "{} {}", self.kind, self.name) }
    }
}

/// One stretch of a grant: the same subjects, purpose and expiry, from one record to
/// the record that changed or ended them (none: still in force at the chain's end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    pub product: ObjectRef,
    pub classification: String,
    pub via: Via,
    pub subjects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The ports it gives (`NUMBER/NAME`), as its record names them; empty: the record
    /// names none (any port is matched).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The record that opened it.
    pub from: Timestamp,
    pub from_seq: u64,
    /// The record that closed it (an edit, a revocation, an expiry, a denial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    /// `Decision reason` of the closing record, e.g. `Revoked PolicyDeleted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
    /// The closing record is of a change made while no operator led (its
    /// `whileNoOperatorLed`), found at `until` but made after this instant: from here to
    /// `until`, whether the window still held is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_after: Option<Timestamp>,
}

impl Window {
    /// Whether the window is open at `t` (expiry aside).
    pub fn open_at(&self, t: Timestamp) -> bool {
        self.from <= t && self.until.is_none_or(|u| t < u)
    }
    /// Whether it grants at `t`: open and before its expiry.
    pub fn grants_at(&self, t: Timestamp) -> bool {
        self.open_at(t) && self.expires_at.is_none_or(|e| t < e)
    }
    /// Whether `t` falls after an unrecorded change that ended the window (made while no
    /// operator led, found later): the chain cannot say whether it still held then.
    pub fn unconfirmed_at(&self, t: Timestamp) -> bool {
        self.changed_after.is_some_and(|after| after <= t)
    }
    /// Whether it gives `port` (a number or a name, as in a proxy path; None: the bare
    /// service name). A window whose record names no port gives any.
    pub fn gives_port(&self, port: Option<&str>) -> bool {
        if self.ports.is_empty() {
            return true;
        }
        let Some(port) = port else { return false };
        self.ports.iter().any(|p| match p.split_once('/') {
            Some((number, name)) => number == port || name == port,
            None => p == port,
        })
    }
}

/// Whether `subject` (`Kind:name`, `Kind:namespace/name`) names the requester.
pub fn subject_covers(subject: &str, who: &Requester) -> bool {
    let Some((kind, name)) = subject.split_once(':') else { return false };
    match kind {
        "User" => who.username == name,
        "Group" => who.groups.iter().any(|g| g == name),
        // A product acts through its ServiceAccount, named after it.
        "ServiceAccount" | "DataProduct" => {
            name.split_once('/').is_some_and(|(ns, sa)| who.username == format!("system:serviceaccount:{ns}:{sa}"))
        }
        // Namespace subjects are network access: they never open the proxy.
        _ => false,
    }
}

fn time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

/// Replays the chain (records in any order; ordered by `seq` here) into windows.
/// Records whose time cannot be read are skipped (a verified chain has none).
pub fn replay(records: &[Record]) -> Vec<Window> {
    let mut ordered: Vec<&Record> = records.iter().collect();
    ordered.sort_by_key(|r| r.seq);
    ordered.dedup_by_key(|r| r.seq);
    let mut open: BTreeMap<String, Window> = BTreeMap::new();
    let mut done = Vec::new();
    for record in ordered {
        let e = &record.event;
        let Some(at) = time(&e.time) else { continue };
        // Credentials lent to (taken from) the ServiceAccounts named: one window each.
        let lent = match (e.policy.is_none(), e.reason.as_str()) {
            (true, "CredentialsLent") => Some(true),
            (true, "CredentialsWithdrawn") => Some(false),
            _ => None,
        };
        if let Some(lent) = lent {
            for subject in &e.subjects {
                let key = format!("credentials {}/{} {subject}", e.product.namespace, e.product.name);
                if let Some(mut w) = open.remove(&key) {
                    w.until = Some(at);
                    w.ended_by = Some(format!("{} {}", e.decision.label(), e.reason));
                    w.changed_after = changed_after(e, &w);
                    done.push(w);
                }
                if lent {
                    let via = Via {
                        kind: "credentials".into(),
                        name: format!("{}/{}", e.product.namespace, e.product.name),
                        uid: String::new(),
                    };
                    open.insert(
                        key,
                        Window {
                            product: e.product.clone(),
                            classification: e.classification.clone(),
                            via,
                            subjects: vec![subject.clone()],
                            purpose: None,
                            expires_at: None,
                            ports: vec![],
                            from: at,
                            from_seq: record.seq,
                            until: None,
                            ended_by: None,
                            changed_after: None,
                        },
                    );
                }
            }
            continue;
        }
        let (key, via) = match &e.policy {
            Some(p) => (
                format!("policy {}", p.uid),
                Via { kind: "AccessPolicy".into(), name: format!("{}/{}", p.namespace, p.name), uid: p.uid.clone() },
            ),
            None if e.reason == "OwnersAccess" => (
                format!("owners {}/{}", e.product.namespace, e.product.name),
                Via { kind: "owners".into(), name: String::new(), uid: String::new() },
            ),
            None => continue,
        };
        let label = format!("{} {}", e.decision.label(), e.reason);
        let mut close = |open: &mut BTreeMap<String, Window>| {
            open.remove(&key).map(|mut w| {
                w.until = Some(at);
                w.ended_by = Some(label.clone());
                w.changed_after = changed_after(e, &w);
                done.push(w.clone());
                w
            })
        };
        // A grant's record names every subject it gives; an owners' record names those who
        // gained or lost the product's data (the others keep what they had).
        let owners = e.policy.is_none();
        let next = match e.decision {
            Decision::Granted => {
                let mut subjects = close(&mut open).filter(|_| owners).map(|w| w.subjects).unwrap_or_default();
                subjects.extend(e.subjects.iter().filter(|s| !subjects.contains(s)).cloned().collect::<Vec<_>>());
                Some(Window {
                    product: e.product.clone(),
                    classification: e.classification.clone(),
                    via,
                    subjects,
                    purpose: e.purpose.clone(),
                    expires_at: e.expires_at.as_deref().and_then(time),
                    ports: e.ports.clone(),
                    from: at,
                    from_seq: record.seq,
                    until: None,
                    ended_by: None,
                    changed_after: None,
                })
            }
            Decision::Revoked | Decision::Expired if !owners => {
                close(&mut open);
                None
            }
            Decision::Revoked | Decision::Expired | Decision::Denied => {
                let narrowed = open.get(&key).is_some_and(|w| w.subjects.iter().any(|s| e.subjects.contains(s)));
                if narrowed {
                    close(&mut open).map(|w| Window {
                        subjects: w.subjects.into_iter().filter(|s| !e.subjects.contains(s)).collect(),
                        from: at,
                        from_seq: record.seq,
                        until: None,
                        ended_by: None,
                        changed_after: None,
                        ..w
                    })
                } else {
                    None
                }
            }
            Decision::Exposed | Decision::Warned => None,
        };
        if let Some(w) = next.filter(|w| !w.subjects.is_empty()) {
            open.insert(key, w);
        }
    }
    done.extend(open.into_values());
    done.sort_by_key(|a| (a.from, a.from_seq));
    done
}

/// When the change a closing record reports was made, if it was made while no operator
/// led: after the previous leader's last record (or, when that is not said, any time since
/// `w` opened).
fn changed_after(e: &crate::audit::Event, w: &Window) -> Option<Timestamp> {
    let unled = e.while_no_operator_led.as_ref()?;
    Some(time(&unled.after).map_or(w.from, |after| after.max(w.from)))
}

/// Who made a request: the impersonated user when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub username: String,
    pub groups: Vec<String>,
    /// The authenticated user who impersonated `username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<String>,
}

/// A request that reaches a product's data: through the API server's proxy to its
/// Service, or to one of its pods (proxy, port-forward, exec, attach).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Read {
    pub audit_id: String,
    /// When the API server received it (authorisation is decided then).
    pub time: Timestamp,
    pub requester: Requester,
    pub product: ObjectRef,
    /// `services/proxy`, `pods/proxy`, `pods/portforward`, `pods/exec` or `pods/attach`.
    pub path: String,
    /// The product's pod, for a read through a pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    pub verb: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uri: String,
}

impl Read {
    /// Refused by the API server (401, 403): nothing reached the product.
    pub fn refused(&self) -> bool {
        matches!(self.code, Some(401 | 403))
    }
    /// Through the Service's proxy, the one path a grant gives.
    pub fn through_service(&self) -> bool {
        self.path == SERVICE_PROXY
    }
}

/// The path grants give.
pub const SERVICE_PROXY: &str = "services/proxy";

/// The pod subresources that reach a pod's data (never granted by drmesh).
pub const POD_PATHS: [&str; 4] = ["proxy", "portforward", "exec", "attach"];

/// The products the chain names (the `product` of every record but the credentials'
/// records, whose `product` is a DataSource, and the chain's take-over records, whose
/// `product` is the head ConfigMap): the products whose pods are recognised.
pub fn products(records: &[Record]) -> Vec<ObjectRef> {
    let mut products: Vec<ObjectRef> = records
        .iter()
        .filter(|r| {
            r.event.policy.is_some()
                || !matches!(
                    r.event.reason.as_str(),
                    "CredentialsLent" | "CredentialsWithdrawn" | "AuditChainTakenOver"
                )
        })
        .map(|r| r.event.product.clone())
        .collect();
    products.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    products.dedup();
    products
}

/// The product a pod belongs to: a Deployment's pod is named `<deployment>-<replicaset
/// hash>-<suffix>`, and a product's Deployment is named after the product.
pub fn product_of_pod(namespace: &str, pod: &str, products: &[ObjectRef]) -> Option<ObjectRef> {
    let mut parts = pod.rsplitn(3, '-');
    let (_suffix, _hash, deployment) = (parts.next()?, parts.next()?, parts.next()?);
    products.iter().find(|p| p.namespace == namespace && p.name == deployment).cloned()
}

/// `[scheme:]name[:port]`, as the API server splits a proxy name.
fn split_proxy_name(name: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = name.split(':').collect();
    match parts.as_slice() {
        [service, port] => (service.to_string(), Some(port.to_string())),
        [_, service, port] => (service.to_string(), Some(port.to_string())),
        _ => (name.to_string(), None),
    }
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|g| g.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The service proxy reads in an API server audit log (audit.k8s.io/v1 Events, JSON
/// lines), one per `auditID`: see [`reads_in`].
pub fn proxy_reads(log: &str) -> Vec<Read> {
    reads_in(log, &[])
}

/// The reads of products in an API server audit log (audit.k8s.io/v1 Events, JSON lines),
/// one per `auditID`: `services/proxy` requests, and `pods/proxy`, `pods/portforward`,
/// `pods/exec`, `pods/attach` requests to a pod of one of `products` (see
/// [`product_of_pod`]). The `ResponseComplete` (or `Panic`) stage of each; a
/// `ResponseStarted` one when the log holds no later stage (a port-forward or an exec
/// still open when the log was read). Other lines are ignored.
pub fn reads_in(log: &str, products: &[ObjectRef]) -> Vec<Read> {
    let mut reads: BTreeMap<String, Read> = BTreeMap::new();
    let candidate = |l: &&str| POD_PATHS.iter().any(|p| l.contains(&format!("\"{p}\"")));
    for line in log.lines().filter(candidate) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let object = &event["objectRef"];
        let (Some(resource), Some(subresource)) = (object["resource"].as_str(), object["subresource"].as_str()) else {
            continue;
        };
        let path = format!("{resource}/{subresource}");
        if path != SERVICE_PROXY && !(resource == "pods" && POD_PATHS.contains(&subresource)) {
            continue;
        }
        let complete = match event["stage"].as_str() {
            Some("ResponseComplete" | "Panic") => true,
            Some("ResponseStarted") => false,
            _ => continue,
        };
        let at = ["requestReceivedTimestamp", "stageTimestamp"].iter().find_map(|k| event[*k].as_str().and_then(time));
        let (Some(at), Some(namespace), Some(name)) = (at, object["namespace"].as_str(), object["name"].as_str())
        else {
            continue;
        };
        let (target, port) = if subresource == "proxy" { split_proxy_name(name) } else { (name.to_string(), None) };
        let (product, pod) = if resource == "services" {
            (ObjectRef { namespace: namespace.to_string(), name: target }, None)
        } else {
            match product_of_pod(namespace, &target, products) {
                Some(product) => (product, Some(target)),
                None => continue,
            }
        };
        let user = &event["user"];
        let requester = match event["impersonatedUser"].as_object() {
            Some(imp) => Requester {
                username: imp.get("username").and_then(|u| u.as_str()).unwrap_or_default().to_string(),
                groups: imp.get("groups").map(strings).unwrap_or_default(),
                impersonated_by: user["username"].as_str().map(String::from),
            },
            None => Requester {
                username: user["username"].as_str().unwrap_or_default().to_string(),
                groups: strings(&user["groups"]),
                impersonated_by: None,
            },
        };
        let audit_id = event["auditID"].as_str().unwrap_or_default().to_string();
        let read = Read {
            audit_id: audit_id.clone(),
            time: at,
            requester,
            product,
            path,
            pod,
            port,
            verb: event["verb"].as_str().unwrap_or_default().to_string(),
            code: event["responseStatus"]["code"].as_u64().and_then(|c| u16::try_from(c).ok()),
            uri: event["requestURI"].as_str().unwrap_or_default().to_string(),
        };
        let key = if audit_id.is_empty() { format!("{}-{}", read.time, reads.len()) } else { audit_id };
        if complete || !reads.contains_key(&key) {
            reads.insert(key, read);
        }
    }
    let mut reads: Vec<Read> = reads.into_values().collect();
    reads.sort_by(|a, b| (a.time, &a.audit_id).cmp(&(b.time, &b.audit_id)));
    reads
}

/// What the chain says of a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Outcome {
    /// A grant in force covered the requester.
    Covered { grant: Box<Window>, subject: String },
    /// The chain records a grant covering the requester, but a change made while no
    /// operator led ended it, after an instant before the read: whether it still covered
    /// the read is unknown (`why` says when the change can have been made).
    Unconfirmed { grant: Box<Window>, subject: String, why: String },
    /// The API server let it through and no grant covered it.
    Uncovered { why: String },
    /// The API server refused it (401/403): an attempt, not a read. `why` says whether a
    /// grant would have covered it.
    Refused { why: String },
}

/// Why no window covers the read.
fn uncovered_why(windows: &[Window], read: &Read) -> String {
    if !read.through_service() {
        return format!(
            "{} of a product's pod {}: no grant gives it (grants give services/proxy only)",
            read.path,
            read.pod.as_deref().unwrap_or_default()
        );
    }
    let who = &read.requester;
    let here: Vec<&Window> = windows.iter().filter(|w| w.via.gives_reads() && w.product == read.product).collect();
    let names = |w: &Window| w.subjects.iter().any(|s| subject_covers(s, who));
    let in_force: Vec<&&Window> = here.iter().filter(|w| w.open_at(read.time)).collect();
    if let Some(w) = in_force.iter().find(|w| names(w) && w.grants_at(read.time)) {
        return match read.port.as_deref() {
            Some(port) => format!("port {port} not granted: {} gives {}", w.via, w.ports.join(",")),
            None => {
                format!("no port named: {} gives {} (the bare service name is never granted)", w.via, w.ports.join(","))
            }
        };
    }
    if let Some(w) = in_force.iter().find(|w| names(w)) {
        let at = w.expires_at.map(|e| e.to_string()).unwrap_or_default();
        return format!("grant expired at {at} ({})", w.via);
    }
    // The last stretch before the read that named the requester.
    let earlier = here.iter().filter(|w| names(w) && w.until.is_some_and(|u| u <= read.time)).max_by_key(|w| w.until);
    let ended = earlier.map(|w| {
        format!(
            "; {} covered it until {} ({})",
            w.via,
            w.until.map(|u| u.to_string()).unwrap_or_default(),
            w.ended_by.as_deref().unwrap_or_default()
        )
    });
    if in_force.is_empty() {
        return format!("no grant in force for the product{}", ended.unwrap_or_default());
    }
    let grants: Vec<String> = in_force.iter().map(|w| w.via.to_string()).collect();
    format!("subject not in the grant(s) in force: {}{}", grants.join(", "), ended.unwrap_or_default())
}

/// Matches each read against the windows.
pub fn account(windows: &[Window], reads: &[Read]) -> Vec<(Read, Outcome)> {
    reads
        .iter()
        .map(|read| {
            // Grants give the Service's proxy on their ports; nothing gives a pod.
            let covering = windows
                .iter()
                .filter(|w| {
                    read.through_service()
                        && w.via.gives_reads()
                        && w.product == read.product
                        && w.grants_at(read.time)
                        && w.gives_port(read.port.as_deref())
                })
                .find_map(|w| w.subjects.iter().find(|s| subject_covers(s, &read.requester)).map(|s| (w, s.clone())));
            let outcome = match (read.refused(), covering) {
                (true, Some((w, _))) => Outcome::Refused { why: format!("refused although {} covered it", w.via) },
                (true, None) => Outcome::Refused { why: uncovered_why(windows, read) },
                (false, Some((w, subject))) if w.unconfirmed_at(read.time) => Outcome::Unconfirmed {
                    why: format!(
                        "{} changed while no operator led, after {} (found at {}, {}): it may no longer have covered the read",
                        w.via,
                        w.changed_after.map(|t| t.to_string()).unwrap_or_default(),
                        w.until.map(|t| t.to_string()).unwrap_or_default(),
                        w.ended_by.as_deref().unwrap_or_default()
                    ),
                    grant: Box::new(w.clone()),
                    subject,
                },
                (false, Some((w, subject))) => Outcome::Covered { grant: Box::new(w.clone()), subject },
                (false, None) => Outcome::Uncovered { why: uncovered_why(windows, read) },
            };
            (read.clone(), outcome)
        })
        .collect()
}

/// How many reads were covered, uncovered and refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub covered: usize,
    pub uncovered: usize,
    /// Covered by a grant that a change made while no operator led may have ended before.
    pub unconfirmed: usize,
    pub refused: usize,
}

pub fn counts(accounted: &[(Read, Outcome)]) -> Counts {
    let mut c = Counts::default();
    for (_, outcome) in accounted {
        match outcome {
            Outcome::Covered { .. } => c.covered += 1,
            Outcome::Uncovered { .. } => c.uncovered += 1,
            Outcome::Unconfirmed { .. } => c.unconfirmed += 1,
            Outcome::Refused { .. } => c.refused += 1,
        }
    }
    c
}

/// An aligned table (two spaces between columns, the last one unpadded).
pub fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cols.iter().zip(&widths).enumerate() {
            if i + 1 == cols.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell}{}  ", " ".repeat(w.saturating_sub(cell.chars().count())));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&headers.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for row in rows {
        line(row);
    }
    out
}

fn read_cells(read: &Read) -> Vec<String> {
    let who = &read.requester;
    let user = match &who.impersonated_by {
        Some(by) => format!("{} (impersonated by {by})", who.username),
        None => who.username.clone(),
    };
    vec![
        read.time.to_string(),
        user,
        who.groups.join(","),
        format!("{}/{}", read.product.namespace, read.product.name),
        match &read.pod {
            Some(pod) => format!("{} {pod}", read.path),
            None => read.path.clone(),
        },
        read.port.clone().unwrap_or_default(),
        read.verb.clone(),
        read.code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
    ]
}

const READ_HEADERS: [&str; 8] = ["TIME", "USER", "GROUPS", "PRODUCT", "PATH", "PORT", "VERB", "CODE"];

/// The report for people: uncovered reads first, then those no operator saw covered, then
/// the refused attempts, then the covered reads with the grant that covered each.
pub fn describe(accounted: &[(Read, Outcome)]) -> String {
    let c = counts(accounted);
    let unconfirmed = match c.unconfirmed {
        0 => String::new(),
        n => format!(", {n} UNCONFIRMED (a grant changed while no operator led)"),
    };
    let mut text = format!(
        "reads of products (service proxy, pods): {} read(s), {} covered, {} UNCOVERED{unconfirmed}; {} attempt(s) refused by the API server\n",
        c.covered + c.uncovered + c.unconfirmed,
        c.covered,
        c.uncovered,
        c.refused
    );
    let section = |title: &str, extra: &[&str], pick: &dyn Fn(&Outcome) -> Option<Vec<String>>| {
        let rows: Vec<Vec<String>> = accounted
            .iter()
            .filter_map(|(read, outcome)| {
                pick(outcome).map(|more| {
                    let mut cells = read_cells(read);
                    cells.extend(more);
                    cells
                })
            })
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        let headers: Vec<&str> = READ_HEADERS.iter().chain(extra).copied().collect();
        format!("\n{title} ({}):\n{}", rows.len(), aligned(&headers, &rows))
    };
    text.push_str(&section("UNCOVERED READS", &["WHY"], &|o| match o {
        Outcome::Uncovered { why } => Some(vec![why.clone()]),
        _ => None,
    }));
    text.push_str(&section("UNCONFIRMED READS (a grant changed while no operator led)", &["WHY"], &|o| match o {
        Outcome::Unconfirmed { why, .. } => Some(vec![why.clone()]),
        _ => None,
    }));
    text.push_str(&section("Refused attempts (the API server let nothing through)", &["WHY"], &|o| match o {
        Outcome::Refused { why } => Some(vec![why.clone()]),
        _ => None,
    }));
    text.push_str(&section("Covered reads", &["VIA", "SUBJECT", "PURPOSE", "UNTIL"], &|o| match o {
        Outcome::Covered { grant, subject } => Some(vec![
            grant.via.to_string(),
            subject.clone(),
            grant.purpose.clone().unwrap_or_default(),
            grant.expires_at.map(|e| e.to_string()).unwrap_or_else(|| "no expiry".into()),
        ]),
        _ => None,
    }));
    text
}

/// Machine output: the counts and every read with its outcome.
pub fn json(accounted: &[(Read, Outcome)], chain: serde_json::Value) -> String {
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        read: &'a Read,
        #[serde(flatten)]
        outcome: &'a Outcome,
    }
    let rows: Vec<Row> = accounted.iter().map(|(read, outcome)| Row { read, outcome }).collect();
    let value = serde_json::json!({ "chain": chain, "counts": counts(accounted), "reads": rows });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Chain, Event, PolicyRef};

    const NS: &str = "police";

    fn policy(name: &str) -> PolicyRef {
        PolicyRef { namespace: NS.into(), name: name.into(), uid: format!("uid-{name}"), generation: 1 }
    }

    fn event(t: &str, decision: Decision, reason: &str, subjects: &[&str], policy_name: Option<&str>) -> Event {
        Event {
            time: format!("2026-11-28T12:{t}Z"),
            actor: "drmesh".into(),
            decision,
            reason: reason.into(),
            message: String::new(),
            product: ObjectRef { namespace: NS.into(), name: "incident-feed".into() },
            classification: "Restricted".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            purpose: Some("Build the situation picture".into()),
            expires_at: Some("2026-11-28T13:00:00Z".into()),
            policy: policy_name.map(policy),
            ports: vec![],
            while_no_operator_led: None,
        }
    }

    fn with_ports(mut e: Event, ports: &[&str]) -> Event {
        e.ports = ports.iter().map(|p| p.to_string()).collect();
        e
    }

    /// An API server audit line of a request to a pod's `subresource`.
    fn pod_line(id: &str, t: &str, user: &str, subresource: &str, pod: &str, code: u16, stage: &str) -> String {
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
            "stage": stage, "verb": if subresource == "exec" { "create" } else { "get" },
            "requestURI": format!("/api/v1/namespaces/{NS}/pods/{pod}/{subresource}"),
            "user": {"username": user, "groups": ["system:authenticated"]},
            "objectRef": {"resource": "pods", "namespace": NS, "name": pod, "apiVersion": "v1", "subresource": subresource},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": format!("2026-11-28T12:{t}.000000Z"),
            "stageTimestamp": format!("2026-11-28T12:{t}.010000Z"),
        })
        .to_string()
            + "\n"
    }

    fn chain(events: Vec<Event>) -> Vec<Record> {
        let mut chain = Chain::default();
        events.into_iter().map(|e| chain.append(e)).collect()
    }

    /// An API server audit line: `who` as (user, groups), optionally impersonated by admin.
    fn api_line(id: &str, t: &str, user: &str, groups: &[&str], impersonated: bool, code: u16) -> String {
        let who = serde_json::json!({"username": user, "groups": groups});
        let mut event = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
            "stage": "ResponseComplete", "verb": "get",
            "requestURI": format!("/api/v1/namespaces/{NS}/services/incident-feed:8080/proxy/"),
            "user": if impersonated { serde_json::json!({"username": "admin", "groups": ["system:masters"]}) } else { who.clone() },
            "objectRef": {"resource": "services", "namespace": NS, "name": "incident-feed:8080", "apiVersion": "v1", "subresource": "proxy"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": format!("2026-11-28T12:{t}.000000Z"),
            "stageTimestamp": format!("2026-11-28T12:{t}.010000Z"),
        });
        if impersonated {
            event["impersonatedUser"] = who;
        }
        event.to_string() + "\n"
    }

    fn outcomes(records: &[Record], log: &str) -> Vec<Outcome> {
        account(&replay(records), &proxy_reads(log)).into_iter().map(|(_, o)| o).collect()
    }

    fn why(outcome: &Outcome) -> &str {
        match outcome {
            Outcome::Uncovered { why } | Outcome::Refused { why } | Outcome::Unconfirmed { why, .. } => why,
            Outcome::Covered { .. } => panic!("expected a read not covered, got {outcome:?}"),
        }
    }

    fn via(outcome: &Outcome) -> String {
        match outcome {
            Outcome::Covered { grant, .. } => grant.via.to_string(),
            other => panic!("expected a covered read, got {other:?}"),
        }
    }

    #[test]
    fn a_read_after_a_change_made_while_no_operator_led_is_unconfirmed_until_the_change_is_found() {
        // The grant was deleted while no operator led, some time after 12:10 (the previous
        // leader's last record); the next leader found it at 12:30.
        let mut found = event("30:00", Decision::Revoked, "PolicyDeleted", &[], Some("cnc"));
        found.while_no_operator_led = Some(crate::audit::Unled {
            head: "0:abc".into(),
            after: "2026-11-28T12:10:00Z".into(),
            before: "2026-11-28T12:30:00Z".into(),
        });
        let records = chain(vec![event("00:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")), found]);
        let log = [
            api_line("a", "05:00", "alice", &[], false, 200), // before the previous leader's last record
            api_line("b", "20:00", "alice", &[], false, 200), // between its last record and the take-over
            api_line("c", "40:00", "alice", &[], false, 200), // after the change was found
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
        assert!(matches!(&out[1], Outcome::Unconfirmed { subject, .. } if subject == "User:alice"), "{:?}", out[1]);
        assert!(why(&out[1]).contains("after 2026-11-28T12:10:00Z (found at 2026-11-28T12:30:00Z"), "{}", why(&out[1]));
        assert!(matches!(&out[2], Outcome::Uncovered { .. }), "{:?}", out[2]);
        let accounted = account(&replay(&records), &proxy_reads(&log));
        assert_eq!(counts(&accounted), Counts { covered: 1, uncovered: 1, unconfirmed: 1, refused: 0 });
        assert!(describe(&accounted).contains("1 UNCONFIRMED (a grant changed while no operator led)"));
    }

    #[test]
    fn owners_records_give_and_take_only_the_owners_they_name() {
        let records = chain(vec![
            event("00:00", Decision::Granted, "OwnersAccess", &["User:dave", "Group:owners"], None),
            event("10:00", Decision::Revoked, "OwnersAccess", &["User:dave"], None),
            event("30:00", Decision::Granted, "OwnersAccess", &["User:erin"], None),
        ]);
        let log = [
            api_line("a", "05:00", "dave", &[], false, 200),
            api_line("b", "20:00", "dave", &[], false, 200), // lost it at 12:10
            api_line("c", "20:00", "olga", &["owners"], false, 200), // the group kept it
            api_line("d", "40:00", "olga", &["owners"], false, 200), // and keeps it when erin gains it
            api_line("e", "40:00", "erin", &[], false, 200),
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert!(matches!(&out[0], Outcome::Covered { subject, .. } if subject == "User:dave"), "{:?}", out[0]);
        assert!(matches!(&out[1], Outcome::Uncovered { .. }), "{:?}", out[1]);
        for (i, subject) in [(2, "Group:owners"), (3, "Group:owners"), (4, "User:erin")] {
            assert!(matches!(&out[i], Outcome::Covered { subject: s, .. } if s == subject), "{i}: {:?}", out[i]);
        }
    }

    #[test]
    fn a_read_is_covered_only_inside_the_window_and_before_expiry() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")),
            event("59:00", Decision::Expired, "Expired", &["User:alice"], Some("cnc")),
        ]);
        let log = [
            api_line("a", "09:59", "alice", &[], false, 503), // before the grant
            api_line("b", "30:00", "alice", &[], false, 503), // inside
            api_line("c", "59:30", "alice", &[], false, 200), // after the Expired record
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(out.len(), 3);
        assert_eq!(why(&out[0]), "no grant in force for the product");
        assert_eq!(via(&out[1]), "AccessPolicy police/cnc");
        assert_eq!(
            why(&out[2]),
            "no grant in force for the product; AccessPolicy police/cnc covered it until 2026-11-28T12:59:00Z (Expired Expired)"
        );
        assert!(matches!(out[2], Outcome::Uncovered { .. }));
    }

    #[test]
    fn a_read_after_expires_at_is_not_covered_even_before_the_expired_record() {
        // The chain holds no Expired record (e.g. the operator was down at 13:00).
        let records = chain(vec![event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc"))]);
        let late = api_line("a", "10:00", "alice", &[], false, 200).replace("T12:10:00", "T13:00:01");
        let out = outcomes(&records, &late);
        assert_eq!(why(&out[0]), "grant expired at 2026-11-28T13:00:00Z (AccessPolicy police/cnc)");
    }

    #[test]
    fn a_revoked_grant_covers_nothing_after_its_record() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["Group:cnc-officers"], Some("cnc")),
            event("20:00", Decision::Revoked, "PolicyDeleted", &["Group:cnc-officers"], Some("cnc")),
        ]);
        let log = [
            api_line("a", "19:59", "alice", &["cnc-officers"], false, 503),
            api_line("b", "20:00", "alice", &["cnc-officers"], false, 503),
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
        assert!(matches!(out[1], Outcome::Uncovered { .. }), "{:?}", out[1]);
        assert!(why(&out[1]).ends_with("until 2026-11-28T12:20:00Z (Revoked PolicyDeleted)"), "{}", why(&out[1]));
    }

    #[test]
    fn group_members_are_covered_and_people_not_named_are_not() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["Group:cnc-officers", "User:carol"], Some("cnc")),
            event("10:00", Decision::Granted, "OwnersAccess", &["Group:police-owners"], None),
        ]);
        let log = [
            // alice, impersonated by the admin, in the granted group.
            api_line("a", "11:00", "alice", &["cnc-officers", "system:authenticated"], true, 503),
            api_line("b", "12:00", "mallory", &["system:authenticated"], false, 200),
            api_line("c", "13:00", "dave", &["police-owners"], false, 200),
            api_line("d", "14:00", "carol", &[], false, 200),
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
        assert!(matches!(&out[0], Outcome::Covered { subject, .. } if subject == "Group:cnc-officers"));
        assert_eq!(why(&out[1]), "subject not in the grant(s) in force: AccessPolicy police/cnc, owners");
        assert_eq!(via(&out[2]), "owners");
        assert!(matches!(&out[3], Outcome::Covered { subject, .. } if subject == "User:carol"));
        let reads = proxy_reads(&log);
        assert_eq!(reads[0].requester.impersonated_by.as_deref(), Some("admin"));
        assert_eq!(reads[0].port.as_deref(), Some("8080"));
        assert_eq!(reads[0].product.name, "incident-feed");
    }

    #[test]
    fn an_edit_removing_a_subject_ends_its_coverage_at_the_edit() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["User:alice", "User:bob"], Some("cnc")),
            event("20:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")),
        ]);
        let log = [
            api_line("a", "15:00", "bob", &[], false, 503),
            api_line("b", "25:00", "alice", &[], false, 503),
            api_line("c", "25:01", "bob", &[], false, 503),
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
        assert_eq!(via(&out[1]), "AccessPolicy police/cnc");
        assert!(matches!(out[2], Outcome::Uncovered { .. }), "{:?}", out[2]);
        assert_eq!(
            why(&out[2]),
            "subject not in the grant(s) in force: AccessPolicy police/cnc; AccessPolicy police/cnc covered it until 2026-11-28T12:20:00Z (Granted Granted)"
        );
    }

    #[test]
    fn a_denial_withdraws_the_subjects_it_names() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["User:alice", "User:bob"], Some("cnc")),
            event("20:00", Decision::Denied, "ClearanceTooLow", &["User:bob"], Some("cnc")),
        ]);
        let log =
            [api_line("a", "25:00", "alice", &[], false, 503), api_line("b", "25:01", "bob", &[], false, 503)].concat();
        let out = outcomes(&records, &log);
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
        assert!(matches!(out[1], Outcome::Uncovered { .. }), "{:?}", out[1]);
    }

    #[test]
    fn a_reassessment_warning_leaves_the_grant_in_force() {
        let records = chain(vec![
            event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")),
            event("20:00", Decision::Warned, "ReassessmentDue", &["User:alice"], Some("cnc")),
        ]);
        let out = outcomes(&records, &api_line("a", "25:00", "alice", &[], false, 503));
        assert_eq!(via(&out[0]), "AccessPolicy police/cnc");
    }

    #[test]
    fn refused_requests_are_listed_as_attempts_not_reads() {
        let records = chain(vec![event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc"))]);
        let log =
            [api_line("a", "11:00", "mallory", &[], false, 403), api_line("b", "12:00", "alice", &[], false, 503)]
                .concat();
        let accounted = account(&replay(&records), &proxy_reads(&log));
        assert_eq!(counts(&accounted), Counts { covered: 1, uncovered: 0, unconfirmed: 0, refused: 1 });
        assert!(matches!(&accounted[0].1, Outcome::Refused { why } if why.starts_with("subject not in the grant")));
        let text = describe(&accounted);
        assert!(
            text.starts_with(
                "reads of products (service proxy, pods): 1 read(s), 1 covered, 0 UNCOVERED; 1 attempt(s) refused by the API server\n"
            ),
            "{text}"
        );
        assert!(!text.contains("UNCOVERED READS"), "{text}");
        assert!(text.contains("Refused attempts (the API server let nothing through) (1):"), "{text}");
        assert!(text.contains("mallory"), "{text}");
    }

    #[test]
    fn a_read_is_covered_only_on_a_port_the_grant_gave() {
        let records = chain(vec![
            with_ports(event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")), &["8080/http"]),
            // Owners' records name no port: any port.
            event("10:00", Decision::Granted, "OwnersAccess", &["User:dave"], None),
        ]);
        let port = |line: String, to: &str| line.replace("incident-feed:8080", to);
        let log = [
            api_line("a", "11:00", "alice", &[], false, 200),
            port(api_line("b", "12:00", "alice", &[], false, 200), "incident-feed:http"),
            port(api_line("c", "13:00", "alice", &[], false, 200), "https:incident-feed:http"),
            port(api_line("d", "14:00", "alice", &[], false, 200), "incident-feed:9090"),
            port(api_line("e", "15:00", "alice", &[], false, 200), "https:incident-feed:metrics"),
            port(api_line("f", "16:00", "alice", &[], false, 200), "incident-feed"),
            port(api_line("g", "17:00", "dave", &[], false, 200), "incident-feed:9090"),
        ]
        .concat();
        let out = outcomes(&records, &log);
        assert_eq!(out.len(), 7);
        for covered in &out[..3] {
            assert_eq!(via(covered), "AccessPolicy police/cnc");
        }
        assert!(matches!(out[3], Outcome::Uncovered { .. }), "{:?}", out[3]);
        assert_eq!(why(&out[3]), "port 9090 not granted: AccessPolicy police/cnc gives 8080/http");
        assert_eq!(why(&out[4]), "port metrics not granted: AccessPolicy police/cnc gives 8080/http");
        assert_eq!(
            why(&out[5]),
            "no port named: AccessPolicy police/cnc gives 8080/http (the bare service name is never granted)"
        );
        assert_eq!(via(&out[6]), "owners");
        // A grant recorded before ports were recorded is matched on any port.
        let old = chain(vec![event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc"))]);
        assert_eq!(
            via(&outcomes(&old, &port(api_line("d", "14:00", "alice", &[], false, 200), "incident-feed:9090"))[0]),
            "AccessPolicy police/cnc"
        );
    }

    #[test]
    fn reads_through_a_product_pod_are_never_covered() {
        let records = chain(vec![
            with_ports(event("10:00", Decision::Granted, "Granted", &["User:alice"], Some("cnc")), &["8080/http"]),
            event("10:00", Decision::Granted, "OwnersAccess", &["User:dave"], None),
        ]);
        let pod = "incident-feed-5d8f7c9b4-x2x9q";
        let log = [
            pod_line("a", "11:00", "alice", "exec", pod, 101, "ResponseComplete"),
            pod_line("b", "12:00", "alice", "portforward", pod, 101, "ResponseStarted"),
            pod_line("b", "12:00", "alice", "portforward", pod, 101, "ResponseComplete"),
            pod_line("c", "13:00", "dave", "proxy", &format!("{pod}:8080"), 200, "ResponseComplete"),
            // Still open when the log was read: its start counts.
            pod_line("d", "14:00", "dave", "attach", pod, 101, "ResponseStarted"),
            pod_line("e", "15:00", "mallory", "exec", pod, 403, "ResponseComplete"),
            // Not a product's pod, not a path to the data, a look-alike name: ignored.
            pod_line("f", "16:00", "alice", "exec", "other-app-5d8f7c9b4-x2x9q", 101, "ResponseComplete"),
            pod_line("g", "16:00", "alice", "log", pod, 200, "ResponseComplete"),
            pod_line("h", "16:00", "alice", "exec", "incident-feed-cache-5d8f7c9b4-x2x9q", 101, "ResponseComplete"),
            // Through the Service on a granted port: covered.
            api_line("i", "17:00", "alice", &[], false, 200),
        ]
        .concat();
        let products = products(&records);
        assert_eq!(products, [ObjectRef { namespace: NS.into(), name: "incident-feed".into() }]);
        let reads = reads_in(&log, &products);
        let paths: Vec<(&str, Option<&str>)> = reads.iter().map(|r| (r.path.as_str(), r.pod.as_deref())).collect();
        assert_eq!(
            paths,
            [
                ("pods/exec", Some(pod)),
                ("pods/portforward", Some(pod)),
                ("pods/proxy", Some(pod)),
                ("pods/attach", Some(pod)),
                ("pods/exec", Some(pod)),
                ("services/proxy", None)
            ]
        );
        let accounted = account(&replay(&records), &reads);
        assert_eq!(counts(&accounted), Counts { covered: 1, uncovered: 4, unconfirmed: 0, refused: 1 });
        assert_eq!(
            why(&accounted[0].1),
            format!("pods/exec of a product's pod {pod}: no grant gives it (grants give services/proxy only)")
        );
        assert!(matches!(accounted[2].1, Outcome::Uncovered { .. }), "the owners' grant gives the Service only");
        assert!(matches!(accounted[4].1, Outcome::Refused { .. }));
        let text = describe(&accounted);
        assert!(text.contains(&format!("pods/exec {pod}")), "{text}");
    }

    #[test]
    fn credentials_lent_to_a_product_cover_no_read() {
        // A source named like the product, its credentials lent to alice's ServiceAccount.
        let mut lent = event("10:00", Decision::Granted, "CredentialsLent", &["ServiceAccount:police/alice"], None);
        lent.purpose = None;
        let records = chain(vec![lent]);
        let line = api_line("a", "11:00", "system:serviceaccount:police:alice", &[], false, 200);
        let out = outcomes(&records, &line);
        assert_eq!(why(&out[0]), "no grant in force for the product");
        assert!(products(&records).is_empty(), "a source is not a product");
    }

    #[test]
    fn only_completed_proxy_requests_count_once_each() {
        let line = api_line("a", "11:00", "alice", &[], false, 200);
        let started = line.replace("ResponseComplete", "ResponseStarted");
        let other = line.replace("\"subresource\":\"proxy\"", "\"subresource\":\"status\"");
        let https = api_line("b", "12:00", "bob", &[], false, 200).replace("incident-feed:8080\"", "https:feed:443\"");
        let reads = proxy_reads(&[started, line.clone(), line, other, https].concat());
        assert_eq!(reads.len(), 2, "{reads:?}");
        assert_eq!((reads[1].product.name.as_str(), reads[1].port.as_deref()), ("feed", Some("443")));
    }
}
