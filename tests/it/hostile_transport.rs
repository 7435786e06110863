//! Hostile and slow servers at the transport layer: stderr floods (built-in ssh client and
//! `GIT_SSH_COMMAND`), an upstream slower than the idle timeout, a trickling server against
//! the low-speed limit and `--max-duration`, an upstream dying mid-pack into an ssh
//! downstream, huge and invalid timeouts, and an HTTP redirect to a host that asks for
//! credentials.
//!
//! Every server runs on 127.0.0.1 and is started by the test: real sshd, git daemon and
//! upload-pack, or a small TCP server written here for the hostile behaviour.

use std::{
    ffi::OsString,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    git_daemon::Daemon,
    harness::{
        assert_refs_eq, kalandra_bin, path_arg, random_hex_lines, Refs, Run, World,
        STALL_WHILE_PARENT_LIVES,
    },
    sshd::{self, Protocol, Sshd},
};

/// Bytes of pack data an upstream dying mid-pack lets through: well into the pack of
/// [`big_change_pending`] (checked there).
const MID_PACK: usize = 60_000;

/// Most of what a failed run may print on stderr: a message, not a server's flood.
const MAX_STDERR: usize = 32 * 1024;

/// Most memory (VmHWM) a run against a flooding server may use.
const MAX_PEAK_KIB: u64 = 200 * 1024;

/// Make `path` an executable script with `text`.
fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("can write a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
}

/// A script that writes one line, then one endless line, on stderr, and never a byte on
/// stdout: the worst case for a reader that splits stderr into lines.
fn flood_script(w: &World) -> PathBuf {
    let script = w.root().join("flood-stderr.sh");
    write_script(
        &script,
        "#!/bin/sh\necho 'hostile: here comes the flood' >&2\nexec tr '\\000' x < /dev/zero >&2\n",
    );
    script
}

/// The peak memory (VmHWM, KiB) of a running process, if it can still be read.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs kalandra like [`World::kalandra_env`], sampling its peak memory while it runs.
/// Returns the run and the highest VmHWM seen (KiB).
fn kalandra_measured(w: &World, args: &[&str], env: &[(&str, Option<OsString>)]) -> (Run, u64) {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(kalandra_bin());
    cmd.args(args).current_dir(w.root());
    w.isolate(&mut cmd, &w.global_config());
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("can run kalandra");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("can wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            panic!("kalandra {args:?} ran for 180 s (peak {peak} KiB)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.join().expect("reader")).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().expect("reader")).into_owned(),
    };
    (run, peak)
}

/// A failed run against a flooding server: exit 4 on the idle timeout, soon, with a short
/// message, bounded memory, and downstream as it was.
#[track_caller]
fn assert_flood_contained(w: &World, run: &Run, peak: u64, elapsed: Duration, down: &Path) {
    // Printed before the rest: a huge stderr would drown the assertion message.
    let shown = Run {
        args: run.args.clone(),
        code: run.code,
        stdout: run.stdout.chars().take(4000).collect(),
        stderr: run.stderr.chars().take(4000).collect(),
    };
    assert!(
        run.stderr.len() <= MAX_STDERR,
        "the error must stay a message ({} bytes of stderr){shown}",
        run.stderr.len()
    );
    assert!(
        peak <= MAX_PEAK_KIB,
        "memory must stay bounded: VmHWM {peak} KiB{shown}"
    );
    shown.assert_code(4);
    shown.assert_stderr_mentions(&["idle timeout"]);
    assert!(
        run.stderr.contains("here comes the flood") || run.stderr.contains("xxxxxxxx"),
        "the server's last words are kept{shown}"
    );
    assert!(
        elapsed < Duration::from_secs(60),
        "stderr noise must not keep the connection alive ({elapsed:?}){shown}"
    );
    assert!(w.refs(down).is_empty(), "downstream stays empty{shown}");
    w.assert_fsck(down);
}

