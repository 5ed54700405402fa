//! registry: image registries over the OCI distribution API — what tags a
//! repository has and which digest a tag points at — for image update
//! checks (fleet.md §3). Read only; pulls stay compose's.

pub mod client;
pub mod reference;

pub use client::{Client, Login, RegistryError};
pub use reference::Reference;
