//! `drmesh run`: the operator, against the current kubeconfig or in-cluster config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::controllers::{self, Options, Scope, shutdown_signal};
use crate::leader::Elector;
use crate::telemetry::{self, AuditSink, Metrics};

/// Options of `drmesh run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Reconciles in flight at once, per controller.
    #[arg(long, default_value_t = 8, env = "DRMESH_CONCURRENCY")]
    pub concurrency: u16,
    /// Append the hash-chained audit stream to this file (default: stdout).
    #[arg(long, env = "DRMESH_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "127.0.0.1:8080", env = "DRMESH_HTTP_ADDR")]
    pub http_addr: SocketAddr,
    /// Logs as JSON lines.
    #[arg(long, env = "DRMESH_LOG_JSON")]
    pub log_json: bool,
    /// Who the audit records name as the actor.
    #[arg(long, default_value = "drmesh", env = "DRMESH_ACTOR")]
    pub actor: String,
    /// Run the controllers only while holding a Lease (for several replicas).
    #[arg(long, env = "DRMESH_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "drmesh-leader")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else host and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch and reconcile only these namespaces (comma-separated or repeated; default:
    /// every namespace). Namespaces themselves are still read cluster-wide for clearances.
    #[arg(long = "namespaces", value_delimiter = ',', env = "DRMESH_NAMESPACES")]
    pub namespaces: Vec<String>,
    /// Triggers of one object within this many milliseconds make one reconcile.
    #[arg(long, default_value_t = 100, env = "DRMESH_DEBOUNCE_MS")]
    pub debounce_ms: u64,
}

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot load the Kubernetes configuration: {0}")]
    Config(#[source] kube::Error),
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("leadership lost: stopped writing; exiting so that a fresh process stands by")]
    LeadershipLost,
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the operator until SIGINT/SIGTERM.
pub fn run(args: &RunArgs) -> Result<(), RunError> {
    telemetry::init_logging(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    runtime.block_on(run_async(args.clone()))
}

async fn run_async(args: RunArgs) -> Result<(), RunError> {
    let client = kube::Client::try_default().await.map_err(RunError::Config)?;
    let audit = match &args.audit_log {
        Some(path) => AuditSink::append_to(path).map_err(|source| RunError::Audit { path: path.clone(), source })?,
        None => AuditSink::new(Box::new(std::io::stdout())),
    };
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| RunError::Listen { addr: args.http_addr, source })?;
    let ready_probe = ready.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready_probe.load(Ordering::Relaxed);
                async move {
                    if ready { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "caches not synced") }
                }
            }),
        )
        .route("/metrics", get(metrics_handler))
        .with_state(metrics.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(addr = %args.http_addr, "serving /healthz, /readyz, /metrics");
    let options = Options {
        concurrency: args.concurrency,
        actor: args.actor.clone(),
        ready: ready.clone(),
        scope: Scope::of(args.namespaces.iter().map(|n| n.trim().to_string())),
        debounce: std::time::Duration::from_millis(args.debounce_ms),
    };
    let audit = Arc::new(audit);
    let result = if args.leader_election {
        lead(&args, client, options, metrics, audit, ready).await
    } else {
        controllers::run(client, options, metrics, audit).await;
        Ok(())
    };
    server.abort();
    result
}

/// Stands by until this replica holds the Lease, then runs the controllers while it does.
async fn lead(
    args: &RunArgs,
    client: kube::Client,
    options: Options,
    metrics: Arc<Metrics>,
    audit: Arc<AuditSink>,
    ready: Arc<AtomicBool>,
) -> Result<(), RunError> {
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let elector = Elector::new(client.clone(), &args.lease_namespace, &args.lease_name, &identity);
    // A standby is healthy and ready: it serves nothing but waits to take over.
    ready.store(true, Ordering::Relaxed);
    tokio::select! {
        _ = elector.acquire() => {}
        _ = shutdown_signal() => return Ok(()),
    }
    ready.store(false, Ordering::Relaxed);
    metrics.leader.set(1);
    tracing::info!(%identity, lease = %args.lease_name, "leading");
    let outcome = tokio::select! {
        _ = controllers::run(client, options, metrics.clone(), audit) => Ok(()),
        _ = elector.keep() => Err(RunError::LeadershipLost),
    };
    metrics.leader.set(0);
    if outcome.is_ok() {
        elector.release().await;
    }
    outcome
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.encode()
}
