//! The interoperability matrix's remote-helper cells: git's own `ls-remote`, `clone`, `fetch`,
//! `pull` and `push` through `kalandra::UP=>DOWN`, with UP and DOWN two repositories on one
//! server of the matrix (see `interop` for the servers and how outcomes are recorded).
//!
//! - `ls-remote` lists what a plain `git ls-remote` of UP's directory lists;
//! - `clone` gives UP's branches as `origin/*` and checks out UP's HEAD branch;
//! - `fetch` and `pull` bring a commit made upstream after the clone; `fetch, git in v0` does
//!   with git speaking v0 to the helper (its `fetch` capability, not `stateless-connect`);
//! - `push` makes DOWN's new branch name a commit UP has (DOWN starts empty), and DOWN passes
//!   `git fsck --connectivity-only`; `push a non-tip` does the same with a commit that no ref
//!   of UP names (in protocol v0, upload-pack serves only ref tips);
//! - `push ff` fast-forwards that branch, `push force` rewinds another one (refused without
//!   `--force`, DOWN unchanged), `push tag` pushes an annotated tag, `push delete` deletes a
//!   branch;
//! - `push from a shallow clone`: from a `--depth 1` clone, a new branch, its fast-forward,
//!   and a non-fast-forward that is refused with DOWN unchanged (each commit is pushed to UP
//!   first: the helper relays UP's objects).

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::{run_step, AllServers, Endpoint, Hash, Matrix, Outcome, Wire, BEHIND_THE_SERVER};
use crate::harness::{helper_dir, path_arg, Refs, World};

const OPERATIONS: [&str; 12] = [
    "ls-remote",
    "clone",
    "fetch",
    "fetch, git in v0",
    "pull",
    "push",
    "push a non-tip",
    "push ff",
    "push force",
    "push tag",
    "push delete",
    "push from a shallow clone",
];

impl Matrix<'_> {
    /// The helper cells against `server` as UP, with DOWN on `down_server`: the same server,
    /// or its twin for one that serves one connection at a time (a push holds a connection
    /// to each side at once, which no single-connection server can serve; docs/remote-helper.md).
    pub fn helper(&mut self, server: &Endpoint, down_server: &Endpoint) {
        let w = self.world();
        let (rel, dir) = self.cell_dir();
        let (up, down) = (dir.join("up.git"), dir.join("down.git"));
        self.upstream_copy(Hash::Sha1, &up);
        self.empty_bare(Hash::Sha1, &down);
        server.adopt(&up);
        down_server.adopt(&down);
        let pair = format!(
            "kalandra::{}=>{}",
            server.url(&format!("{rel}/up.git")),
            down_server.url(&format!("{rel}/down.git"))
        );
        let env = helper_env(server);
        // The local repository fetch, pull and push work in: a plain clone of UP's directory
        // whose origin is the pair, so that each cell stands on its own.
        let local = dir.join("local");
        w.git(w.root(), &["clone", "-q", path_arg(&up), path_arg(&local)]);
        w.git(&local, &["remote", "set-url", "origin", &pair]);

        for operation in OPERATIONS {
            let started = Instant::now();
            let cell = HelperCell {
                w,
                up: &up,
                down: &down,
                pair: &pair,
                dir: &dir,
                local: &local,
                env: &env,
                wire: server.wire,
            };
            let outcome = match run_step(operation, || cell.run(operation)) {
                Ok(()) => Outcome::Pass,
                Err(fail) => fail,
            };
            let mut cell = json!({
                "kind": "helper",
                "server": server.json(),
                "operation": operation,
                "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            });
            crate::interop::merge(&mut cell, outcome.json());
            self.record(
                format!(
                    "git {operation} through the helper against {}",
                    server.label()
                ),
                cell,
                &outcome,
            );
        }
    }
}

/// The helper's directory first on PATH, before whatever else the endpoint puts there.
fn helper_env(server: &Endpoint) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&'static str, OsString)> = server.env().to_vec();
    match env.iter_mut().find(|(name, _)| *name == "PATH") {
        Some((_, path)) => {
            let mut first = helper_dir().into_os_string();
            first.push(":");
            first.push(&*path);
            *path = first;
        }
        None => env.push(("PATH", crate::harness::path_with_first(&helper_dir()))),
    }
    env
}

struct HelperCell<'a> {
    w: &'a World,
    up: &'a Path,
    down: &'a Path,
    pair: &'a str,
    dir: &'a Path,
    local: &'a Path,
    env: &'a [(&'static str, OsString)],
    wire: Wire,
}

