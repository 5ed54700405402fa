//! `kedge repo add`: checks an address, name and branch, then registers them.

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;

use super::Ctx;
use super::output::{print_json, rfc3339};
use crate::record::NewRepo;
use crate::source::url;

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
}

#[derive(Serialize)]
struct Added<'a> {
    name: &'a str,
    url: String,
    branch: &'a str,
    created_at: String,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    // Everything is checked before the database is opened: a refusal leaves no trace.
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let repo_url = url::normalize_url(&args.url, &cwd)?;
    let name = match args.name {
        Some(name) => {
            url::validate_name(&name)?;
            name
        }
        None => url::derive_name(&repo_url)?,
    };
    url::validate_branch(&args.branch)?;

    let mut store = ctx.open_store()?;
    let repo = store.add_repo(&NewRepo {
        name: &name,
        url: &repo_url,
        branch: &args.branch,
    })?;
    tracing::debug!(repo = %repo.name, "registered");
    // Accepted all the same: the directory may be created later.
    if let Some(dir) = url::local_dir(&repo.url)
        && !dir.exists()
    {
        eprintln!(
            "warning: {} does not exist (yet); Kedge will keep trying it",
            dir.display()
        );
    }
    if ctx.json() {
        print_json(&Added {
            name: &repo.name,
            url: url::redact(&repo.url),
            branch: &repo.branch,
            created_at: rfc3339(repo.created_at),
        })?;
    } else {
        println!(
            "Added repository {} ({}, branch {})",
            repo.name,
            url::redact(&repo.url),
            repo.branch
        );
    }
    Ok(ExitCode::SUCCESS)
}
