//! target: a compose project (`docker.target: compose`, the default) —
//! applied with `docker compose up` of what changed, settled by the config
//! hashes compose labels its containers with, restored by `up` of the last
//! good deployment's services.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ImageIds;
use super::{Site, Source, TargetError};
use crate::apply::{self, ApplyError};
use crate::desired::render::Desired;
use crate::model::hooks::{HookPhase, HookRun};
use crate::observe::Engine;
use crate::plan::Want;
use crate::record::ServiceRecord;
use crate::{error_chain, short};

/// Applies a rendered commit with `docker compose up`: images pulled
/// first, then the deployed checkout, the label and SOPS overrides, and
/// `up` of the services it changes or rebuilds.
pub async fn apply(
    site: &Site<'_>,
    desired: &Desired,
    source: &Source,
    records: &BTreeMap<String, ServiceRecord>,
    previous: &BTreeMap<String, ServiceRecord>,
    changed: &[String],
) -> Result<Vec<HookRun>, TargetError> {
    // Images first, from the render checkout: a missing image fails here,
    // before the deployed checkout or any container changes.
    let (services, images) = apply::rollout::missing_images(site.engine, desired).await;
    // The project in a tree: the render checkout or the deployed one.
    let compose_in = |dir: &std::path::Path| {
        site.compose(&desired.project, dir, desired.files.clone())
            .with_profiles(&desired.kedge.profiles)
            .with_env_files(&desired.env_files)
    };
    match source {
        Source::Checkout(render_dir) => {
            apply::pull(&compose_in(render_dir), &services, &images).await?;
            site.git.checkout_deployed(&desired.commit).await?;
        }
        Source::Snapshot => {
            apply::pull(&compose_in(&site.git.clone), &services, &images).await?;
        }
    }
    let commits: BTreeMap<String, String> = records
        .iter()
        .map(|(s, r)| (s.clone(), r.commit.clone()))
        .collect();
    let fingerprints: BTreeMap<String, String> = desired
        .services
        .iter()
        .filter_map(|(s, spec)| Some((s.clone(), spec.build_fingerprint.clone()?)))
        .collect();
    // A build of these inputs kept from before (a revert, a rollback) is
    // put back under its name first: it is run as it was, not rebuilt.
    let built: Vec<&crate::model::service::ServiceSpec> = desired
        .services
        .values()
        .filter(|s| s.build.is_some())
        .collect();
    apply::rollout::select_builds(site.engine, &desired.project, &built).await;
    let rebuild = apply::rollout::builds(site.engine, desired, previous).await;
    let override_path = site.override_path.clone();
    apply::write_label_override(
        &override_path,
        &desired.project,
        &commits,
        &fingerprints,
        &desired.images,
        &site.host,
    )
    .await?;
    let mut project = compose_in(&site.git.clone).with_file(override_path);
    // The stack's SOPS files, decrypted into its private directory, and
    // the override that points compose at them; the deployed one's is kept
    // for a restore.
    keep_deployed_override(
        &site.secrets_dir,
        desired.secrets.as_ref().is_some_and(|s| !s.is_empty()),
    )
    .await;
    if let Some(secrets) = desired.secrets.clone().filter(|s| !s.is_empty()) {
        let dir = site.secrets_dir.clone();
        let written = tokio::task::spawn_blocking(move || secrets.write(&dir))
            .await
            .map_err(|e| ApplyError::Secrets(std::io::Error::other(e)))?
            .map_err(ApplyError::Secrets)?;
        project = project.with_file(written);
    }
    // On a remote host, last: the files it needs, shipped, and where.
    if let Some(shipped) = host_files(site, &project, &desired.project).await? {
        project = project.with_file(shipped);
    }
    tracing::debug!(commit = short(&desired.commit), "deployed tree checked out");
    // `deploy.before`: each hook service once, in order, before anything
    // of the stack changes.
    let runs = hooks(
        site,
        &project,
        desired,
        HookPhase::Before,
        &desired.kedge.gate.before,
        !previous.is_empty(),
    )
    .await
    .map_err(|runs| TargetError::Hook { runs })?;
    let (touched, removed) = scope(desired, previous, changed, &rebuild);
    let scope = if previous.is_empty() {
        apply::Scope::All
    } else {
        apply::Scope::Only(&touched)
    };
    let prune = desired.kedge.prune
        && apply::rollout::may_remove_orphans(site.engine, &desired.project, &desired.services)
            .await;
    let applied = apply::up(&project, &rebuild, scope, prune).await;
    let rebuilt: Vec<&crate::model::service::ServiceSpec> = rebuild
        .iter()
        .filter_map(|s| desired.services.get(s))
        .collect();
    apply::rollout::keep_builds(site.engine, &desired.project, &rebuilt).await;
    applied?;
    if desired.kedge.prune && !previous.is_empty() {
        apply::rollout::remove_services(site.engine, &desired.project, &removed).await?;
    }
    tracing::debug!(commit = short(&desired.commit), ?touched, "compose up done");
    Ok(runs)
}

