//! The audit stream: one JSON line per access decision (grant, revocation, denial,
//! expiry), hash-chained so that removing, reordering or altering a record is detected
//! by `drmesh audit verify`.
//!
//! Each record carries `prevHash` (the previous record's `hash`, or the genesis value)
//! and `hash` = SHA-256 over `prevHash` and the record's canonical JSON without `hash`.
//! serde_json serialises struct fields in declaration order, so the encoding is stable.
//!
//! A record may also carry `signature`: an SSH signature (the format `ssh-keygen -Y sign`
//! writes, namespace [`SIGNATURE_NAMESPACE`]) over its `hash`, by the operator's audit key.
//! Without the key, a rewritten log cannot be re-signed; an auditor checks it with
//! `drmesh audit verify --key` or with OpenSSH alone.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The namespace of audit record signatures (`ssh-keygen -Y verify -n`).
pub const SIGNATURE_NAMESPACE: &str = "drmesh.io/audit";

/// `prevHash` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened to access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Access was granted (a grant became effective).
    Granted,
    /// A grant, or one of its subjects, was refused.
    Denied,
    /// Access was withdrawn because the policy was deleted or changed.
    Revoked,
    /// Access was withdrawn because `expiresAt` passed.
    Expired,
    /// Access that drmesh did not grant was found (e.g. a NetworkPolicy or RoleBinding
    /// created by hand in a classified domain).
    Exposed,
    /// A grant in force needs a person to act, access unchanged: its `reassessBy` passed
    /// (reason `ReassessmentDue`); it is suspended, a `Revoked` record, when the grace ends.
    Warned,
}

impl Decision {
    /// Stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Granted => "Granted",
            Decision::Denied => "Denied",
            Decision::Revoked => "Revoked",
            Decision::Expired => "Expired",
            Decision::Exposed => "Exposed",
            Decision::Warned => "Warned",
        }
    }
}

/// A reference to a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

/// The policy that produced the decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
}

/// One access decision, before it is chained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// RFC 3339 time of the decision.
    pub time: String,
    /// Who decided: the operator's identity.
    pub actor: String,
    pub decision: Decision,
    /// Stable reason, the same as the status condition's reason.
    pub reason: String,
    pub message: String,
    pub product: ObjectRef,
    pub classification: String,
    /// Subjects as `Kind:namespace/name` or `Kind:name`.
    pub subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// The ports a grant gives, `NUMBER/NAME` (e.g. `8080/http`), on a policy's `Granted`
    /// record. Empty (left out of the JSON, so older records hash as they did): the record
    /// names no port (owners' access, other decisions, records written before ports were
    /// recorded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Set on a change made while no operator led, found by the replica that took the
    /// chain over: when it can have been made. Left out of the JSON otherwise (older records
    /// hash as they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub while_no_operator_led: Option<Unled>,
}

/// When a change found at a take-over was made: after the previous leader's last record
/// (the head it saved) and before the replica that found it took the chain over. The
/// record's own `time` is when it was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unled {
    /// The chain head the previous leader left, `SEQ:HASH`.
    pub head: String,
    /// When that head was saved (RFC 3339; empty when the head ConfigMap does not say):
    /// the change was made after.
    pub after: String,
    /// When this replica took the chain over (RFC 3339): the change was made before.
    pub before: String,
}

/// A chained record, as written on the audit stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
    /// SSH signature (armored) over `hash`, when the operator has an audit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Signs `hash` (a record's) with the audit key: an armored SSH signature.
pub fn sign_hash(hash: &str, key: &ssh_key::PrivateKey) -> Result<String, ssh_key::Error> {
    key.sign(SIGNATURE_NAMESPACE, ssh_key::HashAlg::Sha512, hash.as_bytes())?.to_pem(ssh_key::LineEnding::LF)
}

/// Whether `signature` is `key`'s over `hash`.
pub fn signature_holds(hash: &str, signature: &str, key: &ssh_key::PublicKey) -> bool {
    ssh_key::SshSig::from_pem(signature.trim())
        .and_then(|sig| key.verify(SIGNATURE_NAMESPACE, hash.as_bytes(), &sig))
        .is_ok()
}

/// The namespace of a head signature: an external signer's (`--audit-signer-command`),
/// over [`head_message`] (`ssh-keygen -Y verify -n`).
pub const HEAD_SIGNATURE_NAMESPACE: &str = "drmesh.io/audit-head";

/// What a head signer signs: `SEQ:HASH` and a newline, the bytes it gets on stdin.
pub fn head_message(head: &Head) -> String {
    format!("{head}\n")
}

/// Whether `signature` (an armored SSH signature) is `key`'s over [`head_message`].
pub fn head_signature_holds(head: &Head, signature: &str, key: &ssh_key::PublicKey) -> bool {
    ssh_key::SshSig::from_pem(signature.trim())
        .and_then(|sig| key.verify(HEAD_SIGNATURE_NAMESPACE, head_message(head).as_bytes(), &sig))
        .is_ok()
}

/// The end of a chain: the last record's sequence number and hash. Kept in the cluster
/// (the operator's head ConfigMap) so the next leader continues the same chain, and an
/// anchor `verify` checks a log against (a log that stops before it was truncated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = String;
    /// `SEQ:HASH`, as printed.
    fn from_str(s: &str) -> Result<Self, String> {
        let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH")?;
        let seq = seq.trim().parse().map_err(|e| format!("sequence number: {e}"))?;
        let hash = hash.trim();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("hash: expected 64 hexadecimal digits".into());
        }
        Ok(Head { seq, hash: hash.to_ascii_lowercase() })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Unsealed<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a Event,
    prev_hash: &'a str,
}

