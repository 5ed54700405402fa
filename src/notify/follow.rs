//! One sink's queue: a task of `serve` that follows the stored event log
//! from the sink's cursor, in id order, whoever stored the events (`serve`
//! itself, or `kedge sync`/`rollback` in another shell). It reads the log
//! on its own database connection and wakes on the hub's broadcast, so a
//! receiver that hangs holds up this sink alone: never a deploy, a heal or
//! another sink.
//!
//! For each event: filtered (`events`, `repos`), then de-duplicated (the
//! same failure — repo, kind, service, message — once per
//! `repeat_interval`; a success clears it), then delivered with retries.
//! The cursor moves past an event once it is delivered, filtered out,
//! suppressed or given up on: a restart resumes after it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::message::Notice;
use super::send::Sender;
use crate::controller::hub::Hub;
use crate::error_chain;
use crate::events::{Event, EventKind, Severity};
use crate::record::{EventQuery, SentKey, Store, StoreError, now_ms};

/// Events read from the log at a time.
const PAGE: usize = 200;
/// How often the log is read when no broadcast came (a missed wake-up).
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// The wait after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(5);

/// The key `repeat_interval` suppresses on: a digest of the event's repo,
/// kind, service and message.
pub fn dedup_key(e: &Event) -> String {
    // Each part length-prefixed: no two tuples make the same text.
    let mut text = String::new();
    for part in [
        e.repo.as_str(),
        e.kind.as_str(),
        e.service.as_deref().unwrap_or(""),
        e.message.as_str(),
    ] {
        text.push_str(&format!("{}:{part};", part.len()));
    }
    // Two stacks' same news is two news (a repository's own stack keeps
    // the keys it had).
    if let Some(stack) = &e.stack {
        text.push_str(&format!("stack {}:{stack};", stack.len()));
    }
    crate::desired::render::sha256_hex(text.as_bytes())
}

/// What a success clears: a deployment that succeeded clears the
/// repository's failures; a heal clears its service's.
fn clears(e: &Event) -> Option<Option<&str>> {
    match e.kind {
        EventKind::DeploySucceeded => Some(None),
        EventKind::DriftHealed => e.service.as_deref().map(Some),
        _ => None,
    }
}

/// Opens the sink's own connection and reads (or starts) its cursor: done
/// before `serve`'s repositories start, so a sink new to this data
/// directory starts at the log's end as it was then, not after the first
/// deployment's events.
pub fn prepare(data_dir: &Path, sink: &str) -> Result<(Store, i64), StoreError> {
    let store = Store::open(data_dir)?;
    let cursor = store.notify_cursor(sink, store.last_event_id()?)?;
    Ok((store, cursor))
}

/// The store and cursor of follower `name`: `prepared`, or when that
/// failed, tried again until they can be had.
pub(super) async fn opened(
    data_dir: &Path,
    name: &str,
    prepared: Option<(Store, i64)>,
) -> (Store, i64) {
    match prepared {
        Some(ready) => ready,
        None => loop {
            match prepare(data_dir, name) {
                Ok(ready) => break ready,
                Err(e) => {
                    tracing::warn!(follower = %name, "waiting for the store: {}", error_chain(&e));
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        },
    }
}

/// The next events after `cursor`, at most a page: read now, or once the
/// hub says an event was stored (or after [`IDLE_CHECK`], for a missed
/// word). `None` once `serve` ends.
pub(super) async fn next_page(
    store: &Arc<Mutex<Store>>,
    cursor: i64,
    wake: &mut broadcast::Receiver<crate::events::Live>,
    name: &str,
) -> Option<Vec<Event>> {
    loop {
        // Broadcasts only wake: what to send is read from the log.
        while matches!(
            wake.try_recv(),
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_))
        ) {}
        let page = on(store, move |s| {
            s.events(&EventQuery {
                after_id: Some(cursor),
                limit: PAGE,
                ..Default::default()
            })
        })
        .await;
        match page {
            Ok(page) if !page.is_empty() => return Some(page),
            Ok(_) => {
                tokio::select! {
                    r = wake.recv() => {
                        if matches!(r, Err(broadcast::error::RecvError::Closed)) {
                            return None;
                        }
                    }
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                }
            }
            Err(e) => {
                tracing::warn!(follower = %name, "cannot read the event log: {}", error_chain(&e));
                tokio::time::sleep(STORE_RETRY).await;
            }
        }
    }
}

/// Runs one sink until `serve` ends, from `prepared` (or, when that
/// failed, from a store and cursor it keeps trying to get).
pub async fn run(data_dir: PathBuf, hub: Arc<Hub>, sender: Sender, prepared: Option<(Store, i64)>) {
    let name = sender.name().to_string();
    let mut wake = hub.subscribe();
    let (store, mut cursor) = opened(&data_dir, &name, prepared).await;
    tracing::debug!(sink = %name, cursor, "notifications follow the event log");
    let store = Arc::new(Mutex::new(store));
    while let Some(page) = next_page(&store, cursor, &mut wake, &name).await {
        for event in page {
            match handle(&hub, &sender, &store, &event).await {
                Ok(()) => cursor = event.id,
                Err(e) => {
                    // The cursor stays: the event is dealt with again.
                    tracing::warn!(sink = %name, event = event.id, "cannot record a notification: {}", error_chain(&e));
                    tokio::time::sleep(STORE_RETRY).await;
                    break;
                }
            }
        }
    }
}