/// A sync that had to fail: exit 4 naming `needle`, within `limit` (the server would have
/// held it far longer), downstream's refs as `before` and fsck clean.
#[track_caller]
fn assert_cut_off(
    w: &World,
    run: &Run,
    needle: &str,
    elapsed: Duration,
    limit: Duration,
    down: &Path,
    before: &Refs,
) {
    run.assert_code(4);
    run.assert_stderr_mentions(&[needle]);
    assert!(
        elapsed < limit,
        "kalandra must give up on its own, long before the server does ({elapsed:?}){run}"
    );
    assert_refs_eq(&w.refs(down), before, "downstream after the failed sync");
    w.assert_fsck(down);
}

/// A world with a running sshd that accepts `key`, and a client set up to use it
/// (`~/.ssh/config` naming the key, the host key in `known_hosts`).
struct SshWorld {
    // Declared first: dropped (sshd and its sessions killed) before the world's files go.
    sshd: Sshd,
    w: World,
    key: PathBuf,
}

impl SshWorld {
    fn new() -> Self {
        let w = World::new();
        let sshd = Sshd::start(&w.root().join("sshd"), Protocol::V2);
        let key = sshd::keygen(&w.root().join("keys").join("client"), "", "kalandra-test");
        use std::os::unix::fs::PermissionsExt;
        let dir = w.home().join(".ssh");
        std::fs::create_dir_all(&dir).expect("can create ~/.ssh");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(dir.join("known_hosts"), sshd.known_hosts_line()).expect("known_hosts");
        std::fs::write(
            dir.join("config"),
            format!(
                "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
                key.display()
            ),
        )
        .expect("can write ~/.ssh/config");
        SshWorld { sshd, w, key }
    }

