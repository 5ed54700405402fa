//! `kedge repo add / list / remove` as the spec describes them.

use crate::support::docker::{docker, docker_ok};
use crate::support::*;

#[test]
fn add_list_remove() {
    let remote = GitRemote::new("app");
    let url = remote.url();
    let k = Kedge::new();

    k.run(["repo", "add", &url, "--branch", "main"])
        .success()
        .stdout_has("Added repository app");

    let list = k.run(["repo", "list"]);
    list.success();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    // The spec's four columns, then how Kedge authenticates (issue 13).
    assert_eq!(header, ["NAME", "URL", "BRANCH", "MODE", "AUTH"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row, ["app", url.as_str(), "main", "-", "none"]);

    let json = k.run(["repo", "list", "-o", "json"]).success().json();
    let repos = json.as_array().expect("an array");
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["name"], "app");
    assert_eq!(repos[0]["url"], url.as_str());
    assert_eq!(repos[0]["branch"], "main");
    assert_eq!(repos[0]["auth"], "none");

    k.run(["repo", "remove", "app"]).success();
    assert_eq!(
        k.run(["repo", "list", "-o", "json"]).success().json(),
        serde_json::json!([])
    );
    k.run(["repo", "list"])
        .success()
        .stdout_is("NAME   URL   BRANCH   MODE   AUTH\n");
}

#[test]
fn defaults_and_explicit_name_and_branch() {
    let k = Kedge::new();
    k.run(["repo", "add", "https://example.com/acme/shop.git"])
        .success();
    k.run([
        "repo",
        "add",
        "git@example.com:acme/shop.git",
        "--name",
        "shop-ssh",
        "--branch",
        "release/1",
    ])
    .success();
    let json = k.run(["-o", "json", "repo", "list"]).success().json();
    assert_eq!(json[0]["name"], "shop");
    assert_eq!(json[0]["branch"], "main");
    assert_eq!(json[1]["name"], "shop-ssh");
    assert_eq!(json[1]["branch"], "release/1");
}

#[test]
fn a_local_path_is_accepted_and_stored_absolute() {
    let remote = GitRemote::new("local");
    let k = Kedge::new();
    k.run(["repo", "add", remote.bare.to_str().unwrap()])
        .success();
    let json = k.run(["repo", "list", "-o", "json"]).success().json();
    assert_eq!(json[0]["name"], "local");
    assert_eq!(json[0]["url"], remote.bare.to_str().unwrap());
}

#[test]
fn refusals_name_the_problem_and_change_nothing() {
    let remote = GitRemote::new("app");
    let url = remote.url();
    let k = Kedge::new();

    // Before anything is registered a refusal must not even create the database.
    k.run(["repo", "add", "not a url"])
        .code(1)
        .stderr_has("cannot parse repository URL");
    assert!(!k.data_dir().exists(), "a refused add created the data dir");

    k.run(["repo", "add", &url]).success();
    let before = k.db_snapshot();
    let too_long = "a".repeat(64);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["repo", "add", &url, "--name", "app"],
            "a repository named 'app' already exists",
        ),
        (
            vec![
                "repo",
                "add",
                "https://example.com/x/other.git",
                "--name",
                "app",
            ],
            "already exists",
        ),
        (
            vec!["repo", "add", &url, "--name", "app2"],
            "is already registered as 'app'",
        ),
        (
            vec![
                "repo",
                "add",
                remote.bare.to_str().unwrap(),
                "--name",
                "app3",
            ],
            "is already registered as 'app'",
        ),
        (
            vec!["repo", "add", &url, "--name", "App"],
            "invalid repository name \"App\"",
        ),
        (
            vec!["repo", "add", &url, "--name=-app"],
            "invalid repository name",
        ),
        (
            vec!["repo", "add", &url, "--name", "my.app"],
            "invalid repository name",
        ),
        (
            vec![
                "repo",
                "add",
                "https://example.com/x/y.git",
                "--name",
                &too_long,
            ],
            "at most 63",
        ),
        (
            vec!["repo", "add", "https://example.com/x/My.App.git"],
            "pass --name",
        ),
        (
            vec!["repo", "add", "ftp://example.com/x.git"],
            "unsupported scheme `ftp`",
        ),
        (vec!["repo", "add", "https://"], "no host"),
        (
            vec!["repo", "add", "https://example.com"],
            "no repository path",
        ),
        (
            vec!["repo", "add", "file://relative/x.git"],
            "absolute path",
        ),
        (
            vec![
                "repo",
                "add",
                "https://example.com/x.git",
                "--branch",
                "a b",
            ],
            "invalid branch name",
        ),
        (vec!["repo", "remove", "nope"], "no repository named 'nope'"),
    ];
    for (args, message) in &cases {
        k.run(args).code(1).stderr_has(message);
        assert_eq!(k.db_snapshot(), before, "{args:?} changed the database");
    }
    let json = k.run(["repo", "list", "-o", "json"]).success().json();
    assert_eq!(json.as_array().unwrap().len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let k = Kedge::new();
    k.run(["repo", "add"]).code(2);
    k.run(["history"]).code(2).stderr_has("--repo");
    k.run(["serve", "--poll-interval", "soon"])
        .code(2)
        .stderr_has("invalid duration");
    k.run(["repo", "list", "-o", "yaml"]).code(2);
    k.run(["frobnicate"]).code(2);
}

