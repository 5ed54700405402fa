//! source: repository addresses, names and branches; the forms are value
//! types of `model`, kept here under their old name for git's callers.

pub use crate::model::url::*;
