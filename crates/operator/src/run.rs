//! `drmesh run`: the operator, against the current kubeconfig or in-cluster config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::{self, Options, Scope};
use crate::leader::{Elector, Timing};
use crate::mesh::grant::ApiServer;
use crate::telemetry::{self, AuditSink, HeadStore, Metrics};

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
    /// A standby takes over once the Lease has not changed for this long (whole seconds
    /// in the Lease; at least 1 s). Shorter: faster failover, less tolerance of a slow
    /// API server (the leader stops writing when it cannot renew in time).
    #[arg(long, default_value_t = 10_000, env = "DRMESH_LEASE_DURATION_MS")]
    pub lease_duration_ms: u64,
    /// How often the leader renews the Lease (standbys look at it four times as often).
    #[arg(long, default_value_t = 2_000, env = "DRMESH_LEASE_RETRY_MS")]
    pub lease_retry_ms: u64,
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
    /// What to do with products in a classified domain that holds NetworkPolicies or
    /// RoleBindings drmesh did not create: `report` (condition Isolated=False, Event,
    /// audit record, metric) or `refuse` (the products also do not run).
    #[arg(long, value_enum, default_value_t = ForeignAccess::Report, env = "DRMESH_FOREIGN_ACCESS")]
    pub foreign_access: ForeignAccess,
    /// Where people's reads through the API server's `services/proxy` come from, admitted
    /// to a product on the ports granted to a User or Group: `auto` (the addresses of the
    /// EndpointSlice `default/kubernetes`, read at start), `none`
    /// (people's reads are not let through the network), or addresses and CIDRs
    /// (comma-separated), for clusters where the API server's connections to pods leave
    /// from another address (tunnel interfaces, NAT).
    #[arg(long, default_value = "auto", env = "DRMESH_API_SERVER_CIDRS")]
    pub api_server_cidrs: String,
    /// Rotate the `--audit-log` file when it reaches this many bytes (0: never): it is
    /// renamed `FILE.<last seq>` and a new FILE continues the chain.
    #[arg(long, default_value_t = 0, env = "DRMESH_AUDIT_LOG_MAX_BYTES")]
    pub audit_log_max_bytes: u64,
    /// The ConfigMap (in the Lease's namespace) that keeps the audit chain's head, so the
    /// next leader continues the same chain; each save is an anchor outside the log. The
    /// access in force is kept beside it, in `NAME-granted`. Empty: no head in the cluster
    /// (one replica, a chain per file).
    #[arg(long, default_value = "drmesh-audit-head", env = "DRMESH_AUDIT_HEAD")]
    pub audit_head: String,
    /// Sign every audit record with this OpenSSH private key (ed25519; unencrypted, e.g.
    /// mounted from a Secret). `drmesh audit verify --key` checks them with its public key.
    #[arg(long, env = "DRMESH_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// A program and its arguments (split on whitespace; no shell: the operator's image
    /// has none) given the audit chain's head (`SEQ:HASH` on stdin and in
    /// DRMESH_AUDIT_HEAD) to store it outside the cluster: a timestamping authority, a
    /// transparency log. Run by the leader when the head moved, at most every
    /// --audit-anchor-every seconds; its output (a receipt) is logged.
    #[arg(long, env = "DRMESH_AUDIT_ANCHOR_COMMAND")]
    pub audit_anchor_command: Option<String>,
    /// Seconds between two runs of --audit-anchor-command (and of --audit-signer-command).
    #[arg(long, default_value_t = 60, env = "DRMESH_AUDIT_ANCHOR_EVERY")]
    pub audit_anchor_every: u64,
    /// A program and its arguments (split on whitespace; no shell) that signs the audit
    /// chain's head with a key the operator does not hold: given `SEQ:HASH` and a newline
    /// on stdin, it prints an armored SSH signature (namespace drmesh.io/audit-head), e.g.
    /// `ssh-keygen -Y sign -f /keys/head-signer.pub -n drmesh.io/audit-head` with the key in
    /// an agent. Run by the leader when the head moved, at most every
    /// --audit-anchor-every seconds; the signature is saved with the head in its ConfigMap
    /// (signedHead, headSignature) and handed to --audit-anchor-command.
    #[arg(long, env = "DRMESH_AUDIT_SIGNER_COMMAND")]
    pub audit_signer_command: Option<String>,
    /// When a grant's audit record cannot be written: `refuse` (fail closed: the grant is
    /// not applied, reason AuditUnavailable, until the record is written) or `proceed`
    /// (fail open: applied anyway; the failure is only counted and alerted).
    #[arg(long, value_enum, default_value_t = AuditFailure::Refuse, env = "DRMESH_AUDIT_FAILURE")]
    pub audit_failure: AuditFailure,
}

