//! The user's everyday git settings, honoured with git's semantics (issue 12): each test runs
//! git 2.47 with the same configuration in the same test and checks that Kalandra succeeds or
//! fails the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::harness::{assert_refs_eq, path_arg, GitRun, Run, Scope, World};
use crate::nginx::Nginx;

/// Appends `text` to the world's global git config, which git and Kalandra both read.
fn add_config(w: &World, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(w.global_config())
        .expect("can open the global git config");
    file.write_all(text.as_bytes())
        .expect("can write the global git config");
}

/// git with `args` in `dir`, the given global config and `env`; any exit status.
fn git_as(
    w: &World,
    dir: &Path,
    args: &[&str],
    global_config: &Path,
    env: &[(&str, OsString)],
) -> std::process::Output {
    let mut cmd = w.git_command(dir, args);
    cmd.env("GIT_CONFIG_GLOBAL", global_config);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().expect("can run git")
}

/// `mirror.sh`'s upstream under `<root>/mirror/`, and an empty bare repository
/// `<root>/write/empty.git`: `m:` reads from the first folder and pushes into the second.
struct Split {
    w: World,
    up: PathBuf,
    /// `<root>/mirror/empty.git`, where a push must NOT land.
    read_side_down: PathBuf,
    /// `<root>/write/empty.git`, where pushes to `m:empty.git` land.
    down: PathBuf,
}

impl Split {
    fn new() -> Self {
        let w = World::new();
        let fx = w.fixture("mirror.sh");
        let write = w.root().join("write");
        std::fs::create_dir_all(&write).expect("can create write/");
        let down = write.join("empty.git");
        w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
        add_config(
            &w,
            &format!(
                "[url \"{}/\"]\n\tinsteadOf = m:\n[url \"{}/\"]\n\tpushInsteadOf = m:\n",
                fx.display(),
                write.display()
            ),
        );
        Split {
            up: fx.join("upstream"),
            read_side_down: fx.join("empty.git"),
            down,
            w,
        }
    }
}

#[test]
fn instead_of_reads_and_push_instead_of_writes_as_for_git() {
    let s = Split::new();
    let w = &s.w;

    // git: `m:upstream` reads <root>/mirror/upstream ...
    let listed = w.git(w.root(), &["ls-remote", "m:upstream"]);
    assert!(
        listed.contains(&w.rev(&s.up, "refs/heads/main")),
        "{listed}"
    );
    // ... and a push to `m:x.git` lands in <root>/write/x.git, not in <root>/mirror/x.git.
    let probe = w.root().join("write/probe.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&probe)]);
    w.git(&s.up, &["push", "-q", "m:probe.git", "refs/heads/main"]);
    assert_eq!(
        w.rev(&probe, "refs/heads/main"),
        w.rev(&s.up, "refs/heads/main")
    );

    // Kalandra: the same two rewrites.
    let report = w.sync_ok_as(&s.up, &s.down, "m:upstream", "m:empty.git", &[]);
    assert!(
        w.refs(&s.read_side_down).is_empty(),
        "the push used insteadOf, not pushInsteadOf"
    );
    // Reports name the location that was used.
    assert_eq!(report.0["upstream"], path_arg(&s.up));
    assert_eq!(report.0["downstream"], path_arg(&s.down));
}

#[test]
fn a_failed_run_reports_the_rewritten_locations_too() {
    let s = Split::new();
    let w = &s.w;
    let run = w.kalandra(&["sync", "--json", "m:missing.git", "m:empty.git"]);
    assert_ne!(run.code, 0);
    let report = run.failure_report();
    let missing = w.root().join("mirror/missing.git");
    assert_eq!(report.0["upstream"], path_arg(&missing), "{run}");
    assert_eq!(report.0["downstream"], path_arg(&s.down), "{run}");
    run.assert_stderr_mentions(&[path_arg(&missing)]);
}

#[test]
fn a_config_git_cannot_read_stops_kalandra_as_it_stops_git() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let broken = w.global_config_with("broken.gitconfig", "[url \"x\"\n\tinsteadOf = y\n");
    let git = git_as(&w, w.root(), &["ls-remote", path_arg(&up)], &broken, &[]);
    assert!(!git.status.success());
    let said = String::from_utf8_lossy(&git.stderr);
    assert!(said.contains("bad config line"), "{said}");
    let run = w.kalandra_with(w.root(), &["sync", path_arg(&up), path_arg(&down)], &broken);
    run.assert_code(2);
    run.assert_stderr_mentions(&["bad config line"]);
    assert!(w.refs(&down).is_empty());
}

