//! `kalandra sync --config`: many mirrors in one run, over every transport at once, against
//! real servers (git daemon, nginx + http-backend, OpenSSH), with failures mixed in, retries,
//! `--per-host` counted at a proxy in front of the server, `--only` and `--shard`.
//!
//! Every mirror that succeeds is checked end to end: downstream's branches and tags equal
//! upstream's, and `git fsck --connectivity-only` passes downstream.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::flaky::{Failing, FlakyHttp};
use crate::git_daemon::Daemon;
use crate::harness::{assert_refs_eq, Run, World};
use crate::nginx::Nginx;
use crate::sshd::{self, Protocol};

/// The fleet's JSON document.
struct FleetReport(Value);

impl FleetReport {
    fn of(run: &Run) -> Self {
        let value: Value = serde_json::from_str(run.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"));
        assert_eq!(value["schema_version"], 1, "{run}");
        Self(value)
    }

    fn mirror(&self, name: &str) -> &Value {
        self.0["mirrors"]
            .as_array()
            .expect("mirrors is an array")
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mirror {name} in the report: {}", self.0))
    }

    fn names(&self) -> Vec<String> {
        self.0["mirrors"]
            .as_array()
            .expect("mirrors is an array")
            .iter()
            .map(|m| m["name"].as_str().expect("names are strings").to_owned())
            .collect()
    }
}

/// A TOML basic string.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// One `[[mirror]]` table.
fn mirror_entry(name: &str, upstream: &str, downstream: &str, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = {}\nupstream = {}\ndownstream = {}\n{extra}\n",
        quoted(name),
        quoted(upstream),
        quoted(downstream)
    )
}

/// A `[[mirror]]` between two local repositories.
fn local_entry(name: &str, up: &Path, down: &Path, extra: &str) -> String {
    mirror_entry(
        name,
        &up.display().to_string(),
        &down.display().to_string(),
        extra,
    )
}

/// One fixture upstream and an empty bare downstream.
fn one_pair(w: &World) -> (PathBuf, PathBuf) {
    let up = upstreams(w, 1).remove(0);
    let down = w.root().join("downs").join("d.git");
    bare(w, &down);
    (up, down)
}

fn write_config(w: &World, text: &str) -> PathBuf {
    let path = w.root().join("mirrors.toml");
    std::fs::write(&path, text).expect("can write the config");
    path
}

/// `kalandra sync --config <config written from text> <extra>`.
fn sync_config(w: &World, text: &str, extra: &[&str]) -> Run {
    let path = write_config(w, text);
    let mut args = vec!["sync", "--config", path.to_str().expect("UTF-8")];
    args.extend_from_slice(extra);
    kalandra(w, &args, &[])
}

fn kalandra(w: &World, args: &[&str], env: &[(&str, Option<std::ffi::OsString>)]) -> Run {
    let mut all: Vec<(&str, Option<std::ffi::OsString>)> =
        vec![("SSH_AUTH_SOCK", None), ("KALANDRA_LOG", None)];
    all.extend(env.iter().cloned());
    w.kalandra_env(w.root(), args, &w.global_config(), &all)
}

/// `count` bare upstreams under `<root>/ups/`, each the fixture's repository plus a branch
/// of its own, so that no two are the same.
fn upstreams(w: &World, count: usize) -> Vec<PathBuf> {
    let fixture = w.fixture("mirror.sh");
    let source = fixture.join("upstream-bare.git");
    let commits: Vec<String> = w
        .git(&source, &["rev-list", "--all"])
        .lines()
        .map(str::to_owned)
        .collect();
    (0..count)
        .map(|i| {
            let dir = w.root().join("ups").join(format!("u{i}.git"));
            std::fs::create_dir_all(dir.parent().expect("has a parent")).expect("can mkdir");
            let status = std::process::Command::new("cp")
                .arg("-a")
                .arg(&source)
                .arg(&dir)
                .status()
                .expect("can run cp");
            assert!(status.success(), "cp -a failed");
            w.git(
                &dir,
                &[
                    "update-ref",
                    &format!("refs/heads/own-{i}"),
                    &commits[i % commits.len()],
                ],
            );
            dir
        })
        .collect()
}

