//! The order of the requests a reconcile sends, against a mock API server (a tower
//! service that records each request and echoes its body back): no cluster, so these
//! run in `make unit`. The isolation NetworkPolicy must reach the API server before the
//! Deployment whose pods it guards, and the ServiceAccount before the pods that use it;
//! a grant whose Role changes loses its RoleBinding before the Role changes, so no
//! subject the edit removes ever holds the edited rules (security model O14).

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::reflector;

use super::context::{Caches, Context, Queues};
use super::dataproduct;
use crate::api::DataProduct;
use crate::telemetry::{AuditSink, Metrics};

/// (method, path) of every request, in order.
pub(super) type Log = Arc<Mutex<Vec<(String, String)>>>;

/// A JSON answer of a mock API server.
pub(crate) fn answer(status: u16, body: Vec<u8>) -> Result<http::Response<Body>, std::convert::Infallible> {
    Ok(http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response"))
}

pub(super) fn mock_client(log: Log) -> kube::Client {
    mock_client_where(log, true)
}

/// The mock API server; `product_exists`: whether a GET of the product `police/feed`
/// finds it (as the fixture has it) or answers 404 (deleted meanwhile).
fn mock_client_where(log: Log, product_exists: bool) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let log = log.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            log.lock().expect("log").push((method.clone(), path.clone()));
            let mut body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            let mut status = 200;
            if method == "PATCH"
                && let Ok(mut object) = serde_json::from_slice::<serde_json::Value>(&body)
                && let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut())
            {
                // As the API server does: the stored object's version.
                meta.insert("resourceVersion".into(), "1".into());
                body = serde_json::to_vec(&object).unwrap_or_default();
            }
            if method == "DELETE" {
                body = br#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}"#.to_vec();
            }
            if method == "GET" && path.ends_with("/namespaces/police/dataproducts/feed") {
                body = if product_exists {
                    br#"{"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "feed", "namespace": "police", "uid": "uid-feed"}}"#.to_vec()
                } else {
                    status = 404;
                    br#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404}"#.to_vec()
                };
            }
            answer(status, body)
        }
    });
    kube::Client::new(service, "default")
}

/// The caches' writer of products (the other caches start empty).
pub(super) type Products = reflector::store::Writer<kube::core::DeserializeGuard<DataProduct>>;

pub(super) fn context(client: kube::Client) -> (Arc<Context>, Products) {
    context_with(client, |_| {})
}

