//! `kedge repo add`: checks an address, name and branch, then registers them.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Ctx;
use super::output::{note, print_json, stdout};
use crate::ops::credentials::CredentialArgs;
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
    #[arg(long, value_name = "FILE", conflicts_with = "webhook_secret")]
    pub webhook_secret_file: Option<std::path::PathBuf>,
    /// A webhook secret of the global config's `credentials:`, by name;
    /// then only that secret triggers this repository
    #[arg(long, value_name = "NAME")]
    pub webhook_secret: Option<String>,
    /// A token or ssh key of the global config's `credentials:`, by name
    #[arg(long, value_name = "NAME", conflicts_with_all = ["ssh_key", "token_file", "token_env", "username"])]
    pub credential: Option<String>,
    /// Private key (mode 600) for an ssh:// or user@host:path URL; its path
    /// is stored, never its content
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<std::path::PathBuf>,
    /// Check the server's host key strictly against this file instead of
    /// Kedge's own <data-dir>/known_hosts (recorded on first contact)
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    pub ssh_known_hosts: Option<std::path::PathBuf>,
    /// File holding an HTTPS access token, read at each use
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ssh_key", "token_env"])]
    pub token_file: Option<std::path::PathBuf>,
    /// Environment variable of `kedge serve` holding an HTTPS access token
    #[arg(long, value_name = "VAR", conflicts_with = "ssh_key")]
    pub token_env: Option<String>,
    /// User name sent with the token [default: x-access-token]
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
}

pub fn run(ctx: &Ctx, args: Args) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let added = super::block_on(ctx.ops.repo_add(&AddRepo {
        url: args.url,
        branch: args.branch,
        name: args.name,
        webhook_secret_file: args.webhook_secret_file,
        webhook_secret: args.webhook_secret,
        credentials: CredentialArgs {
            ssh_key: args.ssh_key,
            ssh_known_hosts: args.ssh_known_hosts,
            token_file: args.token_file,
            token_env: args.token_env,
            username: args.username,
            credential: args.credential,
        },
        cwd,
        host_paths: true,
    }))??;
    // Accepted all the same: the directory may be created later.
    if let Some(dir) = &added.missing_path {
        note(format_args!(
            "warning: {} does not exist (yet); Kedge will keep trying it",
            dir.display()
        ));
    }
    let repo = &added.repo;
    if ctx.json() {
        let mut doc = serde_json::json!({
            "name": repo.name,
            "url": repo.url,
            "branch": repo.branch,
            "created_at": repo.created_at,
            "auth": repo.auth,
        });
        if let Some(name) = &repo.credential {
            doc["credential"] = name.as_str().into();
        }
        print_json(&doc)?;
    } else if repo.auth == "none" {
        writeln!(
            stdout(),
            "Added repository {} ({}, branch {})",
            repo.name,
            repo.url,
            repo.branch
        )?;
    } else {
        writeln!(
            stdout(),
            "Added repository {} ({}, branch {}, auth {})",
            repo.name,
            repo.url,
            repo.branch,
            repo.auth
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
