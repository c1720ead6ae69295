//! Where audit records go: one hash chain, signed when the operator has a key, written as
//! JSON lines (stdout for the cluster's log pipeline, or a file), its head kept in the
//! cluster.
//!
//! Records are committed in groups: a caller queues its record and waits; whoever holds
//! the commit lock seals everything queued, writes it, flushes (and syncs a file), then
//! saves the new head in the head ConfigMap with the version it last saw. A record counts
//! as written only once all of that succeeded. So:
//! - the next leader reads the head and continues the same chain (one chain across
//!   replicas and failovers);
//! - a replica that lost the chain (another one saved a head since) fails that commit; its
//!   next commit, if it still leads (it holds the Lease, or there is no election), takes
//!   the chain over again from the head found in the cluster, first writing a record that
//!   says so (`Warned`, reason `AuditChainTakenOver`, with the head it saved last and the
//!   head, writer and time it found); one that no longer leads writes no more;
//! - each head saved is an anchor outside the log (the API server's audit log records
//!   every write of the ConfigMap): `drmesh audit verify --head` detects a log cut short.

use std::io::Write;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::audit::{self, Chain, Event, Head};

/// The key of the head in the ConfigMap (`SEQ:HASH`).
pub const HEAD_KEY: &str = "head";

/// Why a record was not written.
#[derive(Debug, thiserror::Error, Clone)]
pub enum AuditError {
    #[error("cannot write the audit record: {0}")]
    Write(String),
    #[error("cannot sign the audit record: {0}")]
    Sign(String),
    #[error("cannot save the audit chain's head in the cluster: {0}")]
    Head(String),
    #[error("another replica has continued the audit chain since this one last wrote: it writes no more records")]
    ChainLost,
    #[error("this replica stands by: it records nothing until it leads")]
    Standby,
}

/// Where the lines go.
pub enum Output {
    Stdout,
    /// Appended to and synced at each commit.
    File(AuditFile),
    Other(Box<dyn Write + Send>),
}

impl Output {
    fn write_synced(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Output::File(file) => file.append(bytes),
            Output::Other(out) => {
                out.write_all(bytes)?;
                out.flush()
            }
        }
    }
}

/// An audit file, rotated when it reaches `max_bytes` (0: never): `PATH` is renamed
/// `PATH.<last seq>` and a new `PATH` continues the chain. `drmesh audit verify` takes the
/// rotated files with the current one; a rotated file archived away is replaced by its
/// anchor (`drmesh audit head PATH.<seq>`, given as `--from`).
pub struct AuditFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    max_bytes: u64,
    size: u64,
}

impl AuditFile {
    fn open(path: &std::path::Path, max_bytes: u64) -> std::io::Result<Self> {
        let existed = path.exists();
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        if !existed {
            // A new file's name is durable once its directory is synced.
            sync_dir(path)?;
        }
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self { file, path: path.to_path_buf(), max_bytes, size })
    }

    /// Appends and syncs (`fdatasync`); the records are written once this returns Ok. A
    /// rotation that fails after that is logged and tried again at the next append: the
    /// records are written all the same.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        if self.max_bytes > 0
            && self.size >= self.max_bytes
            && self.file.metadata().is_ok_and(|m| m.is_file())
            && let Err(error) = self.rotate(bytes)
        {
            tracing::warn!(%error, path = %self.path.display(), "cannot rotate the audit log: tried again at the next record");
        }
        Ok(())
    }

    /// Renames the full file after its last record and starts a new one.
    fn rotate(&mut self, last_written: &[u8]) -> std::io::Result<()> {
        let last = String::from_utf8_lossy(last_written)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<audit::Record>(l).ok())
            .map_or(0, |r| r.seq);
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(format!(".{last:012}"));
        std::fs::rename(&self.path, &rotated)?;
        // The rename and the new file are durable once the directory is synced.
        *self = Self::open(&self.path, self.max_bytes)?;
        sync_dir(&self.path)?;
        tracing::info!(rotated = %std::path::Path::new(&rotated).display(), "audit log rotated");
        Ok(())
    }
}

/// Syncs the directory holding `path` (its entries: a file created or renamed).
fn sync_dir(path: &std::path::Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// The ConfigMap that holds the chain's head, and the one beside it that keeps the access
/// in force ([`granted_name`]).
pub struct HeadStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    /// Who writes (this replica), as the ConfigMap says.
    writer: String,
    /// The head ConfigMap still holds an older operator's copy of the access in force
    /// (before it had a ConfigMap of its own): the next head save removes it.
    legacy_granted: std::sync::atomic::AtomicBool,
}

/// The ConfigMap that keeps the access in force beside the head ConfigMap `head`: its own,
/// so that the head, saved at every commit, stays a few hundred bytes (the access in force
/// is tens of kB at 1,000 products, and every write of a ConfigMap rewrites it whole).
pub fn granted_name(head: &str) -> String {
    format!("{head}-granted")
}

/// The access in force and the version of the ConfigMap that keeps it (None: not created
/// yet), as read when a replica takes the chain (back) over.
type GrantedRead = (Granted, Option<String>);

impl HeadStore {
    pub fn new(client: kube::Client, namespace: &str, name: &str, writer: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
            writer: writer.into(),
            legacy_granted: false.into(),
        }
    }

    /// The head saved in the cluster and what is kept with it (None: no chain yet).
    async fn load(&self) -> Result<Option<Loaded>, AuditError> {
        let found = self.api.get_opt(&self.name).await.map_err(|e| AuditError::Head(e.to_string()))?;
        let Some(map) = found else { return Ok(None) };
        let version = map.metadata.resource_version.clone().unwrap_or_default();
        let granted = self.granted(&map).await?;
        let data = map.data.unwrap_or_default();
        let held = data.get(HELD_KEY).map(|h| parse_held(h)).unwrap_or_default();
        let saved_at = data.get("savedAt").cloned().unwrap_or_default();
        match data.get(HEAD_KEY).map(|h| h.parse::<Head>()) {
            Some(Ok(head)) => Ok(Some(Loaded { head, granted, version, held, saved_at })),
            Some(Err(error)) => Err(AuditError::Head(format!("{}/{}: {error}", self.name, HEAD_KEY))),
            // Created empty (by hand): the chain starts here.
            None => Ok(None),
        }
    }

    /// What the ConfigMap says now, for the record of a take-over: `head`, `writer` and
    /// `savedAt` as found (missing ones empty), and its version.
    async fn observe(&self) -> Result<Option<(Observed, GrantedRead, String)>, AuditError> {
        let found = self.api.get_opt(&self.name).await.map_err(|e| AuditError::Head(e.to_string()))?;
        let Some(map) = found else { return Ok(None) };
        let version = map.metadata.resource_version.clone().unwrap_or_default();
        let granted = self.granted(&map).await?;
        let data = map.data.unwrap_or_default();
        let field = |k: &str| data.get(k).cloned().unwrap_or_default();
        let observed = Observed {
            head: data.get(HEAD_KEY).and_then(|h| h.parse().ok()),
            text: field(HEAD_KEY),
            writer: field("writer"),
            saved_at: field("savedAt"),
        };
        Ok(Some((observed, granted, version)))
    }

    /// The access in force kept beside the head ConfigMap `head`; an older operator's copy
    /// in `head` itself when there is no ConfigMap of its own yet.
    async fn granted(&self, head: &ConfigMap) -> Result<GrantedRead, AuditError> {
        let legacy = head.binary_data.as_ref().is_some_and(|b| b.contains_key(GRANTED_KEY))
            || head.data.as_ref().is_some_and(|d| d.contains_key(GRANTED_TEXT_KEY));
        self.legacy_granted.store(legacy, std::sync::atomic::Ordering::Relaxed);
        let name = granted_name(&self.name);
        match self.api.get_opt(&name).await.map_err(|e| AuditError::Head(format!("ConfigMap {name}: {e}")))? {
            Some(map) => Ok((granted_in(&map), map.metadata.resource_version.clone())),
            None => Ok((granted_in(head), None)),
        }
    }

    /// What a save of the head, or of the access in force, writes besides its own keys: the
    /// head it is at, who saved it and when.
    fn stamp(&self, head: &Head) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::from([
            (HEAD_KEY.to_string(), head.to_string()),
            ("writer".to_string(), self.writer.clone()),
            ("savedAt".to_string(), jiff::Timestamp::now().to_string()),
        ])
    }

    /// Saves the access in force (`text`, as the records up to `head` leave it) if its
    /// ConfigMap is still at `version` (None: it must not exist yet); returns the new
    /// version.
    async fn save_granted(&self, text: &str, head: &Head, version: Option<&str>) -> Result<String, AuditError> {
        let data = self.stamp(head);
        let binary = std::collections::BTreeMap::from([(GRANTED_KEY.to_string(), k8s_openapi::ByteString(gzip(text)))]);
        let name = granted_name(&self.name);
        let saved = match version {
            // A merge patch carrying the version read: refused (409) if another replica
            // saved since.
            Some(version) => {
                let patch = serde_json::json!({
                    "metadata": {"resourceVersion": version},
                    "data": data,
                    "binaryData": binary,
                });
                self.api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
            }
            None => {
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        // Not managed-by drmesh: the operator's watch of its children
                        // (whole objects) leaves it out; it changes every second while
                        // grants do.
                        labels: Some([("app.kubernetes.io/part-of".to_string(), "drmesh".to_string())].into()),
                        ..Default::default()
                    },
                    data: Some(data),
                    binary_data: Some(binary),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &map).await
            }
        };
        saved_version(saved, &name)
    }

    /// Saves a signature of `head` (keys `signedHead`, `headSignature`) if the ConfigMap
    /// is still at `version`; returns the new version.
    async fn save_signature(&self, head: &Head, signature: &str, version: &str) -> Result<String, AuditError> {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": version},
            "data": {SIGNED_HEAD_KEY: head.to_string(), HEAD_SIGNATURE_KEY: signature},
        });
        saved_version(self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await, &self.name)
    }

    /// Saves the narrowing records held (JSON lines; None: removes them) if the ConfigMap
    /// is still at `version`; returns the new version.
    async fn save_held(&self, held: Option<&str>, version: &str) -> Result<String, AuditError> {
        let patch = serde_json::json!({"metadata": {"resourceVersion": version}, "data": {HELD_KEY: held}});
        saved_version(self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await, &self.name)
    }

    /// Saves `head` (removing the held records when `clear_held`) if the ConfigMap is still
    /// at `version` (None: it must not exist yet); returns the new version.
    async fn save(&self, head: &Head, clear_held: bool, version: Option<&str>) -> Result<String, AuditError> {
        let data = self.stamp(head);
        let legacy = self.legacy_granted.load(std::sync::atomic::Ordering::Relaxed);
        let saved = match version {
            // A merge patch carrying the version it read: the API server refuses it (409)
            // if another replica saved since. Only what changed is sent.
            Some(version) => {
                let mut patch = serde_json::json!({"metadata": {"resourceVersion": version}, "data": data});
                if clear_held {
                    patch["data"][HELD_KEY] = serde_json::Value::Null;
                }
                if legacy {
                    // An older operator's copy of the access in force goes (it has its own
                    // ConfigMap now).
                    patch["binaryData"] = serde_json::Value::Null;
                    patch["data"][GRANTED_TEXT_KEY] = serde_json::Value::Null;
                }
                self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await
            }
            None => {
                let map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        labels: Some([("app.kubernetes.io/managed-by".to_string(), "drmesh".to_string())].into()),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                self.api.create(&PostParams::default(), &map).await
            }
        };
        if saved.is_ok() && legacy {
            self.legacy_granted.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        saved_version(saved, &self.name)
    }
}

