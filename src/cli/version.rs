//! `kedge version` and `kedge --version`: the version, the commit it was
//! built from and, with `-v`, the compose and engine versions it finds.

use std::process::ExitCode;

use super::output::{OutputFormat, print_json, stdout};
use crate::ops::version::{Found, VersionReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also ask compose and the Docker engine for their versions
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn run(output: OutputFormat, verbose: bool) -> anyhow::Result<ExitCode> {
    let report = if verbose {
        super::block_on(crate::ops::version::version(true))?
    } else {
        crate::ops::version::plain()
    };
    if output == OutputFormat::Json {
        print_json(&report)?;
    } else {
        stdout().write_all(text(&report).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn text(report: &VersionReport) -> String {
    let mut out = format!(
        "kedge {} (commit {})\n",
        report.version,
        report.short_commit()
    );
    for (what, found) in [("compose", &report.compose), ("engine", &report.engine)] {
        match found {
            Some(Found::Version(v)) => out.push_str(&format!("{what} {v}\n")),
            Some(Found::Error(e)) => out.push_str(&format!("{what}: {e}\n")),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_what_was_found_and_why_not() {
        let report = VersionReport {
            version: "0.1.0",
            commit: "unknown",
            compose: Some(Found::Version("2.26.1".into())),
            engine: Some(Found::Error("cannot connect to the Docker engine".into())),
        };
        assert_eq!(
            text(&report),
            "kedge 0.1.0 (commit unknown)\ncompose 2.26.1\nengine: cannot connect to the Docker engine\n"
        );
    }
}
