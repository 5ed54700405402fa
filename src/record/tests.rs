use super::*;
use rusqlite::params;

use crate::config::registries::SecretRef;
use crate::model::git_auth::GitAuth;
use crate::model::settings::Mode;

/// A deployment's compose snapshot, read as the places that apply one do.
fn content(store: &Store, d: &Deployment) -> Option<String> {
    d.snapshot
        .as_deref()
        .and_then(|key| store.snapshot(key).unwrap())
}

fn new_repo<'a>(name: &'a str, url: &'a str, branch: &'a str) -> NewRepo<'a> {
    NewRepo {
        name,
        url,
        branch,
        webhook_secret_file: None,
        auth: &GitAuth::None,
        credential: None,
        webhook_secret: None,
    }
}

#[test]
fn a_new_database_is_ours_at_the_latest_version_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i32 = store
        .conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert!(dir.path().join("data/kedge.db").exists());
}

/// Regression: two processes opening one old database at once: the one
/// that waited for the write lock applied the migrations again, failed and
/// exited 1.
#[test]
fn a_migration_another_process_applied_meanwhile_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let stale = Store::open_file(&path, 1).unwrap();
    let believed = stale.schema_version().unwrap();
    assert_eq!(believed, 1);
    // The other process upgrades the file first.
    drop(Store::open(dir.path()).unwrap());
    stale.migrate_from(believed, LATEST_VERSION).unwrap();
    assert_eq!(stale.schema_version().unwrap(), LATEST_VERSION);
}

#[test]
fn a_version_1_database_is_upgraded_in_place_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v1 = Store::open_file(&path, 1).unwrap();
        assert_eq!(v1.schema_version().unwrap(), 1);
        // Written with version 1's own columns, as a Kedge of that time would have.
        v1.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at)
                     VALUES ('app', 'file:///srv/app.git', 'main', 1700000000000);
                 INSERT INTO deployments (repo_id, commit_hash, commit_message, status, trigger,
                                          started_at, finished_at, duration_ms, compose_snapshot)
                     VALUES (1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'first', 'success', 'new_commit',
                             1700000000000, 1700000001000, 1000, 'services: {}');",
            )
            .unwrap();
        let missing: rusqlite::Result<i64> =
            v1.conn
                .query_row("SELECT count(*) FROM repo_state", [], |r| r.get(0));
        assert!(missing.is_err(), "version 1 has no repo_state table");
    }

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let repos = store.repos().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0].name, "app");
    assert_eq!(repos[0].mode, None);
    let history = store.deployments(repos[0].id, 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].commit, "a".repeat(40));
    assert_eq!(history[0].status, DeploymentStatus::Success);
    assert_eq!(
        content(&store, &history[0]).as_deref(),
        Some("services: {}")
    );
    assert_eq!(history[0].services_changed, None);
    // The new tables work on the upgraded file.
    let state = RepoState {
        mode: Some(Mode::Notify),
        ..RepoState::default()
    };
    store.save_repo_state(repos[0].id, &state).unwrap();
    assert_eq!(
        store.repo("app").unwrap().unwrap().mode.map(Mode::as_str),
        Some("notify")
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_untouched() {
    for content in [
        b"not a database".to_vec(),
        b"this is a text file that happens to be called kedge.db\n".repeat(200),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        std::fs::write(&path, &content).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::NotSqlite { .. }), "{err:?}");
        assert!(
            err.to_string().contains("is not a SQLite database"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), content);
    }
}

/// Regression: an empty `kedge.db` was taken for a new database.
#[test]
fn an_empty_kedge_db_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    std::fs::write(&path, b"").unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("not a Kedge database"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(DB_FILE)]);
}

/// A new database appears under its name only once it is initialised, and
/// several processes creating it at once all end up with the same one.
#[test]
fn a_new_database_is_created_whole_even_by_racing_openers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let data = data.clone();
            std::thread::spawn(move || Store::open(&data).map(drop))
        })
        .collect();
    for o in openers {
        o.join().unwrap().unwrap();
    }
    let store = Store::open(&data).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new-"))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn a_foreign_sqlite_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_database_from_a_newer_kedge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    drop(Store::open(dir.path()).unwrap());
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 999").unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::TooNew { found: 999, .. }),
        "{err:?}"
    );
}

#[test]
fn duplicates_are_refused_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();

    let err = store
        .add_repo(&new_repo("app", "file:///r/other.git", "main"))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateName(ref n) if n == "app"),
        "{err:?}"
    );

    let err = store
        .add_repo(&new_repo("app2", "file:///r/app.git", "main"))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "file:///r/app.git (branch main) is already registered as 'app'"
    );
    let err = store
        .add_repo(&new_repo("app3", "/r/app.git", "main"))
        .unwrap_err();
    assert!(matches!(err, StoreError::DuplicateUrl { .. }), "{err:?}");
    assert_eq!(store.repos().unwrap().len(), 1);

    // The same URL on another branch is another deployment target.
    store
        .add_repo(&new_repo("app-staging", "file:///r/app.git", "staging"))
        .unwrap();
    let names: Vec<_> = store.repos().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["app", "app-staging"]);
}

