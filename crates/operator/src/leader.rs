//! Lease-based leader election: of several replicas, only the holder of the Lease runs
//! the controllers (and so writes). A leader that cannot renew in time stops writing
//! before its Lease can be taken over; a leader shutting down releases the Lease so a
//! standby takes over at once.
//!
//! No replica compares another's `renewTime` with its own clock (their clocks may
//! differ): as client-go does, a standby notes on its own monotonic clock when it last
//! saw the Lease record change, and takes the Lease over only once it has not changed
//! for `leaseDurationSeconds`.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::time::Instant;

/// How long a Lease is valid without renewal (default of `--lease-duration-ms`).
pub const LEASE_DURATION: Duration = Duration::from_secs(10);
/// How often the leader renews (default of `--lease-retry-ms`); standbys look at the
/// Lease four times as often (see [`Timing::look`]).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The Lease's timing: a standby takes over once the Lease has not changed for
/// `duration`; the leader renews every `retry` and stops writing when it could not renew
/// for `duration - retry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub duration: Duration,
    pub retry: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { duration: LEASE_DURATION, retry: RETRY_PERIOD }
    }
}

impl Timing {
    /// How long a standby waits before it looks at the Lease again, when the Lease could
    /// be taken in `takeable_in` (None: not known): a quarter of the retry period, or
    /// exactly until it could be taken if that is sooner. A standby measures the wait
    /// from when it first *saw* the record change, so a look every 2 s made it see a
    /// renewal up to 2 s late and take over up to 2 s after it could (a failover up to
    /// 4 s longer than the Lease); one GET every 0.5 s is the price.
    pub fn look(&self, takeable_in: Option<Duration>) -> Duration {
        let poll = self.retry / 4;
        takeable_in.map_or(poll, |left| left.min(poll))
    }
}

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease record last seen, and when (on this replica's monotonic clock) it changed.
    observed: Mutex<Option<(Record, Instant)>>,
}

/// What identifies one renewal of the Lease (any change restarts the wait).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    resource_version: Option<String>,
}

/// What a round of election decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Another replica holds the Lease; this one may take it in `takeable_in` (None: not
    /// known, e.g. it lost a race for it).
    Follower {
        takeable_in: Option<Duration>,
    },
}

/// Notes `record` as seen at `now`: how long it has been the same (zero when it changed).
fn observe(slot: &mut Option<(Record, Instant)>, record: Option<Record>, now: Instant) -> Duration {
    match (&*slot, record) {
        (Some((seen, at)), Some(record)) if *seen == record => now.duration_since(*at),
        (_, record) => {
            *slot = record.map(|r| (r, now));
            Duration::ZERO
        }
    }
}

