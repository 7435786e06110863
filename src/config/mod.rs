//! The fleet config file: many mirrors in one TOML file.
//!
//! [`load`] reads and validates a file before anything connects; every
//! problem is reported with its file, line and column. Templates are
//! expanded here, so the rest of Kalandra only sees [`Mirror`]s.
//!
//! SKELETON: the parser is being written; see issue 10.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::Divergence;
use crate::url::RepoUrl;

/// Every mirror of a config file, templates expanded, in file order
/// (mirrors first in their order, then each template's names in order).
#[derive(Debug, Clone)]
pub struct Fleet {
    pub path: PathBuf,
    pub mirrors: Vec<Mirror>,
}

/// One upstream/downstream pair and how to sync it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Unique within the file.
    pub name: String,
    pub upstream: RepoUrl,
    pub downstream: RepoUrl,
    /// Empty means the default scope (branches and tags).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub prune: bool,
    pub divergence: Divergence,
    pub immutable_tags: bool,
    pub atomic: bool,
    pub allow_mass_delete: bool,
    /// `None`: the environment's or the built-in default.
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub low_speed_limit: Option<u64>,
    pub low_speed_time: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub upstream_token: Option<SecretRef>,
    pub downstream_token: Option<SecretRef>,
    /// Create a missing local downstream with `git init --bare`.
    pub create_missing: bool,
    /// How many times a transient failure is retried (`retries`).
    pub retries: u32,
    /// Where the mirror was defined, for messages.
    pub origin: Origin,
}

/// The default of `retries`.
pub const DEFAULT_RETRIES: u32 = 3;

/// A secret named by the config, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `*_token_env = "NAME"`.
    Env(String),
    /// `*_token_file = "PATH"`, relative paths from the config file's
    /// directory.
    File(PathBuf),
}

/// Where in the file a mirror came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line of its `[[mirror]]` or `[[template]]` header.
    pub line: usize,
    /// Set when the mirror was expanded from a template.
    pub template: Option<usize>,
}

/// Reads and validates `path`.
pub fn load(path: &Path) -> Result<Fleet, Errors> {
    let _ = path;
    Err(Errors(Vec::new()))
}

/// Every problem found in a config file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid config")]
pub struct Errors(pub Vec<Diagnostic>);

/// One problem, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (it cannot be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A referenced secret cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("${0} is not set")]
    Unset(String),
}

/// Reads a secret named by the config. SKELETON.
pub fn resolve_secret(secret: &SecretRef) -> Result<crate::transport::Token, SecretError> {
    match secret {
        SecretRef::Env(name) => Err(SecretError::Unset(name.clone())),
        SecretRef::File(path) => Err(SecretError::Unset(path.display().to_string())),
    }
}
