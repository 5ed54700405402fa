//! Kedge: a GitOps controller for Docker Compose.
//!
//! The flow, one module per stage: `source` (git) → `desired` (compose
//! render) → `observe` (engine) → `plan` → `apply` → `record` (store),
//! driven by `controller` and exposed by `cli`.

pub mod apply;
pub mod cli;
pub mod config;
pub mod desired;
pub mod process;
pub mod record;
pub mod source;
