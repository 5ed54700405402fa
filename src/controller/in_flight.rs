//! controller: commands that HTTP starts (sync, rollback) run in tasks of
//! their own; serve's shutdown waits for them as for its own applies, so
//! a restart never cuts a deployment in half.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a running command; its drop counts it out.
pub struct Running(Arc<InFlight>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// Runs `work` in its own task, counted until it ends (or is dropped).
    pub fn spawn<F>(self: &Arc<Self>, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.count.fetch_add(1, Ordering::AcqRel);
        let running = Running(self.clone());
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
    }

    /// Counts a command that runs elsewhere (in its repository's task)
    /// until the returned guard is dropped: once its asker has its answer.
    pub fn hold(self: &Arc<Self>) -> Running {
        self.count.fetch_add(1, Ordering::AcqRel);
        Running(self.clone())
    }

    /// Returns once no command runs.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a drop in between is not missed.
            notified.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_every_command_started() {
        let in_flight = Arc::new(InFlight::default());
        in_flight.idle().await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        in_flight.spawn(async move {
            let _ = rx.await;
            flag.store(true, Ordering::SeqCst);
        });
        let waiting = in_flight.idle();
        tokio::pin!(waiting);
        // Polled once, not raced against a clock: pending while one runs.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx)));
        assert!(first.await.is_pending(), "idle while a command runs");
        tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .expect("idle once the command ended");
        assert!(done.load(Ordering::SeqCst));
    }
}