/// The new version of the ConfigMap `name` a save wrote; a refusal (409: another replica
/// saved or created it since) loses the chain.
fn saved_version(saved: Result<ConfigMap, kube::Error>, name: &str) -> Result<String, AuditError> {
    match saved {
        Ok(map) => Ok(map.metadata.resource_version.unwrap_or_default()),
        Err(kube::Error::Api(response)) if response.code == 409 => Err(AuditError::ChainLost),
        Err(error) => Err(AuditError::Head(format!("ConfigMap {name}: {error}"))),
    }
}

/// The head ConfigMap as read when a replica takes the chain over.
struct Loaded {
    head: Head,
    /// The access in force its last records left (see [`Granted`]), and the version of the
    /// ConfigMap that keeps it.
    granted: GrantedRead,
    version: String,
    /// The narrowing records held there (see [`HELD_KEY`]).
    held: Vec<Event>,
    /// When the head was saved: the previous writer's last record (empty if not said).
    saved_at: String,
}

/// The head ConfigMap as found when the chain is taken back.
struct Observed {
    head: Option<Head>,
    /// `head` as written (it may not parse).
    text: String,
    writer: String,
    saved_at: String,
}

/// The reason of the record a replica writes when it takes back a chain another writer
/// continued (see [`AuditSink::record`]).
pub const TAKEN_OVER: &str = crate::mesh::rules::Reason::AuditChainTakenOver.as_str();

/// The keys of the head an external signer signed last, and of its signature, in the
/// ConfigMap (see [`AuditSink::signing_head_with`]).
pub const SIGNED_HEAD_KEY: &str = "signedHead";
pub const HEAD_SIGNATURE_KEY: &str = "headSignature";

/// The key of the narrowing records held while the sink fails (JSON lines of events), in
/// the ConfigMap: saved when a commit fails and the ConfigMap can still be written (e.g.
/// the audit file's disk is full), so that a restart or the next leader writes them; at
/// most [`HELD_MAX_BYTES`] of them (the oldest), removed by the commit that writes them.
pub const HELD_KEY: &str = "held";
/// At most this many bytes of held records in the ConfigMap (a ConfigMap holds 1 MiB).
pub const HELD_MAX_BYTES: usize = 512 * 1024;

fn parse_held(text: &str) -> Vec<Event> {
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The held records as saved: JSON lines, the oldest first, within [`HELD_MAX_BYTES`].
fn print_held(events: &[Event]) -> String {
    let mut text = String::new();
    for event in events {
        let line = serde_json::to_string(event).unwrap_or_default() + "\n";
        if text.len() + line.len() > HELD_MAX_BYTES {
            break;
        }
        text.push_str(&line);
    }
    text
}

/// The key of the access in force in its ConfigMap's `binaryData` ([`granted_name`]):
/// gzip of one entry per line, tab-separated (the key, then the entry's two fields; see
/// [`Granted`]). Compressed: at 10,000 products with owners it is about 0.9 MB of text,
/// near a ConfigMap's 1 MiB. Operators before it had a ConfigMap of its own kept it under
/// this key in the head ConfigMap: read there when there is no ConfigMap of its own,
/// removed by the next head save.
pub const GRANTED_KEY: &str = "granted.gz";
/// Where operators before the compressed copy kept it, as text in the head ConfigMap's
/// `data`: read when there is no other copy, removed by the next head save.
const GRANTED_TEXT_KEY: &str = "granted";

/// The access in force a ConfigMap keeps (empty when it keeps none, or when it cannot be
/// read: then logged, and nothing is taken as left in force).
pub fn granted_in(map: &ConfigMap) -> Granted {
    if let Some(bytes) = map.binary_data.as_ref().and_then(|b| b.get(GRANTED_KEY)) {
        let mut text = String::new();
        return match std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes.0[..]), &mut text) {
            Ok(_) => parse_granted(&text),
            Err(error) => {
                tracing::error!(%error, key = GRANTED_KEY, "the access in force kept with the audit head cannot be read");
                Granted::new()
            }
        };
    }
    map.data.as_ref().and_then(|d| d.get(GRANTED_TEXT_KEY)).map(|text| parse_granted(text)).unwrap_or_default()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    match out.write_all(text.as_bytes()) {
        Ok(()) => out.finish().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The access in force as the records written say, by key:
/// - an AccessPolicy whose last record says it grants access, by uid: the policy's
///   `namespace/name` and its product;
/// - a product whose owners read its data by being owners, by [`owners_key`]: the owners
///   who do (a JSON list of subjects) and the product's name;
/// - a source whose credentials are lent, by [`credentials_key`]: the ServiceAccounts they
///   are lent to (a JSON list) and the source's name.
///
/// The next leader compares it with the cluster: what is gone was deleted while no
/// operator led, and the first record of what is left is a change found at take-over.
pub type Granted = std::collections::BTreeMap<String, (String, String)>;

/// The [`Granted`] key of a product's owners' access (no uid has a space).
pub fn owners_key(namespace: &str, product: &str) -> String {
    format!("owners {namespace}/{product}")
}

/// The [`Granted`] key of a source's lent credentials.
pub fn credentials_key(namespace: &str, source: &str) -> String {
    format!("credentials {namespace}/{source}")
}

/// What a [`Granted`] key names.
pub enum Standing<'a> {
    Policy { uid: &'a str },
    Owners { namespace: &'a str, product: &'a str },
    Credentials { namespace: &'a str, source: &'a str },
}

impl<'a> Standing<'a> {
    pub fn of(key: &'a str) -> Self {
        let object = |rest: &'a str| rest.split_once('/').unwrap_or(("", rest));
        match key.split_once(' ') {
            Some(("owners", rest)) => {
                let (namespace, product) = object(rest);
                Standing::Owners { namespace, product }
            }
            Some(("credentials", rest)) => {
                let (namespace, source) = object(rest);
                Standing::Credentials { namespace, source }
            }
            _ => Standing::Policy { uid: key },
        }
    }
}

/// The subjects of an owners' or credentials entry.
pub fn standing_subjects(entry: &(String, String)) -> Vec<String> {
    serde_json::from_str(&entry.0).unwrap_or_default()
}

/// What a record of a change found at take-over adds to its message: when the change can
/// have been made.
pub fn unled_message(window: &audit::Unled) -> String {
    let after = if window.after.is_empty() { "an unknown time" } else { window.after.as_str() };
    format!(
        "changed while no operator led: made after the previous leader's last record (chain head {}, saved at \
         {after}) and before this replica took the audit chain over at {}",
        window.head, window.before
    )
}

/// The [`Granted`] key a record is about: its policy's uid, or the owners' access of its
/// product, or the credentials of its source.
fn key_of(event: &Event) -> Option<String> {
    match (&event.policy, event.reason.as_str()) {
        (Some(policy), _) => Some(policy.uid.clone()),
        (None, "OwnersAccess") => Some(owners_key(&event.product.namespace, &event.product.name)),
        (None, "CredentialsLent" | "CredentialsWithdrawn") => {
            Some(credentials_key(&event.product.namespace, &event.product.name))
        }
        _ => None,
    }
}

fn parse_granted(text: &str) -> Granted {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            Some((parts.next()?.to_string(), (parts.next()?.to_string(), parts.next()?.to_string())))
        })
        .collect()
}

fn print_granted(granted: &Granted) -> String {
    granted.iter().map(|(uid, (policy, product))| format!("{uid}\t{policy}\t{product}\n")).collect()
}

/// Follows what a written record says about the access in force.
fn follow(granted: &mut Granted, event: &Event) -> bool {
    let Some(policy) = &event.policy else {
        // Owners' access and lent credentials: the subjects gained or lost.
        let Some(key) = key_of(event) else { return false };
        let mut subjects: std::collections::BTreeSet<String> =
            granted.get(&key).map(standing_subjects).unwrap_or_default().into_iter().collect();
        let before = subjects.clone();
        match event.decision {
            audit::Decision::Granted => subjects.extend(event.subjects.iter().cloned()),
            audit::Decision::Revoked | audit::Decision::Expired => {
                subjects.retain(|s| !event.subjects.contains(s));
            }
            _ => return false,
        }
        if subjects == before {
            return false;
        }
        if subjects.is_empty() {
            granted.remove(&key);
        } else {
            let list = serde_json::to_string(&subjects).unwrap_or_default();
            granted.insert(key, (list, event.product.name.clone()));
        }
        return true;
    };
    match event.decision {
        audit::Decision::Granted => {
            let entry = (format!("{}/{}", policy.namespace, policy.name), event.product.name.clone());
            granted.insert(policy.uid.clone(), entry.clone()) != Some(entry)
        }
        // A denial of some subjects leaves the grant in force; these end it.
        audit::Decision::Revoked | audit::Decision::Expired => granted.remove(&policy.uid).is_some(),
        audit::Decision::Denied | audit::Decision::Exposed | audit::Decision::Warned => false,
    }
}

