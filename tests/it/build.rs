//! Services with `build:` end to end: what makes Kedge build, and what a
//! failed build says.

use crate::support::docker::{IMAGE_1, docker_ok, kept_builds, remove_built_image};
use crate::support::*;

/// Removes a built image, and the builds Kedge kept of it, when the test
/// ends, panic or not.
struct BuiltImage(String);

impl Drop for BuiltImage {
    fn drop(&mut self) {
        remove_built_image(&self.0);
    }
}

fn env_of(container: &str) -> String {
    docker_ok(&["inspect", "--format", "{{json .Config.Env}}", container])
}

fn build_compose(mode: &str) -> String {
    format!(
        "services:
  app:
    build: ./app
    command: [sleep, '3600']
    stop_signal: SIGKILL
    environment:
      MODE: {mode}
"
    )
}

/// A stack of one built service (`app`, its build context holding
/// `version`), its image's name, and what removes that image at the end.
fn built_stack(prefix: &str, version: &str) -> (Stack, String, BuiltImage) {
    let s = Stack::new(
        prefix,
        &[
            ("compose.yaml", &build_compose("one")),
            ("app/Dockerfile", &format!("FROM {IMAGE_1}\nCOPY . /ctx\n")),
            ("app/version", &format!("{version}\n")),
        ],
    );
    let image = format!("{}-app", s.name);
    let cleanup = BuiltImage(image.clone());
    (s, image, cleanup)
}

#[test]
fn an_environment_change_of_a_build_service_does_not_rebuild_it() {
    let (s, image, _cleanup) = built_stack("envbuild", "v1");
    let _serve = s.kedge.serve("300ms");
    let first = wait_for(90, "the built service", || s.running().remove("app"));
    let built = image_id(&image);
    let label = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.kedge.build\"}}",
        &image,
    ]);
    assert_eq!(
        label.len(),
        64,
        "the image carries its build fingerprint: {label:?}"
    );

    // A file in the build context on disk that Git does not know: any build
    // from now on copies it into the image, so a build cannot go unseen.
    let context = s.kedge.data_dir().join("repos").join(&s.name).join("app");
    std::fs::write(context.join("untracked"), "seen by a build\n").unwrap();

    // Only the environment changes: the container is recreated, the image is not built.
    s.remote.write("compose.yaml", &build_compose("two"));
    let c2 = s.remote.commit("mode two");
    let second = wait_for(60, "app recreated for the new environment", || {
        s.running()
            .remove("app")
            .filter(|c| c.label("io.kedge.commit") == Some(c2.as_str()))
    });
    assert_ne!(second.id, first.id);
    assert!(env_of(&second.id).contains("MODE=two"));
    assert_eq!(image_id(&image), built, "the image was built again");
    assert_eq!(second.image_id, built);

    // A changed build context is built.
    s.remote.write("app/version", "v2\n");
    let c3 = s.remote.commit("version two");
    let third = wait_for(90, "app rebuilt", || {
        s.running()
            .remove("app")
            .filter(|c| c.label("io.kedge.commit") == Some(c3.as_str()))
    });
    assert_eq!(docker_ok(&["exec", &third.id, "cat", "/ctx/version"]), "v2");
    assert_ne!(image_id(&image), built);
}

#[test]
fn a_failed_build_names_the_service_and_compose_s_reason() {
    let s = Stack::new(
        "badbuild",
        &[
            (
                "compose.yaml",
                "services:\n  app:\n    build: ./app\n    command: [sleep, '3600']\n",
            ),
            (
                "app/Dockerfile",
                &format!("FROM {IMAGE_1}\nRUN echo breaking on purpose && exit 3\n"),
            ),
        ],
    );
    let _cleanup = BuiltImage(format!("{}-app", s.name));
    let commit = s.remote.remote_head();
    let _serve = s.kedge.serve("300ms");
    let d = wait_for(90, "the failed deployment", || {
        s.history()
            .as_array()?
            .iter()
            .find(|d| d["commit"] == commit.as_str() && d["status"] == "failed")
            .cloned()
    });
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("service app failed to build: "),
        "{error}"
    );
    assert!(error.contains("exit code: 3"), "{error}");
    assert!(!error.contains("--project-directory"), "{error}");
    assert!(s.running().is_empty());
}

/// The stack of the regression below: a built app with a healthcheck, and
/// a proxy no commit touches.
fn gated_build_compose() -> String {
    format!(
        "services:
  app:
    build: ./app
    command: [sleep, '3600']
    stop_signal: SIGKILL
    healthcheck:
      test: [CMD, cat, /ctx/healthy]
      interval: 1s
      retries: 2
  proxy:
    image: {IMAGE_1}
    command: [sleep, '3600']
    stop_signal: SIGKILL
"
    )
}

