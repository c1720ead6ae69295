//! What the people rules report, against a mock API server (a tower service that records
//! each request with its body and echoes it back): no cluster, so these run in
//! `make unit`. A subject refused for want of a clearance (`SubjectNotCleared`) gets a
//! Warning Event and a `Denied` audit record; a grant whose `reassessBy` passed gets a
//! Warning Event and a `Warned` audit record (`ReassessmentDue`), once, and is counted by
//! the metric `drmesh_grants_reassessment_due`.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;
use serde_json::Value;

use super::accesspolicy;
use super::context::{Caches, Context, Queues};
use super::order_tests::Shared;
use crate::api::{AccessPolicy, Clearance, DataProduct};
use crate::audit;
use crate::telemetry::{AuditSink, Metrics};

/// (method, path, body) of every request, in order.
type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

/// The mock API server: a status write answers with `policy` (the object whose status it
/// is), a deletion with a Status, anything else with its own body.
fn mock_client(log: Log, policy: Value) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (log, policy) = (log.clone(), policy.clone());
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
            log.lock().expect("log").push((
                method.clone(),
                path.clone(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
            let answer = if method == "DELETE" {
                br#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}"#.to_vec()
            } else if path.ends_with("/status") {
                serde_json::to_vec(&policy).expect("json")
            } else {
                body
            };
            super::order_tests::answer(200, answer)
        }
    });
    kube::Client::new(service, "default")
}

impl Shared {
    pub(super) fn records(&self) -> Vec<audit::Record> {
        let text = String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf-8");
        text.lines().map(|l| serde_json::from_str(l).expect("a record")).collect()
    }
}

/// The police domain's Internal product `stats`, `clearances` of people, and `policy`
/// in the caches; the audit stream in `records`.
struct Fixture {
    ctx: Arc<Context>,
    records: Shared,
    log: Log,
    policies: reflector::store::Writer<DeserializeGuard<AccessPolicy>>,
}

fn fixture(policy: &AccessPolicy, clearances: Vec<Clearance>) -> Fixture {
    let log = Log::default();
    let client = mock_client(log.clone(), serde_json::to_value(policy).expect("json"));
    let (products, mut products_writer) = reflector::store();
    let (policies, policies_writer) = reflector::store();
    let (people, mut people_writer) = reflector::store();
    products_writer.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(product()))));
    for clearance in clearances {
        people_writer.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(clearance))));
    }
    let caches = Caches { products, policies, clearances: people, ..Caches::listed() };
    let records = Shared::default();
    let metrics = Arc::new(Metrics::default());
    let audit = Arc::new(AuditSink::new(Box::new(records.clone())));
    let ctx = Arc::new(Context::new(client, caches, metrics, audit, "test".into(), Arc::new(Queues::default())));
    Fixture { ctx, records, log, policies: policies_writer }
}

impl Fixture {
    /// The bodies of the Events published, in order.
    fn events(&self) -> Vec<Value> {
        let log = self.log.lock().expect("log");
        log.iter().filter(|(m, p, _)| m == "POST" && p.ends_with("/events")).map(|(_, _, b)| b.clone()).collect()
    }
}

fn product() -> DataProduct {
    drmesh_yaml::from_str(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: DataProduct
metadata: {name: stats, namespace: police, uid: uid-stats, generation: 1}
spec:
  classification: Internal
  runtime: {image: registry.example/stats:1.0}
  outputPorts: [{name: http, port: 8080, protocol: HTTP}]
"#,
    )
    .expect("product")
}

fn clearance(group: &str, until: Timestamp) -> Clearance {
    drmesh_yaml::from_str(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: Clearance
metadata: {{name: {group}, uid: uid-clr-{group}}}
spec:
  subject: {{kind: Group, name: {group}}}
  level: Internal
  expiresAt: "{until}"
  reason: "habilitation decision 2026-001"
"#
    ))
    .expect("clearance")
}

/// The grant of `stats` to the group `analysts`, with `extra` lines under `spec`.
fn grant(extra: &str) -> AccessPolicy {
    drmesh_yaml::from_str(&format!(
        r#"
apiVersion: drmesh.io/v1alpha1
kind: AccessPolicy
metadata: {{name: analysts, namespace: police, uid: uid-analysts, generation: 1}}
spec:
  dataProduct: stats
  subjects: [{{kind: Group, name: analysts}}]
  {extra}
"#
    ))
    .expect("policy")
}

fn in_hours(hours: i64) -> Timestamp {
    Timestamp::now().checked_add(SignedDuration::from_hours(hours)).expect("time")
}

fn warning_about(events: &[Value], reason: &str) -> Option<Value> {
    events.iter().find(|e| e["reason"] == reason && e["type"] == "Warning").cloned()
}

