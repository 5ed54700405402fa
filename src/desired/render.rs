//! Renders one commit into the desired state with `docker compose config
//! --format json`, so compose itself resolves interpolation, env files,
//! extends and profiles. Each service gets a hash of its resolved
//! configuration plus the git object ids of what it takes from the
//! repository (bind-mounted files, file configs/secrets, build context):
//! equal hash, nothing to restart.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::inputs::{self, InputsError, Resolved};
use super::kedge_yaml::{self, KedgeYaml, KedgeYamlError};
use super::profiles;
use super::secrets::{Identities, SecretError, StackSecrets};
pub use super::specs::service_specs;
use super::stack_inputs::{self, StackInputs};
use crate::compose::{self, Compose};
use crate::config::interpolate::Env;
use crate::process::ProcessError;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render: the reading task failed")]
    Task,
    #[error(transparent)]
    KedgeYaml(#[from] KedgeYamlError),
    #[error("compose file {0} named in kedge.yaml does not exist")]
    MissingComposeFile(String),
    #[error("no compose file found (looked for {})", compose::DEFAULT_FILES.join(", "))]
    NoComposeFile,
    #[error("cannot resolve compose file {file}")]
    ResolveComposeFile {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("compose file {file} leads outside the repository (to {})", target.display())]
    OutsideRepository { file: String, target: PathBuf },
    #[error("compose file {file} is not a regular file")]
    NotAFile { file: String },
    #[error(
        "compose file {file} is {size} bytes, over the limit of {limit} bytes (render.max_compose_size)"
    )]
    TooLarge { file: String, size: u64, limit: u64 },
    #[error("the rendered compose project is over {limit} bytes (16 × render.max_compose_size)")]
    RenderedTooLarge { limit: u64 },
    #[error("invalid compose project")]
    Compose(#[source] ProcessError),
    #[error("cannot read the output of docker compose config")]
    Output(#[source] serde_json::Error),
    #[error(transparent)]
    Inputs(#[from] InputsError),
    #[error(
        "project {project} is already the stack of repository {repo}: two repositories on one project would remove each other's containers; give this one another docker.project_name"
    )]
    ProjectTaken { project: String, repo: String },
    /// `target.host` names no configured host.
    #[error(transparent)]
    Host(#[from] crate::target::pool::PoolError),
    #[error(
        "the stack runs on host {from}: it does not move to {to} in place (its volumes stay on {from}); take it down there first (remove the stack, or set `target.host: {from}` again)"
    )]
    HostMoved { from: String, to: String },
    #[error(
        "`target.hosts` deploys a declared stack to several hosts: declare the repository's stacks (`stacks:` or `discover:`), or name one `target.host`"
    )]
    HostsOfRoot,
    /// `deploy.ignore`, `deploy.before` or `deploy.after` (`key`).
    #[error(
        "`deploy.{key}` names `{service}`, which is not a service of the stack (its services: {})",
        services.join(", ")
    )]
    UnknownService {
        key: &'static str,
        service: String,
        services: Vec<String>,
    },
    #[error(
        "`deploy.before`/`deploy.after` run one-shot services with `docker compose run`, which a Swarm stack has not: use them with `docker.target: compose`"
    )]
    HooksOnSwarm,
    #[error(
        "the stack reads files of this machine that host {host} cannot see ({}): Kedge ships the files a stack reads to hosts reached over SSH, not to a tcp:// host; reach it over SSH, or use named volumes, `configs` with `content`, or an image that carries them",
        files.join("; ")
    )]
    HostFiles { host: String, files: Vec<String> },
    #[error(transparent)]
    Stack(#[from] super::stack_of::StackOfError),
    #[error(transparent)]
    Secret(#[from] super::secrets::SecretError),
}

/// Put on a service in the compose file, `io.kedge.ignore: "true"` tells
/// Kedge to deploy it but never report or heal its drift.
pub const IGNORE_LABEL: &str = "io.kedge.ignore";

pub use crate::model::service::ServiceSpec;

/// What a commit says should run.
#[derive(Debug, Clone, Serialize)]
pub struct Desired {
    pub commit: String,
    pub project: String,
    pub kedge: KedgeYaml,
    /// Compose files, relative to the repository root.
    pub files: Vec<PathBuf>,
    /// A stack of a repository with several: its directory (the project
    /// directory) and its `--env-file`s, relative to that directory.
    pub stack_dir: Option<String>,
    pub env_files: Vec<String>,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Services the compose files define under profiles not enabled: their
    /// containers (started by hand) are not extra.
    pub dormant: Vec<String>,
    /// `docker compose config` output as if rendered in the clone.
    pub rendered: String,
    /// What the rendering read from the repository, and its fingerprint;
    /// `None` when that cannot be known without compose (see
    /// `stack_inputs`).
    pub inputs: Option<StackInputs>,
    /// The SOPS files the stack reads, decrypted: in memory only, never
    /// serialized; `apply` writes them to the private directory.
    #[serde(skip)]
    pub secrets: Option<std::sync::Arc<StackSecrets>>,
    /// Images run in place of those Git names (`apply: deploy`), by
    /// service: see `run_instead`.
    pub images: BTreeMap<String, String>,
}

/// Renders `commit`, checked out at `checkout`, as it will be deployed
/// from `deploy_dir`: the repository's own stack (`stack` `None`), or its
/// stack of that name. `object_ids` maps repository paths to git object
/// ids; compose files over `max_compose_size` bytes are refused; `key`
/// makes the fingerprints of secrets; `ids` open SOPS files.
#[allow(clippy::too_many_arguments)]
pub async fn render(
    repo_name: &str,
    stack: Option<&str>,
    commit: &str,
    checkout: &Path,
    deploy_dir: &Path,
    object_ids: HashMap<String, String>,
    env: Env<'_>,
    max_compose_size: u64,
    key: &[u8],
    ids: std::sync::Arc<Identities>,
) -> Result<Desired, RenderError> {
    let (kedge, decl) = match stack {
        None => (kedge_yaml::load(checkout, env).await?, None),
        Some(name) => {
            // Reads of at most 1 MiB each, of regular files only (see
            // `contained`): brief enough for the runtime's thread.
            let (kedge, decl) = super::stack_of::load(checkout, &object_ids, name, env)?;
            (kedge, Some(decl))
        }
    };
    let base_dir = decl
        .as_ref()
        .map(|d| PathBuf::from(&d.path))
        .unwrap_or_default();
    let named: Vec<String> = match &decl {
        Some(d) => d.compose_files.clone(),
        None => kedge.compose_files.clone(),
    };
    let files: Vec<PathBuf> = if named.is_empty() {
        compose::discover_files(&checkout.join(&base_dir))
            .ok_or(RenderError::NoComposeFile)?
            .into_iter()
            .map(|f| base_dir.join(f))
            .collect()
    } else {
        let mut files = Vec::new();
        for f in &named {
            let rel = normalize(&base_dir.join(f));
            if !checkout.join(&rel).is_file() {
                return Err(RenderError::MissingComposeFile(
                    rel.to_string_lossy().into_owned(),
                ));
            }
            files.push(rel);
        }
        files
    };
    check_compose_files(checkout, &files, max_compose_size)?;
    let project = match (&kedge.project_name, &decl) {
        (Some(p), _) => p.clone(),
        (None, Some(d)) => format!("{repo_name}-{}", d.name),
        (None, None) => repo_name.to_string(),
    };
    let env_files = decl
        .as_ref()
        .map(|d| d.env_files.clone())
        .unwrap_or_default();
    let stack_dir = decl.as_ref().map(|d| d.path.clone());
    let limit = rendered_limit(max_compose_size);
    let base = Compose::new(&project, checkout, files.clone())
        .of_stack(stack_dir.as_ref().map(PathBuf::from), &env_files);
    let (doc, dormant) = profiles::render(&base, &kedge.profiles, limit).await?;
    let compose = base.with_profiles(&kedge.profiles);
    let values = inputs::resolve_env(&compose, &inputs::env_names(&doc), limit).await?;
    let mut extra: Vec<String> = env_files
        .iter()
        .map(|f| normalize(&base_dir.join(f)).to_string_lossy().into_owned())
        .collect();
    if decl.is_some() {
        extra.push(base_dir.join("kedge.yaml").to_string_lossy().into_owned());
    }
    let interpolated: Vec<String> = std::iter::once(
        normalize(
            &compose
                .project_dir()
                .strip_prefix(checkout)
                .unwrap_or(Path::new(""))
                .join(".env"),
        )
        .to_string_lossy()
        .into_owned(),
    )
    .chain(extra.iter().filter(|p| !p.ends_with("kedge.yaml")).cloned())
    .collect();
    // What is left reads the stack's files, decrypts its SOPS files and
    // hashes its services: on the blocking pool, not the runtime's thread.
    let read = Read {
        checkout: checkout.to_path_buf(),
        deploy_dir: deploy_dir.to_path_buf(),
        project_dir: compose.project_dir(),
        extra,
        interpolated,
        object_ids,
        max_compose_size,
        key: key.to_vec(),
        ids,
    };
    let desired = Desired {
        commit: commit.to_string(),
        project,
        kedge,
        files,
        stack_dir,
        env_files,
        services: BTreeMap::new(),
        dormant,
        rendered: String::new(),
        inputs: None,
        secrets: None,
        images: BTreeMap::new(),
    };
    tokio::task::spawn_blocking(move || read.finish(desired, doc, &values))
        .await
        .map_err(|_| RenderError::Task)?
}

/// What the last, blocking part of a render reads and hashes with.
struct Read {
    checkout: PathBuf,
    deploy_dir: PathBuf,
    project_dir: PathBuf,
    /// Inputs beside the compose files: env files, a declared stack's
    /// `kedge.yaml`.
    extra: Vec<String>,
    /// The files compose reads for interpolation (no SOPS file may be one).
    interpolated: Vec<String>,
    object_ids: HashMap<String, String>,
    max_compose_size: u64,
    key: Vec<u8>,
    ids: std::sync::Arc<Identities>,
}

impl Read {
    /// `desired` completed from the rendered `doc`: its inputs, its
    /// secrets, its services' specs and the stored rendering.
    fn finish(
        self,
        mut desired: Desired,
        mut doc: Value,
        values: &BTreeMap<String, String>,
    ) -> Result<Desired, RenderError> {
        let (checkout, deploy_dir, key) = (&self.checkout, &self.deploy_dir, &self.key[..]);
        let object_ids = &self.object_ids;
        let stack_inputs = stack_inputs(
            checkout,
            &self.project_dir,
            &desired.files,
            &self.extra,
            &doc,
            object_ids,
            self.max_compose_size,
            key,
        );
        let secrets = find_secrets(
            checkout,
            &doc,
            stack_inputs.as_ref(),
            &self.interpolated,
            &desired.kedge,
            self.max_compose_size,
            &self.ids,
            key,
        )?;
        let from = checkout.to_string_lossy();
        let to = deploy_dir.to_string_lossy();
        desired.services = match &secrets {
            // Hashed with HMACs in place of the SOPS values and files: a
            // re-encryption of the same values changes no service.
            Some((secrets, hashed)) => {
                let mut hashed = hashed.clone();
                relocate(&mut hashed, &from, &to);
                let mut ids = object_ids.clone();
                ids.extend(secrets.object_ids());
                service_specs(&hashed, deploy_dir, &ids, Resolved { env: values, key })
            }
            None => {
                relocate(&mut doc, &from, &to);
                service_specs(&doc, deploy_dir, object_ids, Resolved { env: values, key })
            }
        };
        if secrets.is_some() {
            relocate(&mut doc, &from, &to);
        }
        desired.rendered = serde_json::to_string_pretty(&doc).unwrap_or_default();
        desired.inputs = stack_inputs;
        desired.secrets = secrets.map(|(s, _)| std::sync::Arc::new(s));
        Ok(desired)
    }
}

/// The SOPS files among the stack's inputs (and the files `doc` names),
/// decrypted and placed, with `doc` made fit for hashing; `None` when the
/// stack reads none. A SOPS file compose would read for interpolation is
/// refused: its values would land in the stored rendering.
#[allow(clippy::too_many_arguments)]
fn find_secrets(
    checkout: &Path,
    doc: &Value,
    inputs: Option<&StackInputs>,
    interpolated: &[String],
    kedge: &KedgeYaml,
    limit: u64,
    ids: &Identities,
    key: &[u8],
) -> Result<Option<(StackSecrets, Value)>, RenderError> {
    let root = checkout.to_string_lossy().into_owned();
    let mut candidates: std::collections::BTreeSet<String> = inputs
        .map(|i| i.paths.iter().cloned().collect())
        .unwrap_or_default();
    let mut named = Vec::new();
    collect_paths(&doc["services"], &mut named);
    for kind in ["secrets", "configs"] {
        collect_paths(&doc[kind], &mut named);
    }
    candidates.extend(
        named
            .iter()
            .filter_map(|p| repo_relative(p, Path::new(&root)))
            .filter(|p| !p.is_empty()),
    );
    candidates.extend(kedge.sops_files.iter().cloned());
    let mut secrets = super::secrets::stack::find(checkout, &candidates, limit, ids, key)?;
    if let Some(file) = kedge
        .sops_files
        .iter()
        .find(|f| !secrets.paths().any(|p| p == f.as_str()))
    {
        return Err(SecretError::NotSops { file: file.clone() }.into());
    }
    let folded = doc["services"].to_string().contains("ENC[AES256_GCM,");
    if secrets.is_empty() && !folded {
        return Ok(None);
    }
    if kedge.target == kedge_yaml::Target::Swarm {
        return Err(SecretError::Swarm.into());
    }
    if let Some(file) = secrets
        .paths()
        .find(|p| interpolated.iter().any(|i| i == p))
    {
        return Err(SecretError::Interpolated {
            file: file.to_string(),
        }
        .into());
    }
    let mut hashed = doc.clone();
    secrets.place(&mut hashed, checkout)?;
    Ok(Some((secrets, hashed)))
}

/// The stack's inputs as rendered from `checkout` (`doc` not relocated
/// yet), fingerprinted at this commit.
#[allow(clippy::too_many_arguments)]
fn stack_inputs(
    checkout: &Path,
    project_dir: &Path,
    files: &[PathBuf],
    extra: &[String],
    doc: &Value,
    object_ids: &HashMap<String, String>,
    limit: u64,
    key: &[u8],
) -> Option<StackInputs> {
    let project_dir = project_dir.strip_prefix(checkout).unwrap_or(project_dir);
    match stack_inputs::collect(checkout, project_dir, files, doc, limit) {
        Ok(mut paths) => {
            paths.extend(extra.iter().cloned());
            paths.sort();
            paths.dedup();
            Some(StackInputs {
                fingerprint: stack_inputs::fingerprint(
                    &paths,
                    object_ids,
                    &stack_inputs::env_digest(key),
                ),
                paths,
            })
        }
        Err(why) => {
            tracing::debug!(
                ?why,
                "the stack's inputs are not known: every new commit is rendered"
            );
            None
        }
    }
}

/// `docker compose config --format json`, read.
pub(super) async fn config(compose: &Compose, limit: u64) -> Result<Value, RenderError> {
    let out = compose
        .cmd(["config", "--format", "json"])
        .timeout(compose::CONFIG_TIMEOUT)
        .max_stdout(limit)
        .run()
        .await
        .map_err(|e| match e {
            ProcessError::TooMuchOutput { limit, .. } => RenderError::RenderedTooLarge { limit },
            e => RenderError::Compose(e),
        })?;
    serde_json::from_slice(&out.stdout).map_err(RenderError::Output)
}

/// How long `compose config`'s answer may be: its JSON spells out what the
/// files leave to defaults and merges several files, so it is a few times
/// the size of what it read; `include:` and YAML aliases can make it
/// larger still, and that is refused unread.
pub fn rendered_limit(max_compose_size: u64) -> u64 {
    max_compose_size.saturating_mul(16)
}

/// Every compose file must be a file of the repository: its real path
/// (symlinks resolved) inside the checkout, a regular file, and no larger
/// than the limit, checked before compose reads it.
fn check_compose_files(checkout: &Path, files: &[PathBuf], limit: u64) -> Result<(), RenderError> {
    let name = |f: &Path| f.to_string_lossy().into_owned();
    let root = checkout
        .canonicalize()
        .map_err(|source| RenderError::ResolveComposeFile {
            file: ".".into(),
            source,
        })?;
    for f in files {
        let real = match checkout.join(f).canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RenderError::MissingComposeFile(name(f)));
            }
            Err(source) => {
                return Err(RenderError::ResolveComposeFile {
                    file: name(f),
                    source,
                });
            }
        };
        if !real.starts_with(&root) {
            return Err(RenderError::OutsideRepository {
                file: name(f),
                target: real,
            });
        }
        let meta = std::fs::metadata(&real).map_err(|source| RenderError::ResolveComposeFile {
            file: name(f),
            source,
        })?;
        if !meta.is_file() {
            return Err(RenderError::NotAFile { file: name(f) });
        }
        let size = meta.len();
        if size > limit {
            return Err(RenderError::TooLarge {
                file: name(f),
                size,
                limit,
            });
        }
    }
    Ok(())
}

