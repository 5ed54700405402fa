//! desired: what Git says should run. Stage two of the flow
//! (source → **desired** → observe → plan → apply → record).

pub mod contained;
pub mod images;
pub mod inputs;
pub mod kedge_yaml;
pub mod layout;
pub mod profiles;
pub mod render;
pub mod secrets;
pub mod services_named;
pub mod specs;
pub mod stack_inputs;
pub mod stack_of;
pub mod updates;
pub mod webhook_refs;
