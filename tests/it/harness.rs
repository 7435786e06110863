//! Helpers shared by all integration tests: fixtures, an isolated git environment,
//! running `kalandra`, reading refs and checking that a mirror is complete.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Ref name -> object id (for annotated tags: the tag object, not the peeled commit).
pub type Refs = BTreeMap<String, String>;

/// How long one `kalandra` run may take before the test fails (it is killed then).
const KALANDRA_TIMEOUT: Duration = Duration::from_secs(180);

/// Refs that are never pushed, whatever `--include` says.
const NEVER_PUSHED: &[&str] = &["refs/pull/", "refs/merge-requests/", "refs/changes/"];

/// Shell lines for a server-side hook that must go silent for up to a minute: they wait while
/// the hook's parent (upload-pack, which kalandra kills when it gives up) lives, then exit 1,
/// so that a stalled server never outlives its test.
pub const STALL_WHILE_PARENT_LIVES: &str = "i=0\nwhile [ $i -lt 600 ]; do\n  \
    kill -0 \"$PPID\" 2>/dev/null || exit 1\n  sleep 0.1\n  i=$((i + 1))\ndone\n";

/// The binary under test: `KALANDRA_BIN` if set (to run this suite against another build),
/// else the one cargo built for this package.
pub fn kalandra_bin() -> PathBuf {
    match std::env::var_os("KALANDRA_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_kalandra")),
    }
}

