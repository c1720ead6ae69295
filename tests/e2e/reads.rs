//! Issue 17, "every read accounted for", on the real control plane: people read a
//! Restricted product through the API server's service proxy, and an auditor, with the
//! API server's audit log and drmesh's audit chain alone, finds the grant that covered
//! each read, and the read no grant covered.

use std::process::{Command, Output};

use drmesh::api::AccessPolicy;
use jiff::{SignedDuration, Timestamp};
use kube::api::Api;
use serde_json::{Value, json};

use crate::harness::{self, ClusterScoped, TIMEOUT, TestNamespace};

/// The admin context's user (tests/e2e/cluster/cluster.sh: in `system:masters`).
const ADMIN: &str = "drmesh-admin";

/// `drmesh audit reads --json -n NS --apiserver-log ... OPERATOR_LOG` over the API
/// server's current and rotated audit logs.
fn audit_reads(ns: &str) -> (Output, Value) {
    let current = harness::audit_log_path();
    let dir = current.parent().expect("logs dir");
    let mut args = vec!["audit".to_string(), "reads".into(), "--json".into(), "-n".into(), ns.into()];
    for entry in std::fs::read_dir(dir).expect("the API server's logs").filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("audit") && name.ends_with(".log") {
            args.extend(["--apiserver-log".into(), entry.path().display().to_string()]);
        }
    }
    args.push(std::env::var("DRMESH_E2E_AUDIT_LOG").expect("run through tests/e2e/with-operator.sh"));
    let out = Command::new(env!("CARGO_BIN_EXE_drmesh")).args(&args).output().expect("drmesh audit reads");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// A read of the product's port 8080 through the service proxy, by the admin acting as
/// `as_user` (in `as_group`), or as itself.
fn proxy_get(ns: &str, impersonate: Option<(&str, &str)>) -> Output {
    let path = format!("/api/v1/namespaces/{ns}/services/feed:8080/proxy/");
    let mut args = vec!["get", "--raw", &path, "--request-timeout=30s"];
    if let Some((user, group)) = impersonate {
        args.extend(["--as", user, "--as-group", group]);
    }
    harness::kubectl(&args)
}

