//! An invariant judge that shares no code with drmesh's planner (`crates/core`) or its
//! controllers (`crates/operator`). It is written from the user guides
//! (`docs/guide/*.md`) and the rules as PRODUCT.md states them, and reads every object as
//! plain JSON (`serde_json::Value`; no drmesh type, no k8s-openapi type, no drmesh
//! function), so a wrong rule in the operator cannot hide behind the same wrong rule here.
//!
//! It looks at every child field that grants access — NetworkPolicy `podSelector`,
//! `policyTypes`, ingress and egress peers, ports and `ipBlock`s; RoleBinding subjects and
//! `roleRef`; Role rules and `resourceNames`; the Secrets, ServiceAccount and pod labels
//! of Deployments; the selector and target ports of Services (what the service proxy
//! reaches) — and reports each access that the declarations do not allow at
//! `now`.
//!
//! Used by `make chaos`, by the CI bench and by the planted-fault tests (`tests/judge.rs`).
#![allow(dead_code)] // each user takes its part

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::Value;

mod approvals;
mod network;
mod rbac;

/// `90d`, `36h`, `1d12h`, `30m` in seconds (the MeshPolicy's durations).
fn days_hours_minutes(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut total = 0i64;
    for (unit, seconds) in [('d', 86_400), ('h', 3_600), ('m', 60)] {
        if let Some((number, tail)) = rest.split_once(unit) {
            if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            total += number.parse::<i64>().ok()? * seconds;
            rest = tail;
        }
    }
    (rest.is_empty() && !text.is_empty()).then_some(total)
}

/// The label that names a product on its pods and children.
pub const PRODUCT_LABEL: &str = "drmesh.io/data-product";
/// The label the API server sets on every namespace and nobody can change.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The classification ladder: `Public` < `Internal` < `Restricted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Public,
    Internal,
    Restricted,
}

impl Level {
    fn parse(s: Option<&str>) -> Option<Level> {
        match s? {
            "Public" => Some(Level::Public),
            "Internal" => Some(Level::Internal),
            "Restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// Who an AccessPolicy names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
    DataProduct { namespace: String, name: String },
    Namespace { name: String, pods: BTreeMap<String, String> },
}

impl Subject {
    fn parse(v: &Value) -> Option<Subject> {
        let name = v["name"].as_str()?.to_string();
        let namespace = || v["namespace"].as_str().map(str::to_string);
        Some(match v["kind"].as_str()? {
            "User" => Subject::User(name),
            "Group" => Subject::Group(name),
            "ServiceAccount" => Subject::ServiceAccount { namespace: namespace()?, name },
            "DataProduct" => Subject::DataProduct { namespace: namespace()?, name },
            "Namespace" => Subject::Namespace { name, pods: string_map(&v["podSelector"]["matchLabels"]) },
            _ => return None,
        })
    }

    /// The domain whose clearance is checked: none for people.
    fn domain(&self) -> Option<&str> {
        match self {
            Subject::User(_) | Subject::Group(_) => None,
            Subject::ServiceAccount { namespace, .. } | Subject::DataProduct { namespace, .. } => Some(namespace),
            Subject::Namespace { name, .. } => Some(name),
        }
    }

    /// The RBAC subject it becomes (`Kind:name` or `ServiceAccount:ns/name`), if any.
    fn rbac(&self) -> Option<String> {
        match self {
            Subject::User(n) => Some(format!("User:{n}")),
            Subject::Group(n) => Some(format!("Group:{n}")),
            Subject::ServiceAccount { namespace, name } | Subject::DataProduct { namespace, name } => {
                Some(format!("ServiceAccount:{namespace}/{name}"))
            }
            Subject::Namespace { .. } => None,
        }
    }
}

pub struct Product {
    pub namespace: String,
    pub name: String,
    level: Level,
    owners: Vec<String>,
    sources: Vec<String>,
    product_inputs: Vec<(String, String)>,
    /// (number, name) of each output port.
    ports: Vec<(i64, String)>,
}

pub struct Source {
    namespace: String,
    name: String,
    level: Level,
    secret: String,
    cidr: Option<String>,
    port: i64,
}

pub struct Policy {
    namespace: String,
    name: String,
    product: String,
    ports: Option<Vec<String>>,
    subjects: Vec<Subject>,
    purpose: Option<String>,
    expires_at: Option<String>,
    starts_at: Option<String>,
    reassess_by: Option<String>,
    created: Option<String>,
    /// The spec as read (for the approvals' digest).
    spec: Value,
}

/// What one policy gives at `now`, once the rules are applied.
pub struct Grant {
    pub namespace: String,
    pub policy: String,
    pub product: String,
    pub ports: Vec<(i64, String)>,
    pub subjects: Vec<Subject>,
}

/// One access that no declaration allows.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// `Kind namespace/name` of the child that gives the access.
    pub child: String,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.child, self.what)
    }
}

