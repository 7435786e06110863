//! Transports turn a [`RepoUrl`] into a connected byte stream to a git
//! service. They know nothing about the protocol spoken over it: each yields
//! a reader/writer pair, and the sessions in [`crate::session`] do the rest.

mod file;
mod git;
mod http;
mod idle;
mod process;
pub mod ssh;

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// For [`crate::error_kind`], which classifies [`Error::Http`].
pub(crate) use http::Error as HttpError;
/// For [`crate::forge`]'s API calls.
pub(crate) use http::{api_client, credentials_after_401, first_credentials, lfs_client};
pub use idle::{Activity, LowSpeed};
pub use process::ServerProcess;

use crate::git_config::GitConfig;
use crate::protocol_settings::ProtocolSettings;
use crate::url::RepoUrl;

/// The reading half of a connection.
pub type BoxReader = Pin<Box<dyn AsyncRead + Send>>;
/// The writing half of a connection.
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// The two git services a mirror talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    /// The program name, as git spells it on the wire and in URLs.
    pub fn name(self) -> &'static str {
        match self {
            Self::UploadPack => "git-upload-pack",
            Self::ReceivePack => "git-receive-pack",
        }
    }
}

/// Connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("repository {path:?} does not exist")]
    NotFound { path: String },
    #[error("could not start {program} for {repo}")]
    Spawn {
        program: String,
        repo: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error(transparent)]
    Ssh(Box<ssh::Error>),
    /// `protocol.*` refuses the transport, or is not valid.
    #[error(transparent)]
    Protocol(#[from] crate::protocol_settings::Error),
    #[error(transparent)]
    GitConfig(#[from] crate::git_config::Error),
    #[error("cannot connect to the git daemon at {host_port}")]
    GitConnect {
        host_port: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the user's git settings are at fault (a refused transport,
    /// a value git would refuse, an unreadable client certificate): a
    /// usage error, not a connection failure.
    pub fn caused_by_git_settings(&self) -> bool {
        match self {
            Self::Protocol(_) | Self::GitConfig(_) => true,
            Self::Http(error) => error.caused_by_git_settings(),
            _ => false,
        }
    }
}

impl From<ssh::Error> for Error {
    fn from(error: ssh::Error) -> Self {
        Self::Ssh(Box::new(error))
    }
}

/// A connected service: bytes from the server on `reader`, bytes to it on
/// `writer`, and the server's process when it runs on this machine.
pub struct Connection {
    pub reader: BoxReader,
    pub writer: BoxWriter,
    pub process: Option<ServerProcess>,
}

/// What a local server process said on stderr, if there is one.
pub async fn failure_detail(process: &mut Option<ServerProcess>) -> Option<String> {
    match process {
        Some(process) => process.failure_detail().await,
        None => None,
    }
}

/// How long to wait, and how slow a transfer may be, for every transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// Giving up on reaching a server.
    pub connect_timeout: Duration,
    /// Giving up on a connection on which nothing moves. Huge values mean
    /// "no timeout" (they saturate instead of overflowing).
    pub idle_timeout: Duration,
    /// Giving up on a connection that moves fewer bytes a second than
    /// this, averaged over `low_speed_time` of waiting on the server, as
    /// git's `http.lowSpeedLimit`. 0, the default, turns it off.
    pub low_speed_limit: u64,
    pub low_speed_time: Duration,
    /// Giving up on a connection this long after it was opened.
    pub max_duration: Option<Duration>,
    /// A token for upstream's http(s) server, in place of
    /// `KALANDRA_UPSTREAM_TOKEN` (a fleet config's `upstream_token_*`).
    pub upstream_token: Option<Token>,
    /// The same for downstream.
    pub downstream_token: Option<Token>,
}

/// A secret sent as the http password, and where it came from (for
/// messages). `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub secret: String,
    /// Where it came from, as messages name it: `$NAME`, or a file's path.
    pub source: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            low_speed_limit: 0,
            low_speed_time: DEFAULT_LOW_SPEED_TIME,
            max_duration: None,
            upstream_token: None,
            downstream_token: None,
        }
    }
}

/// `--low-speed-time` unless given: a minute, as long as a transfer must
/// crawl before it counts as stuck.
pub const DEFAULT_LOW_SPEED_TIME: Duration = Duration::from_secs(60);

