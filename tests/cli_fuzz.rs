//! The offline CLI never panics, whatever it reads: property tests over arbitrary text,
//! garbled copies of the reference mesh, and structurally valid YAML whose values are
//! replaced at random (which gets past admission into the core's rules and builders).

use std::path::{Path, PathBuf};

use drmesh::cli::admission::Admission;
use drmesh::cli::snapshot::{Mesh, load_texts};
use drmesh::cli::{access_review, diff, graph, render, svg, validate};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

fn samples() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    drmesh::manifest::manifest_files(&dir)
        .expect("samples")
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).expect("sample");
            (f, text)
        })
        .collect()
}

fn now() -> Timestamp {
    "2026-06-01T00:00:00Z".parse().expect("time")
}

/// Every offline command's pure part, on one set of texts.
fn everything(admission: &Admission, texts: &[(PathBuf, String)]) -> Mesh {
    let mesh = load_texts(texts, "default", &[], admission);
    let _ = validate::semantic(&mesh, now());
    let children = render::children(&mesh.snapshot, now());
    let _ = render::yaml(&children);
    let g = graph::build(&mesh.snapshot, now());
    let _ = (graph::mermaid(&g), graph::dot(&g), svg::render(&g));
    let rows = access_review::review(&mesh.snapshot, now());
    let _ = (access_review::table(&rows), access_review::csv(&rows));
    mesh
}

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
}

#[test]
fn arbitrary_text_never_panics() {
    let admission = Admission::new().expect("schemas");
    let mut runner = TestRunner::new(config(256));
    let text = prop_oneof![
        any::<String>(),
        "[-:{}\\[\\],'\"&*!|>%@` \n\ta-z0-9]{0,200}",
        "(apiVersion: (v1|drmesh.io/v1alpha1)\nkind: (Namespace|Secret|DataSource|DataProduct|AccessPolicy|List)\n[a-z: {}\\[\\]\n-]{0,120}\n---\n){1,3}",
    ];
    runner
        .run(&text, |text| {
            everything(&admission, &[(PathBuf::from("fuzz.yaml"), text)]);
            Ok(())
        })
        .expect("no panic on arbitrary text");
}

#[test]
fn garbled_samples_never_panic() {
    let admission = Admission::new().expect("schemas");
    let originals = samples();
    let mut runner = TestRunner::new(config(128));
    // Cut a slice out of a sample, then insert some text at a point.
    let strategy = (
        0..originals.len(),
        any::<prop::sample::Index>(),
        0usize..40,
        any::<prop::sample::Index>(),
        "[ :\\-\\[\\]{}#\n a-zA-Z0-9]{0,12}",
    );
    runner
        .run(&strategy, |(file, cut, len, at, insert)| {
            let (name, text) = &originals[file];
            let mut chars: Vec<char> = text.chars().collect();
            let start = cut.index(chars.len().max(1)).min(chars.len());
            let end = (start + len).min(chars.len());
            chars.drain(start..end);
            let at = at.index(chars.len() + 1).min(chars.len());
            chars.splice(at..at, insert.chars());
            let mut texts = originals.clone();
            texts[file] = (name.clone(), chars.into_iter().collect());
            everything(&admission, &texts);
            Ok(())
        })
        .expect("no panic on garbled samples");
}

/// A JSON value of any shape, small.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        prop_oneof![
            Just("Restricted".to_string()),
            Just("Public".to_string()),
            Just("police".to_string()),
            Just("2000-01-01T00:00:00Z".to_string()),
            Just("9999-12-31T23:59:59Z".to_string()),
            Just("http".to_string()),
            Just("DataProduct".to_string()),
            Just("Namespace".to_string()),
            "[a-z0-9.-]{0,70}",
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a value in `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            map.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
        _ => {}
    }
}

#[test]
fn values_replaced_at_random_never_panic() {
    let admission = Admission::new().expect("schemas");
    let documents: Vec<Value> = samples()
        .iter()
        .flat_map(|(_, text)| drmesh::yaml::documents(text).map(|d| d.expect("sample yaml")).collect::<Vec<Value>>())
        .collect();
    let original = load_texts(&samples(), "default", &[], &admission);
    let reached = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(config(256));
    let strategy =
        prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any_json()), 1..4);
    runner
        .run(&strategy, |edits| {
            let mut docs = documents.clone();
            for (doc, at, value) in edits {
                let doc = doc.get_mut(&mut docs);
                let mut paths = Vec::new();
                pointers(doc, String::new(), &mut paths);
                let path = at.get(&paths).clone();
                if path.is_empty() {
                    continue; // keep apiVersion/kind somewhere to reach the checks
                }
                if let Some(slot) = doc.pointer_mut(&path) {
                    *slot = value;
                }
            }
            let text =
                docs.iter().map(|d| drmesh::yaml::to_string(d).unwrap_or_default()).collect::<Vec<_>>().join("---\n");
            let mesh = everything(&admission, &[(PathBuf::from("mutated.yaml"), text)]);
            let d = diff::diff(&original, &mesh, &admission, now());
            let _ = diff::text(&d);
            // What the API server would admit reaches the core; the core never loses an object.
            if mesh.snapshot.products.len() + mesh.snapshot.sources.len() + mesh.snapshot.policies.len() > 18 {
                return Err(TestCaseError::fail("more objects than the samples"));
            }
            if !mesh.snapshot.products.is_empty() && !mesh.diagnostics.is_empty() {
                reached.set(reached.get() + 1);
            }
            Ok(())
        })
        .expect("no panic on mutated manifests");
    // Most cases must get past admission with their damage, or the test proves little.
    assert!(reached.get() > 100, "only {} cases reached the core with a damaged manifest", reached.get());
}
