//! Table tests: every drift type in every mode.

use super::*;

const IMG: &str = "app:1";
const IMG_ID: &str = "sha256:111";

fn want(name: &str, replicas: u32, restart: Option<&str>) -> (String, Want) {
    (
        name.to_string(),
        Want {
            spec: ServiceSpec {
                name: name.into(),
                hash: format!("h-{name}"),
                image: Some(IMG.into()),
                build: None,
                build_fingerprint: None,
                replicas,
                restart: restart.map(String::from),
                ignored: false,
            },
            image: IMG.into(),
            image_id: Some(IMG_ID.into()),
            config_hash: Some(format!("cfg-{name}")),
        },
    )
}

fn running(service: &str, number: u32) -> ContainerState {
    ContainerState {
        id: format!("id-{service}-{number}"),
        name: format!("p-{service}-{number}"),
        service: service.into(),
        number,
        state: RunState::Running,
        image: IMG.into(),
        image_id: IMG_ID.into(),
        config_hash: Some(format!("cfg-{service}")),
        commit: Some("c1".into()),
        oneoff: false,
        exit_code: None,
        health: None,
        labels: Default::default(),
    }
}

fn unhealthy(service: &str) -> ContainerState {
    ContainerState {
        health: Some("unhealthy".into()),
        ..running(service, 1)
    }
}

fn labelled(c: ContainerState, ignore: &str) -> ContainerState {
    ContainerState {
        labels: [(
            crate::desired::render::IGNORE_LABEL.to_string(),
            ignore.to_string(),
        )]
        .into(),
        ..c
    }
}

fn exited(service: &str, code: i64) -> ContainerState {
    ContainerState {
        state: RunState::Exited,
        exit_code: Some(code),
        ..running(service, 1)
    }
}

struct Case {
    name: &'static str,
    /// Services defined under profiles that are not enabled.
    dormant: &'static [&'static str],
    want: Vec<(String, Want)>,
    actual: Vec<ContainerState>,
    drifts: Vec<&'static str>,
    /// Heals in auto mode with prune.
    heals: Vec<Heal>,
}

fn start(service: &str) -> Heal {
    Heal::Start {
        service: service.into(),
        container: format!("p-{service}-1"),
        id: format!("id-{service}-1"),
    }
}

fn remove(service: &str, n: u32) -> Heal {
    Heal::Remove {
        service: service.into(),
        container: format!("p-{service}-{n}"),
        id: format!("id-{service}-{n}"),
    }
}

fn recreate(services: &[&str], force: bool) -> Heal {
    Heal::Recreate {
        services: services.iter().map(|s| s.to_string()).collect(),
        force,
    }
}