struct Committer {
    chain: Chain,
    out: Output,
    key: Option<ssh_key::PrivateKey>,
    head: Option<HeadStore>,
    /// The head ConfigMap's version this replica last saw (None: not created yet).
    version: Option<String>,
    /// False once another replica continued the chain, until this one takes it over.
    owner: bool,
    /// Records of narrowed access that could not be written: written first by the next
    /// commit that can (a grant's record is not kept: the grant was not applied).
    backlog: Vec<Event>,
    /// The grants in force as the records written say, whether they changed since they
    /// were last saved, and the version of their ConfigMap (None: not created yet).
    granted: Granted,
    granted_changed: bool,
    granted_version: Option<String>,
    /// The grants in force the previous leader left, until they are compared with the
    /// cluster (see [`AuditSink::deleted_while_nobody_led`]).
    inherited: Option<Granted>,
    /// Held records are saved in the ConfigMap ([`HELD_KEY`]): the next commit that writes
    /// them removes them.
    held_saved: bool,
}

/// At most this many narrowing records wait for the sink (the oldest are kept).
const BACKLOG_MAX: usize = 100_000;

type Waiting = (Event, tokio::sync::oneshot::Sender<Result<(), AuditError>>);

/// The audit stream's sink.
pub struct AuditSink {
    queue: Mutex<Vec<Waiting>>,
    committer: tokio::sync::Mutex<Committer>,
    failures: Counter,
    failing: Gauge,
    anchor: Option<Anchor>,
    signer: Option<Signer>,
    /// Whether this replica leads (None: no election, it is the only writer): a chain lost
    /// while it still leads is taken back.
    leading: Mutex<Option<tokio::sync::watch::Receiver<bool>>>,
    /// The access the previous leader left in force that this replica has not yet
    /// reconciled since it took the chain over (see [`AuditSink::reconciled`]).
    unconfirmed: Mutex<Unconfirmed>,
}

/// The access a new leader found in force (its [`Granted`] keys) and has not reconciled
/// yet, and when it can have changed: the first record of one of them is a change made
/// while no operator led, and says so.
#[derive(Default)]
struct Unconfirmed {
    window: Option<audit::Unled>,
    /// The entries the previous leader left (see [`Granted`]), by key.
    keys: Granted,
}

/// An external anchor: a command given the chain's head (`SEQ:HASH` on stdin and in
/// `DRMESH_AUDIT_HEAD`) to store it outside the cluster — a timestamping authority (RFC
/// 3161), a transparency log, another team's append-only store. Run at most every
/// `every`, when the head moved; its output (a receipt) is logged.
pub struct Anchor {
    command: String,
    every: std::time::Duration,
    last: Mutex<Option<(Head, std::time::Instant)>>,
    /// The seq of the last head anchored, and the failed runs (metrics).
    anchored: Gauge,
    failures: Counter,
}

/// How long an anchor command may run.
const ANCHOR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An external head signer (see [`AuditSink::signing_head_with`]).
pub struct Signer {
    command: String,
    every: std::time::Duration,
    last: Mutex<Option<(Head, std::time::Instant)>>,
    failures: Counter,
}

/// Runs `command` (a program and its arguments; no shell: the operator's image has none)
/// with the head on stdin (`SEQ:HASH` and a newline) and in `DRMESH_AUDIT_HEAD` (and the
/// head's signature in `DRMESH_AUDIT_HEAD_SIGNATURE`, when given); its stdout, or why it
/// failed.
async fn run_with_head(command: &str, head: &Head, signature: Option<&str>) -> Result<Vec<u8>, String> {
    let command = command.to_string();
    let (text, signature) = (head.to_string(), signature.map(String::from));
    let ran = tokio::time::timeout(
        ANCHOR_TIMEOUT,
        tokio::task::spawn_blocking(move || -> std::io::Result<std::process::Output> {
            let mut words = command.split_whitespace();
            let program = words.next().unwrap_or_default();
            let mut run = std::process::Command::new(program);
            run.args(words).env("DRMESH_AUDIT_HEAD", &text);
            if let Some(signature) = &signature {
                run.env("DRMESH_AUDIT_HEAD_SIGNATURE", signature);
            }
            let mut child = run
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read its stdin (it takes the head from the
                // environment) may have exited already: not a failure.
                match writeln!(stdin, "{text}") {
                    Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
                    other => other?,
                }
            }
            child.wait_with_output()
        }),
    )
    .await;
    match ran {
        Ok(Ok(Ok(output))) if output.status.success() => Ok(output.stdout),
        Ok(Ok(Ok(output))) => Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())),
        Ok(Ok(Err(error))) => Err(error.to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("still running after {ANCHOR_TIMEOUT:?}")),
    }
}

