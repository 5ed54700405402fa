//! apply: the engine-side steps of rolling a commit out that are not
//! compose calls — which images must be pulled, which services built, and
//! the leftovers of an aborted recreate to clear before a restore.

use std::collections::BTreeMap;

use super::ApplyError;
use crate::desired::render::Desired;
use crate::desired::render::ServiceSpec;
use crate::error_chain;
use crate::observe::Engine;
use crate::plan::build::{build_reason, build_tag};
use crate::record::ServiceRecord;

/// Whether `up` may remove orphans itself (`--remove-orphans`): not while
/// `project` has a container labelled `io.kedge.ignore: "true"` outside
/// `services`, which compose would take for an orphan. The drift pass then
/// removes the other extra containers, and leaves that one. Without an
/// engine connection, compose may.
pub async fn may_remove_orphans<T>(
    engine: &Engine,
    project: &str,
    services: &BTreeMap<String, T>,
) -> bool {
    match engine.project_containers(project).await {
        Ok(containers) => !crate::plan::keeps_orphans(&containers, services),
        Err(e) => {
            tracing::debug!(%project, "cannot list containers: {}", error_chain(&e));
            true
        }
    }
}

/// Services whose image is not on the host (all of them without an engine
/// connection: compose then skips what it has), with those images.
pub async fn missing_images(engine: &Engine, desired: &Desired) -> (Vec<String>, Vec<String>) {
    let pulled: Vec<(&String, &String)> = desired
        .services
        .values()
        .filter(|spec| spec.build.is_none())
        .filter_map(|spec| Some((&spec.name, spec.image.as_ref()?)))
        .collect();
    // One inspection per service, side by side.
    let present = futures_util::future::join_all(
        pulled
            .iter()
            .map(|(_, image)| async { engine.image_id(image).await.is_some() }),
    )
    .await;
    let mut services = Vec::new();
    let mut images = Vec::new();
    for ((service, image), present) in pulled.into_iter().zip(present) {
        if !present {
            services.push(service.clone());
            images.push(image.clone());
        }
    }
    images.sort();
    images.dedup();
    (services, images)
}

/// The build services to build before `up`: those whose build inputs
/// changed or whose image is not on the host (see `plan::build`).
pub async fn builds(
    engine: &Engine,
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
) -> Vec<String> {
    let built: Vec<_> = desired
        .services
        .values()
        .filter(|spec| spec.build.is_some())
        .collect();
    let images = futures_util::future::join_all(built.iter().map(|spec| async {
        let image = spec.image_ref(&desired.project);
        engine.image_on_host(&image).await
    }))
    .await;
    let mut rebuild = Vec::new();
    for (spec, image) in built.into_iter().zip(images) {
        let before = previous.get(&spec.name).map(|r| &r.spec);
        if let Some(reason) = build_reason(spec, before, &image) {
            tracing::info!(service = %spec.name, "building {}: {}", spec.name, reason.as_str());
            rebuild.push(spec.name.clone());
        }
    }
    rebuild
}

/// Compose recreates a container by creating the new one under a temporary
/// name, `<old id, 12 hex>_<name>`, then renaming it. An `up` aborted midway
/// can leave such a container behind, which the next `up` takes for a
/// second replica and trips over (a name conflict): remove them first.
pub async fn remove_recreate_leftovers(engine: &Engine, project: &str) {
    let Ok(containers) = engine.project_containers(project).await else {
        return;
    };
    for c in containers.iter().filter(|c| is_recreate_leftover(&c.name)) {
        match super::engine::remove(engine, &c.id).await {
            Ok(()) => {
                tracing::info!(%project, container = %c.name, "removed a leftover of an interrupted recreate")
            }
            Err(e) => tracing::debug!(%project, container = %c.name, "{}", error_chain(&e)),
        }
    }
}

/// Keeps the image of each build just made addressable by its build
/// fingerprint ([`build_tag`]), beside the service's name: what a restore,
/// a rollback or a revert puts back. An image whose label is not the
/// service's fingerprint (the build failed) is left alone.
pub async fn keep_builds(engine: &Engine, project: &str, specs: &[&ServiceSpec]) {
    for spec in specs {
        let Some(fingerprint) = &spec.build_fingerprint else {
            continue;
        };
        let image = spec.image_ref(project);
        let built = matches!(
            engine.image_on_host(&image).await,
            crate::observe::ImageOnHost::Present { build_label: Some(ref l) } if l == fingerprint
        );
        if !built {
            continue;
        }
        let tag = build_tag(&image, fingerprint);
        match super::engine::tag(engine, &image, &tag).await {
            Ok(()) => tracing::debug!(service = %spec.name, %tag, "build kept"),
            Err(e) => tracing::warn!(service = %spec.name, "{}", error_chain(&e)),
        }
        super::engine::forget_old_builds(engine, &tag, KEPT_BUILDS).await;
    }
}

/// Builds kept per service: the newest ones, enough for the rollbacks an
/// operator makes; an older one is built again when it is deployed again.
pub const KEPT_BUILDS: usize = 5;

/// Puts each build service's image of its build fingerprint back under
/// its name when something else took the name since (a later build, a
/// build by hand): an `up` then runs the very image of that build. A
/// build whose image is not kept (an older Kedge built it) is left to the
/// usual rule: built when its image differs.
pub async fn select_builds(engine: &Engine, project: &str, specs: &[&ServiceSpec]) {
    for spec in specs {
        let Some(fingerprint) = spec.build.as_ref().and(spec.build_fingerprint.as_ref()) else {
            continue;
        };
        let image = spec.image_ref(project);
        let tag = build_tag(&image, fingerprint);
        let Some(kept) = engine.image_id(&tag).await else {
            continue;
        };
        if engine.image_id(&image).await.as_deref() == Some(kept.as_str()) {
            continue;
        }
        match super::engine::tag(engine, &kept, &image).await {
            Ok(()) => {
                tracing::info!(service = %spec.name, %image, build = %tag, "the image of this build is back under its name")
            }
            Err(e) => tracing::warn!(service = %spec.name, "{}", error_chain(&e)),
        }
    }
}

/// Removes the containers of `services`, ones a deployment took out of the
/// project: an `up` of the services it changed alone does not see them.
/// Only those: a container of a service the file still defines (under an
/// inactive profile, say) or started by hand under another name stays.
pub async fn remove_services(
    engine: &Engine,
    project: &str,
    services: &[String],
) -> Result<(), ApplyError> {
    if services.is_empty() {
        return Ok(());
    }
    let containers = engine.project_containers(project).await?;
    for c in containers
        .iter()
        .filter(|c| !c.oneoff && services.contains(&c.service))
    {
        super::engine::remove(engine, &c.id).await?;
        tracing::info!(%project, container = %c.name, service = %c.service, "removed: its service is gone from the project");
    }
    Ok(())
}

/// `0123456789ab_project-web-1`: compose's temporary name while recreating.
fn is_recreate_leftover(name: &str) -> bool {
    let name = name.trim_start_matches('/');
    name.len() > 13
        && name.as_bytes()[12] == b'_'
        && name[..12].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recreate_leftovers_are_told_by_their_temporary_name() {
        for (name, leftover) in [
            ("520c29f1b924_app-web-1", true),
            ("/520c29f1b924_app-web-1", true),
            ("app-web-1", false),
            ("520c29f1b92_app-web-1", false),
            ("520c29f1b92x_app-web-1", false),
            ("520c29f1b924_", false),
        ] {
            assert_eq!(is_recreate_leftover(name), leftover, "{name}");
        }
    }
}
