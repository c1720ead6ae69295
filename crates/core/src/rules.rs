//! The rules of the mesh, as pure decisions over a [`MeshView`] at a given instant.
//!
//! - no declassification by derivation: a product's classification is at least each input's;
//! - a product runs only in a domain cleared for its classification;
//! - an input product needs an effective grant naming the consuming product (in the
//!   same domain too: a product is reachable only from its granted consumers);
//! - a grant reaches a subject only if the subject's domain is cleared for the product;
//! - a grant on a `Restricted` product needs a purpose and an expiry;
//! - an expired grant grants nothing.
//!
//! Nothing here reads a clock or the network: `now` is passed in.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;

use super::view::{MeshView, Readiness};
use crate::api::{AccessPolicy, Classification, DataProduct, Subject, SubjectKind};

pub use crate::reason::Reason;

/// Whether `value` is a valid label value (<= 63 characters, alphanumeric at both ends,
/// `-`, `_`, `.` inside): children carry their parent's name as a label.
pub fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

/// Whether `key` is a valid label key: an optional DNS-1123 subdomain prefix (<= 253) and
/// `/`, then a name of <= 63 characters as for label values, not empty.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                let b = part.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                    && b[0] != b'-'
                    && b[b.len() - 1] != b'-'
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Whether `name` is a DNS-1123 label (what drmesh requires of the names it derives
/// children and labels from).
pub fn is_dns1123_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Why something is not (fully) allowed: a stable reason, the field of the object it is
/// about (when one field is), and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    /// The field path, e.g. `spec.expiresAt`, `spec.inputs[2]`.
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, field: None, message: message.into() }
    }

    /// The same problem, about `field`.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// A reference to a product in another (or the same) namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProductKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ProductKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Names of the sources a product reads (same namespace).
pub fn source_inputs(product: &DataProduct) -> impl Iterator<Item = &str> {
    product.spec.inputs.iter().filter_map(|i| i.data_source.as_deref())
}

/// The products a product reads, with the ports it asks for (empty: all granted ports).
pub fn product_inputs(product: &DataProduct) -> impl Iterator<Item = ProductKey> + '_ {
    product.spec.inputs.iter().filter_map(|i| {
        i.data_product.as_ref().map(|r| ProductKey { namespace: r.namespace.clone(), name: r.name.clone() })
    })
}

/// A product's output ports (number, name) selected by a list of names or numbers;
/// `None` or an empty list selects all. Unknown entries are returned separately.
pub fn select_ports(product: &DataProduct, wanted: Option<&[String]>) -> (Vec<(i32, String)>, Vec<String>) {
    let all: Vec<(i32, String)> = product.spec.output_ports.iter().map(|p| (p.port, p.name.clone())).collect();
    match wanted {
        None | Some([]) => (all, vec![]),
        Some(wanted) => {
            let mut selected = Vec::new();
            let mut unknown = Vec::new();
            for want in wanted {
                match all.iter().find(|(n, name)| name == want || n.to_string() == *want) {
                    Some(p) if !selected.contains(p) => selected.push(p.clone()),
                    Some(_) => {}
                    None => unknown.push(want.clone()),
                }
            }
            selected.sort();
            (selected, unknown)
        }
    }
}

/// Parses `expiresAt`.
pub fn parse_expiry(value: &str) -> Result<Timestamp, Problem> {
    value.parse::<Timestamp>().map_err(|e| {
        Problem::new(Reason::InvalidExpiry, format!("spec.expiresAt {value:?} is not an RFC 3339 time: {e}"))
            .at("spec.expiresAt")
    })
}

