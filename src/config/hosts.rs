//! config: the Docker hosts Kedge deploys to (`hosts:`, fleet.md §4) —
//! each an engine endpoint: `unix://` on this machine, `ssh://` with a
//! key and a pinned host key, `tcp://` with TLS. `local` is implicit.

use std::path::PathBuf;

use super::interpolate::Env;
use super::schema::{SchemaError, Section};

/// The implicit host: this machine's engine.
pub const LOCAL: &str = "local";

/// One `hosts:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    pub endpoint: Endpoint,
}

/// How a host's engine is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        /// The private key (`ssh_key`); without it, none is offered.
        key: Option<PathBuf>,
        /// The host keys to accept (`ssh_known_hosts`); without it, the
        /// key seen first is recorded and then required.
        known_hosts: Option<PathBuf>,
    },
    Tcp {
        /// `host:port`.
        addr: String,
        tls: Tls,
    },
}

/// A TCP endpoint's certificates: the CA that signs the engine's, and the
/// client's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Endpoint {
    /// As `DOCKER_HOST` names it, without secrets (a key is a path).
    pub fn docker_host(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix://{}", path.display()),
            Endpoint::Ssh {
                user, host, port, ..
            } => format!(
                "ssh://{}{host}{}",
                user.as_ref().map(|u| format!("{u}@")).unwrap_or_default(),
                port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            Endpoint::Tcp { addr, .. } => format!("tcp://{addr}"),
        }
    }
}

impl Host {
    /// The implicit `local`: the engine `DOCKER_HOST` names, or the
    /// default socket.
    pub fn local() -> Host {
        Host {
            name: LOCAL.to_string(),
            endpoint: Endpoint::Unix(PathBuf::from("/var/run/docker.sock")),
        }
    }
}

/// A host name: what `target: {host: …}`, `REPO/STACK@HOST` and metrics
/// labels carry.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `ssh://[user@]host[:port]`, `tcp://host:port` or `unix:///path`.
fn parse_docker_host(s: &str) -> Result<(&str, &str), String> {
    let expected = || {
        "ssh://[user@]host[:port], tcp://host:port (with tls:) or unix:///path/to/docker.sock"
            .to_string()
    };
    let (scheme, rest) = s.split_once("://").ok_or_else(expected)?;
    if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(expected());
    }
    match scheme {
        "ssh" | "tcp" | "unix" => Ok((scheme, rest)),
        _ => Err(expected()),
    }
}

/// Reads the `hosts:` map of the global config.
pub fn parse(top: &Section, env: Env) -> Result<Vec<Host>, SchemaError> {
    let mut out = Vec::new();
    let Some(entries) = top.section_any("hosts")? else {
        return Ok(out);
    };
    for (name, node) in entries {
        let s = Section::new(
            node,
            &top.key_path(&format!("hosts.{name}")),
            &["docker_host", "ssh_key", "ssh_known_hosts", "tls"],
        )?;
        let invalid = |key: &str, value: &str, expected: &str| SchemaError::InvalidValue {
            line: node.line,
            key: s.key_path(key),
            value: value.to_string(),
            expected: expected.to_string(),
        };
        if !valid_name(name) {
            return Err(SchemaError::InvalidValue {
                line: node.line,
                key: top.key_path("hosts"),
                value: name.to_string(),
                expected: "a host name of lowercase letters, digits, `-` and `_` (at most 32)"
                    .into(),
            });
        }
        let docker_host = s.required("docker_host", node.line, env)?;
        let (scheme, rest) = parse_docker_host(&docker_host)
            .map_err(|e| invalid("docker_host", &docker_host, &e))?;
        let path = |key: &str| -> Result<Option<PathBuf>, SchemaError> {
            Ok(s.string(key, env)?.map(|(p, _)| PathBuf::from(p)))
        };
        let ssh_key = path("ssh_key")?;
        let known_hosts = path("ssh_known_hosts")?;
        let tls = s.section("tls", &["ca", "cert", "key"])?;
        if scheme != "ssh" && (ssh_key.is_some() || known_hosts.is_some()) {
            return Err(invalid(
                "ssh_key",
                &docker_host,
                "ssh_key and ssh_known_hosts only with an ssh:// docker_host",
            ));
        }
        let endpoint = match scheme {
            "unix" => {
                if tls.is_some() {
                    return Err(invalid(
                        "tls",
                        &docker_host,
                        "tls only with a tcp:// docker_host",
                    ));
                }
                Endpoint::Unix(PathBuf::from(rest))
            }
            "ssh" => {
                if tls.is_some() {
                    return Err(invalid(
                        "tls",
                        &docker_host,
                        "tls only with a tcp:// docker_host",
                    ));
                }
                let (user, hostport) = match rest.rsplit_once('@') {
                    Some((u, h)) => (Some(u.to_string()), h),
                    None => (None, rest),
                };
                let (host, port) = split_port(hostport).ok_or_else(|| {
                    invalid("docker_host", &docker_host, "ssh://[user@]host[:port]")
                })?;
                if user
                    .as_deref()
                    .is_some_and(|u| u.is_empty() || u.starts_with('-') || u.contains([':', '/']))
                    || host.starts_with('-')
                    || host.contains('/')
                {
                    return Err(invalid(
                        "docker_host",
                        &docker_host,
                        "ssh://[user@]host[:port]",
                    ));
                }
                Endpoint::Ssh {
                    user,
                    host: host.to_string(),
                    port,
                    key: ssh_key,
                    known_hosts,
                }
            }
            _ => {
                let Some(tls) = tls else {
                    return Err(SchemaError::Missing {
                        line: node.line,
                        key: s.key_path("tls"),
                    });
                };
                let file = |key: &str| -> Result<PathBuf, SchemaError> {
                    Ok(PathBuf::from(tls.required(key, node.line, env)?))
                };
                let addr = rest.trim_end_matches('/');
                if !matches!(split_port(addr), Some((_, Some(_)))) {
                    return Err(invalid("docker_host", &docker_host, "tcp://host:port"));
                }
                Endpoint::Tcp {
                    addr: addr.to_string(),
                    tls: Tls {
                        ca: file("ca")?,
                        cert: file("cert")?,
                        key: file("key")?,
                    },
                }
            }
        };
        out.push(Host {
            name: name.to_string(),
            endpoint,
        });
    }
    Ok(out)
}