#[test]
fn the_remote_helper_rewrites_each_side() {
    let s = Split::new();
    let w = &s.w;
    let url = "kalandra::m:upstream=>m:empty.git";
    let listed = w.helper_git(&s.up, &["ls-remote", url]);
    assert!(
        listed.stdout.contains(&w.rev(&s.up, "refs/heads/main")),
        "{listed}"
    );
    w.helper_git(&s.up, &["push", url, "refs/heads/main:refs/heads/main"]);
    assert_eq!(
        w.rev(&s.down, "refs/heads/main"),
        w.rev(&s.up, "refs/heads/main")
    );
    assert!(w.refs(&s.read_side_down).is_empty());
}

#[test]
fn a_fleet_config_is_rewritten_too() {
    let s = Split::new();
    let w = &s.w;
    let config = w.root().join("mirrors.toml");
    std::fs::write(
        &config,
        "[[mirror]]\nname = \"m\"\nupstream = \"m:upstream\"\ndownstream = \"m:empty.git\"\n",
    )
    .expect("can write the config");
    let run = w.kalandra(&["sync", "--config", path_arg(&config)]);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&s.down)),
        &scope.filter(&w.refs(&s.up)),
        &format!("downstream after the fleet sync{run}"),
    );
    w.assert_fsck(&s.down);
    assert!(w.refs(&s.read_side_down).is_empty());

    // A transport the settings refuse fails the mirror with git's message, and
    // nothing moves.
    let before = w.refs(&s.down);
    w.commit_file(&s.up, "refused.txt", "not mirrored\n", "refused");
    let run = w.kalandra_with_env(
        w.root(),
        &["sync", "--config", path_arg(&config)],
        &w.global_config(),
        &[("GIT_ALLOW_PROTOCOL", "ssh:https".into())],
    );
    assert_ne!(run.code, 0, "{run}");
    run.assert_stderr_mentions(&["transport 'file' not allowed"]);
    assert_refs_eq(
        &w.refs(&s.down),
        &before,
        "downstream after the refused sync",
    );
}

#[test]
fn instead_of_to_an_http_server() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let server = Nginx::start(&w);
    add_config(
        &w,
        &format!("[url \"{}\"]\n\tinsteadOf = web:\n", server.url("v2", "")),
    );
    let listed = w.git(w.root(), &["ls-remote", "web:mirror/upstream"]);
    assert!(listed.contains("refs/heads/main"), "{listed}");
    let report = w.sync_ok_as(
        &fx.join("upstream"),
        &fx.join("empty.git"),
        "web:mirror/upstream",
        "web:mirror/empty.git",
        &[],
    );
    assert_eq!(
        report.0["downstream"],
        server.url("v2", "mirror/empty.git").as_str()
    );

    // The CI pattern: a token in the base, so that plain URLs authenticate. Both get
    // through, and the token shows nowhere (the rewritten URL is shown masked).
    let password = crate::nginx::PASSWORD;
    add_config(
        &w,
        &format!(
            "[url \"http://alice:{password}@127.0.0.1:{}/auth/\"]\n\tinsteadOf = private:\n",
            server.port
        ),
    );
    let listed = w.git(w.root(), &["ls-remote", "private:mirror/upstream"]);
    assert!(listed.contains("refs/heads/main"), "{listed}");
    w.commit_file(&fx.join("upstream"), "ci.txt", "from CI\n", "ci");
    let run = w.kalandra(&[
        "sync",
        "-vvv",
        "--json",
        "private:mirror/upstream",
        "private:mirror/empty.git",
    ]);
    run.assert_code(0);
    assert_hidden(&run.stdout, &run.stderr, password);
    assert!(run.stdout.contains("alice:***@"), "{run}");
    let branch = w.git(&fx.join("upstream"), &["symbolic-ref", "HEAD"]);
    assert_eq!(
        w.rev(&fx.join("empty.git"), &branch),
        w.rev(&fx.join("upstream"), &branch)
    );
}