fn bare(w: &World, path: &Path) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("can mkdir");
    w.git(
        w.root(),
        &["init", "-q", "--bare", path.to_str().expect("UTF-8")],
    );
}

/// The path of `repo` relative to the world's root, as the daemon and nginx serve it.
fn rel<'a>(w: &World, repo: &'a Path) -> &'a str {
    repo.strip_prefix(w.root())
        .expect("repositories live in the world")
        .to_str()
        .expect("UTF-8")
}

#[test]
fn fifty_mirrors_over_every_transport_and_three_failures_that_stop_nothing() {
    let w = World::new();
    let daemon = Daemon::start(w.root());
    let nginx = Nginx::start(&w);
    let sshd = sshd::start_for(&w, Protocol::V2);
    let ups = upstreams(&w, 50);
    let url = |kind: usize, repo: &Path| -> String {
        match kind {
            0 => repo.display().to_string(),
            1 => daemon.url(rel(&w, repo)),
            2 => nginx.url("v2", rel(&w, repo)),
            _ => sshd.url(repo),
        }
    };
    let mut config = String::from("[defaults]\nretries = 2\n\n");
    let mut pairs = Vec::new();
    for (i, up) in ups.iter().enumerate() {
        let down = w.root().join("downs").join(format!("d{i}.git"));
        let up_kind = i % 4;
        let down_kind = (i + 1 + i / 4) % 4;
        // Local downstreams are left for `create_missing` to make, half of the time.
        let create = down_kind == 0 && i % 2 == 0;
        if !create {
            bare(&w, &down);
        }
        let extra = if create { "create_missing = true" } else { "" };
        config.push_str(&mirror_entry(
            &format!("m{i:02}"),
            &url(up_kind, up),
            &url(down_kind, &down),
            extra,
        ));
        pairs.push((up.clone(), down));
    }
    // A wrong token for an authenticated downstream.
    let auth_down = w.root().join("downs").join("auth.git");
    bare(&w, &auth_down);
    config.push_str(&mirror_entry(
        "wrong-credential",
        &ups[0].display().to_string(),
        &format!(
            "http://alice@127.0.0.1:{}/auth/{}",
            nginx.port,
            rel(&w, &auth_down)
        ),
        "downstream_token_env = \"FLEET_WRONG_TOKEN\"",
    ));
    // An upstream that does not exist.
    let missing_down = w.root().join("downs").join("missing.git");
    bare(&w, &missing_down);
    config.push_str(&mirror_entry(
        "missing-upstream",
        &daemon.url("ups/no-such-repo.git"),
        &missing_down.display().to_string(),
        "",
    ));
    // A downstream whose hook refuses every push.
    let hooked_down = w.root().join("downs").join("hooked.git");
    bare(&w, &hooked_down);
    w.install_hook(
        &hooked_down,
        "pre-receive",
        "#!/bin/sh\necho 'mirror frozen by policy' >&2\nexit 1\n",
    );
    config.push_str(&local_entry("refused-by-hook", &ups[1], &hooked_down, ""));
    let path = write_config(&w, &config);
    let before_failures: Vec<_> = [&auth_down, &missing_down, &hooked_down]
        .iter()
        .map(|d| w.refs(d))
        .collect();

    let run = kalandra(
        &w,
        &[
            "sync",
            "--config",
            path.to_str().expect("UTF-8"),
            "--jobs",
            "8",
            "--json",
        ],
        &[("FLEET_WRONG_TOKEN", Some("not-the-password".into()))],
    );
    run.assert_code(9);
    let report = FleetReport::of(&run);
    assert_eq!(report.0["ok"], false, "{run}");
    assert_eq!(report.0["summary"]["mirrors"], 53, "{run}");
    assert_eq!(report.0["summary"]["failed"], 3, "{run}");
    assert_eq!(report.0["summary"]["succeeded"], 50, "{run}");
    for (name, kind) in [
        ("wrong-credential", "auth"),
        ("missing-upstream", "not-found"),
        ("refused-by-hook", "rejected"),
    ] {
        let entry = report.mirror(name);
        assert_eq!(entry["ok"], false, "{name}: {entry}");
        assert_eq!(entry["error_kind"], kind, "{name}: {entry}");
        assert_eq!(
            entry["attempts"], 1,
            "{name} is not worth retrying: {entry}"
        );
        assert!(
            entry["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{entry}"
        );
    }
    assert!(
        !run.stdout.contains("not-the-password") && !run.stderr.contains("not-the-password"),
        "the token leaked: {run}"
    );
    assert!(
        report.mirror("refused-by-hook")["error"]
            .as_str()
            .is_some_and(|e| e.contains("refs/heads/")),
        "the refusal names the refs: {}",
        report.mirror("refused-by-hook")
    );
    for (down, before) in [&auth_down, &missing_down, &hooked_down]
        .iter()
        .zip(&before_failures)
    {
        assert_refs_eq(&w.refs(down), before, "a failed mirror's downstream");
    }
    for (i, (up, down)) in pairs.iter().enumerate() {
        let entry = report.mirror(&format!("m{i:02}"));
        assert_eq!(entry["ok"], true, "m{i:02}: {entry}");
        assert!(entry["error_kind"].is_null(), "{entry}");
        assert!(
            entry["report"]["refs"]
                .as_array()
                .is_some_and(|r| !r.is_empty()),
            "m{i:02} changed refs: {entry}"
        );
        w.assert_in_sync(up, down);
    }
    let created = (0..50)
        .filter(|i| report.mirror(&format!("m{i:02}"))["created"] == true)
        .count();
    assert!(created > 0, "some downstreams were created: {run}");

    // The second run has nothing to do, and says so.
    let again = kalandra(
        &w,
        &[
            "sync",
            "--config",
            path.to_str().expect("UTF-8"),
            "--jobs",
            "8",
            "--only",
            "m00",
            "m01",
            "m02",
            "m03",
        ],
        &[("FLEET_WRONG_TOKEN", Some("not-the-password".into()))],
    );
    again.assert_code(0);
    assert!(
        again
            .stdout
            .contains("4 of 4 mirrors in sync, 0 failed; 0 refs changed"),
        "{again}"
    );
}

/// A TCP proxy in front of a server that records when each connection opened and when its
/// client hung up. Each connection is held for a moment before it is forwarded, so that
/// overlapping syncs really overlap.
struct CountingProxy {
    port: u16,
    hold: Duration,
    spans: Spans,
}

/// Per connection: accepted at, client hung up at.
type Spans = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

impl CountingProxy {
    fn start(target: u16, hold: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("can bind a proxy port");
        let port = listener.local_addr().expect("has an address").port();
        let spans: Spans = Arc::default();
        let spans2 = Arc::clone(&spans);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let index = {
                    let mut spans = spans2.lock().expect("not poisoned");
                    spans.push((Instant::now(), None));
                    spans.len() - 1
                };
                let spans3 = Arc::clone(&spans2);
                let hung_up = move || {
                    spans3.lock().expect("not poisoned")[index].1 = Some(Instant::now());
                };
                thread::spawn(move || {
                    thread::sleep(hold);
                    match TcpStream::connect(("127.0.0.1", target)) {
                        Ok(server) => pipe_both(client, server, hung_up),
                        Err(_) => hung_up(),
                    }
                });
            }
        });
        Self { port, hold, spans }
    }

    fn accepted(&self) -> usize {
        self.spans.lock().expect("not poisoned").len()
    }

    /// The most connections open at once, looked at three quarters into each connection's
    /// hold: a moment when that client is surely connected and waiting, and far enough from
    /// its start that a connection whose client closed just before it was opened has been
    /// seen to hang up (the proxy notices a hang-up only when its thread next runs).
    fn max_open(&self) -> usize {
        let spans = self.spans.lock().expect("not poisoned");
        spans
            .iter()
            .map(|(opened, _)| {
                let at = *opened + self.hold.mul_f64(0.75);
                spans
                    .iter()
                    .filter(|(o, closed)| *o <= at && closed.is_none_or(|c| c > at))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

/// Forwards both ways until both directions end, calling `hung_up` as soon as the client has
/// closed its side: from then on the connection is the server's teardown, not the client's.
fn pipe_both(client: TcpStream, server: TcpStream, hung_up: impl FnOnce()) {
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    };
    let (c2, s2) = (
        client.try_clone().expect("can clone a socket"),
        server.try_clone().expect("can clone a socket"),
    );
    let down = thread::spawn(move || copy(server, client));
    copy(c2, s2);
    hung_up();
    let _ = down.join();
}

#[test]
fn per_host_caps_the_connections_a_server_sees() {
    let w = World::new();
    let daemon = Daemon::start(w.root());
    let proxy = CountingProxy::start(daemon.port(), Duration::from_millis(400));
    let ups = upstreams(&w, 10);
    let mut config = String::new();
    let mut pairs = Vec::new();
    for (i, up) in ups.iter().enumerate() {
        let down = w.root().join("downs").join(format!("d{i}.git"));
        bare(&w, &down);
        config.push_str(&mirror_entry(
            &format!("p{i}"),
            &format!("git://127.0.0.1:{}/{}", proxy.port, rel(&w, up)),
            &down.display().to_string(),
            "",
        ));
        pairs.push((up.clone(), down));
    }
    let run = sync_config(&w, &config, &["--jobs", "8", "--per-host", "2"]);
    run.assert_code(0);
    for (up, down) in &pairs {
        w.assert_in_sync(up, down);
    }
    assert!(
        proxy.accepted() >= 10,
        "every mirror went through the proxy"
    );
    let max = proxy.max_open();
    assert!(
        max <= 2,
        "the server saw {max} connections at once with --per-host 2"
    );

    // Without the cap the same fleet does open more at once: the count above can fail.
    let loose = CountingProxy::start(daemon.port(), Duration::from_millis(400));
    let text = config.replace(
        &format!("127.0.0.1:{}/", proxy.port),
        &format!("127.0.0.1:{}/", loose.port),
    );
    for (_, down) in &pairs {
        std::fs::remove_dir_all(down).expect("can remove a downstream");
        bare(&w, down);
    }
    let run = sync_config(&w, &text, &["--jobs", "8", "--per-host", "8"]);
    run.assert_code(0);
    assert!(
        loose.max_open() > 2,
        "with --per-host 8 and --jobs 8, 10 held connections overlap"
    );
}

/// Twelve local mirrors (their repositories need not exist for a selection).
fn named_fleet(w: &World) -> PathBuf {
    let ups = upstreams(w, 12);
    let mut config = String::new();
    for (i, up) in ups.iter().enumerate() {
        let down = w.root().join("downs").join(format!("d{i}.git"));
        bare(w, &down);
        config.push_str(&local_entry(&format!("team/repo-{i}"), up, &down, ""));
    }
    write_config(w, &config)
}

#[test]
fn shards_are_disjoint_complete_and_stable_and_only_picks_by_name() {
    let w = World::new();
    let path = named_fleet(&w);
    let config = path.to_str().expect("UTF-8");
    let all: Vec<String> = (0..12).map(|i| format!("team/repo-{i}")).collect();
    let shard_names = |shard: &str| {
        let run = kalandra(
            &w,
            &["plan", "--config", config, "--shard", shard, "--json"],
            &[],
        );
        run.assert_code(0);
        let report = FleetReport::of(&run);
        assert_eq!(report.0["dry_run"], true);
        report.names()
    };
    let mut seen: Vec<String> = Vec::new();
    let mut sizes = Vec::new();
    for index in 0..3 {
        let names = shard_names(&format!("{index}/3"));
        assert_eq!(
            names,
            shard_names(&format!("{index}/3")),
            "stable across runs"
        );
        sizes.push(names.len());
        for name in names {
            assert!(!seen.contains(&name), "{name} is in two shards");
            seen.push(name);
        }
    }
    seen.sort();
    let mut expected = all.clone();
    expected.sort();
    assert_eq!(seen, expected, "the shards cover every mirror");
    assert!(sizes.iter().filter(|&&n| n > 0).count() >= 2, "{sizes:?}");

    let run = kalandra(
        &w,
        &[
            "sync",
            "--config",
            config,
            "--only",
            "team/repo-3",
            "team/repo-7",
            "--json",
        ],
        &[],
    );
    run.assert_code(0);
    let report = FleetReport::of(&run);
    assert_eq!(report.names(), ["team/repo-3", "team/repo-7"]);
    let up3 = w.root().join("ups/u3.git");
    w.assert_in_sync(&up3, &w.root().join("downs/d3.git"));
    let untouched = w.root().join("downs/d4.git");
    assert!(
        w.refs(&untouched).is_empty(),
        "a mirror outside --only was synced"
    );

    let run = kalandra(
        &w,
        &["sync", "--config", config, "--only", "team/nope"],
        &[],
    );
    run.assert_code(2);
    run.assert_stderr_mentions(&["team/nope"]);
    for bad in ["3/3", "x", "1/0"] {
        let run = kalandra(&w, &["plan", "--config", config, "--shard", bad], &[]);
        run.assert_code(2);
    }
}

#[test]
fn a_refused_connection_is_retried_until_the_server_is_up() {
    let w = World::new();
    let (up, down) = one_pair(&w);
    // A port nobody listens on, until the daemon below takes it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = mirror_entry(
        "late-server",
        &format!("git://127.0.0.1:{port}/{}", rel(&w, &up)),
        &down.display().to_string(),
        "retries = 12",
    );
    let root = w.root().to_path_buf();
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        Daemon::start_on(&root, port)
    });
    let started = Instant::now();
    let run = sync_config(&w, &config, &["--json"]);
    let _daemon = starter.join().expect("the daemon starts");
    run.assert_code(0);
    let report = FleetReport::of(&run);
    let entry = report.mirror("late-server");
    assert_eq!(entry["ok"], true, "{entry}");
    let attempts = entry["attempts"].as_u64().expect("attempts is a number");
    assert!(attempts >= 2, "the first try was refused: {entry}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    w.assert_in_sync(&up, &down);
    assert!(run.stderr.contains("retrying"), "{run}");
}

