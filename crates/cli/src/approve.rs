//! `drmesh approve`: an approver signs the canonical digest of each AccessPolicy in the
//! manifests with their SSH key, and gets the `spec.approvals` entries to add; or prints
//! the digests, for signing with `ssh-keygen -Y sign -n drmesh.io/approval`.

use std::path::PathBuf;

use clap::Args;
use kube::ResourceExt;

use super::CliError;
use super::snapshot::{self, Inputs};
use crate::mesh::people;

/// `drmesh approve`
#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// The approver's OpenSSH private key (unencrypted; for keys in an agent or encrypted,
    /// sign `--digest`'s output with `ssh-keygen -Y sign -n drmesh.io/approval`).
    #[arg(long, value_name = "FILE", required_unless_present = "digest")]
    pub key: Option<PathBuf>,
    /// The approver's name, as the MeshPolicy lists it.
    #[arg(long, value_name = "NAME", required_unless_present = "digest")]
    pub approver: Option<String>,
    /// Only print each AccessPolicy's digest (what approvers sign).
    #[arg(long)]
    pub digest: bool,
}

/// The YAML to add under each policy's `spec.approvals`, or its digest.
pub fn run(args: &ApproveArgs) -> Result<(), CliError> {
    let admission = super::admission::Admission::new().map_err(|e| CliError::Internal(e.to_string()))?;
    let mesh = snapshot::load(&args.inputs, &admission)?;
    let mut text = String::new();
    let key = match (&args.key, args.digest) {
        (Some(path), false) => {
            let pem = std::fs::read_to_string(path).map_err(|source| CliError::Read { path: path.clone(), source })?;
            let key = ssh_key::PrivateKey::from_openssh(pem.trim()).map_err(|e| {
                CliError::Internal(format!("{}: not an unencrypted OpenSSH private key: {e}", path.display()))
            })?;
            Some(key)
        }
        _ => None,
    };
    if mesh.snapshot.policies.is_empty() {
        return Err(CliError::Internal("no AccessPolicy in the manifests".into()));
    }
    for policy in mesh.snapshot.policies.values() {
        let id = format!("{}/{}", policy.namespace().unwrap_or_default(), policy.name_any());
        let digest = people::digest(policy);
        let Some(key) = &key else {
            text.push_str(&format!("{digest}  AccessPolicy {id}\n"));
            continue;
        };
        let signature = people::sign(policy, key).map_err(|e| CliError::Internal(format!("{id}: cannot sign: {e}")))?;
        let approver = args.approver.as_deref().unwrap_or_default();
        text.push_str(&format!("# AccessPolicy {id}: add under spec.approvals ({digest})\n"));
        text.push_str(&approval_yaml(approver, &signature));
    }
    super::write_all(&mut std::io::stdout().lock(), text.as_bytes())
}

/// One `spec.approvals` entry, as YAML.
pub fn approval_yaml(approver: &str, signature: &str) -> String {
    let mut text =
        format!("- approver: {}\n  signature: |\n", drmesh_yaml::to_string(&approver).unwrap_or_default().trim());
    for line in signature.trim().lines() {
        text.push_str(&format!("    {line}\n"));
    }
    text
}
