//! The built-in ssh client (russh): the way to the host (direct,
//! `ProxyCommand` or a `ProxyJump` chain), host key checking against the
//! known-hosts files, public-key authentication in OpenSSH's order, and one
//! session channel running the git service.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use russh::client::{self, Handle, Msg};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Algorithm, Certificate, EcdsaCurve};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelWriteHalf, Disconnect};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::config::{self, HostConfig, Proxy, StrictHostKeyChecking, Tokens, Warning};
use super::config_files::Disk;
use super::home::Account;
use super::known_hosts::{self, Presented, Verdict};
use super::proxy::CommandStream;
use super::Error;
use crate::transport::process::StderrTail;
use crate::transport::{Connection, ServerProcess};

/// The environment variable that overrides `StrictHostKeyChecking`.
pub const STRICT_ENV: &str = "KALANDRA_SSH_STRICT_HOST_KEY_CHECKING";

/// Pack data waiting between the ssh channel and the session.
const PIPE_BUFFER: usize = 64 * 1024;

/// How many `ProxyJump` hosts may stand in front of one another, counting
/// jump hosts that have jump hosts of their own: a loop in the config
/// stops here.
const MAX_HOPS: usize = 8;

/// Where the ssh-agent is (`IdentityAgent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSocket {
    None,
    /// The socket an environment variable names (`SSH_AUTH_SOCK` by default).
    Env(String),
    Path(PathBuf),
}

impl AgentSocket {
    fn path(&self) -> Option<PathBuf> {
        match self {
            Self::None => None,
            Self::Env(name) => std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            Self::Path(path) => Some(path.clone()),
        }
    }
}

/// How the connection reaches the host.
#[derive(Debug, Clone)]
pub enum Via {
    Direct,
    /// A `ProxyCommand`, tokens expanded.
    Command(String),
    /// A `direct-tcpip` channel through this (jump) host.
    Jump(Box<Target>),
}

