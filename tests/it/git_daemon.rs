//! git:// against a real `git daemon` on 127.0.0.1.

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
        Self::spawn(root, port, Stdio::null())
    }

    /// [`Daemon::start`], its log (and its upload-packs' errors) going to `log`.
    pub(crate) fn start_logging(root: &Path, log: &Path) -> Self {
        let log = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        Self::spawn(root, free_port(), log.into())
    }

    fn spawn(root: &Path, port: u16, log: Stdio) -> Self {
        let child = Command::new("git")
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

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
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
