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
