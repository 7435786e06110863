//! The http(s) transport against a real smart-HTTP server: nginx + fcgiwrap +
//! `git http-backend` (see `nginx`), plus small local servers for rate limits and stalls.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{assert_refs_eq, path_arg, random_hex_lines, Run, Scope, World};
use crate::nginx::{Nginx, PASSWORD};

/// The `mirror.sh` fixture served by a fresh nginx: UP is `mirror/upstream`, DOWN the empty
/// `mirror/empty.git`.
struct Fx {
    w: World,
    server: Nginx,
    up: PathBuf,
    down: PathBuf,
}

const UP: &str = "mirror/upstream";
const DOWN: &str = "mirror/empty.git";

impl Fx {
    fn new() -> Self {
        let w = World::new();
        let fx = w.fixture("mirror.sh");
        let server = Nginx::start(&w);
        Fx {
            up: fx.join("upstream"),
            down: fx.join("empty.git"),
            server,
            w,
        }
    }

    fn url(&self, location: &str, repo: &str) -> String {
        self.server.url(location, repo)
    }
}

/// A run that must have mirrored UP into DOWN: exit 0, DOWN's refs in the default scope
/// equal UP's, and DOWN connected.
#[track_caller]
fn assert_synced(w: &World, run: &Run, up: &Path, down: &Path) {
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(down)),
        &scope.filter(&w.refs(up)),
        &format!("downstream after the sync{run}"),
    );
    w.assert_fsck(down);
}

/// Neither stream of the run, nor its JSON, holds `secret`.
#[track_caller]
fn assert_no_secret(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the secret leaked{run}"
    );
}

#[test]
fn http_to_http_v2_then_incremental() {
    let fx = Fx::new();
    let (up_url, down_url) = (fx.url("v2", UP), fx.url("v2", DOWN));
    fx.w.sync_ok_as(&fx.up, &fx.down, &up_url, &down_url, &[]);

    // Downstream's tips become the haves of the next fetch.
    fx.w.commit_file(&fx.up, "src/http.txt", "over http\n", "over http");
    fx.w.git(&fx.up, &["branch", "-f", "feature/new"]);
    let report = fx.w.sync_ok_as(&fx.up, &fx.down, &up_url, &down_url, &[]);
    let (objects, _) = report.pack().expect("a pack was relayed");
    // A commit, two trees (root and src/) and a blob.
    assert_eq!(objects, 4, "only the new commit's objects");

    // Nothing to do: no POST to receive-pack at all.
    fx.w.sync_ok_as(&fx.up, &fx.down, &up_url, &down_url, &[]);
}

#[test]
fn http_to_http_v0() {
    let fx = Fx::new();
    let (up_url, down_url) = (fx.url("v0", UP), fx.url("v0", DOWN));
    let run = fx.w.kalandra_with_env(
        fx.w.root(),
        &["sync", "-vv", &up_url, &down_url],
        &fx.w.global_config(),
        &[],
    );
    assert_synced(&fx.w, &run, &fx.up, &fx.down);
    run.assert_stderr_mentions(&["speaks protocol v0"]);
}

#[test]
fn http_to_file_and_file_to_http() {
    let fx = Fx::new();
    fx.w.sync_ok_as(&fx.up, &fx.down, &fx.url("v2", UP), path_arg(&fx.down), &[]);

    let other = fx.w.root().join("other.git");
    fx.w.git(fx.w.root(), &["init", "-q", "--bare", path_arg(&other)]);
    fx.w.sync_ok_as(
        &fx.up,
        &other,
        path_arg(&fx.up),
        &fx.url("v2", "other.git"),
        &[],
    );
}

#[test]
fn basic_auth_with_the_password_in_the_url() {
    let fx = Fx::new();
    let up_url = fx.server.url_as("auth", UP, "alice", PASSWORD);
    let down_url = fx.server.url_as("auth", DOWN, "alice", PASSWORD);
    let report = fx.w.sync_ok_as(&fx.up, &fx.down, &up_url, &down_url, &[]);
    assert!(
        !report.0.to_string().contains(PASSWORD),
        "the JSON report shows the password: {}",
        report.0
    );
}

#[test]
fn basic_auth_from_netrc() {
    let fx = Fx::new();
    std::fs::write(
        fx.w.root().join("home/.netrc"),
        format!("machine 127.0.0.1\n  login alice\n  password {PASSWORD}\n"),
    )
    .expect("can write .netrc");
    let (up_url, down_url) = (fx.url("auth", UP), fx.url("auth", DOWN));
    fx.w.sync_ok_as(&fx.up, &fx.down, &up_url, &down_url, &[]);
}

