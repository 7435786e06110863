//! The remote helper against a protocol v0 upstream.
//!
//! UP is forced to v0 the way servers without v2 behave: the helper's `git` is a wrapper that
//! unsets `GIT_PROTOCOL` before running the real one ([`v0_exec_path`]), so its
//! `git upload-pack` answers with a v0 ref advertisement and serves only its advertised tips
//! (a want of anything else fails with `not our ref`).
//!
//! After every push, DOWN passes `git fsck --connectivity-only` and holds exactly the refs the
//! test expects.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::harness::{assert_refs_eq, file_url, path_arg, GitRun, Refs, World};
use crate::remote_helper::Fx;

/// `GIT_EXEC_PATH` for the git that runs the helper, so that the helper's `git upload-pack`
/// speaks v0: git puts its exec path first on the PATH of what it runs (and runs the helper
/// through it), so a wrapper `git` there, which unsets `GIT_PROTOCOL` and runs the real git,
/// is the `git` the helper finds. Everything else in the directory links to the real exec
/// path; the wrapper keeps `GIT_EXEC_PATH`, or the next git down would put the real exec path
/// first again.
fn v0_exec_path(w: &World) -> OsString {
    let real_exec_path = std::process::Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("can ask git for its exec path");
    let real_exec_path = String::from_utf8(real_exec_path.stdout).expect("utf-8 path");
    let real_exec_path = Path::new(real_exec_path.trim());
    let real_git = std::process::Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .expect("can look up git");
    let real_git = String::from_utf8(real_git.stdout).expect("utf-8 path");
    let dir = w.root().join("v0-exec-path");
    std::fs::create_dir_all(&dir).expect("can create the exec path");
    for entry in std::fs::read_dir(real_exec_path).expect("can list git's exec path") {
        let entry = entry.expect("can read git's exec path");
        if entry.file_name() != "git" {
            std::os::unix::fs::symlink(entry.path(), dir.join(entry.file_name()))
                .expect("can link into the exec path");
        }
    }
    let wrapper = dir.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nunset GIT_PROTOCOL\nexec '{}' \"$@\"\n",
            real_git.trim()
        ),
    )
    .expect("can write the wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("can chmod");
    }
    dir.into_os_string()
}

/// The `mirror.sh` fixture ([`Fx`]); UP is its non-bare `upstream` (HEAD -> develop), DOWN its
/// empty bare repository.
struct V0 {
    w: World,
    up: PathBuf,
    down: PathBuf,
    exec_path: OsString,
}

impl V0 {
    /// DOWN seeded with UP's branches and tags.
    fn new() -> Self {
        let fx = Fx::new();
        fx.seed(&fx.empty);
        Self::from(fx)
    }

    /// DOWN empty.
    fn empty() -> Self {
        Self::from(Fx::new())
    }

    fn from(fx: Fx) -> Self {
        let exec_path = v0_exec_path(&fx.w);
        V0 {
            up: fx.up,
            down: fx.empty,
            w: fx.w,
            exec_path,
        }
    }

    fn url(&self) -> String {
        format!("kalandra::{}=>{}", path_arg(&self.up), path_arg(&self.down))
    }

    /// git through the helper, with UP speaking v0.
    fn git(&self, dir: &Path, args: &[&str]) -> GitRun {
        let env = [
            ("GIT_EXEC_PATH", self.exec_path.clone()),
            ("KALANDRA_LOG", "kalandra=debug".into()),
        ];
        self.w.try_helper_git_env(dir, args, &env)
    }

    fn push(&self, dir: &Path, args: &[&str]) -> GitRun {
        let url = self.url();
        let mut all = vec!["push", url.as_str()];
        all.extend_from_slice(args);
        self.git(dir, &all)
    }

    /// DOWN passes fsck and holds `expected`.
    #[track_caller]
    fn assert_down(&self, expected: &Refs, what: &str) {
        assert_refs_eq(&self.w.refs(&self.down), expected, what);
        self.w.assert_fsck(&self.down);
    }

    fn down_with(&self, name: &str, oid: &str) -> Refs {
        let mut refs = self.w.refs(&self.down);
        refs.insert(name.to_owned(), oid.to_owned());
        refs
    }

    /// A whole clone of UP, straight from UP (its remote-tracking refs hold UP's tips).
    fn full_clone(&self) -> PathBuf {
        let local = self.w.root().join("local");
        self.w.git(
            self.w.root(),
            &["clone", "-q", &file_url(&self.up), path_arg(&local)],
        );
        local
    }

