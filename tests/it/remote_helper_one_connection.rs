//! The remote helper against servers that serve one connection at a time, as dulwich's
//! `TCPGitServer` does: a [`FaultProxy::serial`] in front of a real `git daemon` lets a second
//! connection in (its connect succeeds) but says nothing on it until the first has ended.
//! A helper that opened a second connection to a side while its first was open would stall
//! there; the proxy counts such overlaps, and every command must leave the count at zero.
//!
//! `KALANDRA_IDLE_TIMEOUT` is short and the harness's own timeout is the last guard: a stall
//! fails the test with the helper's timeout message rather than a kill. No timing is asserted.

use std::path::Path;

use crate::fault_proxy::FaultProxy;
use crate::git_daemon::Daemon;
use crate::harness::{assert_refs_eq, path_arg, GitRun, World};
use crate::remote_helper::Fx;

/// Long enough for any command here to finish, short enough for a stall to fail fast.
const IDLE_TIMEOUT: &str = "20";

/// `git://` through `proxy` to a repository under the daemon's root.
fn proxied(proxy: &FaultProxy, root: &Path, repo: &Path) -> String {
    let relative = repo.strip_prefix(root).expect("served by the daemon");
    format!("git://127.0.0.1:{}/{}", proxy.port(), relative.display())
}

fn helper_git(w: &World, dir: &Path, args: &[&str], idle_timeout: &str) -> GitRun {
    w.try_helper_git_env(
        dir,
        args,
        &[
            ("KALANDRA_IDLE_TIMEOUT", idle_timeout.into()),
            ("KALANDRA_LOG", "kalandra=info".into()),
        ],
    )
}

#[track_caller]
fn assert_one_at_a_time(proxy: &FaultProxy, what: &str) {
    assert!(proxy.connections() > 0, "{what}: the proxy was used");
    assert_eq!(
        proxy.overlaps(),
        0,
        "{what}: a second connection while the first was open"
    );
}

