//! controller: one engine listing that the stacks' periodic checks share.
//! A thousand stacks checking every 30 s would otherwise ask the engine to
//! filter all its containers 33 times a second (each such list costs the
//! engine time in proportion to every container it holds). A view only
//! ever confirms that nothing changed: a check that finds drift in it
//! looks at its own project again, fresh, before it acts on anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error_chain;
use crate::observe::{ContainerState, Engine};

use super::heal::ImageIds;

/// Every compose project's containers as one list showed them.
pub struct View {
    taken: Instant,
    by_project: BTreeMap<String, Vec<ContainerState>>,
    /// Image ids looked up by the checks that used this view.
    images: std::sync::Mutex<ImageIds>,
}

impl View {
    pub fn containers(&self, project: &str) -> Vec<ContainerState> {
        self.by_project.get(project).cloned().unwrap_or_default()
    }

    pub fn images(&self) -> ImageIds {
        self.images.lock().map(|i| i.clone()).unwrap_or_default()
    }

    pub fn keep_images(&self, found: ImageIds) {
        if let Ok(mut images) = self.images.lock() {
            images.extend(found);
        }
    }
}

/// The current view, made anew at most once per `max_age`.
#[derive(Default)]
pub struct Views {
    current: tokio::sync::Mutex<Option<Arc<View>>>,
}

/// How old a view a periodic check may use: a third of the check
/// interval, between 1 and 15 s (10 s at the default 30 s). The engine's
/// events are what finds drift at once; the periodic check is the safety
/// net, and this delays it by at most that much.
pub fn max_age(check_interval: Duration) -> Duration {
    (check_interval / 3).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

impl Views {
    /// A view for a check of a stack last changed at `touched` (an engine
    /// event, a command, a heal): none when that was under `max_age` ago
    /// (the check lists its own project, which is cheaper than everything)
    /// or the engine cannot be asked (the check's own list will say why);
    /// else the current view, or a new one if it is older than `max_age`
    /// (one list at a time: the others wait for it and share it).
    pub async fn usable(
        &self,
        engine: &Engine,
        touched: Option<Instant>,
        max_age: Duration,
    ) -> Option<Arc<View>> {
        if touched.is_some_and(|t| t.elapsed() <= max_age) {
            return None;
        }
        let mut current = self.current.lock().await;
        if let Some(view) = current.as_ref().filter(|v| v.taken.elapsed() <= max_age) {
            return Some(view.clone());
        }
        let taken = Instant::now();
        match engine.containers_by_project().await {
            Ok(by_project) => {
                let view = Arc::new(View {
                    taken,
                    by_project,
                    images: std::sync::Mutex::new(ImageIds::new()),
                });
                *current = Some(view.clone());
                Some(view)
            }
            Err(e) => {
                tracing::debug!("no shared view of the containers: {}", error_chain(&e));
                None
            }
        }
    }
}
