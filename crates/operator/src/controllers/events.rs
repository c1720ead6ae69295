//! Events on drmesh objects (`events.k8s.io/v1`), written as kube's `Recorder` writes
//! them, with a compact memory of the series.
//!
//! An Event that repeats one written less than [`SERIES_WINDOW`] ago (same object, type,
//! action, reason and note) is patched into that Event's `series` (count, last observed
//! time) instead of being created again. kube's `Recorder` does the same but keeps, for
//! the whole window, a copy of every Event it wrote and its key: 2,797 bytes each
//! (`make bench-memory`). In a cold start that is every product's Events: 13.8 MB of a
//! 50.5 MB heap at 3,000 products (heaptrack, `make bench`). This keeps a hash of the
//! key, the Event's name and the series: 172 bytes each.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// How long a written Event can still become a series (kube's `Recorder` keeps 6 minutes).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// How often the memory of series is swept of those older than [`SERIES_WINDOW`].
const SWEEP_EVERY: SignedDuration = SignedDuration::from_secs(30);

/// What an Event says about an object.
pub struct Announcement<'a> {
    pub regarding: &'a ObjectReference,
    pub warning: bool,
    pub action: &'a str,
    pub reason: &'a str,
    pub note: String,
}

impl Announcement<'_> {
    /// What makes two Events the same Event observed again.
    fn key(&self) -> u64 {
        let r = self.regarding;
        super::watches::hash(&(
            (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid),
            (self.warning, self.action, self.reason, &self.note),
        ))
    }
}

/// An Event written, as far as a repeat needs it.
struct Written {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

impl Written {
    /// Whether a repeat at `now` still belongs to this Event's series.
    fn current(&self, now: Timestamp) -> bool {
        self.last + SERIES_WINDOW > now
    }
}

#[derive(Default)]
struct Memory {
    written: HashMap<u64, Written>,
    swept: Option<Timestamp>,
}

impl Memory {
    /// Forgets the Events last observed more than [`SERIES_WINDOW`] before `now`, at most
    /// once every [`SWEEP_EVERY`] (a sweep walks every entry).
    fn sweep(&mut self, now: Timestamp) {
        if self.swept.is_some_and(|at| at + SWEEP_EVERY > now) {
            return;
        }
        self.swept = Some(now);
        self.written.retain(|_, w| w.current(now));
    }
}

/// Writes Events as `controller` (and `instance`, the replica, when known).
pub struct Announcer {
    client: Client,
    controller: String,
    instance: Option<String>,
    memory: Mutex<Memory>,
}

impl Announcer {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self { client, controller: controller.into(), instance, memory: Mutex::default() }
    }

