//! ops: `kedge updates` — the image update findings (fleet.md §3), and a
//! check now.

use super::{Ops, OpsError};
pub use crate::model::updates::UpdateRow;

impl Ops {
    fn repo_id(&self, repo: Option<&str>) -> Result<Option<i64>, OpsError> {
        repo.map(|name| self.repo(name).map(|r| r.id)).transpose()
    }

    /// The findings of the last check, of one repository's stacks or all.
    pub async fn updates(&self, repo: Option<&str>) -> Result<Vec<UpdateRow>, OpsError> {
        let id = self.repo_id(repo)?;
        Ok(self.shared()?.db.read(move |s| s.updates(id))?)
    }

    /// Checks now, asking the registries afresh; stores and returns the
    /// findings.
    pub async fn updates_check(&self, repo: Option<&str>) -> Result<Vec<UpdateRow>, OpsError> {
        let id = self.repo_id(repo)?;
        Ok(crate::controller::updates::check(self.shared()?, id, true).await?)
    }
}