fn seal(seq: u64, event: &Event, prev_hash: &str) -> String {
    let body = serde_json::to_vec(&Unsealed { seq, event, prev_hash }).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(&body);
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends events to a chain; keeps the head (sequence number and last hash).
#[derive(Debug)]
pub struct Chain {
    seq: u64,
    head: String,
}

impl Default for Chain {
    fn default() -> Self {
        Self { seq: 0, head: GENESIS.to_string() }
    }
}

impl Chain {
    /// Continues after an existing record (e.g. the last line of a log being appended to).
    pub fn resume(last: &Record) -> Self {
        Self { seq: last.seq + 1, head: last.hash.clone() }
    }

    /// Continues after `head` (e.g. the head the previous leader left in the cluster).
    pub fn after(head: &Head) -> Self {
        Self { seq: head.seq + 1, head: head.hash.clone() }
    }

    /// The last record sealed, if any.
    pub fn head(&self) -> Option<Head> {
        (self.seq > 0 || self.head != GENESIS)
            .then(|| Head { seq: self.seq.saturating_sub(1), hash: self.head.clone() })
    }

    /// Seals the next record of the chain.
    pub fn append(&mut self, event: Event) -> Record {
        let hash = seal(self.seq, &event, &self.head);
        let record = Record {
            seq: self.seq,
            event,
            prev_hash: std::mem::replace(&mut self.head, hash.clone()),
            hash,
            signature: None,
        };
        self.seq += 1;
        record
    }

    /// Seals and signs the next record (unsigned without a key).
    pub fn append_signed(&mut self, event: Event, key: Option<&ssh_key::PrivateKey>) -> Result<Record, ssh_key::Error> {
        let mut record = self.append(event);
        if let Some(key) = key {
            record.signature = Some(sign_hash(&record.hash, key)?);
        }
        Ok(record)
    }
}

/// The anchors a log is checked against besides its own hashes: without them, a log cut at
/// either end, or rebuilt whole, still links.
#[derive(Clone, Debug, Default)]
pub struct Anchors {
    /// The operator's audit key: every record must carry its signature.
    pub key: Option<ssh_key::PublicKey>,
    /// The chain's end as the cluster knows it (the head the operator keeps in the cluster):
    /// the log must reach it, with the same hash.
    pub head: Option<Head>,
    /// The last record before the first file (the head archived when the older part of
    /// the log was rotated away): the chain must continue it. Without it the chain must
    /// start at record 0.
    pub from: Option<Head>,
}

/// Where a finding is: a file, as named to [`verify_logs`], and a line (from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Why a record does not belong to the chain the anchors name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// The record at the head anchor's seq has another hash.
    Head { anchor: Head, found: String },
    /// The record at the start anchor's seq has another hash.
    From { anchor: Head, found: String },
    /// A key was given and no record carries a valid signature by it.
    NoValidSignature { records: u64 },
}

/// How a log was tampered with (or damaged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// The line is not an audit record.
    Unparseable { message: String },
    /// The record's hash does not match its content.
    Altered { seq: u64 },
    /// The record's signature is not the audit key's over its hash.
    Forged { seq: u64 },
    /// The record carries no signature while a key was given.
    Unsigned { seq: u64 },
    /// Records `first..=last` are in no file (a gap in the merged chain).
    Removed { first: u64, last: u64 },
    /// In one file, record `seq` comes after record `after` (at line `after_line`).
    Reordered { seq: u64, after: u64, after_line: usize },
    /// Record `seq`'s `prevHash` is not the hash of record `seq - 1`.
    BrokenLink { seq: u64 },
    /// The chain does not start where it must: at record 0 from the genesis hash, or
    /// right after the start anchor (`anchor`), with its hash.
    TruncatedStart { first: u64, anchor: Option<Head> },
    /// The chain stops (at `last`, or has no record) before the head anchor.
    TruncatedEnd { last: Option<u64>, head: Head },
    /// The record at `seq` (none for a whole-log finding) is not the anchored one.
    Rewritten { seq: Option<u64>, why: Rewrite },
    /// Records `first..=last` exist in two valid, different versions: here and at `other`.
    Forked { first: u64, last: u64, other: Place },
}

fn records(first: u64, last: u64) -> String {
    if first == last { format!("record {first}") } else { format!("records {first}..{last}") }
}

impl Tamper {
    /// A short, stable name (lowercase) for the kind of finding.
    pub fn label(&self) -> &'static str {
        match self {
            Tamper::Unparseable { .. } => "unparseable",
            Tamper::Altered { .. } => "altered",
            Tamper::Forged { .. } => "forged",
            Tamper::Unsigned { .. } => "unsigned",
            Tamper::Removed { .. } => "removed",
            Tamper::Reordered { .. } => "reordered",
            Tamper::BrokenLink { .. } => "broken-link",
            Tamper::TruncatedStart { .. } => "truncated-start",
            Tamper::TruncatedEnd { .. } => "truncated-end",
            Tamper::Rewritten { .. } => "rewritten",
            Tamper::Forked { .. } => "forked",
        }
    }

    /// Order of report: the whole log's findings first, then records changed or missing,
    /// last what may also be an accident (a record left unsigned, a damaged line).
    fn rank(&self) -> u8 {
        match self {
            Tamper::Rewritten { .. } => 0,
            Tamper::Forked { .. } => 1,
            Tamper::TruncatedStart { .. } => 2,
            Tamper::TruncatedEnd { .. } => 3,
            Tamper::Removed { .. } => 4,
            Tamper::Altered { .. } => 5,
            Tamper::Forged { .. } => 6,
            Tamper::BrokenLink { .. } => 7,
            Tamper::Reordered { .. } => 8,
            Tamper::Unsigned { .. } => 9,
            Tamper::Unparseable { .. } => 10,
        }
    }
}