impl AuditSink {
    /// A sink writing to `out`, with no head in the cluster and no key (tests).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self::with_output(Output::Other(out), Chain::default())
    }

    /// A sink on stdout: the chain starts from the head in the cluster, if any.
    pub fn stdout() -> Self {
        Self::with_output(Output::Stdout, Chain::default())
    }

    /// Opens (appending) an audit file and continues its chain (unless the cluster holds
    /// a head: see [`AuditSink::take_over`]).
    pub fn append_to(path: &std::path::Path) -> std::io::Result<Self> {
        Self::append_rotating(path, 0)
    }

    /// Like [`AuditSink::append_to`], rotating the file at `max_bytes` (0: never).
    pub fn append_rotating(path: &std::path::Path, max_bytes: u64) -> std::io::Result<Self> {
        // Only a regular file has a chain to continue (not /dev/stdout, a pipe, ...).
        let regular = std::fs::metadata(path).is_ok_and(|m| m.is_file());
        let existing = if regular { std::fs::read_to_string(path).unwrap_or_default() } else { String::new() };
        let chain = existing
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<audit::Record>(l).ok())
            .map(|last| Chain::resume(&last))
            .unwrap_or_default();
        Ok(Self::with_output(Output::File(AuditFile::open(path, max_bytes)?), chain))
    }

    fn with_output(out: Output, chain: Chain) -> Self {
        Self {
            queue: Mutex::new(Vec::new()),
            committer: tokio::sync::Mutex::new(Committer {
                chain,
                out,
                key: None,
                head: None,
                version: None,
                owner: true,
                backlog: Vec::new(),
                granted: Granted::new(),
                granted_changed: false,
                granted_version: None,
                inherited: None,
                held_saved: false,
            }),
            failures: Counter::default(),
            failing: Gauge::default(),
            anchor: None,
            signer: None,
            leading: Mutex::new(None),
            unconfirmed: Mutex::new(Unconfirmed::default()),
        }
    }

    /// Follows the leader election: a chain lost (another writer saved a head) is taken
    /// back only while `leading` says this replica leads. Without it, the sink is the only
    /// writer and always takes it back.
    pub fn following_leadership(&self, leading: tokio::sync::watch::Receiver<bool>) {
        *self.leading.lock().unwrap_or_else(|p| p.into_inner()) = Some(leading);
    }

    fn leads(&self) -> bool {
        self.leading.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|l| *l.borrow())
    }

    /// Anchors the head with `command` (a program and its arguments, split on whitespace,
    /// no shell) at most every `every`; counts the
    /// head anchored into `anchored` and the failed runs into `failures`.
    pub fn anchoring_with(
        mut self,
        command: &str,
        every: std::time::Duration,
        anchored: Gauge,
        failures: Counter,
    ) -> Self {
        self.anchor = Some(Anchor { command: command.into(), every, last: Mutex::new(None), anchored, failures });
        self
    }

    /// Signs the head every `every` at most, when it moved, with `command` (a program and
    /// its arguments, split on whitespace, no shell): given [`audit::head_message`] on
    /// stdin (and the head in `DRMESH_AUDIT_HEAD`), it prints an armored SSH signature
    /// (namespace [`audit::HEAD_SIGNATURE_NAMESPACE`]), e.g. `ssh-keygen -Y sign -f KEY -n
    /// drmesh.io/audit-head` with a key the operator does not hold (an agent, a token).
    /// The signature is saved in the head ConfigMap (`signedHead`, `headSignature`) and
    /// handed to the anchor command; failed runs count into `failures`.
    pub fn signing_head_with(mut self, command: &str, every: std::time::Duration, failures: Counter) -> Self {
        self.signer = Some(Signer { command: command.into(), every, last: Mutex::new(None), failures });
        self
    }

    /// The head this writer owns, if any.
    async fn owned_head(&self) -> Option<Head> {
        let committer = self.committer.lock().await;
        if !committer.owner {
            return None;
        }
        committer.chain.head()
    }

    /// Runs the head signer if the head moved and its pace allows; saves the signature
    /// with the head. Returns the head signed and its signature.
    pub async fn sign_head_if_due(&self) -> Option<(Head, String)> {
        let signer = self.signer.as_ref()?;
        let head = self.owned_head().await?;
        {
            let last = signer.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref().is_some_and(|(h, at)| *h == head || at.elapsed() < signer.every) {
                return None;
            }
        }
        let signed = run_with_head(&signer.command, &head, None).await.and_then(|out| {
            let text = String::from_utf8_lossy(&out).trim().to_string();
            if text.starts_with("-----BEGIN SSH SIGNATURE-----") {
                Ok(text)
            } else {
                Err(format!("not an armored SSH signature: {:?}", text.chars().take(80).collect::<String>()))
            }
        });
        let signature = match signed {
            Ok(signature) => signature,
            Err(why) => {
                signer.failures.inc();
                tracing::warn!(%head, %why, "the audit head signer failed");
                return None;
            }
        };
        {
            let mut committer = self.committer.lock().await;
            if !committer.owner {
                return None;
            }
            if let Err(error) = committer.save_signature(&head, &signature).await {
                signer.failures.inc();
                tracing::warn!(%head, %error, "cannot save the audit head's signature");
                return None;
            }
        }
        tracing::info!(%head, "audit head signed");
        *signer.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((head.clone(), std::time::Instant::now()));
        Some((head, signature))
    }

    /// Signs the head (when a signer is set, see [`AuditSink::signing_head_with`]), then
    /// runs the anchor command if the head moved and `every` has passed since the last
    /// run (only a writer that owns the chain anchors); the anchor command gets the
    /// signature of the head it anchors, if any, in `DRMESH_AUDIT_HEAD_SIGNATURE`. Returns
    /// whether the anchor command ran and succeeded.
    pub async fn anchor_if_due(&self) -> bool {
        let signed = self.sign_head_if_due().await;
        let Some(anchor) = &self.anchor else { return false };
        let Some(head) = self.owned_head().await else { return false };
        {
            let last = anchor.last.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref().is_some_and(|(h, at)| *h == head || at.elapsed() < anchor.every) {
                return false;
            }
        }
        let signature = signed.filter(|(h, _)| *h == head).map(|(_, s)| s);
        match run_with_head(&anchor.command, &head, signature.as_deref()).await {
            Ok(output) => {
                let receipt = String::from_utf8_lossy(&output);
                tracing::info!(%head, receipt = %receipt.chars().take(512).collect::<String>(), "audit head anchored");
                anchor.anchored.set(head.seq as i64);
                *anchor.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((head, std::time::Instant::now()));
                true
            }
            Err(why) => {
                anchor.failures.inc();
                tracing::warn!(%head, %why, "the audit anchor command failed");
                false
            }
        }
    }

    /// Signs every record with `key` (ed25519 or any SSH key type ssh-key signs with).
    pub fn signing_with(self, key: ssh_key::PrivateKey) -> Self {
        self.committer.try_lock().expect("not shared yet").key = Some(key);
        self
    }

    /// Keeps the chain's head in `store`.
    pub fn keeping_head_in(self, store: HeadStore) -> Self {
        self.committer.try_lock().expect("not shared yet").head = Some(store);
        self
    }

    /// Counts the records it cannot write into `failures`, and sets `failing` to 1 while
    /// the last commit failed (metrics: the audit alert).
    pub fn counting_failures_in(mut self, failures: Counter, failing: Gauge) -> Self {
        self.failures = failures;
        self.failing = failing;
        self
    }

    /// Takes the chain over: continues from the head saved in the cluster (the previous
    /// leader's last record), or from this sink's own chain when the cluster holds none.
    /// Called when this replica starts to lead, before it writes anything.
    pub async fn take_over(&self) -> Result<Option<Head>, AuditError> {
        let mut committer = self.committer.lock().await;
        let Some(store) = &committer.head else { return Ok(committer.chain.head()) };
        let loaded = store.load().await?;
        match loaded {
            Some(Loaded { head, granted: (granted, granted_version), version, held, saved_at }) => {
                if committer.chain.head().as_ref() != Some(&head) {
                    tracing::info!(%head, "continuing the audit chain from the head kept in the cluster");
                }
                committer.chain = Chain::after(&head);
                committer.version = Some(version);
                *self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()) = Unconfirmed {
                    window: Some(audit::Unled {
                        head: head.to_string(),
                        after: saved_at,
                        before: jiff::Timestamp::now().to_string(),
                    }),
                    keys: granted.clone(),
                };
                committer.granted = granted.clone();
                committer.granted_version = granted_version;
                committer.inherited = Some(granted);
                if !held.is_empty() {
                    // Narrowing records a writer (this one before a restart, or the
                    // previous leader) could not write: written first, once.
                    tracing::warn!(records = held.len(), "writing the narrowing records held in the head ConfigMap");
                    let mine = std::mem::take(&mut committer.backlog);
                    let mut backlog = held;
                    backlog.extend(mine.into_iter().filter(|e| !backlog.contains(e)).collect::<Vec<_>>());
                    committer.backlog = backlog;
                    committer.held_saved = true;
                }
            }
            None => committer.version = None,
        }
        committer.owner = true;
        Ok(committer.chain.head())
    }

    /// Saves the grants in force if they changed since they were last saved (called every
    /// second and at shutdown; commits save only the head).
    pub async fn checkpoint(&self) {
        let mut committer = self.committer.lock().await;
        if !committer.granted_changed || !committer.owner {
            return;
        }
        if let Err(error) = committer.save_granted().await {
            tracing::warn!(%error, "cannot save the grants in force beside the audit head");
        }
    }

    /// The access the previous leader left in force whose object is gone (`exists` answers
    /// for a [`Granted`] key, see [`Standing`]): an AccessPolicy, a product with owners'
    /// access, a source lending credentials, deleted while no operator led. Answers once per
    /// take-over, with when the deletions can have happened.
    pub async fn deleted_while_nobody_led(&self, exists: impl Fn(&str) -> bool) -> (Granted, Option<audit::Unled>) {
        let inherited = self.committer.lock().await.inherited.take().unwrap_or_default();
        let deleted: Granted = inherited.into_iter().filter(|(key, _)| !exists(key)).collect();
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        unconfirmed.keys.retain(|key, _| !deleted.contains_key(key));
        (deleted, unconfirmed.window.clone())
    }

    /// What the previous leader left in force for `key` (see [`Granted`]) if nothing was
    /// recorded about it since this replica took the chain over: after a first reconcile
    /// that recorded nothing, access the object no longer gives was narrowed without a
    /// record reaching the chain (the previous leader's was held while its sink failed and
    /// lost with it, or the change was made while no operator led), and is recorded then.
    pub fn left_in_force(&self, key: &str) -> Option<(String, String)> {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).keys.get(key).cloned()
    }

    /// The access of `key` (a [`Granted`] key) was reconciled, by the leader, with
    /// everything it wrote recorded: what it records from now on is its own decision, not
    /// a change found at take-over.
    pub fn reconciled(&self, key: &str) {
        self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner()).keys.remove(key);
    }

    /// The first record about access the previous leader left in force (a grant, owners'
    /// access, lent credentials), written before this replica finished reconciling its
    /// object once, is about a change made while no operator led (an edit, an expiry, a
    /// clearance, a label or an input changed meanwhile): it says so, with when the change
    /// can have been made (`whileNoOperatorLed`), and its message names the head taken over.
    fn mark_if_changed_while_nobody_led(&self, event: &mut Event) {
        let Some(key) = key_of(event) else { return };
        let mut unconfirmed = self.unconfirmed.lock().unwrap_or_else(|p| p.into_inner());
        if unconfirmed.keys.remove(&key).is_none() {
            return;
        }
        let Some(window) = unconfirmed.window.clone() else { return };
        event.message.push_str(&format!("; {}", unled_message(&window)));
        event.while_no_operator_led = Some(window);
    }

    /// Writes `event` as the chain's next record; returns once it is written, synced and
    /// its head saved — or why not.
    pub async fn record(&self, mut event: Event) -> Result<(), AuditError> {
        self.mark_if_changed_while_nobody_led(&mut event);
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push((event, done));
        let mut committer = tokio::select! {
            biased;
            result = &mut outcome => return result.unwrap_or(Err(AuditError::Write("the sink stopped".into()))),
            committer = self.committer.lock() => committer,
        };
        // The previous holder may have committed this record with its group.
        if let Ok(result) = outcome.try_recv() {
            return result;
        }
        let group = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        let result = committer.commit(group.iter().map(|(e, _)| e.clone()).collect(), self.leads()).await;
        drop(committer);
        match &result {
            Ok(()) => {
                self.failing.set(0);
            }
            Err(error) => {
                self.failures.inc_by(group.len() as u64);
                self.failing.set(1);
                tracing::error!(%error, records = group.len(), "audit records not written");
            }
        }
        for (_, done) in group {
            let _ = done.send(result.clone());
        }
        outcome.await.unwrap_or(Err(AuditError::Write("the sink stopped".into())))
    }
}

impl Committer {
    /// Seals, signs and writes `events`; the chain moves on only if all were written.
    fn write(&mut self, events: &[Event]) -> Result<(), AuditError> {
        let mut chain = match self.chain.head() {
            Some(head) => Chain::after(&head),
            None => Chain::default(),
        };
        let mut lines = Vec::new();
        for event in events {
            let record =
                chain.append_signed(event.clone(), self.key.as_ref()).map_err(|e| AuditError::Sign(e.to_string()))?;
            serde_json::to_writer(&mut lines, &record).map_err(|e| AuditError::Write(e.to_string()))?;
            lines.push(b'\n');
        }
        self.out.write_synced(&lines).map_err(|e| AuditError::Write(e.to_string()))?;
        self.chain = chain;
        for event in events {
            self.granted_changed |= follow(&mut self.granted, event);
        }
        Ok(())
    }

    async fn commit(&mut self, events: Vec<Event>, leads: bool) -> Result<(), AuditError> {
        if events.is_empty() {
            return Ok(());
        }
        let taken_back = match (self.owner, leads) {
            (true, _) => None,
            (false, false) => return Err(AuditError::ChainLost),
            (false, true) => Some(self.take_back().await?),
        };
        let mut events = {
            let mut all: Vec<Event> = taken_back.into_iter().collect();
            all.extend(std::mem::take(&mut self.backlog));
            all.extend(events);
            all
        };
        let written = self.write(&events);
        if let Err(error) = written {
            // Nothing was written: narrowing records wait for the next commit, kept in
            // the head ConfigMap too when it can be written (a restart writes them then).
            events.retain(|e| e.decision != audit::Decision::Granted);
            events.truncate(BACKLOG_MAX);
            self.backlog = events;
            self.save_held().await;
            return Err(error);
        }
        // Not saved: the records are written (and synced), not committed: nothing they
        // grant is applied. The chain goes on from them; the next commit saves a later
        // head. If another leader continues from the older head meanwhile, they end up
        // as an uncommitted branch (`drmesh audit verify` lists it apart).
        let saved = self.save_head().await;
        if matches!(saved, Err(AuditError::ChainLost)) {
            // Another writer continued the chain: these records are an uncommitted branch.
            // What they narrowed was applied: write them again on the chain taken back.
            events.retain(|e| e.decision != audit::Decision::Granted && e.reason != TAKEN_OVER);
            events.truncate(BACKLOG_MAX);
            self.backlog = events;
        }
        saved
    }

