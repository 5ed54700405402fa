//! plan: pure. Drift of a Swarm stack at service level (`docker.target:
//! swarm`) and what to do about it. Swarm keeps tasks running on its own
//! (restart policy, rescheduling off a lost node): Kedge heals what the
//! service specs say, never the tasks.

use std::collections::{BTreeMap, BTreeSet};

use super::{Drift, ExtraReason, Heal, Plan, Want};
use crate::desired::kedge_yaml::Mode;
use crate::observe::swarm::SwarmService;

/// Compares the deployed services with the stack's services. A missing
/// service, a replica count, an image or a spec changed by hand, and (with
/// `prune`) a service of the stack no file names are healed by deploying
/// the stack again; tasks short of the replica count while no update runs
/// are reported only.
pub fn plan(
    want: &BTreeMap<String, Want>,
    actual: &[SwarmService],
    mode: Mode,
    prune: bool,
    backed_off: &BTreeSet<String>,
) -> Plan {
    let mut drifts = Vec::new();
    let mut heal: BTreeSet<String> = BTreeSet::new();
    for (name, w) in want {
        if w.spec.ignored {
            continue;
        }
        let Some(s) = actual.iter().find(|s| &s.service == name) else {
            drifts.push(Drift::Missing {
                service: name.clone(),
                expected: w.spec.replicas,
                actual: 0,
            });
            heal.insert(name.clone());
            continue;
        };
        if let Some(replicas) = s.replicas
            && replicas != u64::from(w.spec.replicas)
        {
            if replicas < u64::from(w.spec.replicas) {
                drifts.push(Drift::Missing {
                    service: name.clone(),
                    expected: w.spec.replicas,
                    actual: replicas as u32,
                });
            } else {
                drifts.push(Drift::Extra {
                    service: name.clone(),
                    container: s.name.clone(),
                    reason: ExtraReason::BeyondReplicas,
                });
            }
            heal.insert(name.clone());
        }
        if s.image != w.image {
            drifts.push(Drift::WrongImage {
                service: name.clone(),
                container: s.name.clone(),
                expected: w.image.clone(),
                actual: s.image.clone(),
            });
            heal.insert(name.clone());
        } else if let Some(expected) = &w.config_hash
            && expected != &s.fingerprint
        {
            drifts.push(Drift::ConfigChanged {
                service: name.clone(),
                container: s.name.clone(),
                expected: expected.clone(),
                actual: s.fingerprint.clone(),
            });
            heal.insert(name.clone());
        }
        let updating = matches!(
            s.update_state.as_deref(),
            Some("updating" | "rollback_started")
        );
        if !heal.contains(name) && !updating && s.running < s.desired {
            drifts.push(Drift::Stopped {
                service: name.clone(),
                container: s.name.clone(),
                state: format!("{} of {} tasks running", s.running, s.desired),
                exit_code: None,
            });
        }
    }
    for s in actual {
        if !want.contains_key(&s.service) {
            drifts.push(Drift::Extra {
                service: s.service.clone(),
                container: s.name.clone(),
                reason: ExtraReason::NotInFile,
            });
            if prune {
                heal.insert(s.service.clone());
            }
        }
    }
    drifts.sort();
    let held: Vec<String> = heal.intersection(backed_off).cloned().collect();
    let services: Vec<String> = heal.difference(backed_off).cloned().collect();
    let heals = if mode == Mode::Auto && !services.is_empty() {
        vec![Heal::Redeploy { services }]
    } else {
        Vec::new()
    };
    Plan {
        drifts,
        heals,
        held: if mode == Mode::Auto { held } else { Vec::new() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::render::ServiceSpec;

    fn want(name: &str, image: &str, replicas: u32) -> (String, Want) {
        (
            name.to_string(),
            Want {
                spec: ServiceSpec {
                    name: name.into(),
                    image: Some(image.into()),
                    replicas,
                    ..Default::default()
                },
                image: image.into(),
                image_id: None,
                config_hash: Some("f1".into()),
            },
        )
    }

    fn service(name: &str, image: &str, replicas: u64, running: u64) -> SwarmService {
        SwarmService {
            id: format!("id-{name}"),
            name: format!("app_{name}"),
            service: name.into(),
            image: image.into(),
            replicas: Some(replicas),
            running,
            desired: replicas,
            update_state: Some("completed".into()),
            update_message: None,
            commit: None,
            fingerprint: "f1".into(),
            template: String::new(),
        }
    }

    #[test]
    fn swarm_drift_table() {
        let wants: BTreeMap<String, Want> = [want("web", "web:1", 3), want("db", "db:1", 1)]
            .into_iter()
            .collect();
        let none = BTreeSet::new();
        let plan_of =
            |actual: Vec<SwarmService>, mode, prune| plan(&wants, &actual, mode, prune, &none);
        let healthy = vec![service("web", "web:1", 3, 3), service("db", "db:1", 1, 1)];
        assert_eq!(plan_of(healthy.clone(), Mode::Auto, true), Plan::default());

        // (what, the stack's services, drifts described, services redeployed)
        type Case<'a> = (
            &'a str,
            Vec<SwarmService>,
            Vec<&'a str>,
            Option<Vec<&'a str>>,
        );
        let cases: Vec<Case> = vec![
            (
                "service missing",
                vec![service("web", "web:1", 3, 3)],
                vec!["missing: 0 of 1"],
                Some(vec!["db"]),
            ),
            (
                "scaled down by hand",
                vec![service("web", "web:1", 1, 1), service("db", "db:1", 1, 1)],
                vec!["missing: 1 of 3"],
                Some(vec!["web"]),
            ),
            (
                "image changed by hand",
                vec![service("web", "web:2", 3, 3), service("db", "db:1", 1, 1)],
                vec!["wrong image: app_web runs web:2, expected web:1"],
                Some(vec!["web"]),
            ),
            (
                "spec changed by hand",
                vec![
                    service("web", "web:1", 3, 3),
                    SwarmService {
                        fingerprint: "f2".into(),
                        ..service("db", "db:1", 1, 1)
                    },
                ],
                vec!["config changed: app_db"],
                Some(vec!["db"]),
            ),
            (
                "tasks short (a node lost): reported, Swarm's to fix",
                vec![service("web", "web:1", 3, 2), service("db", "db:1", 1, 1)],
                vec!["stopped: app_web is 2 of 3 tasks running"],
                None,
            ),
            (
                "an extra service of the stack",
                [healthy.clone(), vec![service("cache", "c:1", 1, 1)]].concat(),
                vec!["extra: app_cache"],
                Some(vec!["cache"]),
            ),
        ];
        for (what, actual, drifts, heal) in cases {
            let p = plan_of(actual, Mode::Auto, true);
            let described: Vec<String> = p.drifts.iter().map(Drift::describe).collect();
            assert_eq!(described.len(), drifts.len(), "{what}: {described:?}");
            for (d, want) in described.iter().zip(&drifts) {
                assert!(d.starts_with(want), "{what}: {d} ∌ {want}");
            }
            let want_heals = heal.map(|s| {
                vec![Heal::Redeploy {
                    services: s.into_iter().map(String::from).collect(),
                }]
            });
            assert_eq!(p.heals, want_heals.unwrap_or_default(), "{what}");
        }

        // notify mode reports only; without prune an extra service stays.
        let scaled = vec![service("web", "web:1", 1, 1), service("db", "db:1", 1, 1)];
        let p = plan_of(scaled, Mode::Notify, true);
        assert_eq!(p.drifts.len(), 1);
        assert!(p.heals.is_empty());
        let extra = [healthy.clone(), vec![service("cache", "c:1", 1, 1)]].concat();
        assert!(plan_of(extra, Mode::Auto, false).heals.is_empty());
        // While Swarm updates a service, its tasks short of the count are not drift.
        let updating = vec![
            SwarmService {
                update_state: Some("updating".into()),
                ..service("web", "web:1", 3, 1)
            },
            service("db", "db:1", 1, 1),
        ];
        assert!(plan_of(updating, Mode::Auto, true).drifts.is_empty());
        // A backed-off service is held, not healed.
        let p = plan(
            &wants,
            &[service("db", "db:1", 1, 1)],
            Mode::Auto,
            true,
            &BTreeSet::from(["web".to_string()]),
        );
        assert!(p.heals.is_empty());
        assert_eq!(p.held, vec!["web".to_string()]);
    }
}
