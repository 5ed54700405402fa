//! A compose plugin of a test's own, in `DOCKER_CONFIG/cli-plugins` where
//! Kedge looks first: it logs every call (and when each `up` ran), then
//! runs the real plugin. Tests count compose processes with it, and see
//! which applies overlapped.

use std::path::{Path, PathBuf};

pub struct ComposeCalls {
    dir: tempfile::TempDir,
}

/// One `up` as the wrapper saw it: its project and its start and end, in
/// nanoseconds of the wall clock (compared with each other only).
#[derive(Debug, Clone)]
pub struct Up {
    pub project: String,
    pub start: u128,
    pub end: u128,
}

impl ComposeCalls {
    /// Each call logged; `up_delay` makes every `up` wait first, so that
    /// applies that may overlap do.
    pub fn new(up_delay: Option<&str>) -> Self {
        let real = [
            "/usr/local/lib/docker/cli-plugins",
            "/usr/local/libexec/docker/cli-plugins",
            "/usr/lib/docker/cli-plugins",
            "/usr/libexec/docker/cli-plugins",
        ]
        .iter()
        .map(|d| Path::new(d).join("docker-compose"))
        .find(|p| p.is_file())
        .expect("the compose plugin is installed");
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("cli-plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        let wrapper = plugins.join("docker-compose");
        let calls = dir.path().join("calls");
        let ups = dir.path().join("ups");
        let delay = up_delay.map(|d| format!("sleep {d}; ")).unwrap_or_default();
        std::fs::write(
            &wrapper,
            format!(
                r#"#!/bin/sh
echo "$*" >> '{calls}'
case " $* " in
*" up "*)
  project=$(echo " $* " | sed -n 's/.* -p \([^ ]*\) .*/\1/p')
  start=$(date +%s%N); {delay}'{real}' "$@"; rc=$?
  echo "$project $start $(date +%s%N)" >> '{ups}'
  exit $rc;;
esac
exec '{real}' "$@"
"#,
                calls = calls.display(),
                ups = ups.display(),
                real = real.display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        ComposeCalls { dir }
    }

    /// `DOCKER_CONFIG` for the Kedge under test.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Every compose call so far, its arguments each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every `up` that finished.
    pub fn ups(&self) -> Vec<Up> {
        std::fs::read_to_string(self.dir.path().join("ups"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some(Up {
                    project: f.next()?.to_string(),
                    start: f.next()?.parse().ok()?,
                    end: f.next()?.parse().ok()?,
                })
            })
            .collect()
    }
}

impl Up {
    pub fn overlaps(&self, other: &Up) -> bool {
        self.start < other.end && other.start < self.end
    }
}
