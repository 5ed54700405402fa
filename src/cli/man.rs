//! `kedge man`: the manual page, kedge(1), in roff from the command line's
//! definitions; `--dir DIR` writes it with one page per subcommand
//! (kedge-repo-add(1), …).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write kedge.1 and a page per subcommand (kedge-repo-add.1, …) into DIR
    /// instead of printing kedge(1)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let command = super::Cli::command();
    match args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(command).render(&mut out)?;
            super::output::stdout().write_all(&out)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut out = super::output::stdout();
            for path in write_pages(command, "kedge", &dir)? {
                writeln!(out, "{}", path.display())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// This command's page and its subcommands', named after their path
/// (`kedge-repo-add.1`); the paths written.
fn write_pages(command: clap::Command, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let command = command
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut written = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_pages(sub.clone(), &sub_name, dir)?);
    }
    Ok(written)
}
