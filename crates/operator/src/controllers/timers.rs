//! The reconciles the operator scheduled for itself, told apart from those a change caused.
//!
//! A reconcile ends by asking to run again at a time it computed (an expiry, a start, a
//! reassessment, a Secret recheck) or only on a change. kube-runtime keeps one pending
//! run per object and merges a change into it, so the next reconcile of that object is
//! "scheduled" exactly when it starts at or after the time asked for. The count of those
//! (`drmesh_reconciles_scheduled_total`) separates timer work from the fan-out of a change.
//!
//! kube-runtime's scheduler adds the controller's debounce to every request, a requeue
//! included: a timer asked for in `after` would start `after + debounce` later, so an
//! expiry would be revoked a debounce late. The debounce is there to merge the triggers
//! of a burst of changes, not to delay a time the operator computed, so the requeue asks
//! for `after - debounce`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

/// A timer that fired this much early still counts as fired (timer wheels round).
const SLACK: Duration = Duration::from_millis(10);
/// Timers of objects deleted before they fired are forgotten after this long.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Timers {
    due: Mutex<Timetable>,
    /// What the controllers' scheduler adds to each request (see the module's doc).
    debounce: Duration,
}

#[derive(Default)]
struct Timetable {
    at: HashMap<String, Instant>,
    /// The size after the last sweep of forgotten timers (sweeps are amortised).
    swept: usize,
}

impl Timers {
    /// Timers for controllers whose scheduler adds `debounce` to every request.
    pub fn debounced(debounce: Duration) -> Self {
        Self { due: Mutex::default(), debounce }
    }

    /// Called when the reconcile of `key` starts: whether it runs because its timer
    /// fired. Any pending timer is consumed either way (kube-runtime merged it).
    pub fn fired(&self, key: &str, now: Instant) -> bool {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        due.at.remove(key).is_some_and(|at| at <= now + SLACK)
    }

    /// The action for a reconcile of `key` that finished at `now` and wants to run again
    /// after `after` (or only on a change).
    pub fn next(&self, key: String, after: Option<Duration>, now: Instant) -> Action {
        let Some(after) = after else { return Action::await_change() };
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        due.at.insert(key, now + after);
        if due.at.len() > 2 * due.swept.max(512) {
            due.at.retain(|_, at| *at + FORGET_AFTER > now);
            due.swept = due.at.len();
        }
        Action::requeue(after.saturating_sub(self.debounce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_is_scheduled_only_when_it_starts_at_its_timer() {
        let timers = Timers::default();
        let t0 = Instant::now();
        assert!(!timers.fired("a", t0), "no timer set");
        timers.next("a".into(), Some(Duration::from_secs(60)), t0);
        assert!(!timers.fired("a", t0 + Duration::from_secs(1)), "a change came first");
        assert!(!timers.fired("a", t0 + Duration::from_secs(61)), "the change consumed the timer");
        timers.next("a".into(), Some(Duration::from_secs(60)), t0);
        assert!(timers.fired("a", t0 + Duration::from_secs(60)), "the timer fired");
        timers.next("a".into(), None, t0);
        assert!(!timers.fired("a", t0 + Duration::from_secs(120)), "await_change sets no timer");
    }

    /// The scheduler adds the debounce to the requeue: asked for `after - debounce`, the
    /// reconcile starts at `after`, when its timer counts as fired.
    #[test]
    fn a_requeue_leaves_room_for_the_debounce_the_scheduler_adds() {
        let debounce = Duration::from_millis(100);
        let timers = Timers::debounced(debounce);
        let t0 = Instant::now();
        let action = timers.next("a".into(), Some(Duration::from_millis(1500)), t0);
        assert_eq!(action, Action::requeue(Duration::from_millis(1400)));
        assert!(timers.fired("a", t0 + Duration::from_millis(1400) + debounce), "starts when asked");
        let action = timers.next("b".into(), Some(Duration::from_millis(30)), t0);
        assert_eq!(action, Action::requeue(Duration::ZERO), "never negative");
        assert_eq!(
            Timers::default().next("c".into(), Some(Duration::from_secs(2)), t0),
            Action::requeue(Duration::from_secs(2))
        );
    }

    #[test]
    fn timers_of_deleted_objects_are_forgotten() {
        let timers = Timers::default();
        let t0 = Instant::now();
        for i in 0..2000 {
            timers.next(format!("gone-{i}"), Some(Duration::from_secs(1)), t0);
        }
        let later = t0 + FORGET_AFTER + Duration::from_secs(2);
        for i in 0..1100 {
            timers.next(format!("live-{i}"), Some(Duration::from_secs(1)), later);
        }
        let due = timers.due.lock().unwrap();
        assert!(due.at.len() < 2000, "swept: {} timers left", due.at.len());
        assert!(due.at.keys().filter(|k| k.starts_with("live-")).count() == 1100, "live timers kept");
    }
}
