//! A repository as most tests want it: a git remote holding a compose
//! stack, registered with a fresh Kedge, and its compose project cleaned up.

use std::collections::BTreeMap;

use super::docker::{ComposeProject, Container};
use super::git::GitRemote;
use super::kedge::Kedge;
use super::unique_name;

pub struct Stack {
    pub name: String,
    pub remote: GitRemote,
    pub kedge: Kedge,
    pub project: ComposeProject,
}

/// The health gate as tests that do not study it want it: on, as by
/// default, but a service without a healthcheck counts as up once it runs
/// (`stable_for: 0s`) instead of after 5 s. Tests of the gate say their own.
pub const QUICK_GATE: &str = "deploy:\n  stable_for: 0s\n";

/// `kedge.yaml` with [`QUICK_GATE`] added, unless it has a `deploy` section.
pub fn with_quick_gate(kedge_yaml: &str) -> String {
    if kedge_yaml.lines().any(|l| l.starts_with("deploy:")) {
        kedge_yaml.to_string()
    } else {
        format!("{kedge_yaml}{QUICK_GATE}")
    }
}

impl Stack {
    /// `files` committed and pushed as the first commit; the repository is
    /// named (and its project called) `kt-<prefix>-…`. Its kedge.yaml gets
    /// [`QUICK_GATE`] unless it has a `deploy` section of its own.
    pub fn new(prefix: &str, files: &[(&str, &str)]) -> Self {
        Stack::with_kedge(prefix, files, Kedge::new())
    }

    /// As `new`, registered with `kedge` (one with its own environment).
    pub fn with_kedge(prefix: &str, files: &[(&str, &str)], kedge: Kedge) -> Self {
        let name = unique_name(prefix);
        let remote = GitRemote::new(&name);
        for (path, content) in files {
            remote.write(path, content);
        }
        if !files.iter().any(|(path, _)| *path == "kedge.yaml") {
            remote.write("kedge.yaml", QUICK_GATE);
        }
        for (path, content) in files {
            if *path == "kedge.yaml" {
                remote.write(path, &with_quick_gate(content));
            }
        }
        remote.commit("first");
        kedge.run(["repo", "add", &remote.url()]).success();
        let project = ComposeProject::named(&name);
        Stack {
            name,
            remote,
            kedge,
            project,
        }
    }

    /// Running containers by service.
    pub fn running(&self) -> BTreeMap<String, Container> {
        self.project
            .running()
            .into_iter()
            .map(|c| (c.service().to_string(), c))
            .collect()
    }

    /// Waits until the newest deployment has finished (health gate
    /// included) and succeeded: containers run before the gate has looked
    /// at them, and one stopped meanwhile fails the deployment.
    #[track_caller]
    pub fn wait_deployed(&self) {
        wait_deployed(&self.kedge, &self.name);
    }

    /// `kedge history -o json` of this repository.
    pub fn history(&self) -> serde_json::Value {
        self.kedge
            .run(["history", "--repo", &self.name, "-o", "json"])
            .json()
    }

    /// This repository's events of `kind`, oldest first.
    pub fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.kedge
            .run(["events", "--repo", &self.name, "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }

    /// The commit label of `service`'s running container.
    pub fn running_commit(&self, service: &str) -> Option<String> {
        self.running()
            .get(service)?
            .label("io.kedge.commit")
            .map(str::to_string)
    }

    /// `kedge status -o json` of this repository.
    pub fn status(&self) -> serde_json::Value {
        self.kedge
            .run(["status", "--repo", &self.name, "-o", "json"])
            .json()[0]
            .clone()
    }
}

/// [`Stack::wait_deployed`] for a repository of `kedge`.
#[track_caller]
pub fn wait_deployed(kedge: &Kedge, repo: &str) {
    super::wait_for(60, "the deployment finished", || {
        let h = kedge.run(["history", "--repo", repo, "-o", "json"]).json();
        let newest = h.get(0)?;
        match newest["status"].as_str()? {
            "in_progress" => None,
            "success" => Some(()),
            other => panic!("the deployment ended {other}: {h}"),
        }
    });
}

/// A compose file of busybox `sleep` services, `(service, image)` each,
/// stopped by SIGKILL (busybox ignores SIGTERM as PID 1).
pub fn sleepers(services: &[(&str, &str)]) -> String {
    let mut out = String::from("services:\n");
    for (service, image) in services {
        out.push_str(&format!(
            "  {service}:\n    image: {image}\n    command: [sleep, '3600']\n    stop_signal: SIGKILL\n"
        ));
    }
    out
}

/// One service whose container takes its full 6 s grace period to stop:
/// long enough for a test to act while an apply is in flight, even on a
/// loaded machine.
pub fn slow_to_stop(image: &str) -> String {
    format!(
        "services:\n  slow:\n    image: {image}\n    command: [sleep, '3600']\n    stop_grace_period: 6s\n"
    )
}

/// A stack deployed by `serve`, then a second commit whose apply (slow:
/// the old container takes 6 s to stop) is caught in flight. Returns the
/// stack, the running `serve` and that commit.
pub fn apply_in_flight(prefix: &str) -> (Stack, super::kedge::Serve, String) {
    use super::docker::{IMAGE_1, IMAGE_2};
    let s = Stack::new(prefix, &[("compose.yaml", &slow_to_stop(IMAGE_1))]);
    let serve = s.kedge.serve("300ms");
    super::wait_for(60, "the first deployment", || {
        (s.project.running().len() == 1).then_some(())
    });
    s.remote.write("compose.yaml", &slow_to_stop(IMAGE_2));
    let commit = s.remote.commit("two");
    super::wait_for(30, "the apply in flight", || {
        let h = s.history();
        (h[0]["commit"] == commit.as_str() && h[0]["status"] == "in_progress").then_some(())
    });
    // In flight means compose itself is running, not only the row written.
    super::wait_for(30, "compose up running", || {
        compose_up_running(&s.name).then_some(())
    });
    (s, serve, commit)
}

/// Whether a `compose … -p PROJECT … up` process runs on this host.
pub fn compose_up_running(project: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let has = |a: &str| args.contains(&a.as_bytes());
        args.first().is_some_and(|a| a.ends_with(b"compose")) && has(project) && has("up")
    })
}