/// The git configuration every git and kalandra process of a test sees as its global one.
const GLOBAL_CONFIG: &str = "\
[user]
\tname = Kalandra Test
\temail = test@kalandra.invalid
[init]
\tdefaultBranch = main
[protocol \"file\"]
\tallow = always
[gc]
\tauto = 0
[maintenance]
\tauto = false
[commit]
\tgpgsign = false
[tag]
\tgpgsign = false
[advice]
\tdetachedHead = false
\tnestedTag = false
[receive]
\tfsckObjects = true
";

/// One test's private world: a temporary directory holding copies of fixtures, a HOME and
/// a global git config, and a clock that makes every commit's date deterministic.
pub struct World {
    tmp: tempfile::TempDir,
    home: PathBuf,
    /// Atomic so that a test may run cases from several threads (the fault sweeps).
    tick: AtomicU64,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("kalandra-it-")
            .tempdir()
            .expect("can create a temporary directory");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).expect("can create HOME");
        std::fs::write(home.join(".gitconfig"), GLOBAL_CONFIG)
            .expect("can write the global git config");
        World {
            tmp,
            home,
            tick: AtomicU64::new(0),
        }
    }

    /// The temporary directory everything of this test lives in.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The private HOME every process of this test sees.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The global git config file used unless a test passes its own.
    pub fn global_config(&self) -> PathBuf {
        self.home.join(".gitconfig")
    }

    /// Write a global git config made of the default one plus `extra`, and return its path.
    pub fn global_config_with(&self, name: &str, extra: &str) -> PathBuf {
        let path = self.home.join(name);
        std::fs::write(&path, format!("{GLOBAL_CONFIG}{extra}")).expect("can write a git config");
        path
    }

    /// Run the fixture script `tests/fixtures/<script>` once (cached by gix-testtools) and
    /// copy its output into `<root>/<script stem>/`, which is returned.
    pub fn fixture(&self, script: &str) -> PathBuf {
        let ro = gix_testtools::scripted_fixture_read_only(script)
            .unwrap_or_else(|err| panic!("fixture script {script} failed: {err}"));
        let stem = Path::new(script)
            .file_stem()
            .and_then(OsStr::to_str)
            .expect("fixture scripts have a UTF-8 stem");
        let dst = self.root().join(stem);
        assert!(
            !dst.exists(),
            "fixture {script} was already copied into this world"
        );
        std::fs::create_dir_all(&dst).expect("can create the fixture copy directory");
        gix_testtools::copy_recursively_into_existing_dir(&ro, &dst).unwrap_or_else(|err| {
            panic!(
                "cannot copy fixture {} to {}: {err}",
                ro.display(),
                dst.display()
            )
        });
        dst
    }

    /// Put the isolated environment on `cmd`: no inherited GIT_* variables, no system config,
    /// a private HOME and global config, pinned dates, UTC and the C locale.
    pub fn isolate(&self, cmd: &mut Command, global_config: &Path) {
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .starts_with("GIT_")
            {
                cmd.env_remove(&name);
            }
        }
        let now = 946_684_800 + 86_400 + 60 * self.tick.fetch_add(1, Ordering::Relaxed);
        cmd.env("HOME", &self.home)
            // Kalandra's ssh client, like OpenSSH, reads ~/.ssh from the passwd entry, not
            // $HOME: point it at the private HOME too (docs/ssh.md).
            .env("KALANDRA_SSH_HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", global_config)
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "Kalandra Test")
            .env("GIT_AUTHOR_EMAIL", "author@kalandra.invalid")
            .env("GIT_COMMITTER_NAME", "Kalandra Test")
            .env("GIT_COMMITTER_EMAIL", "committer@kalandra.invalid")
            .env("GIT_AUTHOR_DATE", format!("{now} +0000"))
            .env("GIT_COMMITTER_DATE", format!("{now} +0000"))
            .env("TZ", "UTC")
            .env("LANG", "C")
            .env("LC_ALL", "C")
            .env("NO_COLOR", "1")
            .env_remove("SSH_ASKPASS")
            .env_remove("CDPATH");
    }

    /// `git -C <dir> <args>` in the isolated environment.
    pub fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(dir).args(args).stdin(Stdio::null());
        self.isolate(&mut cmd, &self.global_config());
        cmd
    }

    /// Run git and return its output, whatever its exit status.
    pub fn try_git(&self, dir: &Path, args: &[&str]) -> Output {
        self.git_command(dir, args)
            .output()
            .unwrap_or_else(|err| panic!("cannot run git {args:?}: {err}"))
    }

    /// Run git, fail the test unless it succeeds, and return its trimmed stdout.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.try_git(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} in {} failed with {}:\nstdout: {}\nstderr: {}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("git output is UTF-8")
            .trim_end()
            .to_owned()
    }

    /// Run git with `stdin` as standard input and return its raw stdout (it must succeed).
    pub fn git_with_input(&self, dir: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut cmd = self.git_command(dir, args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("can spawn git");
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdin = stdin.to_vec();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let out = child.wait_with_output().expect("git runs");
        writer
            .join()
            .expect("writer thread")
            .expect("can write git's stdin");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The object id `rev` resolves to in `repo`.
    pub fn rev(&self, repo: &Path, rev: &str) -> String {
        self.git(repo, &["rev-parse", "--verify", "--end-of-options", rev])
    }

    /// How many objects in `repo` are reachable from `wants` but not from `haves`: the size of
    /// the smallest (non-thin) pack that brings a repository holding `haves` up to `wants`.
    pub fn count_objects_between(&self, repo: &Path, wants: &[String], haves: &[String]) -> usize {
        let mut input = String::new();
        for w in wants {
            input.push_str(&format!("{w}\n"));
        }
        for h in haves {
            input.push_str(&format!("^{h}\n"));
        }
        let out = self.git_with_input(
            repo,
            &["rev-list", "--objects", "--stdin"],
            input.as_bytes(),
        );
        out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()
    }

    /// Write `contents` to `file` in the work tree `repo`, commit it on the current branch and
    /// return the new commit's id.
    pub fn commit_file(&self, repo: &Path, file: &str, contents: &str, message: &str) -> String {
        self.write(repo, file, contents.as_bytes());
        self.git(repo, &["add", "--", file]);
        self.git(repo, &["commit", "-q", "-m", message]);
        self.rev(repo, "HEAD")
    }

    /// Write a file below `repo` (creating directories).
    pub fn write(&self, repo: &Path, file: &str, contents: &[u8]) {
        let path = repo.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("can create directories");
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }

    /// Check out `branch` in the work tree `repo`, creating it at `start` if given.
    pub fn checkout(&self, repo: &Path, branch: &str, start: Option<&str>) {
        match start {
            Some(start) => self.git(repo, &["checkout", "-q", "-B", branch, start]),
            None => self.git(repo, &["checkout", "-q", branch]),
        };
    }

    /// Every ref of `repo` (not HEAD), as `git for-each-ref` lists it.
    pub fn refs(&self, repo: &Path) -> Refs {
        let out = self.git(repo, &["for-each-ref", "--format=%(objectname) %(refname)"]);
        out.lines()
            .map(|line| {
                let (oid, name) = line
                    .split_once(' ')
                    .expect("for-each-ref line has oid and name");
                (name.to_owned(), oid.to_owned())
            })
            .collect()
    }

    /// Fail unless `git fsck --connectivity-only` passes in `repo`.
    pub fn assert_fsck(&self, repo: &Path) {
        let out = self.try_git(repo, &["fsck", "--connectivity-only", "--no-progress"]);
        assert!(
            out.status.success(),
            "git fsck --connectivity-only failed in {}:\n{}{}",
            repo.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Fail unless a full `git fsck` (reading every object) passes in `repo`.
    pub fn assert_full_fsck(&self, repo: &Path) {
        let out = self.try_git(repo, &["fsck", "--full", "--strict", "--no-progress"]);
        assert!(
            out.status.success(),
            "git fsck --full failed in {}:\n{}{}",
            repo.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Create an executable hook `name` in the (bare) repository `repo`.
    pub fn install_hook(&self, repo: &Path, name: &str, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let git_dir = PathBuf::from(self.git(repo, &["rev-parse", "--absolute-git-dir"]));
        let hooks = git_dir.join("hooks");
        std::fs::create_dir_all(&hooks).expect("can create hooks directory");
        let path = hooks.join(name);
        std::fs::write(&path, script).expect("can write hook");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("can chmod hook");
    }

    /// Remove hook `name` from `repo`.
    pub fn remove_hook(&self, repo: &Path, name: &str) {
        let git_dir = PathBuf::from(self.git(repo, &["rev-parse", "--absolute-git-dir"]));
        std::fs::remove_file(git_dir.join("hooks").join(name)).expect("hook exists");
    }

    /// Run kalandra with `args` in the root directory of this world.
    pub fn kalandra(&self, args: &[&str]) -> Run {
        self.kalandra_with(self.root(), args, &self.global_config())
    }

    /// Run kalandra with `args` in `cwd`, with `global_config` as its GIT_CONFIG_GLOBAL.
    pub fn kalandra_with(&self, cwd: &Path, args: &[&str], global_config: &Path) -> Run {
        self.kalandra_with_env(cwd, args, global_config, &[])
    }

    /// Like [`World::kalandra_with`], with extra environment variables set after isolation.
    pub fn kalandra_with_env(
        &self,
        cwd: &Path,
        args: &[&str],
        global_config: &Path,
        env: &[(&str, std::ffi::OsString)],
    ) -> Run {
        let env: Vec<(&str, Option<std::ffi::OsString>)> = env
            .iter()
            .map(|(name, value)| (*name, Some(value.clone())))
            .collect();
        self.kalandra_env(cwd, args, global_config, &env)
    }

    /// Like [`World::kalandra_with_env`], where `None` removes a variable instead of setting it.
    pub fn kalandra_env(
        &self,
        cwd: &Path,
        args: &[&str],
        global_config: &Path,
        env: &[(&str, Option<std::ffi::OsString>)],
    ) -> Run {
        let bin = kalandra_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(args).current_dir(cwd);
        self.isolate(&mut cmd, global_config);
        for (name, value) in env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        let out = run_timed(
            cmd,
            format!("kalandra {args:?} ({})", bin.display()),
            None,
            KALANDRA_TIMEOUT,
        );
        let (code, stdout, stderr) = (out.code, out.stdout, out.stderr);
        Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code,
            stdout,
            stderr,
        }
    }

    /// `kalandra sync --json <extra> <up> <down>` that must succeed and leave a complete,
    /// consistent mirror. Checks, against the refs read before the run:
    /// - exit 0 and a well-formed report with `ok`, every ref `ok`, the planned changes exactly;
    /// - downstream refs in scope == upstream refs in scope (plus, with `--no-prune`, the
    ///   downstream refs upstream no longer has);
    /// - downstream refs outside the scope unchanged;
    /// - `git fsck --connectivity-only` downstream.
    pub fn sync_ok(&self, up: &Path, down: &Path, extra: &[&str]) -> Report {
        self.sync_ok_as(up, down, path_arg(up), path_arg(down), extra)
    }

    /// Like [`World::sync_ok`], but naming the repositories on the command line as `up_arg`
    /// and `down_arg` (URLs, relative paths; relative to [`World::root`], kalandra's cwd).
    pub fn sync_ok_as(
        &self,
        up: &Path,
        down: &Path,
        up_arg: &str,
        down_arg: &str,
        extra: &[&str],
    ) -> Report {
        self.sync_ok_env(up, down, up_arg, down_arg, extra, &[]).0
    }

    /// Like [`World::sync_ok_as`], with environment changes on top of the isolated environment
    /// (`Some` sets a variable, `None` removes it); also returns the run (for its stderr).
    pub fn sync_ok_env(
        &self,
        up: &Path,
        down: &Path,
        up_arg: &str,
        down_arg: &str,
        extra: &[&str],
        env: &[(&str, Option<std::ffi::OsString>)],
    ) -> (Report, Run) {
        let scope = Scope::from_args(extra);
        let prune = !extra.contains(&"--no-prune");
        let up_refs = self.refs(up);
        let down_before = self.refs(down);

        let mut args = vec!["sync", "--json"];
        args.extend_from_slice(extra);
        args.push(up_arg);
        args.push(down_arg);
        let run = self.kalandra_env(self.root(), &args, &self.global_config(), env);
        run.assert_code(0);
        let report = run.report();
        assert!(report.ok(), "sync reported ok=false: {run}");
        assert!(!report.dry_run(), "sync reported dry_run=true: {run}");
        assert_eq!(
            report.error(),
            None,
            "sync succeeded but reported an error: {run}"
        );
        let expected = expected_changes(&up_refs, &down_before, &scope, prune);
        report.assert_changes(&expected, "ok", &run);

        let down_after = self.refs(down);
        self.assert_mirrored(&up_refs, &down_before, &down_after, &scope, prune);
        self.assert_fsck(down);
        (report, run)
    }

    /// Downstream holds upstream's refs in the default scope (branches and tags), and is
    /// connected (`git fsck --connectivity-only`).
    #[track_caller]
    pub fn assert_in_sync(&self, up: &Path, down: &Path) {
        let scope = Scope::default();
        assert_refs_eq(
            &scope.filter(&self.refs(down)),
            &scope.filter(&self.refs(up)),
            &format!("{} after the sync", down.display()),
        );
        self.assert_fsck(down);
    }

    /// The downstream state after a successful sync is what the contract says.
    pub fn assert_mirrored(
        &self,
        up: &Refs,
        down_before: &Refs,
        down_after: &Refs,
        scope: &Scope,
        prune: bool,
    ) {
        let mut want = scope.filter(up);
        if !prune {
            for (name, oid) in scope.filter(down_before) {
                want.entry(name).or_insert(oid);
            }
        }
        assert_refs_eq(
            &scope.filter(down_after),
            &want,
            "downstream refs in scope after sync",
        );
        assert_refs_eq(
            &scope.outside(down_after),
            &scope.outside(down_before),
            "downstream refs outside the scope (must be untouched)",
        );
    }
}

/// A path as a command-line argument.
pub fn path_arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// Fail with a readable diff unless two ref maps are equal.
pub fn assert_refs_eq(actual: &Refs, expected: &Refs, what: &str) {
    if actual == expected {
        return;
    }
    let mut diff = String::new();
    for (name, oid) in expected {
        match actual.get(name) {
            None => diff.push_str(&format!("  missing  {name} (want {oid})\n")),
            Some(got) if got != oid => {
                diff.push_str(&format!("  differs  {name}: got {got}, want {oid}\n"))
            }
            Some(_) => {}
        }
    }
    for (name, oid) in actual {
        if !expected.contains_key(name) {
            diff.push_str(&format!("  extra    {name} = {oid}\n"));
        }
    }
    panic!("{what} differ from what was expected:\n{diff}");
}

/// Which refs a run covers, computed the way the contract defines it.
#[derive(Clone, Debug)]
pub struct Scope {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new(&[], &[])
    }
}

impl Scope {
    /// `include` empty means the default scope (branches and tags).
    pub fn new(include: &[&str], exclude: &[&str]) -> Self {
        let include = if include.is_empty() {
            vec!["refs/heads/*".to_owned(), "refs/tags/*".to_owned()]
        } else {
            include.iter().map(|s| s.to_string()).collect()
        };
        Scope {
            include,
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The scope `--include`/`--exclude` options in `args` select.
    pub fn from_args(args: &[&str]) -> Self {
        let (mut include, mut exclude) = (Vec::new(), Vec::new());
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match *arg {
                "--include" => include.push(*it.next().expect("--include has a value")),
                "--exclude" => exclude.push(*it.next().expect("--exclude has a value")),
                _ => {
                    if let Some(v) = arg.strip_prefix("--include=") {
                        include.push(v);
                    } else if let Some(v) = arg.strip_prefix("--exclude=") {
                        exclude.push(v);
                    }
                }
            }
        }
        Scope::new(&include, &exclude)
    }

    pub fn contains(&self, name: &str) -> bool {
        if NEVER_PUSHED.iter().any(|p| name.starts_with(p)) {
            return false;
        }
        if self.exclude.iter().any(|g| glob_match(g, name)) {
            return false;
        }
        self.include.iter().any(|g| glob_match(g, name))
    }

    pub fn filter(&self, refs: &Refs) -> Refs {
        refs.iter()
            .filter(|(name, _)| self.contains(name))
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect()
    }

    /// Refs a run must never touch downstream: outside include/exclude, or never pushed.
    pub fn outside(&self, refs: &Refs) -> Refs {
        refs.iter()
            .filter(|(name, _)| !self.contains(name))
            .map(|(n, o)| (n.clone(), o.clone()))
            .collect()
    }
}

/// `*` matches any run of characters, '/' included; everything else is literal.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == b'*')
}

/// One ref change as the contract describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub action: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl Change {
    pub fn create(new: &str) -> Self {
        Change {
            action: "create".into(),
            old: None,
            new: Some(new.into()),
        }
    }
    pub fn update(old: &str, new: &str) -> Self {
        Change {
            action: "update".into(),
            old: Some(old.into()),
            new: Some(new.into()),
        }
    }
    pub fn delete(old: &str) -> Self {
        Change {
            action: "delete".into(),
            old: Some(old.into()),
            new: None,
        }
    }
}

/// The changes the contract requires to bring `down` in line with `up` inside `scope`.
pub fn expected_changes(
    up: &Refs,
    down: &Refs,
    scope: &Scope,
    prune: bool,
) -> BTreeMap<String, Change> {
    let (up, down) = (scope.filter(up), scope.filter(down));
    let mut out = BTreeMap::new();
    for (name, new) in &up {
        match down.get(name) {
            None => {
                out.insert(name.clone(), Change::create(new));
            }
            Some(old) if old != new => {
                out.insert(name.clone(), Change::update(old, new));
            }
            Some(_) => {}
        }
    }
    if prune {
        for (name, old) in &down {
            if !up.contains_key(name) {
                out.insert(name.clone(), Change::delete(old));
            }
        }
    }
    out
}

/// The outcome of one kalandra run.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- kalandra {:?} exited with {}\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.args, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code{self}");
        self
    }

    /// The `--json` report: stdout must be exactly one JSON object of the contract's shape.
    pub fn report(&self) -> Report {
        let value: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not exactly one JSON value ({err}){self}"));
        check_schema(&value, self);
        Report(value)
    }

    /// The `--json` report of a failed run: ok=false and an error message.
    pub fn failure_report(&self) -> Report {
        let report = self.report();
        assert!(!report.ok(), "a failed run reported ok=true{self}");
        let error = report
            .error()
            .unwrap_or_else(|| panic!("a failed run reported error=null{self}"));
        assert!(
            !error.trim().is_empty(),
            "a failed run reported an empty error{self}"
        );
        report
    }

    /// Fail unless stderr says something, lower-cased, containing one of `needles`.
    pub fn assert_stderr_mentions(&self, needles: &[&str]) {
        let err = self.stderr.to_lowercase();
        assert!(
            needles.iter().any(|n| err.contains(&n.to_lowercase())),
            "stderr should mention one of {needles:?}{self}"
        );
    }
}

