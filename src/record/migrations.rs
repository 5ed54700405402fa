//! Versioned schema migrations. Append only: a released migration is never
//! edited, so every older database upgrades in place along the same path.

/// `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: repositories and their deployment history.
    "CREATE TABLE repositories (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        url         TEXT NOT NULL,
        branch      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        UNIQUE (url, branch)
    );
    CREATE TABLE deployments (
        id               INTEGER PRIMARY KEY,
        repo_id          INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        commit_hash      TEXT NOT NULL,
        commit_message   TEXT NOT NULL DEFAULT '',
        status           TEXT NOT NULL
                         CHECK (status IN ('in_progress', 'success', 'failed', 'rolled_back')),
        trigger          TEXT NOT NULL,
        started_at       INTEGER NOT NULL,
        finished_at      INTEGER,
        duration_ms      INTEGER,
        compose_snapshot TEXT,
        error            TEXT
    );
    CREATE INDEX deployments_by_repo ON deployments (repo_id, id);",
    // 2: what the controller knows per repository between runs, the drift and
    // heal events `status` shows, and which services a deployment changed.
    "CREATE TABLE repo_state (
        repo_id          INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
        mode             TEXT,
        prune            INTEGER,
        project          TEXT,
        compose_files    TEXT,
        remote_head      TEXT,
        target_commit    TEXT,
        deployed_commit  TEXT,
        pinned_commit    TEXT,
        pinned_at_head   TEXT,
        last_error       TEXT,
        checked_at       INTEGER,
        updated_at       INTEGER NOT NULL
    );
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY,
        repo_id   INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        at        INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        service   TEXT,
        detail    TEXT
    );
    CREATE INDEX events_by_repo ON events (repo_id, id);
    ALTER TABLE deployments ADD COLUMN services_changed TEXT;",
    // 3: per deployed service, what it should look like (the spec, with the
    // hash of its resolved configuration), the commit that last changed it
    // (its io.kedge.commit label) and the config hash compose gave it.
    "CREATE TABLE services (
        repo_id      INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        service      TEXT NOT NULL,
        hash         TEXT NOT NULL,
        commit_hash  TEXT NOT NULL,
        spec         TEXT NOT NULL,
        config_hash  TEXT,
        PRIMARY KEY (repo_id, service)
    );",
    // 4: compose snapshots stored once per content, keyed by its sha256
    // (`kedge_sha256`, registered on every connection), instead of once per
    // deployment; existing snapshots move over.
    "CREATE TABLE snapshots (
        sha256   TEXT PRIMARY KEY,
        content  TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO snapshots (sha256, content)
        SELECT kedge_sha256(compose_snapshot), compose_snapshot
        FROM deployments WHERE compose_snapshot IS NOT NULL;
    ALTER TABLE deployments ADD COLUMN snapshot TEXT REFERENCES snapshots(sha256);
    UPDATE deployments SET snapshot = kedge_sha256(compose_snapshot), compose_snapshot = NULL
        WHERE compose_snapshot IS NOT NULL;
    CREATE INDEX deployments_by_snapshot ON deployments (snapshot);",
    // 5: when the remote last answered a check, so `status` can say how long
    // it has been failing. A state without a remote error had its last check
    // answered.
    "ALTER TABLE repo_state ADD COLUMN remote_ok_at INTEGER;
    UPDATE repo_state SET remote_ok_at = checked_at
     WHERE last_error IS NULL
        OR NOT (last_error LIKE 'cannot reach remote %'
                OR last_error LIKE 'branch % does not exist on %');",
    // 6: the event log of operations.md: typed kinds with a severity, the
    // repository by name (a log outlives what it mentions: `repo_removed`
    // stays), the commit, structured fields, and ids never reused
    // (AUTOINCREMENT: followers resume after the last id they saw, even
    // past rows retention deleted). Earlier rows keep their order and map
    // onto the new kinds.
    "CREATE TABLE event_log (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        at           INTEGER NOT NULL,
        repo         TEXT NOT NULL,
        kind         TEXT NOT NULL,
        severity     TEXT NOT NULL,
        service      TEXT,
        commit_hash  TEXT,
        message      TEXT NOT NULL,
        fields       TEXT NOT NULL DEFAULT '{}'
    );
    INSERT INTO event_log (at, repo, kind, severity, service, message)
        SELECT e.at, r.name,
               CASE
                   WHEN e.kind = 'drift' THEN 'drift_detected'
                   WHEN e.kind = 'heal' AND e.detail LIKE '%: failed: %' THEN 'heal_failed'
                   WHEN e.kind = 'heal' THEN 'drift_healed'
                   ELSE e.kind
               END,
               CASE
                   WHEN e.kind = 'drift' THEN 'warning'
                   WHEN e.kind = 'heal' AND e.detail LIKE '%: failed: %' THEN 'error'
                   WHEN e.kind = 'crash_loop' THEN 'error'
                   ELSE 'info'
               END,
               e.service, coalesce(e.detail, '')
        FROM events e JOIN repositories r ON r.id = e.repo_id
        ORDER BY e.id;
    DROP TABLE events;
    ALTER TABLE event_log RENAME TO events;
    CREATE INDEX events_by_repo ON events (repo, id);
    CREATE INDEX events_by_time ON events (at);",
    // 7: API tokens, stored as the sha256 of the token (the token itself is
    // shown once, at creation), with a role and when it was last used.
    "CREATE TABLE tokens (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('read', 'write')),
        hash          TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    );",
    // 8: a repository's own webhook secret: the path of the file holding it
    // (read at each use; the secret itself is never stored).
    "ALTER TABLE repositories ADD COLUMN webhook_secret_file TEXT;",
    // 9: private repositories: where the credentials are, never what they
    // are (a deploy key's path and an optional known_hosts file; a token's
    // file or variable and the user name it is sent with); whether the
    // remote refused the credentials at the last try.
    "ALTER TABLE repositories ADD COLUMN ssh_key_file TEXT;
    ALTER TABLE repositories ADD COLUMN ssh_known_hosts_file TEXT;
    ALTER TABLE repositories ADD COLUMN token_file TEXT;
    ALTER TABLE repositories ADD COLUMN token_env TEXT;
    ALTER TABLE repositories ADD COLUMN token_username TEXT;
    ALTER TABLE repo_state ADD COLUMN access_refused INTEGER NOT NULL DEFAULT 0;",
    // 10: notification delivery. Per sink, the id of the last event it has
    // dealt with (delivered, filtered out or given up on), so a restart of
    // `serve` neither repeats nor loses one; and when each failure was last
    // sent (keyed by a digest of repo, kind, service and message) for
    // `repeat_interval`. Secrets are not stored: sinks live in the config.
    "CREATE TABLE notify_cursors (
        sink        TEXT PRIMARY KEY,
        event_id    INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE notify_sent (
        sink     TEXT NOT NULL,
        key      TEXT NOT NULL,
        repo     TEXT NOT NULL,
        service  TEXT,
        sent_at  INTEGER NOT NULL,
        PRIMARY KEY (sink, key)
    );
    CREATE INDEX notify_sent_by_repo ON notify_sent (sink, repo);",
    // 11: health-gated deploys. A failed deployment says which step failed
    // (`health_gate` for a gate that did not pass); an automatic rollback
    // names the commit whose failure it undid; the deployed kedge.yaml's
    // `drift.unhealthy` policy, which drift passes read.
    "ALTER TABLE deployments ADD COLUMN failed_step TEXT;
    ALTER TABLE deployments ADD COLUMN rolled_back_from TEXT;
    ALTER TABLE repo_state ADD COLUMN unhealthy TEXT;",
    // 12: the deploy target of the last rendered kedge.yaml (`docker.target`:
    // compose or swarm), which drift passes read.
    "ALTER TABLE repo_state ADD COLUMN target TEXT;",
    // 13: roles `read`, `deploy` (also sync and roll back) and `admin` (also
    // add and remove repositories); a `write` token becomes `admin`. A
    // repository may name a credential of the global config (`credential`)
    // and a webhook secret there (`webhook_secret`): names, never secrets.
    "CREATE TABLE tokens_roles (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('read', 'deploy', 'admin')),
        hash          TEXT NOT NULL UNIQUE,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    );
    INSERT INTO tokens_roles (name, role, hash, created_at, last_used_at)
        SELECT name, CASE role WHEN 'write' THEN 'admin' ELSE 'read' END,
               hash, created_at, last_used_at
        FROM tokens;
    DROP TABLE tokens;
    ALTER TABLE tokens_roles RENAME TO tokens;
    ALTER TABLE repositories ADD COLUMN credential TEXT;
    ALTER TABLE repositories ADD COLUMN webhook_secret TEXT;",
    // 14: credentials out of `repositories.url`. Done in code
    // (`move_url_credentials`): it writes files.
    "",
    // 15: which `serve` emitted an event, so that the one that broadcast
    // it before it was stored does not broadcast it twice.
    "ALTER TABLE events ADD COLUMN origin TEXT;",
    // 16: the deployed commit's compose profiles (`docker.profiles`), which
    // heals and restores enable again, and the services its files define
    // under the other profiles, whose containers are not extra.
    "ALTER TABLE repo_state ADD COLUMN profiles TEXT;
    ALTER TABLE repo_state ADD COLUMN dormant TEXT;",
    // 17: per stack, the newest commit the running stack equals (a commit
    // that changed none of its inputs is not deployed, fleet.md §1), and
    // the deployed inputs with their fingerprint.
    "ALTER TABLE repo_state ADD COLUMN synced_commit TEXT;
    ALTER TABLE repo_state ADD COLUMN inputs TEXT;
    UPDATE repo_state SET synced_commit = deployed_commit;",
    // 18: stacks (fleet.md §1). A repository has one or more stacks; what
    // was per repository — state, deployed services, deployments — is per
    // stack. Every repository becomes its root stack, under the
    // repository's own id and name: history, pins and state are kept, and
    // nothing that refers to the repository's id changes. The tables keyed
    // by it are made anew keyed by the stack (SQLite cannot change a
    // foreign key in place). Events name their stack.
    "CREATE TABLE stacks (
        id           INTEGER PRIMARY KEY,
        repo_id      INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        path         TEXT NOT NULL DEFAULT '',
        root         INTEGER NOT NULL DEFAULT 0,
        orphaned_at  INTEGER,
        after        TEXT NOT NULL DEFAULT '[]',
        created_at   INTEGER NOT NULL,
        UNIQUE (repo_id, name)
    );
    INSERT INTO stacks (id, repo_id, name, path, root, created_at)
        SELECT id, id, name, '', 1, created_at FROM repositories;
    CREATE TABLE stack_state (
        stack_id         INTEGER PRIMARY KEY REFERENCES stacks(id) ON DELETE CASCADE,
        mode             TEXT,
        prune            INTEGER,
        project          TEXT,
        compose_files    TEXT,
        remote_head      TEXT,
        target_commit    TEXT,
        deployed_commit  TEXT,
        pinned_commit    TEXT,
        pinned_at_head   TEXT,
        last_error       TEXT,
        checked_at       INTEGER,
        updated_at       INTEGER NOT NULL,
        remote_ok_at     INTEGER,
        access_refused   INTEGER NOT NULL DEFAULT 0,
        unhealthy        TEXT,
        target           TEXT,
        profiles         TEXT,
        dormant          TEXT,
        synced_commit    TEXT,
        inputs           TEXT,
        env_files        TEXT
    );
    INSERT INTO stack_state (stack_id, mode, prune, project, compose_files, remote_head,
            target_commit, deployed_commit, pinned_commit, pinned_at_head, last_error,
            checked_at, updated_at, remote_ok_at, access_refused, unhealthy, target,
            profiles, dormant, synced_commit, inputs)
        SELECT repo_id, mode, prune, project, compose_files, remote_head,
            target_commit, deployed_commit, pinned_commit, pinned_at_head, last_error,
            checked_at, updated_at, remote_ok_at, access_refused, unhealthy, target,
            profiles, dormant, synced_commit, inputs
        FROM repo_state;
    DROP TABLE repo_state;
    CREATE TABLE stack_services (
        stack_id     INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        service      TEXT NOT NULL,
        hash         TEXT NOT NULL,
        commit_hash  TEXT NOT NULL,
        spec         TEXT NOT NULL,
        config_hash  TEXT,
        PRIMARY KEY (stack_id, service)
    );
    INSERT INTO stack_services (stack_id, service, hash, commit_hash, spec, config_hash)
        SELECT repo_id, service, hash, commit_hash, spec, config_hash FROM services;
    DROP TABLE services;
    ALTER TABLE stack_services RENAME TO services;
    CREATE TABLE stack_deployments (
        id                INTEGER PRIMARY KEY,
        stack_id          INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        commit_hash       TEXT NOT NULL,
        commit_message    TEXT NOT NULL DEFAULT '',
        status            TEXT NOT NULL
                          CHECK (status IN ('in_progress', 'success', 'failed', 'rolled_back')),
        trigger           TEXT NOT NULL,
        started_at        INTEGER NOT NULL,
        finished_at       INTEGER,
        duration_ms       INTEGER,
        compose_snapshot  TEXT,
        error             TEXT,
        services_changed  TEXT,
        snapshot          TEXT REFERENCES snapshots(sha256),
        failed_step       TEXT,
        rolled_back_from  TEXT
    );
    INSERT INTO stack_deployments (id, stack_id, commit_hash, commit_message, status, trigger,
            started_at, finished_at, duration_ms, compose_snapshot, error, services_changed,
            snapshot, failed_step, rolled_back_from)
        SELECT id, repo_id, commit_hash, commit_message, status, trigger,
            started_at, finished_at, duration_ms, compose_snapshot, error, services_changed,
            snapshot, failed_step, rolled_back_from
        FROM deployments;
    DROP TABLE deployments;
    ALTER TABLE stack_deployments RENAME TO deployments;
    CREATE INDEX deployments_by_stack ON deployments (stack_id, id);
    CREATE INDEX deployments_by_snapshot ON deployments (snapshot);
    ALTER TABLE events ADD COLUMN stack TEXT;",
    // 19: a root stack's row keeps no name of its own (it is the
    // repository's, read through the join): a declared stack may be named
    // like its repository.
    "UPDATE stacks SET name = '' WHERE root = 1;",
    // 20: the deployed stack's SOPS files, as HMACs of their values (for
    // `diff`'s "secret changed"), never a value.
    "ALTER TABLE stack_state ADD COLUMN secrets TEXT;",
    // 21: image update checks: the deployed `updates:` settings, and the
    // latest finding per service.
    "ALTER TABLE stack_state ADD COLUMN updates TEXT;
    CREATE TABLE image_updates (
        stack_id INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        service TEXT NOT NULL,
        image TEXT NOT NULL,
        current TEXT NOT NULL,
        candidate TEXT,
        policy TEXT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT,
        checked_at INTEGER NOT NULL,
        PRIMARY KEY (stack_id, service)
    );",
    // 22: images whose deployment failed its health gate, per service:
    // never proposed again as an update.
    "CREATE TABLE failed_images (
        stack_id INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        service TEXT NOT NULL,
        image TEXT NOT NULL,
        failed_at INTEGER NOT NULL,
        PRIMARY KEY (stack_id, service, image)
    );",
    // 23: the commits Kedge wrote back to Git for image updates: a gate
    // that fails one is followed by its revert.
    "CREATE TABLE update_commits (
        stack_id INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        commit_id TEXT NOT NULL,
        service TEXT NOT NULL,
        image_from TEXT NOT NULL,
        image_to TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (stack_id, commit_id, service)
    );",
    // 24: images `apply: deploy` runs in place of Git's, per service.
    "CREATE TABLE image_overrides (
        stack_id INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
        service TEXT NOT NULL,
        base TEXT NOT NULL,
        image TEXT NOT NULL,
        previous TEXT,
        PRIMARY KEY (stack_id, service)
    );",
    // 25: the host of the last rendered kedge.yaml (`target.host`, fleet.md
    // §4); NULL: this machine's engine.
    "ALTER TABLE stack_state ADD COLUMN host TEXT;",
    // 26: sync windows (fleet.md §5): those of the last rendered kedge.yaml
    // (JSON), and the commit waiting for one to open, with when it opens
    // (NULL: not within a week).
    "ALTER TABLE stack_state ADD COLUMN windows TEXT;
     ALTER TABLE stack_state ADD COLUMN waiting_commit TEXT;
     ALTER TABLE stack_state ADD COLUMN waiting_until INTEGER;",
    // 27: a deployment's deploy hook runs (fleet.md §5), their output cut
    // short (JSON).
    "ALTER TABLE deployments ADD COLUMN hooks TEXT;",
];