fn cases() -> Vec<Case> {
    let web = || want("web", 1, Some("unless-stopped"));
    vec![
        Case {
            name: "in sync",
            dormant: &[],
            want: vec![web()],
            actual: vec![running("web", 1)],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            name: "missing",
            dormant: &[],
            want: vec![web(), want("api", 2, Some("always"))],
            actual: vec![running("web", 1), running("api", 1)],
            drifts: vec!["missing:api"],
            heals: vec![recreate(&["api"], false)],
        },
        Case {
            name: "unhealthy, restarted (drift.unhealthy: restart)",
            dormant: &[],
            want: vec![web()],
            actual: vec![unhealthy("web")],
            drifts: vec!["unhealthy:web"],
            heals: vec![Heal::Restart {
                service: "web".into(),
                container: "p-web-1".into(),
                id: "id-web-1".into(),
            }],
        },
        Case {
            name: "healthy and starting are not drift",
            dormant: &[],
            want: vec![web(), want("api", 1, None)],
            actual: vec![
                ContainerState {
                    health: Some("healthy".into()),
                    ..running("web", 1)
                },
                ContainerState {
                    health: Some("starting".into()),
                    ..running("api", 1)
                },
            ],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            name: "stopped",
            dormant: &[],
            want: vec![web()],
            actual: vec![exited("web", 137)],
            drifts: vec!["stopped:web"],
            heals: vec![start("web")],
        },
        Case {
            name: "restarting: a crash loop the engine drives is reported, not started",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                state: RunState::Restarting,
                exit_code: Some(3),
                ..running("web", 1)
            }],
            drifts: vec!["crash_loop:web"],
            heals: vec![],
        },
        Case {
            name: "restarting on a wrong image is still recreated",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                state: RunState::Restarting,
                image: "other:2".into(),
                image_id: "sha256:222".into(),
                ..running("web", 1)
            }],
            drifts: vec!["crash_loop:web", "wrong_image:web"],
            heals: vec![recreate(&["web"], true)],
        },
        Case {
            name: "created but never started",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                state: RunState::Created,
                ..running("web", 1)
            }],
            drifts: vec!["stopped:web"],
            heals: vec![start("web")],
        },
        Case {
            name: "wrong image by reference (replaced by hand)",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                image: "other:2".into(),
                image_id: "sha256:222".into(),
                ..running("web", 1)
            }],
            drifts: vec!["wrong_image:web"],
            heals: vec![recreate(&["web"], true)],
        },
        Case {
            name: "wrong image by id (tag moved by docker pull)",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                image: "sha256:000".into(),
                image_id: "sha256:000".into(),
                ..running("web", 1)
            }],
            drifts: vec!["wrong_image:web"],
            heals: vec![recreate(&["web"], true)],
        },
        Case {
            name: "config changed",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                config_hash: Some("cfg-by-hand".into()),
                ..running("web", 1)
            }],
            drifts: vec!["config_changed:web"],
            heals: vec![recreate(&["web"], true)],
        },
        Case {
            name: "extra: not in the file",
            dormant: &[],
            want: vec![web()],
            actual: vec![running("web", 1), running("orphan", 1)],
            drifts: vec!["extra:orphan"],
            heals: vec![remove("orphan", 1)],
        },
        Case {
            name: "extra: beyond the replica count",
            dormant: &[],
            want: vec![web()],
            actual: vec![running("web", 1), running("web", 2)],
            drifts: vec!["extra:web"],
            heals: vec![remove("web", 2)],
        },
        Case {
            name: "completed one-shot is not drift",
            dormant: &[],
            want: vec![web(), want("migrate", 1, None)],
            actual: vec![running("web", 1), exited("migrate", 0)],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            // Regression: re-run at every pass, then backed off as a crash loop.
            name: "an on-failure job that exited 0 is complete",
            dormant: &[],
            want: vec![web(), want("migrate", 1, Some("on-failure:3"))],
            actual: vec![running("web", 1), exited("migrate", 0)],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            name: "an always-restarted service that exited 0 is stopped",
            dormant: &[],
            want: vec![web(), want("migrate", 1, Some("always"))],
            actual: vec![running("web", 1), exited("migrate", 0)],
            drifts: vec!["stopped:migrate"],
            heals: vec![start("migrate")],
        },
        Case {
            name: "failed one-shot is stopped",
            dormant: &[],
            want: vec![web(), want("migrate", 1, Some("no"))],
            actual: vec![running("web", 1), exited("migrate", 1)],
            drifts: vec!["stopped:migrate"],
            heals: vec![start("migrate")],
        },
        Case {
            name: "stopped and on the wrong image: one forced recreate",
            dormant: &[],
            want: vec![web()],
            actual: vec![ContainerState {
                image: "other:2".into(),
                ..exited("web", 0)
            }],
            drifts: vec!["stopped:web", "wrong_image:web"],
            heals: vec![recreate(&["web"], true)],
        },
        Case {
            name: "compose run containers are not the stack's",
            dormant: &[],
            want: vec![web()],
            actual: vec![
                running("web", 1),
                ContainerState {
                    oneoff: true,
                    ..exited("web", 1)
                },
            ],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            // Regression: a service of a profile not enabled, started by
            // hand, was removed within a second as belonging to no service.
            name: "a container of a service under an inactive profile is not extra",
            dormant: &["tools"],
            want: vec![web()],
            actual: vec![running("web", 1), running("tools", 1)],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            name: "a service gone from the file is extra, whatever is dormant",
            dormant: &["tools"],
            want: vec![web()],
            actual: vec![running("web", 1), running("orphan", 1)],
            drifts: vec!["extra:orphan"],
            heals: vec![remove("orphan", 1)],
        },
        Case {
            name: "a container labelled io.kedge.ignore is never extra",
            dormant: &[],
            want: vec![web()],
            actual: vec![
                running("web", 1),
                labelled(running("scratch", 1), "true"),
                labelled(running("web", 2), "TRUE"),
            ],
            drifts: vec![],
            heals: vec![],
        },
        Case {
            name: "io.kedge.ignore other than true is no exemption",
            dormant: &[],
            want: vec![web()],
            actual: vec![running("web", 1), labelled(running("scratch", 1), "false")],
            drifts: vec!["extra:scratch"],
            heals: vec![remove("scratch", 1)],
        },
        Case {
            name: "everything at once",
            dormant: &[],
            want: vec![web(), want("api", 1, None), want("db", 1, Some("always"))],
            actual: vec![
                exited("web", 1),
                ContainerState {
                    image: "other:2".into(),
                    ..running("api", 1)
                },
                running("orphan", 1),
            ],
            drifts: vec![
                "extra:orphan",
                "missing:db",
                "stopped:web",
                "wrong_image:api",
            ],
            heals: vec![
                start("web"),
                remove("orphan", 1),
                recreate(&["api"], true),
                recreate(&["db"], false),
            ],
        },
    ]
}

