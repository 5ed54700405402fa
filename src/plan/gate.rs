//! plan: the health gate's verdict. Pure: given what the engine says of a
//! changed service's containers (and the deaths it reported during the
//! gate), is the service up, still coming up (and until when at the
//! latest, if nothing happens), or failed — and why, in words an operator
//! reads in `history` and `status`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::observe::RunState;
use crate::observe::health::Inspected;

/// One changed service as the gate sees it now.
#[derive(Debug, Clone)]
pub struct GatedService<'a> {
    pub name: &'a str,
    pub replicas: u32,
    /// Its restart policy restarts a container that exited 0 (`always`,
    /// `unless-stopped`): such an exit is not completion.
    pub restarts_on_success: bool,
    /// Its containers (not `compose run` ones).
    pub containers: Vec<&'a Inspected>,
}

/// What the gate says of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Up,
    /// Not up yet. `until`: when (ms) it is up if nothing changes (the end
    /// of its `stable_for`); `None`: it waits for the engine to tell (a
    /// health verdict, an exit).
    Pending {
        until: Option<i64>,
        why: String,
    },
    Failed {
        why: String,
    },
}

/// The verdict on one service at `now_ms`. `died`: the non-zero exit code
/// the engine reported for a container (by id) since the gate began.
pub fn verdict(
    service: &GatedService,
    died: &BTreeMap<String, i64>,
    now_ms: i64,
    stable_for: Duration,
) -> Verdict {
    let mut failed = Vec::new();
    let mut pending: Vec<(Option<i64>, String)> = Vec::new();
    for c in &service.containers {
        match container(c, service.restarts_on_success, died, now_ms, stable_for) {
            Verdict::Up => {}
            Verdict::Failed { why } => failed.push(why),
            Verdict::Pending { until, why } => pending.push((until, why)),
        }
    }
    let count = service.containers.len() as u32;
    if !failed.is_empty() {
        return Verdict::Failed {
            why: failed.join("; "),
        };
    }
    if count < service.replicas {
        return Verdict::Pending {
            until: None,
            why: format!("{count} of {} containers exist", service.replicas),
        };
    }
    if pending.is_empty() {
        return Verdict::Up;
    }
    // Up once every pending container is: the latest of their ends, unless
    // one of them waits for the engine.
    let until = pending
        .iter()
        .map(|(u, _)| *u)
        .try_fold(i64::MIN, |acc, u| u.map(|u| acc.max(u)));
    Verdict::Pending {
        until,
        why: pending
            .into_iter()
            .map(|(_, why)| why)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn container(
    c: &Inspected,
    restarts_on_success: bool,
    died: &BTreeMap<String, i64>,
    now_ms: i64,
    stable_for: Duration,
) -> Verdict {
    if let Some(code) = died.get(&c.id) {
        return Verdict::Failed {
            why: format!("{} exited with code {code}", c.name),
        };
    }
    match c.state {
        RunState::Exited | RunState::Dead => match c.exit_code {
            Some(0) if !restarts_on_success => Verdict::Up,
            Some(0) => Verdict::Pending {
                until: None,
                why: format!("{} exited 0 and is restarted by its policy", c.name),
            },
            Some(code) => Verdict::Failed {
                why: format!("{} exited with code {code}", c.name),
            },
            None => Verdict::Failed {
                why: format!("{} is {}", c.name, c.state),
            },
        },
        RunState::Restarting => match c.exit_code {
            Some(code) if code != 0 => Verdict::Failed {
                why: format!("{} exited with code {code} and is restarting", c.name),
            },
            _ => Verdict::Pending {
                until: None,
                why: format!("{} is restarting", c.name),
            },
        },
        RunState::Running => match c.health.as_deref() {
            Some("healthy") => Verdict::Up,
            Some("unhealthy") => Verdict::Failed {
                why: format!(
                    "{} is unhealthy: healthcheck said {:?}",
                    c.name,
                    c.health_output.as_deref().unwrap_or("")
                ),
            },
            Some(other) => Verdict::Pending {
                until: None,
                why: match c.health_output.as_deref().filter(|o| !o.is_empty()) {
                    Some(out) => format!("{} is {other}; healthcheck said {out:?}", c.name),
                    None => format!("{} is {other}", c.name),
                },
            },
            None => {
                let started = c.started_at_ms.unwrap_or(now_ms);
                let until = started.saturating_add(stable_for.as_millis() as i64);
                if now_ms >= until {
                    Verdict::Up
                } else {
                    Verdict::Pending {
                        until: Some(until),
                        why: format!(
                            "{} has run {:.1} s of stable_for {:.1} s",
                            c.name,
                            (now_ms - started).max(0) as f64 / 1000.0,
                            stable_for.as_secs_f64()
                        ),
                    }
                }
            }
        },
        other => Verdict::Pending {
            until: None,
            why: format!("{} is {other}", c.name),
        },
    }
}

/// The last lines of a log, shortened for a message: at most `max` bytes
/// from the end, joined with " | ".
pub fn log_excerpt(log: &str, max: usize) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    let joined = lines.join(" | ");
    if joined.len() <= max {
        return joined;
    }
    let mut start = joined.len() - max;
    while !joined.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &joined[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn c(state: &str) -> Inspected {
        Inspected {
            id: "id1".into(),
            name: "p-web-1".into(),
            state: RunState::parse(state).expect("a container state"),
            exit_code: None,
            started_at_ms: Some(NOW - 2_000),
            restart_count: 0,
            health: None,
            health_output: None,
        }
    }

    fn judge(containers: &[Inspected], restarts: bool, died: &[(&str, i64)]) -> Verdict {
        let service = GatedService {
            name: "web",
            replicas: containers.len().max(1) as u32,
            restarts_on_success: restarts,
            containers: containers.iter().collect(),
        };
        let died = died.iter().map(|(i, c)| (i.to_string(), *c)).collect();
        verdict(&service, &died, NOW, Duration::from_secs(5))
    }

    fn failed(why: &str) -> Verdict {
        Verdict::Failed { why: why.into() }
    }

    #[test]
    fn verdicts() {
        let exited = |code| Inspected {
            exit_code: Some(code),
            ..c("exited")
        };
        let health = |h: &str, out: Option<&str>| Inspected {
            health: Some(h.into()),
            health_output: out.map(String::from),
            ..c("running")
        };
        // (what, containers, restarted on exit 0, deaths seen, verdict)
        type Case = (
            &'static str,
            Vec<Inspected>,
            bool,
            Vec<(&'static str, i64)>,
            Verdict,
        );
        let cases: Vec<Case> = vec![
            (
                "running 2 s of 5 s: pending until its start + 5 s",
                vec![c("running")],
                true,
                vec![],
                Verdict::Pending {
                    until: Some(NOW + 3_000),
                    why: "p-web-1 has run 2.0 s of stable_for 5.0 s".into(),
                },
            ),
            (
                "running 6 s: up",
                vec![Inspected {
                    started_at_ms: Some(NOW - 6_000),
                    ..c("running")
                }],
                true,
                vec![],
                Verdict::Up,
            ),
            (
                "a one-shot that exited 0 is up",
                vec![exited(0)],
                false,
                vec![],
                Verdict::Up,
            ),
            (
                "exit 0 under restart: always is not completion",
                vec![exited(0)],
                true,
                vec![],
                Verdict::Pending {
                    until: None,
                    why: "p-web-1 exited 0 and is restarted by its policy".into(),
                },
            ),
            (
                "exit 1 fails",
                vec![exited(1)],
                false,
                vec![],
                failed("p-web-1 exited with code 1"),
            ),
            (
                "a death reported during the gate fails, even once running again",
                vec![c("running")],
                true,
                vec![("id1", 3)],
                failed("p-web-1 exited with code 3"),
            ),
            (
                "restarting after a crash fails",
                vec![Inspected {
                    exit_code: Some(2),
                    ..c("restarting")
                }],
                true,
                vec![],
                failed("p-web-1 exited with code 2 and is restarting"),
            ),
            (
                "healthy is up at once",
                vec![health("healthy", None)],
                true,
                vec![],
                Verdict::Up,
            ),
            (
                "unhealthy fails with the healthcheck's output",
                vec![health("unhealthy", Some("db down"))],
                true,
                vec![],
                failed("p-web-1 is unhealthy: healthcheck said \"db down\""),
            ),
            (
                "starting waits for the engine's verdict",
                vec![health("starting", Some("not yet"))],
                true,
                vec![],
                Verdict::Pending {
                    until: None,
                    why: "p-web-1 is starting; healthcheck said \"not yet\"".into(),
                },
            ),
            (
                "created, not started yet",
                vec![c("created")],
                true,
                vec![],
                Verdict::Pending {
                    until: None,
                    why: "p-web-1 is created".into(),
                },
            ),
        ];
        for (what, containers, restarts, died, want) in cases {
            assert_eq!(judge(&containers, restarts, &died), want, "{what}");
        }
    }

    #[test]
    fn a_service_is_up_when_all_its_replicas_are() {
        let a = Inspected {
            started_at_ms: Some(NOW - 6_000),
            ..c("running")
        };
        let b = Inspected {
            id: "id2".into(),
            name: "p-web-2".into(),
            started_at_ms: Some(NOW - 1_000),
            ..c("running")
        };
        fn service<'a>(containers: Vec<&'a Inspected>, replicas: u32) -> GatedService<'a> {
            GatedService {
                name: "web",
                replicas,
                restarts_on_success: true,
                containers,
            }
        }
        let five = Duration::from_secs(5);
        let none = BTreeMap::new();
        assert_eq!(
            verdict(&service(vec![&a], 2), &none, NOW, five),
            Verdict::Pending {
                until: None,
                why: "1 of 2 containers exist".into()
            }
        );
        match verdict(&service(vec![&a, &b], 2), &none, NOW, five) {
            Verdict::Pending { until, .. } => assert_eq!(until, Some(NOW + 4_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            verdict(&service(vec![&a, &b], 2), &none, NOW + 4_000, five),
            Verdict::Up
        );
        assert_eq!(
            verdict(&service(vec![], 0), &none, NOW, five),
            Verdict::Up,
            "a service scaled to zero has nothing to wait for"
        );
    }

    #[test]
    fn log_excerpts_keep_the_end() {
        assert_eq!(log_excerpt("a\n\nb\nc\n", 100), "a | b | c");
        assert_eq!(log_excerpt("first\nlast line\n", 9), "…last line");
        assert_eq!(log_excerpt("", 10), "");
    }
}