/// What one AccessPolicy grants at `now`.
#[derive(Clone, Debug)]
pub struct GrantPlan {
    /// The product the policy grants access to, when it exists.
    pub product: Option<Arc<DataProduct>>,
    /// Subjects that get access.
    pub effective: Vec<Subject>,
    /// Subjects refused, each with its reason.
    pub denied: Vec<(Subject, Problem)>,
    /// A problem with the whole policy: nothing is granted.
    pub problem: Option<Problem>,
    /// Granted output ports (number, name).
    pub ports: Vec<(i32, String)>,
    /// When the grant ends; the operator revokes it then.
    pub expires_at: Option<Timestamp>,
    /// Where people's reads through the API server's proxy come from (CIDRs), admitted
    /// on the granted ports: set only when a User, Group or ServiceAccount subject (who
    /// read through the proxy) is effective.
    pub proxy_from: Vec<String>,
    /// The first instant after `now` at which this plan may change (expiry, start,
    /// reassessment, end of its grace, end of a clearance it relies on): re-plan then.
    pub next_change: Option<Timestamp>,
    /// The first instant after `now` at which what the grant gives its workload subjects
    /// changes (expiry, start, suspension at the end of the reassessment grace): their
    /// products re-plan then. People's clearances do not change it.
    pub reach_until: Option<Timestamp>,
    /// `reassessBy` has passed; the grant holds until the grace ends.
    pub reassessment_due: Option<Problem>,
    /// The approvals of a Restricted grant, as checked (None: not needed).
    pub approvals: Option<crate::people::Approvals>,
    /// The Clearance each effective person's access rests on (above Public), as its
    /// audit record names it: `User:alice: Clearance alice (Restricted until ...)`.
    pub cleared_by: Vec<String>,
}

impl GrantPlan {
    pub fn grants_anything(&self) -> bool {
        self.problem.is_none() && !self.effective.is_empty() && !self.ports.is_empty()
    }

    /// A plan that grants nothing, every subject denied for `problem`.
    pub fn refused(
        product: Option<Arc<DataProduct>>,
        subjects: &[Subject],
        problem: Problem,
        expires_at: Option<Timestamp>,
    ) -> Self {
        let denied = subjects.iter().map(|s| (s.clone(), problem.clone())).collect();
        Self {
            product,
            effective: vec![],
            denied,
            problem: Some(problem),
            ports: vec![],
            expires_at,
            proxy_from: vec![],
            next_change: None,
            reach_until: None,
            reassessment_due: None,
            approvals: None,
            cleared_by: vec![],
        }
    }

