//! controller: commands for a repository's task — a sync, a rollback or a
//! diff asked for over HTTP or from the dashboard arrives at the task that
//! owns the repository as a message with reply channels, so the task stays
//! the only writer of its state and runs one thing at a time.

use std::time::Duration;

use tokio::sync::oneshot;

use super::commands::CommandError;
use crate::model::report::{DiffReport, RollbackReport, SyncHow, SyncReport};

/// What is asked of the task.
#[derive(Debug, Clone)]
pub enum Request {
    Sync(SyncHow),
    Rollback {
        commit: String,
    },
    /// `within`: how long the diff may wait for the repository's lock
    /// (another process's apply) before it answers busy.
    Diff {
        within: Option<Duration>,
    },
    /// Deploy these images in place of Git's (`updates.apply: deploy`).
    ImageUpdate {
        changes: Vec<crate::model::updates::ImageOverride>,
    },
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Request::Sync(_) => "sync",
            Request::Rollback { .. } => "rollback",
            Request::Diff { .. } => "diff",
            Request::ImageUpdate { .. } => "image update",
        }
    }
}

/// What the task answers.
#[derive(Debug)]
pub enum Answer {
    Sync(SyncReport),
    Rollback(RollbackReport),
    Diff(Box<DiffReport>),
    /// The services an image update changed.
    ImageUpdate(Vec<String>),
}

/// A request on its way to the task, with the ends the task answers on.
pub struct Command {
    pub request: Request,
    /// Sent when the task takes the command up. If the asker has gone
    /// (it gave up waiting), the send fails and the command is dropped
    /// unrun: "not started" then also means "will not start".
    pub started: oneshot::Sender<()>,
    /// The id of the deployment the command recorded, once it has begun.
    pub begun: oneshot::Sender<i64>,
    pub reply: oneshot::Sender<Result<Answer, CommandError>>,
}

/// The asker's ends of a [`Command`].
pub struct Ticket {
    pub started: oneshot::Receiver<()>,
    pub begun: oneshot::Receiver<i64>,
    pub reply: oneshot::Receiver<Result<Answer, CommandError>>,
}

impl Command {
    pub fn new(request: Request) -> (Command, Ticket) {
        let (started, started_rx) = oneshot::channel();
        let (begun, begun_rx) = oneshot::channel();
        let (reply, reply_rx) = oneshot::channel();
        (
            Command {
                request,
                started,
                begun,
                reply,
            },
            Ticket {
                started: started_rx,
                begun: begun_rx,
                reply: reply_rx,
            },
        )
    }
}

/// Why a command was not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStarted {
    /// The task did not take it up in time; it never will.
    Busy,
    /// The task is gone (serve is stopping, the repository was removed).
    Gone,
}

/// A task's inbox holds this many commands already.
#[derive(Debug, Clone, Copy)]
pub struct InboxFull;

impl Ticket {
    /// Waits up to `within` for the task to take the command up. On
    /// `Err(Busy)` the command is withdrawn: the task will drop it unrun.
    pub async fn wait_started(&mut self, within: Duration) -> Result<(), NotStarted> {
        match tokio::time::timeout(within, &mut self.started).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(NotStarted::Gone),
            Err(_) => {
                // Closed first, then looked at once more: a start the task
                // sent before the close counts, none can come after it.
                self.started.close();
                match self.started.try_recv() {
                    Ok(()) => Ok(()),
                    Err(_) => Err(NotStarted::Busy),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync() -> Request {
        Request::Sync(SyncHow::default())
    }

    #[tokio::test]
    async fn a_command_not_taken_up_in_time_is_withdrawn_and_never_runs() {
        let (command, mut ticket) = Command::new(sync());
        assert_eq!(
            ticket.wait_started(Duration::from_millis(10)).await,
            Err(NotStarted::Busy)
        );
        // The task comes to it later: it finds the asker gone and skips it.
        assert!(command.started.send(()).is_err());
    }

    #[tokio::test]
    async fn a_command_taken_up_in_time_is_started() {
        let (command, mut ticket) = Command::new(sync());
        command.started.send(()).unwrap();
        assert_eq!(ticket.wait_started(Duration::from_secs(5)).await, Ok(()));
    }

    #[tokio::test]
    async fn a_task_that_is_gone_says_so() {
        let (command, mut ticket) = Command::new(sync());
        drop(command);
        assert_eq!(
            ticket.wait_started(Duration::from_secs(5)).await,
            Err(NotStarted::Gone)
        );
    }
}
