//! ops: `kedge version` / `kedge --version` — Kedge's version and the git
//! commit it was built from; asked for more, the compose and engine
//! versions it finds.

use serde::Serialize;

/// Kedge's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (see build.rs), or `unknown`.
pub const COMMIT: &str = env!("KEDGE_GIT_COMMIT");

#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub version: &'static str,
    pub commit: &'static str,
    /// Only when asked: what `docker compose version --short` says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compose: Option<Found>,
    /// Only when asked: the engine's version and the API version in use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<Found>,
}

/// A version found, or why none was.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    Version(String),
    Error(String),
}

impl VersionReport {
    /// The commit as text shows it: twelve characters are enough to find it.
    pub fn short_commit(&self) -> &'static str {
        let commit = self.commit;
        if commit.len() > 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            &commit[..12]
        } else {
            commit
        }
    }
}

/// Kedge's version and commit; with `verbose`, also compose's and the
/// engine's. A missing compose or engine is reported, not an error: the
/// version is what one asks for when something does not work.
pub async fn version(verbose: bool) -> VersionReport {
    let mut report = plain();
    if verbose {
        let engine = crate::observe::Engine::new();
        let (compose, engine) = tokio::join!(crate::compose::version(), engine.version());
        report.compose = Some(found(compose));
        report.engine = Some(found(engine));
    }
    report
}

/// Kedge's version and commit only: no process, no engine, no runtime
/// (`kedge --version` is the benchmarks' measure of a process start).
pub fn plain() -> VersionReport {
    VersionReport {
        version: VERSION,
        commit: COMMIT,
        compose: None,
        engine: None,
    }
}

fn found<E: std::error::Error + 'static>(result: Result<String, E>) -> Found {
    match result {
        Ok(v) => Found::Version(v),
        Err(e) => Found::Error(crate::error_chain(&e)),
    }
}