    /// The same plan, re-planned no later than `next_change`, its reach changing no later
    /// than `reach_until`.
    pub fn until(mut self, next_change: Option<Timestamp>, reach_until: Option<Timestamp>) -> Self {
        self.next_change = earliest(self.next_change, next_change);
        self.reach_until = earliest(self.reach_until, reach_until);
        self
    }
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses an optional RFC 3339 field of a grant.
fn parse_time(value: Option<&str>, field: &str) -> Result<Option<Timestamp>, Problem> {
    value
        .map(|v| {
            v.parse::<Timestamp>().map_err(|e| {
                Problem::new(Reason::InvalidTime, format!("{field} {v:?} is not an RFC 3339 time: {e}")).at(field)
            })
        })
        .transpose()
}

/// The namespace whose clearance a subject must have, if any (people have none).
pub fn subject_namespace(subject: &Subject) -> Option<&str> {
    match subject.kind {
        SubjectKind::User | SubjectKind::Group => None,
        SubjectKind::Namespace => subject.name.as_deref(),
        SubjectKind::ServiceAccount | SubjectKind::DataProduct => subject.namespace.as_deref(),
    }
}

/// Decides what `policy` grants at `now`.
pub fn plan_grant(view: &dyn MeshView, policy: &AccessPolicy, now: Timestamp) -> GrantPlan {
    let namespace = policy.namespace().unwrap_or_default();
    let spec = &policy.spec;
    let subjects = &spec.subjects;
    let expires_at = match spec.expires_at.as_deref().map(parse_expiry).transpose() {
        Ok(t) => t,
        Err(problem) => return GrantPlan::refused(None, subjects, problem, None),
    };
    // A grant being deleted grants nothing from the moment its deletion is asked, even
    // while a foreign finalizer keeps the object.
    if policy.metadata.deletion_timestamp.is_some() {
        let problem = Problem::new(Reason::PolicyDeleting, "the AccessPolicy is being deleted: access is withdrawn");
        return GrantPlan::refused(None, subjects, problem, expires_at);
    }
    let name = policy.name_any();
    if !is_dns1123_label(&name) {
        let problem = Problem::new(
            Reason::InvalidName,
            format!(
                "metadata.name {name:?} must be a DNS-1123 label (lowercase letters, digits and '-', at most 63 \
                 characters): the grant's children carry it as a label"
            ),
        )
        .at("metadata.name");
        return GrantPlan::refused(None, subjects, problem, expires_at);
    }
    let Some(product) = view.product(&namespace, &spec.data_product) else {
        let problem = Problem::new(
            Reason::DataProductNotFound,
            format!("spec.dataProduct: DataProduct {namespace}/{} does not exist", spec.data_product),
        )
        .at("spec.dataProduct");
        return GrantPlan::refused(None, subjects, problem, expires_at);
    };
    if product.metadata.deletion_timestamp.is_some() {
        let problem = Problem::new(
            Reason::DataProductDeleting,
            format!("spec.dataProduct: DataProduct {namespace}/{} is being deleted", spec.data_product),
        )
        .at("spec.dataProduct");
        return GrantPlan::refused(Some(product), subjects, problem, expires_at);
    }
    let classification = product.spec.classification;
    if let Some(expiry) = expires_at
        && expiry <= now
    {
        let problem = Problem::new(Reason::Expired, format!("the grant expired at {expiry}")).at("spec.expiresAt");
        return GrantPlan::refused(Some(product), subjects, problem, expires_at);
    }
    if classification == Classification::Restricted {
        let purpose_missing = spec.purpose.as_deref().map(str::trim).unwrap_or_default().is_empty();
        if purpose_missing {
            let problem = Problem::new(
                Reason::MissingPurpose,
                format!("spec.purpose is required: {} is Restricted (need to know)", spec.data_product),
            )
            .at("spec.purpose");
            return GrantPlan::refused(Some(product), subjects, problem, expires_at);
        }
        if expires_at.is_none() {
            let problem = Problem::new(
                Reason::MissingExpiry,
                format!(
                    "spec.expiresAt is required: {} is Restricted (every grant is time-bounded)",
                    spec.data_product
                ),
            )
            .at("spec.expiresAt");
            return GrantPlan::refused(Some(product), subjects, problem, expires_at);
        }
    }
    let window = (
        parse_time(spec.starts_at.as_deref(), "spec.startsAt"),
        parse_time(spec.reassess_by.as_deref(), "spec.reassessBy"),
    );
    let (starts_at, reassess_by) = match window {
        (Ok(s), Ok(r)) => (s, r),
        (Err(problem), _) | (_, Err(problem)) => {
            return GrantPlan::refused(Some(product), subjects, problem, expires_at);
        }
    };
    let future = |t: Option<Timestamp>| t.filter(|t| *t > now);
    let mesh = view.mesh_policy();
    let mesh_spec = mesh.as_ref().map(|m| &m.spec);
    // Nothing is effective before the start (re-planned exactly then), but every check
    // that does not wait for it is made now: a grant that will not be valid as written
    // says why before its start, not once it comes.
    let pending = starts_at.filter(|start| *start > now);
    if let Some(problem) = duration_problem(policy, mesh_spec, classification, starts_at, expires_at, now) {
        return GrantPlan::refused(Some(product), subjects, problem, expires_at);
    }
    let grace = mesh_spec
        .and_then(|m| m.reassessment_grace.as_deref())
        .and_then(crate::people::parse_duration)
        .or_else(|| crate::people::parse_duration(crate::people::DEFAULT_REASSESSMENT_GRACE))
        .unwrap_or_default();
    let suspended_at = reassess_by.and_then(|r| r.checked_add(grace).ok());
    let reach_until = earliest(future(expires_at), future(suspended_at));
    let mut next_change = earliest(reach_until, future(reassess_by));
    if let Some(at) = suspended_at
        && at <= now
    {
        let problem = Problem::new(
            Reason::ReassessmentDue,
            format!("the grant was due for reassessment at {} and its grace ended at {at}: suspended until spec.reassessBy is moved", reassess_by.unwrap_or(at)),
        )
        .at("spec.reassessBy");
        return GrantPlan::refused(Some(product), subjects, problem, expires_at).until(next_change, reach_until);
    }
    let reassessment_due = reassess_by.filter(|r| *r <= now).map(|r| {
        Problem::new(
            Reason::ReassessmentDue,
            format!(
                "the grant was due for reassessment at {r}; it is suspended at {} unless spec.reassessBy is moved",
                suspended_at.unwrap_or(r)
            ),
        )
        .at("spec.reassessBy")
    });
    let (ports, unknown) = select_ports(&product, spec.ports.as_deref());
    if !unknown.is_empty() {
        let problem = Problem::new(
            Reason::PortNotFound,
            format!("spec.ports: {} has no output port {}", spec.data_product, unknown.join(", ")),
        )
        .at("spec.ports");
        return GrantPlan::refused(Some(product), subjects, problem, expires_at);
    }
    // The two-person rule: checked only when it decides something (a Restricted grant
    // naming people, or any Restricted grant when the MeshPolicy covers all subjects).
    let rule = mesh_spec.and_then(|m| m.approvals.as_ref());
    let whole_grant = rule.is_some_and(|r| r.applies_to == crate::api::ApprovalScope::All);
    let names_people = subjects.iter().any(|s| crate::people::person_kind(s.kind).is_some());
    let approvals = (classification == Classification::Restricted && (whole_grant || names_people))
        .then(|| crate::people::check_approvals(policy, mesh_spec, &crate::people::consumer_side(view, policy)));
    let approval_problem = approvals.as_ref().filter(|a| !a.satisfied()).map(|a| {
        Problem::new(
            Reason::ApprovalMissing,
            format!("a Restricted grant needs approvals of this exact spec: {}", a.explain()),
        )
        .at("spec.approvals")
    });
    if whole_grant && let Some(problem) = approval_problem.clone() {
        let mut plan = GrantPlan::refused(Some(product), subjects, problem, expires_at).until(next_change, reach_until);
        plan.approvals = approvals;
        return plan;
    }
    // People's clearances are judged at the instant the grant takes effect.
    let effective_from = pending.unwrap_or(now);
    let mut effective = Vec::new();
    let mut denied = Vec::new();
    let mut cleared_by = Vec::new();
    for (index, subject) in subjects.iter().enumerate() {
        let bad_key = subject
            .pod_selector
            .as_ref()
            .and_then(|selector| selector.match_labels.keys().find(|key| !is_label_key(key)));
        if let Some(key) = bad_key {
            let message = format!("spec.subjects[{index}].podSelector.matchLabels: {key:?} is not a valid label key");
            let problem = Problem::new(Reason::InvalidPodSelector, message).at(format!("spec.subjects[{index}]"));
            denied.push((subject.clone(), problem));
            continue;
        }
        let field = format!("spec.subjects[{index}]");
        match subject_namespace(subject) {
            Some(ns) if view.clearance(ns) < classification => {
                let message = format!(
                    "{} is in domain {ns} cleared {}, below the product's classification {}",
                    subject_display(subject),
                    view.clearance(ns),
                    classification
                );
                denied.push((subject.clone(), Problem::new(Reason::ClearanceTooLow, message).at(field)));
                continue;
            }
            _ => {}
        }
        if let (Some(kind), Some(name)) = (crate::people::person_kind(subject.kind), subject.name.as_deref())
            && classification > Classification::Public
        {
            let held = match crate::people::held_clearance(view, kind, name, effective_from) {
                Some(held) if held.level >= classification => {
                    next_change = earliest(next_change, Some(held.until));
                    held
                }
                held => {
                    let held = held.map_or("no Clearance in force".to_string(), |held| {
                        format!("a Clearance {} until {}", held.level, held.until)
                    });
                    let held = match pending {
                        Some(start) => format!("{held} at the grant's start {start}"),
                        None => held,
                    };
                    let message = format!(
                        "{} holds {held}, below the product's classification {classification} (need to know)",
                        subject_display(subject)
                    );
                    denied.push((subject.clone(), Problem::new(Reason::SubjectNotCleared, message).at(field)));
                    continue;
                }
            };
            if let Some(problem) = &approval_problem {
                denied.push((subject.clone(), problem.clone()));
                continue;
            }
            cleared_by.push(format!("{}: {held}", subject_display(subject)));
        }
        effective.push(subject.clone());
    }
    if let Some(start) = pending {
        return not_yet_started(
            NotYetStarted { product, start, expires_at, approval_problem, approvals, reassessment_due },
            effective,
            denied,
        )
        .until(next_change, reach_until);
    }
    // People and ServiceAccounts read through the API server's service proxy.
    let proxied = effective
        .iter()
        .any(|s| matches!(s.kind, SubjectKind::User | SubjectKind::Group | SubjectKind::ServiceAccount));
    let proxy_from = if proxied && !ports.is_empty() { view.api_server().cidrs().to_vec() } else { vec![] };
    GrantPlan {
        product: Some(product),
        effective,
        denied,
        problem: None,
        ports,
        expires_at,
        proxy_from,
        next_change,
        reach_until,
        reassessment_due,
        approvals,
        cleared_by,
    }
}

/// What a grant before its start still carries into its plan.
struct NotYetStarted {
    product: Arc<DataProduct>,
    start: Timestamp,
    expires_at: Option<Timestamp>,
    approval_problem: Option<Problem>,
    approvals: Option<crate::people::Approvals>,
    reassessment_due: Option<Problem>,
}

/// The plan of a grant before its start: nothing is effective. The subjects that pass
/// every check wait for the start (`NotYetValid`); the others keep the reason they would
/// be refused for then. The grant's own reason says first what a person must do, then
/// that it waits: approvals of this spec missing for its people (`ApprovalMissing`,
/// naming who has not signed, whatever else refuses them) outranks `NotYetValid`. (Longer than allowed, `DurationTooLong`, and the
/// other whole-grant refusals are decided before this, whatever the start.) Re-planned
/// exactly at the start.
fn not_yet_started(grant: NotYetStarted, waiting: Vec<Subject>, mut denied: Vec<(Subject, Problem)>) -> GrantPlan {
    let NotYetStarted { product, start, expires_at, approval_problem, approvals, reassessment_due } = grant;
    let not_yet = Problem::new(Reason::NotYetValid, format!("the grant starts at {start}")).at("spec.startsAt");
    denied.extend(waiting.into_iter().map(|subject| (subject, not_yet.clone())));
    let problem = match approval_problem {
        Some(approval) => {
            let message = format!("{} (the grant starts at {start})", approval.message);
            Problem { message, ..approval }
        }
        None => not_yet,
    };
    GrantPlan {
        product: Some(product),
        effective: vec![],
        denied,
        problem: Some(problem),
        ports: vec![],
        expires_at,
        proxy_from: vec![],
        next_change: Some(start),
        reach_until: Some(start),
        reassessment_due,
        approvals,
        cleared_by: vec![],
    }
}

/// A grant longer than the MeshPolicy allows for `level` (from its start, or its
/// creation, to its expiry); an unbounded grant where a limit is set.
fn duration_problem(
    policy: &AccessPolicy,
    mesh: Option<&crate::api::MeshPolicySpec>,
    level: Classification,
    starts_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Problem> {
    let text = mesh?.max_grant_duration.as_ref()?.for_level(level)?;
    let Some(max) = crate::people::parse_duration(text) else {
        return Some(Problem::new(
            Reason::DurationTooLong,
            format!("the MeshPolicy's maxGrantDuration.{level} {text:?} cannot be read: no {level} grant is accepted"),
        ));
    };
    let Some(expiry) = expires_at else {
        return Some(
            Problem::new(
                Reason::DurationTooLong,
                format!("spec.expiresAt is required: {level} grants last at most {text} (MeshPolicy)"),
            )
            .at("spec.expiresAt"),
        );
    };
    let created = policy.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let start = starts_at.or(created).unwrap_or(now);
    let length = start.duration_until(expiry);
    (length > max).then(|| {
        Problem::new(
            Reason::DurationTooLong,
            format!(
                "the grant lasts from {start} to {expiry}, longer than the {text} the MeshPolicy allows for {level} grants"
            ),
        )
        .at("spec.expiresAt")
    })
}

/// `kind:namespace/name` or `kind:name`, as audit records and status list subjects.
pub fn subject_display(subject: &Subject) -> String {
    let name = subject.name.as_deref().unwrap_or("");
    match subject.namespace.as_deref() {
        Some(ns) if subject.kind != SubjectKind::Namespace => {
            format!("{}:{ns}/{name}", subject.kind)
        }
        _ => format!("{}:{name}", subject.kind),
    }
}

/// The state of one input of a product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputKey {
    Source(String),
    Product(ProductKey),
}

impl std::fmt::Display for InputKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputKey::Source(name) => write!(f, "DataSource {name}"),
            InputKey::Product(key) => write!(f, "DataProduct {key}"),
        }
    }
}