/// A mirror whose upstream answers 503 twice, then works: the fleet retries it (HTTP-level
/// retries are off, so that each 503 fails a whole try), waiting out `Retry-After` when sent.
fn unavailable_twice_then_fine(retry_after: Option<u64>) -> (Value, Duration) {
    let w = World::new();
    let nginx = Nginx::start(&w);
    let (up, down) = one_pair(&w);
    let failing = match retry_after {
        Some(secs) => Failing::unavailable(2).retry_after(secs),
        None => Failing::unavailable(2),
    };
    let flaky = FlakyHttp::start(nginx.port, failing);
    let config = mirror_entry(
        "flaky",
        &flaky.url("v2", rel(&w, &up)),
        &down.display().to_string(),
        "retries = 3",
    );
    let path = write_config(&w, &config);
    let started = Instant::now();
    let run = kalandra(
        &w,
        &["sync", "--config", path.to_str().expect("UTF-8"), "--json"],
        &[("KALANDRA_HTTP_RETRIES", Some("0".into()))],
    );
    let elapsed = started.elapsed();
    run.assert_code(0);
    assert_eq!(flaky.failed(), 2, "the proxy answered 503 twice");
    w.assert_in_sync(&up, &down);
    let entry = FleetReport::of(&run).mirror("flaky").clone();
    assert_eq!(entry["ok"], true, "{entry}");
    assert_eq!(
        entry["attempts"], 3,
        "two failed tries, then one that worked: {entry}"
    );
    assert!(
        run.stderr.matches("failed (unavailable), retrying").count() == 2,
        "{run}"
    );
    (entry, elapsed)
}