    fn env() -> Vec<(&'static str, Option<OsString>)> {
        vec![
            ("SSH_AUTH_SOCK", None),
            ("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", None),
            ("KALANDRA_LOG", None),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Item 1: stderr floods.

#[test]
fn ssh_server_flooding_stderr_fails_with_a_short_message_and_bounded_memory() {
    let s = SshWorld::new();
    let flood = flood_script(&s.w);
    s.sshd.authorize_forced(&s.key, path_arg(&flood));
    let fx = s.w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let url = s.sshd.url(&up);
    let started = Instant::now();
    let (run, peak) = kalandra_measured(
        &s.w,
        &["sync", "--idle-timeout", "5", &url, path_arg(&down)],
        &SshWorld::env(),
    );
    assert_flood_contained(&s.w, &run, peak, started.elapsed(), &down);
}

#[test]
fn ssh_command_flooding_stderr_fails_with_a_short_message_and_bounded_memory() {
    let w = World::new();
    let flood = flood_script(&w);
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let url = format!("ssh://git@127.0.0.1{}", path_arg(&up));
    let started = Instant::now();
    let (run, peak) = kalandra_measured(
        &w,
        &["sync", "--idle-timeout", "5", &url, path_arg(&down)],
        &[("GIT_SSH_COMMAND", Some(flood.into_os_string()))],
    );
    assert_flood_contained(&w, &run, peak, started.elapsed(), &down);
}

// ---------------------------------------------------------------------------------------------
// Item 3 of issue 9: upstream's progress keeps downstream alive.

/// A global git config whose `uploadpack.packObjectsHook` runs `script_body` (a shell
/// snippet in which `"$@"` is pack-objects), with `extra` config lines under [uploadpack].
fn pack_hook_config(w: &World, name: &str, script_body: &str, extra: &str) -> PathBuf {
    let hook = w.root().join(format!("{name}.sh"));
    write_script(&hook, &format!("#!/bin/sh\n{script_body}\n"));
    w.global_config_with(
        &format!("{name}.gitconfig"),
        &format!(
            "[uploadpack]\n\tpackObjectsHook = {}\n{extra}",
            path_arg(&hook)
        ),
    )
}

/// bigfile.sh mirrored, then a new branch upstream whose pack is far bigger than
/// [`MID_PACK`]. Only a create is pending: no ancestry check runs pack-objects (and the
/// test's packObjectsHook) before the pack that is relayed. Returns (upstream, downstream,
/// downstream's refs).
fn big_change_pending(w: &World) -> (PathBuf, PathBuf, Refs) {
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    let old = w.rev(&up, "main");
    let new = w.commit_file(&up, "more.txt", &random_hex_lines(7, 4096), "256 KiB more");
    w.git(&up, &["branch", "second", &new]);
    w.git(&up, &["reset", "-q", "--hard", &old]);
    let pack = w.git_with_input(
        &up,
        &["pack-objects", "--revs", "--stdout", "--thin", "-q"],
        format!("{new}\n^{old}\n").as_bytes(),
    );
    assert!(
        pack.len() > 2 * MID_PACK,
        "precondition: the pending pack ({} bytes) is much bigger than {MID_PACK} bytes",
        pack.len()
    );
    (up, down, before)
}

#[test]
fn upstream_preparing_the_pack_longer_than_the_idle_timeout_with_keepalives_syncs() {
    let w = World::new();
    let (up, down, _) = big_change_pending(&w);
    let config = pack_hook_config(&w, "slow-pack", "sleep 8\nexec \"$@\"", "\tkeepAlive = 1\n");
    let run = w.kalandra_with(
        w.root(),
        &[
            "sync",
            "--json",
            "--idle-timeout",
            "3",
            path_arg(&up),
            path_arg(&down),
        ],
        &config,
    );
    run.assert_code(0);
    assert!(run.report().ok(), "{run}");
    assert_refs_eq(
        &w.refs(&down),
        &w.refs(&up),
        "downstream after the slow sync",
    );
    w.assert_fsck(&down);
}

#[test]
fn upstream_stalled_without_keepalives_still_hits_the_idle_timeout() {
    let w = World::new();
    let (up, down, before) = big_change_pending(&w);
    // Silent for up to a minute, but gone as soon as its upload-pack is (kalandra kills it
    // when it gives up), so that the suite leaves nothing running behind it.
    let config = pack_hook_config(
        &w,
        "stalled-pack",
        &format!("{STALL_WHILE_PARENT_LIVES}exec \"$@\""),
        "\tkeepAlive = 0\n",
    );
    let started = Instant::now();
    let run = w.kalandra_with(
        w.root(),
        &[
            "sync",
            "--idle-timeout",
            "3",
            path_arg(&up),
            path_arg(&down),
        ],
        &config,
    );
    let elapsed = started.elapsed();
    assert_cut_off(
        &w,
        &run,
        "idle timeout",
        elapsed,
        Duration::from_secs(40),
        &down,
        &before,
    );
}

// ---------------------------------------------------------------------------------------------
// Item 12: an aborted transfer into an ssh downstream ends at once.

#[test]
fn upstream_dying_mid_pack_into_an_ssh_downstream_fails_at_once() {
    let s = SshWorld::new();
    s.sshd.authorize(&s.key);
    let (up, down, before) = big_change_pending(&s.w);
    let config = pack_hook_config(
        &s.w,
        "truncate-pack",
        // Sleep first: the part of the pack must reach downstream before upstream dies.
        &format!("\"$@\" | head -c {MID_PACK}\nsleep 1\nexit 1"),
        "",
    );
    let down_url = s.sshd.url(&down);
    let started = Instant::now();
    let run = s.w.kalandra_env(
        s.w.root(),
        &["sync", "--idle-timeout", "60", path_arg(&up), &down_url],
        &config,
        &SshWorld::env(),
    );
    // Closing the relay must end the ssh channel at once, not wait for the idle timeout.
    let elapsed = started.elapsed();
    assert_cut_off(
        &s.w,
        &run,
        "transfer was aborted",
        elapsed,
        Duration::from_secs(30),
        &down,
        &before,
    );
}

// ---------------------------------------------------------------------------------------------
// Item 5 (transport part): huge and invalid timeouts.

#[test]
fn huge_timeouts_saturate_instead_of_panicking() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let max = u64::MAX.to_string();
    w.sync_ok(
        &up,
        &down,
        &[
            "--idle-timeout",
            &max,
            "--connect-timeout",
            &max,
            "--max-duration",
            &max,
        ],
    );
    w.commit_file(&up, "more.txt", "more\n", "one more");
    w.sync_ok_env(
        &up,
        &down,
        path_arg(&up),
        path_arg(&down),
        &[],
        &[
            ("KALANDRA_IDLE_TIMEOUT", Some(max.clone().into())),
            ("KALANDRA_CONNECT_TIMEOUT", Some(max.into())),
        ],
    );
}

#[test]
fn invalid_timeouts_in_the_environment_are_usage_errors() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    for (name, value) in [
        ("KALANDRA_IDLE_TIMEOUT", "0"),
        ("KALANDRA_IDLE_TIMEOUT", "abc"),
        ("KALANDRA_CONNECT_TIMEOUT", "0"),
        ("KALANDRA_CONNECT_TIMEOUT", "-1"),
        ("KALANDRA_LOW_SPEED_LIMIT", "fast"),
        ("KALANDRA_LOW_SPEED_TIME", "0"),
    ] {
        let run = w.kalandra_with_env(
            w.root(),
            &["sync", "--json", path_arg(&up), path_arg(&down)],
            &w.global_config(),
            &[(name, value.into())],
        );
        run.assert_code(2);
        let report = run.failure_report();
        let error = report.error().unwrap_or_default();
        assert!(
            error.contains(name) && error.contains(value),
            "the error must name {name}={value}{run}"
        );
        assert!(w.refs(&down).is_empty(), "nothing may be pushed{run}");
    }
    w.assert_fsck(&down);
}

// ---------------------------------------------------------------------------------------------
// Item 11: the low-speed limit and --max-duration.

/// A packObjectsHook that drips the pack: one byte every 0.2 s.
fn dripping_upstream_config(w: &World) -> PathBuf {
    pack_hook_config(
        w,
        "drip-pack",
        "pack=$(mktemp)\n\"$@\" > \"$pack\" || exit 1\nsize=$(wc -c < \"$pack\")\ni=0\n\
         while [ $i -lt $size ]; do\n\
         dd if=\"$pack\" bs=1 skip=$i count=1 2>/dev/null || break\n\
         i=$((i+1)); sleep 0.2\ndone\nrm -f \"$pack\"",
        "\tkeepAlive = 0\n",
    )
}

#[test]
fn a_dripping_upload_pack_fails_the_low_speed_limit() {
    let w = World::new();
    let (up, down, before) = big_change_pending(&w);
    let config = dripping_upstream_config(&w);
    let started = Instant::now();
    let run = w.kalandra_with(
        w.root(),
        &[
            "sync",
            "--idle-timeout",
            "60",
            "--low-speed-limit",
            "1000",
            "--low-speed-time",
            "3",
            path_arg(&up),
            path_arg(&down),
        ],
        &config,
    );
    let elapsed = started.elapsed();
    assert_cut_off(
        &w,
        &run,
        "low-speed limit",
        elapsed,
        Duration::from_secs(40),
        &down,
        &before,
    );
}

/// A TCP proxy to `target` that passes the first `free` bytes from the server at full speed,
/// then one byte every 100 ms. Client to server goes at full speed.
fn dripping_proxy(target: u16, free: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("can bind");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                return;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let mut passed = 0;
                let mut buf = [0u8; 4096];
                loop {
                    let want = if passed < free {
                        (free - passed).min(buf.len())
                    } else {
                        std::thread::sleep(Duration::from_millis(100));
                        1
                    };
                    let n = match s_read.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if c_write.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    passed += n;
                }
            });
        }
    });
    port
}