fn check_schema(v: &Value, run: &Run) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("the JSON report is not an object{run}"));
    let field = |name: &str| -> &Value {
        obj.get(name)
            .unwrap_or_else(|| panic!("the JSON report has no field {name:?}{run}"))
    };
    assert!(field("ok").is_boolean(), "ok is not a bool{run}");
    assert!(field("dry_run").is_boolean(), "dry_run is not a bool{run}");
    assert!(
        field("upstream").is_string(),
        "upstream is not a string{run}"
    );
    assert!(
        field("downstream").is_string(),
        "downstream is not a string{run}"
    );
    let format = field("object_format");
    // Null only when the run failed before either side said which it uses.
    assert!(
        format == "sha1" || format == "sha256" || (format.is_null() && field("ok") == false),
        "object_format is not sha1 or sha256{run}"
    );
    let hex_len = if format == "sha1" { 40 } else { 64 };
    let refs = field("refs")
        .as_array()
        .unwrap_or_else(|| panic!("refs is not an array{run}"));
    for r in refs {
        let r = r
            .as_object()
            .unwrap_or_else(|| panic!("a refs entry is not an object{run}"));
        let get = |name: &str| -> &Value {
            r.get(name)
                .unwrap_or_else(|| panic!("a refs entry has no field {name:?}{run}"))
        };
        assert!(get("name").is_string(), "refs[].name is not a string{run}");
        let action = get("action");
        assert!(
            action == "create" || action == "update" || action == "delete",
            "refs[].action is {action}{run}"
        );
        for side in ["old", "new"] {
            let oid = get(side);
            assert!(
                oid.is_null() || oid.as_str().is_some_and(|s| is_hex(s, hex_len)),
                "refs[].{side} is neither null nor a {hex_len}-digit object id: {oid}{run}"
            );
        }
        let status = get("status");
        assert!(
            ["ok", "rejected", "planned", "kept", "unknown"]
                .iter()
                .any(|s| status == s),
            "refs[].status is {status}{run}"
        );
        // Every update is classified; creates and deletes are not.
        let kind = get("kind");
        if action == "update" {
            assert!(
                ["fast-forward", "forced", "tag-moved", "undecidable"]
                    .iter()
                    .any(|k| kind == k),
                "refs[].kind of an update is {kind}{run}"
            );
        } else {
            assert!(kind.is_null(), "refs[].kind of a {action} is {kind}{run}");
        }
        let reason = get("reason");
        assert!(
            reason.is_null() || reason.is_string(),
            "refs[].reason is {reason}{run}"
        );
    }
    let pack = field("pack");
    if !pack.is_null() {
        assert!(
            pack.get("objects").is_some_and(Value::is_u64),
            "pack.objects is not an integer{run}"
        );
        assert!(
            pack.get("bytes").is_some_and(Value::is_u64),
            "pack.bytes is not an integer{run}"
        );
    }
    assert!(
        field("bytes_relayed").is_u64(),
        "bytes_relayed is not an integer{run}"
    );
    assert!(
        field("elapsed_ms").is_u64(),
        "elapsed_ms is not an integer{run}"
    );
    let outcome = field("outcome");
    assert!(
        ["complete", "partial", "nothing-landed", "unknown"]
            .iter()
            .any(|o| outcome == o)
            || (outcome.is_null() && field("ok") == false),
        "outcome is {outcome}{run}"
    );
    let error = field("error");
    assert!(
        error.is_null() || error.is_string(),
        "error is {error}{run}"
    );
    assert_eq!(field("schema_version"), 1, "schema_version{run}");
    // Every run that is not ok says what kind of failure it was, from the
    // documented vocabulary (docs/json.md), and a successful one says none.
    let kind = field("kind");
    if field("ok") == true {
        assert!(kind.is_null(), "an ok run has kind {kind}{run}");
    } else {
        assert!(
            KINDS.iter().any(|k| kind == k),
            "kind {kind} is not one of the documented kinds{run}"
        );
    }
    assert!(
        field("would_delete")
            .as_array()
            .is_some_and(|refs| refs.iter().all(Value::is_string)),
        "would_delete is not an array of strings{run}"
    );
    let head = field("head");
    assert!(
        head.is_null() || head.get("dangling").is_some_and(Value::is_boolean),
        "head is {head}{run}"
    );
}

