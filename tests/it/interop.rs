//! The interoperability matrix (issue 16): `kalandra sync UP DOWN` between real servers of
//! several makes, versions, transports and protocol versions, for sha1 and sha256.
//!
//! Each cell mirrors a fresh copy of a fixture from UP into an empty DOWN, changes upstream
//! (a fast-forward, a forced update, a moved annotated tag, a deleted branch), syncs again,
//! then syncs once more, which must change nothing. Every sync is checked by
//! [`World::sync_ok_env`]: the report, downstream's refs against upstream's, and
//! `git fsck --connectivity-only` downstream.
//!
//! A cell records its outcome. If `KALANDRA_INTEROP_RESULTS` names a directory, each test
//! writes its cells there as JSON lines (`<test>.jsonl`), from which
//! `tests/interop/gen_compat.py` generates `docs/compatibility.md`
//! (`tests/interop/matrix.sh` runs the whole matrix and the generator). A cell that fails
//! fails its test, after every other cell of the test has run.
//!
//! The normal run takes a slice in which each server is upstream and downstream at least
//! once, in v0 and v2, sha1 and (where the server has it) sha256; `full_matrix` (ignored
//! unless asked for, as `tests/interop/matrix.sh` does) runs every pair.

use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::dulwich_server::{Dulwich, DulwichPair, DulwichServer, DulwichService};
use crate::git_daemon::{Daemon, ForcedV0};
use crate::gitolite::Gitolite;
use crate::harness::{path_arg, World};
use crate::jgit_server::JgitDaemon;
use crate::nginx::Nginx;
use crate::sshd::{self, Sshd};

/// The directory the cells' outcomes go to, one `<test>.jsonl` per test.
const RESULTS_ENV: &str = "KALANDRA_INTEROP_RESULTS";

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
    fn name(self) -> &'static str {
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

/// What a cell found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Failed at a step, with the evidence.
    Fail {
        step: String,
        detail: String,
    },
    /// A known limitation of a server, pinned by the cell: the id, and what kalandra said.
    Limitation {
        id: &'static str,
        detail: String,
    },
    /// Not run: the servers cannot do it (a limitation id).
    Unsupported {
        id: &'static str,
    },
    /// Not run: known broken until the env var is set (the variable's name), and why.
    Gated {
        env: &'static str,
        reason: &'static str,
    },
}

impl Outcome {
    pub fn json(&self) -> Value {
        match self {
            Outcome::Pass => json!({"outcome": "pass"}),
            Outcome::Fail { step, detail } => {
                json!({"outcome": "fail", "step": step, "detail": detail})
            }
            Outcome::Limitation { id, detail } => {
                json!({"outcome": "limitation", "limitation": id, "detail": detail})
            }
            Outcome::Unsupported { id } => json!({"outcome": "unsupported", "limitation": id}),
            Outcome::Gated { env, reason } => {
                json!({"outcome": "gated", "env": env, "reason": reason})
            }
        }
    }
}

/// The history every cell starts from, and what changes upstream before the second sync.
struct History {
    script: &'static str,
    /// A branch that gets a new commit on top (a fast-forward).
    ff: &'static str,
    /// A branch rewritten from its parent (a forced update).
    force: &'static str,
    /// An annotated tag, moved to `tag_to`.
    tag: &'static str,
    tag_to: &'static str,
    /// A branch deleted upstream (pruned downstream).
    delete: &'static str,
}

const SHA1_HISTORY: History = History {
    script: "mirror.sh",
    ff: "develop",
    force: "feature/a",
    tag: "v1.1",
    tag_to: "release/1.x",
    delete: "feature/b",
};

const SHA256_HISTORY: History = History {
    script: "sha256.sh",
    ff: "topic",
    force: "main",
    tag: "v1",
    tag_to: "topic",
    delete: "feature/x",
};

/// For a plain `git push` into a served repository's directory: the server's own hooks (such
/// as gitolite's update hook, which refuses anyone it did not let in) are not run.
pub const BEHIND_THE_SERVER: &str = "--receive-pack=git -c core.hooksPath=/dev/null receive-pack";

