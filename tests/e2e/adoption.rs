//! What a platform team adopting drmesh runs against a cluster: `drmesh --kubeconfig
//! --context ... --cluster` as a reviewer who may not list Secrets cluster-wide.

use std::process::Command;

use serde_json::Value;

use crate::harness::{self, ClusterScoped, TestNamespace};

/// A kubeconfig whose context `reviewer` is the admin's credentials impersonating
/// `user` (no group): the API server authorizes `user`, as for a real reviewer.
fn reviewer_kubeconfig(user: &str) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(harness::kubeconfig_path()).expect("kubeconfig");
    let mut config: Value = drmesh::yaml::from_str(&text).expect("kubeconfig YAML");
    let admin =
        config["users"].as_array().expect("users").iter().find(|u| u["name"] == "admin").expect("admin").clone();
    let mut reviewer = admin.clone();
    reviewer["name"] = "reviewer".into();
    reviewer["user"]["as"] = user.into();
    config["users"].as_array_mut().expect("users").push(reviewer);
    let cluster = config["clusters"][0]["name"].clone();
    config["contexts"]
        .as_array_mut()
        .expect("contexts")
        .push(serde_json::json!({"name": "reviewer", "context": {"cluster": cluster, "user": "reviewer"}}));
    let file = tempfile::Builder::new().suffix(".kubeconfig").tempfile().expect("temp kubeconfig");
    std::fs::write(file.path(), drmesh::yaml::to_string(&config).expect("YAML")).expect("write kubeconfig");
    file
}

fn drmesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_drmesh"))
        .args(args)
        // Only the flags say which cluster: no inherited kubeconfig.
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        .output()
        .expect("drmesh runs")
}

#[tokio::test]
async fn a_reviewer_reads_the_mesh_with_context_and_kubeconfig_flags_without_listing_secrets() {
    let ns = TestNamespace::create("review").await;
    let n = &ns.name;
    harness::apply_text(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: db-creds, namespace: {n}, labels: {{drmesh.io/credentials: "true"}}}}
stringData: {{password: not-shown}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: db, namespace: {n}}}
spec:
  type: Postgres
  classification: Public
  endpoint: {{host: db.example, cidr: 192.0.2.10/32, port: 5432}}
  credentialsSecretRef: {{name: db-creds}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: lost, namespace: {n}}}
spec:
  type: Postgres
  classification: Public
  endpoint: {{host: lost.example, cidr: 192.0.2.11/32, port: 5432}}
  credentialsSecretRef: {{name: no-such-secret}}
---
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {{name: report, namespace: {n}}}
spec:
  description: A report.
  classification: Public
  inputs: [{{dataSource: db}}]
  runtime: {{image: registry.example/report:1}}
  outputPorts: [{{name: http, port: 8080, protocol: HTTP}}]
"#
    ));

    // The reviewer: cluster-wide list of namespaces and drmesh objects; `get` on Secrets
    // of this namespace only (no `list`, nowhere else).
    let user = harness::unique_name("reviewer");
    let role = ClusterScoped { kind: "clusterrole", name: user.clone() };
    let binding = ClusterScoped { kind: "clusterrolebinding", name: user.clone() };
    harness::apply_text(&format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {role}}}
rules:
- {{apiGroups: [""], resources: [namespaces], verbs: [list]}}
- {{apiGroups: [drmesh.io], resources: [datasources, dataproducts, accesspolicies], verbs: [list]}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {binding}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: secret-reader, namespace: {n}}}
rules: [{{apiGroups: [""], resources: [secrets], verbs: [get]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: secret-reader, namespace: {n}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
"#,
        role = role.name,
        binding = binding.name,
    ));
    let kubeconfig = reviewer_kubeconfig(&user);
    let path = kubeconfig.path().to_str().expect("utf-8 path");
    let can_i = |verb: &str, namespace: &str| -> String {
        let out = harness::kubectl(&["auth", "can-i", verb, "secrets", "-n", namespace, "--as", &user]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i("list", n), "no", "the reviewer may not list Secrets");
    assert_eq!(can_i("get", "default"), "no", "nor get them elsewhere");

    // Awaited by condition: RBAC is read from the informer cache of the API server.
    let review = harness::eventually("the reviewer's access review", harness::TIMEOUT, move || async move {
        let out = drmesh(&["access-review", "--cluster", "--kubeconfig", path, "--context", "reviewer", "-o", "json"]);
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        out.status.success().then_some(rows)
    })
    .await;
    assert!(
        review.iter().any(|r| r["namespace"] == n.as_str() && r["name"] == "db"),
        "the reviewer sees the source's credentials access: {review:#?}"
    );

    // The Secret a DataSource names but that does not exist is still reported.
    let out = drmesh(&["validate", "--cluster", "--kubeconfig", path, "--context", "reviewer"]);
    let report = String::from_utf8_lossy(&out.stdout);
    let lost: Vec<&str> = report.lines().filter(|l| l.contains(&format!("{n}/lost"))).collect();
    assert!(lost.iter().any(|l| l.contains("SecretNotFound")), "{report}");
    assert!(!report.lines().any(|l| l.contains(&format!("{n}/db")) && l.contains("Secret")), "{report}");

    // The flags are what chooses the cluster: a context that does not exist is an error
    // (exit 2), not a fallback to another configuration.
    let out = drmesh(&["access-review", "--cluster", "--kubeconfig", path, "--context", "no-such-context"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-context"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same reviewer without `get` on that namespace's Secrets is told which ones it
    // could not read; they are taken as released (the review shows the access they lend).
    harness::kubectl(&["delete", "rolebinding", "secret-reader", "-n", n]);
    let warned = harness::eventually("the reviewer loses get on Secrets", harness::TIMEOUT, move || async move {
        let out = drmesh(&["access-review", "--cluster", "--kubeconfig", path, "--context", "reviewer", "-o", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && stderr.contains(&format!("may not get Secret {n}/db-creds"))).then_some(rows)
    })
    .await;
    assert!(warned.iter().any(|r| r["namespace"] == n.as_str() && r["name"] == "db"), "{warned:#?}");
}

#[tokio::test]
async fn kubectl_get_shows_why_an_object_is_not_ready() {
    let ns = TestNamespace::create("columns").await;
    let n = &ns.name;
    harness::apply_text(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataSource
metadata: {{name: orphan, namespace: {n}}}
spec:
  type: Postgres
  classification: Public
  endpoint: {{host: db.example, cidr: 192.0.2.10/32, port: 5432}}
  credentialsSecretRef: {{name: never-created}}
"#
    ));
    let reason = |o: &Value| harness::ready_of(o).map(|(_, r)| r);
    harness::eventually("the source's Ready reason", harness::TIMEOUT, || async {
        let o = harness::kubectl_json(&["get", "datasource", "orphan", "-n", n, "-o", "json"]);
        (reason(&o).as_deref() == Some("SecretNotFound")).then_some(())
    })
    .await;
    let table = |args: &[&str]| {
        let out = harness::kubectl(args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = table(&["get", "dsrc", "orphan", "-n", n]);
    let header: Vec<&str> = plain.lines().next().unwrap_or_default().split_whitespace().collect();
    assert!(header.contains(&"REASON") && !header.contains(&"MESSAGE"), "{plain}");
    assert!(plain.contains("SecretNotFound"), "{plain}");
    let wide = table(&["get", "dsrc", "orphan", "-n", n, "-o", "wide"]);
    assert!(wide.lines().next().unwrap_or_default().contains("MESSAGE"), "{wide}");
    assert!(wide.contains(&format!("Secret {n}/never-created does not exist")), "{wide}");
}
