//! controller: image update checks (fleet.md §3) — each deployed stack's
//! services against their registries, by the `updates:` policy they were
//! deployed with. Findings are stored per service; a new candidate is
//! announced once (`update_available`); under `apply: commit` it is
//! written back to Git (`write_back`).

use std::collections::HashMap;
use std::sync::Arc;

use super::Shared;
use super::task::ReconcileError;
use crate::desired::updates::{Apply, Updates};
use crate::events::{EventKind, NewEvent};
use crate::model::updates::UpdateRow;
use crate::plan::updates::{Policy, candidate};
use crate::registry::{Client, Login, Reference};

/// How long the registry client keeps an answer: one pass over every
/// stack asks each image once.
const CACHE: std::time::Duration = std::time::Duration::from_secs(60);

impl Shared {
    /// The registry client of update checks, with the `registries:`
    /// logins as they read now.
    fn registry_client(&self) -> Arc<Client> {
        let logins: Vec<Login> = self
            .settings
            .registries
            .iter()
            .filter_map(|r| {
                Some(Login {
                    host: r.host.clone(),
                    username: r.username.clone(),
                    password: r.password.read().ok()?,
                })
            })
            .collect();
        let client = self
            .registry
            .get_or_init(|| Arc::new(Client::new(Vec::new(), CACHE)));
        client.set_logins(logins);
        client.clone()
    }
}

/// How often `serve` looks for stacks due a check: their own
/// `check_interval` decides when one is.
const TICK: std::time::Duration = std::time::Duration::from_secs(60);
const FIRST: std::time::Duration = std::time::Duration::from_secs(5);

