//! `drmesh audit verify`, `drmesh audit head` and `drmesh audit reads`: the audit logs,
//! checked together, and the reads they account for.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::CliError;
use crate::audit::{AnchorCheck, Anchors, Head, Report, Tamper, verify_logs};

/// `drmesh audit verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The audit logs (JSON lines), in any order: rotated files and the output of every
    /// replica that led; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The operator's audit public key (OpenSSH format, the `.pub` of its audit key):
    /// every record must carry a valid signature by it.
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The end of the chain as the cluster knows it, SEQ:HASH: the logs must reach it.
    ///
    /// The operator keeps it in a ConfigMap (in its namespace, named by its --audit-head);
    /// read it with:
    ///
    /// kubectl -n drmesh-system get configmap drmesh-audit-head -o jsonpath='{.data.head}'
    ///
    /// Without it, records cut from the end of the logs are not detected.
    #[arg(long, value_name = "SEQ:HASH")]
    pub head: Option<Head>,
    /// The last record before the first file, SEQ:HASH: for logs whose older part was
    /// rotated away (print it with `drmesh audit head` on the archived files). Without it
    /// the chain must start at record 0.
    #[arg(long, value_name = "SEQ:HASH")]
    pub from: Option<Head>,
    /// A head signed by the operator's external signer (`--audit-signer-command`), SEQ:HASH:
    /// the chain must hold it, and `--head-signature` must be `--head-key`'s signature of
    /// it. Read both from the head ConfigMap:
    ///
    /// kubectl -n drmesh-system get configmap drmesh-audit-head -o jsonpath='{.data.signedHead}'
    ///
    /// kubectl -n drmesh-system get configmap drmesh-audit-head -o jsonpath='{.data.headSignature}' > head.sig
    #[arg(long, value_name = "SEQ:HASH", requires_all = ["head_signature", "head_key"])]
    pub signed_head: Option<Head>,
    /// The signature of `--signed-head` (armored SSH signature, namespace drmesh.io/audit-head).
    #[arg(long, value_name = "PATH", requires = "signed_head")]
    pub head_signature: Option<PathBuf>,
    /// The external signer's public key (OpenSSH format).
    #[arg(long, value_name = "PATH", requires = "signed_head")]
    pub head_key: Option<PathBuf>,
}