#[test]
fn unavailable_is_retried_with_backoff() {
    unavailable_twice_then_fine(None);
}

#[test]
fn unavailable_is_retried_after_what_retry_after_says() {
    let (_, elapsed) = unavailable_twice_then_fine(Some(2));
    assert!(
        elapsed >= Duration::from_secs(4),
        "two waits of Retry-After: 2 took {elapsed:?}"
    );
}

#[test]
fn invalid_config_syncs_nothing_and_exits_2() {
    let w = World::new();
    let (up, down) = one_pair(&w);
    let mut config = local_entry("good", &up, &down, "");
    config.push_str("[[mirror]]\nname = \"bad\"\nupstream = \"ssh://\"\ndownstream = \"/tmp/x\"\n");
    let run = sync_config(&w, &config, &[]);
    run.assert_code(2);
    run.assert_stderr_mentions(&["mirrors.toml:7:", "nothing was synced"]);
    // Per-mirror flags belong in the file; fleet flags need one.
    let path = w.root().join("mirrors.toml");
    let config = path.to_str().expect("UTF-8");
    let up_arg = up.to_str().expect("UTF-8");
    let down_arg = down.to_str().expect("UTF-8");
    for args in [
        &["sync", "--config", config, "--include", "refs/heads/*"][..],
        &["sync", "--config", config, "--divergence", "keep"][..],
        &["sync", "--config", config, up_arg, down_arg][..],
        &["sync", up_arg, down_arg, "--jobs", "2"][..],
        &["plan", up_arg, down_arg, "--only", "good"][..],
        &["sync", up_arg, down_arg, "--shard", "0/2"][..],
        &["sync", up_arg, down_arg, "--per-host", "1"][..],
    ] {
        let run = kalandra(&w, args, &[]);
        run.assert_code(2);
        assert!(
            run.stderr.contains("cannot be used with")
                || run.stderr.contains("only applies with --config"),
            "refused by the command line, not by the file: {run}"
        );
    }
    assert!(
        w.refs(&down).is_empty(),
        "the valid mirror was not synced either"
    );
}