    /// Takes back a chain another writer continued, while this replica still leads:
    /// continues from the head found in the cluster (or from its own chain when the
    /// ConfigMap was deleted). Returns the record that says so.
    async fn take_back(&mut self) -> Result<Event, AuditError> {
        let Some(store) = &self.head else { return Err(AuditError::ChainLost) };
        let mine = self.chain.head().map(|h| h.to_string()).unwrap_or_else(|| "none".into());
        let namespace = store.namespace.clone();
        let (found, what) = match store.observe().await? {
            // Deleted: this writer's own chain goes on, in a new ConfigMap.
            None => (None, "was deleted".to_string()),
            Some((observed, granted, version)) => {
                let Some(head) = observed.head else {
                    return Err(AuditError::Head(format!(
                        "{}/{}: {:?} is not SEQ:HASH",
                        store.name, HEAD_KEY, observed.text
                    )));
                };
                let what = format!("was saved by {:?} at {:?} (head {head})", observed.writer, observed.saved_at);
                (Some((head, granted, version)), what)
            }
        };
        let message = format!(
            "the audit chain's head in ConfigMap {namespace}/{} {what} after this writer's last record {mine}; {} \
             still leads, so it continues the chain from the head found (its records after its last saved head, \
             if any, are an uncommitted branch; those that narrowed access follow)",
            store.name, store.writer,
        );
        tracing::warn!("{message}");
        let event = Event {
            time: jiff::Timestamp::now().to_string(),
            actor: store.writer.clone(),
            decision: audit::Decision::Warned,
            reason: TAKEN_OVER.into(),
            message,
            product: audit::ObjectRef { namespace, name: store.name.clone() },
            classification: "Unknown".into(),
            subjects: vec![],
            purpose: None,
            expires_at: None,
            policy: None,
            ports: vec![],
            while_no_operator_led: None,
        };
        match found {
            Some((head, (granted, granted_version), version)) => {
                self.chain = Chain::after(&head);
                self.version = Some(version);
                self.granted = granted;
                self.granted_version = granted_version;
            }
            None => self.version = None,
        }
        self.owner = true;
        Ok(event)
    }

    /// Saves a signature of `head` with it in the head ConfigMap (logged when there is
    /// none); a refusal because another replica saved since loses the chain.
    async fn save_signature(&mut self, head: &Head, signature: &str) -> Result<(), AuditError> {
        let (Some(store), Some(version)) = (&self.head, self.version.as_deref()) else {
            tracing::info!(%head, %signature, "audit head signature (no head ConfigMap to keep it)");
            return Ok(());
        };
        let saved = store.save_signature(head, signature, version).await;
        self.version = Some(self.fenced(saved)?);
        Ok(())
    }

    /// The outcome of a save in the cluster: a refusal because another replica saved
    /// since loses the chain (this writer no longer owns it).
    fn fenced<T>(&mut self, saved: Result<T, AuditError>) -> Result<T, AuditError> {
        if matches!(saved, Err(AuditError::ChainLost)) {
            self.owner = false;
        }
        saved
    }

    /// Saves the held narrowing records in the head ConfigMap, if there is one and this
    /// writer owns it; a failure is logged (they stay in memory).
    async fn save_held(&mut self) {
        let (Some(store), Some(version)) = (&self.head, self.version.as_deref()) else { return };
        if !self.owner || self.backlog.is_empty() {
            return;
        }
        let saved = store.save_held(Some(&print_held(&self.backlog)), version).await;
        match self.fenced(saved) {
            Ok(version) => {
                self.version = Some(version);
                self.held_saved = true;
            }
            Err(AuditError::ChainLost) => {}
            Err(error) => tracing::warn!(%error, "cannot keep the held audit records in the head ConfigMap"),
        }
    }

    /// Saves the chain's head in the head ConfigMap; a refusal because another replica
    /// saved since loses the chain.
    async fn save_head(&mut self) -> Result<(), AuditError> {
        let (Some(store), Some(head)) = (&self.head, self.chain.head()) else { return Ok(()) };
        let clear_held = self.held_saved && self.backlog.is_empty();
        let saved = store.save(&head, clear_held, self.version.as_deref()).await;
        self.version = Some(self.fenced(saved)?);
        if clear_held {
            self.held_saved = false;
        }
        Ok(())
    }

    /// Saves the grants in force, as the records up to the head leave them, in their
    /// ConfigMap; a refusal because another replica saved since loses the chain.
    async fn save_granted(&mut self) -> Result<(), AuditError> {
        let (Some(store), Some(head)) = (&self.head, self.chain.head()) else { return Ok(()) };
        let saved = store.save_granted(&print_granted(&self.granted), &head, self.granted_version.as_deref()).await;
        self.granted_version = Some(self.fenced(saved)?);
        self.granted_changed = false;
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    pub(super) struct Shared(pub(super) Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        pub(super) fn records(&self) -> Vec<audit::Record> {
            let text = String::from_utf8(self.0.lock().expect("buffer").clone()).expect("utf8");
            text.lines().map(|l| serde_json::from_str(l).expect("a record")).collect()
        }
    }

    fn event(n: usize) -> Event {
        serde_json::from_value(serde_json::json!({
            "time": "2026-12-03T00:00:00Z", "actor": "test", "decision": "Granted", "reason": "Granted",
            "message": format!("decision {n}"), "product": {"namespace": "police", "name": "feed"},
            "classification": "Restricted", "subjects": ["Group:cnc-officers"],
        }))
        .expect("an event")
    }

    fn key(file: &str) -> String {
        std::fs::read_to_string(format!("{}/../../tests/fixtures/example-approvers/{file}", env!("CARGO_MANIFEST_DIR")))
            .expect("the example key")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn records_written_at_once_by_many_reconciles_form_one_chain() {
        let out = Shared::default();
        let sink = Arc::new(AuditSink::new(Box::new(out.clone())));
        let tasks: Vec<_> = (0..64)
            .map(|n| {
                let sink = sink.clone();
                tokio::spawn(async move { sink.record(event(n)).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("joined").expect("written");
        }
        let text = String::from_utf8(out.0.lock().expect("buffer").clone()).expect("utf8");
        assert_eq!(audit::verify(text.as_bytes()), Ok(64), "one intact chain");
        let mut messages: Vec<_> = out.records().iter().map(|r| r.event.message.clone()).collect();
        messages.sort();
        messages.dedup();
        assert_eq!(messages.len(), 64, "every record once");
    }

    #[tokio::test]
    async fn every_record_is_signed_with_the_audit_key() {
        let out = Shared::default();
        let private = ssh_key::PrivateKey::from_openssh(key("example-approver-3")).expect("private key");
        let public = ssh_key::PublicKey::from_openssh(key("example-approver-3.pub").trim()).expect("public key");
        let other = ssh_key::PublicKey::from_openssh(key("example-approver-1.pub").trim()).expect("public key");
        let sink = AuditSink::new(Box::new(out.clone())).signing_with(private);
        for n in 0..3 {
            sink.record(event(n)).await.expect("written");
        }
        let records = out.records();
        assert_eq!(records.len(), 3);
        for record in &records {
            let signature = record.signature.as_deref().expect("signed");
            assert!(audit::signature_holds(&record.hash, signature, &public), "signed by the audit key");
            assert!(!audit::signature_holds(&record.hash, signature, &other), "not by another key");
            assert!(!audit::signature_holds(&records[0].prev_hash, signature, &public), "over this record's hash");
        }
    }

    /// A writer that fails while `down` is set.
    #[derive(Clone, Default)]
    pub(super) struct Flaky(pub(super) Shared, pub(super) Arc<std::sync::atomic::AtomicBool>);

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(std::io::Error::other("disk full"));
            }
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn narrowing_records_the_sink_refused_are_written_once_it_is_back_and_grants_are_not() {
        let out = Flaky::default();
        let sink = AuditSink::new(Box::new(out.clone()));
        sink.record(event(0)).await.expect("written");
        out.1.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut expired = event(1);
        expired.decision = audit::Decision::Expired;
        assert!(sink.record(expired).await.is_err(), "the sink is down");
        assert!(sink.record(event(2)).await.is_err(), "a grant is refused");
        out.1.store(false, std::sync::atomic::Ordering::SeqCst);
        sink.record(event(3)).await.expect("written");
        let records = out.0.records();
        let messages: Vec<_> = records.iter().map(|r| r.event.message.as_str()).collect();
        assert_eq!(messages, ["decision 0", "decision 1", "decision 3"], "the expiry first, the refused grant never");
        let text = String::from_utf8(out.0.0.lock().expect("buffer").clone()).expect("utf8");
        assert_eq!(audit::verify(text.as_bytes()), Ok(3), "one chain");
    }

    #[tokio::test]
    async fn a_rotated_log_and_its_successor_verify_as_one_chain() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        let sink = AuditSink::append_rotating(&path, 1500).expect("open");
        for n in 0..12 {
            sink.record(event(n)).await.expect("written");
        }
        let mut files: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").path()).collect();
        files.sort();
        assert!(files.len() >= 3, "rotated at 1,500 bytes: {files:?}");
        let inputs: Vec<(String, String)> =
            files.iter().map(|f| (f.display().to_string(), std::fs::read_to_string(f).expect("read"))).collect();
        let report = audit::verify_logs(&inputs, &audit::Anchors::default());
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.records, 12);
        // A rotated file is named after its last record: the next file starts right after.
        let first_rotated = files.iter().find(|f| f.extension().is_some_and(|e| e != "log")).expect("a rotated file");
        let last: u64 = first_rotated.extension().and_then(|e| e.to_str()).and_then(|e| e.parse().ok()).expect("seq");
        let text = std::fs::read_to_string(first_rotated).expect("read");
        let records: Vec<audit::Record> = text.lines().map(|l| serde_json::from_str(l).expect("record")).collect();
        assert_eq!(records.last().map(|r| r.seq), Some(last));
    }

    #[tokio::test]
    async fn a_rotation_that_fails_after_the_records_are_synced_does_not_fail_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.log");
        // The name the first rotation wants is taken (by a directory): the rename fails.
        std::fs::create_dir(dir.path().join("audit.log.000000000000")).expect("dir");
        let sink = AuditSink::append_rotating(&path, 1).expect("open");
        sink.record(event(0)).await.expect("written and synced: the failed rotation is only logged");
        sink.record(event(1)).await.expect("written; rotated this time");
        let rotated = dir.path().join("audit.log.000000000001");
        let inputs: Vec<(String, String)> = [&rotated, &path]
            .iter()
            .map(|f| (f.display().to_string(), std::fs::read_to_string(f).expect("read")))
            .collect();
        let report = audit::verify_logs(&inputs, &audit::Anchors::default());
        assert!(report.intact(), "one chain, no record sealed twice: {:?}", report.findings);
        assert_eq!(report.records, 2);
    }

    #[tokio::test]
    async fn the_head_is_anchored_outside_when_it_moved_and_failures_are_counted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let receipts = dir.path().join("anchors");
        let (anchored, failures) = (Gauge::default(), Counter::default());
        let script = dir.path().join("anchor.sh");
        std::fs::write(&script, format!("#!/bin/sh\ncat >> {}\necho receipt-$DRMESH_AUDIT_HEAD\n", receipts.display()))
            .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let command = script.display().to_string();
        let out = Shared::default();
        let sink = AuditSink::new(Box::new(out.clone())).anchoring_with(
            &command,
            std::time::Duration::ZERO,
            anchored.clone(),
            failures.clone(),
        );
        assert!(!sink.anchor_if_due().await, "no record yet: nothing to anchor");
        sink.record(event(0)).await.expect("written");
        sink.record(event(1)).await.expect("written");
        assert!(sink.anchor_if_due().await);
        assert!(!sink.anchor_if_due().await, "the head did not move");
        let head = out.records().last().map(|r| format!("{}:{}", r.seq, r.hash)).expect("a record");
        assert_eq!(std::fs::read_to_string(&receipts).expect("anchored"), format!("{head}\n"));
        assert_eq!((anchored.get(), failures.get()), (1, 0));
        // A failing anchor is counted and retried at the next tick.
        let failing = AuditSink::new(Box::new(Shared::default())).anchoring_with(
            "false",
            std::time::Duration::ZERO,
            Gauge::default(),
            failures.clone(),
        );
        failing.record(event(2)).await.expect("written");
        assert!(!failing.anchor_if_due().await);
        assert!(!failing.anchor_if_due().await);
        assert_eq!(failures.get(), 2);
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_written_is_an_error_and_the_chain_does_not_move() {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
        let failures = Counter::default();
        let failing = Gauge::default();
        let sink = AuditSink::new(Box::new(full)).counting_failures_in(failures.clone(), failing.clone());
        assert!(matches!(sink.record(event(0)).await, Err(AuditError::Write(_))));
        assert_eq!((failures.get(), failing.get()), (1, 1));
        assert_eq!(sink.committer.lock().await.chain.head(), None, "nothing sealed counts");
    }
}

#[cfg(test)]
mod granted_tests {
    use super::*;

