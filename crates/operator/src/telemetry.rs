//! Logs, metrics and the audit stream's sink.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Installs the tracing subscriber: JSON lines for machines, text for people.
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StandbyLabels {
    pub controller: &'static str,
    /// `in_step`: nothing to write; `held`: a write waits until this replica leads.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: String,
}

/// The operator's Prometheus metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles started by a time the operator computed (expiry, start, Secret recheck).
    pub scheduled_reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub grants_active: Gauge,
    pub child_writes: Family<ControllerLabels, Counter>,
    pub leader: Gauge,
    pub queue_depth: Family<ControllerLabels, Gauge>,
    /// A standby's reconciles, by outcome (they are not counted as reconciles).
    pub standby_verifications: Family<StandbyLabels, Counter>,
    /// Objects a standby found needing a write: reconciled first when it leads.
    pub standby_held: Family<ControllerLabels, Gauge>,
    pub grants: Family<GrantLabels, Gauge>,
    /// The API server's clock minus this process's clock, in seconds (expiries are
    /// decided on the local clock: a lagging one extends grants).
    pub clock_offset: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// NetworkPolicies and RoleBindings drmesh did not create in classified domains.
    pub foreign_access_objects: Gauge,
    /// Audit records that could not be written (the sink counts into it).
    pub audit_write_failures: Counter,
    /// 1 while the audit sink's last commit failed (write, sync or head save).
    pub audit_failing: Gauge,
    /// The seq of the last head the external anchor command stored, and its failed runs.
    pub audit_anchored_seq: Gauge,
    pub audit_anchor_failures: Counter,
    /// The earliest `expiresAt` of the grants in force (Unix seconds; 0: none expires).
    pub grants_next_expiry: Gauge,
    /// Grants past their `reassessBy` (in force during the grace, or suspended).
    pub grants_reassessment_due: Gauge,
    /// Computes the figures read from the caches, when /metrics is scraped.
    live: std::sync::OnceLock<Box<dyn Fn() -> LiveFigures + Send + Sync>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub state: &'static str,
}