fn drift_names(p: &Plan) -> Vec<String> {
    let mut v: Vec<String> = p
        .drifts
        .iter()
        .map(|d| format!("{}:{}", d.kind(), d.service()))
        .collect();
    v.sort();
    v
}

#[test]
fn every_drift_type_in_every_mode() {
    let none = BTreeSet::new();
    for case in cases() {
        let want: BTreeMap<String, Want> = case.want.into_iter().collect();
        let dormant: BTreeSet<String> = case.dormant.iter().map(|s| s.to_string()).collect();
        let mut expected_drifts: Vec<String> = case.drifts.iter().map(|s| s.to_string()).collect();
        expected_drifts.sort();
        let mut expected_heals = case.heals.clone();
        expected_heals.sort();

        let auto = plan(
            &want,
            &case.actual,
            Mode::Auto,
            true,
            &dormant,
            &none,
            Unhealthy::Restart,
        );
        assert_eq!(drift_names(&auto), expected_drifts, "{}: drifts", case.name);
        assert_eq!(auto.heals, expected_heals, "{}: heals in auto", case.name);
        assert_eq!(auto.in_sync(), expected_drifts.is_empty(), "{}", case.name);

        // Without prune, extra containers are reported and left.
        let keep = plan(
            &want,
            &case.actual,
            Mode::Auto,
            false,
            &dormant,
            &none,
            Unhealthy::Restart,
        );
        assert_eq!(
            drift_names(&keep),
            expected_drifts,
            "{}: drifts without prune",
            case.name
        );
        let no_removals: Vec<Heal> = expected_heals
            .iter()
            .filter(|h| !matches!(h, Heal::Remove { .. }))
            .cloned()
            .collect();
        assert_eq!(
            keep.heals, no_removals,
            "{}: heals without prune",
            case.name
        );

        // notify and manual detect the same drift and change nothing.
        for mode in [Mode::Notify, Mode::Manual] {
            let p = plan(
                &want,
                &case.actual,
                mode,
                true,
                &dormant,
                &none,
                Unhealthy::Restart,
            );
            assert_eq!(
                drift_names(&p),
                expected_drifts,
                "{}: drifts in {mode}",
                case.name
            );
            assert!(p.heals.is_empty(), "{}: {mode} must not heal", case.name);
        }
    }
}

#[test]
fn a_backed_off_service_is_reported_but_not_healed() {
    let want: BTreeMap<String, Want> = [
        want("web", 1, Some("always")),
        want("api", 1, Some("always")),
    ]
    .into_iter()
    .collect();
    let actual = vec![exited("web", 1), exited("api", 1)];
    let held = BTreeSet::from(["web".to_string()]);
    let p = plan(
        &want,
        &actual,
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &held,
        Unhealthy::Report,
    );
    assert_eq!(drift_names(&p), ["stopped:api", "stopped:web"]);
    assert_eq!(p.heals, [start("api")]);
    assert_eq!(p.held, ["web"]);
}

