//! git:// against a real `git daemon` on 127.0.0.1, and [`ForcedV0`], git's own servers held
//! to protocol v0.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{path_arg, World};

/// A `git daemon` serving every repository under a world's root, killed on drop.
pub(crate) struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    pub(crate) fn start(root: &Path) -> Self {
        Self::start_on(root, free_port())
    }

    /// [`Daemon::start`] on a given port.
    pub(crate) fn start_on(root: &Path, port: u16) -> Self {
        Self::spawn(root, port, Stdio::null(), None)
    }

    /// [`Daemon::start`], its log (and its upload-packs' errors) going to `log`.
    pub(crate) fn start_logging(root: &Path, log: &Path) -> Self {
        let log = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        Self::spawn(root, free_port(), log.into(), None)
    }

    /// A daemon whose upload-pack and receive-pack speak protocol v0 whatever the client
    /// asks (it runs them through `v0`'s `git`).
    pub(crate) fn start_v0(root: &Path, v0: &ForcedV0) -> Self {
        Self::spawn(root, free_port(), Stdio::null(), Some(v0))
    }

    fn spawn(root: &Path, port: u16, log: Stdio, v0: Option<&ForcedV0>) -> Self {
        let mut cmd = Command::new("git");
        if let Some(v0) = v0 {
            // The daemon runs `git upload-pack` from its exec path.
            cmd.env("GIT_EXEC_PATH", v0.dir());
        }
        let child = cmd
            .args([
                "daemon",
                "--reuseaddr",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", root.display()),
                "--export-all",
                "--enable=receive-pack",
                "--informative-errors",
            ])
            .arg(root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // `git daemon` runs `git-daemon`, which forks a child per connection: lead a
            // process group of our own, so that ending the group ends all of them.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start git daemon: {err}"));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "git daemon did not listen on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, port }
    }

    /// `git://127.0.0.1:<port>/<repo relative to the root>`.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A directory that makes git's servers speak protocol v0: symlinks to everything in git's
/// exec path, and a `git` that drops `GIT_PROTOCOL` (so that upload-pack never hears
/// `version=2`) before it runs the real git. Give it to `git daemon` as `GIT_EXEC_PATH`
/// ([`Daemon::start_v0`]), or put it first on the `PATH` of a process that runs
/// `git upload-pack` itself (kalandra's `file://`), and, for git running the remote helper,
/// as that git's `GIT_EXEC_PATH` too ([`ForcedV0::env`]).
///
/// The real git keeps this directory as its exec path: git runs a remote helper as
/// `git remote-<name>` and puts its exec path first on the helper's `PATH`, so with the real
/// exec path there the helper's own `git upload-pack` would find the real git.
pub(crate) struct ForcedV0 {
    dir: std::path::PathBuf,
}

impl ForcedV0 {
    /// Made in `<root>/forced-v0` (`root` is a world's root).
    pub(crate) fn new(root: &Path) -> Self {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = root.join("forced-v0");
        std::fs::create_dir_all(&dir).expect("can create the forced-v0 directory");
        let out = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("can run git --exec-path");
        let exec_path = String::from_utf8(out.stdout).expect("git's exec path is UTF-8");
        let exec_path = Path::new(exec_path.trim());
        for entry in std::fs::read_dir(exec_path).expect("can read git's exec path") {
            let entry = entry.expect("can read git's exec path");
            if entry.file_name() != "git" {
                symlink(entry.path(), dir.join(entry.file_name()))
                    .expect("can link into the forced-v0 directory");
            }
        }
        let git = crate::sshd::which("git").expect("git is on PATH");
        let wrapper = dir.join("git");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n\
                 # Protocol v0 only: the client's version=2 never reaches the server.\n\
                 unset GIT_PROTOCOL\n\
                 GIT_EXEC_PATH='{}'\n\
                 export GIT_EXEC_PATH\n\
                 exec '{}' \"$@\"\n",
                dir.display(),
                git.display()
            ),
        )
        .expect("can write the forced-v0 git");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("can make the forced-v0 git executable");
        ForcedV0 { dir }
    }

    /// The environment of a process whose `git upload-pack` must speak v0 (kalandra with a
    /// `file://` upstream), or of a git whose remote helper runs one.
    pub(crate) fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("PATH", crate::harness::path_with_first(&self.dir)),
            ("GIT_EXEC_PATH", self.dir.clone().into_os_string()),
        ]
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::listening_server::end_group(&mut self.child);
    }
}

