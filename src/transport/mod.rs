//! Transports turn a [`RepoUrl`] into a connected byte stream to a git
//! service. They know nothing about the protocol spoken over it: each yields
//! a reader/writer pair, and the sessions in [`crate::session`] do the rest.

mod file;
mod process;

use std::pin::Pin;

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
    #[error("{scheme}:// repositories are not supported yet ({repo})")]
    Unsupported { scheme: &'static str, repo: String },
}

/// A connected service: bytes from the server on `reader`, bytes to it on
/// `writer`, and the server's process when it runs on this machine.
pub struct Connection {
    pub reader: BoxReader,
    pub writer: BoxWriter,
    pub process: Option<ServerProcess>,
}

impl Connection {
    /// What the server said on stderr, if anything, for an error message.
    /// Waits briefly for a dying server to finish writing it.
    pub async fn failure_detail(&mut self) -> Option<String> {
        failure_detail(&mut self.process).await
    }
}

/// What a local server process said on stderr, if there is one.
pub async fn failure_detail(process: &mut Option<ServerProcess>) -> Option<String> {
    match process {
        Some(process) => process.failure_detail().await,
        None => None,
    }
}

/// Options that shape how a connection is opened.
#[derive(Clone, Copy, Debug)]
pub struct ConnectOptions {
    /// Ask for protocol v2 (upload-pack only; receive-pack speaks v0).
    pub protocol_v2: bool,
}

/// Opens a connection to `service` at `url`.
pub async fn connect(
    url: &RepoUrl,
    service: Service,
    options: ConnectOptions,
) -> Result<Connection, Error> {
    match url {
        RepoUrl::Local { path } => file::connect(path, service, options),
        other => Err(Error::Unsupported {
            scheme: other.scheme(),
            repo: other.to_string(),
        }),
    }
}