/// `host[:port]` (`[v6]:port` too).
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.contains(':') => Some((h, Some(p.parse().ok()?))),
        Some(_) => None,
        None if !s.is_empty() => Some((s, None)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Host>, String> {
        super::super::parse_file(text, &|_: &str| None)
            .map(|c| c.hosts)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_read_with_their_endpoints() {
        let hosts = parse(
            "hosts:\n  nas:\n    docker_host: ssh://deploy@nas.lan:2222\n    ssh_key: /etc/kedge/nas_key\n    ssh_known_hosts: /etc/kedge/known_hosts\n  edge1:\n    docker_host: tcp://10.0.0.5:2376\n    tls: {ca: /c/ca.pem, cert: /c/cert.pem, key: /c/key.pem}\n  local:\n    docker_host: unix:///var/run/docker.sock\n",
        )
        .unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(
            hosts[0],
            Host {
                name: "nas".into(),
                endpoint: Endpoint::Ssh {
                    user: Some("deploy".into()),
                    host: "nas.lan".into(),
                    port: Some(2222),
                    key: Some("/etc/kedge/nas_key".into()),
                    known_hosts: Some("/etc/kedge/known_hosts".into()),
                }
            }
        );
        assert_eq!(hosts[0].endpoint.docker_host(), "ssh://deploy@nas.lan:2222");
        assert_eq!(hosts[1].endpoint.docker_host(), "tcp://10.0.0.5:2376");
        assert!(
            matches!(&hosts[2].endpoint, Endpoint::Unix(p) if p.to_str() == Some("/var/run/docker.sock"))
        );
        assert_eq!(parse("log:\n  level: info\n").unwrap(), vec![]);
    }

    #[test]
    fn bad_hosts_are_refused_with_the_key_and_the_line() {
        let cases = [
            (
                "hosts:\n  nas:\n    docker_host: http://nas\n",
                "expected ssh://[user@]host[:port], tcp://host:port (with tls:) or unix:///path/to/docker.sock",
            ),
            (
                "hosts:\n  edge:\n    docker_host: tcp://10.0.0.5:2376\n",
                "`hosts.edge.tls` is required",
            ),
            (
                "hosts:\n  edge:\n    docker_host: tcp://10.0.0.5\n    tls: {ca: a, cert: b, key: c}\n",
                "expected tcp://host:port",
            ),
            (
                "hosts:\n  Nas:\n    docker_host: ssh://nas\n",
                "a host name of lowercase letters",
            ),
            (
                "hosts:\n  nas:\n    docker_host: ssh://-oProxyCommand=x\n",
                "expected ssh://[user@]host[:port]",
            ),
            (
                "hosts:\n  nas:\n    docker_host: unix:///run/d.sock\n    ssh_key: /k\n",
                "only with an ssh:// docker_host",
            ),
            (
                "hosts:\n  nas:\n    ssh_key: /k\n",
                "`hosts.nas.docker_host` is required",
            ),
            (
                "hosts:\n  nas:\n    docker_host: ssh://nas\n    port: 22\n",
                "unknown key `hosts.nas.port`",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
