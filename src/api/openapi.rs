//! api: the OpenAPI 3.1 document of the HTTP surface, generated from the
//! handlers' `#[utoipa::path]` attributes and the reports' `ToSchema`
//! derives, never written by hand. Served at `GET /api/v1/openapi.json`,
//! which needs a token like every route under `/api/v1`.

use std::sync::OnceLock;

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

use super::{routes, stream};
use crate::ops::Role;

/// The name of the bearer token scheme in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kedge",
        description = "GitOps controller for Docker Compose: the HTTP API of `kedge serve`. \
            Every route under /api/v1 needs `Authorization: Bearer TOKEN` \
            (`kedge token create NAME [--role read|deploy|admin]`); a read token may GET, \
            a deploy token may also sync and roll back, an admin token may also add and \
            remove repositories. Errors are `{\"error\": \"...\"}`."
    ),
    paths(
        routes::healthz,
        routes::readyz,
        routes::list_repos,
        routes::add_repo,
        routes::repo_status,
        routes::remove_repo,
        routes::history,
        routes::list_stacks,
        routes::diff,
        routes::sync,
        routes::rollback,
        routes::events,
        routes::updates,
        super::stacks::status,
        super::stacks::history,
        super::stacks::diff,
        super::stacks::sync,
        super::stacks::rollback,
        stream::events_stream,
        serve_document,
    ),
    components(schemas(super::ErrorBody)),
    tags(
        (name = "health", description = "Liveness and readiness, without a token"),
        (name = "repos", description = "Registered repositories: `kedge repo`, `status`, `history`, `diff`"),
        (name = "deployments", description = "`kedge sync` and `kedge rollback`"),
        (name = "stacks", description = "One stack of a repository that declares several"),
        (name = "events", description = "The event log, as pages or as a stream"),
        (name = "updates", description = "Image update findings: `kedge updates`"),
        (name = "meta", description = "This document"),
    )
)]
struct KedgeApi;

/// The other faces of `serve`, each describing its own routes with a
/// `#[derive(OpenApi)]` beside its handlers, merged into the document
/// here: `/metrics` (Prometheus text, no token) and `/hooks/*` (git
/// webhooks, signed instead of token-protected) belong in this list.
const FACES: &[fn() -> utoipa::openapi::OpenApi] = &[];

/// The whole document: the routes above, the other faces' and, for every
/// route under `/api/v1`, the bearer scheme and the answers `auth.rs` and
/// the body limit give (401, 403 above `read`, 413 with a body, 500).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = KedgeApi::openapi();
    for face in FACES {
        doc.merge(face());
    }
    describe_auth(&mut doc);
    doc
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)))]
pub async fn serve_document() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| document().to_json().unwrap_or_default());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json.clone(),
    )
        .into_response()
}

fn describe_auth(doc: &mut utoipa::openapi::OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "A token from `kedge token create NAME [--role read|deploy|admin]`",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/api/v1/") {
            continue;
        }
        let operations = [
            (&mut item.get, Method::GET),
            (&mut item.head, Method::HEAD),
            (&mut item.post, Method::POST),
            (&mut item.put, Method::PUT),
            (&mut item.patch, Method::PATCH),
            (&mut item.delete, Method::DELETE),
        ];
        for (operation, method) in operations {
            if let Some(operation) = operation {
                protect(operation, super::auth::role_for(&method, path));
            }
        }
    }
}

fn protect(operation: &mut Operation, needs: Role) {
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let mut answer = |status: &str, description: &str| {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(error_response(description)));
    };
    answer("401", "no token, or an unknown or revoked one");
    match needs {
        Role::Read => {}
        Role::Deploy => answer("403", "a read token: this needs a deploy or admin token"),
        Role::Admin => answer("403", "a read or deploy token: this needs an admin token"),
    }
    if operation.request_body.is_some() {
        answer("413", "the body is larger than 1 MiB");
    }
    answer("500", "Kedge itself failed (the store, the engine, git)");
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json() -> serde_json::Value {
        serde_json::from_str(&document().to_json().unwrap()).unwrap()
    }

    #[test]
    fn every_route_is_described() {
        let doc = json();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "/api/v1/events",
                "/api/v1/events/stream",
                "/api/v1/openapi.json",
                "/api/v1/repos",
                "/api/v1/repos/{name}",
                "/api/v1/repos/{name}/diff",
                "/api/v1/repos/{name}/history",
                "/api/v1/repos/{name}/rollback",
                "/api/v1/repos/{name}/stacks",
                "/api/v1/repos/{name}/sync",
                "/api/v1/stacks/{repo}/{stack}/diff",
                "/api/v1/stacks/{repo}/{stack}/history",
                "/api/v1/stacks/{repo}/{stack}/rollback",
                "/api/v1/stacks/{repo}/{stack}/status",
                "/api/v1/stacks/{repo}/{stack}/sync",
                "/api/v1/updates",
                "/healthz",
                "/readyz",
            ]
        );
    }

    #[test]
    fn api_routes_need_a_token_and_say_what_refusals_look_like() {
        let doc = json();
        assert_eq!(
            doc["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                if !path.starts_with("/api/v1/") {
                    assert!(op.get("security").is_none(), "{method} {path}");
                    continue;
                }
                assert_eq!(op["security"][0][BEARER], serde_json::json!([]));
                assert!(responses.contains_key("401"), "{method} {path}");
                assert_eq!(responses.contains_key("403"), method != "get");
                assert_eq!(
                    responses.contains_key("413"),
                    op.get("requestBody").is_some(),
                    "{method} {path}"
                );
            }
        }
    }

    /// Every `$ref` points at a schema the document holds.
    #[test]
    fn every_reference_resolves() {
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let doc = json();
        let mut refs = Vec::new();
        walk(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} is missing"
            );
        }
    }
}