/// The error kinds of docs/json.md.
pub const KINDS: &[&str] = &[
    "connection",
    "timeout",
    "unavailable",
    "auth",
    "not-found",
    "host-key",
    "guard",
    "rejected",
    "protocol",
    "unsupported",
    "verify-mismatch",
    "object-format",
    "usage",
    "config",
    "interrupted",
    "other",
];

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One entry of the report's `refs`.
#[derive(Clone, Debug)]
pub struct RefReport {
    pub change: Change,
    pub status: String,
    pub reason: Option<String>,
}

/// A parsed `--json` report (its shape already checked).
pub struct Report(pub Value);

impl Report {
    pub fn ok(&self) -> bool {
        self.0["ok"] == true
    }
    pub fn dry_run(&self) -> bool {
        self.0["dry_run"] == true
    }
    pub fn error(&self) -> Option<&str> {
        self.0["error"].as_str()
    }
    pub fn object_format(&self) -> &str {
        self.0["object_format"].as_str().expect("checked by schema")
    }
    /// `(objects, bytes)` of the pack fetched from upstream, or None if none was.
    pub fn pack(&self) -> Option<(u64, u64)> {
        let p = &self.0["pack"];
        if p.is_null() {
            None
        } else {
            Some((
                p["objects"].as_u64().expect("checked by schema"),
                p["bytes"].as_u64().expect("checked by schema"),
            ))
        }
    }
    pub fn bytes_relayed(&self) -> u64 {
        self.0["bytes_relayed"].as_u64().expect("checked by schema")
    }
    /// The `refs` entries by name; a name listed twice fails the test.
    pub fn refs(&self) -> BTreeMap<String, RefReport> {
        let mut out = BTreeMap::new();
        for r in self.0["refs"].as_array().expect("checked by schema") {
            let name = r["name"].as_str().expect("checked by schema").to_owned();
            let entry = RefReport {
                change: Change {
                    action: r["action"].as_str().expect("checked by schema").to_owned(),
                    old: r["old"].as_str().map(str::to_owned),
                    new: r["new"].as_str().map(str::to_owned),
                },
                status: r["status"].as_str().expect("checked by schema").to_owned(),
                reason: r["reason"].as_str().map(str::to_owned),
            };
            assert!(
                out.insert(name.clone(), entry).is_none(),
                "ref {name} is listed twice in the report: {}",
                self.0
            );
        }
        out
    }