#[test]
fn removing_a_repo_removes_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let id = store
        .begin_deployment(&NewDeployment {
            stack_id: repo.id,
            commit: "c1",
            message: "m",
            trigger: Trigger::NewCommit,
            compose_snapshot: None,
            rolled_back_from: None,
        })
        .unwrap();
    store
        .finish_deployment(id, DeploymentStatus::Success, &["web".into()], None)
        .unwrap();
    assert!(store.remove_repo("app").unwrap());
    assert!(!store.remove_repo("app").unwrap());
    let left: i64 = store
        .conn
        .query_row("SELECT count(*) FROM deployments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn interrupted_deployments_become_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let d = NewDeployment {
        stack_id: repo.id,
        commit: "c1",
        message: "m",
        trigger: Trigger::NewCommit,
        compose_snapshot: Some("{}"),
        rolled_back_from: None,
    };
    let done = store.begin_deployment(&d).unwrap();
    store
        .finish_deployment(done, DeploymentStatus::Success, &["web".into()], None)
        .unwrap();
    store.begin_deployment(&d).unwrap();
    // Another repository's apply in flight is its own lock holder's business.
    let other = store
        .add_repo(&new_repo("other", "file:///r/other.git", "main"))
        .unwrap();
    store
        .begin_deployment(&NewDeployment {
            stack_id: other.id,
            ..d.clone()
        })
        .unwrap();
    assert_eq!(store.fail_interrupted(repo.id).unwrap().len(), 1);
    assert!(store.fail_interrupted(repo.id).unwrap().is_empty());
    assert_eq!(
        store.deployments(other.id, 1).unwrap()[0].status,
        DeploymentStatus::InProgress
    );
    let history = store.deployments(repo.id, 10).unwrap();
    assert_eq!(history[0].status, DeploymentStatus::Failed);
    assert!(
        history[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
    assert_eq!(history[1].status, DeploymentStatus::Success);
    assert_eq!(history[1].services_changed, Some(vec!["web".to_string()]));
}

/// Regression: a status this Kedge did not know read as `failed`, a role
/// as `read`: an unknown value in a row is an error naming its column.
#[test]
fn an_unknown_value_in_a_row_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let id = store
        .begin_deployment(&NewDeployment {
            stack_id: repo.id,
            commit: "c1",
            message: "m",
            trigger: Trigger::Sync,
            compose_snapshot: None,
            rolled_back_from: None,
        })
        .unwrap();
    store
        .fail_deployment(id, &[], "boom", DeployStep::HealthGate)
        .unwrap();
    let d = store.deployments(repo.id, 1).unwrap().remove(0);
    assert_eq!(
        (d.status, d.trigger, d.failed_step),
        (
            DeploymentStatus::Failed,
            Trigger::Sync,
            Some(DeployStep::HealthGate)
        )
    );
    // What a newer Kedge's schema could hold, past this one's CHECKs.
    store
        .conn
        .execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    let unknown = |store: &Store| match store.deployments(repo.id, 1) {
        Err(StoreError::UnknownValue { column, value }) => (column, value),
        other => panic!("{other:?}"),
    };
    for (column, value) in [
        ("status", "paused"),
        ("trigger", "cron"),
        ("failed_step", "pull"),
    ] {
        store
            .conn
            .execute(
                &format!("UPDATE deployments SET {column} = ?1 WHERE id = ?2"),
                params![value, id],
            )
            .unwrap();
        assert_eq!(unknown(&store), (column, value.to_string()));
        let known = match column {
            "status" => "failed",
            "trigger" => "sync",
            _ => "health_gate",
        };
        store
            .conn
            .execute(
                &format!("UPDATE deployments SET {column} = ?1 WHERE id = ?2"),
                params![known, id],
            )
            .unwrap();
    }
    store
        .conn
        .execute("UPDATE deployments SET status = 'paused'", [])
        .unwrap();
    assert!(matches!(
        store.deploy_summaries(),
        Err(StoreError::UnknownValue {
            column: "status",
            ..
        })
    ));

    store.add_token("ops", Role::Admin, "h1").unwrap();
    store
        .conn
        .execute("UPDATE tokens SET role = 'owner'", [])
        .unwrap();
    let err = store.use_token("h1").unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownValue { column: "role", value } if value == "owner"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the database holds role 'owner', which this Kedge does not know"
    );
}

/// A mode, `drift.unhealthy` or `docker.target` this Kedge does not know
/// is an error too: a default would deploy or heal by a policy nobody set.
#[test]
fn an_unknown_setting_in_a_repository_state_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    store
        .conn
        .execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    for (column, value) in [("mode", "yolo"), ("unhealthy", "ignore"), ("target", "k8s")] {
        store
            .conn
            .execute(
                &format!(
                    "INSERT INTO stack_state (stack_id, updated_at, {column}) VALUES (?1, 0, ?2)
                     ON CONFLICT (stack_id) DO UPDATE SET {column} = excluded.{column}"
                ),
                params![repo.id, value],
            )
            .unwrap();
        let err = store.repo_state(repo.id).unwrap_err();
        assert!(
            matches!(&err, StoreError::UnknownValue { column: c, value: v } if *c == column && v == value),
            "{err:?}"
        );
        assert!(store.repo_states().is_err());
        store
            .conn
            .execute(&format!("UPDATE stack_state SET {column} = NULL"), [])
            .unwrap();
    }
    store
        .conn
        .execute("UPDATE stack_state SET mode = 'yolo'", [])
        .unwrap();
    assert!(matches!(
        store.repo("app"),
        Err(StoreError::UnknownValue { column: "mode", .. })
    ));
}