/// `drmesh audit head`.
#[derive(Debug, clap::Args)]
pub struct HeadArgs {
    /// The audit logs (JSON lines), in any order; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// `drmesh audit reads`.
#[derive(Debug, clap::Args)]
pub struct ReadsArgs {
    /// drmesh's audit logs (JSON lines), in any order, as for `audit verify`; `-` reads stdin.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The API server's audit log (audit.k8s.io/v1 Events, JSON lines), e.g. its current
    /// file and the rotated ones (repeatable): the reads through the service proxy.
    #[arg(long = "apiserver-log", value_name = "FILE", required = true)]
    pub apiserver_logs: Vec<PathBuf>,
    /// The operator's audit public key, as for `audit verify`: every record must carry a
    /// valid signature by it, or no read is judged (exit 3).
    #[arg(long, value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// The end of the chain as the cluster knows it, SEQ:HASH, as for `audit verify`: the
    /// logs must reach it, or no read is judged (exit 3).
    #[arg(long, value_name = "SEQ:HASH")]
    pub head: Option<Head>,
    /// Only the reads of products in this namespace (repeatable).
    #[arg(short = 'n', long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Machine output: the counts and every read with its outcome, as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The chain's records, once it verifies (a start rotated away is accepted: the grants
/// recorded before it are unknown, so the reads they covered show as uncovered).
/// Returns the records and a line saying what was verified. With `anchors`, the
/// signatures (`key`) and the end (`head`) are checked as `audit verify` checks them.
pub fn verified_records(files: &[PathBuf], anchors: &Anchors) -> Result<(Vec<crate::audit::Record>, String), CliError> {
    let logs = read_logs(files)?;
    let report = verify_logs(&logs, anchors);
    let (cut, findings): (Vec<_>, Vec<_>) =
        report.findings.iter().partition(|f| matches!(f.tamper, Tamper::TruncatedStart { .. }));
    if !findings.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ =
            writeln!(err, "the drmesh audit log does not verify: it cannot vouch for reads (see drmesh audit verify)");
        for finding in &findings {
            let _ = writeln!(err, "{finding}");
        }
        return Err(CliError::AuditBroken { findings: findings.len() });
    }
    // Uncommitted branches (a writer killed before saving the head) decided nothing.
    let uncommitted: Vec<(&str, u64, u64)> = report
        .uncommitted
        .iter()
        .filter_map(|note| match (&note.place, &note.tamper) {
            (Some(place), Tamper::Forked { first, last, .. }) => Some((place.file.as_str(), *first, *last)),
            _ => None,
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let records: Vec<crate::audit::Record> = logs
        .iter()
        .flat_map(|(name, text)| {
            let uncommitted = &uncommitted;
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| serde_json::from_str::<crate::audit::Record>(l).ok())
                .filter(move |r| !uncommitted.iter().any(|(f, a, b)| f == name && (*a..=*b).contains(&r.seq)))
        })
        .filter(|r| seen.insert(r.hash.clone()))
        .collect();
    let span = match (report.first, &report.head) {
        (Some(first), Some(last)) => format!("seq {first}..{}", last.seq),
        _ => "no record".to_string(),
    };
    let mut line = format!("drmesh audit chain verified: {} records ({span})", report.records);
    match &anchors.key {
        Some(key) => line.push_str(&format!(", every record signed by {}", key.fingerprint(ssh_key::HashAlg::Sha256))),
        None => line.push_str(", signatures not checked"),
    }
    match &anchors.head {
        Some(head) => line.push_str(&format!(", holds the head {head}")),
        None => line.push_str(", end not checked (no --head)"),
    }
    if !cut.is_empty() {
        line.push_str("; its start is not in the files: grants recorded before it are unknown");
    }
    Ok((records, line + "\n"))
}

/// Accounts for the reads; returns the text (or JSON) and the number of uncovered reads.
pub fn reads(args: &ReadsArgs) -> Result<(String, usize), CliError> {
    let key = args.key.as_deref().map(read_key).transpose()?;
    let anchors = Anchors { key, head: args.head.clone(), from: None };
    let (records, chain) = verified_records(&args.files, &anchors)?;
    let windows = crate::reads::replay(&records);
    let products = crate::reads::products(&records);
    let mut reads = Vec::new();
    for (_, text) in read_logs(&args.apiserver_logs)? {
        reads.extend(crate::reads::reads_in(&text, &products));
    }
    reads.sort_by(|a, b| (a.time, &a.audit_id).cmp(&(b.time, &b.audit_id)));
    reads.dedup_by(|a, b| !a.audit_id.is_empty() && a.audit_id == b.audit_id);
    if !args.namespaces.is_empty() {
        reads.retain(|r| args.namespaces.contains(&r.product.namespace));
    }
    let accounted = crate::reads::account(&windows, &reads);
    // A read no operator saw covered is not shown covered either.
    let counts = crate::reads::counts(&accounted);
    let uncovered = counts.uncovered + counts.unconfirmed;
    let text = if args.json {
        crate::reads::json(&accounted, serde_json::json!({ "verified": chain.trim_end() }))
    } else {
        chain + &crate::reads::describe(&accounted)
    };
    Ok((text, uncovered))
}

pub fn run_reads(args: &ReadsArgs) -> Result<(), CliError> {
    let (text, uncovered) = reads(args)?;
    super::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    if uncovered > 0 {
        return Err(CliError::UncoveredReads { count: uncovered });
    }
    Ok(())
}

fn read_logs(files: &[PathBuf]) -> Result<Vec<(String, String)>, CliError> {
    files
        .iter()
        .map(|file| {
            let read_err = |source| CliError::Read { path: file.clone(), source };
            let content = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin().lock()).map_err(read_err)?
            } else {
                std::fs::read_to_string(file).map_err(read_err)?
            };
            Ok((file.display().to_string(), content))
        })
        .collect()
}

pub(crate) fn read_key(path: &Path) -> Result<ssh_key::PublicKey, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source })?;
    ssh_key::PublicKey::from_openssh(text.trim())
        .map_err(|e| CliError::Internal(format!("{}: not an OpenSSH public key: {e}", path.display())))
}