    /// The report lists exactly the changes `expected`, each with `status`.
    pub fn assert_changes(&self, expected: &BTreeMap<String, Change>, status: &str, run: &Run) {
        let got = self.refs();
        let got_changes: BTreeMap<String, Change> = got
            .iter()
            .map(|(n, r)| (n.clone(), r.change.clone()))
            .collect();
        assert_eq!(
            &got_changes, expected,
            "the report's refs are not the expected changes{run}"
        );
        for (name, r) in &got {
            assert_eq!(r.status, status, "ref {name} has status {}{run}", r.status);
            if status == "ok" || status == "planned" {
                assert_eq!(
                    r.reason, None,
                    "ref {name} has a reason though {status}{run}"
                );
            }
        }
    }
}

/// Deterministic pseudo-random hex lines (xorshift64*), 64 digits each: hard to compress.
pub fn random_hex_lines(seed: u64, lines: usize) -> String {
    let mut x = seed | 1;
    let mut out = String::with_capacity(lines * 65);
    for _ in 0..lines {
        for _ in 0..4 {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.push_str(&format!("{:016x}", x.wrapping_mul(0x2545_f491_4f6c_dd1d)));
        }
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The remote helper, `git-remote-kalandra`, driven through the real `git`.

/// How long one git (or helper) process driving the remote helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding the `git-remote-kalandra` under test, which goes first on git's PATH:
/// `KALANDRA_HELPER_DIR` if set (to run this suite against another build), else the directory
/// of the one cargo built for this package.
pub fn helper_dir() -> PathBuf {
    match std::env::var_os("KALANDRA_HELPER_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_BIN_EXE_git-remote-kalandra"))
            .parent()
            .expect("the helper binary lives in a directory")
            .to_path_buf(),
    }
}

