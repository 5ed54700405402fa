//! apply: a rendered compose file as `docker stack deploy` takes it
//! (`docker.target: swarm`). Pure. What Swarm cannot express is refused
//! with the service and the key; what it spells differently is translated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::ApplyError;
use crate::process::Cmd;

use crate::observe::{KEDGE_COMMIT, KEDGE_MANAGED, KEDGE_PROJECT, KEDGE_SERVICE};

/// The compose file format `docker stack deploy` reads.
const STACK_VERSION: &str = "3.9";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackError {
    #[error("the rendered compose file is not JSON: {0}")]
    NotJson(String),
    #[error("service {service}: `{key}` cannot be deployed to a Swarm ({why})")]
    Unsupported {
        service: String,
        key: &'static str,
        why: &'static str,
    },
}

/// Compose's `restart` → Swarm's `deploy.restart_policy.condition`.
fn restart_condition(restart: &str) -> &'static str {
    match restart {
        "no" => "none",
        r if r.starts_with("on-failure") => "on-failure",
        _ => "any",
    }
}

/// Converts `docker compose config --format json` output into a stack
/// file; `commits` gives each service the commit that last changed it
/// (Kedge's labels go on the service, as `deploy.labels`).
pub fn stack_file(
    rendered: &str,
    project: &str,
    commits: &BTreeMap<String, String>,
) -> Result<String, StackError> {
    let mut doc: Map<String, Value> = match serde_json::from_str(rendered) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(StackError::NotJson("not an object".into())),
        Err(e) => return Err(StackError::NotJson(e.to_string())),
    };
    doc.remove("name");
    doc.insert("version".into(), json!(STACK_VERSION));
    if let Some(Value::Object(services)) = doc.get_mut("services") {
        for (name, service) in services.iter_mut() {
            let Value::Object(service) = service else {
                continue;
            };
            convert_service(name, service)?;
            let deploy = service
                .entry("deploy")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("deploy is a mapping");
            let labels = deploy
                .entry("labels")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("labels are a mapping");
            labels.insert(KEDGE_MANAGED.into(), json!("true"));
            labels.insert(KEDGE_PROJECT.into(), json!(project));
            labels.insert(KEDGE_SERVICE.into(), json!(name));
            if let Some(commit) = commits.get(name) {
                labels.insert(KEDGE_COMMIT.into(), json!(commit));
            }
        }
    }
    Ok(serde_json::to_string_pretty(&Value::Object(doc)).expect("JSON serialises"))
}

/// Writes the stack file (atomically: a deploy never reads half a file),
/// on the blocking pool.
pub async fn write(path: &Path, content: &str) -> Result<(), ApplyError> {
    let err = |source| ApplyError::StackFile {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, content).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)
}

/// `docker stack deploy --with-registry-auth [--prune] -c FILE PROJECT` on
/// the Swarm of the engine Kedge talks to (`DOCKER_HOST`): Swarm updates
/// the services whose spec changed, honouring their `update_config`.
pub async fn deploy(
    project: &str,
    file: &Path,
    prune: bool,
    docker_config: Option<PathBuf>,
    docker_host: Option<&Path>,
) -> Result<(), ApplyError> {
    let mut cmd = crate::compose::reaching(Cmd::new("docker"), docker_host);
    if let Some(dir) = docker_config {
        cmd = cmd.env("DOCKER_CONFIG", dir);
    }
    cmd = cmd.args(["stack", "deploy", "--with-registry-auth"]);
    if prune {
        cmd = cmd.arg("--prune");
    }
    cmd.arg("-c")
        .arg(file)
        .arg(project)
        .timeout(crate::compose::APPLY_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::StackDeploy {
            project: project.to_string(),
            source: e.into(),
        })
}

/// `docker stack rm PROJECT` (`repo remove --down` of a Swarm stack): Swarm
/// removes its services, networks, configs and secrets; volumes are kept.
pub async fn remove(
    project: &str,
    lock_fd: Option<std::os::fd::RawFd>,
    docker_host: Option<&Path>,
) -> Result<(), ApplyError> {
    crate::compose::reaching(Cmd::new("docker"), docker_host)
        .args(["stack", "rm", project])
        .keep_open(lock_fd)
        .timeout(crate::compose::APPLY_TIMEOUT)
        .run()
        .await
        .map(drop)
        .map_err(|e| ApplyError::Down {
            project: project.to_string(),
            source: e.into(),
        })
}

