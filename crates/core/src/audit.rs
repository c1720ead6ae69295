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

/// Checks a whole chain, line by line; returns the number of records.
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
        }
    }

    fn log(n: u32) -> Vec<String> {
        let mut buf = Vec::new();
        let mut writer = Writer::new(&mut buf);
        for i in 0..n {
            writer.write(event(i)).expect("write");
        }
        String::from_utf8(buf).expect("utf8").lines().map(String::from).collect()
    }

    fn verify_lines(lines: &[String]) -> Result<u64, VerifyError> {
        verify(lines.join("\n").as_bytes())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_lines(&log(5)), Ok(5));
    }

    #[test]
    fn a_removed_record_is_detected() {
        let mut lines = log(5);
        lines.remove(2);
        assert_eq!(verify_lines(&lines), Err(VerifyError::Broken { line: 3, seq: 3 }));
    }

    #[test]
    fn an_altered_record_is_detected() {
        let mut lines = log(4);
        lines[1] = lines[1].replace("ClearanceTooLow", "Granted");
        assert_eq!(verify_lines(&lines), Err(VerifyError::Altered { line: 2, seq: 1 }));
    }

    #[test]
    fn swapped_records_are_detected() {
        let mut lines = log(4);
        lines.swap(1, 2);
        assert!(matches!(verify_lines(&lines), Err(VerifyError::Broken { .. })));
    }

    #[test]
    fn a_rotated_chain_verifies_from_its_first_record() {
        let lines = log(6);
        assert_eq!(verify_lines(&lines[3..]), Ok(3));
    }

    #[test]
    fn a_resumed_chain_continues_the_hashes() {
        let lines = log(3);
        let last: Record = serde_json::from_str(&lines[2]).expect("record");
        let mut buf = Vec::new();
        Writer::resume(&mut buf, Chain::resume(&last)).write(event(9)).expect("write");
        let mut all = lines.clone();
        all.push(String::from_utf8(buf).expect("utf8").trim().to_string());
        assert_eq!(verify_lines(&all), Ok(4));
    }

    #[test]
    fn garbage_is_reported_with_its_line() {
        let mut lines = log(2);
        lines.push("{not json".into());
        assert!(matches!(verify_lines(&lines), Err(VerifyError::Unparseable { line: 3, .. })));
    }
}
