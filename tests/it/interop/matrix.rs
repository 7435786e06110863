//! A [`Matrix`] runs cells in one world and records their outcomes.

use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use super::endpoint::{Endpoint, Hash, Sha256};
use crate::harness::{path_arg, World};

/// The directory the cells' outcomes go to, one `<test>.jsonl` per test.
const RESULTS_ENV: &str = "KALANDRA_INTEROP_RESULTS";

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
        // Only upstream's: the protocol version is upload-pack's (receive-pack has only v0), and
        // a forced-v0 `file://` downstream's environment would hold a `file://` upstream to v0.
        let env: Vec<(&str, Option<OsString>)> = up
            .env()
            .iter()
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
                detail: format!("kalandra exits {code}: {}", error_line(&run.stderr)),
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

/// kalandra's `error:` line in `stderr`, else its last line.
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|line| line.starts_with("kalandra: error:"))
        .or_else(|| stderr.lines().last())
        .unwrap_or("")
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