    fn record(decision: audit::Decision, uid: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "time": "2026-12-03T00:00:00Z", "actor": "test", "decision": decision, "reason": "r", "message": "m",
            "product": {"namespace": "police", "name": "feed"}, "classification": "Restricted", "subjects": [],
            "policy": {"namespace": "police", "name": format!("p-{uid}"), "uid": uid, "generation": 1},
        }))
        .expect("an event")
    }

    #[test]
    fn the_grants_in_force_follow_the_records_and_survive_the_configmap() {
        let mut granted = Granted::new();
        assert!(follow(&mut granted, &record(audit::Decision::Granted, "a")));
        assert!(follow(&mut granted, &record(audit::Decision::Granted, "b")));
        assert!(!follow(&mut granted, &record(audit::Decision::Granted, "b")), "an edit's record changes nothing");
        assert!(!follow(&mut granted, &record(audit::Decision::Denied, "a")), "a denied subject: still in force");
        assert!(!follow(&mut granted, &record(audit::Decision::Warned, "a")), "reassessment due: still in force");
        assert!(follow(&mut granted, &record(audit::Decision::Expired, "b")));
        assert_eq!(granted.keys().collect::<Vec<_>>(), ["a"]);
        assert!(follow(&mut granted, &record(audit::Decision::Granted, "c")));
        assert!(follow(&mut granted, &record(audit::Decision::Revoked, "c")));
        assert_eq!(parse_granted(&print_granted(&granted)), granted);
        assert_eq!(granted["a"], ("police/p-a".to_string(), "feed".to_string()));
    }

    #[test]
    fn the_access_in_force_is_kept_compressed_and_an_older_text_copy_is_still_read() {
        let mut granted = Granted::new();
        for n in 0..10_000 {
            granted.insert(
                owners_key(&format!("domain-{}", n % 20), &format!("product-{n:05}")),
                (r#"["Group:domain-owners"]"#.to_string(), format!("product-{n:05}")),
            );
        }
        let text = print_granted(&granted);
        let compressed = gzip(&text);
        eprintln!("granted at 10,000 owners entries: {} bytes of text, {} compressed", text.len(), compressed.len());
        assert!(compressed.len() * 8 < text.len(), "{} bytes of {} in text", compressed.len(), text.len());
        let map = |binary: Option<Vec<u8>>, legacy: Option<&str>| ConfigMap {
            binary_data: binary.map(|b| [(GRANTED_KEY.to_string(), k8s_openapi::ByteString(b))].into()),
            data: legacy.map(|t| [(GRANTED_TEXT_KEY.to_string(), t.to_string())].into()),
            ..Default::default()
        };
        assert_eq!(granted_in(&map(Some(compressed), None)), granted);
        let older = "uid-1\tpolice/cnc\tfeed\n";
        assert_eq!(
            granted_in(&map(None, Some(older))).keys().collect::<Vec<_>>(),
            ["uid-1"],
            "an older operator's copy"
        );
        assert!(granted_in(&map(Some(b"not gzip".to_vec()), Some(older))).is_empty(), "a damaged copy gives nothing");
    }

    fn standing(decision: audit::Decision, reason: &str, subjects: &[&str]) -> Event {
        serde_json::from_value(serde_json::json!({
            "time": "2026-12-03T00:00:00Z", "actor": "test", "decision": decision, "reason": reason, "message": "m",
            "product": {"namespace": "police", "name": "feed"}, "classification": "Restricted", "subjects": subjects,
        }))
        .expect("an event")
    }

    #[test]
    fn owners_access_and_lent_credentials_in_force_follow_their_subjects() {
        use audit::Decision::{Denied, Granted as Gained, Revoked};
        let mut granted = Granted::new();
        let owners = owners_key("police", "feed");
        assert!(follow(&mut granted, &standing(Gained, "OwnersAccess", &["User:dave", "Group:owners"])));
        assert!(!follow(&mut granted, &standing(Gained, "OwnersAccess", &["User:dave"])), "already in force");
        assert!(follow(&mut granted, &standing(Revoked, "OwnersAccess", &["User:dave"])));
        assert_eq!(standing_subjects(&granted[&owners]), ["Group:owners"], "one owner lost it, one still reads");
        assert!(!follow(&mut granted, &standing(Denied, "OwnersAccess", &["Group:owners"])));
        let lent = credentials_key("police", "feed");
        assert!(follow(&mut granted, &standing(Gained, "CredentialsLent", &["ServiceAccount:police/a"])));
        assert!(!follow(&mut granted, &standing(Gained, "SomethingElse", &["ServiceAccount:police/b"])));
        assert_eq!(parse_granted(&print_granted(&granted)), granted, "survives the ConfigMap");
        assert!(matches!(Standing::of(&lent), Standing::Credentials { namespace: "police", source: "feed" }));
        assert!(matches!(Standing::of(&owners), Standing::Owners { namespace: "police", product: "feed" }));
        assert!(matches!(Standing::of("0f3c-uid"), Standing::Policy { uid: "0f3c-uid" }));
        assert!(follow(&mut granted, &standing(Revoked, "CredentialsWithdrawn", &["ServiceAccount:police/a"])));
        assert!(follow(&mut granted, &standing(Revoked, "OwnersAccess", &["Group:owners"])));
        assert!(granted.is_empty(), "nothing left in force: {granted:?}");
    }
}

#[cfg(test)]
mod head_tests {
    //! The head ConfigMap (and the one of the access in force beside it) against a mock API
    //! server that keeps ConfigMaps by name and refuses a merge patch carrying another
    //! version than the ConfigMap's own (409), as the API server does.

    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::tests::Shared;
    use super::*;

    #[derive(Clone, Default)]
    struct Store(Arc<Mutex<std::collections::BTreeMap<String, Value>>>);

    const HEAD: &str = "drmesh-audit-head";

