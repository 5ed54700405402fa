//! cli: the `kedge` command line, one file per subcommand. Commands only
//! read the store or enqueue work; the flow itself lives in the library.

mod completions;
mod diff;
mod events;
mod history;
mod host;
mod man;
mod notify;
pub mod output;
mod repo_add;
mod repo_list;
mod repo_remove;
mod repo_rename;
mod rollback;
mod serve;
mod stack;
mod status;
mod sync;
mod token;
mod updates;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, LogFormat, Settings};
use crate::ops::Ops;
use output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "kedge",
    version,
    // `--version` is Kedge's own (below): it names the commit, and more with -v.
    disable_version_flag = true,
    arg_required_else_help = true,
    about = "GitOps controller for Docker Compose",
    long_about = "Kedge keeps Docker Compose stacks equal to what their Git repositories say: \
                  it deploys each registered repository, watches its branch, heals drift and \
                  records every deployment."
)]
pub struct Cli {
    /// Where the database and the clones live [env: KEDGE_DATA_DIR] [default: .kedge]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Global config file [env: KEDGE_CONFIG] [default: ~/.config/kedge/config.yaml when it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Output format of commands that read
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Log format on stderr [env: KEDGE_LOG_FORMAT] [default: text]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Print the version and the git commit it was built from (with -v: also
    /// the compose and Docker engine versions found)
    #[arg(short = 'V', long = "version")]
    pub version: bool,

    /// With --version: also ask compose and the engine for their versions
    #[arg(short = 'v', long = "verbose", requires = "version")]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, list and remove repositories
    #[command(subcommand)]
    Repo(RepoCommand),
    /// List the stacks of the registered repositories
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Deploy and watch every registered repository until stopped
    Serve(serve::Args),
    /// Show each repository's sync state and its services
    Status(status::Args),
    /// Show what differs between Git and the running containers
    Diff(diff::Args),
    /// Fetch and apply the target commit now, healing all drift
    Sync(sync::Args),
    /// Show a repository's deployments, newest first
    History(history::Args),
    /// Re-apply an earlier deployment and pin the repository to it
    Rollback(rollback::Args),
    /// Show the event log: deploys, drift, heals, rollbacks
    Events(events::Args),
    /// Create, list and revoke API tokens
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// List the notification sinks and send them a test message
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Show newer images the update policies found; `check` asks the registries now
    Updates(updates::Args),
    /// List the Docker hosts and check that their engines answer
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Print the version and the commit it was built from (-v: compose and engine too)
    Version(version::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(completions::Args),
    /// Print the manual page, or write one per subcommand with --dir
    Man(man::Args),
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Register a repository
    Add(Box<repo_add::Args>),
    /// List registered repositories
    List(repo_list::Args),
    /// Unregister a repository and delete its clone
    Remove(repo_remove::Args),
    /// Rename a repository, keeping its history
    Rename(repo_rename::Args),
}

/// What every command gets: the operations and the output format.
pub struct Ctx {
    pub ops: Ops,
    pub output: OutputFormat,
}

impl Ctx {
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs a parsed command line. Errors are the caller's to print (exit 1),
/// but for a closed stdout ([`output::is_closed_stdout`]), which is quiet.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let code = dispatch(cli)?;
    // What is left after the last newline: its failure is a closed pipe too.
    output::stdout().flush()?;
    Ok(code)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // What needs neither the settings nor a data directory.
    if cli.version {
        return version::run(cli.output, cli.verbose);
    }
    let command = match cli.command {
        Some(Command::Version(args)) => return version::run(cli.output, args.verbose),
        Some(Command::Completions(args)) => return completions::run(args),
        Some(Command::Man(args)) => return man::run(args),
        Some(command) => command,
        None => {
            use clap::CommandFactory as _;
            Cli::command()
                .error(
                    clap::error::ErrorKind::MissingSubcommand,
                    "a subcommand is required (or --version)",
                )
                .exit()
        }
    };
    let flags = config::Flags {
        config: cli.config.clone(),
        data_dir: cli.data_dir.clone(),
        poll_interval: match &command {
            Command::Serve(args) => args.poll_interval,
            _ => None,
        },
        check_interval: match &command {
            Command::Serve(args) => args.check_interval,
            _ => None,
        },
        log_format: cli.log_format,
        listen: match &command {
            Command::Serve(args) => args.listen,
            _ => None,
        },
    };
    let settings = config::load(&flags, &process_env)?;
    init_logging(&settings);
    let ctx = Ctx {
        ops: Ops::new(settings),
        output: cli.output,
    };
    match command {
        Command::Repo(RepoCommand::Add(args)) => repo_add::run(&ctx, *args),
        Command::Repo(RepoCommand::List(args)) => repo_list::run(&ctx, args),
        Command::Repo(RepoCommand::Remove(args)) => repo_remove::run(&ctx, args),
        Command::Repo(RepoCommand::Rename(args)) => repo_rename::run(&ctx, args),
        Command::Stack(command) => stack::run(&ctx, command),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Diff(args) => diff::run(&ctx, args),
        Command::Sync(args) => sync::run(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Rollback(args) => rollback::run(&ctx, args),
        Command::Events(args) => events::run(&ctx, args),
        Command::Token(command) => token::run(&ctx, command),
        Command::Notify(command) => notify::run(&ctx, command),
        Command::Updates(args) => updates::run(&ctx, args),
        Command::Host(command) => host::run(&ctx, command),
        Command::Version(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("answered before the settings are loaded")
        }
    }
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(log_directives(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // try_init: tests may run several commands in one process.
    let _ = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The log filter as configured, with the engine client's own debug output
/// (every request URL, the socket path hex-encoded, and whole response
/// bodies) left out unless a directive names it.
fn log_directives(level: &str) -> String {
    let mut directives = level.to_string();
    for noisy in ["bollard", "hyper", "hyper_util"] {
        if !level.contains(noisy) {
            directives.push_str(&format!(",{noisy}=info"));
        }
    }
    directives
}

/// A small runtime for commands that run child processes.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(rt.block_on(future))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line is a face: it parses, calls one operation and
    /// prints its report. The store, the engine, git and compose are the
    /// operations' business.
    #[test]
    fn no_command_reaches_past_the_operations() {
        crate::ops::assert_face_stays_above_ops("cli", 10);
    }

    /// Regression: `kedge status | head -1` panicked ("failed printing to
    /// stdout: Broken pipe"). The printing macros panic on a closed pipe:
    /// commands write through `output::Out`, notes go through `output::note`.
    #[test]
    fn no_command_prints_with_a_macro_that_panics_on_a_closed_pipe() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("main.rs")];
        for entry in std::fs::read_dir(src.join("cli")).unwrap() {
            files.push(entry.unwrap().path());
        }
        // Spelled in parts, so that this file does not name them itself.
        let macros = ["print", "eprint"].map(|m| [format!("{m}!("), format!("{m}ln!(")]);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for m in macros.iter().flatten() {
                    let hit = code.match_indices(m.as_str()).any(|(i, _)| {
                        !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    });
                    assert!(!hit, "{}:{}: {m}…", file.display(), n + 1);
                }
            }
        }
        assert!(files.len() > 10, "{files:?}");
    }

    /// Regression: `KEDGE_LOG=debug` printed bollard's request lines, with
    /// the Docker socket path hex-encoded, and every response body.
    #[test]
    fn debug_logging_leaves_the_engine_client_out_unless_asked() {
        assert_eq!(
            log_directives("debug"),
            "debug,bollard=info,hyper=info,hyper_util=info"
        );
        assert_eq!(
            log_directives("debug,bollard=debug"),
            "debug,bollard=debug,hyper=info,hyper_util=info"
        );
    }
}
