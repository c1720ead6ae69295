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

/// jemalloc's options, read when it starts (`_RJEM_MALLOC_CONF` in the environment still
/// overrides them): one arena, as the operator has few threads and each arena keeps free
/// pages of its own; freed pages handed back within a second by a background thread, so
/// the resident set follows what the caches hold rather than a burst's peak. `make bench`
/// at 1,000 products: 1.0 MiB less at the peak, 1.4 MiB less after the idle period.
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0"[0];

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