#[test]
fn a_trickling_git_daemon_fails_the_low_speed_limit_from_the_environment() {
    let w = World::new();
    let (up, down, before) = big_change_pending(&w);
    let daemon = Daemon::start(w.root());
    let relative = up
        .strip_prefix(w.root())
        .expect("upstream is in the world")
        .to_str()
        .expect("UTF-8");
    let direct = daemon.url(relative);
    let port = dripping_proxy(
        direct
            .trim_start_matches("git://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the daemon's URL"),
        16 * 1024,
    );
    let url = format!("git://127.0.0.1:{port}/{relative}");
    let started = Instant::now();
    let run = w.kalandra_with_env(
        w.root(),
        &["sync", "--idle-timeout", "60", &url, path_arg(&down)],
        &w.global_config(),
        &[
            ("KALANDRA_LOW_SPEED_LIMIT", "1000".into()),
            ("KALANDRA_LOW_SPEED_TIME", "3".into()),
        ],
    );
    let elapsed = started.elapsed();
    assert_cut_off(
        &w,
        &run,
        "low-speed limit",
        elapsed,
        Duration::from_secs(40),
        &down,
        &before,
    );
}

#[test]
fn max_duration_cuts_a_busy_transfer_and_downstream_is_unchanged() {
    let w = World::new();
    let (up, down, before) = big_change_pending(&w);
    let config = dripping_upstream_config(&w);
    let started = Instant::now();
    let run = w.kalandra_with(
        w.root(),
        &[
            "sync",
            "--idle-timeout",
            "60",
            "--max-duration",
            "4",
            path_arg(&up),
            path_arg(&down),
        ],
        &config,
    );
    run.assert_code(4);
    run.assert_stderr_mentions(&["--max-duration"]);
    run.assert_stderr_mentions(&["before the transfer completed"]);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the deadline must cut the transfer{run}"
    );
    assert_refs_eq(&w.refs(&down), &before, "downstream after the deadline");
    w.assert_fsck(&down);
}

