//! fleet.md §1 end to end: one repository, several stacks. Discovery and
//! an explicit entry, one fetch for all of them, a commit redeploying only
//! the stacks whose inputs it changes, orphans, and `after:` order.

use std::collections::BTreeMap;

use crate::support::compose_calls::ComposeCalls;
use crate::support::docker::IMAGE_1;
use crate::support::*;

fn sleeper(extra: &str) -> String {
    format!("    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n{extra}")
}

/// A homelab repository: `web` (a bind-mounted file and a `configs:`
/// file), `db` (two compose files and a profile), `cache` (the env file
/// shared from the root), and a template directory discovery leaves out.
fn monorepo() -> Vec<(&'static str, String)> {
    vec![
        (
            "kedge.yaml",
            "discover:\n  - path: \"stacks/*\"\n    exclude: [\"stacks/_*\"]\nstacks:\n  - path: stacks/db\n    compose_file: [compose.yaml, compose.extra.yaml]\n    profiles: [extra]\ndefaults:\n  deploy:\n    stable_for: 0s\n".into(),
        ),
        ("common.env", "LEVEL=1\n".into()),
        ("README.md", "a homelab\n".into()),
        (
            "stacks/web/compose.yaml",
            format!(
                "services:\n  web:\n{}  api:\n{}  worker:\n{}configs:\n  api:\n    file: ./api.conf\n",
                sleeper("    volumes: ['./site.conf:/etc/site.conf:ro']\n"),
                sleeper("    configs: [{source: api, target: /etc/api.conf}]\n"),
                sleeper(""),
            ),
        ),
        ("stacks/web/site.conf", "site v1\n".into()),
        ("stacks/web/api.conf", "api v1\n".into()),
        (
            "stacks/db/compose.yaml",
            format!("services:\n  db:\n{}", sleeper("    environment: [ROLE=db]\n")),
        ),
        (
            "stacks/db/compose.extra.yaml",
            format!("services:\n  extra:\n{}", sleeper("    profiles: [extra]\n")),
        ),
        (
            "stacks/cache/compose.yaml",
            format!(
                "services:\n  cache:\n{}  side:\n{}",
                sleeper("    env_file: ../../common.env\n"),
                sleeper("")
            ),
        ),
        (
            "stacks/_template/compose.yaml",
            format!("services:\n  nothing:\n{}", sleeper("")),
        ),
    ]
}

/// Container ids by service of a compose project.
fn ids(project: &ComposeProject) -> BTreeMap<String, String> {
    project
        .running()
        .into_iter()
        .map(|c| (c.service().to_string(), c.id))
        .collect()
}

/// A stack's deployments, newest first; none while it is not registered.
fn deployments(k: &Kedge, address: &str) -> Vec<serde_json::Value> {
    let out = k.run(["history", "--repo", address, "-o", "json"]);
    if out.code != Some(0) {
        return Vec::new();
    }
    out.json().as_array().cloned().unwrap_or_default()
}