/// What a product may use of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Mount the source's credentials Secret (the endpoint egress is the source's child).
    Source { secret: String },
    /// Egress to the input product's pods on these ports; `until` is the first instant
    /// it changes (the earliest expiry of a grant it relies on), when one expires.
    Product { key: ProductKey, ports: Vec<i32>, until: Option<Timestamp> },
}

#[derive(Clone, Debug)]
pub struct InputPlan {
    pub input: InputKey,
    pub outcome: Result<Reach, Problem>,
    /// The input may be reached but is not Ready itself: the product does not claim Ready.
    pub waiting: Option<Problem>,
}

/// What the operator does with a product at `now`.
#[derive(Clone, Debug)]
pub struct ProductPlan {
    pub inputs: Vec<InputPlan>,
    /// A rule the product breaks that forbids running it at all.
    pub blocker: Option<Problem>,
    /// The earliest instant at which a grant the product relies on expires (or changes
    /// otherwise), or the clearance of an owner who reads its data ends.
    pub next_expiry: Option<Timestamp>,
    /// Whether the owners read the product's data (`services/proxy`) by being owners:
    /// Public and Internal products with output ports, every owner of an Internal one
    /// holding a Clearance >= Internal in force.
    pub owners_read_data: bool,
    /// Owners who hold no Clearance in force at the product's level (their reads through
    /// ownership are withheld from all owners until they are cleared).
    pub owners_not_cleared: Vec<String>,
    /// While owners read the data of a product above Public: the Clearance each owner's
    /// access rests on, as the `OwnersAccess` record names it.
    pub owners_cleared_by: Vec<String>,
}