fn convert_service(name: &str, service: &mut Map<String, Value>) -> Result<(), StackError> {
    let refuse = |key: &'static str, why: &'static str| StackError::Unsupported {
        service: name.to_string(),
        key,
        why,
    };
    if service.contains_key("build") {
        return Err(refuse(
            "build",
            "a Swarm runs images from a registry: build and push the image, then name it in `image`",
        ));
    }
    if !service.get("image").is_some_and(Value::is_string) {
        return Err(refuse("image", "every service of a stack needs an image"));
    }
    if service.get("network_mode").and_then(Value::as_str) == Some("host") {
        return Err(refuse(
            "network_mode",
            "use `networks: [host]` with an external host network instead",
        ));
    }
    // Compose's own keys Swarm ignores or refuses, with no meaning there.
    for key in ["container_name", "pull_policy", "profiles", "scale"] {
        service.remove(key);
    }
    // `null` where compose means "the image's own".
    service.retain(|_, v| !v.is_null());
    if let Some(Value::String(restart)) = service.remove("restart") {
        let deploy = service
            .entry("deploy")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("deploy is a mapping");
        deploy
            .entry("restart_policy")
            .or_insert_with(|| json!({ "condition": restart_condition(&restart) }));
    }
    // depends_on: { db: { condition, required } } → [db] (Swarm starts
    // services independently and ignores it).
    if let Some(Value::Object(deps)) = service.get("depends_on") {
        let names: Vec<Value> = deps.keys().map(|k| json!(k)).collect();
        service.insert("depends_on".into(), Value::Array(names));
    }
    // Published ports are numbers in the stack format, text in compose's.
    if let Some(Value::Array(ports)) = service.get_mut("ports") {
        for port in ports.iter_mut() {
            if let Some(Value::String(p)) = port.get("published")
                && let Ok(n) = p.parse::<u64>()
            {
                port["published"] = json!(n);
            }
        }
    }
    // Bind mounts: compose's `create_host_path` has no stack equivalent.
    if let Some(Value::Array(volumes)) = service.get_mut("volumes") {
        for volume in volumes.iter_mut() {
            if let Some(Value::Object(bind)) = volume.get_mut("bind") {
                bind.remove("create_host_path");
                if bind.is_empty() {
                    volume.as_object_mut().map(|v| v.remove("bind"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(services: Value) -> Result<Value, StackError> {
        let rendered = json!({"name": "app", "services": services}).to_string();
        let commits = BTreeMap::from([("web".to_string(), "c1".to_string())]);
        stack_file(&rendered, "app", &commits).map(|s| serde_json::from_str(&s).unwrap())
    }

    #[test]
    fn a_rendered_file_becomes_a_stack_file() {
        let out = convert(json!({
            "web": {
                "image": "registry.example.com/web:2",
                "command": ["serve"],
                "entrypoint": null,
                "container_name": "web",
                "restart": "unless-stopped",
                "depends_on": {"db": {"condition": "service_healthy", "required": true}},
                "ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}],
                "volumes": [{"type": "bind", "source": "/srv", "target": "/srv", "bind": {"create_host_path": true}}],
                "deploy": {"replicas": 3, "update_config": {"parallelism": 1}},
            },
            "db": {"image": "db:1", "restart": "no", "pull_policy": "always"},
        }))
        .unwrap();
        assert_eq!(out["version"], "3.9");
        assert!(out.get("name").is_none());
        let web = &out["services"]["web"];
        assert!(web.get("entrypoint").is_none() && web.get("container_name").is_none());
        assert_eq!(web["deploy"]["restart_policy"]["condition"], "any");
        assert_eq!(web["deploy"]["replicas"], 3);
        assert_eq!(web["deploy"]["update_config"]["parallelism"], 1);
        assert_eq!(web["depends_on"], json!(["db"]));
        assert_eq!(web["ports"][0]["published"], 8080);
        assert!(web["volumes"][0].get("bind").is_none());
        assert_eq!(web["deploy"]["labels"]["io.kedge.managed"], "true");
        assert_eq!(web["deploy"]["labels"]["io.kedge.project"], "app");
        assert_eq!(web["deploy"]["labels"]["io.kedge.service"], "web");
        assert_eq!(web["deploy"]["labels"]["io.kedge.commit"], "c1");
        let db = &out["services"]["db"];
        assert_eq!(db["deploy"]["restart_policy"]["condition"], "none");
        assert!(db.get("pull_policy").is_none());
        assert!(db["deploy"]["labels"].get("io.kedge.commit").is_none());
    }

    #[test]
    fn what_swarm_cannot_express_is_refused_by_name() {
        for (service, want) in [
            (
                json!({"web": {"build": {"context": "."}, "image": "x"}}),
                "service web: `build` cannot be deployed to a Swarm",
            ),
            (
                json!({"web": {"command": ["x"]}}),
                "service web: `image` cannot be deployed to a Swarm",
            ),
            (
                json!({"web": {"image": "x", "network_mode": "host"}}),
                "service web: `network_mode` cannot be deployed to a Swarm",
            ),
        ] {
            let got = convert(service).unwrap_err().to_string();
            assert!(got.starts_with(want), "{got}");
        }
        assert!(matches!(
            stack_file("[1]", "p", &BTreeMap::new()),
            Err(StackError::NotJson(_))
        ));
    }

    #[test]
    fn a_restart_policy_of_its_own_wins() {
        let out = convert(json!({"web": {
            "image": "x",
            "restart": "always",
            "deploy": {"restart_policy": {"condition": "on-failure", "max_attempts": 3}},
        }}))
        .unwrap();
        assert_eq!(
            out["services"]["web"]["deploy"]["restart_policy"],
            json!({"condition": "on-failure", "max_attempts": 3})
        );
    }
}