/// Each way git's settings refuse the `file` transport, as a whole global config and
/// environment (the world's usual config allows `file` always).
fn file_refusals() -> Vec<(&'static str, Vec<(&'static str, OsString)>)> {
    vec![
        ("[protocol \"file\"]\n\tallow = never\n", vec![]),
        ("[protocol]\n\tallow = never\n", vec![]),
        (
            "[protocol \"file\"]\n\tallow = user\n",
            vec![("GIT_PROTOCOL_FROM_USER", "0".into())],
        ),
        // `file` is a user-only transport by default.
        ("", vec![("GIT_PROTOCOL_FROM_USER", "false".into())]),
        // The list wins over a configuration that allows it.
        (
            "[protocol \"file\"]\n\tallow = always\n",
            vec![("GIT_ALLOW_PROTOCOL", "ssh:https".into())],
        ),
    ]
}

/// A global git config file holding exactly `text`.
fn config_file(w: &World, name: &str, text: &str) -> PathBuf {
    let path = w.home().join(name);
    std::fs::write(&path, text).expect("can write a git config");
    path
}

#[test]
fn a_transport_the_settings_refuse_is_refused_before_connecting() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    for (i, (config, env)) in file_refusals().into_iter().enumerate() {
        let global = config_file(&w, &format!("refuse-{i}.gitconfig"), config);
        let git = git_as(&w, w.root(), &["ls-remote", path_arg(&up)], &global, &env);
        assert!(
            !git.status.success(),
            "git allowed it with {config} {env:?}"
        );
        let said = String::from_utf8_lossy(&git.stderr);
        assert!(said.contains("transport 'file' not allowed"), "{said}");

        let run = w.kalandra_with_env(
            w.root(),
            &["sync", "--json", path_arg(&up), path_arg(&down)],
            &global,
            &env,
        );
        run.assert_code(2);
        run.assert_stderr_mentions(&["transport 'file' not allowed"]);
        let report = run.failure_report();
        assert_eq!(report.0["error_kind"], "usage", "{run}");
        assert_eq!(report.0["kind"], "usage", "{run}");
        assert!(w.refs(&down).is_empty(), "something was pushed{run}");
    }
    // The specific setting wins over protocol.allow, for both.
    let global = config_file(
        &w,
        "specific.gitconfig",
        "[protocol]\n\tallow = never\n[protocol \"file\"]\n\tallow = always\n",
    );
    let git = git_as(&w, w.root(), &["ls-remote", path_arg(&up)], &global, &[]);
    assert!(git.status.success());
    w.kalandra_with(w.root(), &["plan", path_arg(&up), path_arg(&down)], &global)
        .assert_code(0);

    // The helper refuses it as well; git itself allows `kalandra::` (a user-only transport).
    let (config, env) = &file_refusals()[0];
    let global = config_file(&w, "helper.gitconfig", config);
    let mut cmd = w.git_command(
        &up,
        &[
            "ls-remote",
            &format!("kalandra::{}=>{}", path_arg(&up), path_arg(&down)),
        ],
    );
    cmd.env("GIT_CONFIG_GLOBAL", &global).env(
        "PATH",
        crate::harness::path_with_first(&crate::harness::helper_dir()),
    );
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().expect("can run git");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("transport 'file' not allowed"), "{said}");
}