#[tokio::test]
async fn a_subject_refused_for_want_of_a_clearance_gets_a_warning_event_and_a_denied_record() {
    let policy = grant("");
    let f = fixture(&policy, vec![]);
    let next = accesspolicy::reconcile(&policy, &f.ctx, false).await;
    assert!(next.is_ok(), "{next:?}");

    let events = f.events();
    let event = warning_about(&events, "SubjectNotCleared").unwrap_or_else(|| panic!("no Warning Event: {events:#?}"));
    assert_eq!(event["regarding"]["name"], "analysts", "{event:#}");
    assert_eq!(event["regarding"]["kind"], "AccessPolicy", "{event:#}");
    assert!(
        event["note"].as_str().is_some_and(|n| n.contains("Group:analysts holds no Clearance in force")),
        "{event:#}"
    );
    let records = f.records.records();
    let denied = records
        .iter()
        .find(|r| r.event.decision == audit::Decision::Denied && r.event.reason == "SubjectNotCleared")
        .unwrap_or_else(|| panic!("no Denied record: {records:#?}"));
    assert_eq!(denied.event.subjects, ["Group:analysts"]);
    assert_eq!(denied.event.classification, "Internal");
    // Nothing is announced as granted.
    assert!(records.iter().all(|r| r.event.decision != audit::Decision::Granted), "{records:#?}");

    // Once cleared, the same grant is granted: no warning about the subject any more.
    let cleared = fixture(&policy, vec![clearance("analysts", in_hours(24))]);
    accesspolicy::reconcile(&policy, &cleared.ctx, false).await.expect("reconciled");
    assert_eq!(warning_about(&cleared.events(), "SubjectNotCleared"), None);
    // The grant's record names the ports it gives (`drmesh audit reads` matches reads on them).
    let records = cleared.records.records();
    let granted = records.iter().find(|r| r.event.decision == audit::Decision::Granted).expect("a Granted record");
    assert_eq!(granted.event.ports, ["8080/http"], "{granted:#?}");
}

#[tokio::test]
async fn a_grant_due_for_reassessment_is_recorded_announced_once_and_counted() {
    let people = vec![clearance("analysts", in_hours(24 * 60))];
    let mut policy = grant(&format!("reassessBy: \"{}\"\n  expiresAt: \"{}\"", in_hours(-1), in_hours(24 * 30)));
    // Granted two hours ago, before its reassessBy.
    {
        let f = fixture(&policy, people.clone());
        let then = in_hours(-2);
        let plan = crate::mesh::rules::plan_grant(&f.ctx.caches, &policy, then);
        assert!(plan.grants_anything() && plan.reassessment_due.is_none(), "{plan:?}");
        policy.status = Some(crate::mesh::status::policy(&policy, &plan, then));
    }
    let mut f = fixture(&policy, people.clone());
    accesspolicy::reconcile(&policy, &f.ctx, false).await.expect("reconciled");

    // The grace runs: still granted, nothing revoked; a Warned record and a Warning Event.
    let records = f.records.records();
    assert_eq!(records.len(), 1, "one record, the warning: {records:#?}");
    let warned = &records[0].event;
    assert_eq!((warned.decision, warned.reason.as_str()), (audit::Decision::Warned, "ReassessmentDue"));
    assert_eq!(warned.subjects, ["Group:analysts"], "the subjects still in force");
    assert!(warned.message.contains("was due for reassessment"), "{}", warned.message);
    assert_eq!(warned.policy.as_ref().map(|p| p.name.as_str()), Some("analysts"));
    let events = f.events();
    let event = warning_about(&events, "ReassessmentDue").unwrap_or_else(|| panic!("no Warning Event: {events:#?}"));
    assert_eq!(event["regarding"]["name"], "analysts", "{event:#}");
    let log = f.log.lock().expect("log").clone();
    assert!(
        log.iter().any(|(m, p, _)| m == "PATCH" && p.ends_with("/rolebindings/drmesh-grant-analysts")),
        "the grant is still applied: {log:?}"
    );

    // The metric counts it, from the status the operator wrote.
    let now = Timestamp::now();
    let plan = crate::mesh::rules::plan_grant(&f.ctx.caches, &policy, now);
    let mut due = policy.clone();
    due.status = Some(crate::mesh::status::policy(&policy, &plan, now));
    let metrics = Metrics::default();
    metrics.observe_with(super::live_figures(f.ctx.caches.clone(), Arc::new(Queues::default())));
    assert!(metrics.encode().lines().any(|l| l == "drmesh_grants_reassessment_due 0"), "{}", metrics.encode());
    f.policies.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(due.clone()))));
    let text = metrics.encode();
    assert!(text.lines().any(|l| l == "drmesh_grants_reassessment_due 1"), "{text}");
    assert!(text.lines().any(|l| l == "drmesh_grants_active 1"), "still in force during the grace: {text}");

    // Reconciled again with that status: no second warning for the same passing.
    let again = fixture(&due, people);
    accesspolicy::reconcile(&due, &again.ctx, false).await.expect("reconciled");
    assert!(again.records.records().is_empty(), "{:#?}", again.records.records());
    assert_eq!(warning_about(&again.events(), "ReassessmentDue"), None);
}

/// A new product's first status, progressing, is announced by its outcome, not by itself;
/// every later change of its Ready reason has its Event.
#[tokio::test]
async fn a_new_product_gets_its_first_event_when_it_is_ready() {
    let f = fixture(&grant(""), vec![]);
    let ready = |status: &str, reason: &str| -> crate::api::DataProductStatus {
        serde_json::from_value(serde_json::json!({"conditions": [{
            "type": "Ready", "status": status, "reason": reason, "message": reason,
            "lastTransitionTime": "2026-12-05T10:00:00Z"
        }]}))
        .expect("status")
    };
    let (none, progressing, up) = (Default::default(), ready("False", "Progressing"), ready("True", "Ready"));
    let (p, why) = (product(), crate::mesh::rules::Reason::Progressing);
    super::dataproduct::report_transition(&f.ctx, &p, &none, &progressing, why).await;
    assert!(f.events().is_empty(), "no Event for a new product on its way: {:?}", f.events());
    super::dataproduct::report_transition(&f.ctx, &p, &progressing, &up, crate::mesh::rules::Reason::Ready).await;
    assert_eq!(f.events().len(), 1, "its outcome is announced");
    assert_eq!(f.events()[0]["reason"], "Ready");
    super::dataproduct::report_transition(&f.ctx, &p, &up, &progressing, why).await;
    assert_eq!(f.events().len(), 2, "a product that was Ready and progresses again is announced");
    assert_eq!(f.events()[1]["reason"], "Progressing");
}