/// The names a section of clap's help declares (`Commands`, `Options`,
/// `Arguments`): the first column of each entry, aliases split (`-o,
/// --output <OUTPUT>` declares `-o` and `--output`). Descriptions, wrapped
/// lines included, are never searched: a word that only appears in a
/// description declares nothing. A missing section declares nothing.
fn declared(help: &str, section: &str) -> Vec<String> {
    let header = format!("{section}:");
    let mut names = Vec::new();
    let entries = help
        .lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '));
    for line in entries {
        let text = line.trim_start();
        // Entries start at most 6 columns in (a long option without a short
        // one is aligned with those that have one); wrapped descriptions
        // further in.
        if text.is_empty() || line.len() - text.len() > 6 {
            continue;
        }
        let head = text.split("  ").next().unwrap_or_default();
        for alias in head.split(", ") {
            names.extend(alias.split(' ').next().map(String::from));
        }
    }
    names
}

/// Checks that `kedge ARGS` succeeds and declares each of `want` in one of
/// `sections` of its help.
#[track_caller]
fn help_declares(k: &Kedge, args: &[&str], sections: &[&str], want: &[&str]) {
    let out = k.run(args);
    out.success();
    let names: Vec<String> = sections
        .iter()
        .flat_map(|section| declared(&out.stdout, section))
        .collect();
    for name in want {
        assert!(
            names.iter().any(|n| n == name),
            "`kedge {}` declares no {name} in {sections:?}; it declares {names:?}:\n{}",
            args.join(" "),
            out.stdout
        );
    }
}

#[test]
fn help_lists_every_command_of_the_spec() {
    let k = Kedge::new();
    let commands = [
        "repo", "serve", "status", "diff", "sync", "history", "rollback", "events",
    ];
    help_declares(&k, &["--help"], &["Commands"], &commands);
    help_declares(
        &k,
        &["--help"],
        &["Options"],
        &["--data-dir", "--config", "-o", "--output", "--log-format"],
    );
    help_declares(
        &k,
        &["repo", "--help"],
        &["Commands"],
        &["add", "list", "remove"],
    );
    let cases: &[(&[&str], &[&str])] = &[
        (&["repo", "add", "--help"], &["<URL>", "--branch", "--name"]),
        (&["repo", "remove", "--help"], &["<NAME>", "--down"]),
        (
            &["serve", "--help"],
            &["--poll-interval", "--check-interval"],
        ),
        (&["status", "--help"], &["--repo"]),
        (&["diff", "--help"], &["--repo", "--exit-code"]),
        (&["sync", "--help"], &["--repo", "--dry-run"]),
        (&["history", "--help"], &["--repo", "--limit"]),
        (&["rollback", "--help"], &["--repo", "<COMMIT>"]),
        (
            &["events", "--help"],
            &["--repo", "--since", "--limit", "--follow"],
        ),
    ];
    for (args, names) in cases {
        help_declares(&k, args, &["Options", "Arguments"], names);
    }
}