    /// How many Events are remembered as possible series.
    pub fn remembered(&self) -> usize {
        self.memory().written.len()
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `a` at `now`: a new Event, or the next count of the series it repeats.
    pub async fn publish(&self, a: &Announcement<'_>, now: Timestamp) -> Result<(), kube::Error> {
        let key = a.key();
        let repeat = {
            let mut memory = self.memory();
            memory.sweep(now);
            memory
                .written
                .get(&key)
                .filter(|w| w.current(now))
                .map(|w| (w.namespace.clone(), w.name.clone(), w.count.saturating_add(1)))
        };
        let written = match repeat {
            Some((namespace, name, count)) => match self.observe_again(&namespace, &name, count, now).await {
                // The Event is gone (its TTL in the API server passed, or someone deleted
                // it): a new one says it.
                Err(kube::Error::Api(status)) if status.is_not_found() => self.create(a, now).await?,
                other => {
                    other?;
                    Written { namespace, name, count, last: now }
                }
            },
            None => self.create(a, now).await?,
        };
        self.memory().written.insert(key, written);
        Ok(())
    }

    async fn observe_again(&self, namespace: &str, name: &str, count: i32, now: Timestamp) -> Result<(), kube::Error> {
        let series = EventSeries { count, last_observed_time: MicroTime(now) };
        let patch = json!({ "series": series });
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        events.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }

    async fn create(&self, a: &Announcement<'_>, now: Timestamp) -> Result<Written, kube::Error> {
        let namespace = a.regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let event = self.event(a, &namespace, now);
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let created = events.create(&PostParams::default(), &event).await?;
        Ok(Written { namespace, name: created.name_any(), count: 1, last: now })
    }

    /// The Event as kube's `Recorder` builds it: named after the object and the instant.
    fn event(&self, a: &Announcement<'_>, namespace: &str, now: Timestamp) -> Event {
        let r = a.regarding;
        Event {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(format!("{}.{:x}", r.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            action: Some(a.action.into()),
            reason: Some(a.reason.into()),
            note: Some(a.note.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(r.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone().unwrap_or_else(|| self.controller.clone())),
            type_: Some(if a.warning { "Warning" } else { "Normal" }.into()),
            ..Event::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use kube::client::Body;
    use serde_json::Value;

    use super::*;

    /// (method, path, body) of every request, in order.
    type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A mock API server that records each request and echoes its body, except a PATCH
    /// of an Event in `gone`, which it answers 404.
    fn client(log: Log, gone: &'static str) -> Client {
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let log = log.clone();
            async move {
                let (method, path) = (request.method().to_string(), request.uri().path().to_string());
                let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                log.lock().expect("log").push((
                    method.clone(),
                    path.clone(),
                    serde_json::from_slice(&body).unwrap_or(Value::Null),
                ));
                let (status, body) = if method == "PATCH" && !gone.is_empty() && path.contains(gone) {
                    (404, br#"{"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound", "code": 404}"#.to_vec())
                } else {
                    (200, body)
                };
                crate::controllers::order_tests::answer(status, body)
            }
        });
        Client::new(service, "default")
    }

    fn product(name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("drmesh.io/v1alpha1".into()),
            kind: Some("DataProduct".into()),
            namespace: Some("police".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    fn said<'a>(regarding: &'a ObjectReference, reason: &'a str, note: &str) -> Announcement<'a> {
        Announcement { regarding, warning: true, action: "Denied", reason, note: note.into() }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_796_000_000 + seconds).expect("instant")
    }

    #[tokio::test]
    async fn a_new_event_is_created_with_the_fields_kube_writes() {
        let log = Log::default();
        let announcer = Announcer::new(client(log.clone(), ""), "drmesh", Some("drmesh-0".into()));
        let feed = product("feed");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(0)).await.expect("published");
        let log = log.lock().expect("log");
        assert_eq!(log.len(), 1, "{log:#?}");
        let (method, path, body) = &log[0];
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/apis/events.k8s.io/v1/namespaces/police/events"));
        assert_eq!(body["type"], "Warning");
        assert_eq!(body["reason"], "InputNotGranted");
        assert_eq!(body["action"], "Denied");
        assert_eq!(body["note"], "not granted");
        assert_eq!(body["regarding"]["uid"], "uid-feed");
        assert_eq!(body["reportingController"], "drmesh");
        assert_eq!(body["reportingInstance"], "drmesh-0");
        assert!(body["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("feed.")), "{body}");
        assert!(body.get("series").is_none(), "{body}");
    }

    /// A repeat within the window is patched into the first Event's series; a different
    /// note, reason or object is an Event of its own; a repeat after the window, too.
    #[tokio::test]
    async fn a_repeat_within_the_window_counts_in_the_series_of_the_first() {
        let log = Log::default();
        let announcer = Announcer::new(client(log.clone(), ""), "drmesh", None);
        let (feed, stats) = (product("feed"), product("stats"));
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(0)).await.expect("first");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(10)).await.expect("second");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(20)).await.expect("third");
        announcer.publish(&said(&feed, "InputNotGranted", "another note"), at(20)).await.expect("other note");
        announcer.publish(&said(&feed, "InputNotFound", "not granted"), at(20)).await.expect("other reason");
        announcer.publish(&said(&stats, "InputNotGranted", "not granted"), at(20)).await.expect("other object");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(20 + 6 * 60)).await.expect("later");
        let log = log.lock().expect("log");
        let kinds: Vec<&str> = log.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(kinds, ["POST", "PATCH", "PATCH", "POST", "POST", "POST", "POST"], "{log:#?}");
        let first = log[0].2["metadata"]["name"].as_str().expect("name");
        assert!(log[1].1.ends_with(&format!("/events/{first}")), "{log:#?}");
        assert_eq!(log[1].2["series"]["count"], 2);
        assert_eq!(log[2].2["series"]["count"], 3);
        let observed: Timestamp =
            log[2].2["series"]["lastObservedTime"].as_str().expect("time").parse().expect("RFC 3339");
        assert_eq!(observed, at(20));
        // The last publish swept the four Events observed 6 minutes before it.
        assert_eq!(announcer.remembered(), 1);
    }

    #[tokio::test]
    async fn a_repeat_of_an_event_gone_from_the_api_server_creates_it_again() {
        let log = Log::default();
        let announcer = Announcer::new(client(log.clone(), "/events/feed."), "drmesh", None);
        let feed = product("feed");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(0)).await.expect("first");
        announcer.publish(&said(&feed, "InputNotGranted", "not granted"), at(1)).await.expect("second");
        let log = log.lock().expect("log");
        let kinds: Vec<&str> = log.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(kinds, ["POST", "PATCH", "POST"], "{log:#?}");
    }
}
