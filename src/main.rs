use std::process::ExitCode;

use drmesh::cli::{parse_args, run};

/// Less fragmentation, so a smaller resident set, than the system allocators (see Cargo.toml).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    drmesh::cli::kubeconfig::choose(&cli.kubeconfig);
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drmesh: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
