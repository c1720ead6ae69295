//! CVE-2024-7598 for drmesh's products: while a namespace or a product is deleted, the
//! product's isolation must outlive its pods. A pod outside every policy probes a
//! product's pod directly, ten times a second, during the deletion: not one connection
//! may be answered. The product keeps serving 20 s after SIGTERM, as a server draining
//! its clients does, so its pods outlive the start of the deletion.
//!
//! Namespaces: Kubernetes >= 1.34 deletes a namespace's pods before its other objects
//! (OrderedNamespaceDeletion, GA). A product's own deletion has no such order (the
//! garbage collector deletes its NetworkPolicy and Deployment at once): the isolation's
//! finalizer (`drmesh.io/isolation`) holds it until the pods are gone. Without it, a
//! draining pod whose policy is gone answers anyone on kube-router (seen in this test).

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};

use super::{PRODUCT_IMAGE, assert_refused, product_yaml, real_node, wait_available};
use crate::harness::{self, TestNamespace, apply};

/// A plain Deployment running the product image, under no NetworkPolicy.
fn prober_yaml(ns: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: prober, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: prober}}}}
  template:
    metadata: {{labels: {{app: prober}}}}
    spec:
      automountServiceAccountToken: false
      securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}
      containers:
        - name: prober
          image: {PRODUCT_IMAGE}
          imagePullPolicy: Never
          env: [{{name: PROBE_TIMEOUT, value: 300ms}}]
          securityContext: {{allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {{drop: [ALL]}}}}
"#
    )
}

/// What an unrestricted pod saw, probing a draining product's pod ten times a second while
/// `delete` runs and until `gone` says the deletion is over.
async fn probe_during_deletion<D, G>(name: &str, delete: D, gone: G) -> Vec<String>
where
    D: FnOnce(&TestNamespace),
    G: AsyncFnOnce(&TestNamespace),
{
    let labels = [("drmesh.io/clearance", "Internal")];
    let producer = TestNamespace::create_on_real_node(name, &labels).await;
    let outsider = TestNamespace::create_on_real_node(&format!("{name}-out"), &[]).await;
    let (p, o) = (producer.name.clone(), &outsider.name);
    // The product drains for 20 s after SIGTERM (within its 30 s grace period), as real
    // servers do: its pods outlive the start of the deletion.
    let feed = product_yaml(&p, "feed", "[]").replace(
        "      - {name: PROBE_TIMEOUT",
        "      - {name: PRODUCT_DRAIN, value: 20s}\n      - {name: PROBE_TIMEOUT",
    );
    assert!(feed.contains("PRODUCT_DRAIN"), "{feed}");
    apply(&[feed, prober_yaml(o)].join("---\n"));
    wait_available(&producer, "feed").await;
    wait_available(&outsider, "prober").await;
    let pods = producer.api::<Pod>().list(&ListParams::default().labels("drmesh.io/data-product=feed")).await;
    let ip = pods.expect("pods").items.iter().find_map(|p| p.status.as_ref()?.pod_ip.clone()).expect("a pod IP");
    let url = format!("http://{ip}:8080/");
    // The node's firewall learns a new pod's address a moment after the pod starts (seen
    // once on a loaded machine: one answer right after Available). What is tested is the
    // deletion: wait until the isolation is in force on the node, then keep probing.
    harness::eventually("the isolation in force on the node", Duration::from_secs(30), || {
        let p = super::probe(o, "prober", &url);
        async move { (!p.answered).then_some(()) }
    })
    .await;
    assert_refused(o, "prober", &url);

    let mut watch = std::process::Command::new(harness::kubectl_path())
        .arg("--kubeconfig")
        .arg(harness::kubeconfig_path())
        .args(["exec", "-n", o, "deploy/prober", "--", "product", "probe", "--every", "100ms", "--for", "40s", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(());
            lines.push(line);
        }
        lines
    });
    // Once the prober reports its first try, delete under it.
    rx.recv_timeout(Duration::from_secs(30)).expect("the prober started");
    delete(&producer);
    gone(&producer).await;
    let _ = watch.wait();
    let lines = reader.join().expect("reader");
    assert!(lines.len() > 20, "the prober did not run: {lines:?}");
    lines
}

fn answered(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.contains(" HTTP ")).collect()
}

#[tokio::test]
async fn a_product_stays_isolated_while_its_namespace_is_deleted() {
    if !real_node() {
        return;
    }
    let lines = probe_during_deletion(
        "dp-cve-ns",
        |ns| {
            let _ = harness::kubectl(&["delete", "namespace", &ns.name, "--wait=false"]);
        },
        async |ns| {
            harness::wait_deleted(&Api::<Namespace>::all(harness::admin().await), &ns.name, Duration::from_secs(120))
                .await
        },
    )
    .await;
    let answered = answered(&lines);
    assert!(answered.is_empty(), "the product answered during its namespace's deletion: {answered:#?}");
}

#[tokio::test]
async fn a_product_stays_isolated_while_it_is_deleted() {
    if !real_node() {
        return;
    }
    let lines = probe_during_deletion(
        "dp-cve-dp",
        |ns| {
            let _ = harness::kubectl(&["delete", "dataproduct", "feed", "-n", &ns.name, "--wait=false"]);
        },
        async |ns| {
            let pods: Api<Pod> = ns.api();
            harness::eventually("the product's pods are gone", Duration::from_secs(120), || {
                let pods = pods.clone();
                async move {
                    let list = pods.list(&ListParams::default().labels("drmesh.io/data-product=feed")).await.ok()?;
                    list.items.is_empty().then_some(())
                }
            })
            .await
        },
    )
    .await;
    let answered = answered(&lines);
    assert!(answered.is_empty(), "the product answered during its deletion: {answered:#?}");
}
