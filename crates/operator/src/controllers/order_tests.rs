//! The order of the requests a reconcile sends, against a mock API server (a tower
//! service that records each request and echoes its body back): no cluster, so these
//! run in `make unit`. The isolation NetworkPolicy must reach the API server before the
//! Deployment whose pods it guards, and the ServiceAccount before the pods that use it.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::reflector;

use super::context::{Caches, Context, Queues};
use super::records::{ChildCache, no_detail};
use super::{available_replicas, children, dataproduct, foreign};
use crate::api::DataProduct;
use crate::telemetry::{AuditSink, Metrics};

/// (method, path) of every request, in order.
type Log = Arc<Mutex<Vec<(String, String)>>>;

fn mock_client(log: Log) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let log = log.clone();
        async move {
            log.lock().expect("log").push((request.method().to_string(), request.uri().path().to_string()));
            let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .expect("response"),
            )
        }
    });
    kube::Client::new(service, "default")
}

fn context(client: kube::Client) -> Arc<Context> {
    let (synced_tx, synced) = tokio::sync::watch::channel(true);
    std::mem::forget(synced_tx); // the caches count as listed for the whole test
    let caches = Caches {
        sources: reflector::store().0,
        products: reflector::store().0,
        policies: reflector::store().0,
        namespaces: reflector::store().0,
        deployments: ChildCache::new(available_replicas),
        services: ChildCache::new(no_detail),
        service_accounts: ChildCache::new(no_detail),
        network_policies: ChildCache::new(no_detail),
        roles: ChildCache::new(children::rules_hash),
        role_bindings: ChildCache::new(no_detail),
        config_maps: ChildCache::new(no_detail),
        foreign: foreign::Foreign::default(),
        synced,
        api_server: crate::mesh::grant::ApiServer::none(),
    };
    let metrics = Arc::new(Metrics::default());
    let audit = Arc::new(AuditSink::new(Box::new(std::io::sink())));
    Arc::new(Context::new(client, caches, metrics, audit, "test".into(), Arc::new(Queues::default())))
}

fn product() -> DataProduct {
    drmesh_yaml::from_str(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {name: feed, namespace: police, uid: uid-feed, generation: 1}
spec:
  classification: Public
  owners: [{kind: Group, name: police-data-owners}]
  runtime: {image: registry.example/feed:1.0, replicas: 1}
  outputPorts: [{name: http, port: 8080, protocol: HTTP}]
  contract: {schema: "{\"type\": \"object\"}"}
"#,
    )
    .expect("fixture")
}

#[tokio::test]
async fn a_product_is_isolated_before_its_pods_can_start() {
    let log = Log::default();
    let ctx = context(mock_client(log.clone()));
    // The status write fails against the echo (it is not a DataProduct): the applies
    // before it are what this test looks at.
    let _ = dataproduct::reconcile(Arc::new(product()), ctx).await;
    let log = log.lock().expect("log").clone();
    let applied: Vec<&str> = log
        .iter()
        .filter(|(method, _)| method == "PATCH")
        .map(|(_, path)| path.rsplit('/').nth(1).unwrap_or_default())
        .collect();
    let at =
        |kind: &str| applied.iter().position(|k| *k == kind).unwrap_or_else(|| panic!("no {kind} applied: {log:?}"));
    assert!(at("networkpolicies") < at("deployments"), "the isolation comes first: {log:?}");
    assert!(at("serviceaccounts") < at("deployments"), "the identity before the pods: {log:?}");
    assert!(at("roles") < at("rolebindings"), "a Role before the binding that names it: {log:?}");
    assert!(applied.first() == Some(&"networkpolicies"), "nothing before the isolation: {log:?}");
}
