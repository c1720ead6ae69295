//! Installed as production does: `helm install charts/drmesh` with the locally built
//! operator image (images/build.sh, imported into the real node), the operator running
//! as a pod under the chart's ServiceAccount, RBAC, NetworkPolicy and admission
//! policies; the reference product image in real pods; decisions proven with traffic.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;

use super::release::{CONVERGE, ONE_OPERATOR, Release};
use crate::datapath::{api_server_address, real_node};
use crate::harness::{self, TestNamespace};

/// The operator's image: `images/build.sh operator` of the binary the tests run, imported
/// into the real node. Returns `repository` and `tag`.
fn operator_image() -> (String, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary = std::env::var_os("DRMESH_BIN").map(Into::into).unwrap_or_else(|| repo.join("target/debug/drmesh"));
    let out =
        Command::new(repo.join("images/build.sh")).arg("operator").arg(&binary).output().expect("images/build.sh");
    assert!(out.status.success(), "images/build.sh operator: {}", String::from_utf8_lossy(&out.stderr));
    let archive = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out =
        Command::new(repo.join("tests/e2e/cluster/cluster.sh")).args(["import", &archive]).output().expect("import");
    assert!(out.status.success(), "cluster.sh import: {}", String::from_utf8_lossy(&out.stderr));
    let version = env!("CARGO_PKG_VERSION");
    ("drmesh.local/drmesh".into(), version.into())
}

/// The API server's endpoint port, as the operator's pod reaches it.
fn api_server_port() -> String {
    let out = harness::kubectl(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].ports[0].port}"]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Chart values: the local image, one replica on the real node, watching `namespaces`,
/// its egress to the API server as the real node reaches it.
fn on_the_real_node(repository: &str, tag: &str, namespaces: &[&str]) -> String {
    format!(
        r#"
image: {{repository: {repository}, tag: "{tag}", pullPolicy: Never}}
replicaCount: 1
podAntiAffinity: none
nodeSelector: {{drmesh.io/node: real}}
tolerations: [{{key: drmesh.io/real-node, operator: Exists, effect: NoSchedule}}]
operator: {{watchNamespaces: [{}]}}
networkPolicy:
  apiServer: {{cidrs: ["{}/32"], ports: [{}]}}
"#,
        namespaces.join(", "),
        api_server_address(),
        api_server_port(),
    )
}

#[tokio::test]
async fn the_chart_installed_operator_runs_as_a_pod_and_its_decisions_hold_on_the_wire() {
    if !real_node() {
        return;
    }
    let _turn = ONE_OPERATOR.lock().await;
    let (repository, tag) = operator_image();
    let mut release = Release::new("dp-helm").await;
    let labels = release.fenced(&[("drmesh.io/clearance", "Internal")]);
    let producer = TestNamespace::create_on_real_node("dp-helm-prod", &labels).await;
    let consumer = TestNamespace::create_on_real_node("dp-helm-cons", &labels).await;
    let outsider = TestNamespace::create_on_real_node("dp-helm-out", &labels).await;
    let (p, c, o) = (&producer.name, &consumer.name, &outsider.name);
    release.values.push_str(&on_the_real_node(&repository, &tag, &[p.as_str(), c.as_str(), o.as_str()]));
    release.fence();
    release.install();

    // The operator is a pod on the real node, under the chart's ServiceAccount.
    let pods = release
        .namespace
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=drmesh"))
        .await
        .expect("operator pods");
    let pod = pods.items.first().expect("an operator pod");
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("drmesh"));
    assert!(spec.node_name.as_deref().is_some_and(|n| n.starts_with("drmesh-node")), "{:?}", spec.node_name);
    harness::wait_for(&release.namespace.api::<Deployment>(), &release.name, CONVERGE, |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).and_then(|s| s.available_replicas).unwrap_or(0) >= 1
    })
    .await;

    crate::datapath::prove_a_grant(&producer, &consumer, &outsider).await;
}

/// The reference mesh under the chart-installed operator (its own pod, ServiceAccount,
/// RBAC and admission policies): traffic from inside every product's pod, np-guard and
/// `drmesh access-review` agree pair by pair and port by port, and alice reads the
/// incident feed through the API server's proxy (the chart's `apiServerCIDRs: auto`).
#[tokio::test]
async fn the_reference_mesh_under_the_chart_installed_operator_holds_on_the_wire() {
    if !real_node() {
        return;
    }
    let _turn = ONE_OPERATOR.lock().await;
    let (repository, tag) = operator_image();
    let mut release = Release::new("rm-helm").await;
    let labels: Vec<(String, String)> =
        release.fenced(&[]).into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let verdicts = crate::datapath::matrix::judge_reference_mesh(&labels, |namespaces| {
        let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        release.values.push_str(&on_the_real_node(&repository, &tag, &namespaces));
        release.fence();
        release.install();
    })
    .await;
    crate::datapath::matrix::assert_judges_agree(verdicts);
}