#[test]
fn repo_state_and_services_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    assert_eq!(store.repo_state(repo.id).unwrap(), RepoState::default());
    let state = RepoState {
        mode: Some(Mode::Auto),
        prune: Some(false),
        compose_files: Some(vec!["a.yaml".into(), "b.yaml".into()]),
        deployed_commit: Some("c1".into()),
        last_error: Some("boom".into()),
        checked_at: Some(2),
        remote_ok_at: Some(1),
        ..RepoState::default()
    };
    store.save_repo_state(repo.id, &state).unwrap();
    assert_eq!(store.repo_state(repo.id).unwrap(), state);
    assert_eq!(
        store.repo("app").unwrap().unwrap().mode.map(Mode::as_str),
        Some("auto")
    );

    let record = |name: &str, hash: &str, commit: &str| ServiceRecord {
        spec: crate::model::service::ServiceSpec {
            name: name.into(),
            hash: hash.into(),
            image: Some("busybox".into()),
            build: None,
            build_fingerprint: None,
            replicas: 1,
            restart: None,
            ignored: false,
        },
        commit: commit.into(),
        config_hash: Some("c0ffee".into()),
    };
    let mut services = std::collections::BTreeMap::new();
    services.insert("web".to_string(), record("web", "h1", "c1"));
    store.save_services(repo.id, &services).unwrap();
    assert_eq!(store.services(repo.id).unwrap(), services);
    services.clear();
    services.insert("api".to_string(), record("api", "h2", "c2"));
    store.save_services(repo.id, &services).unwrap();
    assert_eq!(store.services(repo.id).unwrap(), services);
}

#[test]
fn states_and_deploy_summaries_of_every_repository_in_one_query_each() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let app = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let idle = store
        .add_repo(&new_repo("idle", "file:///r/idle.git", "main"))
        .unwrap();
    let state = RepoState {
        deployed_commit: Some("c1".into()),
        remote_head: Some("c2".into()),
        ..RepoState::default()
    };
    store.save_repo_state(app.id, &state).unwrap();
    let states = store.repo_states().unwrap();
    assert_eq!(states.len(), 1, "no row for a repository never checked");
    assert_eq!(states[&app.id], state);

    let deploy = |commit: &str, trigger: Trigger, status: DeploymentStatus| {
        let id = store
            .begin_deployment(&NewDeployment {
                stack_id: app.id,
                commit,
                message: "m",
                trigger,
                compose_snapshot: None,
                rolled_back_from: None,
            })
            .unwrap();
        store.finish_deployment(id, status, &[], None).unwrap();
        store.deployments(app.id, 1).unwrap()[0].finished_at
    };
    let ok_at = deploy("c1", Trigger::NewCommit, DeploymentStatus::Success);
    deploy("c2", Trigger::NewCommit, DeploymentStatus::Failed);
    // The restore after the failure is not the last deployment `status` means.
    let restored_at = deploy("c1", Trigger::AutoRollback, DeploymentStatus::RolledBack);
    assert!(ok_at.is_some() && restored_at >= ok_at);
    let summaries = store.deploy_summaries().unwrap();
    assert_eq!(
        summaries[&app.id],
        DeploySummary {
            last_status: Some(DeploymentStatus::Failed),
            last_commit: Some("c2".into()),
            last_deployed_at: restored_at,
        }
    );
    assert_eq!(summaries[&idle.id], DeploySummary::default());
}

/// Version 3's repository states gain when the remote last answered: the
/// check time, unless the last error says the remote did not answer.
#[test]
fn a_version_3_state_learns_when_the_remote_last_answered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v3 = Store::open_file(&path, 3).unwrap();
        v3.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at)
                     VALUES ('ok', '/r/ok', 'main', 1), ('down', '/r/down', 'main', 1),
                            ('broken', '/r/broken', 'main', 1);
                 INSERT INTO repo_state (repo_id, deployed_commit, last_error, checked_at, updated_at)
                     VALUES (1, 'c1', NULL, 100, 100),
                            (2, 'c2', 'cannot reach remote /r/down: timed out', 200, 200),
                            (3, 'c3', 'deployment of c3 failed', 300, 300);",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let state = |name: &str| {
        let repo = store.repo(name).unwrap().unwrap();
        store.repo_state(repo.id).unwrap()
    };
    let ok = state("ok");
    assert_eq!(
        (ok.deployed_commit.as_deref(), ok.remote_ok_at),
        (Some("c1"), Some(100))
    );
    assert!(!ok.remote_failing());
    let down = state("down");
    assert_eq!(
        (down.deployed_commit.as_deref(), down.remote_ok_at),
        (Some("c2"), None)
    );
    assert!(down.remote_failing());
    assert_eq!(state("broken").remote_ok_at, Some(300));
}