/// Regression: a `build:` service could not be rolled back. A bad commit
/// rebuilt the app's image under its name; the automatic restore ran `up`
/// without rebuilding and brought the same broken image back (flapping the
/// proxy on every retry), and a `git revert` did not rebuild either (its
/// fingerprint equalled the recorded one). Each build is now kept under a
/// tag of its fingerprint and put back under the name when it runs again.
#[test]
fn a_bad_build_is_rolled_back_to_the_exact_previous_image_and_a_revert_runs_it() {
    let s = Stack::new(
        "buildback",
        &[
            ("compose.yaml", &gated_build_compose()),
            ("kedge.yaml", "deploy:\n  timeout: 20s\n  stable_for: 0s\n"),
            ("app/Dockerfile", &format!("FROM {IMAGE_1}\nCOPY . /ctx\n")),
            ("app/healthy", "yes\n"),
        ],
    );
    let image = format!("{}-app", s.name);
    let _cleanup = BuiltImage(image.clone());
    let k = &s.kedge;
    k.run(["sync", "--repo", &s.name]).success();
    let good = image_id(&image);
    let first = s.running();
    let proxy = first["proxy"].id.clone();
    assert_eq!(first["app"].image_id, good);

    // A bad build: its healthcheck never passes.
    s.remote.remove("app/healthy");
    s.remote.write("app/broken", "yes\n");
    let bad = s.remote.commit("break the app");
    let out = k.run(["sync", "--repo", &s.name]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let app = wait_for(60, "the app back on the previous image", || {
        s.running().remove("app").filter(|c| c.image_id == good)
    });
    assert_ne!(app.id, first["app"].id, "recreated onto the kept build");
    assert_eq!(image_id(&image), good, "the name is the good build's again");
    assert_eq!(s.running()["proxy"].id, proxy, "the proxy was not touched");
    let history = s.history();
    assert_eq!(history[0]["trigger"], "auto_rollback", "{history}");
    assert_eq!(history[0]["status"], "rolled_back", "{history}");

    // `git revert`: the good inputs again run the good image, unbuilt.
    s.remote.write("app/healthy", "yes\n");
    s.remote.remove("app/broken");
    let revert = s
        .remote
        .commit(&format!("Revert \"break the app\" ({})", &bad[..7]));
    k.run(["sync", "--repo", &s.name]).success();
    let status = s.status();
    assert_eq!(status["deployed_commit"], revert.as_str(), "{status}");
    let now = s.running();
    assert_eq!(now["app"].image_id, good);
    assert_eq!(now["proxy"].id, proxy);
}

/// Regression: a build service whose image name was taken by another image
/// (a build by hand, another checkout with the same name) was healed onto
/// that image, then found "config changed" again and again: recreated in a
/// loop, backed off, never converging. Its image is its build's.
#[test]
fn another_image_under_a_build_service_name_is_not_healed_onto() {
    let (s, image, _cleanup) = built_stack("buildname", "v1");
    let serve = s
        .kedge
        .serve_debug(&["serve", "--poll-interval", "1h", "--check-interval", "1s"]);
    let first = wait_for(90, "the built service", || s.running().remove("app"));
    // Someone builds another image under the same name.
    let other = tempfile::tempdir().unwrap();
    std::fs::write(
        other.path().join("Dockerfile"),
        format!("FROM {IMAGE_1}\nRUN echo other > /other\n"),
    )
    .unwrap();
    docker_ok(&["build", "-q", "-t", &image, &other.path().to_string_lossy()]);
    assert_ne!(image_id(&image), first.image_id);
    // Full checks every second: three passes see the name moved.
    let mark = serve.mark();
    serve.wait_passes(&s.name, mark, 3, 60);
    let now = s.running().remove("app").expect("the app runs");
    assert_eq!(now.id, first.id, "not recreated");
    assert_eq!(now.image_id, first.image_id);
    let events = s
        .kedge
        .run(["events", "--repo", &s.name, "-o", "json"])
        .json();
    let drift: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "drift_detected" || e["kind"] == "drift_healed")
        .collect();
    assert!(drift.is_empty(), "{drift:?}");

    // Stopped by hand, it is started again, still on its build's image.
    docker_ok(&["stop", "-t", "0", &first.id]);
    let back = wait_for(30, "the app running again", || {
        s.running().remove("app").filter(|c| c.status == "running")
    });
    assert_eq!(back.image_id, first.image_id);
}

/// Builds are kept for rollbacks, the newest five of a service: not one
/// per commit for ever.
#[test]
fn the_newest_five_builds_of_a_service_are_kept() {
    let (s, image, _cleanup) = built_stack("buildkeep", "v0");
    s.kedge.run(["sync", "--repo", &s.name]).success();
    assert_eq!(kept_builds(&image).len(), 1);
    for round in 1..=6 {
        s.remote.write("app/version", &format!("v{round}\n"));
        s.remote.commit(&format!("version {round}"));
        s.kedge.run(["sync", "--repo", &s.name]).success();
    }
    let kept = kept_builds(&image);
    assert_eq!(kept.len(), 5, "{kept:?}");
    // The running one among them.
    let running = s.running().remove("app").unwrap();
    assert!(
        kept.iter().any(|t| image_id(t) == running.image_id),
        "{kept:?}"
    );
}