/// Where and how to connect, after the ssh config is applied.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name actually dialled and looked up in `known_hosts`.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub certificate_files: Vec<PathBuf>,
    pub identities_only: bool,
    /// `UserKnownHostsFile`: an unknown key accepted is recorded in the
    /// first.
    pub known_hosts: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`: read, never written.
    pub global_known_hosts: Vec<PathBuf>,
    pub strict: StrictHostKeyChecking,
    pub connect_timeout: Duration,
    pub via: Via,
    /// `HostKeyAlias`: the name looked up in (and recorded to) the
    /// known-hosts files, without a port, and the principal a host
    /// certificate must name.
    pub host_key_alias: Option<String>,
    pub agent: AgentSocket,
}

impl Target {
    /// Resolves a URL's user, host and port through the ssh config.
    pub fn resolve(
        user: Option<&str>,
        alias: &str,
        port: Option<u16>,
        default_timeout: Duration,
    ) -> Result<Self, Error> {
        let account = Account::current();
        Self::resolve_hop(&account, user, alias, port, default_timeout, None, 0)
    }

    /// One host of the way: `via` replaces the host's own proxy settings
    /// (a host in a `ProxyJump` chain goes through the hop before it).
    fn resolve_hop(
        account: &Account,
        user: Option<&str>,
        alias: &str,
        port: Option<u16>,
        default_timeout: Duration,
        via: Option<Via>,
        hops: usize,
    ) -> Result<Self, Error> {
        if hops > MAX_HOPS {
            return Err(Error::TooManyHops {
                host: alias.to_owned(),
                max: MAX_HOPS,
            });
        }
        let home_text = account.home.to_string_lossy().into_owned();
        let sources = config::Sources::standard(&account.home);
        let cfg: HostConfig = config::resolve(
            &sources,
            config::Query {
                host: alias,
                user,
                local_user: &account.user,
            },
            &Disk,
        );
        warn_once(&cfg.warnings);
        let host = cfg
            .host_name
            .as_deref()
            .map(|h| h.replace("%h", alias))
            .unwrap_or_else(|| alias.to_owned());
        let user = user
            .map(str::to_owned)
            .or(cfg.user.clone())
            .unwrap_or_else(|| account.user.clone());
        let port = port.or(cfg.port).unwrap_or(22);
        let tokens = Tokens {
            home: &home_text,
            host: &host,
            original_host: alias,
            port,
            remote_user: &user,
            local_user: &account.user,
        };
        let expand = |raw: &String| PathBuf::from(tokens.expand_path(raw));
        let ssh_dir = account.home.join(".ssh");
        let identity_files = if cfg.identity_files.is_empty() {
            ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| ssh_dir.join(name))
                .collect()
        } else {
            cfg.identity_files.iter().map(expand).collect()
        };
        // `none` names no file (OpenSSH).
        let files = |files: &Vec<String>| -> Vec<PathBuf> {
            files
                .iter()
                .filter(|f| !f.eq_ignore_ascii_case("none"))
                .map(expand)
                .collect()
        };
        let known_hosts = match &cfg.user_known_hosts_files {
            Some(list) => files(list),
            None => vec![ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")],
        };
        let global_known_hosts = match &cfg.global_known_hosts_files {
            Some(list) => files(list),
            None => vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
        };
        let strict = std::env::var(STRICT_ENV)
            .ok()
            .and_then(|v| StrictHostKeyChecking::parse(&v))
            .or(cfg.strict_host_key_checking)
            .unwrap_or(StrictHostKeyChecking::Yes);
        let connect_timeout = cfg
            .connect_timeout
            .map(Duration::from_secs)
            .unwrap_or(default_timeout);
        let via = match via {
            Some(via) => via,
            None => match &cfg.proxy {
                None | Some(Proxy::None) => Via::Direct,
                Some(Proxy::Command(command)) => {
                    // The URL's host and user reach a shell here: refuse
                    // shell syntax in them, as OpenSSH does since 9.6
                    // (CVE-2023-51385). A URL can come from a repository.
                    for (what, value) in [("host", alias), ("user", user.as_str())] {
                        if !shell_safe(value) {
                            return Err(Error::UnsafeForProxyCommand {
                                what,
                                value: value.to_owned(),
                            });
                        }
                    }
                    Via::Command(tokens.expand(command))
                }
                Some(Proxy::Jump(chain)) => {
                    // The first hop is reached its own way; each later hop
                    // through the one before it.
                    let mut previous: Option<Via> = None;
                    for hop in chain {
                        let target = Self::resolve_hop(
                            account,
                            hop.user.as_deref(),
                            &hop.host,
                            hop.port,
                            default_timeout,
                            previous.take(),
                            hops + 1,
                        )?;
                        previous = Some(Via::Jump(Box::new(target)));
                    }
                    previous.unwrap_or(Via::Direct)
                }
            },
        };
        let agent = match cfg.identity_agent.as_deref() {
            None => AgentSocket::Env("SSH_AUTH_SOCK".into()),
            Some(none) if none.eq_ignore_ascii_case("none") => AgentSocket::None,
            Some("SSH_AUTH_SOCK") => AgentSocket::Env("SSH_AUTH_SOCK".into()),
            Some(var) if var.starts_with('$') => AgentSocket::Env(var[1..].to_owned()),
            Some(path) => AgentSocket::Path(PathBuf::from(tokens.expand_path(path))),
        };
        Ok(Self {
            host_key_alias: cfg.host_key_alias.clone(),
            agent,
            certificate_files: cfg.certificate_files.iter().map(expand).collect(),
            host,
            port,
            user,
            identity_files,
            identities_only: cfg.identities_only.unwrap_or(false),
            known_hosts,
            global_known_hosts,
            strict,
            connect_timeout,
            via,
        })
    }

    fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name and port the host key is known under.
    fn host_key_name(&self) -> (&str, u16) {
        match &self.host_key_alias {
            Some(alias) => (alias, 22),
            None => (&self.host, self.port),
        }
    }

    /// Every known-hosts file, user's first, as it is now.
    fn read_known_hosts(&self) -> Vec<known_hosts::File> {
        self.known_hosts
            .iter()
            .chain(&self.global_known_hosts)
            .filter_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                Some(known_hosts::File::parse(path.clone(), &text))
            })
            .collect()
    }
}

/// Whether a host or user name can go into a `ProxyCommand` unquoted:
/// OpenSSH's `valid_hostname`/`valid_ruser` test.
fn shell_safe(value: &str) -> bool {
    !value.starts_with('-')
        && !value
            .chars()
            .any(|c| "'`\"$\\;&<>|(){},".contains(c) || c.is_whitespace() || c.is_control())
}

/// Says each configuration warning once per run, however many hosts and
/// mirrors meet it.
fn warn_once(warnings: &[Warning]) {
    static SAID: Mutex<BTreeSet<Warning>> = Mutex::new(BTreeSet::new());
    let mut said = SAID.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for warning in warnings {
        if said.insert(warning.clone()) {
            tracing::warn!("{}", warning.message());
        }
    }
}

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

/// The public half of an identity: `<file>.pub`, or the public part that an
/// OpenSSH private key file keeps unencrypted.
fn public_key_of(path: &Path) -> Option<russh::keys::PublicKey> {
    russh::keys::load_public_key(with_suffix(path, ".pub"))
        .ok()
        .or_else(|| {
            let text = std::fs::read_to_string(path).ok()?;
            let key = russh::keys::ssh_key::PrivateKey::from_openssh(text).ok()?;
            Some(key.public_key().clone())
        })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Has the agent sign with the plain key for a certificate authentication.
/// russh would hand the agent the certificate, which an agent that holds
/// only the key (its certificate lives on disk) does not know; the
/// signature is the key's either way.
struct PlainKeySigner<'a, R: russh::keys::agent::client::AgentStream> {
    agent: &'a mut AgentClient<R>,
    key: russh::keys::PublicKey,
}

