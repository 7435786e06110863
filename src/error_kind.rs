//! What kind of failure a sync hit, and whether trying again may help.
//!
//! [`classify`] is the one place that decides. It matches the library's
//! typed errors layer by layer (relay, sessions, transports) and, where a
//! layer only holds an `io::Error` (a stream that failed under a session),
//! walks the causes for the typed error or the I/O error kind inside. A
//! server's own words are read in two places only, each narrow and
//! commented: `ERR` lines and the stderr of a server that exited, when
//! they say the repository does not exist or access was denied.
//!
//! A rejected ref is not an error: [`crate::relay::sync`] returns it as a
//! `RefStatus::Rejected` line in an `Ok` report (with
//! [`crate::relay::Outcome::Partial`] or `NothingLanded`), so callers
//! classify that outcome themselves, as [`ErrorKind::Rejected`].

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use crate::forge::{discovery, github_app, github_org, github_repo, gitlab, target_prop};
use crate::limits;
use crate::pkt_io;
use crate::plan;
use crate::relay;
use crate::session::{receive_pack, upload_pack};
use crate::transport::{self, ssh, HttpError};

/// The kind of a failed sync, as `--json` shows it (`kind`).
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
    /// Permanent: the server's ssh host key is unknown or changed, or its
    /// TLS certificate is not trusted.
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
    /// Permanent: bad input (URL, settings, patterns).
    Usage,
    /// Permanent: the fleet config file is invalid.
    Config,
    /// The run was stopped by SIGINT or SIGTERM.
    Interrupted,
    /// Anything else; not retried.
    Other,
}

impl ErrorKind {
    /// Whether another attempt may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Connection | Self::Timeout | Self::Unavailable)
    }

    /// The name `--json` uses, e.g. `"not-found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Auth => "auth",
            Self::NotFound => "not-found",
            Self::HostKey => "host-key",
            Self::Guard => "guard",
            Self::Rejected => "rejected",
            Self::Protocol => "protocol",
            Self::Unsupported => "unsupported",
            Self::VerifyMismatch => "verify-mismatch",
            Self::ObjectFormat => "object-format",
            Self::Usage => "usage",
            Self::Config => "config",
            Self::Interrupted => "interrupted",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure's kind and, when the server said, how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub kind: ErrorKind,
    pub retry_after: Option<Duration>,
}

impl From<ErrorKind> for Classified {
    fn from(kind: ErrorKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }
}

/// Classifies a sync's failure.
pub fn classify(error: &relay::Error) -> Classified {
    use relay::Error as E;
    match error {
        E::Connect { source, .. } => classify_transport(source),
        E::Upstream(error) => classify_upload_pack(error),
        E::Downstream(error) => classify_receive_pack(error),
        E::ObjectFormatMismatch { .. } => ErrorKind::ObjectFormat.into(),
        E::Refused(error) => classify_plan(error).into(),
        // Downstream kept its refs, so the cause alone decides.
        E::Aborted(cause) => classify(cause),
        E::NotAPack { .. } => ErrorKind::Protocol.into(),
        E::Unpack { .. } => ErrorKind::Rejected.into(),
        E::Verify { .. } => ErrorKind::VerifyMismatch.into(),
        E::Unsupported { .. } => ErrorKind::Unsupported.into(),
        // A pack too big for downstream's cap that cannot be split: no
        // retry makes it smaller.
        E::PackTooLarge { .. } | E::Batch(_) => ErrorKind::Rejected.into(),
        E::Lfs(error) => classify_lfs(error),
    }
}

/// The kind of a failed LFS step: the push was not made.
pub fn classify_lfs(error: &crate::lfs::Error) -> Classified {
    use crate::lfs::Error as E;
    match error {
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::Batch { status, .. } => match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
        .into(),
        E::Answer { .. } | E::Corrupt { .. } => ErrorKind::Protocol.into(),
        E::Refused { .. } => ErrorKind::Rejected.into(),
        // A transfer cut or refused midway: another try may get through.
        E::Object { .. } => ErrorKind::Unavailable.into(),
        E::NoEndpoint { .. } | E::Scan { .. } => ErrorKind::Unsupported.into(),
        E::Setting { .. } => ErrorKind::Usage.into(),
        E::Authenticate { .. } => ErrorKind::Connection.into(),
    }
}