impl std::fmt::Display for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ", self.label())?;
        match self {
            Tamper::Unparseable { message } => write!(f, "the line is not an audit record ({message})"),
            Tamper::Altered { seq } => {
                write!(f, "record {seq} was altered: its hash does not match its content")
            }
            Tamper::Forged { seq } => write!(
                f,
                "record {seq}'s signature is not the audit key's: the record was not written as it is by the operator"
            ),
            Tamper::Unsigned { seq } => {
                write!(f, "record {seq} carries no signature, but every record must be signed by the audit key")
            }
            Tamper::Removed { first, last } => {
                write!(
                    f,
                    "{} record(s) removed before this one: {} (in no file)",
                    last - first + 1,
                    records(*first, *last)
                )
            }
            Tamper::Reordered { seq, after, after_line } => write!(
                f,
                "record {seq} comes after record {after} (line {after_line}) in the same file: records were moved, repeated or inserted"
            ),
            Tamper::BrokenLink { seq } => write!(
                f,
                "record {seq} does not continue record {} (its prevHash is not that record's hash): a record was replaced or inserted",
                seq.saturating_sub(1)
            ),
            Tamper::TruncatedStart { first, anchor: None } if *first > 0 => write!(
                f,
                "the chain starts at record {first}, not 0: {} missing (cut off, or in files not given: give the rotated files and every replica's log, or the anchor archived with them)",
                records(0, first - 1)
            ),
            Tamper::TruncatedStart { first, anchor: None } => {
                write!(f, "record {first}, the first, does not start from the genesis hash: the start was cut off")
            }
            Tamper::TruncatedStart { first, anchor: Some(anchor) } if *first > anchor.seq + 1 => write!(
                f,
                "the chain starts at record {first}, the start anchor is record {}: {} missing",
                anchor.seq,
                records(anchor.seq + 1, first - 1)
            ),
            Tamper::TruncatedStart { first, anchor: Some(anchor) } => {
                write!(f, "record {first}, the first, does not continue the start anchor {anchor}")
            }
            Tamper::TruncatedEnd { last: Some(last), head } => write!(
                f,
                "the chain stops at record {last}, the head anchor is record {}: {} removed from the end",
                head.seq,
                records(last + 1, head.seq)
            ),
            Tamper::TruncatedEnd { last: None, head } => {
                write!(f, "no record at all, the head anchor is record {}", head.seq)
            }
            Tamper::Rewritten { seq, why: Rewrite::Head { anchor, found } } => write!(
                f,
                "record {} has hash {found}, the head anchor says {}: the log was rebuilt",
                seq.unwrap_or(anchor.seq),
                anchor.hash
            ),
            Tamper::Rewritten { seq, why: Rewrite::From { anchor, found } } => write!(
                f,
                "record {} has hash {found}, the start anchor says {}: the log was rebuilt",
                seq.unwrap_or(anchor.seq),
                anchor.hash
            ),
            Tamper::Rewritten { why: Rewrite::NoValidSignature { records }, .. } => write!(
                f,
                "none of the {records} record(s) carries a valid signature by the audit key: the log was rebuilt (or written with another key, or none)"
            ),
            Tamper::Forked { first, last, other } => write!(
                f,
                "two different valid versions of {}, here and in {other}: two writers continued the chain from the same point",
                records(*first, *last)
            ),
        }
    }
}

/// One thing wrong with a log, and where (none for what concerns the whole chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub place: Option<Place>,
    pub tamper: Tamper,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(place) => write!(f, "{place}: {}", self.tamper),
            None => write!(f, "{}", self.tamper),
        }
    }
}

/// How an anchor fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorCheck {
    /// No anchor was given.
    NotGiven,
    /// The chain holds the anchored record.
    Held,
    /// The chain does not hold it (see the findings).
    Failed,
    /// The anchor names a record outside the logs' span: nothing to compare.
    Outside,
}

/// What [`verify_logs`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Distinct records in the merged chain (a record in several files counts once).
    pub records: u64,
    /// The chain's first record's seq.
    pub first: Option<u64>,
    /// The chain's last record (the head to archive as the next `from` anchor).
    pub head: Option<Head>,
    /// Records that carry a signature.
    pub signed: u64,
    /// Records whose signature the key verifies (0 without a key).
    pub verified: u64,
    pub start: AnchorCheck,
    pub end: AnchorCheck,
    /// Most serious first; empty when the logs are intact.
    pub findings: Vec<Finding>,
    /// Fork branches that end their file (`Tamper::Forked`, not counted as findings): a
    /// writer that stopped (killed) or lost the chain after writing records and before
    /// saving the head. The operator applies nothing whose record's head was not saved, so
    /// they describe decisions that were not applied.
    pub uncommitted: Vec<Finding>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Signature {
    /// No key, no signature.
    None,
    /// No key to check it with.
    Unchecked,
    Holds,
    Fails,
    Missing,
}

/// A distinct record and every line that holds it.
struct Entry {
    record: Record,
    places: Vec<(usize, usize)>,
    sealed: bool,
    signature: Signature,
}

impl Entry {
    fn valid(&self) -> bool {
        self.sealed && !matches!(self.signature, Signature::Fails | Signature::Missing)
    }
}

