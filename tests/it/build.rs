//! Services with `build:` end to end: what makes Kedge build, and what a
//! failed build says.

use crate::support::docker::{IMAGE_1, docker, docker_ok};
use crate::support::*;

/// Removes a built image when the test ends, panic or not.
struct BuiltImage(String);

impl Drop for BuiltImage {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "-f", &self.0]);
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

#[test]
fn an_environment_change_of_a_build_service_does_not_rebuild_it() {
    let s = Stack::new(
        "envbuild",
        &[
            ("compose.yaml", &build_compose("one")),
            ("app/Dockerfile", &format!("FROM {IMAGE_1}\nCOPY . /ctx\n")),
            ("app/version", "v1\n"),
        ],
    );
    let image = format!("{}-app", s.name);
    let _cleanup = BuiltImage(image.clone());
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
