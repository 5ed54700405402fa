//! record: what the controller knows of each repository between passes, and its deployed services.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Store, StoreError, known_opt, now_ms, query};
use crate::model::service::ServiceSpec;
use crate::model::settings::{Mode, Target, Unhealthy};

/// What the controller knows of a repository between runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoState {
    pub mode: Option<Mode>,
    pub prune: Option<bool>,
    pub project: Option<String>,
    /// The deployed commit's compose files, relative to the clone.
    pub compose_files: Option<Vec<String>>,
    /// The branch head at the last check.
    pub remote_head: Option<String>,
    /// The last commit Kedge finished with, deployed or refused.
    pub target_commit: Option<String>,
    pub deployed_commit: Option<String>,
    pub pinned_commit: Option<String>,
    pub pinned_at_head: Option<String>,
    pub last_error: Option<String>,
    /// When the remote was last checked, successfully or not.
    pub checked_at: Option<i64>,
    /// When the remote last answered a check.
    pub remote_ok_at: Option<i64>,
    /// The remote refused Kedge's credentials (or Kedge had none to give)
    /// at the last try: waiting will not help.
    pub access_refused: bool,
    /// `drift.unhealthy` of the last rendered kedge.yaml.
    pub unhealthy: Option<Unhealthy>,
    /// `docker.target` of the last rendered kedge.yaml.
    pub target: Option<Target>,
    /// `target.host` of the last rendered kedge.yaml; `None`: `local`.
    pub host: Option<String>,
    /// The deployed commit's compose profiles.
    pub profiles: Option<Vec<String>>,
    /// The deployed commit's services under profiles it does not enable.
    pub dormant: Option<Vec<String>>,
    /// The deployed stack's `--env-file`s (a stack's `env_file:`).
    pub env_files: Option<Vec<String>>,
    /// The newest commit the running stack is known to equal: the deployed
    /// commit, or a later one that changed none of its inputs.
    pub synced_commit: Option<String>,
    /// What the deployed commit's rendering read, fingerprinted; `None`
    /// when not known (then every new commit is rendered).
    pub inputs: Option<crate::model::stack_inputs::StackInputs>,
    /// The deployed commit's SOPS files, each value as an HMAC.
    pub secrets: Vec<crate::model::stack_inputs::SecretPrint>,
    /// `reconciliation.windows` of the last rendered kedge.yaml.
    pub windows: crate::model::settings::SyncWindows,
    /// A commit held back by a closed sync window, and when the window
    /// next opens (`None`: not within a week).
    pub waiting: Option<(String, Option<i64>)>,
}

impl RepoState {
    /// Whether the last check of the remote failed.
    pub fn remote_failing(&self) -> bool {
        self.checked_at.is_some() && self.remote_ok_at < self.checked_at
    }

    /// Whether what runs is what `commit` says: it is deployed, or its
    /// inputs are the deployed ones.
    pub fn runs(&self, commit: &str) -> bool {
        self.deployed_commit.as_deref() == Some(commit)
            || self.synced_commit.as_deref() == Some(commit)
    }
}

/// A deployed service: what it should look like, the commit that last
/// changed it, and the config hash compose labelled its containers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRecord {
    pub spec: ServiceSpec,
    pub commit: String,
    pub config_hash: Option<String>,
}

impl Store {
    const STATE_COLUMNS: &str =
        "mode, project, remote_head, target_commit, deployed_commit, pinned_commit,
                        pinned_at_head, last_error, checked_at, prune, compose_files, remote_ok_at,
                        access_refused, unhealthy, target, profiles, dormant, synced_commit, inputs, env_files, secrets, host,
                        windows, waiting_commit, waiting_until";

    fn state_row(r: &rusqlite::Row, at: usize) -> rusqlite::Result<RepoState> {
        let files: Option<String> = r.get(at + 10)?;
        Ok(RepoState {
            mode: known_opt(r, at, "mode", Mode::parse)?,
            project: r.get(at + 1)?,
            remote_head: r.get(at + 2)?,
            target_commit: r.get(at + 3)?,
            deployed_commit: r.get(at + 4)?,
            pinned_commit: r.get(at + 5)?,
            pinned_at_head: r.get(at + 6)?,
            last_error: r.get(at + 7)?,
            checked_at: r.get(at + 8)?,
            prune: r.get(at + 9)?,
            compose_files: files.and_then(|f| serde_json::from_str(&f).ok()),
            remote_ok_at: r.get(at + 11)?,
            access_refused: r.get(at + 12)?,
            unhealthy: known_opt(r, at + 13, "unhealthy", Unhealthy::parse)?,
            target: known_opt(r, at + 14, "target", Target::parse)?,
            profiles: json_list(r.get(at + 15)?),
            dormant: json_list(r.get(at + 16)?),
            synced_commit: r.get(at + 17)?,
            inputs: r
                .get::<_, Option<String>>(at + 18)?
                .and_then(|t| crate::model::stack_inputs::StackInputs::from_json(&t)),
            env_files: json_list(r.get(at + 19)?),
            secrets: r
                .get::<_, Option<String>>(at + 20)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            host: r.get(at + 21)?,
            windows: r
                .get::<_, Option<String>>(at + 22)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            waiting: r
                .get::<_, Option<String>>(at + 23)?
                .map(|c| r.get::<_, Option<i64>>(at + 24).map(|until| (c, until)))
                .transpose()?,
        })
    }

