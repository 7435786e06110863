//! The built-in ssh client (russh): host key checking against
//! `known_hosts`, public-key authentication in OpenSSH's order, and one
//! session channel running the git service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use std::pin::Pin;
use std::task::{Context, Poll};

use russh::client::Msg;
use russh::{ChannelMsg, ChannelWriteHalf, Disconnect};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::config::{self, HostConfig, StrictHostKeyChecking};
use super::Error;
use crate::transport::process::StderrTail;
use crate::transport::{Connection, ServerProcess};

/// The environment variable that overrides `StrictHostKeyChecking`.
pub const STRICT_ENV: &str = "KALANDRA_SSH_STRICT_HOST_KEY_CHECKING";

/// Pack data waiting between the ssh channel and the session.
const PIPE_BUFFER: usize = 64 * 1024;

/// Where and how to connect, after `~/.ssh/config` is applied.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name actually dialled and looked up in `known_hosts`.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub known_hosts: Vec<PathBuf>,
    pub strict: StrictHostKeyChecking,
    pub connect_timeout: Duration,
}

impl Target {
    /// Resolves a URL's user, host and port through `~/.ssh/config`.
    pub fn resolve(
        user: Option<&str>,
        alias: &str,
        port: Option<u16>,
        default_timeout: Duration,
    ) -> Self {
        let home = std::env::var("HOME").unwrap_or_default();
        let text =
            std::fs::read_to_string(Path::new(&home).join(".ssh/config")).unwrap_or_default();
        let cfg: HostConfig = config::for_host(&text, alias);
        let local_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "root".to_owned());
        let host = cfg
            .host_name
            .as_deref()
            .map(|h| h.replace("%h", alias))
            .unwrap_or_else(|| alias.to_owned());
        let user = user
            .map(str::to_owned)
            .or(cfg.user.clone())
            .unwrap_or_else(|| local_user.clone());
        let expand =
            |raw: &str| PathBuf::from(config::expand_path(raw, &home, &host, &user, &local_user));
        let identity_files = if cfg.identity_files.is_empty() {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| Path::new(&home).join(".ssh").join(name))
                .collect()
        } else {
            cfg.identity_files.iter().map(|f| expand(f)).collect()
        };
        let known_hosts = match &cfg.user_known_hosts_files {
            Some(files) => files.iter().map(|f| expand(f)).collect(),
            None => vec![
                Path::new(&home).join(".ssh/known_hosts"),
                Path::new(&home).join(".ssh/known_hosts2"),
            ],
        };
        let strict = std::env::var(STRICT_ENV)
            .ok()
            .and_then(|v| StrictHostKeyChecking::parse(&v))
            .or(cfg.strict_host_key_checking)
            .unwrap_or(StrictHostKeyChecking::Yes);
        Self {
            host,
            port: port.or(cfg.port).unwrap_or(22),
            user,
            identity_files,
            identities_only: cfg.identities_only.unwrap_or(false),
            known_hosts,
            strict,
            connect_timeout: cfg
                .connect_timeout
                .map(Duration::from_secs)
                .unwrap_or(default_timeout),
        }
    }

    fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the server's host key was not trusted.
#[derive(Debug, Clone)]
enum HostKeyProblem {
    Unknown { fingerprint: String },
    Changed { file: PathBuf, line: usize },
}

struct Checker {
    target: Target,
    problem: Arc<Mutex<Option<HostKeyProblem>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.record(HostKeyProblem::Unknown {
                fingerprint: "(a host certificate, which is not supported)".into(),
            });
            return Ok(false);
        };
        for file in &self.target.known_hosts {
            match russh::keys::check_known_hosts_path(
                &self.target.host,
                self.target.port,
                key,
                file,
            ) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(russh::keys::Error::KeyChanged { line }) => {
                    self.record(HostKeyProblem::Changed {
                        file: file.clone(),
                        line,
                    });
                    return Ok(false);
                }
                Err(e) => tracing::debug!("skipping {}: {e}", file.display()),
            }
        }
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        match self.target.strict {
            StrictHostKeyChecking::Yes => {
                self.record(HostKeyProblem::Unknown { fingerprint });
                Ok(false)
            }
            StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => {
                let file = self.target.known_hosts.first().cloned().unwrap_or_default();
                if let Some(dir) = file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match russh::keys::known_hosts::learn_known_hosts_path(
                    &self.target.host,
                    self.target.port,
                    key,
                    &file,
                ) {
                    Ok(()) => tracing::warn!(
                        "added {} ({fingerprint}) to {}",
                        self.target.host_port(),
                        file.display()
                    ),
                    Err(e) => {
                        tracing::warn!("could not record the host key in {}: {e}", file.display())
                    }
                }
                Ok(true)
            }
        }
    }
}