impl ProductPlan {
    /// Whether the Deployment may exist.
    pub fn runnable(&self) -> bool {
        self.blocker.is_none()
    }

    /// The first input problem, if any: a refused input, else an input not Ready.
    pub fn input_problem(&self) -> Option<&Problem> {
        self.inputs
            .iter()
            .find_map(|i| i.outcome.as_ref().err())
            .or_else(|| self.inputs.iter().find_map(|i| i.waiting.as_ref()))
    }
}

/// Decides what `product` may run and reach at `now`.
pub fn plan_product(view: &dyn MeshView, product: &DataProduct, now: Timestamp) -> ProductPlan {
    let namespace = product.namespace().unwrap_or_default();
    let name = product.name_any();
    let classification = product.spec.classification;
    let mut inputs = Vec::new();
    let mut next_expiry: Option<Timestamp> = None;
    for (index, input) in product.spec.inputs.iter().enumerate() {
        let field = format!("spec.inputs[{index}]");
        if let Some(source_name) = &input.data_source {
            let key = InputKey::Source(source_name.clone());
            let outcome = source_input(view, &namespace, source_name, classification).map_err(|p| p.at(field));
            inputs.push(InputPlan { input: key, outcome, waiting: None });
        } else if let Some(reference) = &input.data_product {
            let key = ProductKey { namespace: reference.namespace.clone(), name: reference.name.clone() };
            let outcome =
                plan_product_input(view, &namespace, &name, classification, &key, input.ports.as_deref(), now);
            if let Ok(Reach::Product { until: Some(t), .. }) = &outcome {
                next_expiry = Some(next_expiry.map_or(*t, |n| n.min(*t)));
            }
            let waiting = match (&outcome, view.product_ready(&key.namespace, &key.name)) {
                (Ok(_), Readiness::NotReady(why)) => Some(
                    Problem::new(Reason::InputNotReady, format!("spec.inputs: DataProduct {key} is not Ready: {why}"))
                        .at(field.clone()),
                ),
                _ => None,
            };
            let outcome = outcome.map_err(|p| p.at(field));
            inputs.push(InputPlan { input: InputKey::Product(key), outcome, waiting });
        }
    }
    // The blocker as `product_blocker` says it, from the outcomes just computed.
    let blocker = clearance_blocker(view, product).or_else(|| {
        inputs
            .iter()
            .filter_map(|i| i.outcome.as_ref().err())
            .find(|p| p.reason == Reason::ClassificationViolation)
            .cloned()
    });
    let mut owners_read_data = crate::product::owners_read_data(product);
    // Owners read the data for as long as they own the product: where the MeshPolicy
    // bounds how long a grant of this level may last (maxGrantDuration), that would be a
    // grant beyond the bound, so owners read it through an AccessPolicy like anyone else.
    if owners_read_data
        && view
            .mesh_policy()
            .is_some_and(|m| m.spec.max_grant_duration.as_ref().and_then(|d| d.for_level(classification)).is_some())
    {
        owners_read_data = false;
    }
    let mut owners_not_cleared = Vec::new();
    let mut owners_cleared_by = Vec::new();
    if owners_read_data && classification > Classification::Public {
        for owner in &product.spec.owners {
            match crate::people::held_clearance(view, owner.kind, &owner.name, now) {
                Some(held) if held.level >= classification => {
                    next_expiry = earliest(next_expiry, Some(held.until));
                    owners_cleared_by.push(format!("{:?}:{}: {held}", owner.kind, owner.name));
                }
                _ => owners_not_cleared.push(format!("{:?}:{}", owner.kind, owner.name)),
            }
        }
        owners_read_data = owners_not_cleared.is_empty();
    }
    if !owners_read_data {
        owners_cleared_by.clear();
    }
    ProductPlan { inputs, blocker, next_expiry, owners_read_data, owners_not_cleared, owners_cleared_by }
}