/// [`context`], changed by `set` before it is shared.
fn context_with(client: kube::Client, set: impl FnOnce(&mut Context)) -> (Arc<Context>, Products) {
    let (products, products_writer) = reflector::store();
    let caches = Caches { products, ..Caches::listed() };
    let metrics = Arc::new(Metrics::default());
    let audit = Arc::new(AuditSink::new(Box::new(std::io::sink())));
    let mut context = Context::new(client, caches, metrics, audit, "test".into(), Arc::new(Queues::default()));
    set(&mut context);
    (Arc::new(context), products_writer)
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
    let (ctx, _) = context(mock_client(log.clone()));
    // The status write fails against the echo (it is not a DataProduct): the applies
    // before it are what this test looks at.
    let _ = dataproduct::reconcile(&product(), &ctx).await;
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

/// The watch's echo of a reconcile's own apply (the version the apply answered with)
/// does not wake the product again: that reconcile knew what the child holds. Any other
/// version of it (someone's edit, the Deployment controller's status write) does.
#[tokio::test]
async fn the_echo_of_a_reconciles_own_apply_does_not_wake_it_again() {
    use futures::StreamExt;
    use k8s_openapi::api::apps::v1::Deployment;

    let log = Log::default();
    let (ctx, _) = context(mock_client(log.clone()));
    let _ = dataproduct::reconcile(&product(), &ctx).await;
    let applied = log.lock().expect("log").iter().any(|(m, p)| m == "PATCH" && p.ends_with("/deployments/feed"));
    assert!(applied, "the fixture's reconcile applies the Deployment feed: {log:?}");
    let deployment = |version: &str| {
        let mut d = Deployment::default();
        d.metadata.name = Some("feed".into());
        d.metadata.namespace = Some("police".into());
        d.metadata.uid = Some("uid-deployment".into());
        d.metadata.resource_version = Some(version.into());
        d.metadata.owner_references = Some(vec![crate::mesh::owner_reference(&product())]);
        d
    };
    let fan = super::watches::FanOut::<Deployment>::new();
    let events = fan.subscribe();
    for version in ["1", "2"] {
        fan.send(&Ok(kube::runtime::watcher::Event::Apply(deployment(version))));
    }
    drop(fan);
    let queue = Arc::new(super::queue::Queue::<kube::core::DeserializeGuard<DataProduct>>::default());
    let woken: Vec<String> = super::owned(events, super::watches::any_change, queue, (ctx.clone(), |c| &c.products))
        .map(|d| d.expect("ok").metadata.resource_version.unwrap_or_default())
        .collect()
        .await;
    assert_eq!(woken, ["2"], "the echo (version 1, what the apply answered) wakes nothing; version 2 does");
}

/// A reconcile started from a cache that has not yet seen the product's deletion (the
/// deletion of its Deployment woke it) creates nothing: the product is read from the API
/// server before its workload is created, and is gone. (The CI run caught the workload
/// re-created, and one of its pods starting as the isolation was released.)
#[tokio::test]
async fn a_product_deleted_behind_a_stale_cache_gets_no_workload_again() {
    let log = Log::default();
    let (ctx, _) = context(mock_client_where(log.clone(), false));
    let outcome = dataproduct::reconcile(&product(), &ctx).await;
    assert!(matches!(outcome, Ok(None)), "nothing to do for a product that is gone: {outcome:?}");
    let log = log.lock().expect("log").clone();
    assert!(log.iter().all(|(method, _)| method == "GET"), "no child applied, no status written: {log:?}");
    assert_eq!(log.len(), 1, "one read of the product: {log:?}");
}

/// Feeds `objects` to a child cache, as its watch would.
async fn seen<K>(cache: &super::records::ChildCache<K>, objects: Vec<K>)
where
    K: kube::Resource<DynamicType = ()> + Default + Clone + serde::Serialize + Send + 'static,
{
    use futures::StreamExt;
    let events = objects.into_iter().map(|o| Ok(kube::runtime::watcher::Event::Apply(o)));
    let _ = cache.clone().reflect(futures::stream::iter(events)).collect::<Vec<_>>().await;
}

#[tokio::test]
async fn a_grant_whose_role_changes_loses_its_binding_first() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let log = Log::default();
    let (ctx, mut products) = context(mock_client(log.clone()));
    let mut feed = product();
    feed.metadata.name = Some("feed".into());
    products.apply_watcher_event(&kube::runtime::watcher::Event::Apply(kube::core::DeserializeGuard(Ok(feed))));
    let policy: crate::api::AccessPolicy = drmesh_yaml::from_str(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {name: officers, namespace: police, uid: uid-officers, generation: 2}
spec:
  dataProduct: feed
  ports: [http]
  subjects: [{kind: Group, name: cnc-officers}]
"#,
    )
    .expect("policy");
    // On the cluster: the Role and RoleBinding of the policy's previous generation, whose
    // Role had other rules (the edit changes them).
    let labels = std::collections::BTreeMap::from([
        (crate::mesh::labels::MANAGED_BY.to_string(), crate::mesh::labels::MANAGER.to_string()),
        (crate::mesh::labels::ACCESS_POLICY.to_string(), "officers".to_string()),
    ]);
    let owner = crate::mesh::owner_reference(&policy);
    let metadata = crate::mesh::k8s::meta("drmesh-grant-officers", "police", &labels, &owner);
    let old_role = Role {
        metadata: metadata.clone(),
        rules: Some(vec![crate::mesh::k8s::rule("", &["services/proxy"], vec!["feed:9090".into()], &["get"])]),
    };
    seen(&ctx.caches.roles, vec![old_role]).await;
    seen(&ctx.caches.role_bindings, vec![RoleBinding { metadata, ..Default::default() }]).await;
    assert!(ctx.caches.role_bindings.get("police", "drmesh-grant-officers").is_some(), "the fixture is cached");

    let _ = super::accesspolicy::reconcile(&policy, &ctx, false).await;
    let log = log.lock().expect("log").clone();
    let at = |method: &str, kind: &str| {
        log.iter()
            .position(|(m, p)| m == method && p.rsplit('/').nth(1) == Some(kind))
            .unwrap_or_else(|| panic!("no {method} {kind}: {log:?}"))
    };
    assert!(at("DELETE", "rolebindings") < at("PATCH", "roles"), "the binding goes before the Role changes: {log:?}");
    assert!(at("PATCH", "roles") < at("PATCH", "rolebindings"), "then the Role, then the binding again: {log:?}");
}

