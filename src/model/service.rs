//! model: one service as Kedge compares it — what `desired` renders from
//! a commit, `plan` compares with what runs, and `record` keeps with each
//! deployment.

use serde::{Deserialize, Serialize};

/// One service as Kedge compares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Resolved configuration plus repository content fingerprints.
    pub hash: String,
    pub image: Option<String>,
    /// Build context inside the repository, with its tree id.
    pub build: Option<String>,
    /// Hash of everything a build reads: the `build` section (dockerfile,
    /// args, target, …) and the object ids of the context and of the other
    /// repository paths it names. The service is built only when this
    /// changes (or its image is missing). `None`: not a build service, or
    /// inputs Kedge cannot see (no object ids, as for a stored snapshot);
    /// absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_fingerprint: Option<String>,
    pub replicas: u32,
    pub restart: Option<String>,
    /// Drift of this service is neither reported nor healed.
    #[serde(default)]
    pub ignored: bool,
}

impl ServiceSpec {
    /// A service the engine does not restart once it exits 0 (restart
    /// policy `no`, none, or `on-failure[:N]`): exiting 0 means it is
    /// complete, as the health gate also counts it.
    pub fn one_shot(&self) -> bool {
        match self.restart.as_deref() {
            None | Some("no") => true,
            Some(policy) => policy == "on-failure" || policy.starts_with("on-failure:"),
        }
    }

    /// The image its containers run: compose names built images `project-service`.
    pub fn image_ref(&self, project: &str) -> String {
        self.image
            .clone()
            .unwrap_or_else(|| format!("{project}-{}", self.name))
    }
}