/// The report as printed: the verdict, each finding on its own line (most serious
/// first), then what was checked and what was not.
pub fn describe(report: &Report, anchors: &Anchors, files: usize) -> String {
    let mut text = String::new();
    if report.intact() {
        text.push_str(&format!("audit log intact: {} records\n", report.records));
    } else {
        text.push_str(&format!("audit log TAMPERED: {} finding(s), most serious first\n", report.findings.len()));
        for finding in &report.findings {
            text.push_str(&format!("{finding}\n"));
        }
    }
    if !report.uncommitted.is_empty() {
        text.push_str(&format!(
            "{} uncommitted branch(es): records a writer wrote and could not commit (killed, or it lost the chain, before saving the head); their decisions were not applied:\n",
            report.uncommitted.len()
        ));
        for note in &report.uncommitted {
            text.push_str(&format!("  {note}\n"));
        }
    }
    let span = match (report.first, &report.head) {
        (Some(first), Some(last)) => format!("seq {first}..{}", last.seq),
        _ => "no record".to_string(),
    };
    text.push_str(&format!("records: {} ({span}) in {files} file(s); {} signed", report.records, report.signed));
    if anchors.key.is_some() {
        text.push_str(&format!(", {} with a valid signature by the key", report.verified));
    }
    text.push('\n');
    match &anchors.key {
        Some(key) => text.push_str(&format!(
            "signatures: checked against {} (every record must be signed)\n",
            key.fingerprint(ssh_key::HashAlg::Sha256)
        )),
        None => text.push_str("signatures not checked (no --key)\n"),
    }
    let from = anchors.from.as_ref().map(Head::to_string).unwrap_or_default();
    text.push_str(&match report.start {
        AnchorCheck::NotGiven => "start: the chain must start at record 0, from the genesis hash (no --from)\n".into(),
        AnchorCheck::Held => format!("start: the chain continues the --from anchor {from}\n"),
        AnchorCheck::Failed => format!("start: the chain does NOT continue the --from anchor {from}\n"),
        AnchorCheck::Outside => {
            format!("start: the --from anchor {from} is after the logs' last record: not checked\n")
        }
    });
    let head = anchors.head.as_ref().map(Head::to_string).unwrap_or_default();
    text.push_str(&match report.end {
        AnchorCheck::NotGiven => {
            "end of the chain not checked against an anchor (no --head): a truncated end is not detected\n".into()
        }
        AnchorCheck::Held => format!("end: the chain holds the --head anchor {head}\n"),
        AnchorCheck::Failed => format!("end: the chain does NOT hold the --head anchor {head}\n"),
        AnchorCheck::Outside => {
            format!("end: the --head anchor {head} is before the logs' first record: not checked\n")
        }
    });
    if let Some(last) = &report.head {
        text.push_str(&format!("last record: {last}\n"));
    }
    text
}

/// Checks the logs; returns the text to print and the number of findings.
pub fn verify(args: &VerifyArgs) -> Result<(String, usize), CliError> {
    let key = args.key.as_deref().map(read_key).transpose()?;
    let anchors = Anchors { key, head: args.head.clone(), from: args.from.clone() };
    let logs = read_logs(&args.files)?;
    let report = verify_logs(&logs, &anchors);
    let mut text = describe(&report, &anchors, logs.len());
    let mut findings = report.findings.len();
    if let (Some(head), Some(signature), Some(key)) = (&args.signed_head, &args.head_signature, &args.head_key) {
        let (line, holds) = signed_head(&logs, &anchors, head, signature, key)?;
        text.push_str(&line);
        if !holds {
            findings += 1;
            if report.intact() {
                text = text.replacen(
                    &format!("audit log intact: {} records\n", report.records),
                    "audit log TAMPERED: the signed head does not hold\n",
                    1,
                );
            }
        }
    }
    Ok((text, findings))
}

