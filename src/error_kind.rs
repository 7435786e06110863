//! What kind of failure a sync hit, and whether trying again may help.
//!
//! SKELETON: the classification is being written; see issue 10.

use std::time::Duration;

/// The kind of a failed sync, as `--json` shows it (`error_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Transient: refused, reset or dropped connections, an ssh disconnect
    /// before the pack started, a name that did not resolve.
    Connection,
    /// Transient: a connect, idle or low-speed timeout.
    Timeout,
    /// Transient: HTTP 429, 502, 503, 504 (and other 5xx).
    Unavailable,
    /// Permanent: credentials missing or refused.
    Auth,
    /// Permanent: the repository does not exist.
    NotFound,
    /// Permanent: the server's ssh host key is unknown or changed.
    HostKey,
    /// Permanent: a guard tripped (mass delete, empty upstream, a limit).
    Guard,
    /// Permanent: downstream refused a ref, or the pack.
    Rejected,
    /// Permanent: a server broke the protocol or sent garbage.
    Protocol,
    /// Permanent: downstream lacks a capability the sync needs.
    Unsupported,
    /// Permanent: downstream's refs disagree with its report.
    VerifyMismatch,
    /// Permanent: the two sides use different object formats.
    ObjectFormat,
    /// Permanent: bad input (URL, settings, config).
    Usage,
    /// Anything else; not retried.
    Other,
}

impl ErrorKind {
    /// Whether another attempt may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Connection | Self::Timeout | Self::Unavailable)
    }
}

/// A failure's kind and, when the server said, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub kind: ErrorKind,
    pub retry_after: Option<Duration>,
}

/// Classifies a sync's failure.
pub fn classify(error: &crate::relay::Error) -> Classified {
    let _ = error;
    Classified {
        kind: ErrorKind::Other,
        retry_after: None,
    }
}