/// A setting from the environment is not valid.
#[derive(Debug, thiserror::Error)]
#[error("{variable}={value:?} is not valid: expected {expected}")]
pub struct SettingsError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl TransportSettings {
    /// The token for the side `service` talks to: Kalandra reads upstream
    /// through upload-pack and writes downstream through receive-pack.
    pub fn token(&self, service: Service) -> Option<&Token> {
        match service {
            Service::UploadPack => self.upstream_token.as_ref(),
            Service::ReceivePack => self.downstream_token.as_ref(),
        }
    }

    /// The low-speed limit, when it is on.
    pub fn low_speed(&self) -> Option<LowSpeed> {
        (self.low_speed_limit > 0).then_some(LowSpeed {
            bytes_per_sec: self.low_speed_limit,
            time: self.low_speed_time,
        })
    }

    /// The defaults, overridden by `KALANDRA_CONNECT_TIMEOUT`,
    /// `KALANDRA_IDLE_TIMEOUT`, `KALANDRA_LOW_SPEED_LIMIT` and
    /// `KALANDRA_LOW_SPEED_TIME`. Each is validated as its flag is: a value
    /// that is not a number, or zero where zero makes no sense, is an error.
    /// Empty means unset.
    pub fn try_from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::try_from_env`] for callers that have validated the
    /// environment already (the remote helper does at startup): an invalid
    /// value falls back to the defaults, with a warning.
    pub fn from_env() -> Self {
        Self::try_from_env().unwrap_or_else(|error| {
            tracing::warn!("{error}; using the default settings");
            Self::default()
        })
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let number = |variable: &'static str, min: u64, expected: &'static str| {
            let Some(raw) = lookup(variable).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            match raw.trim().parse::<u64>() {
                Ok(n) if n >= min => Ok(Some(n)),
                _ => Err(SettingsError {
                    variable,
                    value: raw.chars().take(40).collect(),
                    expected,
                }),
            }
        };
        const SECS: &str = "a whole number of seconds, at least 1";
        let defaults = Self::default();
        let connect = number("KALANDRA_CONNECT_TIMEOUT", 1, SECS)?;
        let idle = number("KALANDRA_IDLE_TIMEOUT", 1, SECS)?;
        let limit = number(
            "KALANDRA_LOW_SPEED_LIMIT",
            0,
            "a whole number of bytes per second (0 turns the limit off)",
        )?;
        let time = number("KALANDRA_LOW_SPEED_TIME", 1, SECS)?;
        Ok(Self {
            connect_timeout: connect
                .map(Duration::from_secs)
                .unwrap_or(defaults.connect_timeout),
            idle_timeout: idle
                .map(Duration::from_secs)
                .unwrap_or(defaults.idle_timeout),
            low_speed_limit: limit.unwrap_or(defaults.low_speed_limit),
            low_speed_time: time
                .map(Duration::from_secs)
                .unwrap_or(defaults.low_speed_time),
            ..defaults
        })
    }
}

/// Options that shape how a connection is opened.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Ask for protocol v2 (upload-pack only; receive-pack speaks v0).
    pub protocol_v2: bool,
    pub settings: TransportSettings,
}

/// Opens a connection to `service` at `url`, once the user's `protocol.*`
/// settings allow its transport; `protocol.version` 0 or 1 turns
/// `protocol_v2` off. Whatever the transport, the
/// streams fail with a timeout once nothing has moved for the idle limit,
/// when they crawl below the low-speed limit, or past the maximum duration.
pub async fn connect(
    url: &RepoUrl,
    service: Service,
    options: ConnectOptions,
) -> Result<Connection, Error> {
    connect_linked(url, service, options, &Link::default()).await
}

/// How a connection relates to another one of the same relay.
#[derive(Clone, Debug, Default)]
pub struct Link {
    /// Where this connection records its progress (a fresh [`Activity`]
    /// when none), so that another connection can watch it.
    pub activity: Option<Activity>,
    /// Another connection whose progress counts as this one's for the idle
    /// timeout: downstream waits quietly while upstream prepares the pack.
    pub alive_while: Option<Activity>,
}

/// [`connect`], with the connection's activity shared through `link`.
pub async fn connect_linked(
    url: &RepoUrl,
    service: Service,
    options: ConnectOptions,
    link: &Link,
) -> Result<Connection, Error> {
    let protocol =
        ProtocolSettings::from_env(&GitConfig::read(crate::git_config::SETTINGS_PATTERN).await?);
    protocol.check(url)?;
    let options = ConnectOptions {
        protocol_v2: options.protocol_v2 && protocol.version()?.is_v2(),
        ..options
    };
    let settings = &options.settings;
    // git's http.lowSpeedLimit for an http(s) URL, used when Kalandra's own
    // limit (flag, environment, fleet config) is off.
    let mut git_low_speed = None;
    let connection = match url {
        RepoUrl::Local { path, .. } => file::connect(path, service, &options)?,
        RepoUrl::Http { url } => {
            let (connection, low_speed) = http::connect(url, service, &options).await?;
            git_low_speed = low_speed;
            connection
        }
        RepoUrl::Ssh {
            user,
            host,
            port,
            path,
        } => ssh::connect(user.as_deref(), host, *port, path, service, &options).await?,
        RepoUrl::Git { host, port, path } => {
            git::connect(host, *port, path, service, &options).await?
        }
    };
    let limits = idle::Limits {
        idle: settings.idle_timeout,
        low_speed: settings.low_speed().or(git_low_speed),
        deadline: settings.max_duration.map(|max| {
            let now = tokio::time::Instant::now();
            (idle::after(now, max), max)
        }),
    };
    let activity = link.activity.clone().unwrap_or_default();
    Ok(Connection {
        reader: Box::pin(idle::Idle::new(
            connection.reader,
            limits,
            activity.clone(),
            link.alive_while.clone(),
            "received",
        )),
        writer: Box::pin(idle::Idle::new(
            connection.writer,
            limits,
            activity,
            link.alive_while.clone(),
            "accepted",
        )),
        process: connection.process,
    })
}

/// What `command` prints when run over ssh on `url`'s host (for
/// `git-lfs-authenticate`), at most 64 KiB. `None` for a URL that is not
/// ssh.
pub async fn ssh_output(
    url: &RepoUrl,
    command: &str,
    settings: &TransportSettings,
) -> Option<Result<Vec<u8>, Error>> {
    let RepoUrl::Ssh {
        user, host, port, ..
    } = url
    else {
        return None;
    };
    Some(
        ssh::output(user.as_deref(), host, *port, command, settings, 64 << 10)
            .await
            .map_err(Error::from),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<TransportSettings, SettingsError> {
        TransportSettings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn environment_values_are_validated_like_the_flags() {
        for (name, value) in [
            ("KALANDRA_IDLE_TIMEOUT", "0"),
            ("KALANDRA_IDLE_TIMEOUT", "abc"),
            ("KALANDRA_IDLE_TIMEOUT", "-5"),
            ("KALANDRA_CONNECT_TIMEOUT", "0"),
            ("KALANDRA_CONNECT_TIMEOUT", "1.5"),
            ("KALANDRA_LOW_SPEED_LIMIT", "fast"),
            ("KALANDRA_LOW_SPEED_TIME", "0"),
        ] {
            let error = settings(&[(name, value)]).expect_err(value);
            let text = error.to_string();
            assert!(text.contains(name) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn environment_values_apply() {
        let s = settings(&[
            ("KALANDRA_IDLE_TIMEOUT", " 18446744073709551615 "),
            ("KALANDRA_CONNECT_TIMEOUT", ""),
            ("KALANDRA_LOW_SPEED_LIMIT", "1000"),
        ])
        .expect("valid");
        assert_eq!(s.idle_timeout, Duration::from_secs(u64::MAX));
        assert_eq!(s.connect_timeout, Duration::from_secs(30));
        assert_eq!(
            s.low_speed(),
            Some(LowSpeed {
                bytes_per_sec: 1000,
                time: DEFAULT_LOW_SPEED_TIME
            })
        );
        let off = settings(&[
            ("KALANDRA_LOW_SPEED_LIMIT", "0"),
            ("KALANDRA_LOW_SPEED_TIME", "5"),
        ])
        .expect("valid");
        assert_eq!(off.low_speed(), None);
    }
}