/// What forbids running `product` at all ([`ProductPlan::blocker`]): its domain's
/// clearance below its classification, else the first input classified above it. It
/// reads no grant and no clock, so a source asks it of each of its users without planning
/// their grants.
pub fn product_blocker(view: &dyn MeshView, product: &DataProduct) -> Option<Problem> {
    if let Some(problem) = clearance_blocker(view, product) {
        return Some(problem);
    }
    let namespace = product.namespace().unwrap_or_default();
    let classification = product.spec.classification;
    product.spec.inputs.iter().enumerate().find_map(|(index, input)| {
        let violation = if let Some(source_name) = &input.data_source {
            source_input(view, &namespace, source_name, classification).err()
        } else if let Some(reference) = &input.data_product {
            let key = ProductKey { namespace: reference.namespace.clone(), name: reference.name.clone() };
            view.product(&key.namespace, &key.name).and_then(|i| classified_above(&key, &i, classification))
        } else {
            None
        };
        violation.filter(|p| p.reason == Reason::ClassificationViolation).map(|p| p.at(format!("spec.inputs[{index}]")))
    })
}

/// The product's domain is not cleared for its classification.
fn clearance_blocker(view: &dyn MeshView, product: &DataProduct) -> Option<Problem> {
    let namespace = product.namespace().unwrap_or_default();
    let classification = product.spec.classification;
    let clearance = view.clearance(&namespace);
    (clearance < classification).then(|| {
        Problem::new(
            Reason::NamespaceClearanceTooLow,
            format!(
                "spec.classification {classification} exceeds the clearance {clearance} of domain {namespace} \
                 (namespace label drmesh.io/clearance)"
            ),
        )
        .at("spec.classification")
    })
}