#[test]
fn a_monorepo_deploys_each_stack_and_a_commit_redeploys_only_what_it_touches() {
    require_docker();
    let compose = ComposeCalls::new(None);
    let k = Kedge::new().env("DOCKER_CONFIG", &compose.config_dir().to_string_lossy());
    let name = unique_name("mono");
    let remote = GitRemote::new(&name);
    for (path, text) in monorepo() {
        remote.write(path, &text);
    }
    remote.commit("a homelab");
    let web = ComposeProject::named(&format!("{name}-web"));
    let db = ComposeProject::named(&format!("{name}-db"));
    let cache = ComposeProject::named(&format!("{name}-cache"));
    let _template = ComposeProject::named(&format!("{name}-_template"));
    k.run(["repo", "add", &remote.url()]).success();
    let token = k.token("mono-read", "read");
    let api = k.serve_api(&["--poll-interval", "300ms", "--check-interval", "1h"], &[]);

    let stacks = wait_for(120, "three stacks deployed", || {
        let (w, d, c) = (ids(&web), ids(&db), ids(&cache));
        (w.len() == 3 && d.len() == 2 && c.len() == 2).then_some((w, d, c))
    });
    for stack in ["web", "db", "cache"] {
        wait_for(60, &format!("{stack} deployed"), || {
            let h = deployments(&k, &format!("{name}/{stack}"));
            (h.len() == 1 && h[0]["status"] == "success").then_some(())
        });
    }
    let list = k
        .run(["stack", "list", "--repo", &name, "-o", "json"])
        .json();
    let rows: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["stack"].as_str().unwrap().to_string(),
                r["path"].as_str().unwrap().to_string(),
                r["project"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "cache".into(),
                "stacks/cache".into(),
                format!("{name}-cache")
            ),
            ("db".into(), "stacks/db".into(), format!("{name}-db")),
            ("web".into(), "stacks/web".into(), format!("{name}-web")),
        ]
    );
    let (web1, db1, cache1) = stacks;
    // The per-stack routes, and the per-repository ones naming the stacks.
    let db_status = api.get(&format!("/api/v1/stacks/{name}/db/status"), &token);
    assert_eq!(db_status.status, 200, "{db_status:?}");
    assert_eq!(db_status.json()["stack"], "db");
    assert_eq!(db_status.json()["sync_state"], "synced", "{db_status:?}");
    let listed = api.get(&format!("/api/v1/repos/{name}/stacks"), &token);
    assert_eq!(
        listed.json().as_array().map(Vec::len),
        Some(3),
        "{listed:?}"
    );
    let whole = api.get(&format!("/api/v1/repos/{name}"), &token);
    whole.refused(409);
    assert!(
        whole.body.contains("several stacks (cache, db, web)"),
        "{whole:?}"
    );
    api.get(&format!("/api/v1/stacks/{name}/nope/history"), &token)
        .refused(404);
    // The template is not a stack.
    assert!(_template.running().is_empty());

    // Only db's files: db alone deploys, nothing else runs compose.
    let before = compose.calls().len();
    remote.write(
        "stacks/db/compose.yaml",
        &format!(
            "services:\n  db:\n{}",
            sleeper("    environment: [ROLE=primary]\n")
        ),
    );
    remote.commit("db: primary");
    wait_for(60, "db redeployed", || {
        let h = deployments(&k, &format!("{name}/db"));
        (h.len() == 2 && h[0]["status"] == "success").then_some(())
    });
    let db2 = ids(&db);
    assert_ne!(db2["db"], db1["db"]);
    assert_eq!(
        db2["extra"], db1["extra"],
        "db's other service keeps running"
    );
    assert_eq!(ids(&web), web1);
    assert_eq!(ids(&cache), cache1);
    assert_eq!(deployments(&k, &format!("{name}/web")).len(), 1);
    assert_eq!(deployments(&k, &format!("{name}/cache")).len(), 1);
    let calls = compose.calls();
    let project_of = |c: &str| {
        let args: Vec<&str> = c.split_whitespace().collect();
        args.windows(2)
            .find(|w| w[0] == "-p")
            .map(|w| w[1].to_string())
            .unwrap_or_default()
    };
    let others: Vec<&String> = calls[before..]
        .iter()
        .filter(|c| project_of(c) != format!("{name}-db"))
        .collect();
    assert!(
        others.is_empty(),
        "compose ran for other stacks: {others:?}"
    );

    // The shared env file: cache alone reads it.
    remote.write("common.env", "LEVEL=2\n");
    remote.commit("level 2");
    wait_for(60, "cache redeployed", || {
        let h = deployments(&k, &format!("{name}/cache"));
        (h.len() == 2 && h[0]["status"] == "success").then_some(())
    });
    let cache2 = ids(&cache);
    assert_ne!(cache2["cache"], cache1["cache"]);
    assert_eq!(cache2["side"], cache1["side"], "side reads no env file");
    assert_eq!(ids(&web), web1);
    assert_eq!(ids(&db), db2);
    // diff and sync of one stack, and sync of all.
    let diff = k
        .run(["diff", "--repo", &name, "--stack", "db", "-o", "json"])
        .json();
    assert_eq!(diff["in_sync"], true, "{diff}");
    let synced = k.run(["sync", "--repo", &name, "-o", "json"]).json();
    assert_eq!(synced.as_array().map(Vec::len), Some(3), "{synced}");
    assert_eq!(ids(&db), db2, "a sync of what runs restarts nothing");

    // web's bind-mounted file: its `web` alone is recreated.
    remote.write("stacks/web/site.conf", "site v2\n");
    let site = remote.commit("site v2");
    wait_for(60, "web redeployed", || {
        let h = deployments(&k, &format!("{name}/web"));
        (h[0]["commit"] == site.as_str() && h[0]["status"] == "success").then_some(())
    });
    let web2 = ids(&web);
    assert_ne!(web2["web"], web1["web"]);
    assert_eq!(web2["api"], web1["api"]);
    assert_eq!(web2["worker"], web1["worker"]);

    // A stack directory deleted: orphaned, its containers still run.
    std::fs::remove_dir_all(remote.work_dir().join("stacks/cache")).unwrap();
    let gone = remote.commit("cache moves elsewhere");
    let events = wait_for(60, "cache orphaned", || {
        let e = k.run(["events", "--repo", &name, "-o", "json"]).json();
        e.as_array()?
            .iter()
            .any(|e| {
                e["kind"] == "stack_orphaned"
                    && e["stack"] == "cache"
                    && e["commit"] == gone.as_str()
            })
            .then_some(e)
    });
    assert!(
        !ids(&cache).is_empty(),
        "orphaned, not taken down: {events}"
    );
    let status = k
        .run(["status", "--repo", &name, "--stack", "cache", "-o", "json"])
        .json();
    assert_eq!(status[0]["sync_state"], "orphaned", "{status}");
    // The repository's status shows every stack.
    let all = k.run(["status", "--repo", &name, "-o", "json"]).json();
    let states: Vec<(String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stack"].as_str().unwrap_or_default().to_string(),
                s["sync_state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("cache".to_string(), "orphaned".to_string()),
            ("db".to_string(), "synced".to_string()),
            ("web".to_string(), "synced".to_string()),
        ],
        "{all}"
    );
    // Rollback needs one stack.
    k.run(["rollback", "--repo", &name, "abcd"])
        .code(1)
        .stderr_has("has several stacks (cache, db, web)");
    // `stack remove` ends an orphan only.
    k.run(["stack", "remove", &format!("{name}/db")])
        .code(1)
        .stderr_has("is still in Git");
    k.run(["stack", "remove", &format!("{name}/cache"), "--down"])
        .success()
        .stdout_has("taken down");
    assert!(cache.containers().is_empty());
    let list = k
        .run(["stack", "list", "--repo", &name, "-o", "json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// `after:` holds on a fresh deploy (seen in the event log's order), and a
/// dependency that fails its health gate holds its dependent back.
#[test]
fn after_orders_a_fresh_deploy_and_a_failed_dependency_holds_its_dependent_back() {
    require_docker();
    let k = Kedge::new();
    let name = unique_name("after");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "stacks:\n  - path: stacks/app\n    after: [db]\n  - path: stacks/db\ndefaults:\n  deploy:\n    stable_for: 1s\n    timeout: 20s\n",
    );
    let service = |name: &str, env: &str| {
        format!(
            "services:\n  {name}:\n{}",
            sleeper(&format!("    environment: [V={env}]\n"))
        )
    };
    remote.write("stacks/db/compose.yaml", &service("db", "1"));
    remote.write("stacks/app/compose.yaml", &service("app", "1"));
    remote.commit("app after db");
    let app = ComposeProject::named(&format!("{name}-app"));
    let db = ComposeProject::named(&format!("{name}-db"));
    k.run(["repo", "add", &remote.url()]).success();
    let _serve = k.serve_with(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1h",
    ]);
    wait_for(120, "both deployed", || {
        let a = deployments(&k, &format!("{name}/app"));
        (a.len() == 1 && a[0]["status"] == "success").then_some(())
    });
    let events = k.run(["events", "--repo", &name, "-o", "json"]).json();
    let id_of = |stack: &str, kind: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["stack"] == stack && e["kind"] == kind)
            .and_then(|e| e["id"].as_i64())
            .unwrap_or_else(|| panic!("no {kind} of {stack}: {events}"))
    };
    assert!(
        id_of("db", "deploy_succeeded") < id_of("app", "deploy_started"),
        "app started before db passed its gate: {events}"
    );
    let app1 = ids(&app);

    // db's new version exits at once: its gate fails, and app's change in
    // the same commit waits.
    remote.write(
        "stacks/db/compose.yaml",
        &format!(
            "services:\n  db:\n    image: {IMAGE_1}\n    command: [sh, -c, 'exit 3']\n    restart: 'no'\n"
        ),
    );
    remote.write("stacks/app/compose.yaml", &service("app", "2"));
    let broken = remote.commit("db breaks");
    let held = wait_for(120, "app held back", || {
        let e = k
            .run(["events", "--repo", &format!("{name}/app"), "-o", "json"])
            .json();
        e.as_array()?
            .iter()
            .find(|e| e["kind"] == "deploy_failed" && e["commit"] == broken.as_str())
            .cloned()
    });
    assert_eq!(held["fields"]["step"], "after", "{held}");
    assert_eq!(held["fields"]["after"], "db", "{held}");
    let db_history = deployments(&k, &format!("{name}/db"));
    assert!(
        db_history
            .iter()
            .any(|d| d["commit"] == broken.as_str() && d["status"] == "failed"),
        "{db_history:?}"
    );
    assert_eq!(
        deployments(&k, &format!("{name}/app")).len(),
        1,
        "app not deployed"
    );
    assert_eq!(ids(&app), app1, "app untouched");
    let status = k
        .run(["status", "--repo", &format!("{name}/app"), "-o", "json"])
        .json();
    let error = status[0]["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("stack db"), "{status}");
    drop(db);
}

