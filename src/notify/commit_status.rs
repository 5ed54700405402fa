//! notify: commit statuses (fleet.md §5). Each `commit_status:` target is
//! a task of `serve` that follows the stored event log with a cursor of its
//! own, as a notification sink does: a deployment's start is `pending` on
//! its commit, its end `success` or `failure`, with the stack as context.
//! Nothing here is on a deploy's path. A status is retried until the API
//! takes it (an outage is said once, its end once); the cursor moves past
//! it only then, so a restart sends neither a status twice nor one less.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::NotifyError;
use super::follow::on;
use super::send::Redactor;
use crate::config::commit_status::{Provider, StatusTarget};
use crate::controller::hub::Hub;
use crate::error_chain;
use crate::events::{Event, EventKind};
use crate::record::Store;

/// One attempt, connection to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a failed attempt: doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STORE_RETRY: Duration = Duration::from_secs(5);

/// A deployment's state as a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Success,
    Failure,
}

/// What an event says of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub repo: String,
    pub stack: Option<String>,
    pub commit: String,
    pub state: State,
    pub description: String,
}

impl Update {
    /// `kedge/STACK` (the repository's name for its own stack).
    pub fn context(&self) -> String {
        format!("kedge/{}", self.stack.as_deref().unwrap_or(&self.repo))
    }

    /// How the dashboard addresses the stack.
    fn address(&self) -> String {
        match &self.stack {
            Some(stack) => format!("{}/{stack}", self.repo),
            None => self.repo.clone(),
        }
    }
}

/// The status an event reports, if any: a deployment's start, success,
/// failure, and a `kedge rollback` that deployed a commit again. The
/// automatic restore after a failure and an image update deployed without
/// a commit report nothing on the commit (the failed commit says failure).
pub fn update_of(e: &Event) -> Option<Update> {
    let commit = e.commit.clone()?;
    let trigger = e.fields.get("trigger").and_then(|t| t.as_str());
    if matches!(trigger, Some("auto_rollback" | "image_update")) {
        return None;
    }
    let (state, description) = match e.kind {
        EventKind::DeployStarted => (State::Pending, "deploying".to_string()),
        EventKind::DeploySucceeded => (
            State::Success,
            match e.fields.get("duration_ms").and_then(|d| d.as_f64()) {
                Some(ms) => format!("deployed in {:.1} s", ms / 1000.0),
                None => "deployed".into(),
            },
        ),
        EventKind::RolledBack if trigger == Some("rollback") => {
            (State::Success, "deployed again by kedge rollback".into())
        }
        EventKind::DeployFailed => (State::Failure, e.message.clone()),
        _ => return None,
    };
    Some(Update {
        repo: e.repo.clone(),
        stack: e.stack.clone(),
        commit,
        state,
        description: super::message::cut(description.lines().next().unwrap_or_default(), 140),
    })
}

/// The repository's path on its host, from its registered address
/// (`https://github.com/acme/app.git`, `git@host:acme/app.git`): the
/// owner and name for GitHub, Gitea and Bitbucket, the whole path
/// (groups included) for GitLab.
pub fn repo_path(provider: Provider, address: &str) -> Option<String> {
    let path = match url::Url::parse(address) {
        Ok(u) if u.has_host() || u.scheme() == "file" => u.path().to_string(),
        // scp-like: user@host:path
        _ => address.split_once(':').map(|(_, p)| p.to_string())?,
    };
    let path = path.trim_matches('/').trim_end_matches(".git");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() < 2 {
        return None;
    }
    Some(match provider {
        Provider::GitLab => parts.join("/"),
        _ => parts[parts.len() - 2..].join("/"),
    })
}

/// A status request, without its token: the URL, the headers besides
/// authentication, the JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: serde_json::Value,
}

