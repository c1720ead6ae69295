use std::process::ExitCode;

use drmesh::cli::{parse_args, run};

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(&cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drmesh: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
