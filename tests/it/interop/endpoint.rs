//! The servers of the matrix, and how a cell reaches each: an [`Endpoint`] is a server of a
//! make and version, over a transport, speaking a protocol version.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::dulwich_server::{Dulwich, DulwichServer, DulwichService};
use crate::git_daemon::{Daemon, ForcedV0};
use crate::gitolite::Gitolite;
use crate::harness::{path_arg, World};
use crate::jgit_server::JgitDaemon;
use crate::nginx::Nginx;
use crate::sshd::{self, Sshd};

/// Ids of `tests/interop/limitations.json`, which gives each its reason.
pub mod limitation {
    pub const JGIT_SHA256: &str = "jgit-4.11-no-sha256";
    pub const DULWICH_021_SHA256: &str = "dulwich-0.21-no-sha256";
    pub const DULWICH_12_SHA256_PUSH: &str = "dulwich-1.2-sha256-push-writes-no-refs";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
        }
    }
}

/// The protocol version the server speaks to kalandra.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    V0,
    V2,
}

/// What a server does with sha256 repositories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha256 {
    /// Serves and stores them.
    Yes,
    /// Has no sha256: no cell is run, and the page says why (a limitation id).
    No(&'static str),
    /// Has some, with a flaw a cell pins: as upstream / as downstream (limitation ids, or None
    /// where that side works).
    Partly {
        up: Option<&'static str>,
        down: Option<&'static str>,
    },
}

/// One way to reach the repositories under a world's root: a server of a make and version,
/// over a transport, speaking a protocol version.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `git`, `dulwich`, `jgit`.
    pub server: &'static str,
    pub version: String,
    /// `file`, `git`, `http`, `ssh`.
    pub transport: &'static str,
    pub wire: Wire,
    pub sha256: Sha256,
    /// The URL of the world root, to which a repository's relative path is appended.
    prefix: String,
    /// What kalandra's environment needs for this endpoint.
    env: Vec<(&'static str, OsString)>,
    /// The `update` hook the server needs in each repository it serves (gitolite's, by
    /// which it knows its repositories), linked in by [`Endpoint::adopt`].
    update_hook: Option<PathBuf>,
}