/// Where the configured token came from ([`crate::transport::Token::source`])
/// that a git server refused with HTTP 401 in `error`, if one was: the
/// fleet then drops it from the GitHub App token cache.
pub fn refused_token_source(error: &relay::Error) -> Option<&str> {
    causes(error).find_map(|e| {
        let http = match e.downcast_ref::<transport::Error>() {
            Some(transport::Error::Http(http)) => Some(http),
            _ => e.downcast_ref::<HttpError>(),
        };
        http.and_then(HttpError::refused_token_source)
    })
}

/// Classifies a failure to get a GitHub App's installation token.
pub fn classify_github_app(error: &github_app::Error) -> Classified {
    use github_app::Error as E;
    match error {
        // Not installed, or the key or app id is refused: trying again
        // changes nothing until someone fixes the app or the config.
        E::NotInstalled { .. } | E::Unauthorized { .. } | E::Forbidden { .. } => {
            ErrorKind::Auth.into()
        }
        E::KeySecret { .. } | E::Key { .. } => ErrorKind::Usage.into(),
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::RateLimited { retry_after, .. } => Classified {
            kind: ErrorKind::Unavailable,
            retry_after: Some(*retry_after),
        },
        E::Status {
            status,
            retry_after,
            ..
        } => Classified {
            kind: match status {
                408 => ErrorKind::Timeout,
                429 | 500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
            retry_after: *retry_after,
        },
        E::Response { .. } => ErrorKind::Protocol.into(),
    }
}

/// Classifies a failed `[[github_org]]` / `[[github_source]]` listing.
pub fn classify_github_org(error: &github_org::Error) -> Classified {
    use github_org::Error as E;
    match error {
        E::Token { source, .. } => classify_github_app(source),
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::Status { status, .. } => match status {
            401 | 403 => ErrorKind::Auth,
            404 | 410 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
        .into(),
        E::Response { .. } | E::TooManyPages { .. } => ErrorKind::Protocol.into(),
        E::RateLimited { retry_after, .. } => Classified {
            kind: ErrorKind::Unavailable,
            retry_after: Some(*retry_after),
        },
    }
}

/// The kind of a failed API call about a downstream GitHub repository
/// (`create_missing`, `follow_head`).
pub fn classify_github_repo(error: &github_repo::Error) -> Classified {
    use github_repo::Error as E;
    match error {
        // The installation lacks the permission: nothing changes until
        // someone grants it.
        E::Forbidden { .. } => ErrorKind::Auth.into(),
        // GitHub refused the creation (a name taken, a visibility the
        // organisation forbids): permanent, like a refused ref.
        E::Unprocessable { .. } => ErrorKind::Rejected.into(),
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::RateLimited { retry_after, .. } => Classified {
            kind: ErrorKind::Unavailable,
            retry_after: Some(*retry_after),
        },
        E::Status { status, .. } => match status {
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
        .into(),
        E::Response { .. } => ErrorKind::Protocol.into(),
    }
}

/// The kind of a failed call to GitLab's API (`create_missing`,
/// `follow_head`, `[[gitlab_source]]`).
pub fn classify_gitlab(error: &gitlab::Error) -> Classified {
    use gitlab::Error as E;
    match error {
        // A refused token or a missing scope or role: nothing changes
        // until someone fixes the token.
        E::Unauthorized { .. } | E::Forbidden { .. } => ErrorKind::Auth.into(),
        // GitLab refused the creation (a path taken, a visibility the
        // group forbids): permanent, like a refused ref.
        E::Refused { .. } => ErrorKind::Rejected.into(),
        E::Missing { .. } => ErrorKind::NotFound.into(),
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::RateLimited { retry_after, .. } => Classified {
            kind: ErrorKind::Unavailable,
            retry_after: Some(*retry_after),
        },
        E::Status { status, .. } => match status {
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
        .into(),
        E::Response { .. } | E::TooManyPages { .. } => ErrorKind::Protocol.into(),
    }
}

/// The kind of a failed discovery (any forge's listing).
pub fn classify_discovery(error: &discovery::Error) -> Classified {
    match error {
        discovery::Error::Github(error) => classify_github_org(error),
        discovery::Error::GitlabToken { .. } => ErrorKind::Usage.into(),
        discovery::Error::Gitlab { source, .. } => classify_gitlab(source),
    }
}

/// The kind of a failure to read a `target-prop:` upstream: a missing
/// property is `not-found` (someone has to set it), a value that is no
/// URL is `usage`.
pub fn classify_target_prop(error: &target_prop::Error) -> Classified {
    use target_prop::Error as E;
    match error {
        E::Missing { .. } => ErrorKind::NotFound.into(),
        E::Invalid { .. } => ErrorKind::Usage.into(),
        E::Client { source, .. } => classify_http(source),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::Status { status, .. } => match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            408 => ErrorKind::Timeout,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ => ErrorKind::Other,
        }
        .into(),
        E::RateLimited { retry_after, .. } => Classified {
            kind: ErrorKind::Unavailable,
            retry_after: Some(*retry_after),
        },
        E::Response { .. } => ErrorKind::Protocol.into(),
    }
}

fn classify_plan(error: &plan::Error) -> ErrorKind {
    match error {
        plan::Error::EmptyUpstream { .. } | plan::Error::MassDelete { .. } => ErrorKind::Guard,
        plan::Error::Pattern { .. } => ErrorKind::Usage,
    }
}

fn classify_limits(error: &limits::Error) -> ErrorKind {
    match error {
        limits::Error::InvalidVariable { .. } => ErrorKind::Usage,
        limits::Error::TooManyLines { .. } | limits::Error::TooManyBytes { .. } => ErrorKind::Guard,
    }
}

fn classify_transport(error: &transport::Error) -> Classified {
    use transport::Error as E;
    match error {
        E::NotFound { .. } => ErrorKind::NotFound.into(),
        E::Spawn { .. } => ErrorKind::Other.into(),
        E::Http(error) => classify_http(error),
        E::Ssh(error) => classify_ssh(error).into(),
        // The user's git settings refuse the transport or are not valid.
        E::Protocol(_) | E::GitConfig(_) => ErrorKind::Usage.into(),
        E::GitConnect { source, .. } => match source.kind() {
            // The request pkt-line could not be built (a path too long).
            io::ErrorKind::InvalidInput => ErrorKind::Usage.into(),
            // Refused, reset, or a name that did not resolve (its kind
            // varies with the resolver): reaching the daemon failed.
            _ => io_kind(source).unwrap_or(ErrorKind::Connection).into(),
        },
    }
}

fn classify_http(error: &HttpError) -> Classified {
    use HttpError as E;
    match error {
        E::Status {
            status,
            retry_after,
            ..
        } => Classified {
            kind: match status {
                401 | 403 | 407 => ErrorKind::Auth,
                404 | 410 => ErrorKind::NotFound,
                408 => ErrorKind::Timeout,
                429 | 500..=599 => ErrorKind::Unavailable,
                _ => ErrorKind::Other,
            },
            retry_after: *retry_after,
        },
        E::AuthRequired { .. } | E::AuthRejected { .. } | E::AuthAfterRedirect { .. } => {
            ErrorKind::Auth.into()
        }
        E::Stalled { .. } => ErrorKind::Timeout.into(),
        E::Request { source, .. } => classify_reqwest(source).into(),
        E::Smart { .. } => ErrorKind::Protocol.into(),
        E::Tls(_) | E::Proxy { .. } | E::Config(_) | E::ExtraHeader { .. } => {
            ErrorKind::Usage.into()
        }
        E::Client(_) => ErrorKind::Other.into(),
    }
}

fn classify_reqwest(error: &reqwest::Error) -> ErrorKind {
    if error.is_timeout() {
        return ErrorKind::Timeout;
    }
    // rustls refusing the server's certificate is a connect error to
    // reqwest, but no retry will change the certificate.
    if let Some(tls) = find_cause::<rustls::Error>(error) {
        return match tls {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                ErrorKind::HostKey
            }
            _ => ErrorKind::Protocol,
        };
    }
    if let Some(kind) = causes(error).find_map(io_cause_kind) {
        return kind;
    }
    if error.is_connect() {
        return ErrorKind::Connection;
    }
    // hyper's own error for a keep-alive connection the server closed as
    // it was reused carries no io::Error (see http::retry::is_reset).
    if causes(error).any(|e| {
        e.to_string()
            .contains("connection closed before message completed")
    }) {
        return ErrorKind::Connection;
    }
    if error.is_body() || error.is_decode() {
        return ErrorKind::Protocol;
    }
    ErrorKind::Other
}

fn classify_ssh(error: &ssh::Error) -> ErrorKind {
    use ssh::Error as E;
    match error {
        E::Connect { source, .. } => io_kind(source).unwrap_or(ErrorKind::Connection),
        E::ConnectTimeout { .. } => ErrorKind::Timeout,
        E::UnknownHostKey { .. }
        | E::HostKeyChanged { .. }
        | E::HostKeyRevoked { .. }
        | E::HostCertificate { .. } => ErrorKind::HostKey,
        E::AuthFailed { .. } | E::EncryptedKey { .. } => ErrorKind::Auth,
        E::Session { source, .. } => classify_russh(source),
        E::Jump { source, .. } => classify_russh(source),
        E::External { .. }
        | E::PortUnsupported { .. }
        | E::ProxyCommand { .. }
        | E::UnsafeForProxyCommand { .. }
        | E::TooManyHops { .. } => ErrorKind::Usage,
        E::Output { .. } => ErrorKind::Connection,
    }
}

fn classify_russh(error: &russh::Error) -> ErrorKind {
    use russh::Error as E;
    match error {
        E::Disconnect | E::HUP | E::SendError | E::RecvError => ErrorKind::Connection,
        E::ConnectionTimeout | E::KeepaliveTimeout | E::InactivityTimeout | E::Elapsed(_) => {
            ErrorKind::Timeout
        }
        E::UnknownKey | E::WrongServerSig | E::KeyChanged { .. } => ErrorKind::HostKey,
        E::NotAuthenticated | E::NoAuthMethod | E::UnsupportedAuthMethod => ErrorKind::Auth,
        E::IO(source) => io_kind(source).unwrap_or(ErrorKind::Connection),
        E::CouldNotReadKey | E::Keys(_) | E::NoHomeDir | E::InvalidConfig(_) => ErrorKind::Usage,
        E::ChannelOpenFailure(_) | E::RequestDenied => ErrorKind::Other,
        _ => ErrorKind::Protocol,
    }
}

fn classify_upload_pack(error: &upload_pack::Error) -> Classified {
    use upload_pack::Error as E;
    match error {
        E::Read { detail, source, .. } => said_or(detail, || classify_pkt_io(source)),
        E::Write { detail, source, .. } => said_or(detail, || classify_io(source)),
        E::Closed { detail, .. } => said(detail)
            .unwrap_or(if error.closed_mid_pack() {
                // The issue's rule: only a disconnect before the pack
                // started is retried. One mid-pack repeats the whole
                // transfer, and a server that cuts packs (a size or time
                // limit of its own) cuts the next one too.
                ErrorKind::Other
            } else {
                ErrorKind::Connection
            })
            .into(),
        E::Advertisement { .. }
        | E::Capabilities { .. }
        | E::V2 { .. }
        | E::FetchResponse { .. }
        | E::Sideband { .. }
        | E::Unexpected { .. } => ErrorKind::Protocol.into(),
        E::Server { message, .. } => server_said(message).unwrap_or(ErrorKind::Other).into(),
        E::Limits { source, .. } => classify_limits(source).into(),
    }
}

fn classify_receive_pack(error: &receive_pack::Error) -> Classified {
    use receive_pack::Error as E;
    match error {
        E::Read { detail, source, .. } => said_or(detail, || classify_pkt_io(source)),
        E::Write { detail, source, .. } => said_or(detail, || classify_io(source)),
        // Downstream hangs up before the pack only (once the pack is
        // handed over, a lost report is an `unknown` outcome, not an error).
        E::Closed { detail, .. } => said(detail).unwrap_or(ErrorKind::Connection).into(),
        E::Advertisement { .. }
        | E::Capabilities { .. }
        | E::Sideband { .. }
        | E::Report { .. }
        | E::ReportFraming { .. } => ErrorKind::Protocol.into(),
        // An ERR line or a fatal band-3 message from receive-pack refuses
        // the push.
        E::Server { message, .. } => server_said(message).unwrap_or(ErrorKind::Rejected).into(),
        E::Limits { source, .. } => classify_limits(source).into(),
        E::Commands { .. } => ErrorKind::Usage.into(),
    }
}

fn classify_pkt_io(error: &pkt_io::Error) -> Classified {
    match error {
        pkt_io::Error::Io(source) => classify_io(source),
        // A stream cut inside a pkt-line: the connection dropped.
        pkt_io::Error::Truncated { .. } => ErrorKind::Connection.into(),
        pkt_io::Error::Malformed(_) => ErrorKind::Protocol.into(),
        pkt_io::Error::Limit(source) => classify_limits(source).into(),
    }
}

/// An I/O error under a session: a transport's typed error smuggled
/// through the stream (the http transport's requests after the
/// advertisement), an idle or low-speed timeout, or a plain I/O failure.
fn classify_io(error: &io::Error) -> Classified {
    if let Some(http) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<HttpError>())
    {
        return classify_http(http);
    }
    if let Some(reqwest) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
    {
        return classify_reqwest(reqwest).into();
    }
    io_kind(error).unwrap_or(ErrorKind::Other).into()
}

/// The kind an I/O error's own kind says, if it says one.
fn io_kind(error: &io::Error) -> Option<ErrorKind> {
    match error.kind() {
        io::ErrorKind::ConnectionRefused
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::NotConnected
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown
        | io::ErrorKind::AddrNotAvailable => Some(ErrorKind::Connection),
        // Also the idle, low-speed and maximum-duration limits
        // (transport::idle).
        io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
        _ => None,
    }
}

/// [`io_kind`] for a cause that is an I/O error.
fn io_cause_kind(cause: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    cause.downcast_ref::<io::Error>().and_then(io_kind)
}

/// `error` and its causes, outermost first. An `io::Error` wrapping
/// another error yields that error next: its own `source()` would skip
/// it and go straight to the wrapped error's cause.
fn causes<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| cause(e))
}

