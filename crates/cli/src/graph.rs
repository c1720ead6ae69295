//! `drmesh graph`: the mesh as a picture — domains with their clearance, sources,
//! products coloured by classification, lineage edges, and grants to people, service
//! accounts and namespaces with their expiry. Refused edges are drawn dashed in red with
//! their reason. One model, three renderings: Mermaid, Graphviz DOT and SVG (drawn
//! in-process, see `svg.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{Classification, Subject, SubjectKind};
use crate::mesh::rules::{self, InputKey, Reach};
use crate::mesh::{MeshView, Snapshot};

/// What a node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    Source,
    Product,
    /// A reference to something the manifests do not declare.
    Missing,
    /// A User or Group.
    Person,
    ServiceAccount,
    /// Pods of a namespace (a Namespace subject).
    Pods,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique, made of `[a-z0-9_]`.
    pub id: String,
    pub kind: NodeKind,
    pub domain: Option<String>,
    pub label: String,
    pub detail: String,
    pub classification: Option<Classification>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub label: String,
    /// Refused by a rule (drawn dashed, red, with the reason as label).
    pub denied: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Domain {
    pub name: String,
    pub clearance: Classification,
}

/// The picture of a mesh at an instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub domains: Vec<Domain>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Fill and stroke of each classification.
pub fn colours(classification: Option<Classification>) -> (&'static str, &'static str) {
    match classification {
        Some(Classification::Public) => ("#e8f5e9", "#2e7d32"),
        Some(Classification::Internal) => ("#fff3e0", "#ef6c00"),
        Some(Classification::Restricted) => ("#ffebee", "#c62828"),
        None => ("#eceff1", "#546e7a"),
    }
}

/// Colour of refused edges.
pub const DENIED: &str = "#c62828";

/// Node ids: a prefix and the parts, with anything but `[a-z0-9]` turned into `_`.
fn node_id(prefix: &str, parts: &[&str]) -> String {
    let mut id = prefix.to_string();
    for part in parts {
        id.push('_');
        id.extend(part.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' }));
    }
    // Names differing only in punctuation must not collide: add a short hash of the raw parts.
    let raw = parts.join("/");
    if raw.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '/')) {
        let hash = raw.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let _ = write!(id, "_{hash:08x}");
    }
    id
}

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

struct Builder<'a> {
    view: &'a Snapshot,
    graph: Graph,
    ids: BTreeSet<String>,
    domains: BTreeSet<String>,
}

impl Builder<'_> {
    fn node(&mut self, node: Node) -> String {
        let id = node.id.clone();
        if let Some(d) = &node.domain {
            self.domains.insert(d.clone());
        }
        if self.ids.insert(id.clone()) {
            self.graph.nodes.push(node);
        }
        id
    }

    fn missing(&mut self, kind: &str, namespace: &str, name: &str) -> String {
        self.node(Node {
            id: node_id("missing", &[namespace, name]),
            kind: NodeKind::Missing,
            domain: Some(namespace.to_string()),
            label: name.to_string(),
            detail: format!("{kind} not declared"),
            classification: None,
        })
    }

    fn product_id(&mut self, namespace: &str, name: &str) -> String {
        match self.view.product(namespace, name) {
            Some(_) => node_id("dp", &[namespace, name]),
            None => self.missing("DataProduct", namespace, name),
        }
    }

    fn subject(&mut self, subject: &Subject) -> String {
        let name = subject.name.clone().unwrap_or_default();
        let namespace = subject.namespace.clone().unwrap_or_default();
        match subject.kind {
            SubjectKind::User | SubjectKind::Group => self.node(Node {
                id: node_id(if subject.kind == SubjectKind::User { "user" } else { "group" }, &[&name]),
                kind: NodeKind::Person,
                domain: None,
                label: name.clone(),
                detail: subject.kind.to_string(),
                classification: None,
            }),
            SubjectKind::ServiceAccount => self.node(Node {
                id: node_id("sa", &[&namespace, &name]),
                kind: NodeKind::ServiceAccount,
                domain: Some(namespace),
                label: name,
                detail: "ServiceAccount".into(),
                classification: None,
            }),
            SubjectKind::DataProduct => self.product_id(&namespace, &name),
            SubjectKind::Namespace => {
                let selector: Vec<String> = subject
                    .pod_selector
                    .iter()
                    .flat_map(|s| s.match_labels.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect();
                let label = if selector.is_empty() { "all pods".to_string() } else { selector.join(",") };
                let raw = selector.join(",");
                let hash = raw.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                let id = if raw.is_empty() {
                    node_id("pods", &[&name])
                } else {
                    format!("{}_{hash:08x}", node_id("pods", &[&name]))
                };
                self.node(Node {
                    id,
                    kind: NodeKind::Pods,
                    domain: Some(name),
                    label,
                    detail: "pods (network only)".into(),
                    classification: None,
                })
            }
        }
    }
}