/// `git version 2.47.3` -> `2.47.3`.
pub fn git_version() -> String {
    let out = std::process::Command::new("git")
        .arg("--version")
        .output()
        .expect("can run git --version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("git version ")
        .unwrap_or_else(|| panic!("git --version printed {text:?}"))
        .to_owned()
}

impl Endpoint {
    fn git(transport: &'static str, wire: Wire, prefix: String) -> Self {
        Endpoint {
            server: "git",
            version: git_version(),
            transport,
            wire,
            sha256: Sha256::Yes,
            prefix,
            env: Vec::new(),
            update_hook: None,
        }
    }

    /// kalandra runs `git upload-pack` itself, in protocol v2.
    pub fn file(w: &World) -> Self {
        Self::git("file", Wire::V2, format!("file://{}/", w.root().display()))
    }

    /// kalandra runs `git upload-pack` itself, through `v0`'s `git` ([`ForcedV0::env`]).
    pub fn file_v0(w: &World, v0: &ForcedV0) -> Self {
        let mut e = Self::git("file", Wire::V0, format!("file://{}/", w.root().display()));
        e.env = v0.env();
        e
    }

    /// `git daemon`, started plainly (v2) or with [`Daemon::start_v0`] (v0).
    pub fn daemon(daemon: &Daemon, wire: Wire) -> Self {
        Self::git("git", wire, format!("git://127.0.0.1:{}/", daemon.port()))
    }

    /// `git http-backend` behind nginx: `/v2/` passes `Git-Protocol` on, `/v0/` drops it.
    pub fn http(nginx: &Nginx, wire: Wire) -> Self {
        let location = match wire {
            Wire::V0 => "v0",
            Wire::V2 => "v2",
        };
        Self::git("http", wire, nginx.url(location, ""))
    }

    /// OpenSSH's sshd running git's servers; v0 when it does not accept `GIT_PROTOCOL`.
    pub fn ssh(w: &World, sshd: &Sshd, wire: Wire) -> Self {
        Self::git("ssh", wire, format!("{}/", sshd.url(w.root())))
    }

    pub fn dulwich(server: &DulwichServer, service: DulwichService) -> Self {
        let modern = !server.version().starts_with("0.");
        Endpoint {
            server: "dulwich",
            version: server.version().to_owned(),
            transport: match service {
                DulwichService::Git => "git",
                DulwichService::Http => "http",
            },
            wire: Wire::V0,
            sha256: if modern {
                Sha256::Partly {
                    up: None,
                    down: Some(limitation::DULWICH_12_SHA256_PUSH),
                }
            } else {
                Sha256::No(limitation::DULWICH_021_SHA256)
            },
            prefix: server.base_url(),
            env: Vec::new(),
            update_hook: None,
        }
    }

    pub fn jgit(daemon: &JgitDaemon) -> Self {
        Endpoint {
            server: "jgit",
            version: daemon.version().to_owned(),
            transport: "git",
            wire: Wire::V0,
            sha256: Sha256::No(limitation::JGIT_SHA256),
            prefix: daemon.base_url(),
            env: Vec::new(),
            update_hook: None,
        }
    }

    /// gitolite's `gitolite-shell` behind sshd, which runs git's servers after its checks.
    pub fn gitolite(gitolite: &Gitolite, wire: Wire) -> Self {
        Endpoint {
            server: "gitolite",
            version: gitolite.version().to_owned(),
            transport: "ssh",
            wire,
            sha256: Sha256::Yes,
            prefix: gitolite.base_url(match wire {
                Wire::V0 => sshd::Protocol::V0,
                Wire::V2 => sshd::Protocol::V2,
            }),
            env: Vec::new(),
            update_hook: Some(gitolite.update_hook()),
        }
    }

    /// Makes the bare repository `repo` (under the world root) one the server serves.
    pub fn adopt(&self, repo: &Path) {
        if let Some(hook) = &self.update_hook {
            let link = repo.join("hooks/update");
            std::fs::create_dir_all(repo.join("hooks")).expect("can create the hooks directory");
            if !link.exists() {
                std::os::unix::fs::symlink(hook, &link)
                    .unwrap_or_else(|err| panic!("cannot link {}: {err}", link.display()));
            }
        }
    }

    /// The URL of `repo`, a path relative to the world root.
    pub fn url(&self, repo: &str) -> String {
        format!("{}{repo}", self.prefix)
    }

    pub fn label(&self) -> String {
        format!(
            "{} {} {} {}",
            self.server,
            self.version,
            self.transport,
            self.wire_name()
        )
    }

    fn wire_name(&self) -> &'static str {
        match self.wire {
            Wire::V0 => "v0",
            Wire::V2 => "v2",
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "server": self.server,
            "version": self.version,
            "transport": self.transport,
            "protocol": self.wire_name(),
        })
    }

    pub fn env(&self) -> &[(&'static str, OsString)] {
        &self.env
    }
}

/// git's own servers in one world: file, daemon, http-backend behind nginx, sshd, each in v2
/// and forced to v0. The two sshd's share the client key and known_hosts.
pub struct GitServers {
    pub endpoints: Vec<Endpoint>,
    _v0: ForcedV0,
    _daemons: (Daemon, Daemon),
    _nginx: Nginx,
    _sshd: (Sshd, Sshd),
}

impl GitServers {
    pub fn start(w: &World) -> Self {
        let v0 = ForcedV0::new(w.root());
        let daemons = (Daemon::start(w.root()), Daemon::start_v0(w.root(), &v0));
        let nginx = Nginx::start(w);
        let sshd_v2 = sshd::start_for(w, sshd::Protocol::V2);
        let sshd_v0 = Sshd::start(&w.root().join("sshd-v0"), sshd::Protocol::V0);
        sshd_v0.authorize(&sshd::client_key(w));
        sshd::trust(w, &sshd_v0);
        let endpoints = vec![
            Endpoint::file(w),
            Endpoint::file_v0(w, &v0),
            Endpoint::daemon(&daemons.0, Wire::V2),
            Endpoint::daemon(&daemons.1, Wire::V0),
            Endpoint::http(&nginx, Wire::V2),
            Endpoint::http(&nginx, Wire::V0),
            Endpoint::ssh(w, &sshd_v2, Wire::V2),
            Endpoint::ssh(w, &sshd_v0, Wire::V0),
        ];
        GitServers {
            endpoints,
            _v0: v0,
            _daemons: daemons,
            _nginx: nginx,
            _sshd: (sshd_v2, sshd_v0),
        }
    }
}

