//! The built-in ssh client (russh): the way to the host (direct,
//! `ProxyCommand` or a `ProxyJump` chain), host key checking against the
//! known-hosts files, authentication ([`super::auth`]), and one session
//! channel running the git service.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use russh::client::{self, Handle, Msg};
use russh::keys::ssh_key::{Algorithm, EcdsaCurve};
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelWriteHalf, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::auth::authenticate;
use super::config::StrictHostKeyChecking;
use super::known_hosts::{self, Presented, Verdict};
use super::proxy::CommandStream;
use super::target::{Target, Via};
use super::Error;
use crate::transport::process::StderrTail;
use crate::transport::{Connection, ServerProcess};

/// Pack data waiting between the ssh channel and the session.
const PIPE_BUFFER: usize = 64 * 1024;
/// Why the server's host key was not trusted.
#[derive(Debug, Clone)]
enum HostKeyProblem {
    Unknown {
        fingerprint: String,
    },
    Changed {
        file: PathBuf,
        line: usize,
    },
    Revoked {
        file: PathBuf,
        line: usize,
        fingerprint: String,
    },
    BadCertificate {
        reason: String,
    },
}

struct Checker {
    target: Target,
    files: Vec<known_hosts::File>,
    problem: Arc<Mutex<Option<HostKeyProblem>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (presented, plain) = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => (Presented::Key(key), key.clone()),
            PublicKeyOrCertificate::Certificate(cert) => (
                Presented::Certificate(cert),
                russh::keys::PublicKey::from(cert.public_key().clone()),
            ),
        };
        let fingerprint = plain.fingerprint(HashAlg::Sha256).to_string();
        let (name, port) = self.target.host_key_name();
        let verdict = known_hosts::check(&self.files, name, port, presented, now);
        match verdict {
            Verdict::Trusted => Ok(true),
            Verdict::Revoked { file, line } => {
                self.record(HostKeyProblem::Revoked {
                    file,
                    line,
                    fingerprint,
                });
                Ok(false)
            }
            Verdict::Changed { file, line } => {
                self.record(HostKeyProblem::Changed { file, line });
                Ok(false)
            }
            Verdict::BadCertificate { reason } => {
                self.record(HostKeyProblem::BadCertificate { reason });
                Ok(false)
            }
            Verdict::Unknown => match self.target.strict {
                StrictHostKeyChecking::Yes => {
                    self.record(HostKeyProblem::Unknown { fingerprint });
                    Ok(false)
                }
                StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => {
                    self.learn(&plain, &fingerprint);
                    Ok(true)
                }
            },
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

    fn learn(&self, key: &russh::keys::PublicKey, fingerprint: &str) {
        let file = self.target.known_hosts.first().cloned().unwrap_or_default();
        if let Some(dir) = file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let (name, port) = self.target.host_key_name();
        match russh::keys::known_hosts::learn_known_hosts_path(name, port, key, &file) {
            Ok(()) => tracing::warn!(
                "added {} ({fingerprint}) to {}",
                self.target.host_port(),
                file.display()
            ),
            Err(e) => {
                tracing::warn!("could not record the host key in {}: {e}", file.display())
            }
        }
    }
}

/// A byte stream an ssh session can run over.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An authenticated session, with the jump hosts' sessions it runs
/// through (kept open as long as it is).
struct Opened {
    handle: Handle<Checker>,
    jumps: Vec<Handle<Checker>>,
}

/// Connects, authenticates and starts `command` on a session channel.
///
/// The connect timeout bounds all of it, every hop included, not only the
/// TCP connect and the key exchange: until the channel runs `command`, no
/// idle timeout watches the connection, and a server that went silent
/// during authentication or the channel request would otherwise hold the
/// sync until `--max-duration` (found by the fault sweep,
/// tests/it/faults.rs).
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
    tokio::time::timeout_at(deadline, async {
        let opened = open(&target).await?;
        start(opened, command, protocol_v2, &target).await
    })
    .await
    .map_err(timed_out)?
}

