//! Lease-based leader election: of several replicas, only the holder of the Lease runs
//! the controllers (and so writes). A leader that cannot renew in time stops writing
//! before its Lease can be taken over; a leader shutting down releases the Lease so a
//! standby takes over at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(10);
/// How often the leader renews, and standbys retry.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One replica's view of the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What a round of election decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
}

/// The pure decision: may `identity` hold `lease` at `now`?
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Role {
    let Some(spec) = lease else {
        return Role::Leader;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return Role::Leader;
    }
    let duration = spec.lease_duration_seconds.map(i64::from).unwrap_or(LEASE_DURATION.as_secs() as i64);
    match &spec.renew_time {
        Some(MicroTime(renewed)) if renewed.as_second() + duration > now.as_second() => Role::Follower,
        _ => Role::Leader, // expired: take over
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into() }
    }

    /// One round: acquire or renew if allowed. Conflicts (another replica won the race)
    /// make this replica a follower; API errors are returned.
    pub async fn round(&self) -> Result<Role, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        if decide(spec.as_ref(), &self.identity, now) == Role::Follower {
            return Ok(Role::Follower);
        }
        let previous_holder = spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
        let transitions = spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
        let taking_over = previous_holder != self.identity;
        let mut lease = current.clone().unwrap_or_default();
        lease.metadata.name = Some(self.name.clone());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
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
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Role::Follower),
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
            match self.round().await {
                Ok(Role::Leader) => return,
                Ok(Role::Follower) if !waiting_logged => {
                    tracing::info!(lease = %self.name, "standing by: another replica leads");
                    waiting_logged = true;
                }
                Ok(Role::Follower) => {}
                Err(error) => tracing::warn!(%error, "leader election round failed"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews until the Lease is lost or cannot be renewed before it would expire;
    /// returns then, and the caller must stop writing.
    pub async fn keep(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            match self.round().await {
                Ok(Role::Leader) => last_renewal = tokio::time::Instant::now(),
                Ok(Role::Follower) => {
                    tracing::error!("lost the lease to another replica");
                    return;
                }
                Err(error) => tracing::warn!(%error, "cannot renew the lease"),
            }
            // Stop well before the Lease expires for the others.
            if last_renewal.elapsed() + RETRY_PERIOD >= LEASE_DURATION {
                tracing::error!("could not renew the lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).expect("time"))),
            ..Default::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn a_free_or_own_lease_is_taken() {
        assert_eq!(decide(None, "a", at(100)), Role::Leader);
        assert_eq!(decide(Some(&lease("a", 99)), "a", at(100)), Role::Leader);
        assert_eq!(decide(Some(&lease("", 99)), "a", at(100)), Role::Leader);
    }

    #[test]
    fn a_live_lease_of_another_replica_is_respected_until_it_expires() {
        assert_eq!(decide(Some(&lease("b", 95)), "a", at(100)), Role::Follower);
        assert_eq!(decide(Some(&lease("b", 90)), "a", at(100)), Role::Leader);
    }
}