/// Every independent server the matrix knows. dulwich's git:// serves one connection at a time
/// and a sync holds both at once, so each dulwich git:// server has a twin that stands in for
/// it as downstream when it is also upstream.
pub struct OtherServers {
    pub endpoints: Vec<Endpoint>,
    twins: Vec<(Endpoint, Endpoint)>,
    _servers: (Vec<DulwichServer>, JgitDaemon),
}

impl OtherServers {
    pub fn start(w: &World) -> Self {
        let (mut endpoints, mut twins, mut servers) = (Vec::new(), Vec::new(), Vec::new());
        for dulwich in [Dulwich::Pypi, Dulwich::Debian] {
            for service in [DulwichService::Git, DulwichService::Http] {
                let server = DulwichServer::start(w, dulwich, service);
                let endpoint = Endpoint::dulwich(&server, service);
                servers.push(server);
                if service == DulwichService::Git {
                    let twin = DulwichServer::start(w, dulwich, service);
                    twins.push((endpoint.clone(), Endpoint::dulwich(&twin, service)));
                    servers.push(twin);
                }
                endpoints.push(endpoint);
            }
        }
        let jgit = JgitDaemon::start(w);
        endpoints.push(Endpoint::jgit(&jgit));
        OtherServers {
            endpoints,
            twins,
            _servers: (servers, jgit),
        }
    }

    /// `down`, or its twin if `down` is `up` and serves one connection at a time.
    pub fn downstream_for<'a>(&'a self, up: &Endpoint, down: &'a Endpoint) -> &'a Endpoint {
        self.twins
            .iter()
            .find(|(one, _)| one.prefix == up.prefix && one.prefix == down.prefix)
            .map_or(down, |(_, twin)| twin)
    }
}

/// Every server of the matrix in one world: git's, the independent ones and gitolite.
pub struct AllServers {
    git: GitServers,
    others: OtherServers,
    gitolite: [Endpoint; 2],
    _gitolite: Gitolite,
}

impl AllServers {
    pub fn start(w: &World) -> Self {
        let git = GitServers::start(w);
        let others = OtherServers::start(w);
        let gitolite = Gitolite::start(w);
        AllServers {
            git,
            others,
            gitolite: [
                Endpoint::gitolite(&gitolite, Wire::V2),
                Endpoint::gitolite(&gitolite, Wire::V0),
            ],
            _gitolite: gitolite,
        }
    }

    pub fn endpoints(&self) -> Vec<&Endpoint> {
        self.git
            .endpoints
            .iter()
            .chain(&self.others.endpoints)
            .chain(&self.gitolite)
            .collect()
    }

    /// `down`, or its twin if `down` is `up` and serves one connection at a time.
    pub fn downstream_for<'a>(&'a self, up: &Endpoint, down: &'a Endpoint) -> &'a Endpoint {
        self.others.downstream_for(up, down)
    }
}

/// Checks that `endpoint` really speaks its protocol version to kalandra (its debug log says
/// which), so that a cell labelled v0 is one. `repo` is relative to the world root.
pub fn assert_speaks(w: &World, endpoint: &Endpoint, repo: &str) {
    let mut env = endpoint.env().to_vec();
    env.push(("KALANDRA_LOG", "kalandra=debug".into()));
    let local = w.root().join(repo);
    endpoint.adopt(&local);
    let run = w.kalandra_with_env(
        w.root(),
        &["plan", &endpoint.url(repo), path_arg(&local)],
        &w.global_config(),
        &env,
    );
    run.assert_code(0);
    let v2 = run.stderr.contains("speaks protocol v2");
    assert_eq!(
        v2,
        endpoint.wire == Wire::V2,
        "{} should speak {:?} to kalandra{run}",
        endpoint.label(),
        endpoint.wire
    );
}
