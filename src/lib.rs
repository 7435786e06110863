//! Kalandra mirrors git repositories from upstream to downstream servers
//! without keeping a copy of either.
#![forbid(unsafe_code)]

pub mod oid;
pub mod wire;