#[test]
fn create_missing_uses_upstreams_object_format() {
    let w = World::new();
    let fixture = w.fixture("sha256.sh");
    let up = std::fs::read_dir(&fixture)
        .expect("the fixture has repositories")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("HEAD").is_file() && p.join("objects").is_dir())
        .unwrap_or_else(|| panic!("no bare repository in {}", fixture.display()));
    let down = w.root().join("new").join("nested").join("down.git");
    let config = local_entry("sha256", &up, &down, "create_missing = true");
    let run = sync_config(&w, &config, &["--json"]);
    run.assert_code(0);
    assert_eq!(FleetReport::of(&run).mirror("sha256")["created"], true);
    assert_eq!(
        w.git(&down, &["rev-parse", "--show-object-format"]).trim(),
        "sha256"
    );
    w.assert_in_sync(&up, &down);

    // Without create_missing, a missing local downstream is a clear, permanent failure.
    let gone = w.root().join("gone.git");
    let config = local_entry("no-create", &up, &gone, "");
    let run = sync_config(&w, &config, &["--json"]);
    run.assert_code(9);
    let report = FleetReport::of(&run);
    assert_eq!(
        report.mirror("no-create")["error_kind"],
        "not-found",
        "{run}"
    );
    assert!(!gone.exists());
}

#[test]
fn the_human_summary_has_a_row_per_mirror_and_the_failures_on_stderr() {
    let w = World::new();
    let ups = upstreams(&w, 2);
    let down = w.root().join("downs").join("d.git");
    bare(&w, &down);
    let mut config = local_entry("fine", &ups[0], &down, "");
    config.push_str(&mirror_entry(
        "broken",
        &w.root().join("nowhere.git").display().to_string(),
        &w.root().join("downs/x.git").display().to_string(),
        "create_missing = false",
    ));
    let run = sync_config(&w, &config, &[]);
    run.assert_code(9);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("MIRROR"), "{run}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("fine ") && l.contains(" ok ")),
        "{run}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("broken ") && l.contains("failed (not-found)")),
        "{run}"
    );
    assert!(
        run.stdout.contains("1 of 2 mirrors in sync, 1 failed"),
        "{run}"
    );
    run.assert_stderr_mentions(&["broken failed (not-found)", "nowhere.git"]);
    w.assert_in_sync(&ups[0], &down);
}