impl HelperCell<'_> {
    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let run = self.w.try_helper_git_env(dir, args, self.env);
        run.assert_ok();
        run.stdout
    }

    /// A new commit on UP's `develop` (its HEAD branch), made with plain git; its id.
    fn commit_upstream(&self, file: &str) -> String {
        let work = self.dir.join(format!("work-{file}"));
        let w = self.w;
        w.git(
            w.root(),
            &["clone", "-q", path_arg(self.up), path_arg(&work)],
        );
        let oid = w.commit_file(&work, file, "made upstream\n", "interop: upstream moves");
        w.git(
            &work,
            &[
                "push",
                "-q",
                BEHIND_THE_SERVER,
                "origin",
                "HEAD:refs/heads/develop",
            ],
        );
        oid
    }

    fn run(&self, operation: &str) {
        let w = self.w;
        match operation {
            "ls-remote" => {
                let through = self.git(w.root(), &["ls-remote", self.pair]);
                let direct = w.git(w.root(), &["ls-remote", path_arg(self.up)]);
                assert_eq!(
                    sorted_lines(&through),
                    sorted_lines(&direct),
                    "ls-remote through the helper differs from UP's own"
                );
            }
            "clone" => {
                let clone = self.dir.join("clone");
                self.git(w.root(), &["clone", "-q", self.pair, path_arg(&clone)]);
                let want: Refs = w
                    .refs(self.up)
                    .into_iter()
                    .filter_map(|(name, oid)| {
                        let branch = name.strip_prefix("refs/heads/")?;
                        Some((format!("refs/remotes/origin/{branch}"), oid))
                    })
                    .collect();
                let got: Refs = w
                    .refs(&clone)
                    .into_iter()
                    .filter(|(name, _)| {
                        name.starts_with("refs/remotes/origin/")
                            && name != "refs/remotes/origin/HEAD"
                    })
                    .collect();
                crate::harness::assert_refs_eq(&got, &want, "the clone's origin/* branches");
                assert_eq!(
                    w.head_target(&clone).as_deref(),
                    Some("refs/heads/develop"),
                    "the clone checks out UP's HEAD branch"
                );
                w.assert_fsck(&clone);
            }
            "fetch" => {
                let oid = self.commit_upstream("fetched.txt");
                self.git(self.local, &["fetch", "-q", "origin"]);
                assert_eq!(w.rev(self.local, "refs/remotes/origin/develop"), oid);
                w.assert_fsck(self.local);
            }
            "fetch, git in v0" => {
                // git speaks v0 to the helper, which then fetches into the repository itself
                // (its `fetch` capability) rather than proxying (`stateless-connect`).
                let oid = self.commit_upstream("fetched-v0.txt");
                self.git(
                    self.local,
                    &["-c", "protocol.version=0", "fetch", "-q", "origin"],
                );
                assert_eq!(w.rev(self.local, "refs/remotes/origin/develop"), oid);
                w.assert_fsck(self.local);
            }
            "pull" => {
                let oid = self.commit_upstream("pulled.txt");
                self.git(
                    self.local,
                    &["pull", "-q", "--ff-only", "origin", "develop"],
                );
                assert_eq!(w.rev(self.local, "HEAD"), oid, "pull fast-forwards develop");
                w.assert_fsck(self.local);
            }
            "push" => {
                let oid = w.rev(self.up, "refs/heads/main");
                // The helper's debug log says which protocol UP speaks to it.
                let mut env = self.env.to_vec();
                env.push(("KALANDRA_LOG", "kalandra=debug".into()));
                let run = w.try_helper_git_env(
                    self.local,
                    &["push", "-q", "origin", &format!("{oid}:refs/heads/pushed")],
                    &env,
                );
                run.assert_ok();
                assert_eq!(
                    run.stderr.contains("speaks protocol v2"),
                    self.wire == Wire::V2,
                    "UP should speak {:?} to the helper{run}",
                    self.wire
                );
                assert_eq!(
                    w.refs(self.down).get("refs/heads/pushed"),
                    Some(&oid),
                    "DOWN's new branch names UP's main"
                );
                w.assert_fsck(self.down);
            }
            "push a non-tip" => {
                let oid = w.rev(self.up, "refs/heads/main~1");
                self.git(
                    self.local,
                    &["push", "-q", "origin", &format!("{oid}:refs/heads/older")],
                );
                assert_eq!(
                    w.refs(self.down).get("refs/heads/older"),
                    Some(&oid),
                    "DOWN's new branch names UP's main~1"
                );
                w.assert_fsck(self.down);
            }
            "push ff" => {
                // `older` is main~1 since `push a non-tip`: main fast-forwards it.
                let oid = w.rev(self.up, "refs/heads/main");
                self.git(
                    self.local,
                    &["push", "-q", "origin", &format!("{oid}:refs/heads/older")],
                );
                assert_eq!(w.refs(self.down).get("refs/heads/older"), Some(&oid));
                w.assert_fsck(self.down);
            }
            "push force" => {
                // `pushed` is main since `push`: main~1 is a rewind.
                let oid = w.rev(self.up, "refs/heads/main~1");
                let before = w.refs(self.down);
                let spec = format!("{oid}:refs/heads/pushed");
                let refused =
                    w.try_helper_git_env(self.local, &["push", "origin", &spec], self.env);
                assert!(!refused.success(), "a rewind without --force{refused}");
                assert_eq!(w.refs(self.down), before, "DOWN after the refused rewind");
                self.git(self.local, &["push", "-q", "--force", "origin", &spec]);
                assert_eq!(w.refs(self.down).get("refs/heads/pushed"), Some(&oid));
                w.assert_fsck(self.down);
            }
            "push tag" => {
                // UP's first annotated tag.
                let listing = w.git(
                    self.up,
                    &[
                        "for-each-ref",
                        "--format=%(objecttype) %(refname)",
                        "refs/tags/",
                    ],
                );
                let name = listing
                    .lines()
                    .find_map(|l| l.strip_prefix("tag "))
                    .unwrap_or_else(|| panic!("no annotated tag in UP:\n{listing}"))
                    .to_owned();
                let tag = w.rev(self.up, &name);
                self.git(self.local, &["push", "-q", "origin", &name]);
                assert_eq!(w.refs(self.down).get(&name), Some(&tag));
                w.assert_fsck(self.down);
            }
            "push delete" => {
                self.git(self.local, &["push", "-q", "origin", ":refs/heads/older"]);
                assert_eq!(w.refs(self.down).get("refs/heads/older"), None);
            }
            "push from a shallow clone" => self.shallow_pushes(),
            other => unreachable!("no helper cell {other}"),
        }
    }
}

