//! `kedge token create|list|revoke`: the API's bearer tokens.

use std::process::ExitCode;

use super::Ctx;
use super::output::{Table, note, print_json, stdout};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it, alone on stdout (it is not shown again)
    Create {
        /// A name for the token ([a-z0-9][a-z0-9_-]*)
        name: String,
        /// read: GET only; deploy: also sync and roll back; admin: also add
        /// and remove repositories (`write` is accepted as admin)
        #[arg(long, value_enum, default_value = "read")]
        role: crate::ops::Role,
    },
    /// List tokens: NAME ROLE CREATED LAST USED
    List,
    /// Revoke a token: requests bearing it are refused from now on
    Revoke {
        /// The token's name
        name: String,
    },
}

pub fn run(ctx: &Ctx, command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { name, role } => {
            let token = ctx.ops.token_create(&name, role)?;
            // stdout holds the token alone: `TOKEN=$(kedge token create ci)`.
            writeln!(stdout(), "{token}")?;
            note(format_args!(
                "created token '{name}' ({}); it is not shown again",
                role.as_str()
            ));
        }
        TokenCommand::List => {
            let rows = ctx.ops.token_list()?;
            if ctx.json() {
                print_json(&rows)?;
            } else {
                let mut table = Table::new(["NAME", "ROLE", "CREATED", "LAST USED"]);
                for t in &rows {
                    table.row([
                        t.name.as_str(),
                        t.role.as_str(),
                        &t.created_at,
                        t.last_used_at.as_deref().unwrap_or("-"),
                    ]);
                }
                stdout().write_all(table.render().as_bytes())?;
            }
        }
        TokenCommand::Revoke { name } => {
            ctx.ops.token_revoke(&name)?;
            if ctx.json() {
                print_json(&serde_json::json!({ "revoked": name }))?;
            } else {
                writeln!(stdout(), "Revoked token {name}")?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