/// `stacks_removed: down`: a stack whose directory left Git is taken down,
/// its named volume kept.
#[test]
fn stacks_removed_down_takes_a_removed_stack_down_and_keeps_its_volumes() {
    require_docker();
    let k = Kedge::new();
    let name = unique_name("sdown");
    let remote = GitRemote::new(&name);
    remote.write(
        "kedge.yaml",
        "discover:\n  - path: \"stacks/*\"\nstacks_removed: down\ndefaults:\n  deploy:\n    stable_for: 0s\n",
    );
    remote.write(
        "stacks/keep/compose.yaml",
        &format!("services:\n  keep:\n{}", sleeper("")),
    );
    remote.write(
        "stacks/old/compose.yaml",
        &format!(
            "services:\n  old:\n{}volumes:\n  data: {{}}\n",
            sleeper("    volumes: ['data:/data']\n")
        ),
    );
    remote.commit("two stacks");
    let old = ComposeProject::named(&format!("{name}-old"));
    let keep = ComposeProject::named(&format!("{name}-keep"));
    k.run(["repo", "add", &remote.url()]).success();
    let _serve = k.serve_with(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1h",
    ]);
    wait_for(120, "both stacks running", || {
        (ids(&old).len() == 1 && ids(&keep).len() == 1).then_some(())
    });
    std::fs::remove_dir_all(remote.work_dir().join("stacks/old")).unwrap();
    remote.commit("old goes");
    wait_for(60, "old taken down", || {
        let e = k.run(["events", "--repo", &name, "-o", "json"]).json();
        e.as_array()?
            .iter()
            .any(|e| e["kind"] == "stack_removed" && e["stack"] == "old")
            .then_some(())
    });
    assert!(old.containers().is_empty());
    assert_eq!(ids(&keep).len(), 1);
    assert!(
        old.volumes().iter().any(|v| v.ends_with("_data")),
        "{:?}",
        old.volumes()
    );
    let list = k
        .run(["stack", "list", "--repo", &name, "-o", "json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// Regression: a repository that deployed its own project and then
/// declared stacks left that project running unseen, healed by the
/// repository's task against a commit Git no longer had. Now it is an
/// orphaned stack, reported, left alone and ended by `kedge stack remove`;
/// and a declared stack may be named like its repository.
#[test]
fn declaring_stacks_orphans_the_repositorys_own_project_instead_of_healing_it_unseen() {
    require_docker();
    let Stack {
        name,
        remote,
        kedge: k,
        project: own,
    } = Stack::new(
        "sown",
        &[(
            "compose.yaml",
            &format!("services:\n  app:\n{}", sleeper("")),
        )],
    );
    let declared = ComposeProject::named(&format!("{name}-{name}"));
    let serve = k.serve_debug(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1s",
    ]);
    let before = wait_for(60, "the repository's own project", || {
        ids(&own).get("app").cloned()
    });

    remote.write(
        "kedge.yaml",
        &format!(
            "stacks:\n  - name: {name}\n    path: stacks/web\ndefaults:\n  deploy:\n    stable_for: 0s\n"
        ),
    );
    remote.write(
        "stacks/web/compose.yaml",
        &format!("services:\n  web:\n{}", sleeper("")),
    );
    remote.commit("stacks now");
    wait_for(60, "the declared stack named like the repository", || {
        ids(&declared).get("web").cloned()
    });
    let orphaned = wait_for(30, "stack_orphaned", || {
        let e = k.run(["events", "--repo", &name, "-o", "json"]).json();
        e.as_array()?
            .iter()
            .find(|e| e["kind"] == "stack_orphaned")
            .cloned()
    });
    let left = format!("{name}-root");
    assert_eq!(orphaned["stack"], left.as_str(), "{orphaned}");
    assert!(
        orphaned["message"]
            .as_str()
            .unwrap()
            .contains(&format!("kedge stack remove {name}/{left}")),
        "{orphaned}"
    );
    let list = k
        .run(["stack", "list", "--repo", &name, "-o", "json"])
        .json();
    let row = |stack: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|r| r["stack"] == stack)
            .cloned()
            .unwrap_or_else(|| panic!("{stack} in {list}"))
    };
    assert_eq!(row(&left)["state"], "orphaned");
    assert_eq!(row(&left)["project"], name.as_str());
    assert_eq!(row(&name)["path"], "stacks/web");
    assert_eq!(ids(&own).get("app"), Some(&before), "left running");
    // Its history went with it; the declared stack has its own.
    assert_eq!(deployments(&k, &format!("{name}/{left}")).len(), 1);
    assert_eq!(deployments(&k, &format!("{name}/{name}")).len(), 1);

    // Stopped by hand, it stays stopped: nothing heals it any more.
    crate::support::docker::docker_ok(&["stop", "-t", "0", &before]);
    serve.wait_passes(&name, serve.mark(), 6, 30);
    assert!(ids(&own).is_empty(), "healed: {:?}", ids(&own));

    k.run(["stack", "remove", &format!("{name}/{left}"), "--down"])
        .success();
    assert!(own.containers().is_empty());
    assert_eq!(ids(&declared).len(), 1);
    let list = k
        .run(["stack", "list", "--repo", &name, "-o", "json"])
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}