/// The revoke phase comes first: a product whose owners are removed loses its owners'
/// RoleBinding, then their Role, before any child is applied (the isolation included).
#[tokio::test]
async fn owners_access_the_plan_drops_is_revoked_before_anything_is_applied() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let log = Log::default();
    let (ctx, _) = context(mock_client(log.clone()));
    let mut feed = product();
    feed.spec.owners.clear();
    let labels = std::collections::BTreeMap::from([
        (crate::mesh::labels::MANAGED_BY.to_string(), crate::mesh::labels::MANAGER.to_string()),
        (crate::mesh::labels::DATA_PRODUCT.to_string(), "feed".to_string()),
    ]);
    let owner = crate::mesh::owner_reference(&feed);
    let name = crate::mesh::labels::product_owners("feed");
    let metadata = crate::mesh::k8s::meta(&name, "police", &labels, &owner);
    seen(&ctx.caches.roles, vec![Role { metadata: metadata.clone(), rules: None }]).await;
    seen(&ctx.caches.role_bindings, vec![RoleBinding { metadata, ..Default::default() }]).await;

    let _ = dataproduct::reconcile(&feed, &ctx).await;
    let log = log.lock().expect("log").clone();
    let at = |method: &str, kind: &str| {
        log.iter()
            .position(|(m, p)| m == method && p.rsplit('/').nth(1) == Some(kind))
            .unwrap_or_else(|| panic!("no {method} {kind}: {log:?}"))
    };
    let first_apply = log.iter().position(|(m, _)| m == "PATCH").unwrap_or_else(|| panic!("nothing applied: {log:?}"));
    assert!(at("DELETE", "rolebindings") < at("DELETE", "roles"), "the binding before its Role: {log:?}");
    assert!(at("DELETE", "roles") < first_apply, "revocations before any apply: {log:?}");
}

/// A writer the test reads back (the audit stream); the report tests use it too.
#[derive(Clone, Default)]
pub(super) struct Shared(pub(super) Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Like [`mock_client`], but the status of every AccessPolicy is refused as the API
/// server refuses the status of an object its CRD's root rule no longer admits.
fn refusing_status(log: Log) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let log = log.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            log.lock().expect("log").push((method.clone(), path.clone()));
            let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            let refused = path.contains("/accesspolicies/") && path.ends_with("/status");
            let (code, body) = if refused {
                let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "AccessPolicy.drmesh.io \"cnc.officers\" is invalid: <nil>: Invalid value: metadata.name must be a DNS-1123 label",
                    "reason": "Invalid", "code": 422});
                (422, serde_json::to_vec(&status).expect("json"))
            } else if method == "DELETE" {
                (200, br#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}"#.to_vec())
            } else {
                (200, body)
            };
            answer(code, body)
        }
    });
    kube::Client::new(service, "default")
}

#[tokio::test]
async fn a_grant_whose_status_is_refused_for_its_name_is_still_reported_once() {
    let log = Log::default();
    let (ctx, _) = context(refusing_status(log.clone()));
    let records = Shared::default();
    let mut ctx = Arc::into_inner(ctx).expect("one owner");
    ctx.audit = Arc::new(AuditSink::new(Box::new(records.clone())));
    let ctx = Arc::new(ctx);
    // Created before the CRD refused dotted names, and granted then.
    let policy: crate::api::AccessPolicy = drmesh_yaml::from_str(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {name: cnc.officers, namespace: police, uid: uid-dotted, generation: 1}
spec:
  dataProduct: feed
  subjects: [{kind: Group, name: cnc-officers}]
status:
  observedGeneration: 1
  conditions:
    - {type: Granted, status: "True", reason: Granted, message: granted, lastTransitionTime: "2026-11-01T00:00:00Z"}
"#,
    )
    .expect("policy");
    let policy = Arc::new(policy);
    let first = super::accesspolicy::reconcile(&policy, &ctx, false).await;
    assert!(first.is_ok(), "no retry loop on a status the API server will never take: {first:?}");
    let second = super::accesspolicy::reconcile(&policy, &ctx, false).await;
    assert!(second.is_ok());
    let text = String::from_utf8(records.0.lock().expect("records").clone()).expect("utf-8");
    let revoked: Vec<&str> = text.lines().filter(|l| l.contains("\"Revoked\"") && l.contains("InvalidName")).collect();
    assert_eq!(revoked.len(), 1, "one Revoked record naming InvalidName: {text}");
    let log = log.lock().expect("log").clone();
    let events = log.iter().filter(|(m, p)| m == "POST" && p.ends_with("/events")).count();
    assert_eq!(events, 1, "one Event: {log:?}");
}

/// The audit output, noting each write in the request log (so the order of records and
/// requests can be asserted).
struct Logged {
    records: Shared,
    log: Log,
}

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.log.lock().expect("log").push(("AUDIT".into(), String::new()));
        self.records.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An audit stream that cannot be written (a full disk, a dead pipe).
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("the audit disk is full"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("the audit disk is full"))
    }
}