/// Checks audit logs together: `inputs` are (name, content) pairs, e.g. rotated files and
/// the outputs of the replicas that took turns leading. Records are merged by `seq` (a
/// record found in several files counts once); order is judged per file, gaps and links
/// on the merged chain, then its ends against the anchors.
pub fn verify_logs(inputs: &[(String, String)], anchors: &Anchors) -> Report {
    let place = |(file, line): (usize, usize)| Place { file: inputs[file].0.clone(), line };
    // (file, line) of each finding, to report in input order.
    let mut found: Vec<((usize, usize), Finding)> = Vec::new();
    let mut report = |at: Option<(usize, usize)>, tamper: Tamper| {
        found.push((at.unwrap_or((0, 0)), Finding { place: at.map(place), tamper }));
    };

    let mut entries: Vec<Entry> = Vec::new();
    let mut by_seq: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (file, (_, content)) in inputs.iter().enumerate() {
        let mut latest: Option<(u64, usize)> = None;
        for (index, line) in content.lines().enumerate() {
            let at = (file, index + 1);
            if line.trim().is_empty() {
                continue;
            }
            let record: Record = match serde_json::from_str(line) {
                Ok(record) => record,
                Err(e) => {
                    report(Some(at), Tamper::Unparseable { message: e.to_string() });
                    continue;
                }
            };
            match latest {
                Some((after, after_line)) if record.seq <= after => {
                    report(Some(at), Tamper::Reordered { seq: record.seq, after, after_line })
                }
                _ => latest = Some((record.seq, at.1)),
            }
            let candidates = by_seq.entry(record.seq).or_default();
            if let Some(&same) = candidates.iter().find(|&&e| entries[e].record == record) {
                entries[same].places.push(at);
                continue;
            }
            let sealed = seal(record.seq, &record.event, &record.prev_hash) == record.hash;
            let signature = match (&anchors.key, &record.signature) {
                (None, None) => Signature::None,
                (None, Some(_)) => Signature::Unchecked,
                (Some(_), None) => Signature::Missing,
                (Some(key), Some(sig)) if signature_holds(&record.hash, sig, key) => Signature::Holds,
                (Some(_), Some(_)) => Signature::Fails,
            };
            candidates.push(entries.len());
            entries.push(Entry { record, places: vec![at], sealed, signature });
        }
    }
    for entry in &entries {
        let (at, seq) = (Some(entry.places[0]), entry.record.seq);
        if !entry.sealed {
            report(at, Tamper::Altered { seq });
        }
        match entry.signature {
            Signature::Fails => report(at, Tamper::Forged { seq }),
            Signature::Missing => report(at, Tamper::Unsigned { seq }),
            _ => {}
        }
    }

    // The chain: one record per seq, chosen from the end so that it follows the links
    // (a fork's longer branch); an anchored record wins at its seq.
    let has_successor = |e: usize| {
        let record = &entries[e].record;
        by_seq
            .get(&(record.seq + 1))
            .is_some_and(|next| next.iter().any(|&n| entries[n].record.prev_hash == record.hash))
    };
    let mut chosen: std::collections::BTreeMap<u64, usize> = Default::default();
    let mut above: Option<(u64, usize)> = None;
    for (&seq, candidates) in by_seq.iter().rev() {
        let with_hash = |hash: &str| candidates.iter().copied().find(|&c| entries[c].record.hash == hash);
        let anchored = [&anchors.head, &anchors.from]
            .into_iter()
            .flatten()
            .filter(|anchor| anchor.seq == seq)
            .find_map(|anchor| with_hash(&anchor.hash));
        let linked = above.filter(|(s, _)| *s == seq + 1).and_then(|(_, a)| with_hash(&entries[a].record.prev_hash));
        let pick = anchored.or(linked).unwrap_or_else(|| {
            *candidates.iter().min_by_key(|&&c| (!entries[c].valid(), !has_successor(c), c)).expect("a candidate")
        });
        chosen.insert(seq, pick);
        above = Some((seq, pick));
    }

    // Its links and gaps.
    let mut previous: Option<(u64, usize)> = None;
    for (&seq, &c) in &chosen {
        let (record, at) = (&entries[c].record, Some(entries[c].places[0]));
        match previous {
            None => match &anchors.from {
                None if seq > 0 || record.prev_hash != GENESIS => {
                    report(at, Tamper::TruncatedStart { first: seq, anchor: None })
                }
                Some(from) if seq > from.seq + 1 || (seq == from.seq + 1 && record.prev_hash != from.hash) => {
                    report(at, Tamper::TruncatedStart { first: seq, anchor: Some(from.clone()) })
                }
                _ => {}
            },
            Some((p, pc)) if p + 1 == seq => {
                if record.prev_hash != entries[pc].record.hash {
                    report(at, Tamper::BrokenLink { seq })
                }
            }
            Some((p, _)) => report(at, Tamper::Removed { first: p + 1, last: seq - 1 }),
        }
        previous = Some((seq, c));
    }
    let first = chosen.keys().next().copied();
    let last = chosen.iter().next_back().map(|(&seq, &c)| Head { seq, hash: entries[c].record.hash.clone() });

    // Forks: another valid version of a chain record, in another file. A branch is
    // reported once, over the seqs it spans.
    let mut branches: std::collections::HashMap<String, usize> = Default::default();
    // (file, line) of a branch's first record, the finding, (file, line) of its last one.
    type Branch = ((usize, usize), Tamper, (usize, usize));
    let mut forks: Vec<Branch> = Vec::new();
    for (&seq, &c) in &chosen {
        let main = &entries[c];
        for &e in &by_seq[&seq] {
            let other = &entries[e];
            let shares_a_file = other.places.iter().any(|(f, _)| main.places.iter().any(|(g, _)| f == g));
            if e == c || !other.valid() || !main.valid() || shares_a_file {
                continue;
            }
            match branches.get(&other.record.prev_hash).copied() {
                Some(i) => {
                    if let Tamper::Forked { last, .. } = &mut forks[i].1 {
                        *last = seq;
                    }
                    forks[i].2 = other.places[0];
                    branches.insert(other.record.hash.clone(), i);
                }
                None => {
                    branches.insert(other.record.hash.clone(), forks.len());
                    forks.push((
                        other.places[0],
                        Tamper::Forked { first: seq, last: seq, other: place(main.places[0]) },
                        other.places[0],
                    ));
                }
            }
        }
    }
    // A branch its writer stopped after (the end of its file, or the chain again, written
    // by a later leadership of the same file) is uncommitted, not a second live writer.
    let mut lines_of: std::collections::HashMap<usize, std::collections::BTreeMap<usize, usize>> = Default::default();
    for (index, entry) in entries.iter().enumerate() {
        for &(file, line) in &entry.places {
            lines_of.entry(file).or_default().insert(line, index);
        }
    }
    let on_chain: std::collections::HashSet<usize> = chosen.values().copied().collect();
    let stopped_after = |(file, line): (usize, usize)| {
        let next = lines_of.get(&file).and_then(|l| l.range(line + 1..).next().map(|(_, &e)| e));
        next.is_none_or(|e| on_chain.contains(&e))
    };
    let mut uncommitted = Vec::new();
    for (at, tamper, last) in forks {
        if stopped_after(last) {
            uncommitted.push(Finding { place: Some(place(at)), tamper });
        } else {
            report(Some(at), tamper);
        }
    }

    // The ends, against the anchors.
    let anchor_at = |anchor: &Head| chosen.get(&anchor.seq).map(|&c| (c, entries[c].record.hash == anchor.hash));
    let start = match (&anchors.from, first, &last) {
        (None, ..) => AnchorCheck::NotGiven,
        (Some(_), None, _) => AnchorCheck::Outside,
        (Some(from), Some(first), Some(last)) if from.seq >= first => match anchor_at(from) {
            _ if from.seq > last.seq => AnchorCheck::Outside,
            Some((_, true)) => AnchorCheck::Held,
            Some((c, false)) => {
                let found = entries[c].record.hash.clone();
                report(
                    Some(entries[c].places[0]),
                    Tamper::Rewritten { seq: Some(from.seq), why: Rewrite::From { anchor: from.clone(), found } },
                );
                AnchorCheck::Failed
            }
            None => AnchorCheck::Failed,
        },
        (Some(from), Some(first), _)
            if first == from.seq + 1 && entries[chosen[&first]].record.prev_hash == from.hash =>
        {
            AnchorCheck::Held
        }
        (Some(_), ..) => AnchorCheck::Failed,
    };
    let end = match (&anchors.head, first, &last) {
        (None, ..) => AnchorCheck::NotGiven,
        (Some(head), _, None) => {
            report(None, Tamper::TruncatedEnd { last: None, head: head.clone() });
            AnchorCheck::Failed
        }
        (Some(head), _, Some(last)) if head.seq > last.seq => {
            let at = Some(entries[chosen[&last.seq]].places[0]);
            report(at, Tamper::TruncatedEnd { last: Some(last.seq), head: head.clone() });
            AnchorCheck::Failed
        }
        (Some(head), Some(first), _) if head.seq < first => AnchorCheck::Outside,
        (Some(head), ..) => match anchor_at(head) {
            Some((_, true)) => AnchorCheck::Held,
            Some((c, false)) => {
                let found = entries[c].record.hash.clone();
                report(
                    Some(entries[c].places[0]),
                    Tamper::Rewritten { seq: Some(head.seq), why: Rewrite::Head { anchor: head.clone(), found } },
                );
                AnchorCheck::Failed
            }
            None => AnchorCheck::Failed,
        },
    };

    let in_chain = || chosen.values().map(|&c| &entries[c]);
    let signed = in_chain().filter(|e| e.record.signature.is_some()).count() as u64;
    let verified = in_chain().filter(|e| e.signature == Signature::Holds).count() as u64;
    if anchors.key.is_some() && !chosen.is_empty() && verified == 0 {
        report(None, Tamper::Rewritten { seq: None, why: Rewrite::NoValidSignature { records: chosen.len() as u64 } });
    }

    found.sort_by_key(|(at, finding)| (finding.tamper.rank(), finding.place.is_some(), *at));
    Report {
        records: chosen.len() as u64,
        first,
        head: last,
        signed,
        verified,
        start,
        end,
        findings: found.into_iter().map(|(_, finding)| finding).collect(),
        uncommitted,
    }
}

