//! The chart's alerts, evaluated: Prometheus's own promtool (built from Go modules by
//! `tools.sh promtool`) checks the rules of the rendered PrometheusRule and runs the unit
//! tests of alerts-test.yaml on them, which prove that each alert fires on its condition
//! (after its `for`, with its labels and rendered annotations) and stays silent otherwise.
//! Needs helm and promtool, not the cluster.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use super::{documents, ok, render, repo};

fn promtool() -> PathBuf {
    let script = repo().join("tests/e2e/packaging/tools.sh");
    let out = Command::new(script).arg("promtool").output().expect("tools.sh promtool");
    PathBuf::from(ok("tools.sh promtool", out).trim())
}

/// The alerts of `tests` (promtool's unit tests) that fire in some case, and those that
/// are silent in some case.
fn cases(tests: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
    for group in tests["tests"].as_array().expect("tests") {
        for case in group["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    (fires, silent)
}

#[test]
fn every_alert_of_the_chart_fires_on_its_condition_and_only_then() {
    let rendered = documents(&render(
        "drmesh",
        "drmesh-system",
        "metrics: {prometheusRule: {enabled: true}}\n",
        &["--show-only", "templates/prometheusrule.yaml"],
    ));
    let rule = rendered.iter().find(|d| d["kind"] == "PrometheusRule").expect("the PrometheusRule");
    let groups = &rule["spec"]["groups"];
    let alerts: BTreeSet<String> = groups
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter_map(|r| r["alert"].as_str().map(String::from))
        .collect();
    assert!(alerts.len() >= 7, "the chart's alerts: {alerts:?}");

    // Every alert has a case where it fires and one where it does not.
    let fixture = repo().join("tests/e2e/packaging/alerts-test.yaml");
    let text = std::fs::read_to_string(&fixture).expect("alerts-test.yaml");
    let tests: Value = drmesh::yaml::from_str(&text).expect("alerts-test.yaml parses");
    let (fires, silent) = cases(&tests);
    for alert in &alerts {
        assert!(fires.contains(alert), "alerts-test.yaml has no case where {alert} fires");
        assert!(silent.contains(alert), "alerts-test.yaml has no case where {alert} stays silent");
    }
    let unknown: Vec<&String> = fires.union(&silent).filter(|a| !alerts.contains(*a)).collect();
    assert!(unknown.is_empty(), "alerts-test.yaml tests alerts the chart does not have: {unknown:?}");

    // The rules as Prometheus loads them (JSON is YAML), checked, then the unit tests.
    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("drmesh-rules.yaml");
    std::fs::write(&rules, json!({"groups": groups}).to_string()).expect("write the rules");
    std::fs::copy(&fixture, dir.path().join("alerts-test.yaml")).expect("copy the tests");
    let promtool = promtool();
    let checked = ok(
        "promtool check rules",
        Command::new(&promtool).args(["check", "rules"]).arg(&rules).output().expect("promtool"),
    );
    assert!(checked.contains(&format!("SUCCESS: {} rules found", alerts.len())), "{checked}");
    let out = Command::new(&promtool)
        .args(["test", "rules", "alerts-test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool");
    ok("promtool test rules (tests/e2e/packaging/alerts-test.yaml)", out);
}
