//! Proves the test harness itself against the real engine and real git.

use crate::support::docker::{IMAGE_1, IMAGE_2};
use crate::support::*;

const COMPOSE: &str = "services:
  web:
    image: kedge-test/busybox:1
    command: [sleep, '3600']
    volumes:
      - data:/data
volumes:
  data:
";

#[test]
fn git_remote_commits_and_pushes() {
    let remote = GitRemote::new("app");
    remote.write("compose.yaml", COMPOSE);
    let c1 = remote.commit("first");
    assert_eq!(c1.len(), 40);
    assert_eq!(remote.remote_head(), c1);
    remote.write("README.md", "hello\n");
    let c2 = remote.commit("second");
    assert_ne!(c1, c2);
    assert_eq!(remote.remote_head(), c2);
}

#[test]
fn test_images_are_two_distinct_busybox_images() {
    require_docker();
    assert_ne!(image_id(IMAGE_1), image_id(IMAGE_2));
}

#[test]
fn a_compose_project_runs_is_found_by_label_and_is_cleaned_up() {
    let remote = GitRemote::new("smoke");
    remote.write("compose.yaml", COMPOSE);
    remote.commit("stack");

    let name;
    {
        let project = ComposeProject::new("smoke");
        name = project.name.clone();
        project.up(&remote.work);
        let running = project.running();
        assert_eq!(running.len(), 1, "{running:?}");
        let web = &running[0];
        assert_eq!(web.service(), "web");
        assert_eq!(web.image, IMAGE_1);
        assert_eq!(web.image_id, image_id(IMAGE_1));
        assert_eq!(web.label("com.docker.compose.project"), Some(name.as_str()));
        assert_eq!(project.volumes().len(), 1);
    }
    assert!(containers_by_label(&format!("com.docker.compose.project={name}")).is_empty());
}

#[test]
fn a_panicking_test_still_cleans_up_its_project() {
    let remote = GitRemote::new("panic");
    remote.write("compose.yaml", COMPOSE);
    remote.commit("stack");
    let work = remote.work.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let project = ComposeProject::new("panic");
        tx.send(project.name.clone()).unwrap();
        project.up(&work);
        assert_eq!(project.running().len(), 1);
        panic!("deliberate");
    })
    .join();
    assert!(result.is_err());
    let name = rx.recv().unwrap();
    assert!(containers_by_label(&format!("com.docker.compose.project={name}")).is_empty());
}
