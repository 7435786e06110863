//! Forges' APIs, above the relay: credentials for `transport/http` and,
//! later, mirrors for `fleet/` (issue 13).
//!
//! - [`github_repo`]: a downstream repository through the API: created
//!   when missing (`create_missing`), its default branch kept on
//!   upstream's (`follow_head`).
//! - [`github_app`]: installation tokens of GitHub Apps, cached per
//!   installation for the whole process, sent as the http password.
//!   [`jwt`] signs the app's JWT, [`owners`] says which repositories an
//!   app serves, [`token_cache`] keeps the tokens.
//! - [`github_org`]: `[[github_org]]` discovery, one mirror per repository
//!   of an organisation whose property names its upstream.
//! - [`target_prop`]: a mirror's upstream read from a custom property of
//!   its downstream GitHub repository (`upstream = "target-prop:NAME"`).
//! - [`gitlab`]: a `[[gitlab]]` instance's API: projects created and their
//!   default branch set for GitLab downstreams, groups listed for
//!   `[[gitlab_source]]`.
//! - [`discovery`]: every forge table's mirrors added to a fleet.

pub mod discovery;
pub mod github_app;
pub mod github_org;
pub mod github_repo;
pub mod gitlab;
pub mod jwt;
pub mod owners;
pub mod target_prop;
pub mod token_cache;

pub use github_app::{App, AppTokens};