    fn status(code: u16, reason: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": reason, "reason": reason, "code": code,
        }))
        .expect("json")
    }

    impl Store {
        fn client(&self) -> kube::Client {
            let store = self.clone();
            let service = tower::service_fn(move |request: http::Request<Body>| {
                let store = store.clone();
                async move {
                    let method = request.method().to_string();
                    // .../configmaps/NAME, or .../configmaps for a create.
                    let path = request.uri().path().to_string();
                    let named = path.rsplit_once("/configmaps/").map(|(_, name)| name.to_string());
                    let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                    let (code, answer) = store.answer(&method, named, &body);
                    crate::controllers::order_tests::answer(code, answer)
                }
            });
            kube::Client::new(service, "default")
        }

        fn answer(&self, method: &str, named: Option<String>, body: &[u8]) -> (u16, Vec<u8>) {
            let mut maps = self.0.lock().expect("store");
            let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let name = named.unwrap_or_else(|| request["metadata"]["name"].as_str().unwrap_or_default().to_string());
            let map = maps.get_mut(&name);
            match (method, map) {
                ("GET", Some(m)) => (200, serde_json::to_vec(m).expect("json")),
                ("GET" | "PATCH", None) => (404, status(404, "NotFound")),
                ("POST", None) => {
                    let mut m = request;
                    m["metadata"]["resourceVersion"] = json!("1");
                    let answer = serde_json::to_vec(&m).expect("json");
                    maps.insert(name, m);
                    (201, answer)
                }
                ("POST", Some(_)) => (409, status(409, "AlreadyExists")),
                ("PATCH", Some(m)) => {
                    if request["metadata"]["resourceVersion"] != m["metadata"]["resourceVersion"] {
                        return (409, status(409, "Conflict"));
                    }
                    // A merge patch: null removes the key (or the whole field).
                    for field in ["data", "binaryData"] {
                        if request[field].is_null() && request.get(field).is_some() {
                            m.as_object_mut().expect("an object").remove(field);
                        }
                        for (k, v) in request[field].as_object().cloned().unwrap_or_default() {
                            match (v.is_null(), m[field].as_object_mut()) {
                                (true, Some(data)) => {
                                    data.remove(&k);
                                }
                                _ => m[field][k] = v,
                            }
                        }
                    }
                    bump(m);
                    (200, serde_json::to_vec(m).expect("json"))
                }
                _ => (405, status(405, "MethodNotAllowed")),
            }
        }

        /// Another writer saves a head.
        fn overwrite(&self, head: &str, writer: &str) {
            let mut maps = self.0.lock().expect("store");
            let m = maps.get_mut(HEAD).expect("a head ConfigMap");
            m["data"]["head"] = json!(head);
            m["data"]["writer"] = json!(writer);
            m["data"]["savedAt"] = json!("2026-12-03T10:00:00Z");
            bump(m);
        }

        fn head(&self) -> String {
            self.data("head")
        }

        fn data(&self, key: &str) -> String {
            let maps = self.0.lock().expect("store");
            maps.get(HEAD).and_then(|m| m["data"][key].as_str().map(String::from)).unwrap_or_default()
        }

        /// A ConfigMap as the API server would return it.
        fn config_map(&self, name: &str) -> Option<ConfigMap> {
            let maps = self.0.lock().expect("store");
            maps.get(name).map(|m| serde_json::from_value(m.clone()).expect("a ConfigMap"))
        }
    }

    fn bump(m: &mut Value) {
        let version: u64 = m["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        m["metadata"]["resourceVersion"] = json!((version + 1).to_string());
    }

    fn event(n: usize, decision: audit::Decision) -> Event {
        serde_json::from_value(json!({
            "time": "2026-12-03T00:00:00Z", "actor": "test", "decision": decision, "reason": "r",
            "message": format!("decision {n}"), "product": {"namespace": "police", "name": "feed"},
            "classification": "Restricted", "subjects": ["Group:cnc-officers"],
        }))
        .expect("an event")
    }

    fn sink(store: &Store, out: &Shared) -> AuditSink {
        sink_of("replica-a", store, out)
    }

    fn sink_of(writer: &str, store: &Store, out: &Shared) -> AuditSink {
        AuditSink::new(Box::new(out.clone())).keeping_head_in(HeadStore::new(
            store.client(),
            "drmesh-system",
            HEAD,
            writer,
        ))
    }

    #[tokio::test]
    async fn the_access_in_force_has_a_configmap_of_its_own_that_head_saves_do_not_rewrite() {
        let store = Store::default();
        let a = sink(&store, &Shared::default());
        a.take_over().await.expect("no head yet");
        a.record(grant_event("one", audit::Decision::Granted)).await.expect("written");
        let granted = || store.config_map(&granted_name(HEAD)).map(|m| granted_in(&m)).unwrap_or_default();
        assert!(granted().is_empty(), "a commit saves the head only");
        a.checkpoint().await;
        assert_eq!(granted().keys().collect::<Vec<_>>(), ["one"]);
        let kept = store.config_map(&granted_name(HEAD)).expect("its ConfigMap");
        assert_eq!(kept.data.as_ref().and_then(|d| d.get("head")).cloned(), Some(store.head()), "as of the head");
        let version = kept.metadata.resource_version;
        a.record(grant_event("two", audit::Decision::Granted)).await.expect("written");
        a.record(grant_event("one", audit::Decision::Revoked)).await.expect("written");
        let head = store.config_map(HEAD).expect("the head ConfigMap");
        assert!(head.binary_data.is_none(), "the head keeps no copy: {head:?}");
        assert_eq!(
            store.config_map(&granted_name(HEAD)).and_then(|m| m.metadata.resource_version),
            version,
            "not rewritten by the commits"
        );
        a.checkpoint().await;
        assert_eq!(granted().keys().collect::<Vec<_>>(), ["two"]);
        a.checkpoint().await;
        assert_ne!(store.config_map(&granted_name(HEAD)).and_then(|m| m.metadata.resource_version), version);

        // replica-b takes over and saves the access in force; replica-a, which no longer
        // leads, cannot overwrite it with its own older view.
        a.record(grant_event("three", audit::Decision::Granted)).await.expect("written");
        let b = sink_of("replica-b", &store, &Shared::default());
        b.take_over().await.expect("the head");
        assert!(b.left_in_force("two").is_some(), "read from its ConfigMap");
        b.record(grant_event("four", audit::Decision::Granted)).await.expect("written");
        b.checkpoint().await;
        a.checkpoint().await;
        // "three" was recorded after replica-a's last save: replica-b does not know it (a
        // change within a second of a failover; see security-model O8).
        assert_eq!(granted().keys().collect::<Vec<_>>(), ["four", "two"], "replica-b's view");
        let writer = store.config_map(&granted_name(HEAD)).and_then(|m| m.data?.get("writer").cloned());
        assert_eq!(writer.as_deref(), Some("replica-b"));
    }

    #[tokio::test]
    async fn an_older_operators_copy_in_the_head_configmap_is_read_and_then_removed() {
        let store = Store::default();
        let older = "kept\tpolice/p-kept\tfeed\n";
        let head = format!("4:{}", "ab".repeat(32));
        store.0.lock().expect("store").insert(
            HEAD.into(),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": HEAD, "namespace": "drmesh-system", "resourceVersion": "7"},
                "data": {"head": head, "writer": "older", "savedAt": "2026-12-01T00:00:00Z"},
                "binaryData": {GRANTED_KEY: k8s_openapi::ByteString(gzip(older))},
            }),
        );
        let next = sink(&store, &Shared::default());
        next.take_over().await.expect("the head");
        assert_eq!(next.left_in_force("kept"), Some(("police/p-kept".to_string(), "feed".to_string())));
        next.record(grant_event("new", audit::Decision::Granted)).await.expect("written");
        let map = store.config_map(HEAD).expect("the head ConfigMap");
        assert!(map.binary_data.is_none(), "the older copy is removed by the head save: {map:?}");
        assert!(store.head().starts_with("5:"));
        next.checkpoint().await;
        let granted = granted_in(&store.config_map(&granted_name(HEAD)).expect("its own ConfigMap"));
        assert_eq!(granted.keys().collect::<Vec<_>>(), ["kept", "new"]);
    }

    #[tokio::test]
    async fn a_chain_another_writer_continued_is_taken_back_while_this_replica_leads_and_it_is_recorded() {
        let (store, out) = (Store::default(), Shared::default());
        let sink = sink(&store, &out);
        assert_eq!(sink.take_over().await.expect("no head yet"), None);
        sink.record(event(0, audit::Decision::Granted)).await.expect("written");
        assert!(store.head().starts_with("0:"), "{}", store.head());
        let theirs = format!("5:{}", "cd".repeat(32));
        store.overwrite(&theirs, "intruder");
        // Written, then refused by the head's version: lost, and the expiry is held.
        let lost = sink.record(event(1, audit::Decision::Expired)).await;
        assert!(matches!(lost, Err(AuditError::ChainLost)), "{lost:?}");
        let mine = out.records().last().map(|r| format!("{}:{}", r.seq, r.hash)).expect("record 1");
        // The next record takes the chain back from the head found, and says so.
        sink.record(event(2, audit::Decision::Granted)).await.expect("taken back");
        let records = out.records();
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [0, 1, 6, 7, 8]);
        let taken = &records[2];
        assert_eq!((taken.event.decision, taken.event.reason.as_str()), (audit::Decision::Warned, TAKEN_OVER));
        assert_eq!(taken.prev_hash, "cd".repeat(32), "continues the head found");
        for seen in ["drmesh-system/drmesh-audit-head", "\"intruder\"", &theirs, &mine, "replica-a still leads"] {
            assert!(taken.event.message.contains(seen), "{seen:?} in {}", taken.event.message);
        }
        let messages: Vec<&str> = records[3..].iter().map(|r| r.event.message.as_str()).collect();
        assert_eq!(messages, ["decision 1", "decision 2"], "the held expiry again, then the grant");
        assert_eq!(store.head(), format!("8:{}", records[4].hash), "committed");
    }

    #[tokio::test]
    async fn a_replica_that_no_longer_leads_does_not_take_the_chain_back() {
        let (store, out) = (Store::default(), Shared::default());
        let sink = sink(&store, &out);
        let (leading, follows) = tokio::sync::watch::channel(true);
        sink.following_leadership(follows);
        sink.take_over().await.expect("no head yet");
        sink.record(event(0, audit::Decision::Granted)).await.expect("written");
        let theirs = format!("3:{}", "ef".repeat(32));
        store.overwrite(&theirs, "replica-b");
        leading.send(false).expect("sent");
        assert!(matches!(sink.record(event(1, audit::Decision::Revoked)).await, Err(AuditError::ChainLost)));
        assert!(matches!(sink.record(event(2, audit::Decision::Granted)).await, Err(AuditError::ChainLost)));
        assert_eq!(store.head(), theirs, "the other writer's head stays");
        assert_eq!(out.records().len(), 2, "nothing written once lost");
        // Leading again (the Lease is back): taken back, the held revocation written.
        leading.send(true).expect("sent");
        sink.record(event(3, audit::Decision::Granted)).await.expect("taken back");
        let messages: Vec<String> = out.records()[2..].iter().map(|r| r.event.message.clone()).collect();
        assert_eq!(messages[1..], ["decision 1".to_string(), "decision 3".to_string()]);
        assert!(store.head().starts_with("6:"), "{}", store.head());
    }

    #[tokio::test]
    async fn the_head_is_signed_by_the_external_signer_and_the_signature_kept_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fixtures = format!("{}/../../tests/fixtures/example-approvers", env!("CARGO_MANIFEST_DIR"));
        // ssh-keygen refuses a private key others can read: a copy only we can.
        let key = dir.path().join("head-signer");
        std::fs::copy(format!("{fixtures}/example-approver-3"), &key).expect("copy");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
        let public = |name: &str| {
            let text = std::fs::read_to_string(format!("{fixtures}/{name}.pub")).expect("public key");
            ssh_key::PublicKey::from_openssh(text.trim()).expect("public key")
        };
        let command = format!("ssh-keygen -q -Y sign -f {} -n drmesh.io/audit-head", key.display());
        let failures = Counter::default();
        let (store, out) = (Store::default(), Shared::default());
        let signing = sink(&store, &out).signing_head_with(&command, std::time::Duration::ZERO, failures.clone());
        assert!(signing.sign_head_if_due().await.is_none(), "no record yet: nothing to sign");
        signing.take_over().await.expect("no head yet");
        signing.record(event(0, audit::Decision::Granted)).await.expect("written");
        signing.record(event(1, audit::Decision::Granted)).await.expect("written");
        let (head, signature) = signing.sign_head_if_due().await.expect("signed");
        assert_eq!(head.to_string(), store.head());
        assert_eq!((store.data("signedHead"), store.data("headSignature")), (head.to_string(), signature.clone()));
        assert!(audit::head_signature_holds(&head, &signature, &public("example-approver-3")));
        assert!(!audit::head_signature_holds(&head, &signature, &public("example-approver-1")), "not another key's");
        let older = audit::Head { seq: 0, hash: out.records()[0].hash.clone() };
        assert!(!audit::head_signature_holds(&older, &signature, &public("example-approver-3")), "not another head's");
        assert!(signing.sign_head_if_due().await.is_none(), "the head did not move");
        // The anchor command gets the signature of the head it anchors.
        let script = dir.path().join("anchor.sh");
        let received = dir.path().join("received.sig");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s' \"$DRMESH_AUDIT_HEAD_SIGNATURE\" > {}\n", received.display()),
        )
        .expect("script");
        let (anchoring_store, anchoring_out) = (Store::default(), Shared::default());
        let anchoring = sink(&anchoring_store, &anchoring_out)
            .signing_head_with(&command, std::time::Duration::ZERO, failures.clone())
            // Read by sh, not executed: a file just written cannot be (ETXTBSY) while
            // another test's thread forks.
            .anchoring_with(
                &format!("sh {}", script.display()),
                std::time::Duration::ZERO,
                Gauge::default(),
                failures.clone(),
            );
        anchoring.take_over().await.expect("no head yet");
        anchoring.record(event(0, audit::Decision::Granted)).await.expect("written");
        assert!(anchoring.anchor_if_due().await, "signed, then anchored");
        let handed = std::fs::read_to_string(&received).expect("the anchor ran");
        assert_eq!(handed, anchoring_store.data("headSignature"));
        let anchored: audit::Head = anchoring_store.data("signedHead").parse().expect("a head");
        assert!(audit::head_signature_holds(&anchored, &handed, &public("example-approver-3")));
        // The next commit keeps the signature beside the new head.
        signing.record(event(2, audit::Decision::Granted)).await.expect("written");
        assert!(store.head().starts_with("2:"));
        assert_eq!(store.data("signedHead"), head.to_string());
        assert_eq!(failures.get(), 0);
        // A signer that prints no signature is a failure, counted; nothing is saved.
        let (store, out) = (Store::default(), Shared::default());
        let failing =
            sink(&store, &out).signing_head_with("echo unsigned", std::time::Duration::ZERO, failures.clone());
        failing.take_over().await.expect("no head yet");
        failing.record(event(0, audit::Decision::Granted)).await.expect("written");
        assert!(failing.sign_head_if_due().await.is_none());
        assert_eq!((failures.get(), store.data("headSignature")), (1, String::new()));
    }

    fn grant_event(uid: &str, decision: audit::Decision) -> Event {
        let mut event = event(0, decision);
        event.message = format!("about {uid}");
        event.policy = Some(audit::PolicyRef {
            namespace: "police".into(),
            name: format!("p-{uid}"),
            uid: uid.into(),
            generation: 1,
        });
        event
    }

    #[tokio::test]
    async fn the_first_record_of_a_grant_changed_while_no_operator_led_says_so() {
        let store = Store::default();
        let first = sink(&store, &Shared::default());
        first.take_over().await.expect("no head yet");
        for uid in ["kept", "edited", "expired", "deleted"] {
            first.record(grant_event(uid, audit::Decision::Granted)).await.expect("written");
        }
        let owners = |decision| {
            let mut event = event(0, decision);
            (event.reason, event.message) = ("OwnersAccess".into(), "about owners".into());
            event
        };
        first.record(owners(audit::Decision::Granted)).await.expect("written");
        first.checkpoint().await;
        let (head, saved_at) = (store.head(), store.data("savedAt"));
        // The next leader (a failover, a restart) takes the chain over.
        let out = Shared::default();
        let next = sink(&store, &out);
        next.take_over().await.expect("the head kept");
        let live = ["kept", "edited", "expired", "owners police/feed"];
        let (deleted, window) = next.deleted_while_nobody_led(|uid| live.contains(&uid)).await;
        assert_eq!(deleted.keys().collect::<Vec<_>>(), ["deleted"]);
        let window = window.expect("when the deletion can have happened");
        assert_eq!((window.head.as_str(), window.after.as_str()), (head.as_str(), saved_at.as_str()));
        let at = |t: &str| t.parse::<jiff::Timestamp>().expect("RFC 3339");
        assert!(at(&window.before) >= at(&window.after), "taken over after the last save: {window:?}");
        next.record(grant_event("deleted", audit::Decision::Revoked)).await.expect("written");
        // What the previous leader left in force, until a record or a reconcile confirms it.
        let left = next.left_in_force("kept").expect("left in force");
        assert_eq!(left, ("police/p-kept".to_string(), "feed".to_string()));
        // "kept" is reconciled and recorded nothing: what it records later is the leader's.
        next.reconciled("kept");
        assert_eq!(next.left_in_force("kept"), None);
        next.record(grant_event("kept", audit::Decision::Revoked)).await.expect("written");
        next.record(grant_event("edited", audit::Decision::Granted)).await.expect("written");
        next.record(grant_event("expired", audit::Decision::Expired)).await.expect("written");
        next.record(grant_event("edited", audit::Decision::Revoked)).await.expect("written");
        assert_eq!(next.left_in_force("edited"), None, "its record confirmed it");
        // The owners' access of a product is followed the same way.
        let owners_left = next.left_in_force(&owners_key("police", "feed")).expect("owners left in force");
        assert_eq!(standing_subjects(&owners_left), ["Group:cnc-officers"]);
        next.record(owners(audit::Decision::Revoked)).await.expect("written");
        let marked: Vec<(String, bool)> = out
            .records()
            .iter()
            .map(|r| (r.event.message.clone(), r.event.message.contains("changed while no operator led")))
            .collect();
        let about = |m: &str| m.split(';').next().unwrap_or_default().to_string();
        assert_eq!(
            marked.iter().map(|(m, changed)| (about(m), *changed)).collect::<Vec<_>>(),
            [
                ("about deleted".to_string(), false),
                ("about kept".to_string(), false),
                ("about edited".to_string(), true),
                ("about expired".to_string(), true),
                ("about edited".to_string(), false),
                ("about owners".to_string(), true),
            ],
            "only the first record of each grant left in force and not yet reconciled"
        );
        assert!(marked[2].0.contains(&format!("chain head {head}")), "names the head taken over: {}", marked[2].0);
        let windows: Vec<Option<audit::Unled>> =
            out.records().into_iter().map(|r| r.event.while_no_operator_led).collect();
        assert_eq!(
            windows,
            [None, None, Some(window.clone()), Some(window.clone()), None, Some(window)],
            "when the change can have been made"
        );
    }

    #[tokio::test]
    async fn narrowing_records_held_while_the_output_fails_survive_a_restart_in_the_head_configmap() {
        use super::tests::Flaky;
        let store = Store::default();
        let out = Flaky::default();
        let first = AuditSink::new(Box::new(out.clone())).keeping_head_in(HeadStore::new(
            store.client(),
            "drmesh-system",
            "drmesh-audit-head",
            "replica-a",
        ));
        first.take_over().await.expect("no head yet");
        first.record(event(0, audit::Decision::Granted)).await.expect("written");
        // The audit file's disk is full; the API server answers.
        out.1.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(first.record(event(1, audit::Decision::Expired)).await.is_err());
        assert!(first.record(event(2, audit::Decision::Granted)).await.is_err(), "a grant is refused, not held");
        let held = store.data(HELD_KEY);
        assert!(held.contains("decision 1") && !held.contains("decision 2"), "{held}");
        // The operator restarts before the disk is freed: the held expiry is written first.
        drop(first);
        let again = Shared::default();
        let second = sink(&store, &again);
        second.take_over().await.expect("the head");
        second.record(event(3, audit::Decision::Revoked)).await.expect("written");
        let records = again.records();
        let written: Vec<(u64, &str)> = records.iter().map(|r| (r.seq, r.event.message.as_str())).collect();
        assert_eq!(written, [(1, "decision 1"), (2, "decision 3")]);
        assert_eq!(store.data(HELD_KEY), "", "removed once written");
        assert_eq!(store.head(), format!("2:{}", records[1].hash));
        // Taken over again: nothing is written twice.
        let third = sink(&store, &Shared::default());
        third.take_over().await.expect("the head");
        assert!(third.committer.lock().await.backlog.is_empty());
    }
}