/// On a host reached over SSH: the files of this machine `compose` reads
/// (the checkout's bind-mount sources and `configs`/`secrets` files, the
/// decrypted SOPS files) shipped there (see `ship`), and the override that
/// points the project at the copies, to be read after every other file;
/// `None` on this machine's engine, or for a project without such files.
/// Before an apply that writes its own SOPS override (`writes`), the
/// deployed one is kept aside for a restore; otherwise nothing is kept
/// (the deployed override, if any, stays in place).
async fn keep_deployed_override(dir: &std::path::Path, writes: bool) {
    let (current, kept) = (
        dir.join(crate::desired::secrets::OVERRIDE),
        dir.join(crate::desired::secrets::OVERRIDE_KEPT),
    );
    if writes && tokio::fs::try_exists(&current).await.unwrap_or(false) {
        if let Err(e) = tokio::fs::copy(&current, &kept).await {
            tracing::warn!("cannot keep the deployed SOPS override: {e}");
        }
    } else {
        let _ = tokio::fs::remove_file(&kept).await;
    }
}

/// `services` run as `phase` hooks, in order, until one fails: the runs,
/// or the runs up to the failed one (last). A hook's one-off container
/// that outlived a timeout is removed.
async fn hooks(
    site: &Site<'_>,
    project: &crate::compose::Compose,
    desired: &Desired,
    phase: HookPhase,
    services: &[String],
    no_deps: bool,
) -> Result<Vec<HookRun>, Vec<HookRun>> {
    let mut runs = Vec::new();
    for service in services {
        tracing::info!(
            commit = short(&desired.commit),
            service,
            "deploy.{} hook",
            phase.as_str()
        );
        let run =
            apply::run_hook(project, phase, service, no_deps, desired.kedge.gate.timeout).await;
        let ok = run.ok;
        runs.push(run);
        if !ok {
            remove_one_offs(site.engine, &desired.project, service).await;
            return Err(runs);
        }
    }
    Ok(runs)
}

/// `compose run` containers of `service` still there (their compose was
/// killed at the timeout, so `--rm` did not take them away).
async fn remove_one_offs(engine: &Engine, project: &str, service: &str) {
    let Ok(containers) = engine.project_containers(project).await else {
        return;
    };
    for c in containers
        .iter()
        .filter(|c| c.oneoff && c.service == service)
    {
        if let Err(e) = apply::engine::remove(engine, &c.id).await {
            tracing::warn!(
                project,
                service,
                "cannot remove a hook's container: {}",
                error_chain(&e)
            );
        }
    }
}

/// `deploy.after`: the hooks, run in the project as it was just applied
/// (its overrides: labels, decrypted SOPS files, files shipped to a host).
pub async fn after_hooks(site: &Site<'_>, desired: &Desired) -> Result<Vec<HookRun>, Vec<HookRun>> {
    let services = &desired.kedge.gate.after;
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let project = as_applied(
        site.compose(&desired.project, &site.git.clone, desired.files.clone())
            .with_profiles(&desired.kedge.profiles)
            .with_env_files(&desired.env_files),
        &site.override_path,
        &site.secrets_dir,
        desired.secrets.as_ref().is_some_and(|s| !s.is_empty()),
    );
    hooks(site, &project, desired, HookPhase::After, services, true).await
}

/// `compose` with the overrides its deployment was applied with, read
/// after its files as then: Kedge's labels, the decrypted SOPS values
/// (when it `reads_secrets`), and last, on a remote host, the one that
/// points at the shipped files. Without them a recreated service would
/// read its SOPS file still encrypted, or this machine's paths.
pub fn as_applied(
    compose: crate::compose::Compose,
    override_path: &std::path::Path,
    secrets_dir: &std::path::Path,
    reads_secrets: bool,
) -> crate::compose::Compose {
    let mut compose = compose.with_file(override_path.to_path_buf());
    let secrets = secrets_dir.join(crate::desired::secrets::OVERRIDE);
    if reads_secrets && secrets.is_file() {
        compose = compose.with_file(secrets);
    }
    let shipped = override_path.with_extension("host.json");
    if shipped.is_file() {
        compose = compose.with_file(shipped);
    }
    compose
}

