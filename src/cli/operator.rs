//! `drmesh run`: the operator, against the current kubeconfig or in-cluster config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::controllers::{self, Options};
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
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| RunError::Listen { addr: args.http_addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_handler))
        .with_state(metrics.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    tracing::info!(addr = %args.http_addr, "serving /healthz, /readyz, /metrics");
    let options = Options { concurrency: args.concurrency, actor: args.actor.clone() };
    controllers::run(client, options, metrics, Arc::new(audit)).await;
    server.abort();
    Ok(())
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.encode()
}