/// Each transition changes its own columns and leaves the others alone.
#[test]
fn state_transitions_change_only_their_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let id = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap()
        .id;
    store.mark_checked(id, "h1").unwrap();
    store
        .set_rendered(
            id,
            &crate::model::settings::RenderedSettings {
                mode: Default::default(),
                prune: true,
                unhealthy: Default::default(),
                target: Default::default(),
                host: "local".into(),
                windows: crate::model::settings::SyncWindows {
                    allow: vec!["Mon-Fri 08:00-18:00 Europe/Berlin".into()],
                    deny: vec![],
                    heal_in_window_only: true,
                },
            },
        )
        .unwrap();
    store
        .mark_deployed(id, "c1", "proj", &["compose.yaml".into()], None)
        .unwrap();
    // The sync windows and a commit waiting for them, kept and cleared.
    let s = store.repo_state(id).unwrap();
    assert_eq!(s.windows.allow, ["Mon-Fri 08:00-18:00 Europe/Berlin"]);
    assert!(s.windows.heal_in_window_only);
    assert_eq!(s.waiting, None);
    store.mark_waiting(id, Some("c2"), Some(1_000)).unwrap();
    assert_eq!(
        store.repo_state(id).unwrap().waiting,
        Some(("c2".to_string(), Some(1_000)))
    );
    store.mark_waiting(id, Some("c2"), None).unwrap();
    assert_eq!(
        store.repo_state(id).unwrap().waiting,
        Some(("c2".to_string(), None))
    );
    store.mark_waiting(id, None, None).unwrap();
    assert_eq!(store.repo_state(id).unwrap().waiting, None);
    assert_eq!(s.remote_head.as_deref(), Some("h1"));
    assert_eq!(s.remote_ok_at, s.checked_at);
    assert_eq!((s.mode, s.prune), (Some(Mode::Auto), Some(true)));
    assert_eq!(s.deployed_commit.as_deref(), Some("c1"));
    assert_eq!(s.target_commit.as_deref(), Some("c1"));
    assert_eq!(s.compose_files, Some(vec!["compose.yaml".to_string()]));

    store.mark_failed(id, "boom").unwrap();
    store.mark_settled(id, "c2", Some("bad commit")).unwrap();
    let s = store.repo_state(id).unwrap();
    assert_eq!(
        s.deployed_commit.as_deref(),
        Some("c1"),
        "a failure keeps what runs"
    );
    assert_eq!(s.target_commit.as_deref(), Some("c2"));
    assert_eq!(s.last_error.as_deref(), Some("bad commit"));

    store.pin(id, "c0", Some("h2")).unwrap();
    let s = store.repo_state(id).unwrap();
    assert_eq!(
        (
            s.pinned_commit.as_deref(),
            s.pinned_at_head.as_deref(),
            s.remote_head.as_deref()
        ),
        (Some("c0"), Some("h2"), Some("h2"))
    );
    store.release_pin(id).unwrap();
    store.clear_error(id).unwrap();
    let s = store.repo_state(id).unwrap();
    assert_eq!(
        (s.pinned_commit, s.pinned_at_head, s.target_commit),
        (None, None, None)
    );
    assert_eq!(s.last_error, None);
    assert_eq!(s.project.as_deref(), Some("proj"));

    // Times are milliseconds: the failed check must come after the last answer.
    std::thread::sleep(std::time::Duration::from_millis(2));
    store
        .mark_git_error(id, "cannot reach remote", true, false)
        .unwrap();
    assert!(store.repo_state(id).unwrap().remote_failing());
}

#[test]
fn events_page_oldest_first_and_follow_by_id() {
    use crate::events::{EventKind, NewEvent, Severity};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for (repo, kind) in [
        ("app", EventKind::DriftDetected),
        ("other", EventKind::DeployStarted),
        ("app", EventKind::DriftHealed),
        ("app", EventKind::DeployFailed),
    ] {
        let e = NewEvent::new(repo, kind, format!("{kind}"))
            .service("web")
            .commit("c1")
            .field("n", ids.len());
        ids.push(store.add_event(&e).unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let q = |repo: Option<&str>, after_id: Option<i64>, limit: usize| EventQuery {
        stack: None,
        repo: repo.map(String::from),
        since: None,
        after_id,
        limit,
    };
    // The newest two of app's, oldest first.
    let page = store.events(&q(Some("app"), None, 2)).unwrap();
    let kinds: Vec<EventKind> = page.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::DriftHealed, EventKind::DeployFailed]);
    assert_eq!(page[1].severity, Severity::Error);
    assert_eq!(page[1].commit.as_deref(), Some("c1"));
    assert_eq!(page[1].fields["n"], 3);
    // A follower reads forward from the last id it saw.
    let next = store.events(&q(None, Some(ids[1]), 10)).unwrap();
    assert_eq!(next.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..]);
    assert_eq!(store.last_event_id().unwrap(), ids[3]);
    // Retention deletes by time; ids are never handed out again.
    assert_eq!(store.delete_events_before(now_ms() + 1).unwrap(), 4);
    let again = store
        .add_event(&NewEvent::new("app", EventKind::RepoAdded, "x"))
        .unwrap();
    assert!(again > ids[3]);
}

/// The events of a version-5 database move to the event log, in order,
/// with their kinds mapped, and the repository by name.
#[test]
fn a_version_5_database_keeps_its_events() {
    use crate::events::{EventKind, Severity};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v5 = Store::open_file(&path, 5).unwrap();
        v5.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at) VALUES ('app', '/r/app', 'main', 1);
                 INSERT INTO events (repo_id, at, kind, service, detail) VALUES
                     (1, 10, 'drift', 'web', 'stopped: app-web-1 is exited'),
                     (1, 20, 'heal', 'web', 'start app-web-1: ok in 0.10 s'),
                     (1, 30, 'heal', 'api', 'create api: failed: no such image'),
                     (1, 40, 'crash_loop', 'web', 'crash-looping');",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let events = store
        .events(&EventQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let got: Vec<(i64, &str, EventKind, Severity, &str)> = events
        .iter()
        .map(|e| {
            (
                e.time,
                e.repo.as_str(),
                e.kind,
                e.severity,
                e.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                10,
                "app",
                EventKind::DriftDetected,
                Severity::Warning,
                "stopped: app-web-1 is exited"
            ),
            (
                20,
                "app",
                EventKind::DriftHealed,
                Severity::Info,
                "start app-web-1: ok in 0.10 s"
            ),
            (
                30,
                "app",
                EventKind::HealFailed,
                Severity::Error,
                "create api: failed: no such image"
            ),
            (
                40,
                "app",
                EventKind::CrashLoop,
                Severity::Error,
                "crash-looping"
            ),
        ]
    );
}