#[test]
fn data_dir_flag_env_and_config_file() {
    let k = Kedge::new();
    let elsewhere = k.cwd().join("elsewhere");
    k.run([
        "--data-dir",
        elsewhere.to_str().unwrap(),
        "repo",
        "add",
        "https://example.com/a/one.git",
    ])
    .success();
    assert!(elsewhere.join("kedge.db").exists());
    assert!(!k.data_dir().exists());

    let via_env = k.cwd().join("via-env");
    let k2 = Kedge::new().env("KEDGE_DATA_DIR", via_env.to_str().unwrap());
    k2.run(["repo", "add", "https://example.com/a/two.git"])
        .success();
    assert!(via_env.join("kedge.db").exists());

    let config = k.cwd().join("config.yaml");
    let via_file = k.cwd().join("via-file");
    std::fs::write(&config, format!("data_dir: {}\n", via_file.display())).unwrap();
    k.run([
        "--config",
        config.to_str().unwrap(),
        "repo",
        "add",
        "https://example.com/a/three.git",
    ])
    .success();
    assert!(via_file.join("kedge.db").exists());

    std::fs::write(&config, "git:\n  poll_interval: never\n").unwrap();
    k.run(["--config", config.to_str().unwrap(), "repo", "list"])
        .code(1)
        .stderr_has("line 2: `git.poll_interval`");
}

#[test]
fn a_corrupt_database_is_reported_and_kept() {
    let k = Kedge::new();
    std::fs::create_dir_all(k.data_dir()).unwrap();
    std::fs::write(k.db_path(), "definitely not sqlite\n".repeat(100)).unwrap();
    let before = std::fs::read(k.db_path()).unwrap();
    k.run(["repo", "list"])
        .code(1)
        .stderr_has("is not a SQLite database");
    k.run(["repo", "add", "https://example.com/a/b.git"])
        .code(1)
        .stderr_has("is not a SQLite database");
    assert_eq!(std::fs::read(k.db_path()).unwrap(), before);
}

/// The clone of a registered repository as `serve` would leave it, with
/// its stack brought up by compose; returns the clone.
fn deployed_by_hand(
    k: &Kedge,
    remote: &GitRemote,
    name: &str,
    project: &ComposeProject,
) -> std::path::PathBuf {
    let clone = k.data_dir().join("repos").join(name);
    crate::support::git::git(
        k.cwd(),
        &["clone", "-q", &remote.url(), clone.to_str().unwrap()],
    );
    project.up(&clone);
    clone
}

#[test]
fn remove_deletes_the_clone_but_leaves_containers_alone() {
    let remote = GitRemote::new("keep");
    remote.write(
        "compose.yaml",
        "services:\n  web:\n    image: kedge-test/busybox:1\n    command: [sleep, '3600']\n",
    );
    remote.commit("stack");
    let k = Kedge::new();
    let name = unique_name("keep");
    let project = ComposeProject::named(&name);
    k.run(["repo", "add", &remote.url(), "--name", &name])
        .success();
    let clone = deployed_by_hand(&k, &remote, &name, &project);
    let running = project.running();
    assert_eq!(running.len(), 1);

    k.run(["repo", "remove", &name]).success();
    assert!(!clone.exists(), "the clone was not deleted");
    assert_eq!(
        project.running(),
        running,
        "containers must be left alone without --down"
    );
}

#[test]
fn remove_down_takes_the_stack_down_and_keeps_volumes() {
    let remote = GitRemote::new("down");
    let name = unique_name("down");
    let project_name = format!("{name}-p");
    remote.write(
        "compose.yaml",
        "services:\n  web:\n    image: kedge-test/busybox:1\n    command: [sleep, '3600']\n    volumes: [data:/data, /scratch]\nvolumes:\n  data:\n",
    );
    remote.write(
        "kedge.yaml",
        &format!("docker:\n  project_name: {project_name}\n"),
    );
    remote.commit("stack");
    let k = Kedge::new();
    let project = ComposeProject::named(&project_name);
    k.run(["repo", "add", &remote.url(), "--name", &name])
        .success();
    deployed_by_hand(&k, &remote, &name, &project);
    assert_eq!(project.running().len(), 1);
    assert_eq!(project.volumes().len(), 1);
    let anonymous = AnonymousVolume(docker_ok(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Destination \"/scratch\"}}{{.Name}}{{end}}{{end}}",
        &project.running()[0].id,
    ]));
    assert_eq!(anonymous.0.len(), 64, "{}", anonymous.0);

    k.run(["repo", "remove", &name, "--down"]).success();
    // Regression: the anonymous volume was left behind.
    assert!(
        !docker(&["volume", "inspect", &anonymous.0])
            .status
            .success(),
        "the anonymous volume {} is still there",
        anonymous.0
    );
    assert!(
        project.containers().is_empty(),
        "{:?}",
        project.containers()
    );
    assert_eq!(project.volumes().len(), 1, "down must keep named volumes");
    assert_eq!(
        k.run(["repo", "list", "-o", "json"]).success().json(),
        serde_json::json!([])
    );
}

