//! The `drmesh` command line. Offline subcommands live here; `main.rs` only parses and
//! dispatches.

use std::io::Write;

use clap::{Parser, Subcommand};

pub mod operator;

/// drmesh: a data mesh with restricted-distribution controls, as Kubernetes objects.
#[derive(Debug, Parser)]
#[command(name = "drmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (multi-document YAML) generated from the API
    /// types; `make crds` writes them to crds/ and the Helm chart.
    Crds,
    /// Run the operator against the current kubeconfig (or in-cluster configuration).
    Run(operator::RunArgs),
    /// Work with the audit stream.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `drmesh audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check that an audit log's hash chain is intact: no record removed, reordered or altered.
    Verify {
        /// The audit log (JSON lines); `-` reads stdin.
        file: std::path::PathBuf,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Run(#[from] operator::RunError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log does not verify: {0}")]
    AuditBroken(#[source] crate::audit::VerifyError),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Output(_) => 1,
            CliError::Run(_) => 1,
            CliError::Read { .. } => 2,
            CliError::AuditBroken(_) => 3,
        }
    }
}

/// Runs an offline command, writing its result to stdout.
pub fn run(command: &Command) -> Result<(), CliError> {
    // Lock stdout per write, never across the operator: its audit stream writes there.
    let out = || std::io::stdout().lock();
    match command {
        Command::Crds => write_all(&mut out(), crate::api::crds_yaml().as_bytes()),
        Command::Run(args) => Ok(operator::run(args)?),
        Command::Audit(AuditCommand::Verify { file }) => {
            let count = verify_audit(file)?;
            write_all(&mut out(), format!("audit log intact: {count} records\n").as_bytes())
        }
    }
}

fn verify_audit(file: &std::path::Path) -> Result<u64, CliError> {
    let read_err = |source| CliError::Read { path: file.to_path_buf(), source };
    let result = if file.as_os_str() == "-" {
        crate::audit::verify(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(read_err)?;
        crate::audit::verify(std::io::BufReader::new(f))
    };
    result.map_err(CliError::AuditBroken)
}

/// Writes everything; a closed pipe (`drmesh crds | head`) is not an error.
fn write_all(out: &mut impl Write, bytes: &[u8]) -> Result<(), CliError> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(CliError::Output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_crds() {
        let cli = Cli::try_parse_from(["drmesh", "crds"]).expect("crds parses");
        assert!(matches!(cli.command, Command::Crds));
        assert!(Cli::try_parse_from(["drmesh", "nope"]).is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