/// Checks a head signed by the external signer: its signature by `key`, and that the
/// chain holds it (the record at its seq has its hash). The line to print and whether it
/// holds (a head before the logs' first record is not checked against them).
fn signed_head(
    logs: &[(String, String)],
    anchors: &Anchors,
    head: &Head,
    signature: &Path,
    key: &Path,
) -> Result<(String, bool), CliError> {
    let key = read_key(key)?;
    let signature = std::fs::read_to_string(signature)
        .map_err(|source| CliError::Read { path: signature.to_path_buf(), source })?;
    let by = key.fingerprint(ssh_key::HashAlg::Sha256);
    if !crate::audit::head_signature_holds(head, &signature, &key) {
        return Ok((format!("signed head: the signature is NOT {by}'s over {head}\n"), false));
    }
    let at_head = Anchors { key: None, head: Some(head.clone()), from: anchors.from.clone() };
    Ok(match verify_logs(logs, &at_head).end {
        AnchorCheck::Held => (format!("signed head: {head}, signed by {by}, held by the chain\n"), true),
        AnchorCheck::Outside => {
            (format!("signed head: {head}, signed by {by}, is before the logs' first record: not checked\n"), true)
        }
        _ => (format!("signed head: {head}, signed by {by}, is NOT held by the chain\n"), false),
    })
}

pub fn run_verify(args: &VerifyArgs) -> Result<(), CliError> {
    let (text, findings) = verify(args)?;
    super::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    if findings > 0 {
        return Err(CliError::AuditBroken { findings });
    }
    Ok(())
}

/// The head (`SEQ:HASH`) of the logs' merged chain, once the chain verifies (its start
/// may be missing: the older part rotated away).
pub fn head(args: &HeadArgs) -> Result<Head, (Vec<String>, CliError)> {
    let logs = read_logs(&args.files).map_err(|e| (vec![], e))?;
    let report = verify_logs(&logs, &Anchors::default());
    let findings: Vec<String> = report
        .findings
        .iter()
        .filter(|f| !matches!(f.tamper, Tamper::TruncatedStart { .. }))
        .map(ToString::to_string)
        .collect();
    if !findings.is_empty() {
        let count = findings.len();
        return Err((findings, CliError::AuditBroken { findings: count }));
    }
    report.head.ok_or_else(|| (vec![], CliError::Internal("no audit record in the files".into())))
}

