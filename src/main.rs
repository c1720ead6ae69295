use std::process::ExitCode;

use clap::Parser;
use drmesh::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drmesh: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
