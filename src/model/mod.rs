//! model: value types shared by the stages, so that `record` keeps them
//! without depending on the stage that makes them (`desired`, `source`).
//! No child process, no module past `config`.

pub mod address;
pub mod digest;
pub mod drift;
pub mod git_auth;
pub mod hooks;
pub mod report;
pub mod service;
pub mod settings;
pub mod stack_inputs;
pub mod updates;
pub mod url;
