//! drmesh's YAML reader (crates/yaml, used by `drmesh validate`, `render`, `diff`,
//! `graph` and `access-review`) against kubectl's own conversion: sigs.k8s.io/yaml,
//! built from Go modules as `yaml2json` (tests/e2e/cluster/judges). Every quirk of YAML
//! 1.1 that kubectl keeps (`yes`, `on`, `y` and `n` as booleans, even as keys; octal
//! `0755`; `08`; underscores in numbers) must read the same, and what kubectl refuses
//! must be refused.

use serde_json::Value;

use crate::harness;

/// kubectl's reading of every document of `text`: Ok(JSON) or Err(message).
fn kubectl_reads(text: &str) -> Vec<Result<Value, String>> {
    use std::io::Write;
    let tool = harness::kubectl_path().with_file_name("yaml2json");
    let mut child = std::process::Command::new(&tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("yaml2json");
    assert!(out.status.success(), "yaml2json failed on {text:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("yaml2json prints JSON lines");
            match v.get("json") {
                Some(json) => Ok(json.clone()),
                None => Err(v["error"].as_str().unwrap_or_default().to_string()),
            }
        })
        .collect()
}

/// Manifest fragments with every scalar quirk we know of, and plain ones.
const CASES: &[&str] = &[
    "v: yes\nw: On\nx: y\nz: NO\nq: off\nr: yEs\n",
    "v: 0755\nw: 08\nx: 0x1F\nz: 0o17\nq: 0b101\nr: 1_000\ns: -12\nt: +3\n",
    "v: 1e3\nw: .5\nx: 2.50\nz: 18446744073709551615\nq: -9223372036854775808\n",
    "v: ~\nw:\nx: Null\nz: null\n",
    "v: 2026-01-01\nw: 2026-01-01T00:00:00Z\nx: 12:30\nz: 1.2.3\nq: 1:20:30\n",
    "v: '0755'\nw: \"yes\"\nx: !!str 0755\nz: !!int 12\nq: |\n  on\nr: >\n  folded\n  text\n",
    "on: x\n1: x\n0755: x\nn: 1\ny: 2\n",
    "base: &b {p: 1, q: 2}\nitem:\n  <<: *b\n  q: 3\nlist: [*b, *b]\n",
    "a: 1\na: 2\n",
    "env:\n- name: DEBUG\n  value: on\n- name: PORT\n  value: 8080\n",
    "apiVersion: drmesh.io/v1alpha1\nkind: DataProduct\nmetadata: {name: feed, labels: {tier: no}}\n",
    "v: .nan\n",
    "~: x\n",
    "v: !!int abc\n",
    "a: 1\n---\n---\n# only a comment\n---\nb: [x, z]\n",
];

#[test]
fn drmesh_reads_yaml_as_kubectl_does() {
    let mut compared = 0;
    for text in CASES {
        let kubectl = kubectl_reads(text);
        let ours: Vec<Result<Value, String>> =
            drmesh::yaml::documents(text).map(|d| d.map_err(|e| e.to_string())).collect();
        // kubectl's reader skips a stream's empty documents; so does drmesh's loader.
        let ours: Vec<_> = ours.into_iter().filter(|d| d.as_ref().map_or(true, |v| !v.is_null())).collect();
        let kubectl: Vec<_> = kubectl.into_iter().filter(|d| d.as_ref().map_or(true, |v| !v.is_null())).collect();
        assert_eq!(ours.len(), kubectl.len(), "{text:?}: drmesh {ours:?}, kubectl {kubectl:?}");
        for (a, b) in ours.iter().zip(&kubectl) {
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?} reads differently"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text:?}: drmesh {a:?}, kubectl {b:?}"),
            }
            compared += 1;
        }
    }
    assert!(compared >= CASES.len(), "compared {compared} documents");
}

#[test]
fn what_drmesh_writes_kubectl_reads_back_the_same() {
    // render's output is applied with kubectl: strings that look like other types must
    // stay strings.
    let value = serde_json::json!({
        "data": {"yes": "on", "octal": "0755", "n": "n", "float": "1e3", "under": "1_000", "time": "2026-01-01T00:00:00Z",
                 "multi": "line 1\nline 2\n", "empty": "", "hash": "a #b"},
        "list": ["y", "08", "~", 1, 0.5, true, null],
    });
    let text = drmesh::yaml::to_string(&value).expect("yaml");
    assert_eq!(kubectl_reads(&text), vec![Ok(value)], "{text}");
}