/// The `git-remote-kalandra` binary under test (in [`helper_dir`]).
pub fn helper_bin() -> PathBuf {
    helper_dir().join("git-remote-kalandra")
}

/// A `kalandra::UP=>DOWN` URL naming the two repositories by path.
pub fn pair_url(up: &Path, down: &Path) -> String {
    format!("kalandra::{}=>{}", path_arg(up), path_arg(down))
}

/// A `kalandra::UP=>DOWN` URL naming the two repositories by `file://` URL.
pub fn pair_file_url(up: &Path, down: &Path) -> String {
    format!("kalandra::{}=>{}", file_url(up), file_url(down))
}

/// `file://<absolute path>`.
pub fn file_url(path: &Path) -> String {
    assert!(path.is_absolute(), "file URLs need absolute paths");
    format!("file://{}", path_arg(path))
}

/// The outcome of one git (or helper) process.
pub struct GitRun {
    pub what: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for GitRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- {} exited with {}\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl GitRun {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Fail unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.success(), "expected success{self}");
        self
    }

    /// Fail unless it exited non-zero.
    #[track_caller]
    pub fn assert_failed(&self) -> &Self {
        assert!(!self.success(), "expected a failure{self}");
        self
    }

    /// Fail unless stderr contains every one of `needles` (case-sensitive).
    #[track_caller]
    pub fn assert_stderr_has(&self, needles: &[&str]) -> &Self {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr should contain {needle:?}{self}"
            );
        }
        self
    }

    /// Fail unless stderr contains at least one of `needles` (case-sensitive).
    #[track_caller]
    pub fn assert_stderr_has_any(&self, needles: &[&str]) -> &Self {
        assert!(
            needles.iter().any(|n| self.stderr.contains(n)),
            "stderr should contain one of {needles:?}{self}"
        );
        self
    }
}

