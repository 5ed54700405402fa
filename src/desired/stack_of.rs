//! desired: one stack of a repository with several (fleet.md §1), as a
//! checkout of a commit declares it: its entry in the root `kedge.yaml`
//! (`stacks:` or `discover:`, expanded over the commit's paths) and its
//! settings (`defaults:` with its directory's own `kedge.yaml` over them).

use std::collections::HashMap;
use std::path::Path;

use super::contained;
use super::kedge_yaml::{self, FILE_NAME, KedgeYaml, KedgeYamlError, MAX_SIZE};
use super::layout::{self, Declared, LayoutError, StackDecl};
use crate::config::interpolate::Env;
use crate::config::schema::SchemaError;
use crate::config::yaml::{self, Node};

#[derive(Debug, thiserror::Error)]
pub enum StackOfError {
    #[error(transparent)]
    Read(#[from] KedgeYamlError),
    #[error("{file}: {source}")]
    Invalid {
        file: String,
        #[source]
        source: SchemaError,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("this commit declares no stack `{0}`")]
    Gone(String),
}

/// The root `kedge.yaml` of a commit, parsed as YAML (`None`: there is none).
pub fn root_file(text: Option<&str>) -> Result<Option<Node>, StackOfError> {
    let Some(text) = text else {
        return Ok(None);
    };
    yaml::parse(text)
        .map(Some)
        .map_err(|e| StackOfError::Invalid {
            file: FILE_NAME.into(),
            source: e.into(),
        })
}

/// What the root file declares (a missing file declares one root stack).
pub fn declared(root: Option<&Node>, env: Env<'_>) -> Result<Declared, StackOfError> {
    match root {
        Some(doc) => layout::declared(doc, env).map_err(|source| StackOfError::Invalid {
            file: FILE_NAME.into(),
            source,
        }),
        None => Ok(Declared::default()),
    }
}

/// Stack `name` of the commit checked out at `checkout` (`object_ids`: its
/// paths), with its settings. `STACK@HOST` is the copy on `HOST` of a
/// stack whose `target.hosts` names it. Blocking: it reads files.
pub fn load(
    checkout: &Path,
    object_ids: &HashMap<String, String>,
    name: &str,
    env: Env<'_>,
) -> Result<(KedgeYaml, StackDecl), StackOfError> {
    let root = read(checkout, Path::new(FILE_NAME))?;
    let root = root_file(root.as_deref())?;
    let declared = declared(root.as_ref(), env)?;
    let (base, on) = layout::split_host(name);
    let decl = layout::expand(&declared, object_ids.keys().map(String::as_str))?
        .into_iter()
        .find(|s| s.name == base)
        .ok_or_else(|| StackOfError::Gone(name.to_string()))?;
    let own_file = Path::new(&decl.path).join(FILE_NAME);
    let own = read(checkout, &own_file)?;
    let mut kedge = settings_of(declared.defaults.as_ref(), own.as_deref(), &decl.path, env)?;
    for p in &decl.profiles {
        if !kedge.profiles.contains(p) {
            kedge.profiles.push(p.clone());
        }
    }
    // A stack on several hosts is one stack per host; one that no longer
    // lists this host (or lists hosts now) is gone as it was named.
    match on {
        Some(host) if kedge.hosts.iter().any(|h| h == host) => kedge.host = host.to_string(),
        None if kedge.hosts.is_empty() => {}
        _ => return Err(StackOfError::Gone(name.to_string())),
    }
    Ok((kedge, decl))
}

/// A declared stack's settings: `defaults:` with the text of its own
/// `kedge.yaml` (in `path`) over them.
pub fn settings_of(
    defaults: Option<&Node>,
    own: Option<&str>,
    path: &str,
    env: Env<'_>,
) -> Result<KedgeYaml, StackOfError> {
    let shown = Path::new(path)
        .join(FILE_NAME)
        .to_string_lossy()
        .into_owned();
    let own = match own {
        Some(text) => Some(yaml::parse(text).map_err(|e| StackOfError::Invalid {
            file: shown.clone(),
            source: e.into(),
        })?),
        None => None,
    };
    if let Some(own) = &own {
        // Its own keys checked alone, so that an error names its file.
        kedge_yaml::from_node(own, env, "").map_err(|source| StackOfError::Invalid {
            file: shown.clone(),
            source,
        })?;
    }
    let merged = layout::merged(defaults, own.as_ref());
    kedge_yaml::from_node(&merged, env, "").map_err(|source| StackOfError::Invalid {
        file: shown,
        source,
    })
}

fn read(checkout: &Path, rel: &Path) -> Result<Option<String>, StackOfError> {
    let Some(bytes) = contained::read(checkout, rel, MAX_SIZE).map_err(KedgeYamlError::from)?
    else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| StackOfError::Read(KedgeYamlError::NotText))
}