#[test]
fn a_data_dir_kedge_creates_and_its_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/data");
    let mut store = Store::open(&data).unwrap();
    store
        .add_repo(&new_repo("app", "https://x.example/app", "main"))
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let wal = data.join(format!("{DB_FILE}-wal"));
    assert_eq!(
        mode(&wal),
        0o600,
        "SQLite gives the WAL the database's mode"
    );
    drop(store);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(DB_FILE)), 0o600);
    // The database works and is ours, reopened.
    let store = Store::open(&data).unwrap();
    assert_eq!(store.repos().unwrap().len(), 1);

    // A data dir the operator made keeps its mode.
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o750)).unwrap();
    Store::open(&own).unwrap();
    assert_eq!(mode(&own), 0o750);
    assert_eq!(mode(&own.join(DB_FILE)), 0o600);
}

#[test]
fn service_rows_of_an_older_kedge_read_without_a_build_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    // The spec JSON as versions before build fingerprints wrote it.
    store
        .conn
        .execute(
            "INSERT INTO services (stack_id, service, hash, commit_hash, spec, config_hash)
             VALUES (?1, 'api', 'h1', 'c1', ?2, NULL)",
            params![
                repo.id,
                r#"{"name":"api","hash":"h1","image":null,"build":"api@t1","replicas":1,"restart":null,"ignored":false}"#
            ],
        )
        .unwrap();
    let services = store.services(repo.id).unwrap();
    assert_eq!(services["api"].spec.build.as_deref(), Some("api@t1"));
    assert_eq!(services["api"].spec.build_fingerprint, None);

    // A fingerprint written now is read back.
    let mut updated = services.clone();
    updated.get_mut("api").unwrap().spec.build_fingerprint = Some("f1".into());
    store.save_services(repo.id, &updated).unwrap();
    assert_eq!(store.services(repo.id).unwrap(), updated);
}

#[test]
fn a_version_3_database_moves_its_snapshots_into_the_shared_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v3 = Store::open_file(&path, 3).unwrap();
        // Three deployments as version 3 stored them: two share a snapshot.
        v3.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at)
                     VALUES ('app', 'file:///srv/app.git', 'main', 1700000000000);
                 INSERT INTO deployments (repo_id, commit_hash, status, trigger, started_at, compose_snapshot)
                     VALUES (1, 'c1', 'success', 'new_commit', 1, '{\"services\":{\"a\":{}}}'),
                            (1, 'c2', 'success', 'new_commit', 2, '{\"services\":{\"a\":{}}}'),
                            (1, 'c3', 'failed', 'new_commit', 3, '{\"services\":{\"b\":{}}}'),
                            (1, 'c4', 'failed', 'new_commit', 4, NULL);",
            )
            .unwrap();
    }

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), LATEST_VERSION);
    let snapshots: Vec<(String, Option<String>)> = store
        .deployments(1, 10)
        .unwrap()
        .into_iter()
        .map(|d| (content(&store, &d), d.commit))
        .map(|(c, commit)| (commit, c))
        .collect();
    let a = Some(r#"{"services":{"a":{}}}"#.to_string());
    let b = Some(r#"{"services":{"b":{}}}"#.to_string());
    assert_eq!(
        snapshots,
        [
            ("c4".to_string(), None),
            ("c3".to_string(), b.clone()),
            ("c2".to_string(), a.clone()),
            ("c1".to_string(), a.clone()),
        ]
    );
    let count = |sql: &str| -> i64 { store.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM snapshots"), 2);
    assert_eq!(
        count("SELECT count(*) FROM deployments WHERE compose_snapshot IS NOT NULL"),
        0,
        "the per-deployment copies are gone"
    );
    let key: String = store
        .conn
        .query_row(
            "SELECT snapshot FROM deployments WHERE commit_hash = 'c1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(key, snapshot_key(a.as_deref().unwrap()));
}

#[test]
fn deployments_of_the_same_content_store_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let app = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let other = store
        .add_repo(&new_repo("other", "file:///r/other.git", "main"))
        .unwrap();
    let big = format!("{{\"services\":{{}},\"pad\":\"{}\"}}", "x".repeat(100_000));
    let deploy = |repo_id: i64, commit: &str, snapshot: &str| {
        store
            .begin_deployment(&NewDeployment {
                stack_id: repo_id,
                commit,
                message: "m",
                trigger: Trigger::Sync,
                compose_snapshot: Some(snapshot),
                rolled_back_from: None,
            })
            .unwrap()
    };
    deploy(app.id, "c1", &big);
    deploy(app.id, "c2", &big);
    deploy(other.id, "c1", &big);
    deploy(app.id, "c3", "{}");
    let count = |store: &Store| -> i64 {
        store
            .conn
            .query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&store), 2);
    for d in store.deployments(app.id, 10).unwrap() {
        let want = if d.commit == "c3" { "{}" } else { big.as_str() };
        assert_eq!(content(&store, &d).as_deref(), Some(want), "{}", d.commit);
    }

    // Removing a repository keeps the snapshots others still use.
    store.remove_repo("app").unwrap();
    assert_eq!(count(&store), 1);
    assert_eq!(
        content(&store, &store.deployments(other.id, 10).unwrap()[0]).as_deref(),
        Some(big.as_str())
    );
}

#[test]
fn a_repository_keeps_the_path_of_its_webhook_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let file = std::path::Path::new("/etc/kedge/app.hook");
    let added = store
        .add_repo(&NewRepo {
            webhook_secret_file: Some(file),
            ..new_repo("app", "https://h/app.git", "main")
        })
        .unwrap();
    assert_eq!(added.webhook_secret_file.as_deref(), Some(file));
    store
        .add_repo(&new_repo("plain", "https://h/plain.git", "main"))
        .unwrap();
    let repos = store.repos().unwrap();
    assert_eq!(repos[0].webhook_secret_file.as_deref(), Some(file));
    assert_eq!(repos[1].webhook_secret_file, None);
    assert_eq!(store.repo("app").unwrap().unwrap(), added);
}

