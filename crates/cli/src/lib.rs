//! The `drmesh` command line's offline subcommands. They decide with the core, as the
//! operator does, and never depend on the operator: the binary (src/main.rs) adds `run`.

use std::io::Write;

use clap::{Parser, Subcommand};

/// The API types and the pure core, under the names the commands use.
pub use drmesh_api as api;
pub use drmesh_core as mesh;
pub use drmesh_core::audit;

pub mod access_review;
pub mod admission;
pub mod approve;
pub mod audit_log;
pub mod diff;
pub mod graph;
pub mod kubeconfig;
pub mod live;
pub mod manifest;
pub mod offline;
pub mod reads;
pub mod render;
pub mod report;
pub mod snapshot;
pub mod svg;
pub mod validate;

/// drmesh's offline commands (the binary adds `run`).
#[derive(Debug, Parser)]
#[command(name = "drmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub kubeconfig: kubeconfig::KubeconfigArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (multi-document YAML) generated from the API
    /// types; `make crds` writes them to crds/ and the Helm chart.
    Crds,
    /// Check manifests offline: CRD schema and CEL rules, then every rule of the
    /// controllers on all the manifests together. Exit 0 valid, 1 problems, 2 unreadable.
    Validate(offline::ValidateArgs),
    /// Print the children the operator would apply for the manifests, in apply order.
    Render(offline::RenderArgs),
    /// Show what a change does, widened access first (`--against` the manifests before).
    Diff(offline::DiffArgs),
    /// Draw the mesh: domains, sources, products, lineage and grants.
    Graph(offline::GraphArgs),
    /// List who can access what, through which policy, for what purpose, until when.
    AccessReview(offline::AccessReviewArgs),
    /// Sign AccessPolicies as an approver (SSH key): prints the `spec.approvals` entries to
    /// add; `--digest` prints what approvers sign.
    Approve(approve::ApproveArgs),
    /// Work with the audit stream.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Parses the command line. Invoked as `kubectl-drmesh` (a kubectl plugin: `kubectl
/// drmesh ...`), it behaves the same and names itself `kubectl drmesh` in help.
pub fn parse_args<P, I, T>(args: I) -> Result<P, clap::Error>
where
    P: Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let program =
        args.first().map(std::path::Path::new).and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or("");
    let mut command = P::command();
    if program.starts_with("kubectl-drmesh") {
        command = command.bin_name("kubectl drmesh");
    }
    let matches = command.try_get_matches_from(args)?;
    P::from_arg_matches(&matches)
}

/// `drmesh audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check audit logs (rotated files, every replica's output) as one hash chain: names
    /// each record altered, forged, unsigned, removed, reordered or inserted, a cut start or
    /// end, a rewritten log and a fork. Exit 0 intact, 3 tampered, 2 unreadable.
    Verify(audit_log::VerifyArgs),
    /// Print the head (SEQ:HASH) of the logs' chain, e.g. to archive with rotated logs as
    /// the next `--from` anchor. Exit 3 when the chain does not verify.
    Head(audit_log::HeadArgs),
    /// Account for every read of a product through the API server's service proxy (from
    /// the API server's audit log): the grant in force that covered it, or why none did.
    /// Uncovered reads first. Exit 0 all covered, 4 some uncovered, 3 the chain does not
    /// verify, 2 unreadable.
    Reads(audit_log::ReadsArgs),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit log does not verify: {findings} finding(s)")]
    AuditBroken { findings: usize },
    #[error("{errors} error(s){}", if *warnings > 0 { format!(" and {warnings} warning(s) (--strict)") } else { String::new() })]
    Problems { errors: usize, warnings: usize },
    #[error("{errors} error(s) in the manifests: the API server would refuse them (see drmesh validate)")]
    Invalid { errors: usize },
    #[error("{count} update(s) the API server would refuse")]
    Refused { count: usize },
    #[error("{count} read(s) no grant covered, or covered only by a grant changed while no operator led")]
    UncoveredReads { count: usize },
    #[error("the change widens access ({count} change(s)): review it")]
    Widened { count: usize },
    #[error("{0}")]
    Usage(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("cannot read the cluster: {0}")]
    Cluster(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Output(_) => 1,
            CliError::Read { .. } => 2,
            CliError::AuditBroken { .. } => 3,
            CliError::Problems { .. } | CliError::Invalid { .. } | CliError::Refused { .. } => 1,
            CliError::Widened { .. } => 3,
            CliError::UncoveredReads { .. } => 4,
            CliError::Internal(_) | CliError::Usage(_) => 2,
            CliError::Cluster(_) => 2,
        }
    }
}

