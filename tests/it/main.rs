//! The one integration-test binary: the `kedge` binary driven as a user
//! would, against real git remotes, a real SQLite file and the real engine.

mod support;

mod build;
mod drift;
mod events;
mod harness;
mod metrics;
mod remote;
mod render;
mod repo;
mod rollback;
mod serve;
