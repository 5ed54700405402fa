//! ops: sync, rollback and diff. Inside `serve` each is handed to the
//! task that owns the repository, as a message it answers, so serve's own
//! state is the one that changes; without serve (the command line) it runs
//! on a task made for it, the repository's lock keeping it from any other
//! process's apply.

use std::time::Duration;

use super::{Ops, OpsError};
use crate::controller::commands::{self, CommandError};
use crate::controller::inbox::{Answer, Command, NotStarted, Request, Ticket};
use crate::controller::task::RepoTask;
use crate::model::report::{DiffReport, RollbackReport, SyncReport};

/// A command handed over and taken up by its task.
pub struct Running {
    repo: String,
    ticket: Ticket,
    deployment: Option<i64>,
    /// The task said all it will about a deployment.
    begun_closed: bool,
    /// serve's shutdown waits for the command, and its answer, until this drops.
    _counted: crate::controller::in_flight::Running,
}

/// Where a running command is.
#[derive(Debug)]
pub enum Progress {
    /// It recorded this deployment, which runs on.
    Begun(i64),
    /// It ended, having recorded this deployment or none.
    Ended {
        deployment: Option<i64>,
        result: Result<(), OpsError>,
    },
}

impl Running {
    /// Waits until the command has recorded its deployment or has ended.
    pub async fn progress(&mut self) -> Progress {
        if let Some(id) = self.deployment {
            return Progress::Begun(id);
        }
        if !self.begun_closed {
            tokio::select! {
                biased;
                begun = &mut self.ticket.begun => {
                    self.begun_closed = true;
                    if let Ok(id) = begun {
                        self.deployment = Some(id);
                        return Progress::Begun(id);
                    }
                }
                answer = &mut self.ticket.reply => {
                    return Progress::Ended {
                        deployment: self.begun_now(),
                        result: answered(&self.repo, answer).map(drop),
                    };
                }
            }
        }
        // Ended, or about to, without a deployment of its own.
        let (deployment, result) = self.finish().await;
        Progress::Ended {
            deployment,
            result: result.map(drop),
        }
    }

    /// The deployment's id, if the task announced it already.
    pub fn progress_now(&mut self) -> Option<i64> {
        self.begun_now()
    }

    fn begun_now(&mut self) -> Option<i64> {
        if self.deployment.is_none() && !self.begun_closed {
            self.deployment = self.ticket.begun.try_recv().ok();
        }
        self.deployment
    }

    /// Waits for the command's end: the deployment it recorded (if any)
    /// and its answer.
    pub async fn finish(&mut self) -> (Option<i64>, Result<Answer, OpsError>) {
        let answer = answered(&self.repo, (&mut self.ticket.reply).await);
        (self.begun_now(), answer)
    }
}

fn answered(
    repo: &str,
    answer: Result<Result<Answer, CommandError>, tokio::sync::oneshot::error::RecvError>,
) -> Result<Answer, OpsError> {
    match answer {
        Ok(answer) => Ok(answer?),
        // The task went away mid-command: serve was killed under it.
        Err(_) => Err(CommandError::Stopping {
            repo: repo.to_string(),
        }
        .into()),
    }
}

/// How a sync runs (the task's own request carries it).
pub use crate::model::report::SyncHow;

impl Ops {
    /// Hands `request` to the repository's task and waits up to `within`
    /// for the task to take it up (`None`: as long as it takes). A command
    /// not taken up in time is withdrawn: it never runs.
    async fn start(
        &self,
        repo: &str,
        request: Request,
        within: Option<Duration>,
    ) -> Result<Running, OpsError> {
        let (found, stack) = self.unit(repo)?;
        let shared = self.shared()?.clone();
        let counted = shared.commands.hold();
        let busy = || {
            OpsError::from(CommandError::Busy {
                repo: repo.to_string(),
                waited: within.unwrap_or_default(),
            })
        };
        let mut ticket = match shared.send_command(stack.id, request.clone()) {
            Ok(Some(ticket)) => ticket,
            Err(_) => return Err(busy()),
            // No task for it here: one of its own, which the repository's
            // lock keeps from every other apply.
            Ok(None) => {
                let engine = shared.engine.clone();
                tokio::spawn(async move { engine.warm_up().await });
                let (command, ticket) = Command::new(request);
                let worker = shared.clone();
                shared.commands.spawn(async move {
                    let mut task = RepoTask::of_stack(&worker, found, stack);
                    commands::execute(&worker, &mut task, command).await;
                });
                ticket
            }
        };
        let limit = within.unwrap_or(Duration::MAX);
        match ticket.wait_started(limit).await {
            Ok(()) => Ok(Running {
                repo: repo.to_string(),
                ticket,
                deployment: None,
                begun_closed: false,
                _counted: counted,
            }),
            Err(NotStarted::Busy) => Err(busy()),
            Err(NotStarted::Gone) => Err(CommandError::Stopping {
                repo: repo.to_string(),
            }
            .into()),
        }
    }

    /// A sync (`kedge sync`, the API, the dashboard), once taken up by its task.
    pub async fn start_sync(
        &self,
        repo: &str,
        how: SyncHow,
        within: Option<Duration>,
    ) -> Result<Running, OpsError> {
        self.start(repo, Request::Sync(how), within).await
    }

    /// A rollback to `commit` (a full hash or a unique prefix), once taken up.
    pub async fn start_rollback(
        &self,
        repo: &str,
        commit: &str,
        within: Option<Duration>,
    ) -> Result<Running, OpsError> {
        let request = Request::Rollback {
            commit: commit.to_string(),
        };
        self.start(repo, request, within).await
    }

    /// `kedge diff`: what differs, and what the branch head would change.
    /// `within`: how long to wait for an apply in flight on the repository
    /// (`None`: until it ends, as a command run by hand does).
    pub async fn diff(&self, repo: &str, within: Option<Duration>) -> Result<DiffReport, OpsError> {
        let mut running = self.start(repo, Request::Diff { within }, within).await?;
        match running.finish().await.1? {
            Answer::Diff(report) => Ok(*report),
            other => unreachable!("a diff answered {other:?}"),
        }
    }

    /// `kedge sync`: deploy the branch head now and heal all drift.
    pub async fn sync(&self, repo: &str, how: SyncHow) -> Result<SyncReport, OpsError> {
        let mut running = self.start_sync(repo, how, None).await?;
        match running.finish().await.1? {
            Answer::Sync(report) => Ok(report),
            other => unreachable!("a sync answered {other:?}"),
        }
    }

    /// `kedge rollback`: re-apply a deployed commit and pin to it.
    pub async fn rollback(&self, repo: &str, commit: &str) -> Result<RollbackReport, OpsError> {
        let mut running = self.start_rollback(repo, commit, None).await?;
        match running.finish().await.1? {
            Answer::Rollback(report) => Ok(report),
            other => unreachable!("a rollback answered {other:?}"),
        }
    }
}
