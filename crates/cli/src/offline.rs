//! The offline subcommands: read manifests into a snapshot, ask the pure core, print.
//!
//! Exit codes (see docs/cli.md): 0 success; 1 problems found in the manifests
//! (`validate`), or manifests the API server would refuse (the other commands);
//! 2 unreadable input or bad usage; 3 `diff --fail-on-widening` found widened access.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::admission::Admission;
use super::report::{self, Case};
use super::snapshot::{self, Inputs, Mesh};
use super::{CliError, access_review, diff, graph, render, svg, validate, write_all};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateOutput {
    Text,
    Json,
    Junit,
}

/// `drmesh validate`
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Report format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: ValidateOutput,
    /// Fail on warnings too (things the manifests alone cannot settle).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RenderOutput {
    Yaml,
    Json,
}

/// `drmesh render`
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// Multi-document YAML, or a JSON `v1` List.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: RenderOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DiffOutput {
    Text,
    Json,
}

/// `drmesh diff`
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    /// The manifests before the change (files, directories or `-`), e.g. the main branch's;
    /// or `--cluster` to compare against the live mesh.
    #[arg(long, value_name = "PATH", required_unless_present = "cluster", num_args = 1..)]
    pub against: Vec<PathBuf>,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: DiffOutput,
    /// Exit with code 3 when the change widens access (to require a security review).
    #[arg(long)]
    pub fail_on_widening: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Svg,
}

/// `drmesh graph`
#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[arg(long, value_enum, default_value = "mermaid")]
    pub format: GraphFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReviewOutput {
    Table,
    Csv,
    Json,
}

/// `drmesh access-review`
#[derive(Debug, Args)]
#[command(mut_arg("paths", |a| a.required_unless_present_any(["cluster", "audit_logs", "at"])))]
pub struct AccessReviewArgs {
    #[command(flatten)]
    pub inputs: Inputs,
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ReviewOutput,
    /// Only the access in force (leave out refused grants).
    #[arg(long)]
    pub granted_only: bool,
    /// A past instant (RFC 3339) to review from drmesh's audit logs (`--audit-log`): the
    /// grants in force then, as the hash chain recorded them.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<jiff::Timestamp>,
    /// drmesh's audit logs (JSON lines, any order, as for `audit verify`): review the grants
    /// they record in force at `--at` (default: now) instead of manifests. The chain must
    /// verify (exit 3 otherwise).
    #[arg(long = "audit-log", value_name = "FILE", num_args = 1.., conflicts_with_all = ["paths", "cluster"])]
    pub audit_logs: Vec<PathBuf>,
    /// With --audit-log: the operator's audit public key, as `audit verify --key`: every
    /// record must carry a valid signature by it (exit 3 otherwise).
    #[arg(long, value_name = "PATH", requires = "audit_logs")]
    pub audit_key: Option<PathBuf>,
    /// With --audit-log: the chain's head as the cluster knows it, SEQ:HASH, as `audit
    /// verify --head`: the logs must reach it (exit 3 otherwise).
    #[arg(long, value_name = "SEQ:HASH", requires = "audit_logs")]
    pub audit_head: Option<crate::audit::Head>,
}

fn admission() -> Result<Admission, CliError> {
    Admission::new().map_err(|e| CliError::Internal(e.to_string()))
}

fn out(bytes: &[u8]) -> Result<(), CliError> {
    write_all(&mut std::io::stdout().lock(), bytes)
}

/// Prints load problems on stderr; fails when the API server would refuse something.
fn admitted(mesh: &Mesh) -> Result<(), CliError> {
    let mut diagnostics = mesh.diagnostics.clone();
    report::sort(&mut diagnostics);
    let mut err = std::io::stderr().lock();
    for d in &diagnostics {
        let _ = writeln!(err, "{}", d.line());
    }
    let (errors, _) = report::counts(&diagnostics);
    if errors > 0 {
        return Err(CliError::Invalid { errors });
    }
    Ok(())
}