/// Reaches `target` its way, checks its host key and authenticates.
fn open(target: &Target) -> Pin<Box<dyn Future<Output = Result<Opened, Error>> + Send + '_>> {
    Box::pin(async move {
        let host_port = target.host_port();
        let mut jumps = Vec::new();
        let stream: Box<dyn Stream> = match &target.via {
            Via::Direct => {
                let socket = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
                    .await
                    .map_err(|source| Error::Connect {
                        host_port: host_port.clone(),
                        source,
                    })?;
                let _ = socket.set_nodelay(true);
                Box::new(socket)
            }
            Via::Command(command) => {
                Box::new(
                    CommandStream::spawn(command).map_err(|source| Error::ProxyCommand {
                        host_port: host_port.clone(),
                        source,
                    })?,
                )
            }
            Via::Jump(jump) => {
                let opened = open(jump).await?;
                let channel = opened
                    .handle
                    .channel_open_direct_tcpip(
                        target.host.as_str(),
                        u32::from(target.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|source| Error::Jump {
                        jump: jump.host_port(),
                        host_port: host_port.clone(),
                        source: Box::new(source),
                    })?;
                jumps = opened.jumps;
                jumps.push(opened.handle);
                Box::new(channel.into_stream())
            }
        };
        let mut handle = handshake(target, stream).await?;
        authenticate(&mut handle, target).await?;
        Ok(Opened { handle, jumps })
    })
}

/// The ssh handshake over `stream`, with the host key checked.
async fn handshake(target: &Target, stream: Box<dyn Stream>) -> Result<Handle<Checker>, Error> {
    let host_port = target.host_port();
    let files = target.read_known_hosts();
    // Ask for a host certificate only where a CA is trusted for the host,
    // so a server with a certificate and a known plain key stays known.
    let (name, port) = target.host_key_name();
    let host_key_certificates: &'static [Algorithm] =
        if known_hosts::has_authority_for(&files, name, port) {
            &[
                Algorithm::Ed25519,
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP384,
                },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP521,
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
            ]
        } else {
            &[]
        };
    let problem = Arc::new(Mutex::new(None));
    let checker = Checker {
        target: target.clone(),
        files,
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
            host_key_certificates: std::borrow::Cow::Borrowed(host_key_certificates),
            ..Default::default()
        },
        window_size: 8 * 1024 * 1024,
        ..Default::default()
    });
    match client::connect_stream(config, stream, checker).await {
        Ok(handle) => Ok(handle),
        Err(source) => {
            let problem = problem
                .lock()
                .expect("because the lock is never poisoned")
                .clone();
            Err(match problem {
                Some(HostKeyProblem::Unknown { fingerprint }) => Error::UnknownHostKey {
                    host_port,
                    fingerprint,
                    known_hosts: target
                        .known_hosts
                        .first()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    scan: scan_hint(target),
                },
                Some(HostKeyProblem::Changed { file, line }) => Error::HostKeyChanged {
                    host_port,
                    file: file.display().to_string(),
                    line,
                },
                Some(HostKeyProblem::Revoked {
                    file,
                    line,
                    fingerprint,
                }) => Error::HostKeyRevoked {
                    host_port,
                    fingerprint,
                    file: file.display().to_string(),
                    line,
                },
                Some(HostKeyProblem::BadCertificate { reason }) => {
                    Error::HostCertificate { host_port, reason }
                }
                None => Error::Session { host_port, source },
            })
        }
    }
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

/// Opens a session channel, asks for protocol v2 with an environment
/// request (a server without `AcceptEnv GIT_PROTOCOL` ignores it and the
/// service speaks v0), runs the command and turns the channel into a
/// reader/writer pair. Band data is copied into a bounded pipe; stderr
/// (extended data 1) is kept for error messages.
async fn start(
    opened: Opened,
    command: &str,
    protocol_v2: bool,
    target: &Target,
) -> Result<Connection, Error> {
    let session_error = |source| Error::Session {
        host_port: target.host_port(),
        source,
    };
    let Opened { handle, jumps } = opened;
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
                jumps,
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
    /// The jump hosts' sessions, nearest last: closed after this one.
    jumps: Vec<Handle<Checker>>,
    half: Arc<ChannelWriteHalf<Msg>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let half = Arc::clone(&self.half);
        let handle = self.handle.take();
        let jumps = std::mem::take(&mut self.jumps);
        spawn_detached(async move {
            let _ = half.close().await;
            if let Some(handle) = handle {
                let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
            }
            for jump in jumps.into_iter().rev() {
                let _ = jump.disconnect(Disconnect::ByApplication, "", "en").await;
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