#[test]
fn basic_auth_from_a_git_credential_helper() {
    let fx = Fx::new();
    let store = fx.w.root().join("credentials");
    std::fs::write(
        &store,
        format!("http://alice:{PASSWORD}@127.0.0.1:{}\n", fx.server.port),
    )
    .expect("can write the credential store");
    let config = fx.w.global_config_with(
        "with-helper.gitconfig",
        &format!(
            "[credential]\n\thelper = store --file {}\n",
            path_arg(&store)
        ),
    );
    let (up_url, down_url) = (fx.url("auth", UP), fx.url("auth", DOWN));
    let run =
        fx.w.kalandra_with(fx.w.root(), &["sync", &up_url, &down_url], &config);
    assert_synced(&fx.w, &run, &fx.up, &fx.down);
    assert_no_secret(&run, PASSWORD);
}

#[test]
fn a_token_from_the_environment_is_the_password() {
    let fx = Fx::new();
    // alice's password as each side's token; the username comes from the URL.
    let up_url = format!("http://alice@127.0.0.1:{}/auth/{UP}", fx.server.port);
    let down_url = format!("http://alice@127.0.0.1:{}/auth/{DOWN}", fx.server.port);
    let env = [
        ("KALANDRA_UPSTREAM_TOKEN", PASSWORD.into()),
        ("KALANDRA_DOWNSTREAM_TOKEN", PASSWORD.into()),
    ];
    let run = fx.w.kalandra_with_env(
        fx.w.root(),
        &["sync", &up_url, &down_url],
        &fx.w.global_config(),
        &env,
    );
    assert_synced(&fx.w, &run, &fx.up, &fx.down);
}

#[test]
fn a_wrong_password_fails_naming_the_host_not_the_secret() {
    let fx = Fx::new();
    let wrong = "wrong-horse-battery";
    for (up_url, down_url) in [
        (
            fx.server.url_as("auth", UP, "alice", wrong),
            fx.url("v2", DOWN),
        ),
        (
            fx.url("v2", UP),
            fx.server.url_as("auth", DOWN, "alice", wrong),
        ),
    ] {
        let run = fx.w.kalandra(&["sync", "--json", &up_url, &down_url]);
        run.assert_code(4);
        let report = run.failure_report();
        let error = report.error().unwrap_or_default().to_owned();
        assert!(
            error.contains("127.0.0.1") && error.contains("refused the credentials"),
            "the error names the host and the refusal: {error}{run}"
        );
        assert_no_secret(&run, wrong);

        let run = fx.w.kalandra(&["sync", &up_url, &down_url]);
        run.assert_code(4);
        run.assert_stderr_mentions(&["authentication to 127.0.0.1 failed"]);
        assert_no_secret(&run, wrong);
    }
    assert!(fx.w.refs(&fx.down).is_empty(), "downstream stays empty");

    // No credentials anywhere: said so.
    let run =
        fx.w.kalandra(&["sync", &fx.url("auth", UP), &fx.url("v2", DOWN)]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["asks for credentials"]);
}

#[test]
fn tls_with_the_test_ca_and_refused_without_it() {
    let fx = Fx::new();
    let (up_url, down_url) = (
        fx.server.https_url("v2", UP),
        fx.server.https_url("v2", DOWN),
    );
    let run = fx.w.kalandra(&["sync", "--json", &up_url, &down_url]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["certificate", "unknownissuer"]);
    assert!(fx.w.refs(&fx.down).is_empty(), "nothing pushed{run}");

    let run = fx.w.kalandra_with_env(
        fx.w.root(),
        &["sync", &up_url, &down_url],
        &fx.w.global_config(),
        &[("GIT_SSL_CAINFO", fx.server.ca.clone().into())],
    );
    assert_synced(&fx.w, &run, &fx.up, &fx.down);

    // http.sslVerify=false is honoured, with a warning.
    let other = fx.w.root().join("other.git");
    fx.w.git(fx.w.root(), &["init", "-q", "--bare", path_arg(&other)]);
    let config =
        fx.w.global_config_with("no-verify.gitconfig", "[http]\n\tsslVerify = false\n");
    let run = fx.w.kalandra_with(
        fx.w.root(),
        &["sync", &up_url, &fx.server.https_url("v2", "other.git")],
        &config,
    );
    assert_synced(&fx.w, &run, &fx.up, &other);
    run.assert_stderr_mentions(&["verification is off"]);
}