pub fn run_validate(args: &ValidateArgs) -> Result<(), CliError> {
    let admission = admission()?;
    let mesh = snapshot::load(&args.inputs, &admission)?;
    let mut diagnostics = mesh.diagnostics.clone();
    diagnostics.extend(validate::semantic(&mesh, args.inputs.instant()));
    report::sort(&mut diagnostics);
    let (errors, warnings) = report::counts(&diagnostics);
    let failing = errors + if args.strict { warnings } else { 0 };
    let checked = mesh.objects.len();
    let text = match args.output {
        ValidateOutput::Text => report::text(&diagnostics, checked),
        ValidateOutput::Json => report::json(&diagnostics, checked, failing == 0),
        ValidateOutput::Junit => {
            let cases: Vec<Case> = mesh
                .objects
                .iter()
                .map(|(id, origin)| Case { file: origin.file.clone(), name: id.to_string() })
                .collect();
            report::junit(&cases, &diagnostics, args.strict)
        }
    };
    out(text.as_bytes())?;
    if failing > 0 {
        return Err(CliError::Problems { errors, warnings: if args.strict { warnings } else { 0 } });
    }
    Ok(())
}

pub fn run_render(args: &RenderArgs) -> Result<(), CliError> {
    let admission = admission()?;
    let mesh = snapshot::load(&args.inputs, &admission)?;
    admitted(&mesh)?;
    let children = render::children(&mesh.snapshot, args.inputs.instant());
    let text = match args.output {
        RenderOutput::Yaml => render::yaml(&children),
        RenderOutput::Json => render::json_list(&children),
    };
    out(text.as_bytes())
}

pub fn run_diff(args: &DiffArgs) -> Result<(), CliError> {
    let admission = admission()?;
    // `--cluster` names the side before the change: the live mesh.
    let new = snapshot::load(&Inputs { cluster: false, ..args.inputs.clone() }, &admission)?;
    let old_inputs = Inputs { paths: args.against.clone(), ..args.inputs.clone() };
    let old = snapshot::load(&old_inputs, &admission)?;
    admitted(&old)?;
    admitted(&new)?;
    let d = diff::diff(&old, &new, &admission, args.inputs.instant());
    let text = match args.output {
        DiffOutput::Text => diff::text(&d),
        DiffOutput::Json => diff::json(&d),
    };
    out(text.as_bytes())?;
    if !d.rejected.is_empty() {
        return Err(CliError::Refused { count: d.rejected.len() });
    }
    if args.fail_on_widening && !d.widened.is_empty() {
        return Err(CliError::Widened { count: d.widened.len() });
    }
    Ok(())
}

pub fn run_graph(args: &GraphArgs) -> Result<(), CliError> {
    let admission = admission()?;
    let mesh = snapshot::load(&args.inputs, &admission)?;
    admitted(&mesh)?;
    let g = graph::build(&mesh.snapshot, args.inputs.instant());
    let text = match args.format {
        GraphFormat::Mermaid => graph::mermaid(&g),
        GraphFormat::Dot => graph::dot(&g),
        GraphFormat::Svg => svg::render(&g),
    };
    out(text.as_bytes())
}

pub fn run_access_review(args: &AccessReviewArgs) -> Result<(), CliError> {
    if args.at.is_some() && args.audit_logs.is_empty() {
        return Err(CliError::Usage(
            "--at reviews a past instant from drmesh's audit logs: give them with --audit-log FILE... \
             (to decide on manifests at another instant, use --now)"
                .into(),
        ));
    }
    if !args.audit_logs.is_empty() {
        let anchors = crate::audit::Anchors {
            key: args.audit_key.as_deref().map(super::audit_log::read_key).transpose()?,
            head: args.audit_head.clone(),
            from: None,
        };
        let (records, _) = super::audit_log::verified_records(&args.audit_logs, &anchors)?;
        let at = args.at.unwrap_or_else(jiff::Timestamp::now);
        let mut rows = access_review::from_chain(&crate::reads::replay(&records), at);
        if args.granted_only {
            rows.retain(access_review::Access::granted);
        }
        return out(render_review(args.output, &rows).as_bytes());
    }
    let admission = admission()?;
    let mesh = snapshot::load(&args.inputs, &admission)?;
    admitted(&mesh)?;
    let mut rows = access_review::review(&mesh.snapshot, args.inputs.instant());
    if args.granted_only {
        rows.retain(access_review::Access::granted);
    }
    out(render_review(args.output, &rows).as_bytes())
}

fn render_review(output: ReviewOutput, rows: &[access_review::Access]) -> String {
    match output {
        ReviewOutput::Table => access_review::table(rows),
        ReviewOutput::Csv => access_review::csv(rows),
        ReviewOutput::Json => access_review::json(rows),
    }
}