/// Like [`mock_client`], keeping the body of every owners' Role applied.
fn keeping_owner_roles(log: Log, roles: Arc<Mutex<Vec<String>>>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (log, roles) = (log.clone(), roles.clone());
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            log.lock().expect("log").push((method.clone(), path.clone()));
            let mut body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            if method == "PATCH" && path.ends_with("/roles/feed-owners") {
                roles.lock().expect("roles").push(String::from_utf8_lossy(&body).into_owned());
            }
            if method == "GET" && path.ends_with("/namespaces/police/dataproducts/feed") {
                body = br#"{"apiVersion": "drmesh.io/v1alpha1", "kind": "DataProduct", "metadata": {"name": "feed", "namespace": "police", "uid": "uid-feed"}}"#.to_vec();
            }
            answer(200, body)
        }
    });
    kube::Client::new(service, "default")
}

/// Owners who gain a product's data are recorded before the Role that gives it reaches the
/// API server; when the record cannot be written (and the audit refuses), their Role
/// comes without the data (`services/proxy`).
#[tokio::test]
async fn owners_gain_the_data_only_once_it_is_recorded() {
    for writable in [true, false] {
        let (log, roles) = (Log::default(), Arc::new(Mutex::new(Vec::new())));
        let (ctx, _) = context(keeping_owner_roles(log.clone(), roles.clone()));
        let records = Shared::default();
        let mut ctx = Arc::into_inner(ctx).expect("one owner");
        let stream: Box<dyn std::io::Write + Send> =
            if writable { Box::new(Logged { records: records.clone(), log: log.clone() }) } else { Box::new(Broken) };
        ctx.audit = Arc::new(AuditSink::new(stream));
        let _ = dataproduct::reconcile(&product(), &Arc::new(ctx)).await;
        let role = roles.lock().expect("roles").first().cloned().expect("the owners' Role is applied");
        let text = String::from_utf8(records.0.lock().expect("records").clone()).expect("utf-8");
        let log = log.lock().expect("log").clone();
        if writable {
            assert!(role.contains("services/proxy"), "recorded owners read the data: {role}");
            assert!(text.contains("\"OwnersAccess\"") && text.contains("\"Granted\""), "the record: {text}");
            let recorded = log.iter().position(|(m, _)| m == "AUDIT").expect("a record");
            let applied =
                log.iter().position(|(m, p)| m == "PATCH" && p.ends_with("/roles/feed-owners")).expect("Role");
            assert!(recorded < applied, "recorded before it is applied: {log:?}");
            // The owners' access is a record and a status field, not an Event.
            assert!(!log.iter().any(|(m, p)| m == "POST" && p.ends_with("/events")), "no Event: {log:?}");
        } else {
            assert!(!role.contains("services/proxy"), "unrecorded owners must not read the data: {role}");
        }
    }
}

/// A standby (the Lease held by another replica) runs the product's reconcile on its warm
/// caches, but sends no write: the product, which needs its children applied, is held.
/// Once the replica leads, the take-over hands it to the controller first, and its
/// reconcile then writes.
#[tokio::test]
async fn a_standby_writes_nothing_and_hands_what_needs_a_write_to_its_take_over() {
    use futures::StreamExt;
    use kube::core::DeserializeGuard;
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::watcher::Event;

    let log = Log::default();
    let (leading, follows) = tokio::sync::watch::channel(false);
    let (ctx, mut products) = context_with(mock_client(log.clone()), |c| {
        let fence = super::fence::Fence::following(follows);
        c.products.fenced(fence.clone());
        c.sources.fenced(fence.clone());
        c.policies.fenced(fence.clone());
        c.fence = fence;
    });
    let guarded = DeserializeGuard(Ok(product()));
    products.apply_watcher_event(&Event::Apply(guarded.clone()));
    let take_over = super::take_over(ctx.clone(), ctx.queues.products.clone(), ctx.caches.products.clone(), |c, g| {
        Box::pin(super::confirm_product(c, g))
    });

    let action = super::reconcile_product(Arc::new(guarded.clone()), ctx.clone()).await.expect("standby reconcile");
    let writes: Vec<_> = log.lock().expect("log").iter().filter(|(m, _)| m != "GET").cloned().collect();
    assert!(writes.is_empty(), "a standby writes nothing: {writes:?}");
    assert_eq!(action, kube::runtime::controller::Action::await_change(), "held until the take-over");
    assert_eq!(ctx.queues.products.held(&ctx.caches.products), 1, "the product needs its children: held");

    leading.send(true).expect("lead");
    let handed: Vec<_> = take_over.collect().await;
    assert_eq!(handed, vec![ObjectRef::from_obj(&guarded)], "the held product is reconciled first");
    assert_eq!(ctx.queues.products.held(&ctx.caches.products), 0);
    let _ = super::reconcile_product(Arc::new(guarded), ctx).await;
    let applied =
        log.lock().expect("log").iter().any(|(m, p)| m == "PATCH" && p.ends_with("/networkpolicies/feed-isolation"));
    assert!(applied, "leading, it writes: {log:?}");
}
