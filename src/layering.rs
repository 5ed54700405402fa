//! layering (tests only): which module may name which, checked on the
//! source text — the faces above `ops`, `record` below every stage.

use std::path::Path;

/// Asserts that no `.rs` file under `dir` names any of `forbidden`; the
/// number of files looked at.
pub fn assert_no_file_names(dir: &Path, forbidden: &[String]) -> usize {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            seen += assert_no_file_names(&path, forbidden);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        seen += 1;
        for module in forbidden {
            assert!(
                !text.contains(module.as_str()),
                "{} uses {module}",
                path.display()
            );
        }
    }
    seen
}

/// Every stage and face `record` must not name: it keeps what they hand it
/// (value types of `model`) and depends on none of them.
#[test]
fn the_store_depends_on_no_stage() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/record");
    // Spelled in parts, so that this file does not name them itself.
    let forbidden: Vec<String> = [
        "desired",
        "source",
        "observe",
        "plan",
        "apply",
        "compose",
        "controller",
        "process",
        "notify",
        "ops",
        "http",
        "api",
        "web",
        "cli",
    ]
    .into_iter()
    .map(|m| format!("crate::{m}"))
    .collect();
    let seen = assert_no_file_names(&dir, &forbidden);
    assert!(seen >= 9, "only {seen} files in src/record");
}

/// `observe` reports what runs; deciding what to do about it is `plan`'s
/// (which reads `observe`, never the other way round).
#[test]
fn observing_decides_nothing() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/observe");
    let forbidden: Vec<String> = ["plan", "apply", "controller", "ops"]
        .into_iter()
        .map(|m| format!("crate::{m}"))
        .collect();
    let seen = assert_no_file_names(&dir, &forbidden);
    assert!(seen >= 3, "only {seen} files in src/observe");
}

/// The notification sinks get the settings and the hub they follow, not
/// the controller's whole state.
#[test]
fn notifications_take_only_what_they_need() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/notify");
    let forbidden = ["controller::Shared".to_string()];
    let seen = assert_no_file_names(&dir, &forbidden);
    assert!(seen >= 6, "only {seen} files in src/notify");
}

/// The faces get the operations' reports from `ops`, which hands on value
/// types (`model`), never the controller's own.
#[test]
fn the_operations_hand_on_no_controller_type() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        seen += 1;
        let needle = format!("pub use crate::{}", "controller");
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with(&needle)),
            "{} re-exports a controller type",
            path.display()
        );
    }
    assert!(seen >= 10, "only {seen} files in src/ops");
}

/// `model` holds values every stage may share: it names none of them.
#[test]
fn the_value_types_depend_on_no_stage() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/model");
    let forbidden: Vec<String> = [
        "desired",
        "source",
        "observe",
        "plan",
        "apply",
        "controller",
        "record",
        "ops",
    ]
    .into_iter()
    .map(|m| format!("crate::{m}"))
    .collect();
    let seen = assert_no_file_names(&dir, &forbidden);
    assert!(seen >= 9, "only {seen} files in src/model");
}

/// The controller and the operations ask a stack's target to act; they
/// never branch on its kind (fleet.md §4: a remote host is configuration,
/// not a new code path).
#[test]
fn the_controller_holds_no_branch_on_the_target() {
    let forbidden: Vec<String> = [
        "Target::Swarm",
        "Target::Compose",
        "target::swarm",
        "target::compose",
        "\"swarm\"",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for dir in ["src/controller", "src/ops"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let seen = assert_no_file_names(&dir, &forbidden);
        assert!(seen >= 5, "only {seen} files in {}", dir.display());
    }
}

/// Targets sit below the controller: they are handed what they work
/// with (`Site`), and name neither the controller nor the faces.
#[test]
fn targets_know_nothing_of_the_controller() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/target");
    let forbidden: Vec<String> = ["controller", "ops", "http", "api", "web", "cli"]
        .into_iter()
        .map(|m| format!("crate::{m}"))
        .collect();
    let seen = assert_no_file_names(&dir, &forbidden);
    assert!(seen >= 4, "only {seen} files in src/target");
}