/// Runs an offline command, writing its result to stdout.
pub fn run(command: &Command) -> Result<(), CliError> {
    // Lock stdout per write, never across the operator: its audit stream writes there.
    let out = || std::io::stdout().lock();
    match command {
        Command::Crds => write_all(&mut out(), crate::api::crds_yaml().as_bytes()),
        Command::Validate(args) => offline::run_validate(args),
        Command::Render(args) => offline::run_render(args),
        Command::Diff(args) => offline::run_diff(args),
        Command::Graph(args) => offline::run_graph(args),
        Command::AccessReview(args) => offline::run_access_review(args),
        Command::Approve(args) => approve::run(args),
        Command::Audit(AuditCommand::Verify(args)) => audit_log::run_verify(args),
        Command::Audit(AuditCommand::Head(args)) => audit_log::run_head(args),
        Command::Audit(AuditCommand::Reads(args)) => audit_log::run_reads(args),
    }
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
    fn parses_offline_commands_and_answers_as_a_kubectl_plugin() {
        let cli = parse_args::<Cli, _, _>([
            "drmesh",
            "validate",
            "-f",
            "a.yaml",
            "b/",
            "--output",
            "junit",
            "--now",
            "2026-01-01T00:00:00Z",
        ])
        .expect("validate parses");
        match cli.command {
            Command::Validate(args) => {
                assert_eq!(args.inputs.paths.len(), 2);
                assert_eq!(args.output, offline::ValidateOutput::Junit);
                assert_eq!(args.inputs.now.map(|t| t.to_string()).as_deref(), Some("2026-01-01T00:00:00Z"));
            }
            other => panic!("expected validate, got {other:?}"),
        }
        let plugin = parse_args::<Cli, _, _>(["/usr/local/bin/kubectl-drmesh", "graph", "-f", "-", "--format", "svg"])
            .expect("plugin parses");
        assert!(matches!(plugin.command, Command::Graph(_)));
        let help =
            parse_args::<Cli, _, _>(["kubectl-drmesh", "--help"]).expect_err("help is an early exit").to_string();
        assert!(help.contains("kubectl drmesh"), "{help}");
        let usage = parse_args::<Cli, _, _>(["drmesh", "validate"]).expect_err("-f is required");
        assert_eq!(usage.exit_code(), 2);
        assert!(parse_args::<Cli, _, _>(["drmesh", "validate", "-f", "x", "--now", "yesterday"]).is_err());
        assert!(parse_args::<Cli, _, _>(["drmesh", "diff", "-f", "x"]).is_err(), "--against is required");
    }

    #[test]
    fn access_review_at_a_past_instant_needs_the_audit_logs() {
        let cli = parse_args::<Cli, _, _>(["drmesh", "access-review", "--at", "2026-11-28T13:00:00Z"])
            .expect("--at alone parses: the command says what is missing");
        let Command::AccessReview(args) = &cli.command else { panic!("expected access-review") };
        let error = run(&cli.command).expect_err("--at without --audit-log");
        assert_eq!(error.exit_code(), 2);
        assert!(error.to_string().starts_with("--at reviews a past instant from drmesh's audit logs"), "{error}");
        assert!(args.inputs.paths.is_empty());
        let chain = parse_args::<Cli, _, _>(["drmesh", "access-review", "--audit-log", "a.log", "b.log"])
            .expect("--audit-log without -f");
        assert!(matches!(chain.command, Command::AccessReview(a) if a.audit_logs.len() == 2));
        assert!(parse_args::<Cli, _, _>(["drmesh", "access-review"]).is_err(), "-f, --cluster or --audit-log");
        assert!(parse_args::<Cli, _, _>(["drmesh", "access-review", "-f", "x", "--audit-log", "a"]).is_err());
        let reads =
            parse_args::<Cli, _, _>(["drmesh", "audit", "reads", "--apiserver-log", "api.log", "a.log", "-n", "x"])
                .expect("audit reads parses");
        assert!(matches!(reads.command, Command::Audit(AuditCommand::Reads(r)) if r.namespaces == ["x"]));
        assert!(parse_args::<Cli, _, _>(["drmesh", "audit", "reads", "a.log"]).is_err(), "--apiserver-log is required");
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