/// The picture of `view` at `now`, in a stable order.
pub fn build(view: &Snapshot, now: Timestamp) -> Graph {
    let mut b = Builder {
        view,
        graph: Graph::default(),
        ids: BTreeSet::new(),
        domains: view.clearances.keys().cloned().collect(),
    };
    for source in view.sources.values() {
        let ns = source.namespace().unwrap_or_default();
        b.node(Node {
            id: node_id("src", &[&ns, &source.name_any()]),
            kind: NodeKind::Source,
            domain: Some(ns),
            label: source.name_any(),
            detail: format!("{} · {:?}", source.spec.classification, source.spec.source_type),
            classification: Some(source.spec.classification),
        });
    }
    for product in view.products.values() {
        let ns = product.namespace().unwrap_or_default();
        b.node(Node {
            id: node_id("dp", &[&ns, &product.name_any()]),
            kind: NodeKind::Product,
            domain: Some(ns),
            label: product.name_any(),
            detail: product.spec.classification.to_string(),
            classification: Some(product.spec.classification),
        });
    }
    // Lineage: each input, as the product's plan decides it.
    let mut lineage: BTreeSet<(String, String)> = BTreeSet::new();
    for product in view.products.values() {
        let ns = product.namespace().unwrap_or_default();
        let to = node_id("dp", &[&ns, &product.name_any()]);
        let plan = rules::plan_product(view, product, now);
        for input in &plan.inputs {
            let from = match &input.input {
                InputKey::Source(name) if view.source(&ns, name).is_some() => node_id("src", &[&ns, name]),
                InputKey::Source(name) => b.missing("DataSource", &ns, name),
                InputKey::Product(key) => b.product_id(&key.namespace, &key.name),
            };
            let (label, denied) = match &input.outcome {
                Ok(Reach::Product { until: Some(t), .. }) => (format!("until {}", date(*t)), false),
                Ok(_) => (String::new(), false),
                Err(problem) => (problem.reason.to_string(), true),
            };
            lineage.insert((from.clone(), to.clone()));
            b.graph.edges.push(Edge { from, to: to.clone(), label, denied });
        }
    }
    // Grants to anything but a product that already reads the granted product.
    for policy in view.policies.values() {
        let ns = policy.namespace().unwrap_or_default();
        let plan = rules::plan_grant(view, policy, now);
        let from = b.product_id(&ns, &policy.spec.data_product);
        let partial = policy.spec.ports.as_ref().is_some_and(|p| !p.is_empty());
        let ports = if partial {
            format!("{} · ", plan.ports.iter().map(|p| p.1.clone()).collect::<Vec<_>>().join(","))
        } else {
            String::new()
        };
        let until = plan.expires_at.map(|t| format!("until {}", date(t))).unwrap_or_else(|| "no expiry".into());
        let granted = plan.grants_anything();
        let subjects = plan
            .effective
            .iter()
            .map(|s| (s, if granted { format!("{ports}{until}") } else { rules::Reason::NoSubjectGranted.into() }))
            .chain(plan.denied.iter().map(|(s, p)| (s, p.reason.to_string())));
        for (subject, label) in subjects {
            let to = b.subject(subject);
            if subject.kind == SubjectKind::DataProduct && lineage.contains(&(from.clone(), to.clone())) {
                continue;
            }
            let denied = !granted || plan.denied.iter().any(|(s, _)| s == subject);
            b.graph.edges.push(Edge { from: from.clone(), to, label, denied });
        }
    }
    b.graph.domains = b.domains.iter().map(|d| Domain { name: d.clone(), clearance: view.clearance(d) }).collect();
    b.graph
}

fn mermaid_text(text: &str) -> String {
    text.replace('&', "#amp;").replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
}