/// See [`RunArgs::audit_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFailure {
    Refuse,
    Proceed,
}

/// See [`RunArgs::foreign_access`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForeignAccess {
    Report,
    Refuse,
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
    #[error("cannot read the audit signing key {path}: {message}")]
    SigningKey { path: PathBuf, message: String },
    #[error("leadership lost: stopped writing; exiting so that a fresh process stands by")]
    LeadershipLost,
    #[error("--lease-retry-ms must be shorter than --lease-duration-ms, which must be at least 1000")]
    LeaseTiming,
    #[error("--api-server-cidrs: {0}")]
    ApiServerCidrs(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the operator until SIGINT/SIGTERM.
/// Where the cluster's configuration comes from (the binary's `--kubeconfig`/`--context`).
pub type ConfigSource = std::pin::Pin<Box<dyn std::future::Future<Output = Result<kube::Config, kube::Error>> + Send>>;

pub fn run(args: &RunArgs, config: ConfigSource) -> Result<(), RunError> {
    telemetry::init_logging(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    runtime.block_on(run_async(args.clone(), config))
}

async fn run_async(args: RunArgs, config: ConfigSource) -> Result<(), RunError> {
    let client = kube::Client::try_from(config.await.map_err(RunError::Config)?).map_err(RunError::Config)?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let mut audit = match &args.audit_log {
        Some(path) => AuditSink::append_rotating(path, args.audit_log_max_bytes)
            .map_err(|source| RunError::Audit { path: path.clone(), source })?,
        None => AuditSink::stdout(),
    };
    if let Some(path) = &args.audit_signing_key {
        let key = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| ssh_key::PrivateKey::from_openssh(text.trim()).map_err(|e| e.to_string()))
            .map_err(|message| RunError::SigningKey { path: path.clone(), message })?;
        if key.is_encrypted() {
            return Err(RunError::SigningKey { path: path.clone(), message: "the key is encrypted".into() });
        }
        audit = audit.signing_with(key);
    }
    if !args.audit_head.is_empty() {
        audit =
            audit.keeping_head_in(HeadStore::new(client.clone(), &args.lease_namespace, &args.audit_head, &identity));
    }
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .map_err(|source| RunError::Listen { addr: args.http_addr, source })?;
    let ready_probe = ready.clone();
    let audit_probe = metrics.audit_failing.clone();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready_probe.load(Ordering::Relaxed);
                let auditing = audit_probe.get() == 0;
                async move {
                    match (ready, auditing) {
                        (true, true) => (StatusCode::OK, "ok"),
                        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "caches not synced"),
                        // Grants wait for their records: say so (narrowing goes on).
                        (true, false) => (StatusCode::SERVICE_UNAVAILABLE, "audit sink failing: no grant is applied"),
                    }
                }
            }),
        )
        .route("/metrics", get(metrics_handler))
        .with_state(metrics.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let api_server = api_server(&client, &args.api_server_cidrs).await?;
    let clock = tokio::spawn(watch_clock(client.clone(), metrics.clone()));
    tracing::info!(addr = %args.http_addr, "serving /healthz, /readyz, /metrics");
    let options = Options {
        concurrency: args.concurrency,
        actor: args.actor.clone(),
        ready: ready.clone(),
        scope: Scope::of(args.namespaces.iter().map(|n| n.trim().to_string())),
        debounce: std::time::Duration::from_millis(args.debounce_ms),
        refuse_foreign_access: args.foreign_access == ForeignAccess::Refuse,
        audit_refuses: args.audit_failure == AuditFailure::Refuse,
        api_server,
        leading: None,
    };
    if let Some(command) = &args.audit_anchor_command {
        audit = audit.anchoring_with(
            command,
            std::time::Duration::from_secs(args.audit_anchor_every),
            metrics.audit_anchored_seq.clone(),
            metrics.audit_anchor_failures.clone(),
        );
    }
    if let Some(command) = &args.audit_signer_command {
        audit = audit.signing_head_with(
            command,
            std::time::Duration::from_secs(args.audit_anchor_every),
            metrics.audit_anchor_failures.clone(),
        );
    }
    let audit =
        Arc::new(audit.counting_failures_in(metrics.audit_write_failures.clone(), metrics.audit_failing.clone()));
    let result = if args.leader_election {
        lead(&args, &identity, client, options, metrics, audit).await
    } else {
        // A signal while the head is read stops the process cleanly.
        tokio::select! {
            _ = take_over_audit(&audit) => {}
            _ = controllers::shutdown_signal() => return Ok(()),
        }
        controllers::run(client, options, metrics, audit).await;
        Ok(())
    };
    server.abort();
    clock.abort();
    result
}

