use super::*;
use serde_json::json;

/// A checkout with these files.
fn checkout(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn collected(files: &[(&str, &str)], project: &str, compose: &[&str], doc: Value) -> Vec<String> {
    let dir = checkout(files);
    let compose: Vec<PathBuf> = compose.iter().map(PathBuf::from).collect();
    collect(dir.path(), Path::new(project), &compose, &doc, 1 << 20).unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn compose_files_name_their_includes_extends_and_env_files() {
    let files = [
        (
            "stacks/web/compose.yaml",
            "include:\n  - ../../inc/extra.yaml\n  - path: [../../inc/b.yaml]\n    env_file: ../../inc/b.env\n    project_directory: ../../inc/bdir\n\
             services:\n  web:\n    image: x\n    env_file: ../../common.env\n    extends: {file: base.yaml, service: base}\n  \
             api:\n    image: x\n    env_file: [a.env, {path: ./opt.env, required: false}]\n  out:\n    image: x\n    env_file: ../../../../etc/passwd\n",
        ),
        (
            "stacks/web/base.yaml",
            "services:\n  base:\n    env_file: base.env\n",
        ),
        (
            "inc/extra.yaml",
            "services:\n  side:\n    env_file: side.env\n",
        ),
        ("inc/b.yaml", "services:\n  b:\n    env_file: own.env\n"),
    ];
    let got = collected(
        &files,
        "stacks/web",
        &["stacks/web/compose.yaml"],
        json!({}),
    );
    assert_eq!(
        got,
        strings(&[
            "common.env",
            "inc/b.env",
            // b.yaml's project directory is the one its entry names.
            "inc/b.yaml",
            "inc/bdir/own.env",
            "inc/extra.yaml",
            // extra.yaml's paths start from its own directory.
            "inc/side.env",
            "kedge.yaml",
            // The stack's project directory's `.env`, read by compose.
            "stacks/web/.env",
            "stacks/web/a.env",
            // An extended file's paths start from its directory.
            "stacks/web/base.env",
            "stacks/web/base.yaml",
            "stacks/web/compose.yaml",
            "stacks/web/opt.env",
        ])
    );
}

#[test]
fn rendered_binds_configs_secrets_and_builds_are_inputs_outside_paths_are_not() {
    let dir = checkout(&[("compose.yaml", "services: {}\n")]);
    let root = dir.path().to_string_lossy().into_owned();
    let doc = json!({
        "services": {
            "web": {
                "volumes": [
                    {"type": "bind", "source": format!("{root}/conf/nginx.conf"), "target": "/x"},
                    {"type": "bind", "source": "/var/run/docker.sock", "target": "/y"},
                    {"type": "volume", "source": "data", "target": "/z"}
                ],
                "build": {"context": format!("{root}/api"), "dockerfile": "../docker/api.Dockerfile",
                          "additional_contexts": {"assets": format!("{root}/assets")}}
            }
        },
        "configs": {"site": {"file": format!("{root}/site.conf")}, "inline": {"content": "x"}},
        "secrets": {"key": {"file": format!("{root}/secret.txt")}, "env": {"environment": "KEY"}}
    });
    let got = collect(
        dir.path(),
        Path::new(""),
        &[PathBuf::from("compose.yaml")],
        &doc,
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        got,
        strings(&[
            ".env",
            "api",
            "assets",
            "compose.yaml",
            "conf/nginx.conf",
            "docker/api.Dockerfile",
            "kedge.yaml",
            "secret.txt",
            "site.conf",
        ])
    );
}

#[test]
fn paths_compose_interpolates_or_fetches_leave_the_stack_without_a_fingerprint() {
    let cases = [
        (
            "services:\n  web:\n    env_file: ${ENV:-prod}.env\n",
            "${ENV:-prod}.env",
        ),
        (
            "include:\n  - oci://registry/app:1\n",
            "oci://registry/app:1",
        ),
        (
            "services:\n  web:\n    extends: {file: $BASE, service: b}\n",
            "$BASE",
        ),
        (
            "include:\n  - path: a.yaml\n    project_directory: ${DIR}\n",
            "${DIR}",
        ),
    ];
    for (text, path) in cases {
        let dir = checkout(&[("compose.yaml", text)]);
        let got = collect(
            dir.path(),
            Path::new(""),
            &[PathBuf::from("compose.yaml")],
            &json!({}),
            1 << 20,
        );
        assert_eq!(got, Err(Unknown::Dynamic(path.into())), "{text}");
    }
    let dir = checkout(&[("compose.yaml", "services: [unclosed\n")]);
    let got = collect(
        dir.path(),
        Path::new(""),
        &[PathBuf::from("compose.yaml")],
        &json!({}),
        1 << 20,
    );
    assert_eq!(got, Err(Unknown::Unreadable("compose.yaml".into())));
}

#[test]
fn a_link_inside_the_repository_brings_its_target() {
    let dir = checkout(&[("deploy/compose.yaml", "services: {}\n")]);
    std::os::unix::fs::symlink("deploy/compose.yaml", dir.path().join("compose.yaml")).unwrap();
    let got = collect(
        dir.path(),
        Path::new(""),
        &[PathBuf::from("compose.yaml")],
        &json!({}),
        1 << 20,
    )
    .unwrap();
    assert_eq!(
        got,
        strings(&[".env", "compose.yaml", "deploy/compose.yaml", "kedge.yaml"])
    );
}

#[test]
fn an_include_cycle_is_followed_once() {
    let files = [
        ("compose.yaml", "include: [a.yaml]\nservices: {}\n"),
        ("a.yaml", "include: [compose.yaml]\n"),
    ];
    let got = collected(&files, "", &["compose.yaml"], json!({}));
    assert_eq!(
        got,
        strings(&[".env", "a.yaml", "compose.yaml", "kedge.yaml"])
    );
}

#[test]
fn the_fingerprint_follows_the_inputs_and_nothing_else() {
    let paths = strings(&["compose.yaml", ".env", "conf"]);
    let ids = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let base = ids(&[("compose.yaml", "c1"), ("conf", "t1"), ("README.md", "r1")]);
    let at = |m: &HashMap<String, String>, env: &str| fingerprint(&paths, m, env);
    let before = at(&base, "e");
    let cases: [(&str, HashMap<String, String>, &str, bool); 6] = [
        ("same tree", base.clone(), "e", false),
        (
            "another file changed",
            ids(&[("compose.yaml", "c1"), ("conf", "t1"), ("README.md", "r2")]),
            "e",
            false,
        ),
        (
            "the compose file changed",
            ids(&[("compose.yaml", "c2"), ("conf", "t1"), ("README.md", "r1")]),
            "e",
            true,
        ),
        (
            "a file in a bind-mounted directory changed",
            ids(&[("compose.yaml", "c1"), ("conf", "t2"), ("README.md", "r1")]),
            "e",
            true,
        ),
        (
            "the .env compose reads appeared",
            ids(&[("compose.yaml", "c1"), ("conf", "t1"), (".env", "v1")]),
            "e",
            true,
        ),
        ("another environment", base.clone(), "f", true),
    ];
    for (case, ids, env, changed) in cases {
        assert_eq!(at(&ids, env) != before, changed, "{case}");
    }
}

#[test]
fn the_environment_digest_is_keyed() {
    assert_ne!(env_digest(&[1; 32]), env_digest(&[2; 32]));
    assert_eq!(env_digest(&[1; 32]), env_digest(&[1; 32]));
}