#[test]
fn a_repository_keeps_where_its_credentials_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let cases = [
        ("none", GitAuth::None),
        (
            "key",
            GitAuth::SshKey {
                key: "/keys/deploy".into(),
                known_hosts: None,
            },
        ),
        (
            "pinned",
            GitAuth::SshKey {
                key: "/keys/deploy".into(),
                known_hosts: Some("/keys/known_hosts".into()),
            },
        ),
        (
            "file",
            GitAuth::Token {
                token: SecretRef::File("/keys/token".into()),
                username: "bot".into(),
            },
        ),
        (
            "var",
            GitAuth::Token {
                token: SecretRef::Env("GIT_TOKEN".into()),
                username: "x-access-token".into(),
            },
        ),
    ];
    for (name, auth) in &cases {
        let url = format!("https://h/{name}.git");
        let added = store
            .add_repo(&NewRepo {
                auth,
                ..new_repo(name, &url, "main")
            })
            .unwrap();
        assert_eq!(&added.auth, auth);
    }
    for (name, auth) in &cases {
        assert_eq!(&store.repo(name).unwrap().unwrap().auth, auth, "{name}");
    }
}

#[test]
fn a_repository_keeps_the_names_of_its_credential_and_webhook_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let added = store
        .add_repo(&NewRepo {
            credential: Some("gh"),
            webhook_secret: Some("hook"),
            ..new_repo("app", "https://h/app.git", "main")
        })
        .unwrap();
    let read = store.repo("app").unwrap().unwrap();
    assert_eq!(read, added);
    assert_eq!(read.credential.as_deref(), Some("gh"));
    assert_eq!(read.webhook_secret.as_deref(), Some("hook"));
}

/// Regression: a `write` token could add repositories; roles are now
/// read, deploy and admin, and a stored `write` token is an admin.
#[test]
fn write_tokens_of_an_older_database_become_admin_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let old = Store::open_file(&path, 12).unwrap();
        old.conn
            .execute_batch(
                "INSERT INTO tokens (name, role, hash, created_at) VALUES
                     ('ops', 'write', 'h1', 1), ('viewer', 'read', 'h2', 2);",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let roles: Vec<(String, Role)> = store
        .tokens()
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.role))
        .collect();
    assert_eq!(
        roles,
        [("ops".into(), Role::Admin), ("viewer".into(), Role::Read)]
    );
    assert_eq!(store.use_token("h1").unwrap().unwrap().role, Role::Admin);
    assert!(store.add_token("dep", Role::Deploy, "h3").unwrap());
    assert_eq!(store.use_token("h3").unwrap().unwrap().role, Role::Deploy);
}

/// Regression: credentials given in a repository URL were stored in
/// `repositories.url`, in clear. The migration moves them to the
/// credential store and keeps every row; the token file holds exactly
/// what git was sent before.
#[test]
fn url_credentials_leave_the_database_for_the_credential_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let old = Store::open_file(&path, 13).unwrap();
        old.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at) VALUES
                     ('pw', 'https://bot:s3cr%40t@h/app.git', 'main', 1),
                     ('lone', 'http://ghp_tok3n@127.0.0.1:8080/lone.git', 'main', 2),
                     ('plain', 'https://h/dup.git', 'main', 3),
                     ('dup', 'https://u:dupsecret@h/dup.git', 'main', 4),
                     ('ssh', 'ssh://git:sshpass@h/app.git', 'main', 5),
                     ('keyed', 'https://x:keyedpass@h/keyed.git', 'main', 6);
                 UPDATE repositories SET token_env = 'T', token_username = 'bot'
                     WHERE name = 'keyed';",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let repo = |name: &str| store.repo(name).unwrap().unwrap();
    let token_file = |name: &str| match repo(name).auth {
        GitAuth::Token {
            token: SecretRef::File(file),
            username,
        } => {
            assert_eq!(username, crate::model::git_auth::USERINFO_USER);
            assert!(
                file.starts_with(dir.path().join(credstore::DIR)),
                "{file:?}"
            );
            std::fs::read_to_string(file).unwrap()
        }
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(repo("pw").url.expose(), "https://h/app.git");
    assert_eq!(token_file("pw"), "bot:s3cr@t");
    assert_eq!(repo("lone").url.expose(), "http://127.0.0.1:8080/lone.git");
    assert_eq!(token_file("lone"), "ghp_tok3n:");
    // Another registration has the bare spelling: the same address, told apart.
    assert_eq!(repo("plain").url.expose(), "https://h/dup.git");
    assert_eq!(repo("dup").url.expose(), "https://h/dup.git/");
    assert_eq!(token_file("dup"), "u:dupsecret");
    // Where git never used them they are dropped; other credentials stay.
    assert_eq!(repo("ssh").url.expose(), "ssh://git@h/app.git");
    assert_eq!(repo("ssh").auth, GitAuth::None);
    assert_eq!(repo("keyed").url.expose(), "https://h/keyed.git");
    assert_eq!(
        repo("keyed").auth,
        GitAuth::Token {
            token: SecretRef::Env("T".into()),
            username: "bot".into()
        }
    );
    let mut db = std::fs::read(&path).unwrap();
    db.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
    let db = String::from_utf8_lossy(&db);
    for secret in ["s3cr", "ghp_tok3n", "dupsecret", "sshpass", "keyedpass"] {
        assert!(!db.contains(secret), "{secret} is still in the database");
    }
    assert_eq!(store.repos().unwrap().len(), 6);
}