/// How often the operator compares its clock with the API server's.
const CLOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Measures the API server's clock against the local one (its `Date` header, taken as the
/// middle of its second, against the middle of the request) and publishes the offset:
/// expiries are decided on the local clock, so a lagging clock extends grants. The
/// chart's alert fires when it exceeds what the expiry target allows.
async fn watch_clock(client: kube::Client, metrics: Arc<Metrics>) {
    loop {
        match clock_offset(&client).await {
            Ok(offset) => {
                metrics.clock_offset.set(offset);
            }
            Err(error) => tracing::debug!(%error, "cannot measure the clock offset"),
        }
        tokio::time::sleep(CLOCK_CHECK).await;
    }
}

async fn clock_offset(client: &kube::Client) -> Result<f64, String> {
    let request = axum::http::Request::get("/version").body(Vec::new()).map_err(|e| e.to_string())?;
    let sent = jiff::Timestamp::now();
    let response = client.send(request.map(kube::client::Body::from)).await.map_err(|e| e.to_string())?;
    let received = jiff::Timestamp::now();
    let date =
        response.headers().get(axum::http::header::DATE).and_then(|v| v.to_str().ok()).ok_or("no Date header")?;
    offset(date, sent, received)
}

/// The server's clock (its `Date`, whole seconds: taken as the middle of that second)
/// minus the local one at the middle of the request, in seconds.
fn offset(date: &str, sent: jiff::Timestamp, received: jiff::Timestamp) -> Result<f64, String> {
    let server = jiff::fmt::rfc2822::parse(date).map_err(|e| e.to_string())?.timestamp();
    let middle = sent.as_millisecond() + (received.as_millisecond() - sent.as_millisecond()) / 2;
    Ok((server.as_millisecond() + 500 - middle) as f64 / 1000.0)
}

