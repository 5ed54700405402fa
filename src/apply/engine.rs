//! apply: the changes Kedge makes through the Engine API itself rather
//! than compose — starting a stopped container, restarting an unhealthy
//! one, removing an extra one, and
//! the anonymous volumes of a stack taken down for good.

use super::ApplyError;
use crate::observe::Engine;

pub async fn start(engine: &Engine, id: &str) -> Result<(), ApplyError> {
    engine
        .client()
        .await?
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .map_err(|source| ApplyError::Start {
            container: id.to_string(),
            source,
        })
}

/// Restarts a container (stopped with its own stop signal and grace period).
pub async fn restart(engine: &Engine, id: &str) -> Result<(), ApplyError> {
    engine
        .client()
        .await?
        .restart_container(
            id,
            None::<bollard::query_parameters::RestartContainerOptions>,
        )
        .await
        .map_err(|source| ApplyError::Restart {
            container: id.to_string(),
            source,
        })
}

/// Force-removes a container; its volumes are kept.
pub async fn remove(engine: &Engine, id: &str) -> Result<(), ApplyError> {
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(false)
        .build();
    engine
        .client()
        .await?
        .remove_container(id, Some(options))
        .await
        .map_err(|source| ApplyError::Remove {
            container: id.to_string(),
            source,
        })
}

pub async fn remove_volume(engine: &Engine, name: &str) -> Result<(), ApplyError> {
    engine
        .client()
        .await?
        .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
        .await
        .map_err(|source| ApplyError::RemoveVolume {
            volume: name.to_string(),
            source,
        })
}

/// Tags the image `source` (a reference or an id) as `target`
/// (`repo:tag`), moving that tag if it named another image.
pub async fn tag(engine: &Engine, source: &str, target: &str) -> Result<(), ApplyError> {
    let (repo, tag) = match target.rfind(':') {
        Some(at) if !target[at..].contains('/') => (&target[..at], &target[at + 1..]),
        _ => (target, "latest"),
    };
    let options = bollard::query_parameters::TagImageOptionsBuilder::default()
        .repo(repo)
        .tag(tag)
        .build();
    engine
        .client()
        .await?
        .tag_image(source, Some(options))
        .await
        .map_err(|source_err| ApplyError::Tag {
            image: source.to_string(),
            target: target.to_string(),
            source: source_err,
        })
}

/// Untags all but the newest `keep` images tagged `kedge-…` in the
/// repository of `tag` (one service's kept builds): an image no tag or
/// container holds any more is deleted by the engine. Best effort.
pub async fn forget_old_builds(engine: &Engine, tag: &str, keep: usize) {
    let Some((repo, _)) = tag.rsplit_once(':') else {
        return;
    };
    let Ok(docker) = engine.client().await else {
        return;
    };
    let filters = std::collections::HashMap::from([("reference", vec![format!("{repo}:kedge-*")])]);
    let options = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let Ok(mut images) = docker.list_images(Some(options)).await else {
        return;
    };
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    let prefix = format!("{repo}:kedge-");
    for old in images.iter().skip(keep) {
        for name in old.repo_tags.iter().filter(|t| t.starts_with(&prefix)) {
            let untag = docker
                .remove_image(
                    name,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
            match untag {
                Ok(_) => tracing::debug!(image = %name, "an old build forgotten"),
                Err(e) => tracing::debug!(image = %name, "cannot forget an old build: {e}"),
            }
        }
    }
}
