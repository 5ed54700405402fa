//! Kedge: a GitOps controller for Docker Compose.
//!
//! The flow, one module per stage: `source` (git) → `desired` (compose
//! render) → `observe` (engine) → `plan` → `apply` → `record` (store),
//! driven by `controller`; `notify` follows the event log to the
//! configured sinks; `ops` holds one function per user action, which
//! the faces (`cli`, the HTTP `api` and the `web` dashboard) call.

pub mod api;
pub mod apply;
pub mod cli;
pub mod compose;
pub mod config;
pub mod controller;
pub mod desired;
pub mod events;
pub mod http;
#[cfg(test)]
mod layering;
pub mod model;
pub mod notify;
pub mod observe;
pub mod ops;
pub mod outbound;
pub mod plan;
pub mod process;
pub mod record;
pub mod registry;
pub mod source;
pub mod target;
pub mod time;
pub mod web;

/// An error and all its sources on one line: what history records and
/// `status` shows.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The seven-character form people read.
pub fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}
