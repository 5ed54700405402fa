//! The `kedge` binary: parses the command line, runs it, and turns errors
//! into the spec's exit codes (1: the operation failed, 2: usage; 141:
//! stdout was closed by its reader, as for `git log | head -1`).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use kedge::cli::output;

fn main() -> ExitCode {
    // clap exits 2 on a usage error and 0 for --help / --version.
    let cli = kedge::cli::Cli::parse();
    match kedge::cli::run(cli) {
        Ok(code) => code,
        // `kedge status | head -1`: the reader has what it wanted; quiet.
        Err(e) if output::is_closed_stdout(&e) => ExitCode::from(output::CLOSED_STDOUT_EXIT),
        Err(e) => {
            // An error may quote a remote, compose or a commit: no control
            // character of theirs reaches the terminal. A closed stderr
            // loses the message, never the exit code.
            let _ = writeln!(
                std::io::stderr().lock(),
                "error: {}",
                output::lines(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}