    pub fn repo_state(&self, stack_id: i64) -> Result<RepoState, StoreError> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM stack_state WHERE stack_id = ?1",
                    Self::STATE_COLUMNS
                ),
                [stack_id],
                |r| Self::state_row(r, 0),
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(query("read repository state"))
    }

    /// The repository other than `stack_id` whose stack is compose project
    /// `project`, if any.
    pub fn project_owner(
        &self,
        project: &str,
        host: &str,
        stack_id: i64,
    ) -> Result<Option<String>, StoreError> {
        // One project name per engine: the same name on two hosts is two
        // projects (a stack on several hosts is one on each).
        self.conn
            .query_row(
                "SELECT r.name FROM stack_state s JOIN stacks st ON st.id = s.stack_id
                     JOIN repositories r ON r.id = st.repo_id
                 WHERE s.project = ?1 AND s.stack_id != ?2 AND coalesce(s.host, 'local') = ?3
                 LIMIT 1",
                rusqlite::params![project, stack_id, host],
                |r| r.get(0),
            )
            .optional()
            .map_err(query("find the repository of a project"))
    }

    /// Every repository's state in one query, by repository id (a
    /// repository without a row yet has none).
    pub fn repo_states(&self) -> Result<std::collections::HashMap<i64, RepoState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT stack_id, {} FROM stack_state",
                Self::STATE_COLUMNS
            ))
            .map_err(query("read repository states"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, Self::state_row(r, 1)?)))
            .map_err(query("read repository states"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("read repository states"))
    }

    /// The whole state at once: tests build states with it; the controller
    /// changes state through the typed transitions below.
    #[cfg(test)]
    pub fn save_repo_state(&self, stack_id: i64, s: &RepoState) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO stack_state (stack_id, mode, project, remote_head, target_commit,
                     deployed_commit, pinned_commit, pinned_at_head, last_error, checked_at, updated_at,
                     prune, compose_files, remote_ok_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (stack_id) DO UPDATE SET
                     mode = excluded.mode, project = excluded.project,
                     prune = excluded.prune, compose_files = excluded.compose_files,
                     remote_head = excluded.remote_head, target_commit = excluded.target_commit,
                     deployed_commit = excluded.deployed_commit, pinned_commit = excluded.pinned_commit,
                     pinned_at_head = excluded.pinned_at_head, last_error = excluded.last_error,
                     checked_at = excluded.checked_at, updated_at = excluded.updated_at,
                     remote_ok_at = excluded.remote_ok_at",
                params![
                    stack_id,
                    s.mode.map(Mode::as_str),
                    s.project,
                    s.remote_head,
                    s.target_commit,
                    s.deployed_commit,
                    s.pinned_commit,
                    s.pinned_at_head,
                    s.last_error,
                    s.checked_at,
                    now_ms(),
                    s.prune,
                    s.compose_files
                        .as_ref()
                        .map(|f| serde_json::to_string(f).unwrap_or_default()),
                    s.remote_ok_at,
                ],
            )
            .map_err(query("save repository state"))?;
        Ok(())
    }

    // ---- typed transitions: each one statement, so one transaction ----

    /// Sets some columns of a repository's state (its row made if needed).
    /// Column names are this file's constants, never input.
    fn set_state(
        &self,
        step: &'static str,
        stack_id: i64,
        columns: &[(&'static str, Value)],
    ) -> Result<(), StoreError> {
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let marks: Vec<String> = (0..columns.len()).map(|i| format!("?{}", i + 3)).collect();
        let updates: Vec<String> = names
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let sql = format!(
            "INSERT INTO stack_state (stack_id, updated_at{}{}) VALUES (?1, ?2{}{})
             ON CONFLICT (stack_id) DO UPDATE SET updated_at = excluded.updated_at{}{}",
            if names.is_empty() { "" } else { ", " },
            names.join(", "),
            if marks.is_empty() { "" } else { ", " },
            marks.join(", "),
            if updates.is_empty() { "" } else { ", " },
            updates.join(", "),
        );
        let mut args: Vec<Value> = vec![stack_id.into(), now_ms().into()];
        args.extend(columns.iter().map(|(_, v)| v.clone()));
        self.conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(args)))
            .map_err(query(step))?;
        Ok(())
    }

    /// The remote answered a check with its branch head.
    pub fn mark_checked(&self, stack_id: i64, head: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.set_state(
            "record the remote head",
            stack_id,
            &[
                ("remote_head", text(head)),
                ("checked_at", now.into()),
                ("remote_ok_at", now.into()),
                ("access_refused", false.into()),
            ],
        )
    }

    /// A git step failed; `at_check`: the remote check itself (so the
    /// remote did not answer), else a clone or fetch; `refused`: the
    /// remote refused the credentials.
    pub fn mark_git_error(
        &self,
        stack_id: i64,
        error: &str,
        at_check: bool,
        refused: bool,
    ) -> Result<(), StoreError> {
        let mut columns = vec![
            ("last_error", text(error)),
            ("access_refused", refused.into()),
        ];
        if at_check {
            columns.push(("checked_at", now_ms().into()));
        }
        self.set_state("record a git error", stack_id, &columns)
    }

    /// An error that has cleared is cleared.
    pub fn clear_error(&self, stack_id: i64) -> Result<(), StoreError> {
        self.set_state(
            "clear the last error",
            stack_id,
            &[
                ("last_error", Value::Null),
                ("access_refused", false.into()),
            ],
        )
    }

    /// The last rendered `kedge.yaml`'s settings.
    pub fn set_rendered(
        &self,
        stack_id: i64,
        kedge: &crate::model::settings::RenderedSettings,
    ) -> Result<(), StoreError> {
        self.set_state(
            "record the repository's settings",
            stack_id,
            &[
                ("mode", text(kedge.mode.as_str())),
                ("prune", kedge.prune.into()),
                ("unhealthy", text(kedge.unhealthy.as_str())),
                ("target", text(kedge.target.as_str())),
                ("host", text(&kedge.host)),
                (
                    "windows",
                    match kedge.windows.is_empty() && !kedge.windows.heal_in_window_only {
                        true => Value::Null,
                        false => text(&serde_json::to_string(&kedge.windows).unwrap_or_default()),
                    },
                ),
            ],
        )
    }

    /// `commit` waits for a sync window, which opens at `until` (`None`:
    /// not within a week); `None` for `commit`: nothing waits any more.
    pub fn mark_waiting(
        &self,
        stack_id: i64,
        commit: Option<&str>,
        until: Option<i64>,
    ) -> Result<(), StoreError> {
        self.set_state(
            "record a commit waiting for its sync window",
            stack_id,
            &[
                ("waiting_commit", commit.map(text).unwrap_or(Value::Null)),
                (
                    "waiting_until",
                    until
                        .filter(|_| commit.is_some())
                        .map(Value::from)
                        .unwrap_or(Value::Null),
                ),
            ],
        )
    }

    /// Kedge is done with `commit` without deploying it: it waits for
    /// `kedge sync` (notify/manual), or it failed for good. `error` is why,
    /// when it failed.
    pub fn mark_settled(
        &self,
        stack_id: i64,
        commit: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut columns = vec![("target_commit", text(commit))];
        if let Some(error) = error {
            columns.push(("last_error", text(error)));
        }
        self.set_state("record the commit Kedge is done with", stack_id, &columns)
    }

    /// A deployment of `commit` succeeded; `inputs` is what it read.
    pub fn mark_deployed(
        &self,
        stack_id: i64,
        commit: &str,
        project: &str,
        compose_files: &[String],
        inputs: Option<&crate::model::stack_inputs::StackInputs>,
    ) -> Result<(), StoreError> {
        self.set_state(
            "record the deployment",
            stack_id,
            &[
                ("deployed_commit", text(commit)),
                ("target_commit", text(commit)),
                ("synced_commit", text(commit)),
                (
                    "inputs",
                    inputs.map_or(Value::Null, |i| Value::Text(i.to_json())),
                ),
                ("project", text(project)),
                (
                    "compose_files",
                    text(&serde_json::to_string(compose_files).unwrap_or_default()),
                ),
                ("last_error", Value::Null),
            ],
        )
    }

    /// The SOPS files the deployment just recorded read, as HMACs.
    pub fn mark_secrets(
        &self,
        stack_id: i64,
        secrets: &[crate::model::stack_inputs::SecretPrint],
    ) -> Result<(), StoreError> {
        let value = if secrets.is_empty() {
            Value::Null
        } else {
            text(&serde_json::to_string(secrets).unwrap_or_default())
        };
        self.set_state(
            "record the secrets' fingerprints",
            stack_id,
            &[("secrets", value)],
        )
    }

    /// The `updates:` section the deployment just recorded ran with, as
    /// JSON (`None`: the stack checks nothing).
    pub fn mark_updates_config(
        &self,
        stack_id: i64,
        config: Option<&str>,
    ) -> Result<(), StoreError> {
        let value = config.map_or(Value::Null, text);
        self.set_state(
            "record the stack's update settings",
            stack_id,
            &[("updates", value)],
        )
    }

    /// `commit` changed none of the deployed stack's inputs: what runs is
    /// what it says, and nothing was deployed.
    pub fn mark_unchanged(&self, stack_id: i64, commit: &str) -> Result<(), StoreError> {
        self.set_state(
            "record a commit that changes nothing",
            stack_id,
            &[
                ("target_commit", text(commit)),
                ("synced_commit", text(commit)),
                ("last_error", Value::Null),
            ],
        )
    }

    /// The profiles a kept deployment enabled, and the services it left
    /// off with the others.
    pub fn mark_profiles(
        &self,
        stack_id: i64,
        profiles: &[String],
        dormant: &[String],
        env_files: &[String],
    ) -> Result<(), StoreError> {
        let list = |l: &[String]| text(&serde_json::to_string(l).unwrap_or_default());
        self.set_state(
            "record the deployed profiles",
            stack_id,
            &[
                ("profiles", list(profiles)),
                ("dormant", list(dormant)),
                ("env_files", list(env_files)),
            ],
        )
    }

    /// A deployment failed: the deployed commit stays what it was.
    pub fn mark_failed(&self, stack_id: i64, error: &str) -> Result<(), StoreError> {
        self.set_state(
            "record the failure",
            stack_id,
            &[("last_error", text(error))],
        )
    }

    /// A rollback pins the repository to `commit` until the branch moves
    /// past `at_head` (the head when it was made).
    pub fn pin(
        &self,
        stack_id: i64,
        commit: &str,
        at_head: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut columns = vec![
            ("pinned_commit", text(commit)),
            ("pinned_at_head", at_head.map_or(Value::Null, text)),
        ];
        if let Some(head) = at_head {
            columns.push(("remote_head", text(head)));
        }
        self.set_state("pin the repository", stack_id, &columns)
    }

    /// The pin ends; the branch head is the target again.
    pub fn release_pin(&self, stack_id: i64) -> Result<(), StoreError> {
        self.set_state(
            "release the pin",
            stack_id,
            &[
                ("pinned_commit", Value::Null),
                ("pinned_at_head", Value::Null),
                ("target_commit", Value::Null),
            ],
        )
    }

    /// Per repository id: the names of its deployed services, sorted. One
    /// query, without reading the specs (for the dashboard).
    pub fn service_names(&self) -> Result<std::collections::HashMap<i64, Vec<String>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT stack_id, service FROM services ORDER BY stack_id, service")
            .map_err(query("read service names"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(query("read service names"))?;
        let mut out: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for row in rows {
            let (id, name) = row.map_err(query("read service names"))?;
            out.entry(id).or_default().push(name);
        }
        Ok(out)
    }

    pub fn services(
        &self,
        stack_id: i64,
    ) -> Result<std::collections::BTreeMap<String, ServiceRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT service, spec, commit_hash, config_hash FROM services WHERE stack_id = ?1",
            )
            .map_err(query("read services"))?;
        let rows = stmt
            .query_map([stack_id], |r| {
                let spec: String = r.get(1)?;
                let spec = serde_json::from_str(&spec).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?;
                Ok((
                    r.get::<_, String>(0)?,
                    ServiceRecord {
                        spec,
                        commit: r.get(2)?,
                        config_hash: r.get(3)?,
                    },
                ))
            })
            .map_err(query("read services"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("read services"))
    }

    /// Replaces the deployed services of a repository.
    pub fn save_services(
        &mut self,
        stack_id: i64,
        services: &std::collections::BTreeMap<String, ServiceRecord>,
    ) -> Result<(), StoreError> {
        self.with_transaction(|s| s.replace_services(stack_id, services))
    }

    /// [`Store::save_services`] inside a transaction the caller holds.
    pub fn replace_services(
        &self,
        stack_id: i64,
        services: &std::collections::BTreeMap<String, ServiceRecord>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM services WHERE stack_id = ?1", [stack_id])
            .map_err(query("save services"))?;
        for (name, s) in services {
            let spec = serde_json::to_string(&s.spec).unwrap_or_default();
            self.conn
                .execute(
                    "INSERT INTO services (stack_id, service, hash, commit_hash, spec, config_hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![stack_id, name, s.spec.hash, s.commit, spec, s.config_hash],
                )
                .map_err(query("save services"))?;
        }
        Ok(())
    }
}

/// A JSON list of names as stored; unreadable reads as none.
fn json_list(stored: Option<String>) -> Option<Vec<String>> {
    stored.and_then(|l| serde_json::from_str(&l).ok())
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}
