//! ops: `kedge host list` and `kedge host check NAME` (fleet.md §4) — the
//! Docker hosts of the global config (`local` implicit), each asked now:
//! its engine reached the way deployments reach it, and its version.

use serde::Serialize;

use super::{Ops, OpsError};
use crate::config::hosts::{Host, LOCAL};

/// A host as `kedge host list` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HostReport {
    pub name: String,
    /// As `DOCKER_HOST` names it (no secret: keys are paths).
    pub endpoint: String,
    /// `up`, or `unreachable`.
    pub state: String,
    /// The engine's version, when it answered.
    pub engine: Option<String>,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// The stacks deployed to it.
    pub stacks: usize,
}

impl Ops {
    /// The hosts: `local` first (the implicit one unless configured), then
    /// the configured ones in name order.
    fn all_hosts(&self) -> Vec<(Host, bool)> {
        let configured = &self.settings().hosts;
        let mut out: Vec<(Host, bool)> = Vec::new();
        match configured.iter().find(|h| h.name == LOCAL) {
            Some(local) => out.push((local.clone(), true)),
            None => out.push((Host::local(), false)),
        }
        let mut rest: Vec<&Host> = configured.iter().filter(|h| h.name != LOCAL).collect();
        rest.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(rest.into_iter().map(|h| (h.clone(), true)));
        out
    }

    async fn check_host(&self, host: &Host, configured: bool) -> Result<HostReport, OpsError> {
        let shared = self.shared()?;
        let states = shared.db.read(|s| s.repo_states())?;
        let stacks = shared
            .db
            .read(|s| s.stacks(None))?
            .iter()
            .filter(|s| s.orphaned_at.is_none())
            .filter(|s| {
                let on = states.get(&s.id).and_then(|st| st.host.as_deref());
                on.unwrap_or(LOCAL) == host.name
            })
            .count();
        let (endpoint, checked) = if configured {
            (
                host.endpoint.docker_host(),
                crate::target::host::check(host, &self.settings().data_dir)
                    .await
                    .map_err(|e| crate::error_chain(&e)),
            )
        } else {
            // The implicit `local` is the engine Kedge itself talks to.
            (
                std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| Host::local().endpoint.docker_host()),
                shared
                    .engine
                    .version()
                    .await
                    .map_err(|e| crate::error_chain(&e)),
            )
        };
        let (state, engine, error) = match checked {
            Ok(v) => ("up", Some(v), None),
            Err(e) => ("unreachable", None, Some(e)),
        };
        Ok(HostReport {
            name: host.name.clone(),
            endpoint,
            state: state.to_string(),
            engine,
            error,
            stacks,
        })
    }

    /// Every host, asked side by side.
    pub async fn hosts(&self) -> Result<Vec<HostReport>, OpsError> {
        let hosts = self.all_hosts();
        let checks = hosts.iter().map(|(h, c)| self.check_host(h, *c));
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }

    /// One host, asked now.
    pub async fn host_check(&self, name: &str) -> Result<HostReport, OpsError> {
        let hosts = self.all_hosts();
        let Some((host, configured)) = hosts.iter().find(|(h, _)| h.name == name) else {
            return Err(OpsError::UnknownHost {
                name: name.to_string(),
                known: hosts.iter().map(|(h, _)| h.name.clone()).collect(),
            });
        };
        self.check_host(host, *configured).await
    }
}