#[test]
fn ext_urls_are_refused_and_never_run() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let marker = w.root().join("ran");
    let ext = format!("ext::sh -c touch% {}", path_arg(&marker));

    // git refuses it by default, and runs it once allowed: the URL is a real command.
    let out = git_as(&w, w.root(), &["ls-remote", &ext], &w.global_config(), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("transport 'ext' not allowed"));
    assert!(!marker.exists());
    let allowing = w.global_config_with("ext.gitconfig", "[protocol \"ext\"]\n\tallow = always\n");
    let _ = git_as(&w, w.root(), &["ls-remote", &ext], &allowing, &[]);
    assert!(marker.exists(), "git ran the ext:: command once allowed");
    std::fs::remove_file(&marker).expect("can remove the marker");

    let run = w.kalandra(&["sync", &ext, path_arg(&down)]);
    run.assert_code(2);
    run.assert_stderr_mentions(&["transport 'ext' not allowed"]);
    // Allowed, Kalandra still runs no remote helper.
    let run: Run = w.kalandra_with(w.root(), &["sync", &ext, path_arg(&down)], &allowing);
    run.assert_code(2);
    run.assert_stderr_mentions(&["unsupported transport \"ext\""]);
    // Through the remote helper, on either side.
    let helper: GitRun = w.try_helper_git(
        w.root(),
        &[
            "ls-remote",
            &format!("kalandra::{ext}=>{}", path_arg(&down)),
        ],
    );
    helper
        .assert_failed()
        .assert_stderr_has(&["transport 'ext' not allowed"]);
    assert!(!marker.exists(), "an ext:: command ran");
    assert!(w.refs(&down).is_empty());
}

/// Whether upload-pack answered with protocol v2, from its packet trace.
fn spoke_v2(trace: &Path) -> bool {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let _ = std::fs::remove_file(trace);
    assert!(
        text.contains("upload-pack"),
        "no upload-pack in the trace:\n{text}"
    );
    text.contains("upload-pack> version 2")
}

#[test]
fn protocol_version_0_asks_upstream_for_v0() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let trace = w.root().join("trace");
    let env = [("GIT_TRACE_PACKET", trace.clone().into_os_string())];
    for (version, v2) in [
        (None, true),
        (Some("0"), false),
        (Some("1"), false),
        (Some("2"), true),
    ] {
        let global = match version {
            Some(v) => w.global_config_with(
                &format!("v{v}.gitconfig"),
                &format!("[protocol]\n\tversion = {v}\n"),
            ),
            None => w.global_config(),
        };
        let git = git_as(&w, w.root(), &["ls-remote", path_arg(&up)], &global, &env);
        assert!(git.status.success());
        assert_eq!(
            spoke_v2(&trace),
            v2,
            "git with protocol.version {version:?}"
        );

        let run = w.kalandra_with_env(
            w.root(),
            &["plan", path_arg(&up), path_arg(&down)],
            &global,
            &env,
        );
        run.assert_code(0);
        assert_eq!(
            spoke_v2(&trace),
            v2,
            "kalandra with protocol.version {version:?}{run}"
        );
    }
    // A v0 upstream still mirrors completely.
    let global = w.global_config_with("v0-sync.gitconfig", "[protocol]\n\tversion = 0\n");
    let run = w.kalandra_with(w.root(), &["sync", path_arg(&up), path_arg(&down)], &global);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&down)),
        &scope.filter(&w.refs(&up)),
        &format!("downstream after a v0 sync{run}"),
    );
    w.assert_fsck(&down);

    let bad = w.global_config_with("v3.gitconfig", "[protocol]\n\tversion = 3\n");
    let git = git_as(&w, w.root(), &["ls-remote", path_arg(&up)], &bad, &[]);
    assert!(!git.status.success());
    let run = w.kalandra_with(w.root(), &["plan", path_arg(&up), path_arg(&down)], &bad);
    run.assert_code(2);
    run.assert_stderr_mentions(&["unknown value for config 'protocol.version': 3"]);
}

/// Neither stream of a run holds `secret`.
#[track_caller]
fn assert_hidden(stdout: &str, stderr: &str, secret: &str) {
    assert!(
        !stdout.contains(secret) && !stderr.contains(secret),
        "the secret {secret:?} showed:\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"
    );
}

