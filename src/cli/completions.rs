//! `kedge completions SHELL`: a completion script for bash, zsh, fish,
//! elvish or PowerShell, generated from the command line's definitions. It
//! completes subcommands and flags; it never runs `kedge` while loading.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    // Into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "kedge", &mut script);
    super::output::stdout().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}
