use super::*;
use crate::config::yaml;

fn no_env(_: &str) -> Option<String> {
    None
}

fn declared_of(text: &str) -> Result<Declared, String> {
    let doc = yaml::parse(text).map_err(|e| e.to_string())?;
    declared(&doc, &no_env).map_err(|e| e.to_string())
}

/// A homelab repository's paths.
const TREE: &[&str] = &[
    "kedge.yaml",
    "common.env",
    "stacks",
    "stacks/web",
    "stacks/web/compose.yaml",
    "stacks/web/site.conf",
    "stacks/db",
    "stacks/db/compose.yaml",
    "stacks/db/compose.prod.yaml",
    "stacks/monitoring",
    "stacks/monitoring/docker-compose.yml",
    "stacks/_template",
    "stacks/_template/compose.yaml",
    "stacks/docs",
    "stacks/docs/README.md",
    "apps/edge/proxy/compose.yaml",
];

fn names(stacks: &[StackDecl]) -> Vec<&str> {
    stacks.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn discovery_finds_directories_with_a_compose_file_and_explicit_entries_win() {
    let d = declared_of(
        "discover:\n  - path: \"stacks/*\"\n    exclude: [\"stacks/_*\"]\n  - path: \"apps/**\"\n\
         stacks:\n  - path: stacks/db\n    compose_file: [compose.yaml, compose.prod.yaml]\n    profiles: [prod]\n    env_file: ../../common.env\n    after: [monitoring]\n",
    )
    .unwrap();
    assert!(!d.is_single());
    let stacks = expand(&d, TREE.iter().copied()).unwrap();
    // `after` first, then by name.
    assert_eq!(names(&stacks), ["monitoring", "db", "proxy", "web"]);
    let db = &stacks[1];
    assert_eq!(
        db,
        &StackDecl {
            name: "db".into(),
            path: "stacks/db".into(),
            compose_files: vec!["compose.yaml".into(), "compose.prod.yaml".into()],
            profiles: vec!["prod".into()],
            env_files: vec!["../../common.env".into()],
            after: vec!["monitoring".into()],
            discovered: false,
        }
    );
    assert!(stacks[0].discovered && stacks[2].discovered);
    assert_eq!(stacks[2].path, "apps/edge/proxy");
}

#[test]
fn a_file_without_stacks_or_discover_has_one_stack_at_the_root() {
    for text in [
        "",
        "reconciliation:\n  mode: notify\n",
        "stacks_removed: down\n",
    ] {
        let d = declared_of(text).unwrap();
        assert!(d.is_single(), "{text:?}");
        assert_eq!(expand(&d, TREE.iter().copied()).unwrap(), Vec::new());
    }
}

#[test]
fn layout_keys_are_checked_with_the_key_and_the_line() {
    let cases = [
        (
            "stacks:\n  - path: stacks/Web\n",
            "line 2: `stacks[0].name`: invalid value \"Web\", expected lowercase letters, digits, `_` and `-`, starting with a letter or digit",
        ),
        (
            "stacks:\n  - path: ../elsewhere\n",
            "line 2: `stacks[0].path`: invalid value \"../elsewhere\", expected a directory of the repository",
        ),
        (
            "stacks:\n  - path: .\n",
            "line 2: `stacks[0].name` is required",
        ),
        (
            "stacks:\n  - path: stacks/db\n    env_file: ../../../outside.env\n",
            "line 2: `stacks[0].env_file`: invalid value \"../../../outside.env\", expected a path relative to the stack's path, inside the repository",
        ),
        (
            "stacks:\n  - path: stacks/db\n    profiles: [\"-x\"]\n",
            "line 2: `stacks[0].profiles`: invalid value \"-x\", expected a profile name: letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        ),
        (
            "stacks:\n  - path: stacks/db\n    depends: [web]\n",
            "line 3: unknown key `stacks[0].depends` (expected one of: name, path, compose_file, profiles, env_file, after)",
        ),
        (
            "discover:\n  - exclude: [x]\n",
            "line 2: `discover[0].path` is required",
        ),
        (
            "discover:\n  - path: \"stacks/[\"\n",
            "line 2: `discover[0].path`: invalid value \"stacks/[\", expected a glob over directories (invalid range pattern)",
        ),
        (
            "stacks_removed: delete\n",
            "line 1: `stacks_removed`: invalid value \"delete\", expected keep or down",
        ),
        (
            "defaults:\n  reconciliation:\n    mode: sometimes\n",
            "line 3: `defaults.reconciliation.mode`: invalid value \"sometimes\", expected auto, notify or manual",
        ),
        (
            "stack:\n  - path: x\n",
            "line 1: unknown key `stack` (expected one of: docker, target, reconciliation, deploy, drift, sops, updates, stacks, discover, stacks_removed, defaults, webhooks)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(declared_of(text).unwrap_err(), want, "{text:?}");
    }
}

#[test]
fn expanding_refuses_what_cannot_be_deployed_naming_it() {
    let cases = [
        (
            "discover:\n  - path: \"**\"\n",
            &["a/web/compose.yaml", "b/web/compose.yaml"][..],
            "stacks in a/web and in b/web are both named `web`: give one of them another `name:` under `stacks:`",
        ),
        (
            "discover:\n  - path: \"stacks/*\"\n",
            &["stacks/My App/compose.yaml"][..],
            "discover: found stacks/My App, whose name `My App` is not a stack name (lowercase letters, digits, `_` and `-`): list it under `stacks:` with a `name:`, or exclude it",
        ),
        (
            "stacks:\n  - path: web\n    after: [db]\n",
            &["web/compose.yaml"][..],
            "stack `web`: `after` names `db`, which is not a stack of this repository",
        ),
        (
            "stacks:\n  - {path: a, after: [b]}\n  - {path: b, after: [c]}\n  - {path: c, after: [a]}\n  - {path: d}\n",
            &[][..],
            "stacks wait for each other in a circle (after:): a → b → c → a",
        ),
    ];
    for (text, tree, want) in cases {
        let d = declared_of(text).unwrap();
        assert_eq!(
            expand(&d, tree.iter().copied()).unwrap_err().to_string(),
            want,
            "{text:?}"
        );
    }
}

#[test]
fn a_discover_star_stays_in_its_segment_and_double_star_crosses() {
    let tree = [
        "stacks/web/compose.yaml",
        "stacks/deep/er/compose.yaml",
        "compose.yaml",
    ];
    let one = declared_of("discover:\n  - path: \"stacks/*\"\n").unwrap();
    assert_eq!(names(&expand(&one, tree).unwrap()), ["web"]);
    let all = declared_of("discover:\n  - path: \"stacks/**\"\n").unwrap();
    assert_eq!(names(&expand(&all, tree).unwrap()), ["er", "web"]);
}

#[test]
fn a_directorys_own_file_overrides_the_defaults_key_by_key() {
    let defaults = yaml::parse(
        "docker:\n  project_name: shared\n  profiles: [base]\nreconciliation:\n  mode: notify\n  prune: false\n",
    )
    .unwrap();
    let own = yaml::parse("docker:\n  profiles: [prod]\ndeploy:\n  timeout: 5m\n").unwrap();
    let both = merged(Some(&defaults), Some(&own));
    let k = kedge_yaml::from_node(&both, &no_env, "").unwrap();
    assert_eq!(k.project_name.as_deref(), Some("shared"));
    assert_eq!(k.profiles, ["prod"]);
    assert_eq!(k.mode, crate::model::settings::Mode::Notify);
    assert!(!k.prune);
    assert_eq!(k.gate.timeout, std::time::Duration::from_secs(300));

    let none = kedge_yaml::from_node(&merged(None, None), &no_env, "").unwrap();
    assert_eq!(none.mode, crate::model::settings::Mode::Auto);
    let only_own = kedge_yaml::from_node(&merged(None, Some(&own)), &no_env, "").unwrap();
    assert_eq!(only_own.profiles, ["prod"]);
}

#[test]
fn a_stack_on_several_hosts_is_one_stack_per_host() {
    let decl = |name: &str, after: &[&str]| StackDecl {
        name: name.into(),
        path: format!("stacks/{name}"),
        compose_files: Vec::new(),
        profiles: Vec::new(),
        env_files: Vec::new(),
        after: after.iter().map(|a| a.to_string()).collect(),
        discovered: true,
    };
    let hosts: BTreeMap<String, Vec<String>> =
        [("db".to_string(), vec!["a".to_string(), "b".to_string()])].into();
    let out = on_hosts(vec![decl("db", &[]), decl("web", &["db"])], &hosts);
    let names: Vec<(&str, &str, Vec<String>)> = out
        .iter()
        .map(|s| (s.name.as_str(), s.path.as_str(), s.after.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("db@a", "stacks/db", vec![]),
            ("db@b", "stacks/db", vec![]),
            (
                "web",
                "stacks/web",
                vec!["db@a".to_string(), "db@b".to_string()]
            ),
        ]
    );
    assert_eq!(split_host("db@a"), ("db", Some("a")));
    assert_eq!(split_host("web"), ("web", None));
}