/// Why a chain does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("line {line}: not an audit record: {message}")]
    Unparseable { line: usize, message: String },
    #[error("line {line}: record {seq} was altered (its hash does not match its content)")]
    Altered { line: usize, seq: u64 },
    #[error("line {line}: record {seq} does not follow the previous record (a record was removed or reordered)")]
    Broken { line: usize, seq: u64 },
}

/// Checks one chain, line by line, and stops at the first fault; returns the number of
/// records. It may start at any `seq` and has no anchor: [`verify_logs`] checks several
/// files against the key and the anchors and names every fault.
pub fn verify(input: impl BufRead) -> Result<u64, VerifyError> {
    let mut expected_prev = GENESIS.to_string();
    let mut expected_seq = 0u64;
    let mut count = 0;
    for (index, line) in input.lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|e| VerifyError::Unparseable { line: line_no, message: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| VerifyError::Unparseable { line: line_no, message: e.to_string() })?;
        if seal(record.seq, &record.event, &record.prev_hash) != record.hash {
            return Err(VerifyError::Altered { line: line_no, seq: record.seq });
        }
        // A chain may start at a later sequence number when an older log was rotated away.
        let first = count == 0 && record.seq > 0;
        if !first && (record.prev_hash != expected_prev || record.seq != expected_seq) {
            return Err(VerifyError::Broken { line: line_no, seq: record.seq });
        }
        expected_prev = record.hash;
        expected_seq = record.seq + 1;
        count += 1;
    }
    Ok(count)
}

