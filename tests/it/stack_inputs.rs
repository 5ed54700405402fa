//! fleet.md §1 on a one-stack repository: a commit that changes none of
//! the stack's inputs runs no compose process and records no deployment;
//! one that changes an input restarts only the services that read it; a
//! compose file in a directory resolves its paths from there.

use crate::support::compose_calls::ComposeCalls;
use crate::support::docker::IMAGE_1;
use crate::support::*;

/// `web` bind-mounts `conf/site.conf`, `api` reads the env file
/// `common.env`, `worker` reads neither.
fn stack_file() -> String {
    let sleeper =
        format!("    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n");
    format!(
        "services:\n  web:\n{sleeper}    volumes: ['./conf/site.conf:/etc/site.conf:ro']\n  api:\n{sleeper}    env_file: common.env\n  worker:\n{sleeper}"
    )
}

fn ids(s: &Stack) -> std::collections::BTreeMap<String, String> {
    s.running()
        .into_iter()
        .map(|(service, c)| (service, c.id))
        .collect()
}

#[test]
fn a_commit_that_changes_none_of_the_stacks_inputs_runs_no_compose_and_records_nothing() {
    require_docker();
    let compose = ComposeCalls::new(None);
    let kedge = Kedge::new().env("DOCKER_CONFIG", &compose.config_dir().to_string_lossy());
    let s = Stack::with_kedge(
        "inputs",
        &[
            ("compose.yaml", &stack_file()),
            ("conf/site.conf", "v1\n"),
            ("common.env", "LEVEL=1\n"),
            ("README.md", "one\n"),
        ],
        kedge,
    );
    let _serve = s.kedge.serve_with(&[
        "serve",
        "--poll-interval",
        "300ms",
        "--check-interval",
        "1h",
    ]);
    wait_for(90, "the first deployment", || {
        (s.history().as_array()?.len() == 1).then_some(())
    });
    s.wait_deployed();
    let first = ids(&s);
    assert_eq!(first.len(), 3, "{first:?}");

    // Neither the stack's files nor its settings: nothing happens.
    let before = compose.calls().len();
    assert!(before > 0, "compose runs through the counted plugin");
    s.remote.write("README.md", "two\n");
    let readme = s.remote.commit("docs only");
    let status = wait_for(60, "the docs commit taken as in sync", || {
        let st = s.status();
        (st["synced_commit"] == readme.as_str()).then_some(st)
    });
    assert_eq!(status["sync_state"], "synced", "{status}");
    assert_ne!(status["deployed_commit"], readme.as_str(), "{status}");
    let history = s.history();
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "no deployment: {history}"
    );
    let calls = compose.calls();
    assert_eq!(
        calls.len(),
        before,
        "no compose process: {:?}",
        &calls[before..]
    );
    assert_eq!(ids(&s), first, "nothing restarted");
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let unchanged: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "stack_unchanged")
        .collect();
    assert_eq!(unchanged.len(), 1, "{events}");
    assert_eq!(unchanged[0]["severity"], "debug");
    assert_eq!(unchanged[0]["commit"], readme.as_str());
    assert!(
        !events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "commit_detected" && e["commit"] == readme.as_str()),
        "{events}"
    );

    // The env file `api` reads: `api` alone restarts.
    s.remote.write("common.env", "LEVEL=2\n");
    s.remote.commit("level 2");
    wait_for(60, "the env file's deployment", || {
        (s.history().as_array()?.len() == 2).then_some(())
    });
    s.wait_deployed();
    let second = ids(&s);
    assert_ne!(second["api"], first["api"]);
    assert_eq!(second["web"], first["web"]);
    assert_eq!(second["worker"], first["worker"]);

    // The file `web` bind-mounts: `web` alone is recreated.
    s.remote.write("conf/site.conf", "v2\n");
    s.remote.commit("site v2");
    wait_for(60, "the config file's deployment", || {
        (s.history().as_array()?.len() == 3).then_some(())
    });
    s.wait_deployed();
    let third = ids(&s);
    assert_ne!(third["web"], second["web"]);
    assert_eq!(third["api"], second["api"]);
    assert_eq!(third["worker"], second["worker"]);

    // The inputs of the new deployment are the ones compared next.
    let before = compose.calls().len();
    s.remote.write("README.md", "three\n");
    let docs = s.remote.commit("docs again");
    wait_for(60, "the second docs commit taken as in sync", || {
        (s.status()["synced_commit"] == docs.as_str()).then_some(())
    });
    assert_eq!(s.history().as_array().unwrap().len(), 3);
    assert_eq!(compose.calls().len(), before);
    assert_eq!(ids(&s), third);
}