/// Figures read from the caches at scrape time rather than kept up to date by every
/// reconcile (counting grants is a walk over every AccessPolicy).
pub struct LiveFigures {
    pub queue_depth: [(&'static str, usize); 3],
    pub standby_held: [(&'static str, usize); 3],
    pub grants: GrantCounts,
    pub foreign_access_objects: usize,
}

/// AccessPolicies by the state of their grant, as their status reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantCounts {
    /// Granting access now (`Granted=True`).
    pub active: usize,
    /// Revoked because `expiresAt` passed.
    pub expired: usize,
    /// Granting nothing for another reason (clearance, purpose, missing product…).
    pub denied: usize,
    /// Not reconciled yet.
    pub pending: usize,
    /// The earliest expiry (Unix seconds) among the grants in force, if any expires.
    pub next_expiry: Option<i64>,
    /// Past their `reassessBy` (`ReassessmentDue=True`).
    pub reassessment_due: usize,
}

impl GrantCounts {
    pub fn count(&mut self, status: Option<&crate::api::AccessPolicyStatus>) {
        use crate::api::{ConditionStatus, condition_type, find_condition};
        let due = status.and_then(|s| find_condition(&s.conditions, condition_type::REASSESSMENT_DUE));
        if due.is_some_and(|c| c.status == ConditionStatus::True) {
            self.reassessment_due += 1;
        }
        let granted = status.and_then(|s| find_condition(&s.conditions, condition_type::GRANTED));
        match granted {
            None => self.pending += 1,
            Some(c) if c.status == ConditionStatus::True => {
                self.active += 1;
                let expiry =
                    status.and_then(|s| s.expires_at.as_deref()).and_then(|t| t.parse::<jiff::Timestamp>().ok());
                if let Some(at) = expiry.map(|t| t.as_second()) {
                    self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
                }
            }
            Some(c) if c.reason == crate::mesh::rules::Reason::Expired => self.expired += 1,
            Some(_) => self.denied += 1,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drmesh");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let scheduled_reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let decisions = Family::<DecisionLabels, Counter>::default();
        let grants_active = Gauge::default();
        let child_writes = Family::<ControllerLabels, Counter>::default();
        let leader = Gauge::default();
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        let standby_verifications = Family::<StandbyLabels, Counter>::default();
        let standby_held = Family::<ControllerLabels, Gauge>::default();
        let grants = Family::<GrantLabels, Gauge>::default();
        let clock_offset = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let foreign_access_objects = Gauge::default();
        let audit_write_failures = Counter::default();
        let audit_failing = Gauge::default();
        let audit_anchored_seq = Gauge::default();
        let audit_anchor_failures = Counter::default();
        let grants_next_expiry = Gauge::default();
        let grants_reassessment_due = Gauge::default();
        registry.register(
            "grants_reassessment_due",
            "AccessPolicies past their reassessBy (condition ReassessmentDue=True): in force until the grace ends, then suspended",
            grants_reassessment_due.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written to the audit sink",
            audit_write_failures.clone(),
        );
        registry.register(
            "audit_sink_failing",
            "1 while the audit sink's last commit failed (the record could not be written, synced, or its head saved in the cluster)",
            audit_failing.clone(),
        );
        registry.register(
            "audit_anchored_seq",
            "The seq of the last audit chain head the --audit-anchor-command stored outside the cluster",
            audit_anchored_seq.clone(),
        );
        registry.register(
            "audit_anchor_failures",
            "Runs of the --audit-anchor-command that failed (the head is anchored at the next run)",
            audit_anchor_failures.clone(),
        );
        registry.register(
            "grants_next_expiry_timestamp_seconds",
            "The earliest expiresAt of the grants in force, in Unix seconds (0 when none expires)",
            grants_next_expiry.clone(),
        );
        registry.register(
            "clock_offset_seconds",
            "The API server's clock minus the operator's (from the Date header, +-0.5 s); expiries use the operator's clock",
            clock_offset.clone(),
        );
        registry.register(
            "foreign_access_objects",
            "NetworkPolicies and RoleBindings drmesh did not create that may open access in classified domains",
            foreign_access_objects.clone(),
        );
        registry.register("queue_depth", "Objects waiting for a reconcile, by controller", queue_depth.clone());
        registry.register(
            "standby_verifications",
            "A standby's reconciles with every write fenced off, by controller and outcome (in_step: nothing to write; held: reconciled when it leads)",
            standby_verifications.clone(),
        );
        registry.register(
            "standby_held",
            "Objects a standby found needing a write, reconciled first when it leads, by controller",
            standby_held.clone(),
        );
        registry.register("grants", "AccessPolicies by grant state (active, expired, denied, pending)", grants.clone());
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        registry.register("reconciles", "Reconciles run, by controller", reconciles.clone());
        registry.register(
            "reconciles_scheduled",
            "Reconciles started by a time the operator computed (expiry, start, reassessment, Secret recheck), not by a change",
            scheduled_reconciles.clone(),
        );
        registry.register("reconcile_failures", "Failed reconciles, by controller and error", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        registry.register(
            "access_decisions",
            "Access decisions (audit records), by decision and reason",
            decisions.clone(),
        );
        registry.register("grants_active", "AccessPolicies currently granting access", grants_active.clone());
        registry.register(
            "child_writes",
            "Server-side applies of children actually sent (unchanged children are skipped)",
            child_writes.clone(),
        );
        Self {
            registry,
            reconciles,
            scheduled_reconciles,
            failures,
            duration,
            decisions,
            grants_active,
            child_writes,
            leader,
            queue_depth,
            standby_verifications,
            standby_held,
            grants,
            clock_offset,
            foreign_access_objects,
            audit_write_failures,
            audit_failing,
            audit_anchored_seq,
            audit_anchor_failures,
            grants_next_expiry,
            grants_reassessment_due,
            live: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts a reconcile; `scheduled`: its own timer started it, not a change.
    pub fn reconciled(&self, controller: &'static str, elapsed: Duration, scheduled: bool) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        if scheduled {
            self.scheduled_reconciles.get_or_create(&labels).inc();
        }
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a standby's reconcile: `held` when it needed a write.
    pub fn verified(&self, controller: &'static str, held: bool) {
        let outcome = if held { "held" } else { "in_step" };
        self.standby_verifications.get_or_create(&StandbyLabels { controller, outcome }).inc();
    }

    pub fn failed(&self, controller: &'static str, error: &'static str) {
        self.failures.get_or_create(&FailureLabels { controller, error }).inc();
    }

    /// Sets what computes the live figures (once; later calls are ignored).
    pub fn observe_with(&self, live: impl Fn() -> LiveFigures + Send + Sync + 'static) {
        let _ = self.live.set(Box::new(live));
    }

    fn refresh(&self) {
        let Some(live) = self.live.get() else { return };
        let figures = live();
        for (controller, depth) in figures.queue_depth {
            self.queue_depth.get_or_create(&ControllerLabels { controller }).set(depth as i64);
        }
        for (controller, held) in figures.standby_held {
            self.standby_held.get_or_create(&ControllerLabels { controller }).set(held as i64);
        }
        let g = figures.grants;
        for (state, n) in [("active", g.active), ("expired", g.expired), ("denied", g.denied), ("pending", g.pending)] {
            self.grants.get_or_create(&GrantLabels { state }).set(n as i64);
        }
        self.grants_active.set(g.active as i64);
        self.grants_next_expiry.set(g.next_expiry.unwrap_or(0));
        self.grants_reassessment_due.set(g.reassessment_due as i64);
        self.foreign_access_objects.set(figures.foreign_access_objects as i64);
    }

    pub fn encode(&self) -> String {
        self.refresh();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub use crate::audit_sink::{AuditError, AuditSink, HeadStore};