/// Rewrites paths under the render checkout to where the stack runs.
fn relocate(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::String(s) if s.contains(from) => *s = s.replace(from, to),
        Value::Array(items) => items.iter_mut().for_each(|i| relocate(i, from, to)),
        Value::Object(map) => map.values_mut().for_each(|i| relocate(i, from, to)),
        _ => {}
    }
}

/// Every absolute path among the strings of `v`.
pub(super) fn collect_paths(v: &Value, out: &mut Vec<PathBuf>) {
    match v {
        Value::String(s) if s.starts_with('/') => out.push(normalize(Path::new(s))),
        Value::Array(items) => items.iter().for_each(|i| collect_paths(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_paths(i, out)),
        _ => {}
    }
}

/// `a/b/../c` as `a/c`, without touching the file system.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to `root` when it lies inside it ("" for the root itself).
pub(super) fn repo_relative(path: &Path, root: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    Some(rel.to_string_lossy().trim_end_matches('/').to_string())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::model::digest::sha256_hex;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "services": {
                "web": {
                    "image": "nginx:1.25",
                    "volumes": [
                        {"type": "bind", "source": "/r/conf/nginx.conf", "target": "/etc/nginx.conf"},
                        {"type": "bind", "source": "/r/data", "target": "/data"},
                        {"type": "volume", "source": "cache", "target": "/cache"}
                    ],
                    "configs": [{"source": "site", "target": "/site"}]
                },
                "api": {"build": {"context": "/r/api", "dockerfile": "Dockerfile"}, "deploy": {"replicas": 3}},
                "worker": {"image": "busybox", "restart": "no"}
            },
            "configs": {"site": {"file": "/r/site.conf"}}
        })
    }

    /// Specs without environment-sourced values, with a fixed key.
    fn specs(
        doc: &Value,
        root: &Path,
        object_ids: &HashMap<String, String>,
    ) -> BTreeMap<String, ServiceSpec> {
        let env = BTreeMap::new();
        let resolved = Resolved {
            env: &env,
            key: &[1; 32],
        };
        service_specs(doc, root, object_ids, resolved)
    }

    fn ids(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn hashes_follow_the_content_each_service_uses() {
        let base = ids(&[
            ("conf/nginx.conf", "a1"),
            ("site.conf", "s1"),
            ("api", "t1"),
            ("README.md", "r1"),
        ]);
        let root = Path::new("/r");
        let before = specs(&doc(), root, &base);
        assert_eq!(before["api"].replicas, 3);
        assert_eq!(before["api"].build.as_deref(), Some("api@t1"));
        assert_eq!(before["worker"].restart.as_deref(), Some("no"));

        // A README change touches no service.
        let readme = ids(&[
            ("conf/nginx.conf", "a1"),
            ("site.conf", "s1"),
            ("api", "t1"),
            ("README.md", "r2"),
        ]);
        assert_eq!(specs(&doc(), root, &readme), before);

        // An edited bind-mounted file changes only the service mounting it.
        let conf = ids(&[
            ("conf/nginx.conf", "a2"),
            ("site.conf", "s1"),
            ("api", "t1"),
        ]);
        let after = specs(&doc(), root, &conf);
        assert_ne!(after["web"].hash, before["web"].hash);
        assert_eq!(after["api"].hash, before["api"].hash);
        assert_eq!(after["worker"].hash, before["worker"].hash);

        // So does a file config, and a build context only its service.
        let site = ids(&[
            ("conf/nginx.conf", "a1"),
            ("site.conf", "s2"),
            ("api", "t1"),
        ]);
        assert_ne!(specs(&doc(), root, &site)["web"].hash, before["web"].hash);
        let ctx = ids(&[
            ("conf/nginx.conf", "a1"),
            ("site.conf", "s1"),
            ("api", "t2"),
        ]);
        let rebuilt = specs(&doc(), root, &ctx);
        assert_ne!(rebuilt["api"].hash, before["api"].hash);
        assert_eq!(rebuilt["web"].hash, before["web"].hash);
    }

    #[test]
    fn build_fingerprints_follow_only_the_build_inputs() {
        let doc = |build: Value, env: &str| json!({"services": {"app": {"build": build, "environment": {"MODE": env}}}});
        let base = json!({"context": "/r/app", "dockerfile": "Dockerfile", "args": {"V": "1"}});
        let ids0 = ids(&[("app", "t1"), ("docker/Dockerfile.app", "d1")]);
        let fp = |d: &Value, ids: &HashMap<String, String>| {
            specs(d, Path::new("/r"), ids)["app"]
                .build_fingerprint
                .clone()
        };
        let before = fp(&doc(base.clone(), "a"), &ids0);
        assert!(before.is_some());

        // An environment change changes the service, not its build.
        let env_only = specs(&doc(base.clone(), "b"), Path::new("/r"), &ids0);
        assert_ne!(
            env_only["app"].hash,
            specs(&doc(base.clone(), "a"), Path::new("/r"), &ids0)["app"].hash
        );
        assert_eq!(env_only["app"].build_fingerprint, before);

        // Context content, build args, target and dockerfile each change it.
        let ctx = ids(&[("app", "t2"), ("docker/Dockerfile.app", "d1")]);
        assert_ne!(fp(&doc(base.clone(), "a"), &ctx), before);
        let mut args = base.clone();
        args["args"]["V"] = json!("2");
        assert_ne!(fp(&doc(args, "a"), &ids0), before);
        let mut target = base.clone();
        target["target"] = json!("prod");
        assert_ne!(fp(&doc(target, "a"), &ids0), before);

        // A dockerfile outside the context is fingerprinted by its content.
        let mut outer = base.clone();
        outer["dockerfile"] = json!("../docker/Dockerfile.app");
        let outer_before = fp(&doc(outer.clone(), "a"), &ids0);
        let edited = ids(&[("app", "t1"), ("docker/Dockerfile.app", "d2")]);
        assert_ne!(fp(&doc(outer, "a"), &edited), outer_before);

        // Without object ids (a stored snapshot) the inputs are unknown.
        assert_eq!(fp(&doc(base, "a"), &ids(&[])), None);
        // A service without `build` has none.
        assert_eq!(
            specs(&super::tests::doc(), Path::new("/r"), &ids0)["web"].build_fingerprint,
            None
        );
    }

    /// Regression: an edit of a config's inline `content:` left every
    /// hash equal, so it was never applied and `diff` said in sync.
    #[test]
    fn an_inline_config_edit_changes_only_the_services_using_it() {
        let mut d = doc();
        d["configs"]["banner"] = json!({"name": "p_banner", "content": "v1\n"});
        d["services"]["worker"]["configs"] = json!([{"source": "banner", "target": "/banner"}]);
        let root = Path::new("/r");
        let before = specs(&d, root, &ids(&[]));
        d["configs"]["banner"]["content"] = json!("v2\n");
        let after = specs(&d, root, &ids(&[]));
        assert_ne!(after["worker"].hash, before["worker"].hash);
        assert_eq!(after["web"].hash, before["web"].hash);
        assert_eq!(after["api"].hash, before["api"].hash);
    }

    #[test]
    fn a_config_change_changes_the_hash() {
        let base = ids(&[]);
        let root = Path::new("/r");
        let before = specs(&doc(), root, &base);
        let mut changed = doc();
        changed["services"]["worker"]["image"] = json!("busybox:2");
        let after = specs(&changed, root, &base);
        assert_ne!(after["worker"].hash, before["worker"].hash);
        assert_eq!(after["web"].hash, before["web"].hash);
    }

    #[test]
    fn compose_files_must_stay_in_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(repo.join("deploy")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("compose.yaml"), "services: {}\n").unwrap();
        std::fs::write(repo.join("deploy/real.yaml"), "services: {}\n").unwrap();
        let link =
            |target: &Path, at: &str| std::os::unix::fs::symlink(target, repo.join(at)).unwrap();
        link(&outside.join("compose.yaml"), "link.yaml");
        link(Path::new("deploy/real.yaml"), "inside.yaml");
        link(&outside, "sub");
        link(Path::new("../outside/compose.yaml"), "climb.yaml");

        let check = |f: &str| check_compose_files(&repo, &[PathBuf::from(f)], 1 << 20);
        check("inside.yaml").expect("a link within the repository is fine");
        check("deploy/real.yaml").unwrap();
        for escaping in ["link.yaml", "sub/compose.yaml", "climb.yaml"] {
            let err = check(escaping).unwrap_err();
            assert!(
                matches!(err, RenderError::OutsideRepository { .. }),
                "{err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!(
                    "compose file {escaping} leads outside the repository"
                )),
                "{err}"
            );
        }
        assert!(matches!(
            check("nope.yaml"),
            Err(RenderError::MissingComposeFile(_))
        ));
    }

    #[test]
    fn compose_files_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), vec![b'#'; 2048]).unwrap();
        let files = [PathBuf::from("compose.yaml")];
        check_compose_files(dir.path(), &files, 2048).unwrap();
        let err = check_compose_files(dir.path(), &files, 2047).unwrap_err();
        assert_eq!(
            err.to_string(),
            "compose file compose.yaml is 2048 bytes, over the limit of 2047 bytes (render.max_compose_size)"
        );
    }

    #[test]
    fn relocation_rewrites_checkout_paths() {
        let mut v = json!({"a": ["/x/render/conf", "keep"], "b": {"c": "/x/render"}});
        relocate(&mut v, "/x/render", "/x/clone");
        assert_eq!(
            v,
            json!({"a": ["/x/clone/conf", "keep"], "b": {"c": "/x/clone"}})
        );
    }
}