impl Checker {
    fn record(&self, problem: HostKeyProblem) {
        *self
            .problem
            .lock()
            .expect("because the lock is never poisoned") = Some(problem);
    }
}

/// Connects, authenticates and starts `command` on a session channel.
///
/// The connect timeout bounds all of it, not only the TCP connect and the
/// key exchange: until the channel runs `command`, no idle timeout watches
/// the connection, and a server that went silent during authentication or
/// the channel request would otherwise hold the sync until `--max-duration`
/// (found by the fault sweep, tests/it/faults.rs).
pub async fn connect(
    target: Target,
    command: &str,
    protocol_v2: bool,
) -> Result<Connection, Error> {
    let deadline = tokio::time::Instant::now() + target.connect_timeout;
    let timed_out = |_| Error::ConnectTimeout {
        host_port: target.host_port(),
        secs: target.connect_timeout.as_secs(),
    };
    let host_port = target.host_port();
    let socket = tokio::time::timeout_at(
        deadline,
        tokio::net::TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(timed_out)?
    .map_err(|source| Error::Connect {
        host_port: host_port.clone(),
        source,
    })?;
    let _ = socket.set_nodelay(true);

    let problem = Arc::new(Mutex::new(None));
    let checker = Checker {
        target: target.clone(),
        problem: Arc::clone(&problem),
    };
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        // Packs are already compressed; what costs is the cipher. AES-GCM
        // runs on the CPU's AES instructions, ahead of ChaCha20.
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_128_GCM,
                russh::cipher::AES_256_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            ..Default::default()
        },
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    });
    let handshake =
        tokio::time::timeout_at(deadline, client::connect_stream(config, socket, checker))
            .await
            .map_err(timed_out)?;
    let mut handle = match handshake {
        Ok(handle) => handle,
        Err(source) => {
            let problem = problem
                .lock()
                .expect("because the lock is never poisoned")
                .clone();
            return Err(match problem {
                Some(HostKeyProblem::Unknown { fingerprint }) => Error::UnknownHostKey {
                    host_port,
                    fingerprint,
                    known_hosts: target
                        .known_hosts
                        .first()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    scan: scan_hint(&target),
                },
                Some(HostKeyProblem::Changed { file, line }) => Error::HostKeyChanged {
                    host_port,
                    file: file.display().to_string(),
                    line,
                },
                None => Error::Session { host_port, source },
            });
        }
    };
    tokio::time::timeout_at(deadline, async {
        authenticate(&mut handle, &target).await?;
        start(handle, command, protocol_v2, &target).await
    })
    .await
    .map_err(timed_out)?
}

/// The public half of an identity: `<file>.pub`, or the public part that an
/// OpenSSH private key file keeps unencrypted.
fn public_key_of(path: &Path) -> Option<russh::keys::PublicKey> {
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    russh::keys::load_public_key(PathBuf::from(pub_path))
        .ok()
        .or_else(|| {
            let text = std::fs::read_to_string(path).ok()?;
            let key = russh::keys::ssh_key::PrivateKey::from_openssh(text).ok()?;
            Some(key.public_key().clone())
        })
}

fn scan_hint(target: &Target) -> String {
    let file = target
        .known_hosts
        .first()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.ssh/known_hosts".into());
    if target.port == 22 {
        format!("ssh-keyscan {} >> {file}", target.host)
    } else {
        format!("ssh-keyscan -p {} {} >> {file}", target.port, target.host)
    }
}

/// Public-key authentication in OpenSSH's order: the agent's keys, then
/// the identity files. Key material never reaches a message.
async fn authenticate(handle: &mut Handle<Checker>, target: &Target) -> Result<(), Error> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let agent_in_use = std::env::var_os("SSH_AUTH_SOCK").is_some();
    // With IdentitiesOnly, OpenSSH offers only the agent's keys that match a
    // configured IdentityFile (an encrypted key unlocked in the agent).
    let allowed: Option<Vec<russh::keys::PublicKey>> = target.identities_only.then(|| {
        target
            .identity_files
            .iter()
            .filter_map(|p| public_key_of(p))
            .collect()
    });
    if agent_in_use {
        match AgentClient::connect_env().await {
            Ok(mut agent) => {
                let identities: Vec<_> = agent
                    .request_identities()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|identity| match &allowed {
                        Some(allowed) => allowed
                            .iter()
                            .any(|k| k.key_data() == identity.public_key().key_data()),
                        None => true,
                    })
                    .collect();
                tried.push(format!("ssh-agent ({} keys)", identities.len()));
                for identity in identities {
                    let key = identity.public_key().into_owned();
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash
                    } else {
                        None
                    };
                    match handle
                        .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("agent key refused: {e:?}"),
                    }
                }
            }
            Err(e) => tracing::debug!("no usable ssh-agent: {e}"),
        }
    }
    let mut encrypted = None;
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                tried.push(format!("{} (encrypted)", path.display()));
                encrypted.get_or_insert_with(|| path.clone());
                continue;
            }
            Err(e) => {
                tracing::debug!("cannot load {}: {e}", path.display());
                tried.push(format!("{} (unreadable)", path.display()));
                continue;
            }
        };
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        match handle.authenticate_publickey(&target.user, key).await {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(source) => {
                return Err(Error::Session {
                    host_port: target.host_port(),
                    source,
                })
            }
        }
    }
    if let Some(path) = encrypted {
        if !agent_in_use {
            return Err(Error::EncryptedKey {
                path: path.display().to_string(),
            });
        }
    }
    Err(Error::AuthFailed {
        user: target.user.clone(),
        host_port: target.host_port(),
        tried: if tried.is_empty() {
            "no key found (no ssh-agent, no IdentityFile, no ~/.ssh/id_* file)".into()
        } else {
            tried.join(", ")
        },
    })
}