fn reads_of<'a>(report: &'a Value, user: &str) -> Vec<&'a Value> {
    report["reads"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["requester"]["username"] == user).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_read_of_a_product_is_covered_by_a_grant_or_reported_uncovered() {
    harness::ensure_sample_mesh_policy();
    let ns = TestNamespace::create_with_labels("reads", &[("drmesh.io/clearance", "Restricted")]).await;
    let id = ns.name.clone();
    let (reader, group) = (format!("reader-{id}"), format!("readers-{id}"));
    // No pod (replicas 0): the proxy answers 503 at once; the API server let the read through.
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "feed", "namespace": id},
            "spec": {"classification": "Restricted", "runtime": {"image": "registry.example/feed:1.0", "replicas": 0},
                     "outputPorts": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}})
        .to_string(),
    );
    let until = Timestamp::now().checked_add(SignedDuration::from_hours(2)).expect("time");
    harness::apply_text(
        &json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "Clearance", "metadata": {"name": id},
            "spec": {"subject": {"kind": "Group", "name": group}, "level": "Restricted", "expiresAt": until.to_string(),
                     "reason": "e2e read accounting"}})
        .to_string(),
    );
    let _clearance = ClusterScoped { kind: "clearance", name: id.clone() };
    let expires = Timestamp::now().checked_add(SignedDuration::from_hours(1)).expect("time");
    let purpose = "Olympic hypervision: read the incident feed";
    let grant = json!({"apiVersion": "drmesh.io/v1alpha1", "kind": "AccessPolicy", "metadata": {"name": "readers", "namespace": id},
        "spec": {"dataProduct": "feed", "subjects": [{"kind": "Group", "name": group}],
                 "purpose": purpose, "expiresAt": expires.to_string()}});
    harness::apply_text(&harness::approved_by_examples(&grant.to_string(), &[1, 2]));
    let api: Api<AccessPolicy> = ns.api();
    let target = "services/feed:8080";
    harness::eventually("the reader's group may read the product", TIMEOUT, || {
        let out = harness::kubectl(&[
            "auth",
            "can-i",
            "get",
            target,
            "--subresource=proxy",
            "-n",
            &id,
            "--as",
            &reader,
            "--as-group",
            &group,
        ]);
        async move { (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(()) }
    })
    .await;
    let uid = api.get("readers").await.expect("policy").metadata.uid.expect("uid");

    // The legitimate read (503: no pod behind; the API server authorised it).
    let legit = proxy_get(&id, Some((&reader, &group)));
    let said = String::from_utf8_lossy(&legit.stderr);
    assert!(!said.contains("Forbidden") && !said.contains("forbidden"), "the granted reader is let through: {said}");
    // The admin (system:masters) reads without any grant: RBAC lets it through.
    proxy_get(&id, None);
    // mallory, with no grant, is refused by the API server: an attempt, listed apart.
    let refused = harness::kubectl_as(
        "mallory",
        &["get", "--raw", &format!("/api/v1/namespaces/{id}/services/feed:8080/proxy/")],
    );
    assert!(!refused.status.success());

    // The auditor's view, once the API server's audit log holds the three requests.
    let (out, report) = harness::eventually("drmesh audit reads lists the three requests", TIMEOUT, || {
        let (out, report) = audit_reads(&id);
        let users = [ADMIN, "mallory", reader.as_str()];
        let all = users.iter().all(|u| !reads_of(&report, u).is_empty());
        async move { all.then_some((out, report)) }
    })
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(4),
        "an uncovered read: exit 4\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["counts"], json!({"covered": 1, "uncovered": 1, "unconfirmed": 0, "refused": 1}), "{stdout}");

    let legit = reads_of(&report, &reader);
    assert_eq!(legit.len(), 1, "{stdout}");
    let legit = legit[0];
    assert_eq!(legit["outcome"], "covered", "{stdout}");
    assert_eq!(legit["requester"]["impersonatedBy"], ADMIN);
    assert_eq!(legit["port"], "8080");
    assert_eq!(legit["code"], 503, "no pod: the proxy found no endpoint");
    assert_eq!(legit["subject"], format!("Group:{group}"));
    assert_eq!(legit["grant"]["via"], json!({"kind": "AccessPolicy", "name": format!("{id}/readers"), "uid": uid}));
    assert_eq!(legit["grant"]["purpose"], purpose);
    assert_eq!(legit["grant"]["expiresAt"], expires.to_string());
    // The grant's record names the port it gives: the read on it is covered.
    assert_eq!(legit["grant"]["ports"], json!(["8080/http"]), "{stdout}");
    assert_eq!(legit["path"], "services/proxy");

    let admin = reads_of(&report, ADMIN);
    assert_eq!(admin.len(), 1, "{stdout}");
    assert_eq!(admin[0]["outcome"], "uncovered", "{stdout}");
    assert_eq!(admin[0]["why"], format!("subject not in the grant(s) in force: AccessPolicy {id}/readers"));
    let mallory = reads_of(&report, "mallory");
    assert_eq!((mallory[0]["outcome"].as_str(), mallory[0]["code"].as_u64()), (Some("refused"), Some(403)));

    // Who could read at the instant of the legitimate read: `access-review --at`, from
    // the chain alone.
    let at = legit["time"].as_str().expect("a time").to_string();
    let chain = std::env::var("DRMESH_E2E_AUDIT_LOG").expect("with-operator.sh");
    let review = Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(["access-review", "--at", &at, "--audit-log", &chain, "-o", "json"])
        .output()
        .expect("drmesh access-review --at");
    assert!(review.status.success(), "{}", String::from_utf8_lossy(&review.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&review.stdout).expect("json rows");
    let ours: Vec<&Value> = rows.iter().filter(|r| r["namespace"] == id.as_str()).collect();
    assert_eq!(ours.len(), 1, "{rows:?}");
    assert_eq!(
        (ours[0]["subject"].as_str(), ours[0]["via"].as_str(), ours[0]["status"].as_str()),
        (Some(format!("Group:{group}").as_str()), Some(format!("AccessPolicy {id}/readers").as_str()), Some("Granted"))
    );
    assert_eq!(ours[0]["ports"], json!(["8080/http"]), "{rows:?}");
}