impl HelperCell<'_> {
    /// From a `--depth 1` clone of UP: a new branch, its fast-forward, then a sibling that
    /// is not one, which the helper refuses without `--force` (DOWN unchanged).
    fn shallow_pushes(&self) {
        let w = self.w;
        let shallow = self.dir.join("shallow");
        let up_url = format!("file://{}", self.up.display());
        w.git(
            w.root(),
            &["clone", "-q", "--depth", "1", &up_url, path_arg(&shallow)],
        );
        w.git(&shallow, &["remote", "add", "pair", self.pair]);
        // The helper relays UP's objects: each commit goes to UP first.
        let commit = |file: &str| {
            let oid = w.commit_file(&shallow, file, "shallow\n", file);
            w.git(
                &shallow,
                &[
                    "push",
                    "-q",
                    BEHIND_THE_SERVER,
                    "origin",
                    &format!("HEAD:refs/heads/{file}"),
                ],
            );
            oid
        };
        let first = commit("shallow-a");
        self.git(&shallow, &["push", "-q", "pair", "HEAD:refs/heads/shallow"]);
        assert_eq!(w.refs(self.down).get("refs/heads/shallow"), Some(&first));
        let second = commit("shallow-b");
        self.git(&shallow, &["push", "-q", "pair", "HEAD:refs/heads/shallow"]);
        assert_eq!(w.refs(self.down).get("refs/heads/shallow"), Some(&second));
        w.git(&shallow, &["reset", "-q", "--hard", &first]);
        commit("shallow-c");
        let before = w.refs(self.down);
        let refused = w.try_helper_git_env(
            &shallow,
            &["push", "pair", "HEAD:refs/heads/shallow"],
            self.env,
        );
        assert!(
            !refused.success(),
            "a non-fast-forward without --force{refused}"
        );
        assert_eq!(w.refs(self.down), before, "DOWN after the refused push");
        w.assert_fsck(self.down);
    }
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines
}

#[test]
fn remote_helper_full_matrix() {
    let w = World::new();
    let mut m = Matrix::new(&w, "remote_helper_full_matrix");
    let servers = AllServers::start(&w);
    for server in servers.endpoints() {
        m.helper(server, servers.downstream_for(server, server));
    }
    m.finish();
}
