//! plan: what a commit changes. Pure: given the services deployed now and
//! a rendered commit, which services change (and so are recreated), which
//! commit each service's `io.kedge.commit` label carries, and how each
//! change reads in `kedge diff`. `serve`, `sync` and `diff` all ask here.

use std::collections::BTreeMap;

use crate::desired::render::{Desired, ServiceSpec};
pub use crate::model::report::ServiceChange;
use crate::record::ServiceRecord;
use crate::short;

/// A rendered commit against what is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    /// Every service of the commit as it will be recorded: an unchanged
    /// service keeps the commit (and config hash) it was deployed from.
    pub records: BTreeMap<String, ServiceRecord>,
    /// The services added, changed or removed, sorted.
    pub changed: Vec<String>,
    /// The same, service by service, for `diff`.
    pub changes: Vec<ServiceChange>,
}

/// What deploying `desired` (rendered from `commit`) over `previous` does.
pub fn rollout(
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
    commit: &str,
) -> Rollout {
    let image = |spec: &ServiceSpec| spec.image_ref(&desired.project);
    let mut records = BTreeMap::new();
    let mut changes = Vec::new();
    for (name, spec) in &desired.services {
        let record = match previous.get(name) {
            Some(p) if p.spec.hash == spec.hash => ServiceRecord {
                spec: spec.clone(),
                commit: p.commit.clone(),
                config_hash: p.config_hash.clone(),
            },
            before => {
                changes.push(match before {
                    None => ServiceChange {
                        service: name.clone(),
                        change: "added",
                        expected: image(spec),
                        actual: "not deployed".into(),
                    },
                    Some(p) => {
                        let (expected, actual) = if p.spec.image != spec.image {
                            (image(spec), image(&p.spec))
                        } else {
                            (
                                format!("configuration of {}", short(commit)),
                                format!("configuration of {}", short(&p.commit)),
                            )
                        };
                        ServiceChange {
                            service: name.clone(),
                            change: "updated",
                            expected,
                            actual,
                        }
                    }
                });
                ServiceRecord {
                    spec: spec.clone(),
                    commit: commit.to_string(),
                    config_hash: None,
                }
            }
        };
        records.insert(name.clone(), record);
    }
    for (name, p) in previous {
        if !desired.services.contains_key(name) {
            changes.push(ServiceChange {
                service: name.clone(),
                change: "removed",
                expected: "not in the compose file".into(),
                actual: image(&p.spec),
            });
        }
    }
    changes.sort_by(|a, b| a.service.cmp(&b.service));
    let changed = changes.iter().map(|c| c.service.clone()).collect();
    Rollout {
        records,
        changed,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::kedge_yaml::KedgeYaml;

    fn spec(name: &str, hash: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            hash: hash.into(),
            image: Some(image.into()),
            build: None,
            build_fingerprint: None,
            replicas: 1,
            restart: None,
            ignored: false,
        }
    }

    fn desired(services: &[(&str, &str, &str)]) -> Desired {
        Desired {
            commit: "c2c2c2c2c2".into(),
            project: "p".into(),
            kedge: KedgeYaml::default(),
            files: vec![],
            stack_dir: None,
            env_files: vec![],
            dormant: vec![],
            rendered: String::new(),
            inputs: None,
            secrets: None,
            images: Default::default(),
            services: services
                .iter()
                .map(|(n, h, i)| (n.to_string(), spec(n, h, i)))
                .collect(),
        }
    }

    fn deployed(services: &[(&str, &str, &str, &str)]) -> BTreeMap<String, ServiceRecord> {
        services
            .iter()
            .map(|(n, h, i, c)| {
                (
                    n.to_string(),
                    ServiceRecord {
                        spec: spec(n, h, i),
                        commit: c.to_string(),
                        config_hash: Some(format!("cfg-{n}")),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rollout_table() {
        struct Case {
            what: &'static str,
            previous: &'static [(&'static str, &'static str, &'static str, &'static str)],
            next: &'static [(&'static str, &'static str, &'static str)],
            changes: &'static [(&'static str, &'static str, &'static str, &'static str)],
            /// (service, label commit, config hash kept)
            labels: &'static [(&'static str, &'static str, bool)],
        }
        let cases = [
            Case {
                what: "first deployment: everything is added",
                previous: &[],
                next: &[("web", "h1", "img:1"), ("api", "h2", "img:1")],
                changes: &[
                    ("api", "added", "img:1", "not deployed"),
                    ("web", "added", "img:1", "not deployed"),
                ],
                labels: &[("api", "c2c2c2c2c2", false), ("web", "c2c2c2c2c2", false)],
            },
            Case {
                what: "a README commit changes nothing",
                previous: &[("web", "h1", "img:1", "c1c1c1c1c1")],
                next: &[("web", "h1", "img:1")],
                changes: &[],
                labels: &[("web", "c1c1c1c1c1", true)],
            },
            Case {
                what: "a new image is shown as images",
                previous: &[("web", "h1", "img:1", "c1c1c1c1c1")],
                next: &[("web", "h1b", "img:2")],
                changes: &[("web", "updated", "img:2", "img:1")],
                labels: &[("web", "c2c2c2c2c2", false)],
            },
            Case {
                what: "another change of configuration is named by commit",
                previous: &[("web", "h1", "img:1", "c1c1c1c1c1")],
                next: &[("web", "h1b", "img:1")],
                changes: &[(
                    "web",
                    "updated",
                    "configuration of c2c2c2c",
                    "configuration of c1c1c1c",
                )],
                labels: &[("web", "c2c2c2c2c2", false)],
            },
            Case {
                what: "a removed service is a change; its sibling keeps its label",
                previous: &[
                    ("web", "h1", "img:1", "c0c0c0c0c0"),
                    ("old", "h9", "img:9", "c0c0c0c0c0"),
                ],
                next: &[("web", "h1", "img:1")],
                changes: &[("old", "removed", "not in the compose file", "img:9")],
                labels: &[("web", "c0c0c0c0c0", true)],
            },
        ];
        for case in cases {
            let r = rollout(&desired(case.next), &deployed(case.previous), "c2c2c2c2c2");
            let changes: Vec<(&str, &str, &str, &str)> = r
                .changes
                .iter()
                .map(|c| {
                    (
                        c.service.as_str(),
                        c.change,
                        c.expected.as_str(),
                        c.actual.as_str(),
                    )
                })
                .collect();
            assert_eq!(changes, case.changes, "{}", case.what);
            let changed: Vec<&str> = case.changes.iter().map(|c| c.0).collect();
            assert_eq!(r.changed, changed, "{}", case.what);
            let labels: Vec<(&str, &str, bool)> = r
                .records
                .iter()
                .map(|(n, rec)| (n.as_str(), rec.commit.as_str(), rec.config_hash.is_some()))
                .collect();
            assert_eq!(labels, case.labels, "{}", case.what);
        }
    }
}