fn mermaid_node(node: &Node) -> String {
    let text = format!("{}<br/>{}", mermaid_text(&node.label), mermaid_text(&node.detail));
    match node.kind {
        NodeKind::Source => format!("{}[(\"{text}\")]", node.id),
        NodeKind::Person => format!("{}((\"{text}\"))", node.id),
        NodeKind::Pods | NodeKind::ServiceAccount => format!("{}>\"{text}\"]", node.id),
        NodeKind::Product | NodeKind::Missing => format!("{}[\"{text}\"]", node.id),
    }
}

fn class_name(node: &Node) -> &'static str {
    match (node.kind, node.classification) {
        (NodeKind::Missing, _) => "missing",
        (_, Some(c)) => c.as_str(),
        (_, None) => "subject",
    }
}

/// Mermaid `flowchart LR`: one subgraph per domain.
pub fn mermaid(graph: &Graph) -> String {
    let mut out = String::from("flowchart LR\n");
    let by_domain = nodes_by_domain(graph);
    for domain in &graph.domains {
        let id = node_id("domain", &[&domain.name]);
        let _ = writeln!(out, "  subgraph {id}[\"{} · clearance {}\"]", mermaid_text(&domain.name), domain.clearance);
        for node in by_domain.get(&Some(domain.name.clone())).into_iter().flatten() {
            let _ = writeln!(out, "    {}", mermaid_node(node));
        }
        out.push_str("  end\n");
    }
    for node in by_domain.get(&None).into_iter().flatten() {
        let _ = writeln!(out, "  {}", mermaid_node(node));
    }
    let mut denied = Vec::new();
    for (index, edge) in graph.edges.iter().enumerate() {
        let arrow = if edge.denied { "-.->" } else { "-->" };
        if edge.label.is_empty() {
            let _ = writeln!(out, "  {} {arrow} {}", edge.from, edge.to);
        } else {
            let _ = writeln!(out, "  {} {arrow}|\"{}\"| {}", edge.from, mermaid_text(&edge.label), edge.to);
        }
        if edge.denied {
            denied.push(index.to_string());
        }
    }
    for (name, classification) in [
        ("Public", Some(Classification::Public)),
        ("Internal", Some(Classification::Internal)),
        ("Restricted", Some(Classification::Restricted)),
        ("subject", None),
    ] {
        let (fill, stroke) = colours(classification);
        let _ = writeln!(out, "  classDef {name} fill:{fill},stroke:{stroke},color:#212121");
    }
    out.push_str("  classDef missing fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:4 3,color:#616161\n");
    let mut classes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in &graph.nodes {
        classes.entry(class_name(node)).or_default().push(&node.id);
    }
    for (class, ids) in classes {
        let _ = writeln!(out, "  class {} {class}", ids.join(","));
    }
    for domain in &graph.domains {
        let (_, stroke) = colours(Some(domain.clearance));
        let _ = writeln!(out, "  style {} fill:#fafafa,stroke:{stroke}", node_id("domain", &[&domain.name]));
    }
    if !denied.is_empty() {
        let _ = writeln!(out, "  linkStyle {} stroke:{DENIED},color:{DENIED}", denied.join(","));
    }
    out
}

pub(crate) fn nodes_by_domain(graph: &Graph) -> BTreeMap<Option<String>, Vec<&Node>> {
    let mut map: BTreeMap<Option<String>, Vec<&Node>> = BTreeMap::new();
    for node in &graph.nodes {
        map.entry(node.domain.clone()).or_default().push(node);
    }
    map
}