/// A migration after which the WAL is checkpointed and truncated: it
/// removed secrets whose old pages must not linger there.
pub fn scrubs(version: i64) -> bool {
    version == 14
}

/// The migrations that are code, by the version they bring the schema to;
/// each runs after that version's SQL, in the same transaction.
pub fn code_step(version: i64) -> Option<CodeStep> {
    match version {
        14 => Some(move_url_credentials),
        _ => None,
    }
}

pub type CodeStep = fn(&rusqlite::Connection, &std::path::Path) -> rusqlite::Result<()>;

/// Credentials in a repository's URL (`https://user:token@host/…`) leave
/// the database: for an http(s) address that has no other credentials
/// they move to a file of the credential store (`<data-dir>/credentials/`,
/// see `credstore`), which the repository then names as its token file and
/// which git is handed exactly as before; anywhere else git never used
/// them, and they are dropped. The address that stays is the same one
/// without them, with a `/` added when another registration of the same
/// branch already has that exact spelling.
fn move_url_credentials(
    conn: &rusqlite::Connection,
    data_dir: &std::path::Path,
) -> rusqlite::Result<()> {
    use crate::model::url;
    // The old values are overwritten, not merely freed (the WAL is
    // truncated once the migration is committed: `Store::migrate_from`).
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    type Row = (i64, String, String, String, bool);
    let rows: Vec<Row> = {
        let mut stmt = conn.prepare(
            "SELECT id, name, url, branch,
                    ssh_key_file IS NOT NULL OR token_file IS NOT NULL OR token_env IS NOT NULL
             FROM repositories ORDER BY id",
        )?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?
    };
    for (id, name, stored, branch, has_auth) in rows {
        if !url::has_credentials(&stored) {
            continue;
        }
        let (mut bare, userinfo) = match url::split_userinfo(&stored) {
            Some((bare, userinfo)) if !has_auth => (bare, Some(userinfo)),
            _ => (url::strip_credentials(&stored), None),
        };
        while conn.query_row(
            "SELECT count(*) FROM repositories WHERE url = ?1 AND branch = ?2 AND id != ?3",
            rusqlite::params![bare, branch, id],
            |r| r.get::<_, i64>(0),
        )? > 0
        {
            bare.push('/');
        }
        match userinfo {
            Some(userinfo) => {
                let file = super::credstore::store(data_dir, &name, &userinfo)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                conn.execute(
                    "UPDATE repositories SET url = ?2, token_file = ?3, token_username = ?4
                     WHERE id = ?1",
                    rusqlite::params![
                        id,
                        bare,
                        file.to_string_lossy(),
                        crate::model::git_auth::USERINFO_USER
                    ],
                )?;
            }
            None => {
                conn.execute(
                    "UPDATE repositories SET url = ?2 WHERE id = ?1",
                    rusqlite::params![id, bare],
                )?;
            }
        }
    }
    Ok(())
}

pub const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;