    /// A depth-1 clone of UP's `branch`, as CI makes it (straight from UP: the helper's v0
    /// fetch does not deepen).
    fn shallow_clone(&self, branch: &str) -> PathBuf {
        let work = self
            .w
            .root()
            .join(format!("work-{}", branch.replace('/', "-")));
        self.w.git(
            self.w.root(),
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                branch,
                &file_url(&self.up),
                path_arg(&work),
            ],
        );
        assert_eq!(
            self.w.git(&work, &["rev-parse", "--is-shallow-repository"]),
            "true",
            "precondition: a shallow clone"
        );
        work
    }
}

/// The helper really talks v0 to UP here.
#[track_caller]
fn assert_spoke_v0(run: &GitRun) {
    assert!(
        run.stderr.contains("protocol v0"),
        "expected the helper to speak v0 to UP{run}"
    );
}

/// The CI case against a v0 upstream: a depth-1 clone of UP commits on top,
/// publishes its commit to UP, then pushes it to DOWN. A new branch, a fast-forward and a
/// rejected non-fast-forward are all decided from what the local repository holds, with git's
/// own words; where nothing local decides, the refusal names protocol v0 (not `fetch first`).
#[test]
fn shallow_checkout_pushes_through_a_v0_upstream() {
    let v = V0::new();
    let w = &v.w;
    let develop = w.rev(&v.up, "develop");
    let work = v.shallow_clone("develop");
    let ci = w.commit_file(&work, "ci.txt", "from CI\n", "a CI commit");
    w.git(
        &work,
        &["push", "-q", path_arg(&v.up), "HEAD:refs/heads/ci"],
    );

    // A new branch.
    let run = v.push(&work, &["HEAD:refs/heads/ci"]);
    run.assert_ok();
    assert_spoke_v0(&run);
    v.assert_down(
        &v.down_with("refs/heads/ci", &ci),
        "DOWN after a new branch",
    );

    // A fast-forward of DOWN's develop, which the clone has (its shallow cut).
    assert_eq!(w.rev(&v.down, "develop"), develop);
    let expected = v.down_with("refs/heads/develop", &ci);
    v.push(&work, &["HEAD:refs/heads/develop"]).assert_ok();
    v.assert_down(&expected, "DOWN after a fast-forward");

    // A rewind: DOWN's ci is ahead of the clone's HEAD~1, which is the shallow cut.
    let before = w.refs(&v.down);
    let run = v.push(&work, &["HEAD~1:refs/heads/ci"]);
    run.assert_failed()
        .assert_stderr_has(&["[rejected]", "non-fast-forward"]);
    v.assert_down(&before, "DOWN after a refused rewind");

    // DOWN's develop two commits behind: the clone does not have that commit, and v0 cannot
    // send commits alone, so nothing decides. Not `fetch first`: fetching would not help.
    let behind = w.rev(&v.up, "develop~2");
    w.git(&v.down, &["update-ref", "refs/heads/develop", &behind]);
    let before = w.refs(&v.down);
    let run = v.push(&work, &["HEAD:refs/heads/develop"]);
    run.assert_failed()
        .assert_stderr_has(&["[remote rejected]", "protocol v0", "--force"]);
    assert!(!run.stderr.contains("fetch first"), "{run}");
    v.assert_down(&before, "DOWN after an undecidable push");
    v.push(&work, &["--force", "HEAD:refs/heads/develop"])
        .assert_ok();
    v.assert_down(
        &v.down_with("refs/heads/develop", &ci),
        "DOWN after a forced push",
    );
}