async fn host_files(
    site: &Site<'_>,
    compose: &crate::compose::Compose,
    project: &str,
) -> Result<Option<std::path::PathBuf>, ApplyError> {
    use super::ship;
    let over = site.override_path.with_extension("host.json");
    let Some(control) = &site.control else {
        let _ = tokio::fs::remove_file(&over).await;
        return Ok(None);
    };
    let boxed = |e: Box<dyn std::error::Error + Send + Sync>| ApplyError::Ship(e);
    let out = compose
        .cmd(["config", "--format", "json"])
        .timeout(crate::compose::CONFIG_TIMEOUT)
        .run()
        .await
        .map_err(|e| boxed(Box::new(e)))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| boxed(Box::new(e)))?;
    let (checkout, private, name) = (
        site.git.clone.clone(),
        site.secrets_dir.clone(),
        project.to_string(),
    );
    let packed =
        tokio::task::spawn_blocking(move || ship::pack(&doc, &[&checkout, &private], &name))
            .await
            .map_err(|e| boxed(Box::new(e)))?
            .map_err(|e| boxed(Box::new(e)))?;
    if packed.keys.is_empty() {
        let _ = tokio::fs::remove_file(&over).await;
        return Ok(None);
    }
    // The keys shipped last time stay beside this time's: a rollback's.
    let keys_file = site.override_path.with_extension("shipped.json");
    let before: std::collections::BTreeSet<String> = tokio::fs::read(&keys_file)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    ship::ship(&site.host, control, project, &packed, &before)
        .await
        .map_err(|e| boxed(Box::new(e)))?;
    let _ = tokio::fs::write(
        &keys_file,
        serde_json::to_vec(&packed.keys).unwrap_or_default(),
    )
    .await;
    // Paths only: the contents went to the host.
    let text = serde_json::to_vec_pretty(&packed.override_doc()).unwrap_or_default();
    tokio::fs::write(&over, text)
        .await
        .map_err(|source| ApplyError::Override {
            path: over.clone(),
            source,
        })?;
    tracing::debug!(%project, host = %site.host, files = packed.keys.len(), bytes = packed.archive.len(), "files shipped");
    Ok(Some(over))
}

/// What a deployment over `previous` touches: the services it changed or
/// rebuilds that the project defines (to `up`), and those it took out of
/// the project (to remove). Unchanged services are left alone, a one-shot
/// that completed included.
fn scope(
    desired: &Desired,
    previous: &BTreeMap<String, ServiceRecord>,
    changed: &[String],
    rebuild: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut touched: Vec<String> = changed
        .iter()
        .chain(rebuild)
        .filter(|s| desired.services.contains_key(*s))
        .cloned()
        .collect();
    touched.sort();
    touched.dedup();
    let removed = previous
        .keys()
        .filter(|s| !desired.services.contains_key(*s))
        .cloned()
        .collect();
    (touched, removed)
}

/// Reads back the config hash compose gave each service's containers.
pub async fn settle(engine: &Engine, project: &str, records: &mut BTreeMap<String, ServiceRecord>) {
    match engine.project_containers(project).await {
        Ok(containers) => {
            for (name, record) in records.iter_mut() {
                record.config_hash = containers
                    .iter()
                    .find(|c| &c.service == name && !c.oneoff)
                    .and_then(|c| c.config_hash.clone());
            }
        }
        Err(e) => tracing::warn!(%project, "cannot read back config hashes: {}", error_chain(&e)),
    }
}

/// Attempts of a restore's `up`: the engine may still be creating what
/// the aborted `up` asked for when compose exits.
const RESTORE_ATTEMPTS: u32 = 3;