/// Runs cells in one world and records their outcomes.
pub struct Matrix<'w> {
    w: &'w World,
    test: &'static str,
    sha1: PathBuf,
    sha256: PathBuf,
    cells: Vec<Value>,
    failures: Vec<String>,
}

impl<'w> Matrix<'w> {
    /// `test` names the results file.
    pub fn new(w: &'w World, test: &'static str) -> Self {
        let sha1 = w.fixture(SHA1_HISTORY.script).join("upstream");
        let sha256 = w.fixture(SHA256_HISTORY.script).join("upstream");
        Matrix {
            w,
            test,
            sha1,
            sha256,
            cells: Vec::new(),
            failures: Vec::new(),
        }
    }

    pub fn world(&self) -> &'w World {
        self.w
    }

    /// A fresh directory `cells/<n>` under the world root, relative and absolute.
    pub fn cell_dir(&self) -> (String, PathBuf) {
        let rel = format!("cells/{}", self.cells.len() + 1);
        let abs = self.w.root().join(&rel);
        std::fs::create_dir_all(&abs).expect("can create a cell directory");
        (rel, abs)
    }

    /// A bare copy of the `hash` fixture's upstream (every ref, HEAD as upstream's) at `repo`.
    pub fn upstream_copy(&self, hash: Hash, repo: &Path) {
        let fixture = match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        };
        self.w.git(
            self.w.root(),
            &["clone", "-q", "--mirror", path_arg(fixture), path_arg(repo)],
        );
    }

    /// An empty bare repository for `hash` at `repo`.
    pub fn empty_bare(&self, hash: Hash, repo: &Path) {
        self.w.git(
            self.w.root(),
            &[
                "init",
                "-q",
                "--bare",
                &format!("--object-format={}", hash.name()),
                path_arg(repo),
            ],
        );
    }

    /// Why a `hash` cell from `up` to `down` cannot run, if it cannot.
    fn unsupported(up: &Endpoint, down: &Endpoint, hash: Hash) -> Option<&'static str> {
        if hash == Hash::Sha1 {
            return None;
        }
        [up.sha256, down.sha256].into_iter().find_map(|s| match s {
            Sha256::No(id) => Some(id),
            _ => None,
        })
    }

    /// The sync cell: initial mirror, incremental sync, no-op sync.
    pub fn sync(&mut self, up: &Endpoint, down: &Endpoint, hash: Hash) {
        let started = Instant::now();
        let classified = std::cell::RefCell::new(Value::Null);
        let outcome = match Self::unsupported(up, down, hash) {
            Some(id) => Outcome::Unsupported { id },
            None => self.run_sync(up, down, hash, &classified),
        };
        let mut cell = json!({
            "classified": classified.into_inner(),
            "kind": "sync",
            "up": up.json(),
            "down": down.json(),
            "hash": hash.name(),
            "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        merge(&mut cell, outcome.json());
        self.record(
            format!("{} -> {} ({})", up.label(), down.label(), hash.name()),
            cell,
            &outcome,
        );
    }

    /// Keeps the cell's JSON and remembers a failure for [`Matrix::finish`].
    pub fn record(&mut self, label: String, cell: Value, outcome: &Outcome) {
        if let Outcome::Fail { step, detail } = outcome {
            self.failures
                .push(format!("{label}: failed at {step}:\n{detail}"));
        }
        self.cells.push(cell);
    }

    /// Runs the sync cell; `classified` gets how the incremental sync's report classified the
    /// fast-forward and the forced update (over v0 kalandra may not be able to tell).
    fn run_sync(
        &self,
        up: &Endpoint,
        down: &Endpoint,
        hash: Hash,
        classified: &std::cell::RefCell<Value>,
    ) -> Outcome {
        let (rel, dir) = self.cell_dir();
        let (up_repo, down_repo) = (dir.join("up.git"), dir.join("down.git"));
        self.upstream_copy(hash, &up_repo);
        self.empty_bare(hash, &down_repo);
        up.adopt(&up_repo);
        down.adopt(&down_repo);
        let (up_url, down_url) = (
            up.url(&format!("{rel}/up.git")),
            down.url(&format!("{rel}/down.git")),
        );
        let env: Vec<(&str, Option<OsString>)> = up
            .env()
            .iter()
            .chain(down.env())
            .map(|(name, value)| (*name, Some(value.clone())))
            .collect();
        let sync = |step: &str| {
            run_step(step, || {
                self.w
                    .sync_ok_env(&up_repo, &down_repo, &up_url, &down_url, &[], &env)
            })
        };

        let limitation = match (hash, up.sha256, down.sha256) {
            (Hash::Sha256, Sha256::Partly { up: Some(id), .. }, _) => Some(id),
            (Hash::Sha256, _, Sha256::Partly { down: Some(id), .. }) => Some(id),
            _ => None,
        };
        if let Some(id) = limitation {
            return self.known_limitation(id, &up_repo, &down_repo, &up_url, &down_url, &env);
        }

        if let Err(fail) = sync("the initial mirror") {
            return fail;
        }
        let history = match hash {
            Hash::Sha1 => &SHA1_HISTORY,
            Hash::Sha256 => &SHA256_HISTORY,
        };
        if let Err(fail) = run_step("the changes upstream", || {
            self.change_upstream(history, &up_repo, &dir.join("work"))
        }) {
            return fail;
        }
        match sync("the incremental sync") {
            Err(fail) => return fail,
            Ok((report, run)) => {
                let kind_of = |branch: &str| {
                    let name = format!("refs/heads/{branch}");
                    report.0["refs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["name"] == name.as_str())
                        .map_or(Value::Null, |r| r["kind"].clone())
                };
                let (ff, forced) = (kind_of(history.ff), kind_of(history.force));
                *classified.borrow_mut() = json!({"fast-forward": ff, "forced": forced});
                // Without `filter` upstream, kalandra may not tell (`undecidable`), but what
                // it tells must be true.
                if !(ff == "fast-forward" || ff == "undecidable")
                    || !(forced == "forced" || forced == "undecidable")
                {
                    return Outcome::Fail {
                        step: "the incremental sync's classification".into(),
                        detail: format!(
                            "the fast-forward of refs/heads/{} is reported as {ff} and the \
                             forced update of refs/heads/{} as {forced}:{run}",
                            history.ff, history.force
                        ),
                    };
                }
                let changed = report.refs();
                if changed.len() != 4 {
                    return Outcome::Fail {
                        step: "the incremental sync".into(),
                        detail: format!(
                            "4 refs changed upstream, the report lists {}:{run}",
                            changed.len()
                        ),
                    };
                }
            }
        }
        match sync("the no-op sync") {
            Err(fail) => fail,
            Ok(_) => Outcome::Pass,
        }
    }

    /// A cell where a server is known to fall short: the sync must not claim a mirror that
    /// downstream does not hold. Either kalandra fails (and the cell records what it said), or
    /// the mirror really is complete (then the limitation is gone, and the cell fails so that
    /// someone updates the page).
    fn known_limitation(
        &self,
        id: &'static str,
        up_repo: &Path,
        down_repo: &Path,
        up_url: &str,
        down_url: &str,
        env: &[(&str, Option<OsString>)],
    ) -> Outcome {
        let w = self.w;
        let run = w.kalandra_env(
            w.root(),
            &["sync", "--json", up_url, down_url],
            &w.global_config(),
            env,
        );
        let complete = run_step("checking downstream", || {
            w.assert_in_sync(up_repo, down_repo)
        })
        .is_ok();
        match (run.code, complete) {
            (0, true) => Outcome::Fail {
                step: "the known limitation".into(),
                detail: format!(
                    "limitation {id} is gone: the mirror is complete; update \
                     tests/interop/limitations.json and the endpoint{run}"
                ),
            },
            (0, false) => Outcome::Fail {
                step: "the initial mirror".into(),
                detail: format!(
                    "kalandra reported success, but downstream does not hold upstream's refs \
                     (limitation {id}); downstream has {:?}{run}",
                    w.refs(down_repo)
                ),
            },
            (code, _) => Outcome::Limitation {
                id,
                detail: format!(
                    "kalandra exits {code}: {}",
                    last_lines(&run.stderr, 3).trim()
                ),
            },
        }
    }

    /// Clone `up_repo` into `work`, make the [`History`] changes there and push them back.
    fn change_upstream(&self, h: &History, up_repo: &Path, work: &Path) {
        let w = self.w;
        w.git(
            w.root(),
            &["clone", "-q", path_arg(up_repo), path_arg(work)],
        );
        w.checkout(work, "ff-work", Some(&format!("origin/{}", h.ff)));
        w.commit_file(
            work,
            "interop.txt",
            "fast-forward\n",
            "interop: fast-forward",
        );
        w.checkout(work, "force-work", Some(&format!("origin/{}~1", h.force)));
        w.commit_file(work, "interop.txt", "rewritten\n", "interop: rewritten");
        w.git(
            work,
            &[
                "tag",
                "-f",
                "-a",
                "-m",
                "moved",
                h.tag,
                &format!("origin/{}", h.tag_to),
            ],
        );
        w.git(
            work,
            &[
                "push",
                "-q",
                "--force",
                BEHIND_THE_SERVER,
                "origin",
                &format!("ff-work:refs/heads/{}", h.ff),
                &format!("force-work:refs/heads/{}", h.force),
                &format!("refs/tags/{0}:refs/tags/{0}", h.tag),
                &format!(":refs/heads/{}", h.delete),
            ],
        );
    }

    /// Write the results (if asked to) and fail if any cell failed.
    pub fn finish(self) {
        if let Some(dir) = std::env::var_os(RESULTS_ENV).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir).expect("can create the results directory");
            let text: String = self.cells.iter().map(|c| format!("{c}\n")).collect();
            let path = dir.join(format!("{}.jsonl", self.test));
            std::fs::write(&path, text)
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} cells failed:\n\n{}",
            self.failures.len(),
            self.cells.len(),
            self.failures.join("\n\n")
        );
    }
}

