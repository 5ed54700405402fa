//! The `kedge` binary: parses the command line, runs it, and turns errors
//! into the spec's exit codes (1: the operation failed, 2: usage).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // clap exits 2 on a usage error and 0 for --help / --version.
    let cli = kedge::cli::Cli::parse();
    match kedge::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // An error may quote a remote, compose or a commit: no control
            // character of theirs reaches the terminal.
            eprintln!("error: {}", kedge::cli::output::lines(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