/// Removed on drop, whatever the test found.
struct AnonymousVolume(String);

impl Drop for AnonymousVolume {
    fn drop(&mut self) {
        let _ = docker(&["volume", "rm", "-f", &self.0]);
    }
}

/// Regression: `repo remove --down` while `serve` ran made the removed
/// repository's task log "FOREIGN KEY constraint failed" two or three times
/// and retry; it must stop cleanly.
#[test]
fn remove_down_while_serving_stops_the_task_cleanly() {
    let s = Stack::new(
        "rmserve",
        &[(
            "compose.yaml",
            &sleepers(&[("web", "kedge-test/busybox:1")]),
        )],
    );
    let serve = s.kedge.serve("300ms");
    wait_for(60, "the stack deployed", || {
        (s.project.running().len() == 1).then_some(())
    });
    s.kedge.run(["repo", "remove", &s.name, "--down"]).success();
    assert!(s.project.containers().is_empty());
    wait_for(10, "the task to stop", || {
        serve
            .log()
            .contains("no longer registered: its task stops")
            .then_some(())
    });
    let log = serve.log();
    assert!(!log.contains("FOREIGN KEY"), "{log}");
    assert!(!log.contains("database query failed"), "{log}");
}

/// Regression: refusing a URL with credentials in it (a duplicate, a bad
/// port, no path, a wrong scheme…) printed the URL, secret included.
#[test]
fn secrets_printed_in_error_messages() {
    let secret = "s3cr3t-never-shown";
    let token = "ghp_tokenNeverShown";
    let url = format!("https://bot:{secret}@example.com/acme/app.git");
    let k = Kedge::new();
    k.run(["repo", "add", &url]).success();

    let refused: Vec<Vec<String>> = [
        // The same URL again, under another name: a duplicate.
        vec![url.clone(), "--name".into(), "app2".into()],
        // The same name again.
        vec![
            format!("https://bot:{secret}@example.com/acme/other.git"),
            "--name".into(),
            "app".into(),
        ],
        // An invalid name, and a name that cannot be derived.
        vec![url.clone(), "--name".into(), "Bad.Name".into()],
        vec![format!("https://bot:{secret}@example.com/acme/My.App.git")],
        // Malformed URLs.
        vec![format!(
            "https://bot:{secret}@example.com:port/acme/app.git"
        )],
        vec![format!("https://bot:{secret}@example.com")],
        vec![format!("https://bot:{secret}@/acme/app.git")],
        vec![format!("ftp://bot:{secret}@example.com/acme/app.git")],
        vec![format!("htps://{token}@example.com/acme/app.git")],
        vec![format!("https://{token}@example.com:x/acme/app.git")],
        vec![format!("https://bot:{secret}@example.com/acme/a pp.git")],
        vec![format!(
            "https://bot:{secret}@example.com/acme/a\u{7}pp.git"
        )],
        vec![format!("file://bot:{secret}@example.com/app.git")],
        // A bad branch.
        vec![
            url.clone(),
            "--name".into(),
            "app3".into(),
            "--branch".into(),
            "a b".into(),
        ],
    ]
    .into_iter()
    .collect();
    for args in &refused {
        let out = k.run(
            ["repo", "add"]
                .iter()
                .map(|s| s.to_string())
                .chain(args.iter().cloned()),
        );
        out.code(1);
        for s in [secret, token] {
            assert!(
                !out.stdout.contains(s) && !out.stderr.contains(s),
                "{args:?} printed the secret:\n{}{}",
                out.stdout,
                out.stderr
            );
        }
    }
    // The refusals still say what is wrong, about a recognisable URL (the
    // credentials are no part of the stored address: they are in the
    // credential store, which a refusal leaves as it was).
    k.run(["repo", "add", &url, "--name", "app2"])
        .code(1)
        .stderr_has(
            "https://example.com/acme/app.git (branch main) is already registered as 'app'",
        );
    let stored = std::fs::read_dir(k.data_dir().join("credentials"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "one file, for 'app'");
}

/// Regression: with `KEDGE_LOG=debug` the Docker socket path was printed
/// hex-encoded (the engine client's request lines), with every response body.
#[test]
fn debug_logs_name_the_engine_plainly() {
    let k = Kedge::new().env("KEDGE_LOG", "debug");
    let out = k.run(["status"]);
    out.success().stderr_has("connecting to the docker engine");
    let hex_socket = "2f7661722f72756e2f646f636b65722e736f636b";
    assert!(!out.stderr.contains(hex_socket), "{}", out.stderr);
    assert!(
        !out.stderr.contains("Decoded into string"),
        "{}",
        out.stderr
    );
}

/// Regression: `/x/../r` and `/r` were two repositories to the duplicate check.
#[test]
fn duplicate_detection_misses_a_local_path_spelled_with_dotdot() {
    let remote = GitRemote::new("dots");
    let k = Kedge::new();
    k.run(["repo", "add", remote.bare.to_str().unwrap()])
        .success();
    let parent = remote.bare.parent().unwrap();
    let dotted = parent.join("work/../dots.git");
    k.run(["repo", "add", dotted.to_str().unwrap(), "--name", "dots2"])
        .code(1)
        .stderr_has("already registered as 'dots'");
    let file_url = format!("file://{}/./work/../dots.git", parent.display());
    k.run(["repo", "add", &file_url, "--name", "dots3"])
        .code(1)
        .stderr_has("already registered as 'dots'");
    // What is stored is the plain spelling.
    let other = GitRemote::new("other");
    let dotted = other.bare.parent().unwrap().join("./work/../other.git");
    k.run(["repo", "add", dotted.to_str().unwrap()]).success();
    let json = k.run(["repo", "list", "-o", "json"]).success().json();
    assert_eq!(json[1]["url"], other.bare.to_str().unwrap());
}

/// Regression: a local path that does not exist was registered silently.
#[test]
fn a_nonexistent_local_path_is_accepted_without_a_warning() {
    let k = Kedge::new();
    let missing = k.cwd().join("not-yet/app.git");
    let missing = missing.to_str().unwrap();
    k.run(["repo", "add", missing])
        .success()
        .stdout_has("Added repository app")
        .stderr_has(&format!("warning: {missing} does not exist"));
    let file_url = format!("file://{}", k.cwd().join("later/web.git").display());
    k.run(["repo", "add", &file_url])
        .success()
        .stderr_has("later/web.git does not exist");

    // An existing one, or a network URL, gets no warning.
    let remote = GitRemote::new("here");
    let out = k.run(["repo", "add", remote.bare.to_str().unwrap()]);
    out.success();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    let out = k.run(["repo", "add", "https://example.com/acme/net.git"]);
    out.success();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

/// Regression: git children inherited `GIT_DIR` and `GIT_WORK_TREE` from
/// Kedge's environment (started from a git hook, or inside another
/// checkout), so git read and wrote that repository instead of the clone.
#[test]
fn git_dir_in_kedges_environment_points_no_git_child_elsewhere() {
    require_docker();
    let decoy = GitRemote::new("decoy");
    decoy.write("compose.yaml", "services: {}\n");
    let decoy_head = decoy.commit("decoy");
    let work = decoy.work_dir();
    let k = Kedge::new()
        .env("GIT_DIR", &work.join(".git").to_string_lossy())
        .env("GIT_WORK_TREE", &work.to_string_lossy());
    let s = Stack::with_kedge(
        "gitdirenv",
        &[(
            "compose.yaml",
            &sleepers(&[("web", crate::support::docker::IMAGE_1)]),
        )],
        k,
    );
    let head = s.remote.remote_head();
    s.kedge
        .run(["sync", "--repo", &s.name])
        .success()
        .stdout_has(&head[..7]);
    let status = s
        .kedge
        .run(["status", "--repo", &s.name, "-o", "json"])
        .json();
    assert_eq!(status[0]["deployed_commit"], head.as_str(), "{status}");
    assert_eq!(s.running().len(), 1);
    // The decoy was neither read nor written.
    assert_eq!(decoy.remote_head(), decoy_head);
}