/// Stands by until this replica holds the Lease, then runs the controllers while it does.
async fn lead(
    args: &RunArgs,
    identity: &str,
    client: kube::Client,
    options: Options,
    metrics: Arc<Metrics>,
    audit: Arc<AuditSink>,
) -> Result<(), RunError> {
    let timing = Timing {
        duration: std::time::Duration::from_millis(args.lease_duration_ms),
        retry: std::time::Duration::from_millis(args.lease_retry_ms),
    };
    if timing.duration.as_millis() < 1000 || timing.retry >= timing.duration {
        return Err(RunError::LeaseTiming);
    }
    let elector = Elector::new(client.clone(), &args.lease_namespace, &args.lease_name, identity, timing);
    // A warm standby: its watches fill its caches (it is ready once they are synced) and
    // its controllers queue work, but nothing is written until it leads.
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    // A chain another writer continued is taken back only while this replica leads.
    audit.following_leadership(leading.clone());
    let options = Options { leading: Some(leading), ..options };
    let controllers = controllers::run(client, options, metrics.clone(), audit.clone());
    tokio::pin!(controllers);
    tokio::select! {
        _ = elector.acquire() => {}
        _ = &mut controllers => return Ok(()), // stopped by a signal while standing by
    }
    // The previous leader's records end at the head it saved: continue from there.
    tokio::select! {
        _ = take_over_audit(&audit) => {}
        _ = &mut controllers => return Ok(()), // stopped by a signal
    }
    let _ = leading_tx.send(true);
    metrics.leader.set(1);
    tracing::info!(%identity, lease = %args.lease_name, "leading");
    let outcome = tokio::select! {
        _ = &mut controllers => Ok(()),
        _ = elector.keep() => Err(RunError::LeadershipLost),
    };
    metrics.leader.set(0);
    if outcome.is_ok() {
        elector.release().await;
    }
    outcome
}

/// Continues the audit chain from the head kept in the cluster, trying a few times; if it
/// still cannot be read, records fail (counted, alerted) until a later commit can save.
async fn take_over_audit(audit: &AuditSink) {
    for attempt in 1..=5u32 {
        match audit.take_over().await {
            Ok(head) => {
                tracing::info!(
                    head = head.map(|h| h.to_string()).unwrap_or_else(|| "none".into()),
                    "audit chain taken over"
                );
                return;
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "cannot read the audit chain's head");
                tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    tracing::error!("the audit chain's head could not be read: audit records fail until it can");
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> String {
    metrics.encode()
}

/// The API server's addresses as `--api-server-cidrs` says: listed, none, or (`auto`)
/// the addresses of the `default/kubernetes` EndpointSlice. When they cannot be read, people's
/// reads are not let through (fail closed) and the operator says so.
async fn api_server(client: &kube::Client, setting: &str) -> Result<ApiServer, RunError> {
    match setting.trim() {
        "none" => Ok(ApiServer::none()),
        "auto" => {
            // The API server keeps this one EndpointSlice (named like its Service) up to date.
            let slices: kube::Api<EndpointSlice> = kube::Api::namespaced(client.clone(), "default");
            match slices.get("kubernetes").await {
                Ok(slice) => {
                    let addresses = slice.endpoints.iter().flat_map(|e| e.addresses.iter());
                    let found = ApiServer::parse(addresses).map_err(RunError::ApiServerCidrs)?;
                    if found.cidrs().is_empty() {
                        tracing::warn!(
                            "the kubernetes Service publishes no endpoint: people's reads through the proxy stay closed"
                        );
                    } else {
                        tracing::info!(cidrs = ?found.cidrs(), "people's reads through the proxy come from the API server");
                    }
                    Ok(found)
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the EndpointSlice default/kubernetes: people's reads through the proxy stay closed (set --api-server-cidrs)");
                    Ok(ApiServer::none())
                }
            }
        }
        listed => ApiServer::parse(listed.split(',')).map_err(RunError::ApiServerCidrs),
    }
}

#[cfg(test)]
mod tests {
    use super::offset;

    #[test]
    fn the_clock_offset_is_measured() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("time");
        let date = "Wed, 02 Dec 2026 17:20:33 GMT";
        // A local clock 3 s behind: the server says :33 while we are at :30.2-:30.4.
        let lag = offset(date, at("2026-12-02T17:20:30.2Z"), at("2026-12-02T17:20:30.4Z")).expect("offset");
        assert!((lag - 3.2).abs() < 1e-9, "{lag}");
        // In step (within the Date header's half second).
        let same = offset(date, at("2026-12-02T17:20:33.4Z"), at("2026-12-02T17:20:33.6Z")).expect("offset");
        assert!(same.abs() < 1e-9, "{same}");
        assert!(offset("yesterday", at("2026-12-02T17:20:33Z"), at("2026-12-02T17:20:33Z")).is_err());
    }
}