#[test]
fn extra_headers_reach_the_server_as_for_git_and_never_show() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let up_url = server.url("header", "mirror/upstream");
    let down_url = server.url("header", "mirror/empty.git");
    let ls_remote = |w: &World| w.try_git(w.root(), &["ls-remote", &up_url]);
    let sync = |w: &World| w.kalandra(&["sync", "-vvv", &up_url, &down_url]);

    // Without the header, the server refuses both.
    assert!(!ls_remote(&w).status.success());
    let run = sync(&w);
    assert_ne!(run.code, 0, "synced without the header{run}");

    // With it, for this server's URLs only, both get through.
    let section = format!("http://127.0.0.1:{}/", server.port);
    add_config(
        &w,
        &format!(
            "[http \"{section}\"]\n\textraHeader = X-Kalandra-Test: {}\n[http \"https://elsewhere.invalid/\"]\n\textraHeader =\n",
            crate::nginx::HEADER_VALUE
        ),
    );
    let git = ls_remote(&w);
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let run = sync(&w);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&down)),
        &scope.filter(&w.refs(&up)),
        &format!("downstream after the sync{run}"),
    );
    w.assert_fsck(&down);
    assert_hidden(&run.stdout, &run.stderr, crate::nginx::HEADER_VALUE);

    // An empty value in a more specific section clears the list, for both.
    add_config(
        &w,
        &format!("[http \"{section}header/\"]\n\textraHeader =\n"),
    );
    assert!(!ls_remote(&w).status.success());
    let run = sync(&w);
    assert_ne!(run.code, 0, "the empty value did not reset the list{run}");
    run.assert_stderr_mentions(&["403"]);
    assert_hidden(&run.stdout, &run.stderr, crate::nginx::HEADER_VALUE);
}

#[test]
fn an_actions_checkout_token_header_lets_the_remote_helper_push() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let pair = format!(
        "kalandra::{}=>{}",
        server.url("auth", "mirror/upstream"),
        server.url("auth", "mirror/empty.git")
    );
    let push =
        |w: &World| w.try_helper_git(&up, &["push", &pair, "refs/heads/main:refs/heads/main"]);

    // No credentials anywhere: both sides refuse.
    let refused = push(&w);
    refused.assert_failed();
    assert!(w.refs(&down).is_empty());

    // What actions/checkout writes: the token as a basic-auth header for the host.
    let basic = "YWxpY2U6b3Blbi1zZXNhbWUtNDI="; // alice:open-sesame-42
    add_config(
        &w,
        &format!(
            "[http \"http://127.0.0.1:{}/\"]\n\textraheader = AUTHORIZATION: basic {basic}\n",
            server.port
        ),
    );
    let git = w.try_git(
        w.root(),
        &["ls-remote", &server.url("auth", "mirror/upstream")],
    );
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let pushed = push(&w);
    pushed.assert_ok();
    assert_eq!(
        w.rev(&down, "refs/heads/main"),
        w.rev(&up, "refs/heads/main")
    );
    assert_hidden(&pushed.stdout, &pushed.stderr, basic);
    assert_hidden(&pushed.stdout, &pushed.stderr, crate::nginx::PASSWORD);
}