/// The pure decision: may `identity` hold `lease`, whose record has not changed for
/// `unchanged_for` as this replica measured it? (The Lease's own duration, written by
/// its holder, decides.)
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Role {
    let Some(spec) = lease else {
        return Role::Leader;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return Role::Leader;
    }
    let duration =
        spec.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()).map_or(LEASE_DURATION, Duration::from_secs);
    match duration.checked_sub(unchanged_for).filter(|left| !left.is_zero()) {
        Some(left) => Role::Follower { takeable_in: Some(left) },
        None => Role::Leader, // not renewed in time: take over
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            timing,
            observed: Mutex::new(None),
        }
    }

    /// How long the Lease record has been the same, on this replica's clock.
    fn unchanged_for(&self, lease: Option<&Lease>) -> Duration {
        let record = lease.map(|l| Record {
            holder: l.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            renew_time: l.spec.as_ref().and_then(|s| s.renew_time.clone()),
            transitions: l.spec.as_ref().and_then(|s| s.lease_transitions),
            resource_version: l.metadata.resource_version.clone(),
        });
        let mut observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        observe(&mut observed, record, Instant::now())
    }

    /// One round: acquire or renew if allowed. Conflicts (another replica won the race)
    /// make this replica a follower; API errors are returned.
    pub async fn round(&self) -> Result<Role, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        let role = decide(spec.as_ref(), &self.identity, self.unchanged_for(current.as_ref()));
        if role != Role::Leader {
            return Ok(role);
        }
        let previous_holder = spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        let transitions = spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
        let taking_over = previous_holder != self.identity;
        // Written for other tools to read; no replica decides on it.
        let now = Timestamp::now();
        let mut lease = current.clone().unwrap_or_default();
        lease.metadata.name = Some(self.name.clone());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            // Whole seconds, as the API has them (at least 1).
            lease_duration_seconds: Some(self.timing.duration.as_secs().max(1) as i32),
            acquire_time: if taking_over {
                Some(MicroTime(now))
            } else {
                spec.as_ref().and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if taking_over && !previous_holder.is_empty() {
                transitions + 1
            } else {
                transitions
            }),
            ..Default::default()
        });
        // resourceVersion makes the write conditional: two replicas cannot both win.
        let result = match current {
            Some(_) => self.api.replace(&self.name, &PostParams::default(), &lease).await,
            None => self.api.create(&PostParams::default(), &lease).await,
        };
        match result {
            Ok(_) => Ok(Role::Leader),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Role::Follower { takeable_in: None }),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) so a standby does not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self.api.replace(&lease.name_any(), &PostParams::default(), &lease).await;
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        let mut waiting_logged = false;
        loop {
            let takeable_in = match self.round().await {
                Ok(Role::Leader) => return,
                Ok(Role::Follower { takeable_in }) => {
                    if !waiting_logged {
                        tracing::info!(lease = %self.name, "standing by: another replica leads");
                        waiting_logged = true;
                    }
                    takeable_in
                }
                Err(error) => {
                    tracing::warn!(%error, "leader election round failed");
                    None
                }
            };
            tokio::time::sleep(self.timing.look(takeable_in)).await;
        }
    }

    /// Renews until the Lease is lost or cannot be renewed before it would expire;
    /// returns then, and the caller must stop writing.
    pub async fn keep(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry).await;
            match self.round().await {
                Ok(Role::Leader) => last_renewal = tokio::time::Instant::now(),
                Ok(Role::Follower { .. }) => {
                    tracing::error!("lost the lease to another replica");
                    return;
                }
                Err(error) => tracing::warn!(%error, "cannot renew the lease"),
            }
            // Stop well before the Lease expires for the others.
            if last_renewal.elapsed() + self.timing.retry >= self.timing.duration {
                tracing::error!("could not renew the lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(10),
            // Far in the future: a skewed clock of the holder must not matter.
            renew_time: Some(MicroTime(Timestamp::from_second(4_000_000_000).expect("time"))),
            ..Default::default()
        }
    }

    #[test]
    fn a_free_or_own_lease_is_taken() {
        assert_eq!(decide(None, "a", Duration::ZERO), Role::Leader);
        assert_eq!(decide(Some(&lease("a")), "a", Duration::ZERO), Role::Leader);
        assert_eq!(decide(Some(&lease("")), "a", Duration::ZERO), Role::Leader);
    }

    #[test]
    fn another_replicas_lease_is_respected_until_it_stops_changing_for_its_duration() {
        // Whatever renewTime says (here: a clock far ahead), only the time this replica
        // saw the record unchanged counts.
        assert_eq!(
            decide(Some(&lease("b")), "a", Duration::from_secs(9)),
            Role::Follower { takeable_in: Some(Duration::from_secs(1)) }
        );
        assert_eq!(decide(Some(&lease("b")), "a", Duration::from_secs(10)), Role::Leader);
    }

    #[test]
    fn a_standby_looks_often_and_exactly_when_the_lease_can_be_taken() {
        let timing = Timing::default();
        // It looks four times per retry period, so it sees a renewal within 0.5 s.
        assert_eq!(timing.look(None), Duration::from_millis(500));
        assert_eq!(timing.look(Some(Duration::from_secs(7))), Duration::from_millis(500));
        // And, when the Lease can be taken sooner, right then.
        assert_eq!(timing.look(Some(Duration::from_millis(120))), Duration::from_millis(120));
        let spec = lease("b");
        assert_eq!(
            decide(Some(&spec), "a", Duration::from_millis(9_880)),
            Role::Follower { takeable_in: Some(Duration::from_millis(120)) }
        );
        assert_eq!(decide(Some(&spec), "a", Duration::from_secs(10)), Role::Leader);
        assert_eq!(decide(Some(&spec), "b", Duration::ZERO), Role::Leader, "its own");
        assert_eq!(decide(None, "a", Duration::ZERO), Role::Leader, "free");
    }

    #[test]
    fn the_wait_restarts_whenever_the_record_changes() {
        let record = |rv: &str| Record {
            holder: Some("b".into()),
            renew_time: None,
            transitions: Some(1),
            resource_version: Some(rv.into()),
        };
        let t0 = Instant::now();
        let mut slot = None;
        assert_eq!(observe(&mut slot, Some(record("1")), t0), Duration::ZERO);
        assert_eq!(observe(&mut slot, Some(record("1")), t0 + Duration::from_secs(4)), Duration::from_secs(4));
        // A renewal (new resourceVersion): waiting starts again.
        assert_eq!(observe(&mut slot, Some(record("2")), t0 + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(observe(&mut slot, Some(record("2")), t0 + Duration::from_secs(16)), Duration::from_secs(11));
        assert_eq!(observe(&mut slot, None, t0 + Duration::from_secs(17)), Duration::ZERO);
        assert!(slot.is_none());
    }
}
