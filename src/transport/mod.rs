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

pub use process::ServerProcess;

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
    #[error("cannot connect to the git daemon at {host_port}")]
    GitConnect {
        host_port: String,
        #[source]
        source: std::io::Error,
    },
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

/// How long to wait, for every transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    /// Giving up on reaching a server.
    pub connect_timeout: Duration,
    /// Giving up on a connection on which nothing moves.
    pub idle_timeout: Duration,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl TransportSettings {
    /// The defaults, overridden by `KALANDRA_CONNECT_TIMEOUT` and
    /// `KALANDRA_IDLE_TIMEOUT` (seconds) when they hold a number.
    pub fn from_env() -> Self {
        let seconds = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&s| s > 0)
                .map(Duration::from_secs)
        };
        let defaults = Self::default();
        Self {
            connect_timeout: seconds("KALANDRA_CONNECT_TIMEOUT")
                .unwrap_or(defaults.connect_timeout),
            idle_timeout: seconds("KALANDRA_IDLE_TIMEOUT").unwrap_or(defaults.idle_timeout),
        }
    }
}

/// Options that shape how a connection is opened.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Ask for protocol v2 (upload-pack only; receive-pack speaks v0).
    pub protocol_v2: bool,
    pub settings: TransportSettings,
}

/// Opens a connection to `service` at `url`. Whatever the transport, the
/// streams fail with a timeout once nothing has moved for the idle limit.
pub async fn connect(
    url: &RepoUrl,
    service: Service,
    options: ConnectOptions,
) -> Result<Connection, Error> {
    let idle = options.settings.idle_timeout;
    let connection = match url {
        RepoUrl::Local { path } => file::connect(path, service, &options)?,
        RepoUrl::Http { url } => http::connect(url, service, &options).await?,
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
    let activity = idle::Activity::new();
    Ok(Connection {
        reader: Box::pin(idle::Idle::new(
            connection.reader,
            idle,
            activity.clone(),
            "received",
        )),
        writer: Box::pin(idle::Idle::new(
            connection.writer,
            idle,
            activity,
            "accepted",
        )),
        process: connection.process,
    })
}
