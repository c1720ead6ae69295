//! SVG for `drmesh graph --format svg`, drawn in-process (no Graphviz): a layered
//! layout, left to right — sources, then products by lineage depth, then the people,
//! service accounts and pods they are granted to — with one barycentre pass to keep
//! edges short, classification colours, and refused edges dashed in red.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::graph::{DENIED, Graph, Node, NodeKind, colours};
use super::report::xml_escape;
use crate::api::Classification;

const WIDTH: f64 = 220.0;
const HEIGHT: f64 = 46.0;
const COLUMN_GAP: f64 = 120.0;
const ROW_GAP: f64 = 18.0;
const MARGIN: f64 = 24.0;
const HEADER: f64 = 64.0;
/// Characters that fit on a node's first line (12px) and second line (10px).
const LABEL_CHARS: usize = 28;
const DETAIL_CHARS: usize = 34;

fn is_subject(node: &Node) -> bool {
    matches!(node.kind, NodeKind::Person | NodeKind::ServiceAccount | NodeKind::Pods)
}

/// The column of each node: sources 0, products 1 + the deepest input, subjects last.
fn layers(graph: &Graph) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    let mut layer: Vec<usize> = graph.nodes.iter().map(|n| usize::from(n.kind != NodeKind::Source)).collect();
    // Longest path by relaxation, bounded so that a lineage cycle cannot loop forever.
    for _ in 0..graph.nodes.len() {
        let mut changed = false;
        for edge in &graph.edges {
            let (Some(&from), Some(&to)) = (index.get(edge.from.as_str()), index.get(edge.to.as_str())) else {
                continue;
            };
            if is_subject(&graph.nodes[to]) || graph.nodes[to].kind == NodeKind::Source {
                continue;
            }
            let want = (layer[from] + 1).min(graph.nodes.len());
            if want > layer[to] {
                layer[to] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let last = graph.nodes.iter().zip(&layer).filter(|(n, _)| !is_subject(n)).map(|(_, l)| *l).max().unwrap_or(0) + 1;
    graph.nodes.iter().zip(layer).map(|(n, l)| if is_subject(n) { last } else { l }).collect()
}

struct Placed {
    x: f64,
    y: f64,
}

fn place(graph: &Graph) -> (Vec<Placed>, f64, f64) {
    let layer = layers(graph);
    let columns = layer.iter().max().map_or(0, |m| m + 1);
    let mut column_nodes: Vec<Vec<usize>> = vec![Vec::new(); columns];
    let mut order: Vec<usize> = (0..graph.nodes.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (graph.nodes[i].domain.clone(), graph.nodes[i].kind, graph.nodes[i].label.clone());
        key(a).cmp(&key(b))
    });
    for i in order {
        column_nodes[layer[i]].push(i);
    }
    let mut row = vec![0.0f64; graph.nodes.len()];
    let index: BTreeMap<&str, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    for (c, nodes) in column_nodes.iter_mut().enumerate() {
        if c > 0 {
            // Barycentre of the predecessors already placed; nodes without any keep their order.
            let mut keyed: Vec<(f64, usize, usize)> = nodes
                .iter()
                .enumerate()
                .map(|(pos, &i)| {
                    let preds: Vec<f64> = graph
                        .edges
                        .iter()
                        .filter(|e| e.to == graph.nodes[i].id)
                        .filter_map(|e| index.get(e.from.as_str()))
                        .filter(|&&p| layer[p] < c)
                        .map(|&p| row[p])
                        .collect();
                    let key =
                        if preds.is_empty() { pos as f64 } else { preds.iter().sum::<f64>() / preds.len() as f64 };
                    (key, pos, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            *nodes = keyed.into_iter().map(|(_, _, i)| i).collect();
        }
        for (r, &i) in nodes.iter().enumerate() {
            row[i] = r as f64;
        }
    }
    let rows = column_nodes.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let mut placed: Vec<Placed> = graph.nodes.iter().map(|_| Placed { x: 0.0, y: 0.0 }).collect();
    for (c, nodes) in column_nodes.iter().enumerate() {
        let offset = (rows - nodes.len() as f64) * (HEIGHT + ROW_GAP) / 2.0;
        for (r, &i) in nodes.iter().enumerate() {
            placed[i] = Placed {
                x: MARGIN + c as f64 * (WIDTH + COLUMN_GAP),
                y: HEADER + offset + r as f64 * (HEIGHT + ROW_GAP),
            };
        }
    }
    let width = 2.0 * MARGIN + columns as f64 * WIDTH + (columns.max(1) - 1) as f64 * COLUMN_GAP;
    let height = HEADER + rows * (HEIGHT + ROW_GAP) + MARGIN + 40.0;
    (placed, width.max(640.0), height)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max - 1).collect::<String>() + "…"
}

/// The graph as a standalone SVG document.
pub fn render(graph: &Graph) -> String {
    let (placed, width, height) = place(graph);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\">"
    );
    out.push_str("  <defs>\n");
    for (id, colour) in [("arrow", "#455a64"), ("arrow-denied", DENIED)] {
        let _ = writeln!(
            out,
            "    <marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"{colour}\"/></marker>"
        );
    }
    out.push_str("  </defs>\n");
    let _ = writeln!(out, "  <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>");
    let _ = writeln!(
        out,
        "  <text x=\"{MARGIN}\" y=\"28\" font-size=\"16\" font-weight=\"bold\" fill=\"#212121\">drmesh — the data mesh</text>"
    );
    let domains: Vec<String> = graph.domains.iter().map(|d| format!("{} ({})", d.name, d.clearance)).collect();
    let _ = writeln!(
        out,
        "  <text x=\"{MARGIN}\" y=\"48\" font-size=\"11\" fill=\"#424242\">domains and clearances: {}</text>",
        xml_escape(&domains.join(", "))
    );
    let index: BTreeMap<&str, usize> = graph.nodes.iter().enumerate().map(|(i, n)| (n.id.as_str(), i)).collect();
    out.push_str("  <g fill=\"none\" stroke-width=\"1.4\">\n");
    let mut labels = String::new();
    let mut taken: Vec<(f64, f64, f64)> = Vec::new();
    for edge in &graph.edges {
        let (Some(&a), Some(&b)) = (index.get(edge.from.as_str()), index.get(edge.to.as_str())) else {
            continue;
        };
        let (p, q) = (&placed[a], &placed[b]);
        let (x1, y1) = (p.x + WIDTH, p.y + HEIGHT / 2.0);
        let forward = q.x > p.x;
        let (x2, y2) = if forward { (q.x, q.y + HEIGHT / 2.0) } else { (q.x + WIDTH, q.y + HEIGHT / 2.0) };
        let (c1, c2) = if forward {
            let dx = ((x2 - x1) / 2.0).max(40.0);
            ((x1 + dx, y1), (x2 - dx, y2))
        } else {
            ((x1 + 70.0, y1), (x2 + 70.0, y2))
        };
        let (colour, dash, marker) =
            if edge.denied { (DENIED, " stroke-dasharray=\"6 4\"", "arrow-denied") } else { ("#455a64", "", "arrow") };
        let _ = writeln!(
            out,
            "    <path d=\"M {x1:.1} {y1:.1} C {:.1} {:.1}, {:.1} {:.1}, {x2:.1} {y2:.1}\" stroke=\"{colour}\"{dash} marker-end=\"url(#{marker})\"/>",
            c1.0, c1.1, c2.0, c2.1
        );
        if !edge.label.is_empty() {
            let mx = (x1 + 3.0 * c1.0 + 3.0 * c2.0 + x2) / 8.0;
            let mut my = (y1 + 3.0 * c1.1 + 3.0 * c2.1 + y2) / 8.0 - 4.0;
            // Labels of edges crossing the same spot would overprint: step them down.
            let half = edge.label.chars().count() as f64 * 2.6 + 4.0;
            while taken.iter().any(|&(x, y, h): &(f64, f64, f64)| (x - mx).abs() < h + half && (y - my).abs() < 10.0) {
                my += 10.0;
            }
            taken.push((mx, my, half));
            let _ = writeln!(
                labels,
                "    <text x=\"{mx:.1}\" y=\"{my:.1}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
                xml_escape(&edge.label)
            );
        }
    }
    out.push_str("  </g>\n");
    let _ = writeln!(
        out,
        "  <g font-size=\"9\" stroke=\"#ffffff\" stroke-width=\"3\" paint-order=\"stroke\">\n{labels}  </g>"
    );
    for (node, at) in graph.nodes.iter().zip(&placed) {
        let (fill, stroke) = colours(node.classification);
        let radius = match node.kind {
            NodeKind::Source => 14.0,
            NodeKind::Person => HEIGHT / 2.0,
            _ => 6.0,
        };
        let dash = if node.kind == NodeKind::Missing { " stroke-dasharray=\"4 3\"" } else { "" };
        let fill = if node.kind == NodeKind::Missing { "#ffffff" } else { fill };
        let detail = match &node.domain {
            Some(domain) => format!("{domain} · {}", node.detail),
            None => node.detail.clone(),
        };
        let _ = writeln!(
            out,
            "  <g><title>{}</title><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" rx=\"{radius}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.6\"{dash}/>",
            xml_escape(&format!("{} — {detail}", node.label)),
            at.x,
            at.y
        );
        let _ = writeln!(
            out,
            "    <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" font-weight=\"bold\" fill=\"#212121\">{}</text>",
            at.x + WIDTH / 2.0,
            at.y + 19.0,
            xml_escape(&clip(&node.label, LABEL_CHARS))
        );
        let _ = writeln!(
            out,
            "    <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\" fill=\"#424242\">{}</text></g>",
            at.x + WIDTH / 2.0,
            at.y + 35.0,
            xml_escape(&clip(&detail, DETAIL_CHARS))
        );
    }
    legend(&mut out, height);
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String, height: f64) {
    let y = height - 30.0;
    let mut x = MARGIN;
    for (name, c) in [
        ("Public", Some(Classification::Public)),
        ("Internal", Some(Classification::Internal)),
        ("Restricted", Some(Classification::Restricted)),
        ("subject", None),
    ] {
        let (fill, stroke) = colours(c);
        let _ = writeln!(
            out,
            "  <rect x=\"{x}\" y=\"{y}\" width=\"14\" height=\"14\" rx=\"3\" fill=\"{fill}\" stroke=\"{stroke}\"/>"
        );
        let _ = writeln!(
            out,
            "  <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#424242\">{name}</text>",
            x + 20.0,
            y + 11.0
        );
        x += 100.0;
    }
    let _ = writeln!(
        out,
        "  <line x1=\"{x}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{DENIED}\" stroke-dasharray=\"6 4\"/>",
        y + 7.0,
        x + 30.0,
        y + 7.0
    );
    let _ = writeln!(
        out,
        "  <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#424242\">refused (reason on the edge)</text>",
        x + 38.0,
        y + 11.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Domain, Edge};

    fn node(id: &str, kind: NodeKind) -> Node {
        Node {
            id: id.into(),
            kind,
            domain: Some("d".into()),
            label: id.into(),
            detail: "x".into(),
            classification: Some(Classification::Internal),
        }
    }

    fn edge(from: &str, to: &str) -> Edge {
        Edge { from: from.into(), to: to.into(), label: String::new(), denied: false }
    }

    #[test]
    fn layers_follow_lineage_and_survive_cycles() {
        let graph = Graph {
            domains: vec![Domain { name: "d".into(), clearance: Classification::Internal }],
            nodes: vec![
                node("s", NodeKind::Source),
                node("a", NodeKind::Product),
                node("b", NodeKind::Product),
                node("c", NodeKind::Product),
                node("p", NodeKind::Person),
            ],
            edges: vec![edge("s", "a"), edge("a", "b"), edge("b", "c"), edge("c", "b"), edge("b", "p")],
        };
        let l = layers(&graph);
        assert_eq!((l[0], l[1]), (0, 1));
        assert!(l[2] >= 2 && l[3] >= 2 && l[2] <= graph.nodes.len() && l[3] <= graph.nodes.len());
        assert_eq!(l[4], l[..4].iter().max().copied().unwrap_or(0) + 1);
        let svg = render(&graph);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<rect x=").count(), 5 + 4, "5 nodes and 4 legend swatches");
    }

    #[test]
    fn empty_graphs_and_long_names_render() {
        let svg = render(&Graph::default());
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(clip("abcdef", 4), "abc…");
        let mut long = node(&"x".repeat(100), NodeKind::Missing);
        long.label = "<&>".repeat(40);
        let svg = render(&Graph { domains: vec![], nodes: vec![long], edges: vec![] });
        assert!(svg.contains("&lt;&amp;&gt;") && !svg.contains("<&>"));
    }
}