#[test]
fn a_dumb_http_server_is_refused_clearly() {
    let fx = Fx::new();
    let bare = fx.w.root().join("mirror/upstream-bare.git");
    fx.w.git(&bare, &["update-server-info"]);
    let run = fx.w.kalandra(&[
        "sync",
        &fx.url("dumb", "mirror/upstream-bare.git"),
        path_arg(&fx.down),
    ]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["dumb HTTP"]);
}

/// A server in front of nginx that answers the first `refusals` connections with
/// `429 Too Many Requests` and `Retry-After: 1`, and forwards the others.
fn rate_limiting_proxy(target: u16, refusals: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("can bind");
    let port = listener.local_addr().expect("bound").port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            if counter.fetch_add(1, Ordering::SeqCst) < refusals {
                std::thread::spawn(move || refuse(client));
            } else {
                std::thread::spawn(move || forward(client, target));
            }
        }
    });
    (port, seen)
}

fn refuse(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let _ = client.write_all(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nslow down",
    );
}

fn forward(client: TcpStream, target: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    let a = pipe(
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let b = pipe(server, client);
    let _ = (a.join(), b.join());
}

#[test]
fn rate_limited_requests_are_retried_after_the_servers_delay() {
    let fx = Fx::new();
    let (port, seen) = rate_limiting_proxy(fx.server.port, 1);
    let up_url = format!("http://127.0.0.1:{port}/v2/{UP}");
    let start = Instant::now();
    let run = fx.w.kalandra(&["sync", &up_url, &fx.url("v2", DOWN)]);
    assert_synced(&fx.w, &run, &fx.up, &fx.down);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured{run}"
    );
    assert!(seen.load(Ordering::SeqCst) >= 2, "the request was retried");
    run.assert_stderr_mentions(&["429"]);
}

#[test]
fn a_stalled_server_hits_the_idle_timeout() {
    let w = World::new();
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("can bind");
    let port = listener.local_addr().expect("bound").port();
    std::thread::spawn(move || {
        // Accept, read nothing, answer nothing, close nothing.
        let held: Vec<TcpStream> = listener.incoming().flatten().collect();
        drop(held);
    });
    let start = Instant::now();
    let run = w.kalandra(&[
        "sync",
        "--idle-timeout",
        "2",
        &format!("http://127.0.0.1:{port}/r.git"),
        path_arg(&down),
    ]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["idle timeout"]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "kalandra must give up on its own{run}"
    );
}

#[test]
fn upstream_dying_mid_pack_changes_nothing_downstream() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let server = Nginx::start(&w);
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let (up_url, down_url) = (
        server.url("v2", "bigfile/upstream"),
        server.url("v2", "bigfile/empty.git"),
    );
    w.sync_ok_as(&up, &down, &up_url, &down_url, &[]);
    let before = w.refs(&down);
    w.commit_file(&up, "more.txt", &random_hex_lines(7, 4096), "256 KiB more");

    // http-backend's pack-objects lets 2000 bytes through, then fails.
    let hook = w.root().join("truncate-pack.sh");
    std::fs::write(&hook, "#!/bin/sh\n\"$@\" | head -c 2000\nexit 1\n").expect("hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    server.set_server_config(&format!(
        "[uploadpack]\n\tpackObjectsHook = {}\n",
        path_arg(&hook)
    ));
    let run = w.kalandra(&["sync", &up_url, &down_url]);
    run.assert_code(4);
    run.assert_stderr_mentions(&["upstream"]);
    assert_eq!(w.refs(&down), before, "downstream refs unchanged{run}");
    w.assert_fsck(&down);

    server.set_server_config("");
    w.sync_ok_as(&up, &down, &up_url, &down_url, &[]);
}

#[test]
fn git_push_through_the_remote_helper_over_http() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = w.root().join("local");
    w.git(
        w.root(),
        &["clone", "-q", path_arg(&fx.up), path_arg(&local)],
    );
    let pair = format!("kalandra::{}=>{}", fx.url("v2", UP), fx.url("v2", DOWN));
    w.try_helper_git(&local, &["push", &pair, "origin/main:refs/heads/main"])
        .assert_ok();
    let expected = [("refs/heads/main".to_owned(), w.rev(&fx.up, "main"))].into();
    assert_refs_eq(&w.refs(&fx.down), &expected, "DOWN after git push");
    w.assert_fsck(&fx.down);
}
