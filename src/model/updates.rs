//! model: an image update check's finding for one service (fleet.md §3),
//! as `kedge updates`, the API and the dashboard show it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateRow {
    pub repo: String,
    pub stack: String,
    pub service: String,
    /// The image as the deployed compose file names it.
    pub image: String,
    /// The deployed tag, or for `digest` the deployed digest (short).
    pub current: String,
    /// The newer tag, or the tag's new digest (short); `None`: up to date.
    pub candidate: Option<String>,
    pub policy: String,
    /// `current`, `available`, `waiting` (outside `window`), `error`.
    pub state: String,
    /// Why it waits, or what the registry answered.
    pub detail: Option<String>,
    pub checked_at: i64,
    /// What runs now and what the candidate is, in full (a digest
    /// policy's `name:tag@sha256:…`): what `apply: deploy` deploys.
    #[serde(skip)]
    pub running_image: Option<String>,
    #[serde(skip)]
    pub candidate_image: Option<String>,
}

/// An image `apply: deploy` runs in place of the one Git names
/// (fleet.md §3): kept while Git still names `base` for the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageOverride {
    pub service: String,
    /// The image as Git names it.
    pub base: String,
    /// The image that runs instead.
    pub image: String,
    /// What ran before it: what a rollback returns to (`None`: Git's).
    pub previous: Option<String>,
}