fn dot_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Graphviz DOT: one cluster per domain.
pub fn dot(graph: &Graph) -> String {
    let mut out = String::from(
        "digraph drmesh {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=11, style=filled];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    let by_domain = nodes_by_domain(graph);
    let node_line = |node: &Node| {
        let (fill, stroke) = colours(node.classification);
        let shape = match node.kind {
            NodeKind::Source => "cylinder",
            NodeKind::Person => "ellipse",
            NodeKind::Pods | NodeKind::ServiceAccount => "cds",
            NodeKind::Product => "box",
            NodeKind::Missing => "box, style=\"dashed\"",
        };
        format!(
            "\"{}\" [label=\"{}\\n{}\", shape={shape}, fillcolor=\"{fill}\", color=\"{stroke}\"];",
            node.id,
            dot_text(&node.label),
            dot_text(&node.detail)
        )
    };
    for domain in &graph.domains {
        let (_, stroke) = colours(Some(domain.clearance));
        let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", node_id("domain", &[&domain.name]));
        let _ = writeln!(
            out,
            "    label=\"{} · clearance {}\"; color=\"{stroke}\"; style=rounded;",
            dot_text(&domain.name),
            domain.clearance
        );
        for node in by_domain.get(&Some(domain.name.clone())).into_iter().flatten() {
            let _ = writeln!(out, "    {}", node_line(node));
        }
        out.push_str("  }\n");
    }
    for node in by_domain.get(&None).into_iter().flatten() {
        let _ = writeln!(out, "  {}", node_line(node));
    }
    for edge in &graph.edges {
        let style = if edge.denied {
            format!(", style=dashed, color=\"{DENIED}\", fontcolor=\"{DENIED}\"")
        } else {
            String::new()
        };
        let _ = writeln!(out, "  \"{}\" -> \"{}\" [label=\"{}\"{style}];", edge.from, edge.to, dot_text(&edge.label));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::admission::Admission;
    use crate::snapshot::load_path;

    fn reference(now: &str) -> Graph {
        let admission = Admission::new().expect("schemas");
        let samples = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/samples"));
        let mesh = load_path(samples, &admission).expect("samples");
        build(&mesh.snapshot, now.parse().expect("time"))
    }

    #[test]
    fn the_reference_mesh_has_domains_lineage_and_grants() {
        let g = reference("2026-06-01T00:00:00Z");
        assert_eq!(g.domains.len(), 6);
        let count = |kind| g.nodes.iter().filter(|n| n.kind == kind).count();
        assert_eq!(
            (count(NodeKind::Source), count(NodeKind::Product), count(NodeKind::Person), count(NodeKind::Pods)),
            (5, 6, 2, 1)
        );
        let picture = "dp_cnc_situation_picture";
        let feed = g.edges.iter().find(|e| e.from == "dp_police_incident_feed" && e.to == picture).expect("lineage");
        // Until the first change of the product's reach: its grant is suspended at the end
        // of the reassessment grace (reassessBy 2027-09-30 + 14d), before its expiry.
        assert_eq!((feed.label.as_str(), feed.denied), ("until 2027-10-14", false));
        // The grant to the picture is drawn once, as lineage.
        assert_eq!(g.edges.iter().filter(|e| e.from == "dp_police_incident_feed" && e.to == picture).count(), 1);
        let analysts = g.edges.iter().find(|e| e.to == "group_transport_analysts").expect("grant");
        assert_eq!(analysts.label, "http · no expiry");
        assert!(g.edges.iter().all(|e| !e.denied));
    }

    #[test]
    fn refused_edges_carry_their_reason() {
        let g = reference("2028-01-01T00:00:00Z");
        let feed = g
            .edges
            .iter()
            .find(|e| e.from == "dp_police_incident_feed" && e.to == "dp_cnc_situation_picture")
            .expect("lineage");
        assert_eq!((feed.label.as_str(), feed.denied), ("InputNotGranted", true));
        assert!(mermaid(&g).contains("-.->|\"Expired\"|"));
        assert!(dot(&g).contains("style=dashed"));
    }

    #[test]
    fn renderings_are_stable_and_escaped() {
        let g = reference("2026-06-01T00:00:00Z");
        let m = mermaid(&g);
        assert!(m.starts_with("flowchart LR\n  subgraph domain_cnc[\"cnc · clearance Restricted\"]"), "{m}");
        assert!(m.contains("src_police_incident_db[(\"incident-db<br/>Restricted · Postgres\")]"), "{m}");
        assert!(
            m.lines().any(|l| l.starts_with("  class ")
                && l.ends_with(" Restricted")
                && l.contains("dp_cnc_situation_picture")),
            "{m}"
        );
        assert_eq!(m, mermaid(&reference("2026-06-01T00:00:00Z")));
        assert!(dot(&g).contains("subgraph \"cluster_domain_police\""));
        assert_eq!(mermaid_text("a\"<b>"), "a#quot;#lt;b#gt;");
        assert_eq!(dot_text("a\"\\"), "a\\\"\\\\");
        assert_ne!(node_id("dp", &["a", "b_c"]), node_id("dp", &["a", "b-c"]));
    }
}
