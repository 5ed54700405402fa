//! The one integration-test binary: the `kedge` binary driven as a user
//! would, against real git remotes, a real SQLite file and the real engine.

mod support;

mod api;
mod api_fuzz;
mod api_input;
mod build;
mod closed_pipe;
mod commit_status;
mod compose_inputs;
mod creds;
mod dashboard;
mod day_two;
mod drift;
mod events;
mod first_run;
mod gate;
mod harness;
mod hooks;
mod hosts;
mod hosts_deploy;
mod image;
mod image_update;
mod metrics;
mod notify;
mod packaging;
mod private;
mod registry_client;
mod remote;
mod render;
mod repo;
mod rollback;
mod secrets;
mod serve;
mod sessions;
mod slow_clients;
mod sops;
mod sops_deploy;
mod sops_remote;
mod stack_inputs;
mod stacks;
mod store_lock;
mod swarm;
mod updates;
mod upgrade;
mod write_back;