#[test]
fn git_to_git_over_protocol_v2_then_incremental() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let daemon = Daemon::start(w.root());
    let (up_url, down_url) = (
        daemon.url("mirror/upstream"),
        daemon.url("mirror/empty.git"),
    );
    let run = w.kalandra_with_env(
        w.root(),
        &["sync", "--json", &up_url, &down_url],
        &w.global_config(),
        &[("KALANDRA_LOG", "kalandra=debug".into())],
    );
    run.assert_code(0);
    assert!(
        run.stderr.contains("speaks protocol v2"),
        "git daemon passes version=2 on{run}"
    );
    w.sync_ok_as(&up, &down, &up_url, &down_url, &[]);

    w.checkout(&up, "main", None);
    w.commit_file(&up, "daemon.txt", "over git://\n", "a commit over git://");
    let report = w.sync_ok_as(&up, &down, &up_url, &down_url, &[]);
    assert_eq!(report.pack().map(|(objects, _)| objects), Some(3));
}

/// A v0 conversation that wants nothing (a plan, a no-op sync) ends with the flush that
/// tells upload-pack so, as git's own clients do, rather than by hanging up on it.
#[test]
fn protocol_v0_sessions_say_goodbye() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let log = w.root().join("daemon.log");
    let daemon = Daemon::start_logging(w.root(), &log);
    let (up_url, down_url) = (
        daemon.url("mirror/upstream"),
        daemon.url("mirror/empty.git"),
    );
    let v0 = w.global_config_with("v0", "[protocol]\n\tversion = 0\n");
    let kalandra = |args: &[&str]| {
        let run = w.kalandra_with_env(
            w.root(),
            args,
            &v0,
            &[("KALANDRA_LOG", "kalandra=debug".into())],
        );
        run.assert_code(0);
        assert!(run.stderr.contains("speaks protocol v0"), "{run}");
        run
    };
    kalandra(&["plan", &up_url, &down_url]);
    kalandra(&["sync", &up_url, &down_url]);
    kalandra(&["sync", &up_url, &down_url]);
    w.assert_in_sync(&up, &down);
    drop(daemon);
    let log = std::fs::read_to_string(&log).expect("the daemon's log");
    // One is the harness's own: it connects once, without a word, to see the daemon listen.
    assert_eq!(
        log.matches("the remote end hung up unexpectedly").count(),
        1,
        "git daemon's log:\n{log}"
    );
}

#[test]
fn git_to_file_and_file_to_git() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let daemon = Daemon::start(w.root());
    w.sync_ok_as(
        &up,
        &down,
        &daemon.url("mirror/upstream"),
        path_arg(&down),
        &[],
    );

    let other = w.root().join("other.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&other)]);
    w.sync_ok_as(&up, &other, path_arg(&up), &daemon.url("other.git"), &[]);
}

#[test]
fn missing_repository_over_git_is_a_connection_failure() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let daemon = Daemon::start(w.root());
    let run = w.kalandra(&["sync", &daemon.url("no/such.git"), path_arg(&down)]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["no/such.git"]);
    assert!(w.refs(&down).is_empty(), "downstream stays empty{run}");

    // Nothing listens on a port just freed: refused, and named.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let run = w.kalandra(&[
        "sync",
        &format!("git://127.0.0.1:{port}/x.git"),
        path_arg(&down),
    ]);
    run.assert_code(4);
    run.assert_stderr_mentions(&[&format!("127.0.0.1:{port}")]);
}