#[test]
fn an_unhealthy_container_is_only_reported_under_report() {
    let want: BTreeMap<String, Want> = [want("web", 1, Some("always"))].into_iter().collect();
    let actual = vec![unhealthy("web")];
    let p = plan(
        &want,
        &actual,
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &BTreeSet::new(),
        Unhealthy::Report,
    );
    assert_eq!(drift_names(&p), ["unhealthy:web"]);
    assert!(p.heals.is_empty(), "{p:?}");
    // Backed off (a crash loop of restarts): reported, held.
    let held = BTreeSet::from(["web".to_string()]);
    let p = plan(
        &want,
        &actual,
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &held,
        Unhealthy::Restart,
    );
    assert!(p.heals.is_empty(), "{p:?}");
    assert_eq!(p.held, ["web"]);
}

#[test]
fn an_ignored_service_is_neither_reported_nor_healed() {
    let (name, mut w) = want("web", 1, Some("always"));
    w.spec.ignored = true;
    let want: BTreeMap<String, Want> = [(name, w)].into_iter().collect();
    let p = plan(
        &want,
        &[exited("web", 1), running("web", 2)],
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &BTreeSet::new(),
        Unhealthy::Report,
    );
    assert!(p.in_sync(), "{p:?}");
    assert!(p.heals.is_empty());
}

#[test]
fn plans_are_sorted_and_stable() {
    let want: BTreeMap<String, Want> = [want("b", 1, None), want("a", 1, None)]
        .into_iter()
        .collect();
    let actual = vec![running("z", 1), running("y", 1)];
    let p1 = plan(
        &want,
        &actual,
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &BTreeSet::new(),
        Unhealthy::Report,
    );
    let reversed: Vec<ContainerState> = actual.into_iter().rev().collect();
    let p2 = plan(
        &want,
        &reversed,
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &BTreeSet::new(),
        Unhealthy::Report,
    );
    assert_eq!(p1, p2);
}

#[test]
fn image_references_are_compared_normalized() {
    assert_eq!(normalize("nginx"), "nginx:latest");
    assert_eq!(normalize("docker.io/library/nginx:1.25"), "nginx:1.25");
    assert_eq!(normalize("library/nginx"), "nginx:latest");
    assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
    assert_eq!(
        normalize("ghcr.io/acme/app@sha256:abc"),
        "ghcr.io/acme/app@sha256:abc"
    );
}

#[test]
fn an_ignored_container_outside_the_file_keeps_compose_from_removing_orphans() {
    let want: BTreeMap<String, Want> = [want("web", 1, None)].into_iter().collect();
    let cases = [
        (vec![running("web", 1)], false),
        (vec![running("web", 1), running("orphan", 1)], false),
        (vec![labelled(running("scratch", 1), "true")], true),
        (vec![labelled(running("web", 1), "true")], false),
        (
            vec![ContainerState {
                oneoff: true,
                ..labelled(running("scratch", 1), "true")
            }],
            false,
        ),
    ];
    for (actual, keeps) in cases {
        assert_eq!(keeps_orphans(&actual, &want), keeps, "{actual:?}");
    }
}

/// Regression: a container caught while `docker rm -f` removed it was
/// taken for stopped, and the heal's start failed (`No such container`),
/// recorded as `heal_failed`.
#[test]
fn a_container_being_removed_is_left_to_go_not_started() {
    let want: BTreeMap<String, Want> = [want("web", 1, None), want("api", 1, None)]
        .into_iter()
        .collect();
    let going = ContainerState {
        state: RunState::Removing,
        ..running("web", 1)
    };
    let p = plan(
        &want,
        &[going, exited("api", 1)],
        Mode::Auto,
        true,
        &BTreeSet::new(),
        &BTreeSet::new(),
        Unhealthy::Report,
    );
    assert_eq!(drift_names(&p), ["stopped:api"]);
    assert_eq!(p.heals, [start("api")]);
}