/// Writes sealed records as JSON lines.
pub struct Writer<W: Write> {
    chain: Chain,
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self { chain: Chain::default(), out }
    }

    pub fn resume(out: W, chain: Chain) -> Self {
        Self { chain, out }
    }

    pub fn write(&mut self, event: Event) -> std::io::Result<Record> {
        let record = self.chain.append(event);
        let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Event {
        Event {
            time: format!("2026-11-28T12:00:{n:02}Z"),
            actor: "system:serviceaccount:drmesh-system:drmesh".into(),
            decision: if n.is_multiple_of(2) { Decision::Granted } else { Decision::Denied },
            reason: if n.is_multiple_of(2) { "Granted".into() } else { "ClearanceTooLow".into() },
            message: format!("decision {n}"),
            product: ObjectRef { namespace: "police".into(), name: "incident-feed".into() },
            classification: "Restricted".into(),
            subjects: vec!["Group:cnc-officers".into()],
            purpose: Some("Olympic hypervision".into()),
            expires_at: Some("2027-01-01T00:00:00Z".into()),
            policy: Some(PolicyRef { namespace: "police".into(), name: "cnc".into(), uid: "u1".into(), generation: 1 }),
            ports: vec![],
            while_no_operator_led: None,
        }
    }

    /// A deterministic ed25519 key (the operator's audit key is `key(1)`).
    fn key(n: u8) -> ssh_key::PrivateKey {
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[n; 32]))
    }

    fn line(record: &Record) -> String {
        serde_json::to_string(record).expect("record")
    }

    /// Records `0..n` of events `base..base + n` (signed by `key`), as lines.
    fn chain_of(n: u32, base: u32, key: Option<&ssh_key::PrivateKey>) -> Vec<String> {
        let mut chain = Chain::default();
        (0..n).map(|i| line(&chain.append_signed(event(base + i), key).expect("sign"))).collect()
    }

    fn log(n: u32) -> Vec<String> {
        let mut buf = Vec::new();
        let mut writer = Writer::new(&mut buf);
        for i in 0..n {
            writer.write(event(i)).expect("write");
        }
        String::from_utf8(buf).expect("utf8").lines().map(String::from).collect()
    }

    fn signed(n: u32) -> Vec<String> {
        chain_of(n, 0, Some(&key(1)))
    }

    fn head_of(line: &str) -> Head {
        let record: Record = serde_json::from_str(line).expect("record");
        Head { seq: record.seq, hash: record.hash }
    }

    fn with_key() -> Anchors {
        Anchors { key: Some(key(1).public_key().clone()), ..Anchors::default() }
    }

    fn check(files: &[(&str, &[String])], anchors: &Anchors) -> Report {
        let inputs: Vec<(String, String)> =
            files.iter().map(|(name, lines)| (name.to_string(), lines.join("\n"))).collect();
        verify_logs(&inputs, anchors)
    }

    /// Each finding as `file:line label` (or just the label for the whole chain).
    fn found(report: &Report) -> Vec<String> {
        report
            .findings
            .iter()
            .map(|f| match &f.place {
                Some(p) => format!("{p} {}", f.tamper.label()),
                None => f.tamper.label().to_string(),
            })
            .collect()
    }

    #[test]
    fn a_record_without_ports_is_sealed_as_before_ports_were_recorded() {
        // Records written before `ports` existed hash over JSON without the key: an empty
        // list must leave it out, or every older record would stop verifying.
        let mut chain = Chain::default();
        let plain = chain.append(event(0));
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json.get("ports").is_none(), "{json}");
        let mut granted = event(0);
        granted.ports = vec!["8080/http".into()];
        let with_ports = Chain::default().append(granted);
        assert_eq!(serde_json::to_value(&with_ports).expect("json")["ports"], serde_json::json!(["8080/http"]));
        assert_ne!(with_ports.hash, plain.hash, "the ports are sealed");
        let line = serde_json::to_string(&with_ports).expect("json") + "\n";
        assert_eq!(verify(line.as_bytes()), Ok(1));
        let edited = line.replace("8080/http", "9090/metrics");
        assert!(verify(edited.as_bytes()).is_err(), "an edited port is detected");
    }

    #[test]
    fn an_intact_chain_verifies() {
        let report = check(&[("a.log", &log(5))], &Anchors::default());
        assert_eq!(found(&report), Vec::<String>::new());
        assert_eq!((report.records, report.first, report.head.map(|h| h.seq)), (5, Some(0), Some(4)));
        assert_eq!(
            (report.signed, report.verified, report.start, report.end),
            (0, 0, AnchorCheck::NotGiven, AnchorCheck::NotGiven)
        );
    }

    #[test]
    fn an_intact_two_replica_chain_verifies_against_the_key_and_the_head() {
        let lines = signed(10);
        let anchors = Anchors { head: Some(head_of(&lines[9])), ..with_key() };
        // Replica A led for records 0..4, replica B took over for 5..9; in either order.
        for files in
            [[("a.log", &lines[..5]), ("b.log", &lines[5..])], [("b.log", &lines[5..]), ("a.log", &lines[..5])]]
        {
            let report = check(&files, &anchors);
            assert_eq!(found(&report), Vec::<String>::new());
            assert_eq!((report.records, report.signed, report.verified), (10, 10, 10));
            assert_eq!(report.head, Some(head_of(&lines[9])));
            assert_eq!(report.end, AnchorCheck::Held);
        }
    }

    #[test]
    fn copies_count_once_and_one_file_may_hold_several_leaderships() {
        let lines = signed(15);
        // A led for 0..6 and again for 10..14; B for 5..9; a rotated copy of A's start.
        let a: Vec<String> = lines[..7].iter().chain(&lines[10..]).cloned().collect();
        let report = check(
            &[("a.log", &a), ("b.log", &lines[5..10]), ("a.log.1", &lines[..3])],
            &Anchors { head: Some(head_of(&lines[14])), ..with_key() },
        );
        assert_eq!(found(&report), Vec::<String>::new());
        assert_eq!((report.records, report.verified), (15, 15));
    }

    #[test]
    fn garbage_is_reported_with_its_line() {
        let mut lines = log(2);
        lines.push("{not json".into());
        let report = check(&[("a.log", &lines)], &Anchors::default());
        assert_eq!(found(&report), ["a.log:3 unparseable"]);
        assert!(report.findings[0].to_string().contains("not an audit record"), "{}", report.findings[0]);
    }

    #[test]
    fn an_altered_record_is_detected() {
        let mut lines = log(4);
        lines[1] = lines[1].replace("ClearanceTooLow", "Granted");
        let report = check(&[("a.log", &lines)], &Anchors::default());
        assert_eq!(found(&report), ["a.log:2 altered"]);
        assert_eq!(report.findings[0].tamper, Tamper::Altered { seq: 1 });
    }

    #[test]
    fn a_forged_signature_is_detected() {
        let mut lines = signed(4);
        // Record 2 re-signed by another key (whoever rebuilt it does not hold the audit key).
        let mut record: Record = serde_json::from_str(&lines[2]).expect("record");
        record.signature = Some(sign_hash(&record.hash, &key(2)).expect("sign"));
        lines[2] = line(&record);
        let report = check(&[("a.log", &lines)], &with_key());
        assert_eq!(found(&report), ["a.log:3 forged"]);
        assert_eq!(report.findings[0].tamper, Tamper::Forged { seq: 2 });
        assert_eq!(report.verified, 3);
        // Without the key, the same log passes: signatures are not checked.
        assert!(check(&[("a.log", &lines)], &Anchors::default()).intact());
    }

    #[test]
    fn an_unsigned_record_is_detected_when_a_key_is_given() {
        let mut lines = signed(4);
        let mut record: Record = serde_json::from_str(&lines[1]).expect("record");
        record.signature = None;
        lines[1] = line(&record);
        let report = check(&[("a.log", &lines)], &with_key());
        assert_eq!(found(&report), ["a.log:2 unsigned"]);
        assert_eq!(report.findings[0].tamper, Tamper::Unsigned { seq: 1 });
    }

    #[test]
    fn a_removed_record_is_detected() {
        let mut lines = log(6);
        lines.drain(2..4);
        let report = check(&[("a.log", &lines)], &Anchors::default());
        assert_eq!(found(&report), ["a.log:3 removed"]);
        assert_eq!(report.findings[0].tamper, Tamper::Removed { first: 2, last: 3 });
        // Across files: B took over at 5 and its first record is gone.
        let lines = log(10);
        let report = check(&[("a.log", &lines[..5]), ("b.log", &lines[6..])], &Anchors::default());
        assert_eq!(found(&report), ["b.log:1 removed"]);
    }

    #[test]
    fn swapped_records_are_detected() {
        let mut lines = log(4);
        lines.swap(1, 2);
        let report = check(&[("a.log", &lines)], &Anchors::default());
        assert_eq!(found(&report), ["a.log:3 reordered"]);
        assert_eq!(report.findings[0].tamper, Tamper::Reordered { seq: 1, after: 2, after_line: 2 });
    }

    #[test]
    fn a_replaced_record_breaks_the_link() {
        let lines = signed(5);
        // Record 2 replaced by a well-formed one continuing record 1: its own hash holds,
        // record 3 no longer follows it.
        let mut chain = Chain::after(&head_of(&lines[1]));
        let mut tampered = lines.clone();
        tampered[2] = line(&chain.append(event(42)));
        let report = check(&[("a.log", &tampered)], &Anchors::default());
        assert_eq!(found(&report), ["a.log:4 broken-link"]);
        assert_eq!(report.findings[0].tamper, Tamper::BrokenLink { seq: 3 });
        // With the key, the replacement is also unsigned.
        assert_eq!(found(&check(&[("a.log", &tampered)], &with_key())), ["a.log:4 broken-link", "a.log:3 unsigned"]);
    }

    #[test]
    fn a_cut_start_is_detected_unless_the_start_anchor_links_to_it() {
        let lines = log(6);
        let report = check(&[("a.log", &lines[3..])], &Anchors::default());
        assert_eq!(found(&report), ["a.log:1 truncated-start"]);
        assert_eq!(report.findings[0].tamper, Tamper::TruncatedStart { first: 3, anchor: None });
        // Rotated away with its anchor archived: the rest continues it.
        let from = Anchors { from: Some(head_of(&lines[2])), ..Anchors::default() };
        let report = check(&[("a.log", &lines[3..])], &from);
        assert_eq!((found(&report), report.start), (vec![], AnchorCheck::Held));
        // Record 3 cut too.
        let report = check(&[("a.log", &lines[4..])], &from);
        assert_eq!(found(&report), ["a.log:1 truncated-start"]);
        assert!(report.findings[0].to_string().contains("record 3 missing"), "{}", report.findings[0]);
        // An anchor of another chain.
        let other = Anchors { from: Some(head_of(&chain_of(3, 50, None)[2])), ..Anchors::default() };
        let report = check(&[("a.log", &lines[3..])], &other);
        assert_eq!((found(&report), report.start), (vec!["a.log:1 truncated-start".to_string()], AnchorCheck::Failed));
        // Files that still hold the anchored record: it must be the same.
        assert_eq!(check(&[("a.log", &lines)], &from).start, AnchorCheck::Held);
        let report = check(&[("a.log", &lines)], &other);
        assert_eq!((found(&report), report.start), (vec!["a.log:3 rewritten".to_string()], AnchorCheck::Failed));
    }

    #[test]
    fn a_cut_end_is_detected_only_with_the_head_anchor() {
        let lines = log(10);
        let anchors = Anchors { head: Some(head_of(&lines[9])), ..Anchors::default() };
        let report = check(&[("a.log", &lines[..8])], &anchors);
        assert_eq!(found(&report), ["a.log:8 truncated-end"]);
        assert_eq!(report.findings[0].tamper, Tamper::TruncatedEnd { last: Some(7), head: head_of(&lines[9]) });
        assert_eq!(report.end, AnchorCheck::Failed);
        // The limit without an anchor: a cut end looks like a shorter log.
        assert!(check(&[("a.log", &lines[..8])], &Anchors::default()).intact());
    }

    #[test]
    fn a_rewritten_log_is_caught_by_the_head_anchor_and_by_the_key() {
        let genuine = signed(10);
        // Rebuilt whole, consistently, with other content, by someone without the audit key.
        let rebuilt = chain_of(10, 100, Some(&key(2)));
        assert!(check(&[("a.log", &rebuilt)], &Anchors::default()).intact(), "its own hashes hold");
        let anchors = Anchors { head: Some(head_of(&genuine[9])), ..Anchors::default() };
        let report = check(&[("a.log", &rebuilt)], &anchors);
        assert_eq!(found(&report), ["a.log:10 rewritten"]);
        assert!(matches!(report.findings[0].tamper, Tamper::Rewritten { seq: Some(9), why: Rewrite::Head { .. } }));
        let report = check(&[("a.log", &rebuilt)], &with_key());
        assert_eq!(found(&report)[0], "rewritten");
        assert_eq!(
            report.findings[0].tamper,
            Tamper::Rewritten { seq: None, why: Rewrite::NoValidSignature { records: 10 } }
        );
        assert_eq!(found(&report).iter().filter(|f| f.ends_with(" forged")).count(), 10);
        assert_eq!(report.verified, 0);
    }

    #[test]
    fn a_writer_that_stopped_before_saving_the_head_left_uncommitted_records_not_a_fork() {
        let lines = signed(10);
        // Replica C wrote 5..7 after record 4, then was killed before saving the head; the
        // next leader went on from 4.
        let mut chain = Chain::after(&head_of(&lines[4]));
        let c: Vec<String> =
            (0..3).map(|i| line(&chain.append_signed(event(60 + i), Some(&key(1))).expect("sign"))).collect();
        let report = check(&[("a.log", &lines[..5]), ("b.log", &lines[5..]), ("c.log", &c)], &with_key());
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.uncommitted.len(), 1);
        let Tamper::Forked { first, last, other } = &report.uncommitted[0].tamper else { panic!("{report:?}") };
        assert_eq!((*first, *last, other.to_string()), (5, 7, "b.log:1".to_string()));
        // Its file goes on later with the chain (the same file, a later leadership).
        let mut later = c.clone();
        later.extend(lines[8..].iter().cloned());
        let report = check(&[("a.log", &lines[..5]), ("b.log", &lines[5..]), ("c.log", &later)], &with_key());
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.uncommitted.len(), 1);
    }

    #[test]
    fn two_writers_fork_the_chain_and_both_files_are_named() {
        let lines = signed(10);
        // Replica C also believed it led after record 4 and wrote 5..7 of its own, then
        // went on writing off the chain (another version of 9).
        let mut chain = Chain::after(&head_of(&lines[4]));
        let mut c: Vec<String> =
            (0..3).map(|i| line(&chain.append_signed(event(60 + i), Some(&key(1))).expect("sign"))).collect();
        let mut other = Chain::after(&head_of(&lines[8]));
        c.push(line(&other.append_signed(event(90), Some(&key(1))).expect("sign")));
        let report = check(&[("a.log", &lines[..5]), ("b.log", &lines[5..]), ("c.log", &c)], &with_key());
        assert_eq!(found(&report), ["c.log:1 forked"]);
        let Tamper::Forked { first, last, other } = &report.findings[0].tamper else { panic!("{report:?}") };
        assert_eq!((*first, *last, other.to_string()), (5, 7, "b.log:1".to_string()));
        assert!(
            report.findings[0].to_string().starts_with("c.log:1: forked: two different valid versions of records 5..7"),
            "{}",
            report.findings[0]
        );
        assert_eq!(report.head, Some(head_of(&lines[9])), "the longer branch is the chain");
    }

    #[test]
    fn a_resumed_chain_continues_the_hashes() {
        let lines = log(3);
        let last: Record = serde_json::from_str(&lines[2]).expect("record");
        let mut buf = Vec::new();
        Writer::resume(&mut buf, Chain::resume(&last)).write(event(9)).expect("write");
        let mut all = lines.clone();
        all.push(String::from_utf8(buf).expect("utf8").trim().to_string());
        let report = check(&[("a.log", &all)], &Anchors::default());
        assert_eq!((found(&report), report.records), (vec![], 4));
    }

    #[test]
    fn the_single_file_verifier_still_stops_at_the_first_fault() {
        let mut lines = log(5);
        assert_eq!(verify(lines.join("\n").as_bytes()), Ok(5));
        lines.remove(2);
        assert_eq!(verify(lines.join("\n").as_bytes()), Err(VerifyError::Broken { line: 3, seq: 3 }));
        lines[0] = lines[0].replace("decision 0", "decision 9");
        assert_eq!(verify(lines.join("\n").as_bytes()), Err(VerifyError::Altered { line: 1, seq: 0 }));
    }

    #[test]
    fn heads_print_and_parse() {
        let head = head_of(&log(3)[2]);
        assert_eq!(head.to_string().parse::<Head>(), Ok(head.clone()));
        assert!("3".parse::<Head>().is_err());
        assert!("x:abc".parse::<Head>().is_err());
    }
}