/// A proxy to `127.0.0.1:target` that passes each connection's first `free` bytes from the
/// server at once, then one byte every 100 ms.
fn dripping_proxy(target: u16, free: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
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
                        std::thread::sleep(std::time::Duration::from_millis(100));
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
fn gits_http_low_speed_limit_applies_unless_kalandras_own_is_on() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let down = fx.join("empty.git");
    let server = Nginx::start(&w);
    let port = dripping_proxy(server.port, 16 * 1024);
    let up_url = format!("http://127.0.0.1:{port}/v2/bigfile/upstream");
    let from_config = w.global_config_with(
        "low-speed.gitconfig",
        "[http]\n\tlowSpeedLimit = 1000\n\tlowSpeedTime = 2\n",
    );
    let from_env: Vec<(&str, OsString)> = vec![
        ("GIT_HTTP_LOW_SPEED_LIMIT", "1000".into()),
        ("GIT_HTTP_LOW_SPEED_TIME", "2".into()),
    ];
    for (global, env) in [(&from_config, &Vec::new()), (&w.global_config(), &from_env)] {
        let clone = w.root().join("clone.git");
        let _ = std::fs::remove_dir_all(&clone);
        let started = std::time::Instant::now();
        let git = git_as(
            &w,
            w.root(),
            &["clone", "-q", "--bare", &up_url, path_arg(&clone)],
            global,
            env,
        );
        assert!(!git.status.success(), "git cloned through the drip");
        assert!(started.elapsed().as_secs() < 30, "git gave up on its own");

        let started = std::time::Instant::now();
        let run = w.kalandra_with_env(
            w.root(),
            &["sync", "--idle-timeout", "60", &up_url, path_arg(&down)],
            global,
            env,
        );
        run.assert_code(4);
        run.assert_stderr_mentions(&["below the low-speed limit of 1000 bytes/s over 2 s"]);
        assert!(
            started.elapsed().as_secs() < 30,
            "kalandra gave up on its own{run}"
        );
        assert!(w.refs(&down).is_empty());
    }
    // Kalandra's own limit wins over git's.
    let run = w.kalandra_with_env(
        w.root(),
        &[
            "sync",
            "--idle-timeout",
            "60",
            "--low-speed-limit",
            "500",
            "--low-speed-time",
            "3",
            &up_url,
            path_arg(&down),
        ],
        &w.global_config(),
        &from_env,
    );
    run.assert_code(4);
    run.assert_stderr_mentions(&["below the low-speed limit of 500 bytes/s over 3 s"]);
}

#[test]
fn a_client_certificate_from_http_ssl_cert_and_key() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let (cert, key) = server.client_certificate("client");
    let up_url = server.mtls_url("v2", "mirror/upstream");
    let down_url = server.mtls_url("v2", "mirror/empty.git");
    let trust = format!("[http]\n\tsslCAInfo = {}\n", server.ca.display());
    let without = w.global_config_with("no-cert.gitconfig", &trust);
    let with = w.global_config_with(
        "cert.gitconfig",
        &format!(
            "{trust}[http \"https://127.0.0.1:{}/\"]\n\tsslCert = {}\n\tsslKey = {}\n",
            server.mtls_port,
            cert.display(),
            key.display()
        ),
    );

    // Without a certificate the server refuses both.
    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &without, &[]);
    assert!(
        !git.status.success(),
        "git got through without a certificate"
    );
    let run = w.kalandra_with(w.root(), &["sync", &up_url, &down_url], &without);
    assert_ne!(run.code, 0, "synced without a certificate{run}");
    assert!(w.refs(&down).is_empty());

    // With http.sslCert and http.sslKey, both get through.
    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &with, &[]);
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let run = w.kalandra_with(w.root(), &["sync", &up_url, &down_url], &with);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&down)),
        &scope.filter(&w.refs(&up)),
        &format!("downstream after the sync{run}"),
    );
    w.assert_fsck(&down);

    // GIT_SSL_CERT and GIT_SSL_KEY do the same.
    let env: Vec<(&str, OsString)> = vec![
        ("GIT_SSL_CERT", cert.clone().into_os_string()),
        ("GIT_SSL_KEY", key.clone().into_os_string()),
    ];
    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &without, &env);
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let run = w.kalandra_with_env(w.root(), &["plan", &up_url, &down_url], &without, &env);
    run.assert_code(0);

    // A key file that holds no key is named, and its content never shown.
    let bad_key = w.root().join("bad.key");
    std::fs::write(&bad_key, "not-a-key-but-a-secret-4711\n").expect("can write");
    let env: Vec<(&str, OsString)> = vec![
        ("GIT_SSL_CERT", cert.into_os_string()),
        ("GIT_SSL_KEY", bad_key.clone().into_os_string()),
    ];
    let run = w.kalandra_with_env(w.root(), &["plan", &up_url, &down_url], &without, &env);
    run.assert_code(2);
    run.assert_stderr_mentions(&[path_arg(&bad_key)]);
    assert_hidden(&run.stdout, &run.stderr, "not-a-key-but-a-secret-4711");
}