impl<R> russh::Signer for PlainKeySigner<'_, R>
where
    R: russh::keys::agent::client::AgentStream + Unpin + Send,
{
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let identity = AgentIdentity::PublicKey {
            key: self.key.clone(),
            comment: String::new(),
        };
        Ok(self
            .agent
            .sign_request(&identity, hash_alg, to_sign)
            .await?)
    }
}

/// The certificates for the key of `identity`, in OpenSSH's order:
/// `<identity>-cert.pub`, then each `CertificateFile` for this key.
fn certificates_for(
    target: &Target,
    identity: &Path,
    key: &russh::keys::ssh_key::PrivateKey,
) -> Vec<(PathBuf, Certificate)> {
    certificates_matching(
        std::iter::once(with_suffix(identity, "-cert.pub"))
            .chain(target.certificate_files.iter().cloned()),
        key.public_key().key_data(),
    )
}

/// The certificates among `paths` that are for `key`; unreadable files
/// and other keys' certificates are passed over.
fn certificates_matching(
    paths: impl Iterator<Item = PathBuf>,
    key: &KeyData,
) -> Vec<(PathBuf, Certificate)> {
    paths
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let cert = Certificate::from_openssh(text.trim()).ok()?;
            (cert.public_key() == key).then_some((path, cert))
        })
        .collect()
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
/// the identity files, each with its certificates first. Key material
/// never reaches a message.
async fn authenticate(handle: &mut Handle<Checker>, target: &Target) -> Result<(), Error> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let agent_socket = target.agent.path();
    let agent_in_use = agent_socket.is_some();
    // With IdentitiesOnly, OpenSSH offers only the agent's keys that match a
    // configured IdentityFile (an encrypted key unlocked in the agent).
    let allowed: Option<Vec<russh::keys::PublicKey>> = target.identities_only.then(|| {
        target
            .identity_files
            .iter()
            .filter_map(|p| public_key_of(p))
            .collect()
    });
    if let Some(socket) = &agent_socket {
        match AgentClient::connect_uds(socket).await {
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
                    // A certificate the agent holds (Teleport, `ssh-add` of a
                    // key with its -cert.pub) is its own identity; a plain key
                    // may have certificates on disk (Vault's signed keys).
                    let certificates = match &identity {
                        AgentIdentity::Certificate { certificate, .. } => {
                            vec![certificate.clone()]
                        }
                        AgentIdentity::PublicKey { .. } => certificates_matching(
                            target
                                .identity_files
                                .iter()
                                .map(|p| with_suffix(p, "-cert.pub"))
                                .chain(target.certificate_files.iter().cloned()),
                            key.key_data(),
                        )
                        .into_iter()
                        .map(|(_, cert)| cert)
                        .collect(),
                    };
                    for cert in certificates {
                        let mut signer = PlainKeySigner {
                            agent: &mut agent,
                            key: key.clone(),
                        };
                        match handle
                            .authenticate_certificate_with(&target.user, cert, hash, &mut signer)
                            .await
                        {
                            Ok(result) if result.success() => return Ok(()),
                            Ok(_) => {}
                            Err(e) => tracing::debug!("agent certificate refused: {e:?}"),
                        }
                    }
                    if let AgentIdentity::Certificate { .. } = identity {
                        continue;
                    }
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
    let session_error = |source| Error::Session {
        host_port: target.host_port(),
        source,
    };
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
        let key = Arc::new(key);
        for (cert_path, cert) in certificates_for(target, path, &key) {
            tried.push(format!("{} (certificate)", cert_path.display()));
            match handle
                .authenticate_openssh_cert(&target.user, Arc::clone(&key), cert)
                .await
            {
                Ok(result) if result.success() => return Ok(()),
                Ok(_) => {}
                Err(source) => return Err(session_error(source)),
            }
        }
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(key, rsa_hash);
        match handle.authenticate_publickey(&target.user, key).await {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(source) => return Err(session_error(source)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_syntax_is_kept_out_of_proxy_commands() {
        assert!(shell_safe("git.example"));
        assert!(shell_safe("git_user-1.x"));
        assert!(shell_safe("[::1]:22"));
        for bad in [
            "a;b", "$(id)", "`id`", "a b", "a|b", "a&b", "-oProxy", "a'b", "a\"b", "a\\b", "a\nb",
            "{a,b}", "a>b",
        ] {
            assert!(!shell_safe(bad), "{bad:?}");
        }
    }
}