#[test]
fn a_deployment_never_serialises_its_compose_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let repo = store
        .add_repo(&new_repo("app", "https://h/app.git", "main"))
        .unwrap();
    store
        .begin_deployment(&NewDeployment {
            stack_id: repo.id,
            commit: "abc",
            message: "m",
            trigger: Trigger::Sync,
            compose_snapshot: Some("services: {x: {environment: {PW: hunter2}}}"),
            rolled_back_from: None,
        })
        .unwrap();
    let d = store.deployments(repo.id, 1).unwrap().remove(0);
    assert!(d.snapshot.is_some());
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        !json.contains("hunter2") && !json.contains("snapshot"),
        "{json}"
    );
}

/// Regression: listing a repository's deployments (history, status, the
/// dashboard, a rollback's commit lookup) read every deployment's compose
/// snapshot, megabytes each, and `Deployment` serialised it.
#[test]
fn a_listing_of_deployments_reads_no_compose_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let app = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let big = format!("{{\"services\":{{}},\"pad\":\"{}\"}}", "x".repeat(100_000));
    store
        .begin_deployment(&NewDeployment {
            stack_id: app.id,
            commit: "c1",
            message: "m",
            trigger: Trigger::Sync,
            compose_snapshot: Some(&big),
            rolled_back_from: None,
        })
        .unwrap();
    let listed = store.deployments(app.id, 10).unwrap();
    assert!(
        !format!("{listed:?}").contains("xxxx"),
        "the content was read"
    );
    let json = serde_json::to_value(&listed[0]).unwrap();
    assert!(json.get("compose_snapshot").is_none(), "{json}");
    assert!(json.get("snapshot").is_none(), "{json}");
    // What applies it reads it by its key.
    assert_eq!(content(&store, &listed[0]).as_deref(), Some(big.as_str()));
}

/// `history.retention`: old deployments go, with the snapshots only they
/// used; what a repository stands on stays however old.
#[test]
fn retention_deletes_old_deployments_but_keeps_last_good_pinned_deployed_and_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let app = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap();
    let other = store
        .add_repo(&new_repo("other", "file:///r/other.git", "main"))
        .unwrap();
    // (repo, commit, status, finished days ago; None: still running)
    let rows: &[(i64, &str, &str, Option<i64>)] = &[
        (app.id, "old1", "success", Some(200)),
        (app.id, "pinned", "rolled_back", Some(190)),
        (app.id, "deployed", "success", Some(180)),
        (app.id, "old2", "failed", Some(170)),
        (app.id, "lastgood", "success", Some(160)),
        (app.id, "deployed", "failed", Some(150)),
        (app.id, "running", "in_progress", None),
        (app.id, "recent", "failed", Some(1)),
        (other.id, "o1", "success", Some(300)),
        (other.id, "o2", "success", Some(200)),
    ];
    let day = 86_400_000;
    let now = now_ms();
    for (repo_id, commit, status, ago) in rows {
        let id = store
            .begin_deployment(&NewDeployment {
                stack_id: *repo_id,
                commit,
                message: "m",
                trigger: Trigger::NewCommit,
                compose_snapshot: Some(&format!("{{\"c\":\"{commit}\"}}")),
                rolled_back_from: None,
            })
            .unwrap();
        let at = ago.map(|a| now - a * day);
        store
            .conn
            .execute(
                "UPDATE deployments SET status = ?2, started_at = coalesce(?3, ?4), finished_at = ?3
                 WHERE id = ?1",
                params![id, status, at, now - 400 * day],
            )
            .unwrap();
    }
    // Deployed is not the newest good one here: a pass after `lastgood`
    // deployed it again (its re-deploy failed and was restored).
    store
        .mark_deployed(app.id, "deployed", "app", &[], None)
        .unwrap();
    store.pin(app.id, "pinned", None).unwrap();

    let (deployments, snapshots) = store.delete_deployments_before(now - 90 * day).unwrap();
    let left = |repo_id: i64| -> Vec<String> {
        let mut commits: Vec<String> = store
            .deployments(repo_id, 100)
            .unwrap()
            .into_iter()
            .map(|d| d.commit)
            .collect();
        commits.reverse();
        commits
    };
    assert_eq!(
        left(app.id),
        [
            "pinned", "deployed", "lastgood", "deployed", "running", "recent"
        ]
    );
    // `other` keeps its last good deployment only.
    assert_eq!(left(other.id), ["o2"]);
    assert_eq!((deployments, snapshots), (3, 3));
    let stored: Vec<String> = store
        .conn
        .prepare("SELECT content FROM snapshots ORDER BY content")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for gone in ["old1", "old2", "o1"] {
        assert!(
            !stored.iter().any(|s| s.contains(&format!("\"{gone}\""))),
            "{gone}: {stored:?}"
        );
    }
    assert_eq!(stored.len(), 6, "{stored:?}");
    // Nothing more to do: a second pass deletes nothing.
    assert_eq!(
        store.delete_deployments_before(now - 90 * day).unwrap(),
        (0, 0)
    );
}