/// ls-remote, clone, fetch and push with UP behind a one-connection server, in protocol v2
/// (the `stateless-connect` proxy) and with `-c protocol.version=0` (the helper's `list` and
/// `fetch`, and a push against UP in v0, as with dulwich); then with DOWN behind one.
#[test]
fn a_server_that_serves_one_connection_at_a_time_is_never_asked_for_two() {
    let fx = Fx::new();
    let w = &fx.w;
    let root = fx.root();
    let daemon = Daemon::start(root);
    let down = fx.empty.clone();

    for (proto, name) in [(&[][..], "v2"), (&["-c", "protocol.version=0"][..], "v0")] {
        let proxy = FaultProxy::serial(daemon.port());
        let url = format!(
            "kalandra::{}=>{}",
            proxied(&proxy, root, &fx.up),
            path_arg(&down)
        );
        let with = |args: &[&str]| -> Vec<String> {
            proto.iter().chain(args).map(|s| s.to_string()).collect()
        };
        let run_git = |dir: &Path, args: &[&str]| {
            let args = with(args);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            helper_git(w, dir, &args, IDLE_TIMEOUT)
        };

        let run = run_git(root, &["ls-remote", &url]);
        run.assert_ok();
        let direct = w.git(root, &["ls-remote", path_arg(&fx.up)]);
        assert_eq!(run.stdout.trim_end(), direct, "{name}: ls-remote{run}");
        assert_one_at_a_time(&proxy, &format!("{name}: ls-remote"));

        let clone = root.join(format!("clone-{name}"));
        run_git(root, &["clone", "-q", &url, path_arg(&clone)]).assert_ok();
        assert_eq!(
            w.rev(&clone, "HEAD"),
            w.rev(&fx.up, "HEAD"),
            "{name}: clone"
        );
        w.assert_fsck(&clone);
        assert_one_at_a_time(&proxy, &format!("{name}: clone"));

        let next = w.commit_file(&fx.up, &format!("{name}.txt"), "more\n", name);
        run_git(&clone, &["fetch", "-q", "origin"]).assert_ok();
        assert_eq!(w.rev(&clone, "origin/develop"), next, "{name}: fetch");
        assert_one_at_a_time(&proxy, &format!("{name}: fetch"));

        // A new branch, and a fast-forward from a clone that has DOWN's value.
        let branch = format!("refs/heads/one-{name}");
        let run = run_git(
            &clone,
            &["push", &url, &format!("origin/develop~1:{branch}")],
        );
        run.assert_ok();
        // `protocol.version=0` reaches the helper too: UP (git daemon) then serves only its
        // tips, and develop~1 comes through develop.
        let spoken = format!("(protocol {name})");
        assert!(run.stderr.contains(&spoken), "{name}: UP spoke {name}{run}");
        run_git(&clone, &["push", &url, &format!("origin/develop:{branch}")]).assert_ok();
        assert_eq!(w.rev(&down, &branch), next, "{name}: push");
        w.assert_fsck(&down);
        assert_one_at_a_time(&proxy, &format!("{name}: push"));

        // An object UP lacks: UP (v2) ends the connection on `not our ref`, and the helper
        // connects again, one connection after the other, for the ref that UP has.
        let local_only = w.commit_file(&clone, "local.txt", "only here\n", "local only");
        let before = w.refs(&down);
        let run = run_git(
            &clone,
            &[
                "push",
                &url,
                &format!("{local_only}:refs/heads/local-{name}"),
                &format!("origin/develop~1:refs/heads/two-{name}"),
            ],
        );
        // With `protocol.version=0` the helper asks UP for v0 too, and the object is refused
        // before UP is asked for it.
        let why = if name == "v2" {
            "is not in upstream"
        } else {
            "protocol v0"
        };
        run.assert_failed().assert_stderr_has(&[why, "UP first"]);
        let mut expected = before;
        expected.insert(format!("refs/heads/two-{name}"), w.rev(&fx.up, "develop~1"));
        assert_refs_eq(&w.refs(&down), &expected, &format!("{name}: DOWN"));
        w.assert_fsck(&down);
        assert_one_at_a_time(&proxy, &format!("{name}: push with a missing object"));
    }

    // DOWN behind the one-connection server: `list for-push`, then the push.
    let proxy = FaultProxy::serial(daemon.port());
    let url = format!(
        "kalandra::{}=>{}",
        path_arg(&fx.up),
        proxied(&proxy, root, &down)
    );
    let local = root.join("clone-v2");
    helper_git(
        w,
        &local,
        &["push", &url, "origin/develop:refs/heads/down"],
        IDLE_TIMEOUT,
    )
    .assert_ok();
    assert_eq!(
        w.rev(&down, "refs/heads/down"),
        w.rev(&local, "origin/develop")
    );
    w.assert_fsck(&down);
    assert_one_at_a_time(&proxy, "DOWN behind the proxy: push");
}

/// The case that cannot work, as documented: UP and DOWN on one single-connection server. A
/// push holds a connection to each side at once, so it stalls until the idle timeout and
/// fails saying so; DOWN is unchanged.
#[test]
fn both_sides_on_one_single_connection_server_fail_at_the_idle_timeout() {
    let fx = Fx::new();
    let w = &fx.w;
    let root = fx.root();
    let daemon = Daemon::start(root);
    let proxy = FaultProxy::serial(daemon.port());
    let down = fx.empty.clone();
    let url = format!(
        "kalandra::{}=>{}",
        proxied(&proxy, root, &fx.up),
        proxied(&proxy, root, &down)
    );
    let local = fx.local();
    let run = helper_git(w, &local, &["push", &url, "HEAD:refs/heads/x"], "2");
    run.assert_failed()
        .assert_stderr_has_any(&["timed out", "timeout", "nothing"]);
    assert!(w.refs(&down).is_empty(), "DOWN unchanged{run}");
    assert!(
        proxy.overlaps() > 0,
        "the second side waited behind the first"
    );
}