/// Opens a session channel, asks for protocol v2 with an environment
/// request (a server without `AcceptEnv GIT_PROTOCOL` ignores it and the
/// service speaks v0), runs the command and turns the channel into a
/// reader/writer pair. Band data is copied into a bounded pipe; stderr
/// (extended data 1) is kept for error messages.
async fn start(
    handle: Handle<Checker>,
    command: &str,
    protocol_v2: bool,
    target: &Target,
) -> Result<Connection, Error> {
    let session_error = |source| Error::Session {
        host_port: target.host_port(),
        source,
    };
    let channel = handle.channel_open_session().await.map_err(session_error)?;
    if protocol_v2 {
        channel
            .set_env(false, "GIT_PROTOCOL", "version=2")
            .await
            .map_err(session_error)?;
    }
    channel.exec(false, command).await.map_err(session_error)?;
    let (mut read_half, write_half) = channel.split();
    let write_half = Arc::new(write_half);
    let writer = ChannelWriter {
        tx: Box::pin(write_half.make_writer()),
        half: Arc::clone(&write_half),
        shut: false,
    };
    let (mut pipe_in, pipe_out) = tokio::io::duplex(PIPE_BUFFER);
    let stderr = StderrTail::default();
    let sink = stderr.clone();
    let repo = format!("{}@{}", target.user, target.host_port());
    let pump = tokio::spawn(async move {
        let mut open = true;
        while let Some(message) = read_half.wait().await {
            match message {
                ChannelMsg::Data { data } if open => {
                    // The session went away: keep draining for stderr.
                    open = pipe_in.write_all(&data).await.is_ok();
                }
                // Kept as a bounded tail: stderr is not progress, and a
                // server may write it without end.
                ChannelMsg::ExtendedData { data, ext: 1 } => sink.push(&repo, &data),
                ChannelMsg::Eof => {
                    let _ = pipe_in.shutdown().await;
                    open = false;
                }
                ChannelMsg::ExitStatus { exit_status } if exit_status != 0 => {
                    tracing::debug!("{repo}: the remote command exited with {exit_status}");
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
    });
    Ok(Connection {
        reader: Box::pin(pipe_out),
        writer: Box::pin(writer),
        process: Some(ServerProcess::remote(
            Box::new(Session {
                handle: Some(handle),
                half: write_half,
            }),
            stderr,
            pump,
        )),
    })
}

/// The channel's writer. Shut down, it sends EOF: the pack is complete.
/// Dropped without that (the relay gave up), it sends EOF all the same, so
/// the remote service fails now (receive-pack: "unpack eof") instead of
/// waiting for the rest of a pack that will never come. Not a close: russh
/// forgets a channel it closed, and the service's last words and exit
/// would be lost; [`Session`] closes it when the connection goes.
struct ChannelWriter {
    tx: Pin<Box<dyn AsyncWrite + Send>>,
    half: Arc<ChannelWriteHalf<Msg>>,
    shut: bool,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tx.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = self.tx.as_mut().poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = poll {
            self.shut = true;
        }
        poll
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if self.shut {
            return;
        }
        let half = Arc::clone(&self.half);
        spawn_detached(async move {
            let _ = half.eof().await;
        });
    }
}

/// The ssh session behind a connection. Dropped, it closes the channel and
/// disconnects, rather than leaving both to the server's timeouts.
struct Session {
    handle: Option<Handle<Checker>>,
    half: Arc<ChannelWriteHalf<Msg>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let half = Arc::clone(&self.half);
        let handle = self.handle.take();
        spawn_detached(async move {
            let _ = half.close().await;
            if let Some(handle) = handle {
                let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            }
        });
    }
}

/// Runs `cleanup` on the current runtime, if there still is one (there is
/// not while the process exits, and then the kernel closes the socket).
fn spawn_detached(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(cleanup);
    }
}
