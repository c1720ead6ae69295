//! Logs, metrics and the audit stream's sink.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit;

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
pub struct DecisionLabels {
    pub decision: &'static str,
    pub reason: String,
}

/// The operator's Prometheus metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub grants_active: Gauge,
    pub child_writes: Family<ControllerLabels, Counter>,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("drmesh");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let decisions = Family::<DecisionLabels, Counter>::default();
        let grants_active = Gauge::default();
        let child_writes = Family::<ControllerLabels, Counter>::default();
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease", leader.clone());
        registry.register("reconciles", "Reconciles run, by controller", reconciles.clone());
        registry.register("reconcile_failures", "Failed reconciles, by controller and error", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration", duration.clone());
        registry.register("access_decisions", "Access decisions (audit records), by decision and reason", decisions.clone());
        registry.register("grants_active", "AccessPolicies currently granting access", grants_active.clone());
        registry.register("child_writes", "Server-side applies of children actually sent (unchanged children are skipped)", child_writes.clone());
        Self { registry, reconciles, failures, duration, decisions, grants_active, child_writes, leader }
    }
}

impl Metrics {
    pub fn reconciled(&self, controller: &'static str, elapsed: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn failed(&self, controller: &'static str, error: &'static str) {
        self.failures.get_or_create(&FailureLabels { controller, error }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Where audit records go: a JSON-lines writer (stdout by default, or a file), chained.
pub struct AuditSink {
    writer: Mutex<audit::Writer<Box<dyn Write + Send>>>,
}

impl AuditSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { writer: Mutex::new(audit::Writer::new(out)) }
    }

    /// Opens (appending) an audit file and continues its chain.
    pub fn append_to(path: &std::path::Path) -> std::io::Result<Self> {
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let chain = existing
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<audit::Record>(l).ok())
            .map(|last| audit::Chain::resume(&last))
            .unwrap_or_default();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { writer: Mutex::new(audit::Writer::resume(Box::new(file), chain)) })
    }

    pub fn record(&self, event: audit::Event) {
        let mut writer = match self.writer.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(error) = writer.write(event) {
            tracing::error!(%error, "cannot write audit record");
        }
    }
}