/// Regression: `compose_file: stacks/web/compose.yaml` ran compose with the
/// repository root as its project directory: its `../../common.env` left
/// the repository and the deployment failed, where `cd stacks/web &&
/// docker compose up` works.
#[test]
fn a_compose_file_in_a_directory_resolves_its_relative_paths_from_its_directory() {
    require_docker();
    let sleeper =
        format!("    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n");
    let s = Stack::new(
        "subdir",
        &[
            (
                "kedge.yaml",
                "docker:\n  compose_file: stacks/web/compose.yaml\n",
            ),
            (
                "stacks/web/compose.yaml",
                &format!(
                    "services:\n  web:\n{sleeper}    env_file: ../../common.env\n    volumes: ['./site.conf:/etc/site.conf:ro']\n"
                ),
            ),
            ("stacks/web/site.conf", "hello\n"),
            ("common.env", "SHARED=from-the-root\n"),
        ],
    );
    s.kedge.run(["sync", "--repo", &s.name]).success();
    let running = s.running();
    let web = &running["web"];
    let env = crate::support::docker::docker_ok(&[
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &web.id,
    ]);
    assert!(env.contains("SHARED=from-the-root"), "{env}");
    let mounts = crate::support::docker::docker_ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Source}} {{end}}",
        &web.id,
    ]);
    assert!(mounts.trim().ends_with("stacks/web/site.conf"), "{mounts}");
}

/// `serve.max_parallel_deploys`: with 1, two repositories' applies never
/// overlap; with 2, both repositories' next applies run side by side. Each
/// `up` waits 3 s in the counted plugin, so applies that may overlap do.
#[test]
fn max_parallel_deploys_bounds_the_applies_in_flight() {
    require_docker();
    let compose = ComposeCalls::new(Some("3"));
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.yaml");
    std::fs::write(&config, "serve:\n  max_parallel_deploys: 1\n").unwrap();
    let kedge = Kedge::new()
        .env("DOCKER_CONFIG", &compose.config_dir().to_string_lossy())
        .env("KEDGE_CONFIG", &config.to_string_lossy());
    let file = |level: &str| {
        format!(
            "services:\n  web:\n    image: {IMAGE_1}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n    environment: [LEVEL={level}]\n"
        )
    };
    let a = Stack::with_kedge("par-a", &[("compose.yaml", &file("1"))], kedge);
    let b_name = unique_name("par-b");
    let b = GitRemote::new(&b_name);
    b.write("compose.yaml", &file("1"));
    b.write("kedge.yaml", QUICK_GATE);
    b.commit("first");
    let _b_project = ComposeProject::named(&b_name);
    a.kedge.run(["repo", "add", &b.url()]).success();

    let deployments = |repo: &str, n: usize| {
        wait_for(120, &format!("{n} deployments of {repo}"), || {
            let h = a
                .kedge
                .run(["history", "--repo", repo, "-o", "json"])
                .json();
            let list = h.as_array()?;
            (list.len() == n && list[0]["status"] == "success").then_some(())
        });
    };
    let serve = a.kedge.serve_with(&["serve", "--poll-interval", "300ms"]);
    deployments(&a.name, 1);
    deployments(&b_name, 1);
    drop(serve);
    let ups = compose.ups();
    assert_eq!(ups.len(), 2, "{ups:?}");
    assert_ne!(ups[0].project, ups[1].project);
    assert!(!ups[0].overlaps(&ups[1]), "one apply at a time: {ups:?}");

    std::fs::write(&config, "serve:\n  max_parallel_deploys: 2\n").unwrap();
    a.remote.write("compose.yaml", &file("2"));
    a.remote.commit("level 2");
    b.write("compose.yaml", &file("2"));
    b.commit("level 2");
    let _serve = a.kedge.serve_with(&["serve", "--poll-interval", "300ms"]);
    deployments(&a.name, 2);
    deployments(&b_name, 2);
    let ups = compose.ups();
    assert_eq!(ups.len(), 4, "{ups:?}");
    assert!(
        ups[2].overlaps(&ups[3]),
        "two applies side by side: {ups:?}"
    );
}
