//! The `drmesh` binary: the offline commands of drmesh-cli, and `run`, the operator of
//! drmesh-operator. It only parses and dispatches.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use drmesh_cli::kubeconfig::{self, KubeconfigArgs};
use drmesh_cli::{Command as Offline, parse_args};
use drmesh_operator::run::RunArgs;

/// Less fragmentation, so a smaller resident set, than the system allocators (see Cargo.toml).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// drmesh: a data mesh with restricted-distribution controls, as Kubernetes objects.
#[derive(Debug, Parser)]
#[command(name = "drmesh", version, about)]
struct Drmesh {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    kubeconfig: KubeconfigArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator against the current kubeconfig (or in-cluster configuration).
    Run(RunArgs),
    #[command(flatten)]
    Offline(Offline),
    /// Print a shell completion script (e.g. `source <(drmesh completion bash)`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let drmesh: Drmesh = match parse_args(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    kubeconfig::choose(&drmesh.kubeconfig);
    let (message, code) = match &drmesh.command {
        Command::Run(args) => match drmesh_operator::run::run(args, Box::pin(kubeconfig::config())) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => (e.to_string(), 1),
        },
        Command::Offline(command) => match drmesh_cli::run(command) {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => (e.to_string(), e.exit_code()),
        },
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Drmesh::command(), "drmesh", &mut script);
            use std::io::Write;
            match std::io::stdout().lock().write_all(&script) {
                Ok(()) => return ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return ExitCode::SUCCESS,
                Err(e) => (format!("cannot write the output: {e}"), 1),
            }
        }
    };
    eprintln!("drmesh: {message}");
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_and_the_offline_commands_parse_side_by_side() {
        Drmesh::command().debug_assert();
        let run: Drmesh = parse_args(["drmesh", "run", "--api-server-cidrs", "none"]).expect("run parses");
        assert!(matches!(run.command, Command::Run(ref a) if a.api_server_cidrs == "none"));
        let crds: Drmesh = parse_args(["kubectl-drmesh", "crds", "--context", "alice"]).expect("crds parses");
        assert!(matches!(crds.command, Command::Offline(Offline::Crds)));
        assert_eq!(crds.kubeconfig.context.as_deref(), Some("alice"));
        assert!(parse_args::<Drmesh, _, _>(["drmesh", "nope"]).is_err());
    }
}
