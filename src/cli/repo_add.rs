//! `kedge repo add`: checks an address, name and branch, then registers them.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Ctx;
use super::output::print_json;
use crate::ops::repos::AddRepo;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// https://, ssh://, git@host:path, file:// or a local path
    pub url: String,
    /// Branch to follow
    #[arg(long, short, default_value = "main")]
    pub branch: String,
    /// Name of the repository [default: last path segment of URL without .git]
    #[arg(long, short)]
    pub name: Option<String>,
    /// File holding this repository's own webhook secret (mode 600); then
    /// only that secret triggers it. Its path is stored, not the secret
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let added = ctx.ops.repo_add(&AddRepo {
        url: args.url,
        branch: args.branch,
        name: args.name,
        webhook_secret_file: args.webhook_secret_file,
        cwd,
    })?;
    // Accepted all the same: the directory may be created later.
    if let Some(dir) = &added.missing_path {
        eprintln!(
            "warning: {} does not exist (yet); Kedge will keep trying it",
            dir.display()
        );
    }
    let repo = &added.repo;
    if ctx.json() {
        print_json(&serde_json::json!({
            "name": repo.name,
            "url": repo.url,
            "branch": repo.branch,
            "created_at": repo.created_at,
        }))?;
    } else {
        println!(
            "Added repository {} ({}, branch {})",
            repo.name, repo.url, repo.branch
        );
    }
    Ok(ExitCode::SUCCESS)
}