/// A commit that changes none of the stack's inputs moves what runs, not
/// the deployment: history, the deployed commit and its inputs stay.
#[test]
fn mark_unchanged_moves_what_runs_and_keeps_the_deployment() {
    use crate::model::stack_inputs::StackInputs;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let id = store
        .add_repo(&new_repo("app", "file:///r/app.git", "main"))
        .unwrap()
        .id;
    let inputs = StackInputs {
        paths: vec!["compose.yaml".into(), "kedge.yaml".into()],
        fingerprint: "f1".into(),
    };
    store
        .mark_deployed(id, "c1", "app", &["compose.yaml".into()], Some(&inputs))
        .unwrap();
    store.mark_failed(id, "c2 failed").unwrap();
    store.mark_unchanged(id, "c3").unwrap();
    let s = store.repo_state(id).unwrap();
    assert_eq!(s.deployed_commit.as_deref(), Some("c1"));
    assert_eq!(s.synced_commit.as_deref(), Some("c3"));
    assert_eq!(s.target_commit.as_deref(), Some("c3"));
    assert_eq!(s.inputs.as_ref(), Some(&inputs));
    assert_eq!(s.last_error, None, "what runs is what the head says");
    assert!(s.runs("c3") && s.runs("c1") && !s.runs("c2"));

    // A deployment without known inputs forgets the old ones.
    store
        .mark_deployed(id, "c4", "app", &["compose.yaml".into()], None)
        .unwrap();
    let s = store.repo_state(id).unwrap();
    assert_eq!((s.synced_commit.as_deref(), s.inputs), (Some("c4"), None));
}

/// Migration 17: a stack deployed before it runs its deployed commit.
#[test]
fn a_version_16_state_runs_its_deployed_commit_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v16 = Store::open_file(&path, 16).unwrap();
        v16.conn
            .execute_batch(
                "INSERT INTO repositories (name, url, branch, created_at)
                     VALUES ('app', 'file:///srv/app.git', 'main', 1700000000000);
                 INSERT INTO repo_state (repo_id, deployed_commit, target_commit, updated_at)
                     VALUES (1, 'c1', 'c1', 1700000000000);",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let s = store.repo_state(1).unwrap();
    assert_eq!(s.synced_commit.as_deref(), Some("c1"));
    assert_eq!(s.inputs, None);
}

/// Migration 18: every repository becomes its root stack under its own id
/// and name; its state, services and deployments are the stack's.
#[test]
fn a_version_17_repository_becomes_its_root_stack_keeping_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let v17 = Store::open_file(&path, 17).unwrap();
        v17.conn
            .execute_batch(
                "INSERT INTO repositories (id, name, url, branch, created_at)
                     VALUES (3, 'app', 'file:///srv/app.git', 'main', 1700000000000);
                 INSERT INTO repo_state (repo_id, deployed_commit, synced_commit, pinned_commit,
                                         project, updated_at)
                     VALUES (3, 'c2', 'c2', 'c2', 'app', 1700000000000);
                 INSERT INTO services (repo_id, service, hash, commit_hash, spec, config_hash)
                     VALUES (3, 'web', 'h1', 'c1',
                             '{\"name\":\"web\",\"hash\":\"h1\",\"image\":\"nginx\",\"build\":null,\"replicas\":1,\"restart\":null,\"ignored\":false}',
                             'cfg1');
                 INSERT INTO deployments (id, repo_id, commit_hash, commit_message, status, trigger,
                                          started_at, finished_at)
                     VALUES (7, 3, 'c1', 'first', 'success', 'new_commit', 1, 2),
                            (8, 3, 'c2', 'second', 'success', 'rollback', 3, 4);",
            )
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    let stacks: Vec<(i64, i64, String, String, bool)> = store
        .conn
        .prepare("SELECT id, repo_id, name, path, root FROM stacks")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // Its row stores no name (migration 19): it reads as the repository's.
    assert_eq!(stacks, [(3, 3, String::new(), String::new(), true)]);
    assert_eq!(store.stacks(Some(3)).unwrap()[0].name, "app");
    let state = store.repo_state(3).unwrap();
    assert_eq!(
        (
            state.deployed_commit.as_deref(),
            state.pinned_commit.as_deref()
        ),
        (Some("c2"), Some("c2"))
    );
    assert_eq!(
        store.services(3).unwrap()["web"].config_hash.as_deref(),
        Some("cfg1")
    );
    let history = store.deployments(3, 10).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|d| (d.id, d.commit.as_str()))
            .collect::<Vec<_>>(),
        [(8, "c2"), (7, "c1")]
    );

    // A repository added after a stack took the next id gets one free in
    // both tables, and its root stack shares it.
    store
        .conn
        .execute(
            "INSERT INTO stacks (id, repo_id, name, path, created_at) VALUES (4, 3, 'db', 'stacks/db', 1)",
            [],
        )
        .unwrap();
    let other = store
        .add_repo(&new_repo("other", "file:///srv/other.git", "main"))
        .unwrap();
    assert_eq!(other.id, 5);
    let root: (i64, String, bool) = store
        .conn
        .query_row(
            "SELECT repo_id, name, root FROM stacks WHERE id = 5",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(root, (5, String::new(), true));
    // Renamed, the root stack follows; removed, its stacks go with it.
    store.rename_repo("other", "renamed").unwrap();
    assert_eq!(store.stacks(Some(5)).unwrap()[0].name, "renamed");
    assert!(store.remove_repo("app").unwrap());
    let left: i64 = store
        .conn
        .query_row("SELECT count(*) FROM stacks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1, "app's root stack and db went with it");
    assert!(store.deployments(3, 10).unwrap().is_empty());
}
