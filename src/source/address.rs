//! source: what a repository's address says beyond its form; a value
//! type of `model`, kept here under its old name for git's callers.

pub use crate::model::address::*;