/// The HTTP versions of the requests in `log` whose User-Agent starts with `agent`.
fn versions_used(log: &str, agent: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter(|line| line.contains(&format!("\"{agent}")))
        .filter_map(|line| {
            let request = line.split('"').nth(1)?;
            request.rsplit(' ').next().map(str::to_owned)
        })
        .collect()
}

#[test]
fn http_version_http2_is_offered_over_tls_as_git_does() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let up_url = server.h2_url("v2", "mirror/upstream");
    let down_url = server.h2_url("v2", "mirror/empty.git");
    let trust = format!("[http]\n\tsslCAInfo = {}\n", server.ca.display());
    let config = |name: &str, version: &str| {
        w.global_config_with(name, &format!("{trust}\tversion = {version}\n"))
    };
    let (h2, h1) = (
        config("h2.gitconfig", "HTTP/2"),
        config("h1.gitconfig", "HTTP/1.1"),
    );

    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &h2, &[]);
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let run = w.kalandra_with(w.root(), &["sync", &up_url, &down_url], &h2);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&down)),
        &scope.filter(&w.refs(&up)),
        &format!("downstream after the sync over HTTP/2{run}"),
    );
    w.assert_fsck(&down);
    let log = server.access_log();
    assert_eq!(
        versions_used(&log, "git/"),
        ["HTTP/2.0".to_owned()].into(),
        "{log}"
    );
    assert_eq!(
        versions_used(&log, "kalandra/"),
        ["HTTP/2.0".to_owned()].into(),
        "{log}"
    );

    // HTTP/1.1, and unset, keep to HTTP/1.1 (the push is then one chunked POST).
    w.commit_file(&up, "h1.txt", "over HTTP/1.1\n", "h1");
    let before = server.access_log().len();
    let run = w.kalandra_with(w.root(), &["sync", &up_url, &down_url], &h1);
    run.assert_code(0);
    let run = w.kalandra_with(
        w.root(),
        &["plan", &up_url, &down_url],
        &w.global_config_with("unset.gitconfig", &trust),
    );
    run.assert_code(0);
    let log = server.access_log();
    assert_eq!(
        versions_used(&log[before..], "kalandra/"),
        ["HTTP/1.1".to_owned()].into(),
        "{log}"
    );
    // The commit went to upstream's current branch; the HTTP/1.1 sync carried it.
    let branch = w.git(&up, &["symbolic-ref", "HEAD"]);
    assert_eq!(w.rev(&down, &branch), w.rev(&up, &branch));
}

#[test]
fn cookies_from_http_cookie_file_reach_their_server() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let up_url = server.url("cookie", "mirror/upstream");
    let down_url = server.url("cookie", "mirror/empty.git");
    let jar = w.root().join("cookies.txt");
    let value = crate::nginx::COOKIE_VALUE;
    std::fs::write(
        &jar,
        format!(
            "# Netscape HTTP Cookie File\n\
             elsewhere.invalid\tFALSE\t/\tFALSE\t0\tkalandra_session\twrong\n\
             127.0.0.1\tFALSE\t/cookie\tFALSE\t0\tkalandra_session\t{value}\n"
        ),
    )
    .expect("can write the cookie file");
    let without = w.global_config();
    let with = w.global_config_with(
        "cookies.gitconfig",
        &format!("[http]\n\tcookieFile = {}\n", jar.display()),
    );

    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &without, &[]);
    assert!(!git.status.success(), "git got through without the cookie");
    let run = w.kalandra_with(w.root(), &["sync", &up_url, &down_url], &without);
    assert_ne!(run.code, 0, "synced without the cookie{run}");

    let git = git_as(&w, w.root(), &["ls-remote", &up_url], &with, &[]);
    assert!(
        git.status.success(),
        "{}",
        String::from_utf8_lossy(&git.stderr)
    );
    let run = w.kalandra_with(w.root(), &["sync", "-vvv", &up_url, &down_url], &with);
    run.assert_code(0);
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(&down)),
        &scope.filter(&w.refs(&up)),
        &format!("downstream after the sync{run}"),
    );
    w.assert_fsck(&down);
    assert_hidden(&run.stdout, &run.stderr, value);
}