/// What a product classified `classification` in `namespace` gets of its input, the
/// source `source_name`: its Secret, or why not.
pub fn source_input(
    view: &dyn MeshView,
    namespace: &str,
    source_name: &str,
    classification: Classification,
) -> Result<Reach, Problem> {
    match view.source(namespace, source_name) {
        None => Err(Problem::new(
            Reason::InputNotFound,
            format!("spec.inputs: DataSource {namespace}/{source_name} does not exist"),
        )),
        Some(source) if source.spec.classification > classification => Err(Problem::new(
            Reason::ClassificationViolation,
            format!(
                "spec.inputs: DataSource {source_name} is {} but this product is {classification}: \
                 derived data cannot be classified lower than its inputs",
                source.spec.classification
            ),
        )),
        // A source that is not Ready (Secret missing or not released for drmesh,
        // endpoint unusable) lends nothing: its Secret is never mounted.
        Some(source) => match view.source_ready(namespace, source_name) {
            Readiness::NotReady(why) => Err(Problem::new(
                Reason::InputNotReady,
                format!("spec.inputs: DataSource {source_name} is not Ready: {why}"),
            )),
            Readiness::Ready | Readiness::Unknown => {
                Ok(Reach::Source { secret: source.spec.credentials_secret_ref.name.clone() })
            }
        },
    }
}