pub fn run_head(args: &HeadArgs) -> Result<(), CliError> {
    match head(args) {
        Ok(head) => super::write_all(&mut std::io::stdout().lock(), format!("{head}\n").as_bytes()),
        Err((findings, error)) => {
            for finding in findings {
                eprintln!("{finding}");
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Chain, Decision, Event, ObjectRef, Record};

    fn event(n: u32) -> Event {
        Event {
            time: format!("2026-11-28T12:00:{n:02}Z"),
            actor: "drmesh".into(),
            decision: Decision::Granted,
            reason: "Granted".into(),
            message: format!("decision {n}"),
            product: ObjectRef { namespace: "police".into(), name: "incident-feed".into() },
            classification: "Restricted".into(),
            subjects: vec!["Group:cnc-officers".into()],
            purpose: None,
            expires_at: None,
            policy: None,
            ports: vec![],
            while_no_operator_led: None,
        }
    }

    fn key() -> ssh_key::PrivateKey {
        ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]))
    }

    /// Ten signed records: replica A wrote 0..4, replica B 5..9.
    fn replicas(dir: &Path) -> (PathBuf, PathBuf, PathBuf, Head) {
        let mut chain = Chain::default();
        let records: Vec<Record> =
            (0..10).map(|i| chain.append_signed(event(i), Some(&key())).expect("sign")).collect();
        let lines =
            |rs: &[Record]| rs.iter().map(|r| serde_json::to_string(r).expect("json") + "\n").collect::<String>();
        let (a, b, pubkey) = (dir.join("a.log"), dir.join("b.log"), dir.join("audit.pub"));
        std::fs::write(&a, lines(&records[..5])).expect("write");
        std::fs::write(&b, lines(&records[5..])).expect("write");
        std::fs::write(&pubkey, key().public_key().to_openssh().expect("openssh")).expect("write");
        (a, b, pubkey, chain.head().expect("a head"))
    }

    #[test]
    fn an_intact_two_replica_log_verifies_and_says_what_was_not_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, pubkey, head) = replicas(dir.path());
        let args = VerifyArgs { files: vec![b.clone(), a.clone()], key: None, head: None, from: None, ..unsigned() };
        let (text, findings) = verify(&args).expect("verify");
        assert_eq!(findings, 0, "{text}");
        assert!(text.starts_with("audit log intact: 10 records\n"), "{text}");
        assert!(text.contains("records: 10 (seq 0..9) in 2 file(s); 10 signed\n"), "{text}");
        assert!(text.contains("signatures not checked (no --key)"), "{text}");
        assert!(
            text.contains(
                "end of the chain not checked against an anchor (no --head): a truncated end is not detected"
            )
        );
        let args =
            VerifyArgs { files: vec![a, b], key: Some(pubkey), head: Some(head.clone()), from: None, ..unsigned() };
        let (text, findings) = verify(&args).expect("verify");
        assert_eq!(findings, 0, "{text}");
        assert!(text.contains("10 signed, 10 with a valid signature by the key"), "{text}");
        assert!(text.contains("signatures: checked against SHA256:"), "{text}");
        assert!(text.contains(&format!("end: the chain holds the --head anchor {head}")), "{text}");
    }

    /// No signed head.
    fn unsigned() -> VerifyArgs {
        VerifyArgs {
            files: vec![],
            key: None,
            head: None,
            from: None,
            signed_head: None,
            head_signature: None,
            head_key: None,
        }
    }

    #[test]
    fn a_head_signed_by_the_external_signer_must_be_its_and_held_by_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, _, _) = replicas(dir.path());
        let signer = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[3; 32]));
        let signer_pub = dir.path().join("signer.pub");
        std::fs::write(&signer_pub, signer.public_key().to_openssh().expect("openssh")).expect("write");
        // Record 6 of the chain, signed as the operator's --audit-signer-command would.
        let records: Vec<Record> = std::fs::read_to_string(&b)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect();
        let six = Head { seq: 6, hash: records[1].hash.clone() };
        let sign = |head: &Head| {
            let message = crate::audit::head_message(head);
            let sig = signer.sign(crate::audit::HEAD_SIGNATURE_NAMESPACE, ssh_key::HashAlg::Sha512, message.as_bytes());
            sig.expect("sign").to_pem(ssh_key::LineEnding::LF).expect("pem")
        };
        let signature = dir.path().join("head.sig");
        std::fs::write(&signature, sign(&six)).expect("write");
        let args = |head: &Head, key: &Path| VerifyArgs {
            files: vec![a.clone(), b.clone()],
            signed_head: Some(head.clone()),
            head_signature: Some(signature.clone()),
            head_key: Some(key.to_path_buf()),
            ..unsigned()
        };
        let (text, findings) = verify(&args(&six, &signer_pub)).expect("verify");
        assert_eq!(findings, 0, "{text}");
        assert!(text.contains(&format!("signed head: {six}, signed by SHA256:")), "{text}");
        assert!(text.contains(", held by the chain"), "{text}");
        // Another head than the one signed: the signature does not hold.
        let five = Head { seq: 5, hash: records[0].hash.clone() };
        let (text, findings) = verify(&args(&five, &signer_pub)).expect("verify");
        assert_eq!(findings, 1, "{text}");
        assert!(text.starts_with("audit log TAMPERED: the signed head does not hold\n"), "{text}");
        assert!(text.contains("signed head: the signature is NOT SHA256:"), "{text}");
        // Another key than the signer's.
        let other = dir.path().join("other.pub");
        std::fs::write(&other, key().public_key().to_openssh().expect("openssh")).expect("write");
        assert_eq!(verify(&args(&six, &other)).expect("verify").1, 1);
        // The logs rewritten from record 6 on: the signed head is not in them.
        let text = std::fs::read_to_string(&b).expect("read");
        let rewritten: String = text.lines().take(1).map(|l| format!("{l}\n")).collect();
        let mut chain = Chain::resume(&records[0]);
        let forged: String =
            (6..10).map(|n| serde_json::to_string(&chain.append(event(n + 20))).expect("json") + "\n").collect();
        std::fs::write(&b, rewritten + &forged).expect("write");
        let (text, findings) = verify(&args(&six, &signer_pub)).expect("verify");
        assert!(findings >= 1, "{text}");
        assert!(text.contains(&format!("signed head: {six}, signed by SHA256:")), "{text}");
        assert!(text.contains("is NOT held by the chain"), "{text}");
    }

    fn reads_args(dir: &Path, files: Vec<PathBuf>, key: Option<PathBuf>, head: Option<Head>) -> ReadsArgs {
        // Owners' records name no port; event(n) is an owners-like record of Group:cnc-officers.
        let api = dir.join("apiserver.log");
        let line = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "r1",
            "stage": "ResponseComplete", "verb": "get",
            "user": {"username": "alice", "groups": ["cnc-officers"]},
            "objectRef": {"resource": "services", "namespace": "police", "name": "incident-feed:8080", "subresource": "proxy"},
            "responseStatus": {"code": 200},
            "requestReceivedTimestamp": "2026-11-28T12:30:00Z",
        });
        std::fs::write(&api, format!("{line}\n")).expect("write");
        ReadsArgs { files, apiserver_logs: vec![api], key, head, namespaces: vec![], json: false }
    }

    #[test]
    fn reads_are_judged_only_against_a_chain_that_verifies_with_the_key_and_head_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, pubkey, head) = replicas(dir.path());
        let files = vec![a.clone(), b.clone()];
        let (text, uncovered) =
            reads(&reads_args(dir.path(), files.clone(), Some(pubkey.clone()), Some(head.clone()))).expect("verified");
        assert!(
            text.starts_with("drmesh audit chain verified: 10 records (seq 0..9), every record signed by SHA256:"),
            "{text}"
        );
        assert!(text.contains(&format!(", holds the head {head}")), "{text}");
        assert_eq!(uncovered, 1, "event(n) records name no policy: nothing covers alice\n{text}");
        // Signed by another key: refused.
        let other = dir.path().join("other.pub");
        let stranger = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
        std::fs::write(&other, stranger.public_key().to_openssh().expect("openssh")).expect("write");
        let error = reads(&reads_args(dir.path(), files.clone(), Some(other), None)).expect_err("not the key");
        assert_eq!(error.exit_code(), 3);
        // The last record cut: the --head anchor is not reached.
        let text = std::fs::read_to_string(&b).expect("read");
        std::fs::write(&b, text.lines().take(4).map(|l| format!("{l}\n")).collect::<String>()).expect("write");
        let error =
            reads(&reads_args(dir.path(), files.clone(), Some(pubkey.clone()), Some(head))).expect_err("cut end");
        assert!(matches!(error, CliError::AuditBroken { findings: 1 }), "{error}");
        // Without --head the cut goes unseen, and the line says the end was not checked.
        let (text, _) = reads(&reads_args(dir.path(), files, Some(pubkey), None)).expect("verified");
        assert!(text.contains("end not checked (no --head)"), "{text}");
    }

    #[test]
    fn tampering_is_listed_most_serious_first_and_the_head_is_printed_only_for_a_sound_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, pubkey, anchor) = replicas(dir.path());
        // B's last record removed (a cut end), and A's record 2 edited.
        let text = std::fs::read_to_string(&b).expect("read");
        std::fs::write(&b, text.lines().take(4).map(|l| format!("{l}\n")).collect::<String>()).expect("write");
        let text = std::fs::read_to_string(&a).expect("read");
        std::fs::write(&a, text.replace("decision 2", "decision 20")).expect("write");
        let args = VerifyArgs {
            files: vec![a.clone(), b.clone()],
            key: Some(pubkey),
            head: Some(anchor),
            from: None,
            ..unsigned()
        };
        let (text, findings) = verify(&args).expect("verify");
        assert_eq!(findings, 2, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "audit log TAMPERED: 2 finding(s), most serious first");
        assert!(
            lines[1].starts_with(&format!("{}:4: truncated-end: the chain stops at record 8", b.display())),
            "{text}"
        );
        assert!(lines[2].starts_with(&format!("{}:3: altered: record 2", a.display())), "{text}");
        assert!(text.contains("end: the chain does NOT hold the --head anchor"), "{text}");

        let (findings, error) = head(&HeadArgs { files: vec![a.clone(), b.clone()] }).expect_err("altered");
        assert_eq!((findings.len(), error.exit_code()), (1, 3));
        // B alone: its start is elsewhere, its head is worth archiving.
        let last = head(&HeadArgs { files: vec![b] }).expect("a head");
        assert_eq!(last.seq, 8);
    }
}