/// Adds `extra`'s fields to the object `into`.
pub fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs one step of a cell; a panic (a failed check of the harness) becomes a failed outcome
/// naming the step, with the panic's message as the evidence.
pub fn run_step<T>(step: &str, f: impl FnOnce() -> T) -> Result<T, Outcome> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let detail = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Outcome::Fail {
            step: step.to_owned(),
            detail,
        }
    })
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

    /// The endpoint over `transport` speaking `wire`.
    pub fn get(&self, transport: &str, wire: Wire) -> &Endpoint {
        self.endpoints
            .iter()
            .find(|e| e.transport == transport && e.wire == wire)
            .unwrap_or_else(|| panic!("no git endpoint over {transport} in {wire:?}"))
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

/// `endpoints[i]` -> `endpoints[(i + 1) % n]`: each is upstream once and downstream once.
fn ring(m: &mut Matrix, endpoints: &[&Endpoint], hash: Hash) {
    for (i, up) in endpoints.iter().enumerate() {
        m.sync(up, endpoints[(i + 1) % endpoints.len()], hash);
    }
}

#[test]
fn git_servers_in_v0_and_v2() {
    let w = World::new();
    let mut m = Matrix::new(&w, "git_servers_in_v0_and_v2");
    let git = GitServers::start(&w);
    for endpoint in &git.endpoints {
        assert_speaks(&w, endpoint, "mirror/upstream");
    }
    let all: Vec<&Endpoint> = git.endpoints.iter().collect();
    ring(&mut m, &all, Hash::Sha1);
    ring(
        &mut m,
        &[
            git.get("file", Wire::V0),
            git.get("git", Wire::V2),
            git.get("http", Wire::V0),
            git.get("ssh", Wire::V2),
        ],
        Hash::Sha256,
    );
    m.finish();
}

#[test]
fn dulwich_from_pypi() {
    let w = World::new();
    let mut m = Matrix::new(&w, "dulwich_from_pypi");
    let v0 = ForcedV0::new(w.root());
    let (file, file_v0) = (Endpoint::file(&w), Endpoint::file_v0(&w, &v0));
    let dulwich = DulwichPair::start(&w, Dulwich::Pypi);
    let (git, http) = (&dulwich.git, &dulwich.http);
    assert!(
        git.version.starts_with("1.2."),
        "tests/interop/requirements.txt pins dulwich 1.2, the venv has {}",
        git.version
    );
    assert_speaks(&w, git, "mirror/upstream");
    ring(&mut m, &[git, &file, http, &file_v0], Hash::Sha1);
    m.sync(git, http, Hash::Sha1);
    m.sync(&file, git, Hash::Sha256);
    m.sync(http, &file, Hash::Sha256);
    m.finish();
}

#[test]
fn dulwich_from_debian() {
    let w = World::new();
    let mut m = Matrix::new(&w, "dulwich_from_debian");
    let file = Endpoint::file(&w);
    let dulwich = DulwichPair::start(&w, Dulwich::Debian);
    let (git, http) = (&dulwich.git, &dulwich.http);
    assert_speaks(&w, http, "mirror/upstream");
    ring(&mut m, &[git, &file, http], Hash::Sha1);
    m.sync(&file, git, Hash::Sha256);
    m.finish();
}

#[test]
fn jgit_daemon() {
    let w = World::new();
    let mut m = Matrix::new(&w, "jgit_daemon");
    let v0 = ForcedV0::new(w.root());
    let (file, file_v0) = (Endpoint::file(&w), Endpoint::file_v0(&w, &v0));
    let jgit = JgitDaemon::start(&w);
    let jgit = Endpoint::jgit(&jgit);
    assert_speaks(&w, &jgit, "mirror/upstream");
    m.sync(&jgit, &file, Hash::Sha1);
    m.sync(&file_v0, &jgit, Hash::Sha1);
    m.sync(&jgit, &file, Hash::Sha256);
    m.finish();
}

#[test]
#[ignore = "the full matrix takes minutes: tests/interop/matrix.sh runs it"]
fn full_matrix() {
    let w = World::new();
    let mut m = Matrix::new(&w, "full_matrix");
    let git = GitServers::start(&w);
    let others = OtherServers::start(&w);
    let gitolite = Gitolite::start(&w);
    let gitolite = [
        Endpoint::gitolite(&gitolite, Wire::V2),
        Endpoint::gitolite(&gitolite, Wire::V0),
    ];
    let endpoints: Vec<&Endpoint> = git
        .endpoints
        .iter()
        .chain(&others.endpoints)
        .chain(&gitolite)
        .collect();
    for endpoint in &endpoints {
        assert_speaks(&w, endpoint, "mirror/upstream-bare.git");
    }
    for hash in [Hash::Sha1, Hash::Sha256] {
        for up in &endpoints {
            for down in &endpoints {
                m.sync(up, others.downstream_for(up, down), hash);
            }
        }
    }
    m.finish();
}

#[test]
fn gitolite_behind_sshd() {
    let w = World::new();
    let mut m = Matrix::new(&w, "gitolite_behind_sshd");
    let gitolite = Gitolite::start(&w);
    let (v2, v0) = (
        Endpoint::gitolite(&gitolite, Wire::V2),
        Endpoint::gitolite(&gitolite, Wire::V0),
    );
    let file = Endpoint::file(&w);
    for endpoint in [&v2, &v0] {
        assert_speaks(&w, endpoint, "mirror/upstream-bare.git");
    }
    ring(&mut m, &[&v2, &file, &v0], Hash::Sha1);
    m.sync(&file, &v2, Hash::Sha256);
    m.sync(&v0, &file, Hash::Sha256);
    m.finish();
}
