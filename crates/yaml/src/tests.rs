use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn one(text: &str) -> Value {
    from_str_value(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn plain_scalars_resolve_as_kubectl_resolves_them() {
    // (YAML, what sigs.k8s.io/yaml gives; tests/e2e/yaml.rs checks the same table against it)
    let table = [
        ("v: yes", json!({"v": true})),
        ("v: On", json!({"v": true})),
        ("v: y", json!({"v": true})),
        ("v: NO", json!({"v": false})),
        ("v: off", json!({"v": false})),
        ("v: yEs", json!({"v": "yEs"})),
        ("v: 0755", json!({"v": 493})),
        ("v: 08", json!({"v": 8})),
        ("v: 0x1F", json!({"v": 31})),
        ("v: 0o17", json!({"v": 15})),
        ("v: 0b101", json!({"v": 5})),
        ("v: 1_000", json!({"v": 1000})),
        ("v: -12", json!({"v": -12})),
        ("v: +3", json!({"v": 3})),
        ("v: 1e3", json!({"v": 1000})),
        ("v: .5", json!({"v": 0.5})),
        ("v: 2.50", json!({"v": 2.5})),
        ("v: 18446744073709551615", json!({"v": 18446744073709551615u64})),
        ("v: ~", json!({"v": null})),
        ("v:", json!({"v": null})),
        ("v: Null", json!({"v": null})),
        ("v: 2026-01-01", json!({"v": "2026-01-01"})),
        ("v: 2026-01-01T00:00:00Z", json!({"v": "2026-01-01T00:00:00Z"})),
        ("v: 12:30", json!({"v": "12:30"})),
        ("v: 1.2.3", json!({"v": "1.2.3"})),
        ("v: '0755'", json!({"v": "0755"})),
        ("v: \"yes\"", json!({"v": "yes"})),
        ("v: !!str 0755", json!({"v": "0755"})),
        ("v: !!int 12", json!({"v": 12})),
        ("v: |\n  on\n", json!({"v": "on\n"})),
        ("on: x", json!({"true": "x"})),
        ("1: x", json!({"1": "x"})),
        ("0755: x", json!({"493": "x"})),
    ];
    for (text, want) in table {
        assert_eq!(one(text), want, "{text}");
    }
}

#[test]
fn what_json_cannot_carry_is_refused_with_its_place() {
    for text in ["v: .nan", "v: -.inf", "? [a]\n: b", "~: x", "v: !!int abc", "v: *nowhere"] {
        let error = from_str_value(text).expect_err(text);
        assert!(!error.message.is_empty(), "{text}");
    }
    let error = from_str_value("a: b\n c: d: e\n").expect_err("syntax");
    assert_eq!(error.location.map(|(line, _)| line), Some(2), "{error}");
}

#[test]
fn documents_anchors_and_merge_keys_follow_go_yaml_v2() {
    let docs: Vec<Value> =
        documents("a: 1\n---\n---\n# only a comment\n---\nb: [x, z]\n").collect::<Result<_, _>>().expect("stream");
    assert_eq!(docs, vec![json!({"a": 1}), Value::Null, Value::Null, json!({"b": ["x", "z"]})]);
    let merged = one("base: &b {p: 1, q: 2}\nitem:\n  <<: *b\n  q: 3\nlist: [*b, *b]\n");
    assert_eq!(merged["item"], json!({"p": 1, "q": 3}));
    assert_eq!(merged["list"], json!([{"p": 1, "q": 2}, {"p": 1, "q": 2}]));
    // `y` is a boolean in YAML 1.1, even as a key.
    assert_eq!(one("{x: 1, y: 2}"), json!({"x": 1, "true": 2}));
    // Duplicate keys: the last wins, as kubectl's conversion keeps it.
    assert_eq!(one("a: 1\na: 2\n"), json!({"a": 2}));
    let mut stream = documents("a: 1\n---\n- [unclosed\n---\nb: 2\n");
    assert_eq!(stream.next(), Some(Ok(json!({"a": 1}))));
    assert!(matches!(stream.next(), Some(Err(_))));
    assert_eq!(stream.next(), None, "a syntax error ends the stream");
}

#[test]
fn strings_that_could_be_read_otherwise_are_quoted() {
    let value = json!({
        "on": "yes", "octal": "0755", "when": "2026-01-01T00:00:00Z", "empty": "", "space": " x",
        "colon": "a: b", "hash": "a #b", "plain": "drmesh.io/data-product", "n": 8080, "f": 0.5, "b": true,
        "none": null, "text": "line 1\nline 2\n", "nested": {"list": [{"a": "1"}, [], {}], "e": {}},
    });
    let text = to_string(&value).expect("yaml");
    assert!(text.contains("\"on\": \"yes\""), "{text}");
    assert!(text.contains("octal: \"0755\""), "{text}");
    assert!(text.contains("plain: drmesh.io/data-product"), "{text}");
    assert!(text.contains("text: |\n  line 1\n  line 2\n"), "{text}");
    assert_eq!(one(&text), value, "{text}");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(float),
        "[ -~\n\t]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("yes"),
            Just("on"),
            Just("0755"),
            Just("08"),
            Just("1_0"),
            Just("~"),
            Just(".5"),
            Just("- a"),
            Just("a: b"),
            Just("#x"),
            Just("'q'"),
            Just("\"q\""),
            Just("x\n"),
            Just("\n\nx\n\n"),
            Just(" lead")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z0-9 :#'.-]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn what_to_string_writes_reads_back_the_same(value in json_value()) {
        let text = to_string(&value).expect("yaml");
        let read = from_str_value(&text);
        prop_assert!(read.is_ok(), "{:?}\n{}", read, text);
        prop_assert_eq!(read.ok(), Some(value), "{}", text);
    }
}

#[test]
fn a_string_starting_with_a_tab_reads_back_the_same() {
    // Found by the property test: a literal block may not start with a tab.
    for s in ["\ta\n", "\tx\ny", "a\n\tb\n"] {
        let text = crate::to_string(&s).expect("write");
        let back: String = crate::from_str(&text).unwrap_or_else(|e| panic!("{s:?} written as {text:?}: {e}"));
        assert_eq!(back, s, "{text:?}");
    }
}