fn cause<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match error.downcast_ref::<io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
        None => error.source(),
    }
}

fn find_cause<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    causes(error).find_map(|e| e.downcast_ref::<T>())
}

/// What the server said, when it names the kind, else `otherwise`: a
/// server that exits with a reason on stderr also breaks the stream.
fn said_or(detail: &Option<String>, otherwise: impl FnOnce() -> Classified) -> Classified {
    said(detail).map(Classified::from).unwrap_or_else(otherwise)
}

/// What a server that exited said on stderr, when it names the kind.
fn said(detail: &Option<String>) -> Option<ErrorKind> {
    server_said(detail.as_deref()?)
}

/// The kind a server's own words name, matched narrowly: only fixed
/// phrases of git, git daemon, OpenSSH and the big forges.
fn server_said(text: &str) -> Option<ErrorKind> {
    let text = text.to_ascii_lowercase();
    const NOT_FOUND: &[&str] = &[
        // git daemon's ERR lines (daemon.c): with --informative-errors
        // "no such repository" / "repository not exported", without
        // "access denied or repository not exported" (it has no
        // authentication, so a denial is a missing export).
        "no such repository",
        "repository not exported",
        // upload-pack and receive-pack run on a path that is not one
        // (setup.c / enter_repo), locally or behind ssh.
        "does not appear to be a git repository",
        // GitHub over ssh; GitLab over ssh.
        "repository not found",
        "could not be found or you don't have permission",
    ];
    const AUTH: &[&str] = &[
        // OpenSSH, when GIT_SSH_COMMAND runs it.
        "permission denied (publickey",
    ];
    const HOST_KEY: &[&str] = &[
        // OpenSSH.
        "host key verification failed",
    ];
    const CONNECTION: &[&str] = &[
        // OpenSSH: "ssh: connect to host h port 22: Connection refused",
        // "ssh: Could not resolve hostname h".
        "connection refused",
        "could not resolve hostname",
        "connection reset by peer",
    ];
    let has = |phrases: &[&str]| phrases.iter().any(|p| text.contains(p));
    // GitHub over ssh: "Permission to o/r.git denied to user."
    let github_denied = text.contains("permission to ") && text.contains(" denied to ");
    if has(NOT_FOUND) {
        Some(ErrorKind::NotFound)
    } else if has(HOST_KEY) {
        Some(ErrorKind::HostKey)
    } else if has(AUTH) || github_denied {
        Some(ErrorKind::Auth)
    } else if has(CONNECTION) {
        Some(ErrorKind::Connection)
    } else if text.contains("connection timed out") {
        Some(ErrorKind::Timeout)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Side;

    fn kind(error: relay::Error) -> ErrorKind {
        classify(&error).kind
    }

    fn connect(source: transport::Error) -> relay::Error {
        relay::Error::Connect {
            side: Side::Upstream,
            repo: "r".into(),
            source,
        }
    }

    fn http_status(status: u16, retry_after: Option<Duration>) -> relay::Error {
        connect(transport::Error::Http(HttpError::Status {
            url: "http://h/r".into(),
            status,
            detail: String::new(),
            retry_after,
        }))
    }

    fn io(kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, "test")
    }

    fn upstream_read(source: io::Error) -> relay::Error {
        relay::Error::Upstream(upload_pack::Error::Read {
            repo: "r".into(),
            detail: None,
            source: pkt_io::Error::Io(source),
        })
    }

    fn upstream_closed(when: &'static str, detail: Option<&str>) -> relay::Error {
        relay::Error::Upstream(upload_pack::Error::Closed {
            repo: "r".into(),
            when,
            detail: detail.map(str::to_owned),
        })
    }

    fn upstream_server(message: &str) -> relay::Error {
        relay::Error::Upstream(upload_pack::Error::Server {
            repo: "r".into(),
            message: message.into(),
        })
    }

    fn ssh(error: ssh::Error) -> relay::Error {
        connect(transport::Error::from(error))
    }

    #[test]
    fn error_kind_transient_ones_are_connection_timeout_and_unavailable() {
        let transient: Vec<ErrorKind> = [
            ErrorKind::Connection,
            ErrorKind::Timeout,
            ErrorKind::Unavailable,
            ErrorKind::Auth,
            ErrorKind::NotFound,
            ErrorKind::HostKey,
            ErrorKind::Guard,
            ErrorKind::Rejected,
            ErrorKind::Protocol,
            ErrorKind::Unsupported,
            ErrorKind::VerifyMismatch,
            ErrorKind::ObjectFormat,
            ErrorKind::Usage,
            ErrorKind::Other,
        ]
        .into_iter()
        .filter(|k| k.is_transient())
        .collect();
        assert_eq!(
            transient,
            [
                ErrorKind::Connection,
                ErrorKind::Timeout,
                ErrorKind::Unavailable
            ]
        );
    }

    #[test]
    fn error_kind_names_match_serde() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::HostKey,
            ErrorKind::Config,
            ErrorKind::Interrupted,
            ErrorKind::Other,
        ] {
            let json = serde_json::to_value(kind).expect("serializable");
            assert_eq!(json, serde_json::json!(kind.as_str()));
        }
    }

    #[test]
    fn error_kind_of_http_statuses() {
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify(&http_status(503, after)),
            Classified {
                kind: ErrorKind::Unavailable,
                retry_after: after
            }
        );
        for (status, expected) in [
            (429, ErrorKind::Unavailable),
            (500, ErrorKind::Unavailable),
            (502, ErrorKind::Unavailable),
            (504, ErrorKind::Unavailable),
            (401, ErrorKind::Auth),
            (403, ErrorKind::Auth),
            (404, ErrorKind::NotFound),
            (410, ErrorKind::NotFound),
            (408, ErrorKind::Timeout),
            (400, ErrorKind::Other),
        ] {
            assert_eq!(kind(http_status(status, None)), expected, "{status}");
        }
        let required = HttpError::AuthRequired {
            host: "h".into(),
            token: "KALANDRA_UPSTREAM_TOKEN",
        };
        assert_eq!(kind(connect(required.into())), ErrorKind::Auth);
        let stalled = HttpError::Stalled {
            url: "http://h/r".into(),
            seconds: 1,
        };
        assert_eq!(kind(connect(stalled.into())), ErrorKind::Timeout);
    }

    #[test]
    fn error_kind_of_http_errors_inside_a_session_stream() {
        // The http transport's requests after the advertisement fail
        // through the session's reader as an io::Error.
        let status = HttpError::Status {
            url: "http://h/r".into(),
            status: 429,
            detail: String::new(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            classify(&upstream_read(io::Error::other(status))),
            Classified {
                kind: ErrorKind::Unavailable,
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn error_kind_of_io_failures() {
        for (io_kind, expected) in [
            (io::ErrorKind::ConnectionRefused, ErrorKind::Connection),
            (io::ErrorKind::ConnectionReset, ErrorKind::Connection),
            (io::ErrorKind::ConnectionAborted, ErrorKind::Connection),
            (io::ErrorKind::BrokenPipe, ErrorKind::Connection),
            (io::ErrorKind::UnexpectedEof, ErrorKind::Connection),
            (io::ErrorKind::TimedOut, ErrorKind::Timeout),
            (io::ErrorKind::PermissionDenied, ErrorKind::Other),
        ] {
            assert_eq!(kind(upstream_read(io(io_kind))), expected, "{io_kind:?}");
        }
        let git = |io_kind| {
            kind(connect(transport::Error::GitConnect {
                host_port: "h:9418".into(),
                source: io(io_kind),
            }))
        };
        assert_eq!(git(io::ErrorKind::ConnectionRefused), ErrorKind::Connection);
        assert_eq!(git(io::ErrorKind::TimedOut), ErrorKind::Timeout);
        // A resolver failure has no kind of its own.
        assert_eq!(git(io::ErrorKind::Other), ErrorKind::Connection);
        assert_eq!(git(io::ErrorKind::InvalidInput), ErrorKind::Usage);
    }

    #[test]
    fn error_kind_of_an_idle_timeout_under_the_aborted_transfer() {
        let aborted = relay::Error::Aborted(Box::new(upstream_read(io(io::ErrorKind::TimedOut))));
        assert_eq!(kind(aborted), ErrorKind::Timeout);
    }

    #[test]
    fn error_kind_of_hang_ups_before_and_during_the_pack() {
        assert_eq!(
            kind(upstream_closed("before advertising its refs", None)),
            ErrorKind::Connection
        );
        assert_eq!(
            kind(upstream_closed(upload_pack::MID_PACK, None)),
            ErrorKind::Other
        );
        assert_eq!(
            kind(upstream_closed(
                "before advertising its refs",
                Some("fatal: '/srv/x.git' does not appear to be a git repository")
            )),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(upstream_closed(
                "before advertising its refs",
                Some("git@h: Permission denied (publickey).")
            )),
            ErrorKind::Auth
        );
        assert_eq!(
            kind(upstream_closed(
                "before advertising its refs",
                Some("Host key verification failed.")
            )),
            ErrorKind::HostKey
        );
        assert_eq!(
            kind(upstream_closed(
                "before advertising its refs",
                Some("ssh: connect to host h port 22: Connection refused")
            )),
            ErrorKind::Connection
        );
    }

    #[test]
    fn error_kind_of_server_err_lines() {
        for message in [
            "no such repository: /x.git",
            "access denied or repository not exported: /x.git",
            "repository not exported: /x.git",
            "ERROR: Repository not found.",
        ] {
            assert_eq!(
                kind(upstream_server(message)),
                ErrorKind::NotFound,
                "{message}"
            );
        }
        assert_eq!(
            kind(upstream_server("upload-pack: not our ref 1111")),
            ErrorKind::Other
        );
        let downstream = relay::Error::Downstream(receive_pack::Error::Server {
            repo: "r".into(),
            message: "service not enabled: /x.git".into(),
        });
        assert_eq!(kind(downstream), ErrorKind::Rejected);
    }

    #[test]
    fn error_kind_of_ssh_failures() {
        let host_port = || "h:22".to_owned();
        assert_eq!(
            kind(ssh(ssh::Error::Connect {
                host_port: host_port(),
                source: io(io::ErrorKind::ConnectionRefused),
            })),
            ErrorKind::Connection
        );
        assert_eq!(
            kind(ssh(ssh::Error::ConnectTimeout {
                host_port: host_port(),
                secs: 1
            })),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind(ssh(ssh::Error::HostKeyChanged {
                host_port: host_port(),
                file: "known_hosts".into(),
                line: 1
            })),
            ErrorKind::HostKey
        );
        assert_eq!(
            kind(ssh(ssh::Error::UnknownHostKey {
                host_port: host_port(),
                fingerprint: "SHA256:x".into(),
                known_hosts: "known_hosts".into(),
                scan: "ssh-keyscan h".into(),
            })),
            ErrorKind::HostKey
        );
        assert_eq!(
            kind(ssh(ssh::Error::AuthFailed {
                user: "git".into(),
                host_port: host_port(),
                tried: "none".into()
            })),
            ErrorKind::Auth
        );
        for (source, expected) in [
            (russh::Error::Disconnect, ErrorKind::Connection),
            (russh::Error::HUP, ErrorKind::Connection),
            (russh::Error::KeepaliveTimeout, ErrorKind::Timeout),
            (russh::Error::WrongServerSig, ErrorKind::HostKey),
            (russh::Error::Kex, ErrorKind::Protocol),
        ] {
            let shown = source.to_string();
            let error = ssh::Error::Session {
                host_port: host_port(),
                source,
            };
            assert_eq!(kind(ssh(error)), expected, "{shown}");
        }
    }

    #[test]
    fn error_kind_of_guards_and_refusals() {
        assert_eq!(
            kind(relay::Error::Refused(plan::Error::MassDelete {
                downstream: 10,
                would_delete: vec!["refs/heads/a".into()],
            })),
            ErrorKind::Guard
        );
        assert_eq!(
            kind(relay::Error::Refused(plan::Error::EmptyUpstream {
                downstream: 3,
                would_delete: Vec::new(),
            })),
            ErrorKind::Guard
        );
        let too_many = upload_pack::Error::Read {
            repo: "r".into(),
            detail: None,
            source: pkt_io::Error::Limit(limits::Error::TooManyLines {
                list: "ref advertisement",
                limit: 1,
            }),
        };
        assert_eq!(kind(too_many.into()), ErrorKind::Guard);
        assert_eq!(
            kind(relay::Error::Unpack {
                repo: "r".into(),
                message: "unpack-objects abnormal exit".into(),
                said: Vec::new()
            }),
            ErrorKind::Rejected
        );
        assert_eq!(
            kind(relay::Error::Verify {
                repo: "r".into(),
                mismatches: Vec::new()
            }),
            ErrorKind::VerifyMismatch
        );
        assert_eq!(
            kind(relay::Error::NotAPack {
                found: "junk".into()
            }),
            ErrorKind::Protocol
        );
        assert_eq!(
            kind(connect(transport::Error::NotFound { path: "/x".into() })),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn error_kind_of_github_app_failures() {
        use crate::forge::jwt::Issuer;
        use github_app::Error as E;
        let app = || Issuer::AppId(12345);
        let not_installed = E::NotInstalled {
            app: app(),
            owner: "acme".into(),
            repo: "api".into(),
            url: "https://api.github.com/repos/acme/api/installation".into(),
        };
        assert_eq!(classify_github_app(&not_installed).kind, ErrorKind::Auth);
        assert!(not_installed
            .to_string()
            .contains("the GitHub App 12345 is not installed on acme"));
        let revoked = E::Unauthorized {
            app: app(),
            key_source: "/run/app.pem".into(),
            url: "u".into(),
            detail: String::new(),
        };
        assert_eq!(classify_github_app(&revoked).kind, ErrorKind::Auth);
        assert!(revoked.to_string().contains("/run/app.pem"));
        let limited = E::RateLimited {
            app: app(),
            url: "u".into(),
            reset: "r".into(),
            retry_after: Duration::from_secs(900),
        };
        assert_eq!(
            classify_github_app(&limited),
            Classified {
                kind: ErrorKind::Unavailable,
                retry_after: Some(Duration::from_secs(900))
            }
        );
        let status = |status| E::Status {
            url: "u".into(),
            status,
            detail: String::new(),
            retry_after: None,
        };
        assert_eq!(
            classify_github_app(&status(502)).kind,
            ErrorKind::Unavailable
        );
        assert!(classify_github_app(&status(503)).kind.is_transient());
        assert_eq!(classify_github_app(&status(422)).kind, ErrorKind::Other);
        let response = E::Response {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(classify_github_app(&response).kind, ErrorKind::Protocol);
    }
}
