//! What a standby may not do: write.
//!
//! A standby (`--leader-election`, not holding the Lease) runs the same reconciles as
//! the leader, on the same warm caches, but every write they would make — an apply, a
//! delete, a status patch, an audit record, an Event — stops at this fence. A reconcile
//! that reaches none of them found the object in step with what the leader left (its
//! children hold what drmesh would apply, read from their live values and
//! managedFields: no marker anyone could forge), and needs nothing from this replica
//! when it takes over. One that reaches one is held, and reconciled for real at once
//! when this replica leads. A failover then begins with the handful of objects that
//! changed while no operator led, not with a re-verification of the whole mesh.
//!
//! Whether a reconcile reached the fence is noted per reconcile (a task-local flag), so
//! that a write whose error its caller swallows (an Event, a best-effort record) still
//! holds the object: the fence never lets a standby conclude "in step" by mistake.

use std::cell::Cell;
use std::future::Future;

use super::error::Error;

tokio::task_local! {
    static REACHED: Cell<bool>;
}

/// Whether this replica may write: it leads, or runs without leader election.
#[derive(Clone, Debug)]
pub struct Fence(tokio::sync::watch::Receiver<bool>);

impl Default for Fence {
    /// Always open (no leader election).
    fn default() -> Self {
        Self(tokio::sync::watch::channel(true).1)
    }
}

impl Fence {
    /// Open while `leading` says this replica leads.
    pub fn following(leading: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(leading)
    }

    /// The leadership flag it follows (for tasks that wait until this replica leads).
    pub fn receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.clone()
    }

    pub fn open(&self) -> bool {
        *self.0.borrow()
    }

    /// Ok when this replica may write; otherwise notes that the reconcile under way
    /// needed to (see [`watched`]) and says [`Error::Standby`].
    #[track_caller]
    pub fn pass(&self) -> Result<(), Error> {
        if self.open() {
            return Ok(());
        }
        tracing::debug!(at = %std::panic::Location::caller(), "standby: a write fenced off");
        let _ = REACHED.try_with(|reached| reached.set(true));
        Err(Error::Standby)
    }
}

/// Runs `reconcile`; also says whether it reached a closed fence (even if it swallowed
/// the error).
pub async fn watched<F: Future>(reconcile: F) -> (F::Output, bool) {
    REACHED
        .scope(Cell::new(false), async {
            let outcome = reconcile.await;
            (outcome, REACHED.with(Cell::get))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_fence_is_noted_even_when_its_error_is_swallowed() {
        let (leading, rx) = tokio::sync::watch::channel(false);
        let fence = Fence::following(rx);
        let (outcome, reached) = watched(async { fence.pass().is_ok() }).await;
        assert!(!outcome);
        assert!(reached, "the swallowed refusal must still hold the object");
        let (_, reached) = watched(async {}).await;
        assert!(!reached, "a reconcile that wrote nothing is in step");
        leading.send(true).expect("send");
        let (outcome, reached) = watched(async { fence.pass().is_ok() }).await;
        assert!(outcome && !reached, "a leader passes");
        assert!(Fence::default().pass().is_ok(), "without leader election the fence is open");
    }
}
