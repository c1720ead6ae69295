//! Triggers that can only widen access, merged per object.
//!
//! A source lends its credentials to every product of its domain that reads it; each new
//! product wakes every source of its domain. While a domain's products are being created
//! (a GitOps sync, the first apply of a mesh), each source would be reconciled once per
//! new product, each time re-applying its RoleBinding and egress NetworkPolicy with one
//! more consumer, writing its status and an audit record: 1,000 products in 20 domains
//! cost about 3,000 requests more than the children themselves (`make bench`).
//!
//! A [`Throttle`] lets the first such trigger of an object through at once, and merges
//! those that follow within its window into one, at the window's end. Only widening goes
//! through it: a trigger that may narrow access (a consumer deleted, or changed while it
//! is lent to) goes at once, as before.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use tokio::time::Instant;

/// How long widening triggers of one object are merged.
pub const WIDENING_WINDOW: Duration = Duration::from_secs(1);

pub struct Throttle<T> {
    window: Duration,
    state: Mutex<State<T>>,
    later: UnboundedSender<T>,
}

struct State<T> {
    /// When each object's last trigger went through.
    went: HashMap<T, Instant>,
    /// Objects whose merged trigger goes at the end of their window.
    waiting: HashSet<T>,
}

impl<T: Clone + Eq + Hash + Send + 'static> Throttle<T> {
    /// The throttle, and the stream of the triggers it held back (each at its window's end).
    pub fn new(window: Duration) -> (Arc<Self>, impl Stream<Item = T> + Send + 'static) {
        let (later, held) = unbounded();
        let state = State { went: HashMap::new(), waiting: HashSet::new() };
        (Arc::new(Self { window, state: Mutex::new(state), later }), held)
    }

    /// The triggers that go now; the others go through the held stream later, once per
    /// object however many ask meanwhile. Needs a Tokio runtime.
    pub fn pass(self: &Arc<Self>, triggers: Vec<T>) -> Vec<T> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.went.len() > 1024 {
            let window = self.window;
            state.went.retain(|_, at| *at + window > now);
        }
        let mut now_go = Vec::new();
        for trigger in triggers {
            match state.went.get(&trigger) {
                Some(at) if *at + self.window > now => {
                    let at = *at + self.window;
                    if state.waiting.insert(trigger.clone()) {
                        let this = self.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            this.release(trigger);
                        });
                    }
                }
                _ => {
                    state.went.insert(trigger.clone(), now);
                    now_go.push(trigger);
                }
            }
        }
        now_go
    }

    fn release(&self, trigger: T) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting.remove(&trigger);
        state.went.insert(trigger.clone(), Instant::now());
        let _ = self.later.unbounded_send(trigger);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn the_first_goes_at_once_and_the_rest_of_the_window_goes_once_at_its_end() {
        let (throttle, mut held) = Throttle::new(Duration::from_secs(1));
        let started = Instant::now();
        assert_eq!(throttle.pass(vec!["a", "b"]), ["a", "b"], "nothing went before: at once");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(throttle.pass(vec!["a"]).is_empty(), "within a's window: held");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(throttle.pass(vec!["a", "a"]).is_empty(), "merged with the held one");
        assert_eq!(held.next().await, Some("a"));
        assert_eq!(Instant::now() - started, Duration::from_secs(1), "at the end of a's window");
        // A new window begins when the held trigger went.
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(throttle.pass(vec!["a"]).is_empty());
        assert_eq!(throttle.pass(vec!["b"]), ["b"], "b's window is over");
        assert_eq!(held.next().await, Some("a"));
        assert_eq!(Instant::now() - started, Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(throttle.pass(vec!["a"]), ["a"], "quiet for a window: at once again");
        assert!(futures::poll!(held.next()).is_pending(), "nothing else was held");
    }
}