/// The declarations and the children of one moment.
#[derive(Default)]
pub struct World {
    pub now: Option<Timestamp>,
    clearances: BTreeMap<String, Level>,
    products: BTreeMap<(String, String), Product>,
    sources: BTreeMap<(String, String), Source>,
    policies: Vec<Policy>,
    network_policies: Vec<Value>,
    roles: BTreeMap<(String, String), Value>,
    role_bindings: Vec<Value>,
    deployments: Vec<Value>,
    services: Vec<Value>,
    /// Secrets released to drmesh (label `drmesh.io/credentials: "true"`), when Secrets
    /// were read at all.
    released: Option<BTreeSet<(String, String)>>,
    /// The API server's addresses (CIDRs), as the `default/kubernetes` Service's
    /// EndpointSlices publish them: people read through its proxy, so a grant to a User
    /// or Group may admit them on the granted ports (security model, O11).
    api_server: Vec<String>,
    /// People's clearances: (`User:name` or `Group:name`) -> (level, expiresAt).
    people: BTreeMap<String, Vec<(Level, Timestamp)>>,
    /// The MeshPolicy `default`, as read.
    mesh_policy: Option<Value>,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn id(kind: &str, obj: &Value) -> String {
    format!("{kind} {}/{}", str_of(&obj["metadata"]["namespace"]), str_of(&obj["metadata"]["name"]))
}

impl World {
    /// Reads every object by its `kind`; kinds the judge does not need are ignored.
    pub fn new(objects: impl IntoIterator<Item = Value>, now: Timestamp) -> World {
        let mut w = World { now: Some(now), ..World::default() };
        for o in objects {
            let ns = str_of(&o["metadata"]["namespace"]);
            let name = str_of(&o["metadata"]["name"]);
            let spec = &o["spec"];
            match o["kind"].as_str().unwrap_or_default() {
                "Namespace" => {
                    // A missing or misspelt clearance label is Public (fail closed).
                    let level = Level::parse(o["metadata"]["labels"]["drmesh.io/clearance"].as_str());
                    w.clearances.insert(name, level.unwrap_or(Level::Public));
                }
                "DataProduct" => {
                    let product = Product {
                        namespace: ns.clone(),
                        name: name.clone(),
                        // An unreadable classification is taken as the highest: it then runs
                        // nowhere and reaches nothing classified.
                        level: Level::parse(spec["classification"].as_str()).unwrap_or(Level::Restricted),
                        owners: items(&spec["owners"])
                            .filter_map(|o| Some(format!("{}:{}", o["kind"].as_str()?, o["name"].as_str()?)))
                            .collect(),
                        sources: items(&spec["inputs"])
                            .filter_map(|i| i["dataSource"].as_str())
                            .map(String::from)
                            .collect(),
                        product_inputs: items(&spec["inputs"])
                            .filter_map(|i| {
                                let p = &i["dataProduct"];
                                Some((p["namespace"].as_str()?.to_string(), p["name"].as_str()?.to_string()))
                            })
                            .collect(),
                        ports: items(&spec["outputPorts"])
                            .filter_map(|p| Some((p["port"].as_i64()?, p["name"].as_str()?.to_string())))
                            .collect(),
                    };
                    w.products.insert((ns, name), product);
                }
                "DataSource" => {
                    let source = Source {
                        namespace: ns.clone(),
                        name: name.clone(),
                        level: Level::parse(spec["classification"].as_str()).unwrap_or(Level::Restricted),
                        secret: str_of(&spec["credentialsSecretRef"]["name"]),
                        cidr: spec["endpoint"]["cidr"].as_str().map(String::from),
                        port: spec["endpoint"]["port"].as_i64().unwrap_or(0),
                    };
                    w.sources.insert((ns, name), source);
                }
                "AccessPolicy" => w.policies.push(Policy {
                    namespace: ns,
                    name,
                    product: str_of(&spec["dataProduct"]),
                    ports: spec["ports"].as_array().map(|ports| {
                        ports.iter().map(|p| p.as_str().map(String::from).unwrap_or_else(|| p.to_string())).collect()
                    }),
                    // A subject the judge cannot read is no subject: it is given nothing.
                    subjects: items(&spec["subjects"]).filter_map(Subject::parse).collect(),
                    purpose: spec["purpose"].as_str().map(String::from),
                    expires_at: spec["expiresAt"].as_str().map(String::from),
                    starts_at: spec["startsAt"].as_str().map(String::from),
                    reassess_by: spec["reassessBy"].as_str().map(String::from),
                    created: o["metadata"]["creationTimestamp"].as_str().map(String::from),
                    spec: spec.clone(),
                }),
                "Clearance" => {
                    let who = format!("{}:{}", str_of(&spec["subject"]["kind"]), str_of(&spec["subject"]["name"]));
                    // An unreadable level or expiry clears nobody.
                    if let (Some(level), Ok(until)) =
                        (Level::parse(spec["level"].as_str()), str_of(&spec["expiresAt"]).parse::<Timestamp>())
                    {
                        w.people.entry(who).or_default().push((level, until));
                    }
                }
                "MeshPolicy" if name == "default" => w.mesh_policy = Some(spec.clone()),
                "NetworkPolicy" => w.network_policies.push(o),
                "Role" => {
                    w.roles.insert((ns, name), o);
                }
                "RoleBinding" => w.role_bindings.push(o),
                "Deployment" => w.deployments.push(o),
                "Service" => w.services.push(o),
                "EndpointSlice"
                    if ns == "default" && o["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes" =>
                {
                    let v6 = o["addressType"] == "IPv6";
                    for address in items(&o["endpoints"]).flat_map(|e| items(&e["addresses"])) {
                        if let Some(a) = address.as_str() {
                            w.api_server.push(format!("{a}/{}", if v6 { 128 } else { 32 }));
                        }
                    }
                }
                "Secret" => {
                    let released = w.released.get_or_insert_with(BTreeSet::new);
                    if o["metadata"]["labels"]["drmesh.io/credentials"] == "true" {
                        released.insert((ns, name));
                    }
                }
                _ => {}
            }
        }
        w
    }

    /// A domain's clearance: its label, `Public` when missing or unknown.
    fn clearance(&self, namespace: &str) -> Level {
        self.clearances.get(namespace).copied().unwrap_or(Level::Public)
    }

    fn product(&self, namespace: &str, name: &str) -> Option<&Product> {
        self.products.get(&(namespace.to_string(), name.to_string()))
    }

    /// A product runs only in a domain cleared for it and when no input is classified
    /// above it (no declassification by derivation).
    fn may_run(&self, p: &Product) -> bool {
        let inputs_ok = p
            .sources
            .iter()
            .filter_map(|s| self.sources.get(&(p.namespace.clone(), s.clone())))
            .map(|s| s.level)
            .chain(p.product_inputs.iter().filter_map(|(ns, n)| self.product(ns, n)).map(|i| i.level))
            .all(|l| l <= p.level);
        self.clearance(&p.namespace) >= p.level && inputs_ok
    }

    /// The products of the source's namespace that may use it: they list it, may run,
    /// and are classified at least as high as the source; and the source's Secret is
    /// released to drmesh (when the Secrets were read).
    fn source_users(&self, s: &Source) -> Vec<&Product> {
        let released = self.released.as_ref().is_none_or(|r| r.contains(&(s.namespace.clone(), s.secret.clone())));
        if !released {
            return Vec::new();
        }
        self.products
            .values()
            .filter(|p| p.namespace == s.namespace && p.sources.contains(&s.name))
            .filter(|p| self.may_run(p) && s.level <= p.level)
            .collect()
    }

    /// What a policy gives now (None: nothing), from docs/guide/accesspolicy.md.
    fn grant(&self, a: &Policy) -> Option<Grant> {
        let now = self.now?;
        let expires: Option<Timestamp> = match &a.expires_at {
            Some(t) => Some(t.parse().ok()?),
            None => None,
        };
        let product = self.product(&a.namespace, &a.product)?;
        if expires.is_some_and(|t| now >= t) {
            return None; // effective until the instant it expires, excluded
        }
        if product.level == Level::Restricted
            && (a.purpose.as_deref().is_none_or(|p| p.trim().is_empty()) || expires.is_none())
        {
            return None; // need to know: a purpose and an expiry
        }
        // The window (docs/guide/accesspolicy.md): nothing before startsAt; suspended once
        // reassessBy and the MeshPolicy's grace (7 days by default) have passed.
        let time = |t: &Option<String>| t.as_deref().map(|t| t.parse::<Timestamp>().ok());
        if let Some(start) = time(&a.starts_at) {
            if start.is_none_or(|s| now < s) {
                return None;
            }
        }
        let policy = self.mesh_policy.as_ref();
        if let Some(reassess) = time(&a.reassess_by) {
            let grace = policy
                .and_then(|m| m["reassessmentGrace"].as_str())
                .map(days_hours_minutes)
                .unwrap_or(Some(7 * 86_400));
            let end = reassess.zip(grace).and_then(|(r, g)| r.checked_add(jiff::SignedDuration::from_secs(g)).ok());
            if end.is_none_or(|e| now >= e) {
                return None;
            }
        }
        // The longest grant of the product's level, from startsAt or the creation.
        let level_name = match product.level {
            Level::Public => "Public",
            Level::Internal => "Internal",
            Level::Restricted => "Restricted",
        };
        if let Some(max) = policy.and_then(|m| m["maxGrantDuration"][level_name].as_str()) {
            let from = time(&a.starts_at).flatten().or_else(|| time(&a.created).flatten()).unwrap_or(now);
            let longest = days_hours_minutes(max)?;
            let length = expires?.as_second() - from.as_second();
            if length > longest {
                return None;
            }
        }
        let ports: Vec<(i64, String)> = match &a.ports {
            None => product.ports.clone(),
            Some(wanted) => {
                let mut ports = Vec::new();
                for w in wanted {
                    // One unknown port refuses the whole policy.
                    let port = product.ports.iter().find(|(n, name)| name == w || n.to_string() == *w)?;
                    ports.push(port.clone());
                }
                ports
            }
        };
        let approved = product.level < Level::Restricted || approvals::approved(self, a);
        if !approved && approvals::whole_grant(self) {
            return None;
        }
        let subjects: Vec<Subject> = a
            .subjects
            .iter()
            .filter(|s| s.domain().is_none_or(|d| self.clearance(d) >= product.level))
            .filter(|s| match s {
                // People: a clearance of their own in force at the product's level, and on
                // a Restricted product the two-person rule (docs/guide/people.md).
                Subject::User(_) | Subject::Group(_) => self.person_cleared(s, product.level) && approved,
                _ => true,
            })
            .cloned()
            .collect();
        (!ports.is_empty() && !subjects.is_empty()).then(|| Grant {
            namespace: a.namespace.clone(),
            policy: a.name.clone(),
            product: a.product.clone(),
            ports,
            subjects,
        })
    }

    /// Whether a User or Group holds a Clearance in force at `level` (Public needs none).
    fn person_cleared(&self, s: &Subject, level: Level) -> bool {
        if level == Level::Public {
            return true;
        }
        let Some(now) = self.now else { return false };
        let Some(who) = s.rbac() else { return false };
        self.people.get(&who).is_some_and(|held| held.iter().any(|(l, until)| *l >= level && now < *until))
    }

    /// Whether every owner of an Internal product is cleared (owners then read its data).
    pub fn owners_cleared(&self, p: &Product) -> bool {
        p.owners.iter().all(|o| {
            let (kind, name) = o.split_once(':').unwrap_or(("", ""));
            let subject = if kind == "User" { Subject::User(name.into()) } else { Subject::Group(name.into()) };
            self.person_cleared(&subject, p.level)
        })
    }

    /// Every grant in force now.
    pub fn grants(&self) -> Vec<Grant> {
        self.policies.iter().filter_map(|a| self.grant(a)).collect()
    }
}

/// Every access given by a child that the declarations do not allow now, sorted.
pub fn judge(world: &World) -> Vec<Finding> {
    let grants = world.grants();
    let mut findings = network::judge(world, &grants);
    findings.extend(rbac::judge(world, &grants));
    findings.extend(rbac::judge_workloads(world));
    findings.extend(rbac::judge_services(world));
    findings.sort();
    findings.dedup();
    findings
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects these labels; an
/// empty selector selects everything.
pub fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions_match = items(&selector["matchExpressions"]).all(|e| {
        let value = labels.get(e["key"].as_str().unwrap_or_default());
        let values: Vec<&str> = items(&e["values"]).filter_map(Value::as_str).collect();
        match e["operator"].as_str() {
            Some("In") => value.is_some_and(|v| values.contains(&v.as_str())),
            Some("NotIn") => value.is_none_or(|v| !values.contains(&v.as_str())),
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            _ => false,
        }
    });
    labels_match && expressions_match
}

/// The values a selector requires for `key` (from `matchLabels` and `In`), or None when
/// it lets the key take any value or none.
pub fn required_values(selector: &Value, key: &str) -> Option<BTreeSet<String>> {
    let mut allowed: Option<BTreeSet<String>> = None;
    let mut narrow = |values: BTreeSet<String>| {
        allowed = Some(match allowed.take() {
            Some(a) => a.intersection(&values).cloned().collect(),
            None => values,
        });
    };
    if let Some(v) = selector["matchLabels"][key].as_str() {
        narrow([v.to_string()].into());
    }
    for e in items(&selector["matchExpressions"]) {
        if e["key"] == key && e["operator"] == "In" {
            narrow(items(&e["values"]).filter_map(Value::as_str).map(String::from).collect());
        }
    }
    allowed
}

/// The labels of a product's pods, as the guide states them.
pub fn product_pod_labels(product: &str) -> BTreeMap<String, String> {
    [
        (PRODUCT_LABEL.to_string(), product.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), "drmesh".to_string()),
    ]
    .into()
}
