//! Where and how to connect: a URL's user, host and port resolved through
//! the ssh config into a [`Target`], with the way to it ([`Via`]: direct,
//! a `ProxyCommand`, or a `ProxyJump` chain of targets of their own).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::config::{self, HostConfig, Proxy, StrictHostKeyChecking, Tokens, Warning};
use super::config_files::Disk;
use super::home::Account;
use super::known_hosts;
use super::Error;

/// The environment variable that overrides `StrictHostKeyChecking`.
pub const STRICT_ENV: &str = "KALANDRA_SSH_STRICT_HOST_KEY_CHECKING";

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
    pub fn path(&self) -> Option<PathBuf> {
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

    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The name and port the host key is known under.
    pub fn host_key_name(&self) -> (&str, u16) {
        match &self.host_key_alias {
            Some(alias) => (alias, 22),
            None => (&self.host, self.port),
        }
    }

    /// Every known-hosts file, user's first, as it is now.
    pub fn read_known_hosts(&self) -> Vec<known_hosts::File> {
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