/// `PATH` with `dir` first.
pub fn path_with_first(dir: &Path) -> std::ffi::OsString {
    let mut path = dir.as_os_str().to_owned();
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    path
}

/// Run `cmd` (stdout and stderr captured, `stdin` fed) in its own process group; after
/// [`HELPER_TIMEOUT`] the whole group (git and the helper it started) is killed and the test
/// fails.
fn run_timed(mut cmd: Command, what: String, stdin: Option<Vec<u8>>, timeout: Duration) -> GitRun {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    cmd.process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        // The helper may exit before reading everything; a broken pipe is its business.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("can wait for the child") {
            break status;
        }
        if start.elapsed() > timeout {
            // Kill the whole group: a helper left behind would keep our pipes open.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            child.kill().ok();
            child.wait().ok();
            panic!("{what} did not finish within {timeout:?}; killed it");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(writer) = writer {
        writer.join().expect("writer thread");
    }
    let stdout = out_reader
        .join()
        .expect("reader thread")
        .expect("can read stdout");
    let stderr = err_reader
        .join()
        .expect("reader thread")
        .expect("can read stderr");
    let code = status
        .code()
        .unwrap_or_else(|| panic!("{what} was killed by a signal: {status}"));
    GitRun {
        what,
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl World {
    /// `git -C <dir> <args>` in the isolated environment with the helper's directory first on
    /// PATH (so `kalandra::` URLs reach the helper under test), plus `env`; any exit status.
    pub fn try_helper_git_env(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, std::ffi::OsString)],
    ) -> GitRun {
        let env: Vec<(&str, Option<std::ffi::OsString>)> = env
            .iter()
            .map(|(name, value)| (*name, Some(value.clone())))
            .collect();
        self.try_helper_git_env_opt(dir, args, &env)
    }

    /// Like [`World::try_helper_git_env`], where `None` removes a variable instead of setting it.
    pub fn try_helper_git_env_opt(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, Option<std::ffi::OsString>)],
    ) -> GitRun {
        let mut cmd = self.git_command(dir, args);
        cmd.env("PATH", path_with_first(&helper_dir()));
        for (name, value) in env {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        run_timed(
            cmd,
            format!("git -C {} {args:?}", dir.display()),
            None,
            HELPER_TIMEOUT,
        )
    }

    /// Like [`World::try_helper_git_env`] without extra environment.
    pub fn try_helper_git(&self, dir: &Path, args: &[&str]) -> GitRun {
        self.try_helper_git_env(dir, args, &[])
    }

    /// Like [`World::try_helper_git`], failing the test unless git succeeds.
    #[track_caller]
    pub fn helper_git(&self, dir: &Path, args: &[&str]) -> GitRun {
        let run = self.try_helper_git(dir, args);
        run.assert_ok();
        run
    }

    /// Run the helper binary itself, as git would (`git-remote-kalandra <remote> <url>`, in
    /// `cwd`), with `stdin` as its input and `env` on top of the isolated environment.
    pub fn run_helper(
        &self,
        cwd: &Path,
        args: &[&str],
        stdin: &[u8],
        env: &[(&str, std::ffi::OsString)],
    ) -> GitRun {
        let bin = helper_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(args).current_dir(cwd);
        self.isolate(&mut cmd, &self.global_config());
        cmd.env("PATH", path_with_first(&helper_dir()));
        for (name, value) in env {
            cmd.env(name, value);
        }
        run_timed(
            cmd,
            format!("{} {args:?}", bin.display()),
            Some(stdin.to_vec()),
            HELPER_TIMEOUT,
        )
    }

    /// `git symbolic-ref HEAD` in `repo`, or None when HEAD is detached.
    pub fn head_target(&self, repo: &Path) -> Option<String> {
        let out = self.try_git(repo, &["symbolic-ref", "-q", "HEAD"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }
}

/// The start of a `proc-receive` hook (githooks(5)) in perl: strict binary I/O and the
/// pkt-line helpers `read_pkt` (undef at a flush) and `write_pkt`.
pub const PERL_PROC_RECEIVE_PRELUDE: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
binmode STDIN;
binmode STDOUT;
$| = 1;

sub read_pkt {
    read(STDIN, my $len, 4) == 4 or die "proc-receive: unexpected end of input\n";
    return undef if $len eq "0000";
    my $size = hex($len) - 4;
    read(STDIN, my $data, $size) == $size or die "proc-receive: short pkt-line\n";
    $data =~ s/\n\z//;
    return $data;
}

sub write_pkt {
    my $line = shift . "\n";
    printf "%04x%s", length($line) + 4, $line;
}
"#;