/// The request each provider's API documents for a commit status:
/// GitHub REST (2022-11-28), GitLab REST v4, Gitea/Forgejo API v1,
/// Bitbucket Cloud REST 2.0.
pub fn request(target: &StatusTarget, path: &str, u: &Update, link: Option<&str>) -> StatusRequest {
    let api = &target.api_url;
    let mut headers = vec![("Content-Type", "application/json".to_string())];
    let (url, body) = match target.provider {
        Provider::GitHub | Provider::Gitea => {
            let state = match u.state {
                State::Pending => "pending",
                State::Success => "success",
                State::Failure => "failure",
            };
            if target.provider == Provider::GitHub {
                headers.push(("Accept", "application/vnd.github+json".into()));
                headers.push(("X-GitHub-Api-Version", "2022-11-28".into()));
            } else {
                headers.push(("Accept", "application/json".into()));
            }
            let mut body = json!({
                "state": state,
                "context": u.context(),
                "description": u.description,
            });
            if let Some(link) = link {
                body["target_url"] = json!(link);
            }
            (format!("{api}/repos/{path}/statuses/{}", u.commit), body)
        }
        Provider::GitLab => {
            let state = match u.state {
                State::Pending => "pending",
                State::Success => "success",
                State::Failure => "failed",
            };
            headers.push(("Accept", "application/json".into()));
            let mut body = json!({
                "state": state,
                "name": u.context(),
                "description": u.description,
            });
            if let Some(link) = link {
                body["target_url"] = json!(link);
            }
            let id = url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>();
            (format!("{api}/projects/{id}/statuses/{}", u.commit), body)
        }
        Provider::Bitbucket => {
            let state = match u.state {
                State::Pending => "INPROGRESS",
                State::Success => "SUCCESSFUL",
                State::Failure => "FAILED",
            };
            headers.push(("Accept", "application/json".into()));
            // `url` is required: the dashboard, else the commit's own page.
            let link = link
                .map(String::from)
                .unwrap_or_else(|| format!("https://bitbucket.org/{path}/commits/{}", u.commit));
            let body = json!({
                "key": bitbucket_key(&u.context()),
                "state": state,
                "name": u.context(),
                "url": link,
                "description": u.description,
            });
            (
                format!(
                    "{api}/repositories/{path}/commit/{}/statuses/build",
                    u.commit
                ),
                body,
            )
        }
    };
    StatusRequest { url, headers, body }
}

/// The stack's dashboard page under `public_url`.
fn dashboard_link(public_url: Option<&str>, u: &Update) -> Option<String> {
    let segment = crate::model::address::path_segment(&u.address());
    public_url.map(|base| format!("{base}/repos/{segment}"))
}

/// Bitbucket's status key: at most 40 characters, unique per stack.
fn bitbucket_key(context: &str) -> String {
    let key = context.replace('/', "-");
    if key.len() <= 40 {
        return key;
    }
    let digest = crate::model::digest::sha256_hex(key.as_bytes());
    format!("{}-{}", &key[..31], &digest[..8])
}

/// The authentication header each provider documents for a token.
fn auth(provider: Provider, token: &str) -> (&'static str, String) {
    match provider {
        Provider::GitHub | Provider::Bitbucket => ("Authorization", format!("Bearer {token}")),
        Provider::GitLab => ("PRIVATE-TOKEN", token.to_string()),
        Provider::Gitea => ("Authorization", format!("token {token}")),
    }
}

/// The cursor name of a target in the event log (beside the sinks').
fn cursor_name(target: &StatusTarget) -> String {
    format!("commit_status:{}", target.name)
}