/// Runs `f` on the sink's connection on the blocking pool: a write that
/// waits for another process's lock holds up this sink alone, never a
/// thread of the runtime.
pub(super) async fn on<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&mut store.lock().unwrap_or_else(|p| p.into_inner())))
        .await
        .unwrap_or(Err(StoreError::WriterGone))
}

/// Moves the sink's cursor past event `id`, noting `sent` (key, repo,
/// service) when a failure was delivered.
async fn advance(
    store: &Arc<Mutex<Store>>,
    sink: &str,
    id: i64,
    sent: Option<(String, String, Option<String>)>,
) -> Result<(), StoreError> {
    let sink = sink.to_string();
    on(store, move |s| {
        let sent = sent.as_ref().map(|(key, repo, service)| SentKey {
            key,
            repo,
            service: service.as_deref(),
        });
        s.notify_advance(&sink, id, sent)
    })
    .await
}

/// Deals with one event and moves the cursor past it.
async fn handle(
    hub: &Hub,
    sender: &Sender,
    store: &Arc<Mutex<Store>>,
    e: &Event,
) -> Result<(), StoreError> {
    let sink = &sender.sink;
    let name = sink.name.as_str();
    if let Some(service) = clears(e) {
        let (sink, repo, service) = (name.to_string(), e.repo.clone(), service.map(String::from));
        on(store, move |s| {
            s.notify_clear(&sink, &repo, service.as_deref())
        })
        .await?;
    }
    if !sink.wants(&e.repo, e.kind, e.severity) {
        return advance(store, name, e.id, None).await;
    }
    // Failures are de-duplicated; everything else is news each time.
    let key = (e.severity >= Severity::Warning).then(|| dedup_key(e));
    if let Some(key) = &key {
        let (sink_name, digest) = (name.to_string(), key.clone());
        if let Some(sent_at) = on(store, move |s| s.notify_sent_at(&sink_name, &digest)).await? {
            let interval = sink.repeat_interval.as_millis().min(i64::MAX as u128) as i64;
            if now_ms().saturating_sub(sent_at) < interval {
                tracing::debug!(sink = name, event = e.id, kind = %e.kind, repo = %e.repo, "notification suppressed: sent already within repeat_interval");
                hub.count_notification(name, "suppressed", 1);
                return advance(store, name, e.id, None).await;
            }
        }
    }
    let notice = Notice::of(e, sender.public_url());
    match sender.deliver(&notice).await {
        Ok((answer, tries)) => {
            tracing::info!(sink = name, event = e.id, kind = %e.kind, repo = %e.repo, tries, %answer, "notification sent");
            hub.count_notification(name, "success", 1);
            let sent = key.map(|key| (key, e.repo.clone(), e.service.clone()));
            advance(store, name, e.id, sent).await
        }
        Err((err, tries)) => {
            tracing::error!(sink = name, event = e.id, kind = %e.kind, repo = %e.repo, tries, "notification failed, given up: {err}");
            hub.count_notification(name, "failure", 1);
            advance(store, name, e.id, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, service: Option<&str>, message: &str) -> Event {
        Event {
            id: 1,
            time: 0,
            repo: "app".into(),
            kind,
            severity: kind.severity(),
            service: service.map(String::from),
            commit: Some("abc".into()),
            message: message.into(),
            fields: serde_json::Map::new(),
            origin: None,
            stack: None,
        }
    }

    #[test]
    fn the_key_is_repo_kind_service_and_message() {
        let a = event(EventKind::DeployFailed, None, "boom");
        let mut same = a.clone();
        same.id = 2;
        same.commit = Some("def".into());
        same.time = 99;
        assert_eq!(
            dedup_key(&a),
            dedup_key(&same),
            "the commit and time do not count"
        );
        for other in [
            event(EventKind::DeployFailed, None, "bang"),
            event(EventKind::HealFailed, None, "boom"),
            event(EventKind::DeployFailed, Some("web"), "boom"),
            Event {
                repo: "other".into(),
                ..a.clone()
            },
        ] {
            assert_ne!(dedup_key(&a), dedup_key(&other), "{other:?}");
        }
        // No separator games: ("a", "b;c") is not ("a;b", "c").
        let x = event(EventKind::DeployFailed, Some("a"), "b;c");
        let y = event(EventKind::DeployFailed, Some("a;b"), "c");
        assert_ne!(dedup_key(&x), dedup_key(&y));
    }

    #[test]
    fn successes_clear_what_they_fix() {
        assert_eq!(
            clears(&event(EventKind::DeploySucceeded, None, "")),
            Some(None)
        );
        assert_eq!(
            clears(&event(EventKind::DriftHealed, Some("web"), "")),
            Some(Some("web"))
        );
        assert_eq!(clears(&event(EventKind::DeployFailed, None, "")), None);
        assert_eq!(clears(&event(EventKind::DeployStarted, None, "")), None);
    }
}
