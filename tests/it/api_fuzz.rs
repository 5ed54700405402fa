//! The HTTP API fuzzed against its own OpenAPI document: schemathesis
//! (installed by scripts/provision.sh) sends generated requests, valid and
//! invalid, with a write token, and checks that none is answered with a
//! 5xx, that every status is one the document lists, and that every
//! answer matches its schema and content type.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::docker::IMAGE_1;
use crate::support::*;

/// Where provision.sh puts it; `KEDGE_SCHEMATHESIS` names another.
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("KEDGE_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/kedge-test/venv/bin/schemathesis"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/provision.sh (or set KEDGE_SCHEMATHESIS)",
        path.display()
    );
    path
}

/// What every answer must pass; `KEDGE_FUZZ_CHECKS` names others (`all`).
/// (`positive_data_acceptance` is not among them: a URL of the right
/// form may still be refused with 422, say a local path that does not exist.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,\
    response_schema_conformance,content_type_conformance,response_headers_conformance,\
    negative_data_rejection,ignored_auth,unsupported_method";

/// The whole run's wall-clock limit; schemathesis's own budget is smaller.
const RUN_LIMIT: Duration = Duration::from_secs(150);

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    require_docker();
    let st = schemathesis();
    let s = Stack::new("fuzz", &[("compose.yaml", &sleepers(&[("web", IMAGE_1)]))]);
    // A second repository in the same Kedge, never deployed (its remote
    // has a broken compose file): a failed repository answers too.
    let second = unique_name("fuzz2");
    let remote = GitRemote::new(&second);
    remote.write("compose.yaml", "services: [not, a, map]\n");
    remote.commit("broken");
    s.kedge
        .run(["repo", "add", &remote.url(), "--name", &second])
        .success();
    let _second_project = ComposeProject::named(&second);
    let token = s.kedge.token("fuzz", "write");
    // Repositories the fuzzer registers point nowhere: their checks must
    // give up fast, as must every status call that asks their remote.
    let api = s
        .kedge
        .serve_api(&["--poll-interval", "1s"], &[("KEDGE_GIT_TIMEOUT", "2s")]);
    wait_for(60, "the first deployment", || {
        (s.project.running().len() == 1).then_some(())
    });

    let doc = api.get("/api/v1/openapi.json", &token);
    assert_eq!(doc.status, 200, "{doc:?}");
    let schema = s.kedge.cwd().join("openapi.json");
    std::fs::write(&schema, &doc.body).unwrap();
    let seed = std::env::var("KEDGE_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let checks = std::env::var("KEDGE_FUZZ_CHECKS").unwrap_or_else(|_| CHECKS.into());
    // Most generated names are the registered ones, so the operations on a
    // repository get past 404 and their reports meet the schema; the rest
    // are whatever the fuzzer makes up.
    let config = s.kedge.cwd().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries.repos]\nvalues = [\"{}\", \"{second}\"]\n\n\
             [parameters]\n\
             \"path.name\" = {{ dictionary = \"repos\", probability = 0.7 }}\n\
             \"query.repo\" = {{ dictionary = \"repos\", probability = 0.5 }}\n\n\
             # 503 is what /readyz documents while a repository has not finished\n\
             # its first pass (those the fuzzer registers take a moment).\n\
             [[operations]]\n\
             include-path = \"/readyz\"\n\
             checks.not_a_server_error.expected-statuses = \
             [\"2xx\", \"3xx\", \"4xx\", \"503\"]\n",
            s.name
        ),
    )
    .unwrap();

    // Into a file: a pipe nobody reads until the end could fill and stall it.
    let report = s.kedge.cwd().join("schemathesis.log");
    let log = std::fs::File::create(&report).unwrap();
    let mut child = ChildGuard(
        Command::new(st)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(&schema)
            .args(["--url", &api.url("")])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args(["--checks", &checks])
            // Not fuzzed: the event stream never ends; removing a
            // repository, sync and rollback apply real stacks (slow, and
            // they would take the registered repositories away).
            // api_input.rs gives these bad input by hand.
            .args(["--exclude-path", "/api/v1/events/stream"])
            .args(["--exclude-method", "DELETE"])
            .args(["--exclude-path-regex", "/(sync|rollback)$"])
            .args(["--max-examples", "15", "--max-time", "40"])
            .args(["--seed", &seed, "--workers", "1", "--request-timeout", "20"])
            .args(["--no-color", "--suppress-health-check", "all"])
            .current_dir(s.kedge.cwd())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start schemathesis"),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < RUN_LIMIT,
            "schemathesis ran longer than {RUN_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        status.success(),
        "schemathesis found problems (seed {seed}):\n{out}"
    );
    // It did test something.
    assert!(out.contains("passed"), "{out}");
    eprintln!("{out}");
    // And serve is still answering.
    assert_eq!(api.call("GET", "/healthz", None, None, &[]).status, 200);
}
