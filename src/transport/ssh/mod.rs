//! `ssh://` and scp-like locations: the git service runs on the remote host
//! behind an ssh session, either with the built-in client ([`client`]) or,
//! when git would run a command of the user's (`GIT_SSH_COMMAND`,
//! `core.sshCommand`, `GIT_SSH`), with that command, as git does.
//!
//! The built-in client reads the same files as OpenSSH: the ssh config
//! ([`config`], with the user's `~/.ssh` from the passwd entry, [`home`])
//! resolves the URL into a [`target`]; the client reaches it directly,
//! through a `ProxyCommand` ([`proxy`]) or a `ProxyJump` chain, checks the
//! host key against the known-hosts files ([`known_hosts`]) and logs in
//! ([`auth`]).

mod auth;
mod client;
pub mod config;
mod config_files;
mod external;
pub mod home;
pub mod known_hosts;
mod proxy;
mod target;

use super::{ConnectOptions, Connection, Service};

pub use target::STRICT_ENV;

/// Reaching a repository over ssh failed. Messages name the user, host and
/// port; they never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {host_port}")]
    Connect {
        host_port: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {host_port} timed out after {secs} s")]
    ConnectTimeout { host_port: String, secs: u64 },
    #[error("the host key of {host_port} is not known (fingerprint {fingerprint}); refusing to connect. If the fingerprint is right, add the key to {known_hosts} (e.g. `{scan}`), or set StrictHostKeyChecking accept-new in ~/.ssh/config or {}=accept-new", target::STRICT_ENV)]
    UnknownHostKey {
        host_port: String,
        fingerprint: String,
        known_hosts: String,
        scan: String,
    },
    #[error("WARNING: the host key of {host_port} has CHANGED since it was recorded in {file} line {line}; someone may be intercepting the connection. Refusing to connect. If the change is legitimate, remove that line and trust the new key")]
    HostKeyChanged {
        host_port: String,
        file: String,
        line: usize,
    },
    #[error("the host key of {host_port} ({fingerprint}) is marked @revoked in {file} line {line}; refusing to connect")]
    HostKeyRevoked {
        host_port: String,
        fingerprint: String,
        file: String,
        line: usize,
    },
    #[error("the host certificate of {host_port} is signed by a trusted @cert-authority but {reason}; refusing to connect")]
    HostCertificate { host_port: String, reason: String },
    #[error("cannot run the ProxyCommand for {host_port}")]
    ProxyCommand {
        host_port: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the jump host {jump} could not open a connection to {host_port} (does it allow TCP forwarding?)")]
    Jump {
        jump: String,
        host_port: String,
        #[source]
        source: Box<russh::Error>,
    },
    #[error("refusing to put the {what} {value:?} into a ProxyCommand: it contains shell syntax")]
    UnsafeForProxyCommand { what: &'static str, value: String },
    #[error(
        "reaching {host} takes more than {max} ProxyJump hops; is there a loop in the ssh config?"
    )]
    TooManyHops { host: String, max: usize },
    #[error("{user}@{host_port}: publickey authentication failed; tried {tried}")]
    AuthFailed {
        user: String,
        host_port: String,
        tried: String,
    },
    #[error("the ssh key {path} is encrypted and no ssh-agent is available to use it; run `ssh-add {path}` in a session with an agent (SSH_AUTH_SOCK), or use an unencrypted deploy key")]
    EncryptedKey { path: String },
    #[error("the ssh session with {host_port} failed")]
    Session {
        host_port: String,
        #[source]
        source: russh::Error,
    },
    #[error("cannot run the ssh command from {variable}")]
    External {
        variable: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("ssh {command:?}: {reason}")]
    Output { command: String, reason: String },
    #[error("{variable} uses the \"simple\" ssh variant, which cannot take a port; set GIT_SSH_VARIANT=ssh if it accepts -p")]
    PortUnsupported { variable: &'static str },
}

/// Connects to `service` for `path` on `host`.
pub(super) async fn connect(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    path: &str,
    service: Service,
    options: &ConnectOptions,
) -> Result<Connection, Error> {
    let protocol_v2 = options.protocol_v2 && service == Service::UploadPack;
    let command = format!("{} {}", service.name(), sq_quote(path));
    let repo = match user {
        Some(user) => format!("{user}@{host}:{path}"),
        None => format!("{host}:{path}"),
    };
    if let Some(external) = external::from_settings().await {
        return external.connect(user, host, port, &command, protocol_v2, &repo);
    }
    let target = target::Target::resolve(user, host, port, options.settings.connect_timeout)?;
    client::connect(target, &command, protocol_v2).await
}

/// Runs `command` on `host` over ssh, as git-lfs runs `git-lfs-authenticate`,
/// and returns what it prints, at most `limit` bytes, within `within`.
pub(super) async fn output(
    user: Option<&str>,
    host: &str,
    port: Option<u16>,
    command: &str,
    settings: &super::TransportSettings,
    limit: usize,
) -> Result<Vec<u8>, Error> {
    use tokio::io::AsyncReadExt;
    let repo = host.to_owned();
    let connection = match external::from_settings().await {
        Some(external) => external.connect(user, host, port, command, false, &repo)?,
        None => {
            let target = target::Target::resolve(user, host, port, settings.connect_timeout)?;
            client::connect(target, command, false).await?
        }
    };
    let mut reader = connection.reader;
    let mut out = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = reader.read(&mut chunk).await?;
            if n == 0 || out.len() + n > limit {
                out.extend_from_slice(&chunk[..n.min(limit - out.len().min(limit))]);
                return Ok::<_, std::io::Error>(());
            }
            out.extend_from_slice(&chunk[..n]);
        }
    };
    match tokio::time::timeout(settings.idle_timeout, read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(source)) => Err(Error::Output {
            command: command.to_owned(),
            reason: source.to_string(),
        }),
        Err(_) => Err(Error::Output {
            command: command.to_owned(),
            reason: format!("no answer within {} s", settings.idle_timeout.as_secs()),
        }),
    }
}

/// Quotes a path for the remote shell the way git does (`sq_quote_buf`):
/// inside single quotes, with `'` and `!` taken out of them.
pub fn sq_quote(text: &str) -> String {
    let mut out = String::from("'");
    for c in text.chars() {
        match c {
            '\'' | '!' => {
                out.push('\'');
                out.push('\\');
                out.push(c);
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_git() {
        assert_eq!(sq_quote("/srv/repo.git"), "'/srv/repo.git'");
        assert_eq!(sq_quote("it's"), "'it'\\''s'");
        assert_eq!(sq_quote("wow!"), "'wow'\\!''");
        assert_eq!(sq_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