#[test]
fn max_duration_after_the_pack_was_handed_over_says_the_outcome_is_unknown() {
    let w = World::new();
    let (up, down, _) = big_change_pending(&w);
    w.install_hook(&down, "pre-receive", "#!/bin/sh\nsleep 10\n");
    let run = w.kalandra(&[
        "sync",
        "--max-duration",
        "3",
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(7);
    run.assert_stderr_mentions(&["unknown"]);
    assert!(
        !run.stderr.contains("kept its refs") && !run.stderr.contains("not changed"),
        "the pack was handed over: nothing may claim downstream is unchanged{run}"
    );
    // Whatever the hook's fate, downstream is consistent.
    w.assert_fsck(&down);
}

// ---------------------------------------------------------------------------------------------
// Item 14: a redirect to another host that asks for credentials.

/// A one-shot-per-connection HTTP server answering every request with `response`.
fn http_server(response: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("can bind");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let response = response.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    port
}

#[test]
fn a_redirect_to_a_host_asking_for_credentials_does_not_blame_them() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let asks = http_server(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"x\"\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_owned(),
    );
    let redirects = http_server(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{asks}/repo.git/info/refs?service=git-upload-pack\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let url = format!("http://alice:s3cret-pw@127.0.0.1:{redirects}/repo.git");
    let run = w.kalandra(&["sync", &url, path_arg(&down)]);
    run.assert_code(4);
    assert!(
        !run.stderr.contains("refused the credentials"),
        "the credentials were never sent to the other host{run}"
    );
    run.assert_stderr_mentions(&["redirect"]);
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{asks}")),
        "the message names where the redirect went{run}"
    );
    assert!(
        !run.stderr.contains("s3cret-pw"),
        "no secret in output{run}"
    );
    assert!(w.refs(&down).is_empty());
}
