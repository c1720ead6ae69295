//! When each grant child (RoleBinding, NetworkPolicy of an AccessPolicy) was first seen
//! applied and first seen deleted, from watches: the reaction latencies of `make bench`
//! and the failover of `make chaos` are timed on these.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;

/// When each grant child was first seen applied and first seen deleted, from watches.
#[derive(Default)]
pub struct Sightings {
    pub applied: HashMap<String, (Instant, Timestamp)>,
    pub deleted: HashMap<String, (Instant, Timestamp)>,
}

pub fn watch_grant_children<K>(api: Api<K>, kind: &'static str, seen: Arc<Mutex<Sightings>>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default().labels("drmesh.io/access-policy"));
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let stamp = (Instant::now(), Timestamp::now());
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    seen.applied.entry(format!("{kind}/{}", o.name_any())).or_insert(stamp);
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen.deleted.entry(format!("{kind}/{}", o.name_any())).or_insert(stamp);
                }
                _ => {}
            }
        }
    });
}

/// Waits for a sighting (applied or deleted) of `key`, up to `deadline`.
pub async fn sighted(
    seen: &Mutex<Sightings>,
    key: &str,
    deleted: bool,
    deadline: Duration,
) -> Option<(Instant, Timestamp)> {
    let until = Instant::now() + deadline;
    loop {
        {
            let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            let map = if deleted { &seen.deleted } else { &seen.applied };
            if let Some(at) = map.get(key) {
                return Some(*at);
            }
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