/// Re-applies the last good deployment (its records) over a failed one:
/// what the failed deployment changed goes back, what it added goes away,
/// nothing else is touched.
pub async fn restore(site: &Site<'_>, r: super::Restore<'_>) -> Result<(), ApplyError> {
    let commits: BTreeMap<String, String> = r
        .records
        .iter()
        .map(|(s, rec)| (s.clone(), rec.commit.clone()))
        .collect();
    let fingerprints: BTreeMap<String, String> = r
        .records
        .iter()
        .filter_map(|(s, rec)| Some((s.clone(), rec.spec.build_fingerprint.clone()?)))
        .collect();
    apply::write_label_override(
        &site.override_path,
        r.project,
        &commits,
        &fingerprints,
        r.images,
        &site.host,
    )
    .await?;
    let prune =
        r.prune && apply::rollout::may_remove_orphans(site.engine, r.project, r.records).await;
    let mut compose = site
        .compose(r.project, &site.git.clone, r.files)
        .with_profiles(r.profiles)
        .with_env_files(r.env_files)
        .with_file(site.override_path.clone());
    // The restored deployment's SOPS override: kept aside by the failed
    // apply when it wrote its own (its plaintext files are still there:
    // they are pruned only after a good deployment).
    let (secrets, kept) = (
        site.secrets_dir.join(crate::desired::secrets::OVERRIDE),
        site.secrets_dir
            .join(crate::desired::secrets::OVERRIDE_KEPT),
    );
    if tokio::fs::try_exists(&kept).await.unwrap_or(false) {
        tokio::fs::rename(&kept, &secrets)
            .await
            .map_err(ApplyError::Secrets)?;
    }
    if r.secrets && tokio::fs::try_exists(&secrets).await.unwrap_or(false) {
        compose = compose.with_file(secrets);
    }
    // The restored commit's files, shipped again (their copies were kept).
    if let Some(shipped) = host_files(site, &compose, r.project).await? {
        compose = compose.with_file(shipped);
    }
    let mut result = Ok(());
    for attempt in 1..=RESTORE_ATTEMPTS {
        // A leftover can appear after the first look.
        apply::rollout::remove_recreate_leftovers(site.engine, r.project).await;
        let (back, added): (Vec<String>, Vec<String>) = r
            .changed
            .iter()
            .cloned()
            .partition(|s| r.records.contains_key(s));
        // The image each build service ran then, not whatever the failed
        // deployment built under the same name.
        let specs: Vec<&crate::model::service::ServiceSpec> = back
            .iter()
            .filter_map(|s| r.records.get(s).map(|rec| &rec.spec))
            .collect();
        apply::rollout::select_builds(site.engine, r.project, &specs).await;
        result = apply::up(&compose, &[], apply::Scope::Only(&back), prune).await;
        if result.is_ok() && prune {
            result = apply::rollout::remove_services(site.engine, r.project, &added).await;
        }
        if result.is_ok() || attempt == RESTORE_ATTEMPTS {
            break;
        }
        tracing::debug!(project = %r.project, attempt, "restore failed, trying again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result
}

/// The deployed services as the planner wants them, images resolved now.
/// `images` caches what each reference resolves to, across repositories.
pub async fn wants(
    engine: &Engine,
    project: &str,
    records: &BTreeMap<String, ServiceRecord>,
    images: &mut ImageIds,
) -> BTreeMap<String, Want> {
    let mut out = BTreeMap::new();
    for (name, r) in records {
        let image = r.spec.image_ref(project);
        // A build service's is its build's image, kept under its build
        // tag: another image built or tagged under the name since is not it.
        let kept = r
            .spec
            .build
            .as_ref()
            .and(r.spec.build_fingerprint.as_ref())
            .map(|fp| crate::plan::build::build_tag(&image, fp));
        let mut image_id = None;
        for reference in kept.iter().chain(std::iter::once(&image)) {
            image_id = match images.get(reference) {
                Some(id) => id.clone(),
                None => {
                    let id = engine.image_id(reference).await;
                    images.insert(reference.clone(), id.clone());
                    id
                }
            };
            if image_id.is_some() {
                break;
            }
        }
        out.insert(
            name.clone(),
            Want {
                image_id,
                image,
                spec: r.spec.clone(),
                config_hash: r.config_hash.clone(),
            },
        );
    }
    out
}

/// The compose project's drift plan: its containers against the deployed
/// services, images resolved now.
pub async fn drift_plan(
    engine: &Engine,
    o: super::Observe<'_>,
    images: &mut ImageIds,
) -> Result<(crate::plan::Plan, Vec<crate::observe::ContainerState>), crate::observe::ObserveError>
{
    let containers = match o.containers {
        Some(c) => c,
        None => engine.project_containers(o.project).await?,
    };
    let want = wants(engine, o.project, o.records, images).await;
    let plan = crate::plan::plan(
        &want,
        &containers,
        o.mode,
        o.prune,
        &o.dormant,
        o.backed_off,
        o.unhealthy,
    );
    Ok((plan, containers))
}
