//! plan: pure. What a failed deployment leaves behind — keep what was
//! applied, undo it by re-applying the last good deployment, or neither —
//! and what the record says about it (source → desired → observe →
//! **plan** → apply → record). The controller only carries the decision out.

/// The step a deployment failed at, as far as the decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedStep {
    /// Before any container changed: a pull, a checkout.
    BeforeUp,
    /// `docker compose up` (or `docker stack deploy`) failed midway: part of
    /// the stack may have changed.
    Up,
    /// Applied, but the changed services did not come up.
    Gate,
    /// The engine stopped answering during the gate: an outage, not the
    /// commit's verdict.
    GateEngine,
    /// A `deploy.before` hook failed: nothing of the stack changed, and
    /// the commit is judged.
    BeforeHook,
    /// A `deploy.after` hook failed: as a failed gate.
    AfterHook,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub step: FailedStep,
    /// `deploy.rollback_on_failure` of the failed commit.
    pub rollback_on_failure: bool,
    /// The deployment was itself a `kedge rollback`.
    pub is_rollback: bool,
    /// The services the deployment changed.
    pub changed: &'a [String],
    /// The services Swarm's own `failure_action: rollback` put back.
    pub target_rolled: &'a [&'a str],
    /// A commit was deployed before this one.
    pub has_deployed: bool,
}

/// Why a failed deployment was left as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A failed rollback is not rolled back.
    FailedRollbackKept,
    /// `deploy.rollback_on_failure: false`.
    RollbackOff,
    /// A first deployment has nothing to go back to.
    NothingToRollBack,
}

impl Note {
    pub fn text(self) -> &'static str {
        match self {
            Note::FailedRollbackKept => {
                "left running as it is (a failed rollback is not rolled back)"
            }
            Note::RollbackOff => "left running as it is (deploy.rollback_on_failure is false)",
            Note::NothingToRollBack => "nothing to roll back to: no earlier deployment succeeded",
        }
    }
}

/// What to do after a failed deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// What was applied stays, recorded as deployed: drift is measured
    /// against it.
    pub keep: bool,
    /// Re-apply the last successful deployment (when there is one).
    pub undo: bool,
    /// The commit is not tried again until the branch moves or `kedge sync`.
    pub settle: bool,
    /// The deployed commit's checkout goes back in place of the failed one.
    pub restore_checkout: bool,
    pub note: Option<Note>,
}

pub fn decide(f: &Failure) -> Decision {
    let gate = matches!(f.step, FailedStep::Gate | FailedStep::AfterHook);
    // What runs is no longer the commit when Swarm rolled any of it back:
    // keeping it would have the heal deploy the failed commit again and again.
    let keep = gate && f.target_rolled.is_empty() && (!f.rollback_on_failure || f.is_rollback);
    // Swarm put every changed service back already.
    let swarm_undid = !f.changed.is_empty()
        && f.changed
            .iter()
            .all(|c| f.target_rolled.contains(&c.as_str()));
    let undo = f.step == FailedStep::Up || (gate && !keep && !swarm_undid);
    let note = if keep {
        Some(if f.is_rollback {
            Note::FailedRollbackKept
        } else {
            Note::RollbackOff
        })
    } else if gate && !f.has_deployed {
        Some(Note::NothingToRollBack)
    } else {
        None
    };
    Decision {
        keep,
        undo: undo && f.has_deployed,
        settle: gate || f.step == FailedStep::BeforeHook,
        restore_checkout: !keep && f.has_deployed,
        note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        failure: Failure<'static>,
        want: Decision,
    }

    const WEB: &[String] = &[];

    fn base(step: FailedStep) -> Failure<'static> {
        Failure {
            step,
            rollback_on_failure: true,
            is_rollback: false,
            changed: WEB,
            target_rolled: &[],
            has_deployed: true,
        }
    }

    fn decision(keep: bool, undo: bool, settle: bool, note: Option<Note>) -> Decision {
        Decision {
            keep,
            undo,
            settle,
            restore_checkout: !keep,
            note,
        }
    }

    #[test]
    fn every_branch_of_a_failed_deployment() {
        static CHANGED: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["web".to_string(), "api".to_string()]);
        let changed: &'static [String] = CHANGED.as_slice();
        let cases = [
            Case {
                name: "a pull failed: nothing changed, nothing to undo",
                failure: base(FailedStep::BeforeUp),
                want: decision(false, false, false, None),
            },
            Case {
                name: "up failed midway after an earlier success: undone",
                failure: base(FailedStep::Up),
                want: decision(false, true, false, None),
            },
            Case {
                name: "up failed on a first deployment: nothing to go back to",
                failure: Failure {
                    has_deployed: false,
                    ..base(FailedStep::Up)
                },
                want: Decision {
                    restore_checkout: false,
                    ..decision(false, false, false, None)
                },
            },
            Case {
                name: "gate failed after an earlier success: undone and settled",
                failure: base(FailedStep::Gate),
                want: decision(false, true, true, None),
            },
            Case {
                name: "gate failed on a first deployment: said plainly",
                failure: Failure {
                    has_deployed: false,
                    ..base(FailedStep::Gate)
                },
                want: Decision {
                    restore_checkout: false,
                    ..decision(false, false, true, Some(Note::NothingToRollBack))
                },
            },
            Case {
                name: "gate failed with rollback_on_failure false: kept",
                failure: Failure {
                    rollback_on_failure: false,
                    ..base(FailedStep::Gate)
                },
                want: decision(true, false, true, Some(Note::RollbackOff)),
            },
            Case {
                name: "a rollback whose gate failed is not rolled back",
                failure: Failure {
                    is_rollback: true,
                    ..base(FailedStep::Gate)
                },
                want: decision(true, false, true, Some(Note::FailedRollbackKept)),
            },
            Case {
                name: "Swarm rolled every changed service back: nothing more to undo",
                failure: Failure {
                    changed,
                    target_rolled: &["web", "api"],
                    ..base(FailedStep::Gate)
                },
                want: decision(false, false, true, None),
            },
            Case {
                name: "Swarm rolled part back: the rest is restored",
                failure: Failure {
                    changed,
                    target_rolled: &["web"],
                    ..base(FailedStep::Gate)
                },
                want: decision(false, true, true, None),
            },
            Case {
                name: "Swarm rolled part of a rollback back: not kept",
                failure: Failure {
                    changed,
                    target_rolled: &["web"],
                    is_rollback: true,
                    ..base(FailedStep::Gate)
                },
                want: decision(false, true, true, None),
            },
            Case {
                name: "a before hook failed: nothing changed to undo, the commit settled",
                failure: base(FailedStep::BeforeHook),
                want: decision(false, false, true, None),
            },
            Case {
                name: "an after hook failed: undone and settled, as a failed gate",
                failure: base(FailedStep::AfterHook),
                want: decision(false, true, true, None),
            },
            Case {
                name: "an after hook failed with rollback_on_failure false: kept",
                failure: Failure {
                    rollback_on_failure: false,
                    ..base(FailedStep::AfterHook)
                },
                want: decision(true, false, true, Some(Note::RollbackOff)),
            },
            Case {
                name: "the engine went away during the gate: retried, not undone",
                failure: base(FailedStep::GateEngine),
                want: decision(false, false, false, None),
            },
        ];
        for c in cases {
            assert_eq!(decide(&c.failure), c.want, "{}", c.name);
        }
    }
}