/// The input product `key` classified above a product classified `classification`.
fn classified_above(key: &ProductKey, input: &DataProduct, classification: Classification) -> Option<Problem> {
    (input.spec.classification > classification).then(|| {
        Problem::new(
            Reason::ClassificationViolation,
            format!(
                "spec.inputs: DataProduct {key} is {} but this product is {classification}: \
                 derived data cannot be classified lower than its inputs",
                input.spec.classification
            ),
        )
    })
}

fn plan_product_input(
    view: &dyn MeshView,
    namespace: &str,
    name: &str,
    classification: Classification,
    key: &ProductKey,
    wanted_ports: Option<&[String]>,
    now: Timestamp,
) -> Result<Reach, Problem> {
    let Some(input) = view.product(&key.namespace, &key.name) else {
        return Err(Problem::new(Reason::InputNotFound, format!("spec.inputs: DataProduct {key} does not exist")));
    };
    if let Some(violation) = classified_above(key, &input, classification) {
        return Err(violation);
    }
    let mut granted: BTreeSet<i32> = BTreeSet::new();
    let mut until: Option<Timestamp> = None;
    for policy in view.policies_for(&key.namespace, &key.name) {
        let plan = plan_grant(view, &policy, now);
        let names_us = plan.effective.iter().any(|s| {
            s.kind == SubjectKind::DataProduct
                && s.namespace.as_deref() == Some(namespace)
                && s.name.as_deref() == Some(name)
        });
        if plan.problem.is_none() && names_us {
            granted.extend(plan.ports.iter().map(|p| p.0));
        }
        // The reach changes when any grant naming us changes: the first to expire, or
        // one that starts later or is suspended at the end of its reassessment grace.
        let named = policy.spec.subjects.iter().any(|s| {
            s.kind == SubjectKind::DataProduct
                && s.namespace.as_deref() == Some(namespace)
                && s.name.as_deref() == Some(name)
        });
        if named {
            until = earliest(until, plan.reach_until);
        }
    }
    let (wanted, _) = select_ports(&input, wanted_ports);
    let ports: Vec<i32> = wanted.into_iter().map(|p| p.0).filter(|p| granted.contains(p)).collect();
    if ports.is_empty() {
        return Err(Problem::new(
            Reason::InputNotGranted,
            format!(
                "spec.inputs: no effective AccessPolicy in {} grants DataProduct {namespace}/{name} access to {key}",
                key.namespace
            ),
        ));
    }
    Ok(Reach::Product { key: key.clone(), ports, until })
}

/// The products that may read `namespace/name` now: every product that declares it as
/// an input and whose plan reaches it (same domain, or granted).
pub fn product_consumers(
    view: &dyn MeshView,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Vec<crate::api::DataProductRef> {
    let mut consumers = Vec::new();
    for user in view.products_using_product(namespace, name) {
        let plan = plan_product(view, &user, now);
        let reaches = plan.inputs.iter().any(
            |i| matches!(&i.outcome, Ok(Reach::Product { key, .. }) if key.namespace == namespace && key.name == name),
        );
        if reaches {
            consumers.push(crate::api::DataProductRef::new(user.namespace().unwrap_or_default(), user.name_any()));
        }
    }
    consumers.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    consumers
}