/// `serve`'s checks: each stack with `updates:` when its `check_interval`
/// has passed since its last check (the first ones shortly after start,
/// once the stacks have had their first pass). No stack due, no request.
pub async fn run(shared: Arc<Shared>) {
    let mut last: HashMap<i64, std::time::Instant> = HashMap::new();
    let mut wait = FIRST;
    loop {
        tokio::time::sleep(wait).await;
        wait = TICK;
        let configs = match shared.db.read(|s| s.updates_configs()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("update checks: {}", crate::error_chain(&e));
                continue;
            }
        };
        let due: Vec<i64> = configs
            .iter()
            .filter_map(|(id, json)| {
                let interval = Updates::from_json(json)?.check_interval;
                let seen = last.get(id);
                seen.is_none_or(|at| at.elapsed() >= interval)
                    .then_some(*id)
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        match check_stacks(&shared, None, Some(&due), false).await {
            Ok(rows) => {
                tracing::debug!(
                    stacks = due.len(),
                    services = rows.len(),
                    "image updates checked"
                )
            }
            Err(e) => tracing::warn!("update checks: {}", crate::error_chain(&e)),
        }
        let now = std::time::Instant::now();
        for id in due {
            last.insert(id, now);
        }
    }
}

/// Checks the stacks of `repo` (all when `None`), stores and returns the
/// findings. `fresh`: ask the registries again even when an answer of the
/// last minute is cached (`kedge updates check`).
pub async fn check(
    shared: &Arc<Shared>,
    repo: Option<i64>,
    fresh: bool,
) -> Result<Vec<UpdateRow>, ReconcileError> {
    check_stacks(shared, repo, None, fresh).await
}

async fn check_stacks(
    shared: &Arc<Shared>,
    repo: Option<i64>,
    only: Option<&[i64]>,
    fresh: bool,
) -> Result<Vec<UpdateRow>, ReconcileError> {
    let client = shared.registry_client();
    if fresh {
        client.forget();
    }
    let configs = shared.db.read(|s| s.updates_configs())?;
    let stacks: HashMap<i64, crate::record::Stack> = shared
        .db
        .read(move |s| s.stacks(repo))?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let before: HashMap<(String, String, String), UpdateRow> = shared
        .db
        .read(move |s| s.updates(repo))?
        .into_iter()
        .map(|r| ((r.repo.clone(), r.stack.clone(), r.service.clone()), r))
        .collect();
    let mut all = Vec::new();
    for (stack_id, json) in configs {
        if only.is_some_and(|ids| !ids.contains(&stack_id)) {
            continue;
        }
        let Some(stack) = stacks.get(&stack_id) else {
            continue;
        };
        let Some(config) = Updates::from_json(&json) else {
            continue;
        };
        let mut rows = check_stack(shared, &client, stack, &config).await?;
        for r in rows.iter().filter(|r| r.state == "error") {
            // Said once when it starts failing, not at every check after.
            let was = before.get(&(r.repo.clone(), r.stack.clone(), r.service.clone()));
            let detail = r.detail.as_deref().unwrap_or_default();
            if was.is_none_or(|b| b.state != "error") {
                tracing::warn!(repo = %r.repo, stack = %r.stack, service = %r.service, "update check failed: {detail}");
            } else {
                tracing::debug!(repo = %r.repo, stack = %r.stack, service = %r.service, "update check still failing: {detail}");
            }
        }
        for r in &rows {
            let seen = before
                .get(&(r.repo.clone(), r.stack.clone(), r.service.clone()))
                .map(|b| &b.candidate);
            if let Some(c) = &r.candidate
                && r.state != "error"
                && seen != Some(&Some(c.clone()))
            {
                shared.emit(
                    NewEvent::new(
                        &r.repo,
                        EventKind::UpdateAvailable,
                        format!("update available: {} {} → {c}", r.service, r.current),
                    )
                    .stack((!stack.root).then_some(stack.name.as_str()))
                    .service(&r.service)
                    .field("image", r.image.clone())
                    .field("current", r.current.clone())
                    .field("candidate", c.clone())
                    .field("policy", r.policy.clone()),
                );
            }
        }
        if config.apply == Apply::Commit {
            // A failure already reported for the same candidate is not
            // announced again.
            let failed: HashMap<String, String> = rows
                .iter()
                .filter_map(|r| {
                    let b = before.get(&(r.repo.clone(), r.stack.clone(), r.service.clone()))?;
                    (b.state == "failed" && b.candidate == r.candidate)
                        .then(|| (r.service.clone(), b.detail.clone().unwrap_or_default()))
                })
                .collect();
            super::write_back::commit(shared, stack, &config, &mut rows, &failed).await?;
        }
        if config.apply == Apply::Deploy {
            super::image_update::apply(shared, stack, &mut rows).await?;
        }
        let (id, kept) = (stack_id, rows.clone());
        shared
            .db
            .write(move |s| s.replace_updates(id, &kept))
            .await?;
        all.extend(rows);
    }
    Ok(all)
}

/// One stack's services, each by its policy.
async fn check_stack(
    shared: &Arc<Shared>,
    client: &Arc<Client>,
    stack: &crate::record::Stack,
    config: &Updates,
) -> Result<Vec<UpdateRow>, ReconcileError> {
    let id = stack.id;
    let services = shared.db.read(move |s| s.services(id))?;
    let failed = shared.db.read(move |s| s.failed_images(id))?;
    let state = shared.db.read(move |s| s.repo_state(id))?;
    let project = state.project;
    // The engine of the stack's host; one that does not answer is looked
    // at in the next check.
    let engine = shared
        .hosts
        .way(state.host.as_deref().unwrap_or(crate::config::hosts::LOCAL))
        .await?
        .engine;
    // The images the service's containers run: a digest policy compares
    // what they were pulled as, whatever the tag points at locally now.
    let running: HashMap<String, String> = match &project {
        Some(p) => engine
            .project_containers(p)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !c.oneoff)
            .map(|c| (c.service, c.image_id))
            .collect(),
        None => HashMap::new(),
    };
    let now = crate::time::now_ms();
    let waiting = match config.window() {
        Some(w) if config.apply != Apply::Report && !w.contains(now) => config.window.clone(),
        _ => None,
    };
    let mut rows = Vec::new();
    for (service, record) in services {
        let policy = config.policy(&service);
        let Some(image) = record.spec.image.clone() else {
            continue;
        };
        if policy == Policy::None {
            continue;
        }
        let Some(mut reference) = Reference::parse(&image) else {
            continue;
        };
        // A digest pinned after a tag (`apply: deploy` of a digest
        // policy): the tag is what is checked, the pin what runs.
        let pinned = reference.digest.take();
        if pinned.is_some() && (policy != Policy::Digest || !image.contains(':')) {
            continue;
        }
        // The image as named, without a pinned digest: `name:tag`.
        let tagged = image.split('@').next().unwrap_or(&image).to_string();
        let local = match (policy, running.get(&service)) {
            (Policy::Digest, _) if pinned.is_some() => Some(pinned.clone().into_iter().collect()),
            (Policy::Digest, Some(image_id)) => Some(
                engine
                    .repo_digests(image_id)
                    .await
                    .into_iter()
                    .filter_map(|d| {
                        let (name, digest) = d.split_once('@')?;
                        let r = Reference::parse(name)?;
                        (r.registry == reference.registry && r.repository == reference.repository)
                            .then(|| digest.to_string())
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        let pattern = config.tag_pattern(&service);
        let min_age = config.min_age;
        // Tags of this image that failed the gate as this service.
        let failed_refs: Vec<Reference> = failed
            .iter()
            .filter(|(s, _)| *s == service)
            .filter_map(|(_, image)| Reference::parse(image))
            .filter(|f| f.registry == reference.registry && f.repository == reference.repository)
            .collect();
        let failed_tags: Vec<String> = failed_refs
            .iter()
            .filter(|f| f.digest.is_none())
            .map(|f| f.tag.clone())
            .collect();
        let failed_digests: Vec<String> = failed_refs
            .into_iter()
            .filter(|f| f.tag == reference.tag)
            .filter_map(|f| f.digest)
            .collect();
        let (client, r, image_now) = (client.clone(), reference.clone(), image.clone());
        let found = tokio::task::spawn_blocking(move || {
            let (current, next, running_image) = match policy {
                Policy::Digest => client.digest(&r).map(|remote| {
                    let local = local.unwrap_or_default();
                    let current = local.first().cloned();
                    // Any digest the running image is known by is the tag's:
                    // a pull of an unchanged tag records no second one. A
                    // digest that failed its gate is no candidate.
                    let changed = !local.is_empty()
                        && !local.contains(&remote)
                        && !failed_digests.contains(&remote);
                    (
                        current
                            .as_deref()
                            .map_or_else(|| "-".to_string(), short_digest),
                        changed.then_some(remote),
                        current.map(|c| format!("{tagged}@{c}")),
                    )
                }),
                _ => client.tags(&r).map(|tags| {
                    (
                        r.tag.clone(),
                        candidate(&r.tag, &tags, policy, pattern.as_ref(), &failed_tags)
                            .map(String::from),
                        Some(image_now),
                    )
                }),
            }?;
            // `min_age`: a candidate published more recently waits.
            let young = match (&next, min_age) {
                (Some(c), Some(min)) => {
                    let published = if policy == Policy::Digest {
                        r.clone()
                    } else {
                        r.with_tag(c)
                    };
                    client.created(&published)?.and_then(|t| young(now, t, min))
                }
                _ => None,
            };
            // What runs and what the candidate is, in full.
            let candidate_image = next.as_ref().map(|c| match policy {
                Policy::Digest => format!("{tagged}@{c}"),
                _ => match tagged.strip_suffix(r.tag.as_str()) {
                    Some(name) if name.ends_with(':') => format!("{name}{c}"),
                    _ => format!("{tagged}:{c}"),
                },
            });
            let next = match policy {
                Policy::Digest => next.map(|d: String| short_digest(&d)),
                _ => next,
            };
            Ok((current, next, young, running_image, candidate_image))
        })
        .await
        .unwrap_or_else(|e| {
            Err(crate::registry::RegistryError::Answer {
                registry: reference.registry.clone(),
                why: e.to_string(),
            })
        });
        let (running_image, candidate_image) = match &found {
            Ok((_, _, _, running, candidate)) => (running.clone(), candidate.clone()),
            Err(_) => (None, None),
        };
        let found = found.map(|(current, next, young, _, _)| (current, next, young));
        let (current, candidate, state, detail) = match found {
            Ok((current, Some(c), Some(young))) => (current, Some(c), "waiting", Some(young)),
            Ok((current, Some(c), None)) => match &waiting {
                Some(w) => (
                    current,
                    Some(c),
                    "waiting",
                    Some(format!("outside the window {w}")),
                ),
                None => (current, Some(c), "available", None),
            },
            Ok((current, None, _)) if current == "-" => (
                current,
                None,
                "error",
                Some(
                    "the running image was not pulled from its registry: no digest to compare"
                        .to_string(),
                ),
            ),
            Ok((current, None, _)) => (current, None, "current", None),
            Err(e) => (reference.tag.clone(), None, "error", Some(e.to_string())),
        };
        rows.push(UpdateRow {
            repo: stack.repo.clone(),
            stack: stack.name.clone(),
            service,
            image,
            current,
            candidate,
            policy: policy.as_str().to_string(),
            state: state.to_string(),
            detail,
            checked_at: now,
            running_image,
            candidate_image,
        });
    }
    Ok(rows)
}

/// Why a candidate built at `created` still waits at `now` under
/// `min_age`; `None` once it is old enough.
fn young(now: i64, created: i64, min_age: std::time::Duration) -> Option<String> {
    let age = std::time::Duration::from_millis(now.saturating_sub(created).max(0) as u64);
    (age < min_age).then(|| {
        format!(
            "published {} ago, min_age {}",
            crate::config::duration::format_duration(age),
            crate::config::duration::format_duration(min_age)
        )
    })
}

/// `sha256:0123456789ab…` → `sha256:0123456789ab`.
fn short_digest(d: &str) -> String {
    d.chars().take("sha256:".len() + 12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_candidate_waits_until_it_is_min_age_old() {
        let hour = 3_600_000;
        let min = Duration::from_secs(24 * 3600);
        assert_eq!(
            young(100 * hour, 90 * hour, min).as_deref(),
            Some("published 10h ago, min_age 1d")
        );
        assert_eq!(
            young(100 * hour, 76 * hour, min),
            None,
            "24h old is old enough"
        );
        // A clock ahead of ours counts as just published.
        assert_eq!(
            young(100 * hour, 101 * hour, min).as_deref(),
            Some("published 0s ago, min_age 1d")
        );
    }
}