/// Starts one task per target; `serve` calls this once.
pub fn start(
    targets: &[StatusTarget],
    data_dir: &std::path::Path,
    public_url: Option<String>,
    hub: &Arc<Hub>,
) {
    if targets.is_empty() {
        return;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(targets = %names.join(", "), "commit statuses on");
    for target in targets {
        // Said at start; each status reads the file again, so fixing it
        // needs no restart.
        if let Err(e) = crate::config::read_private_secret_file(&target.token_file) {
            tracing::error!(target = %target.name, "commit statuses: token_file: {}", error_chain(&e));
        }
        for result in ["success", "failure"] {
            hub.count_notification(&cursor_name(target), result, 0);
        }
        let prepared = super::follow::prepare(data_dir, &cursor_name(target)).ok();
        tokio::spawn(run(
            data_dir.to_path_buf(),
            hub.clone(),
            target.clone(),
            public_url.clone(),
            prepared,
        ));
    }
}

async fn run(
    data_dir: PathBuf,
    hub: Arc<Hub>,
    target: StatusTarget,
    public_url: Option<String>,
    prepared: Option<(Store, i64)>,
) {
    let name = cursor_name(&target);
    let mut wake = hub.subscribe();
    let (store, mut cursor) = super::follow::opened(&data_dir, &name, prepared).await;
    let store = Arc::new(Mutex::new(store));
    let poster = Poster::new(target, public_url);
    while let Some(page) = super::follow::next_page(&store, cursor, &mut wake, &name).await {
        for event in page {
            if let Some(update) = update_of(&event).filter(|u| poster.target.serves(&u.repo)) {
                let result = poster.deliver(&store, &update).await;
                hub.count_notification(&name, result, 1);
            }
            let (id, cursor_of) = (event.id, name.clone());
            match on(&store, move |s| s.notify_advance(&cursor_of, id, None)).await {
                Ok(()) => cursor = event.id,
                Err(e) => {
                    tracing::warn!(target = %poster.target.name, event = event.id, "cannot record a commit status: {}", error_chain(&e));
                    tokio::time::sleep(STORE_RETRY).await;
                    break;
                }
            }
        }
    }
}

/// Posts one target's statuses.
struct Poster {
    target: StatusTarget,
    public_url: Option<String>,
    agent: ureq::Agent,
}

impl Poster {
    fn new(target: StatusTarget, public_url: Option<String>) -> Poster {
        Poster {
            target,
            public_url,
            agent: crate::outbound::agent(TIMEOUT),
        }
    }

    /// Until the API takes it, or says it never will: `success` or
    /// `failure` (given up), for the counter.
    async fn deliver(&self, store: &Arc<Mutex<Store>>, u: &Update) -> &'static str {
        let name = &self.target.name;
        let repo = u.repo.clone();
        let address = match on(store, move |s| s.repo(&repo)).await {
            Ok(Some(r)) => r.url.expose().to_string(),
            _ => return "failure",
        };
        let Some(path) = repo_path(self.target.provider, &address) else {
            tracing::error!(target = %name, repo = %u.repo, "commit status not sent: no owner/name in the repository's address");
            return "failure";
        };
        let link = dashboard_link(self.public_url.as_deref(), u);
        let req = request(&self.target, &path, u, link.as_deref());
        let mut wait = FIRST_BACKOFF;
        let mut down = false;
        loop {
            match self.post(&req).await {
                Ok(status) => {
                    if down {
                        tracing::info!(target = %name, "the commit status API answers again");
                    }
                    tracing::info!(target = %name, repo = %u.repo, commit = crate::short(&u.commit), context = %u.context(), state = ?u.state, status, "commit status sent");
                    return "success";
                }
                Err(e) if e.retryable() => {
                    if !down {
                        tracing::warn!(target = %name, "the commit status API does not take statuses now ({e}): retrying until it does");
                        down = true;
                    } else {
                        tracing::debug!(target = %name, retry_in = ?wait, "commit status not sent yet: {e}");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(target = %name, repo = %u.repo, commit = crate::short(&u.commit), "commit status given up: {e}");
                    return "failure";
                }
            }
        }
    }

    /// One attempt: the answer's status code when 2xx.
    async fn post(&self, req: &StatusRequest) -> Result<u16, NotifyError> {
        let path = self.target.token_file.clone();
        let token =
            tokio::task::spawn_blocking(move || crate::config::read_private_secret_file(&path))
                .await
                .map_err(|e| NotifyError::Request(e.to_string()))?
                .map_err(|e| NotifyError::Request(format!("token_file: {}", error_chain(&e))))?;
        let redactor = Redactor::secrets(&[token.0.as_str()]);
        let (auth_name, auth_value) = auth(self.target.provider, &token.0);
        let mut builder = ureq::http::Request::builder().method("POST").uri(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        let request = builder
            .header(auth_name, auth_value)
            .body(req.body.to_string())
            .map_err(|e| NotifyError::Request(redactor.clean(&e.to_string())))?;
        let agent = self.agent.clone();
        tokio::task::spawn_blocking(move || {
            let mut response = agent
                .run(request)
                .map_err(|e| NotifyError::from_http(&e, &redactor))?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(status);
            }
            let body = response
                .body_mut()
                .with_config()
                .limit(1024)
                .read_to_string()
                .unwrap_or_default();
            Err(NotifyError::Status {
                status,
                body: redactor.clean(super::message::one_line(&body, 200).as_str()),
            })
        })
        .await
        .map_err(|e| NotifyError::Request(e.to_string()))?
    }
}

#[cfg(test)]
#[path = "commit_status_tests.rs"]
mod tests;