/// v0 serves only advertised tips: an object that is not one is asked for through a tip that
/// reaches it (here UP's develop, for `develop~1` and a commit of develop's history), and an
/// object no advertised tip reaches fails before DOWN hears anything.
#[test]
fn v0_upstream_is_asked_only_for_advertised_tips() {
    let v = V0::empty();
    let w = &v.w;
    let local = v.full_clone();
    let before = w.refs(&v.down);

    // Not tips: each comes through the tip that holds it.
    let parent = w.rev(&v.up, "develop~1");
    let old = w.rev(&v.up, "develop~2");
    let run = v.push(
        &local,
        &[
            "develop~1:refs/heads/one-back",
            "develop~2:refs/heads/two-back",
        ],
    );
    run.assert_ok();
    assert_spoke_v0(&run);
    let mut expected = before.clone();
    expected.insert("refs/heads/one-back".into(), parent);
    expected.insert("refs/heads/two-back".into(), old);
    v.assert_down(&expected, "DOWN after pushing objects below the tips");

    // The commit an advertised annotated tag points to comes through the tag.
    let run = v.push(&local, &["v1.0^{commit}:refs/heads/from-tag"]);
    run.assert_ok();
    expected.insert("refs/heads/from-tag".into(), w.rev(&v.up, "v1.0^{commit}"));
    v.assert_down(&expected, "DOWN after pushing a tag's commit");

    // A commit UP has, but under no advertised tip the local repository knows: UP moved its
    // branch away from it after the clone.
    let orphan = w.commit_file(&v.up, "gone.txt", "soon unreachable\n", "gone");
    w.git(&local, &["fetch", "-q", "origin", "develop"]);
    w.git(&v.up, &["reset", "-q", "--hard", "HEAD~1"]);
    let run = v.push(&local, &["FETCH_HEAD:refs/heads/orphan"]);
    run.assert_failed()
        .assert_stderr_has(&["[remote rejected]", "protocol v0", &orphan]);
    assert!(
        !run.stderr.contains("not our ref"),
        "refused before asking UP{run}"
    );
    v.assert_down(&expected, "DOWN after an object no tip reaches");

    // Mixed in one push: the reachable ref goes through, the other is refused.
    let run = v.push(
        &local,
        &["FETCH_HEAD:refs/heads/orphan", "develop~1:refs/heads/again"],
    );
    run.assert_failed();
    expected.insert("refs/heads/again".into(), w.rev(&v.up, "develop~1"));
    v.assert_down(&expected, "DOWN after a push with one unreachable object");
}

/// A push split into several (`KALANDRA_MAX_REFS_PER_PUSH=1`) asks for each object through
/// its tip in every push, not only in the first.
#[test]
fn v0_split_push_asks_for_tips_in_every_step() {
    let v = V0::empty();
    let w = &v.w;
    let local = v.full_clone();
    let url = v.url();
    let env = [
        ("GIT_EXEC_PATH", v.exec_path.clone()),
        ("KALANDRA_MAX_REFS_PER_PUSH", "1".into()),
        ("KALANDRA_LOG", "kalandra=info".into()),
    ];
    let run = w.try_helper_git_env(
        &local,
        &[
            "push",
            &url,
            "develop~1:refs/heads/a",
            "develop~2:refs/heads/b",
            "origin/main~1:refs/heads/c",
        ],
        &env,
    );
    run.assert_ok();
    assert_spoke_v0(&run);
    assert!(run.stderr.contains("pushed in 3 steps"), "{run}");
    let expected: Refs = [
        ("refs/heads/a".to_owned(), w.rev(&v.up, "develop~1")),
        ("refs/heads/b".to_owned(), w.rev(&v.up, "develop~2")),
        ("refs/heads/c".to_owned(), w.rev(&v.up, "main~1")),
    ]
    .into();
    v.assert_down(&expected, "DOWN after a split push from a v0 upstream");
}

/// A fetch of an object that is not a tip (`git fetch <url> <oid>`) fails before UP is asked,
/// with git's own words for a v0 server and the reason, as plain git fails against UP in v0;
/// a tip is fetched.
#[test]
fn v0_fetch_of_an_unadvertised_object_fails_as_git_does() {
    let v = V0::empty();
    let w = &v.w;
    let local = w.root().join("fresh");
    w.git(w.root(), &["init", "-q", path_arg(&local)]);
    let below = w.rev(&v.up, "develop~1");
    let url = v.url();
    let run = v.git(&local, &["fetch", &url, &below]);
    run.assert_failed().assert_stderr_has(&[
        &format!("Server does not allow request for unadvertised object {below}"),
        "protocol v0",
    ]);
    assert!(!run.stderr.contains("not our ref"), "UP was not asked{run}");
    let plain = w.try_git(
        &local,
        &[
            "-c",
            "protocol.version=0",
            "fetch",
            &file_url(&v.up),
            &below,
        ],
    );
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains(&format!(
            "Server does not allow request for unadvertised object {below}"
        )),
        "precondition: plain git says the same against UP in v0"
    );

    let tip = w.rev(&v.up, "develop");
    v.git(&local, &["fetch", "-q", &url, &tip]).assert_ok();
    assert_eq!(w.rev(&local, "FETCH_HEAD"), tip);
    w.assert_fsck(&local);
}
