//! What a sync may believe: downstream's report is checked against a fresh look at its refs,
//! a lost report is `unknown` rather than "unchanged", downstream's own reason beats
//! "Broken pipe", ref names git refuses are skipped, paths freed by deletes are reused, and
//! text from servers cannot fake output lines.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread;

use crate::git_daemon::Daemon;
use crate::harness::{assert_refs_eq, path_arg, Run, Scope, World, PERL_PROC_RECEIVE_PRELUDE};

/// The mirror fixture, mirrored once (no filter settings: these tests are not about ancestry).
fn mirrored() -> crate::divergence::Fx {
    crate::divergence::mirrored_with(&[])
}

fn json(w: &World, up: &str, down: &str, extra: &[&str]) -> Run {
    let mut args = vec!["sync", "--json"];
    args.extend_from_slice(extra);
    args.extend([up, down]);
    w.kalandra(&args)
}

fn in_scope(w: &World, repo: &Path) -> crate::harness::Refs {
    Scope::default().filter(&w.refs(repo))
}

/// A proc-receive hook (githooks(5)) that answers `ok` for every command and writes nothing:
/// what a broken server does (a real dulwich release did exactly this for sha256).
const LYING_PROC_RECEIVE_BODY: &str = r#"
1 while defined read_pkt();
write_pkt("version=1");
print "0000";
my @refs;
while (defined(my $line = read_pkt())) {
    push @refs, (split / /, $line)[2];
}
write_pkt("ok $_") for @refs;
print "0000";
"#;

#[test]
fn a_downstream_that_reports_ok_and_writes_nothing_is_caught() {
    let crate::divergence::Fx { w, up, down } = mirrored();
    let before = w.refs(&down);
    w.checkout(&up, "main", None);
    w.commit_file(&up, "lie.txt", "lie\n", "main moves");
    w.checkout(&up, "develop", None);
    w.git(&down, &["config", "receive.procReceiveRefs", "refs/heads"]);
    w.install_hook(
        &down,
        "proc-receive",
        &format!("{PERL_PROC_RECEIVE_PRELUDE}{LYING_PROC_RECEIVE_BODY}"),
    );

    let run = json(&w, path_arg(&up), path_arg(&down), &[]);
    run.assert_code(8);
    let report = run.failure_report();
    assert_eq!(report.0["error_kind"], "verify-mismatch", "{run}");
    let error = report.error().unwrap_or_default().to_owned();
    assert!(
        error.contains("refs/heads/main") && error.contains("was reported"),
        "the error names the ref and what was claimed: {error:?}{run}"
    );
    assert_eq!(w.refs(&down), before, "the lie changed nothing");

    // --no-verify takes downstream's word, as before.
    let run = json(&w, path_arg(&up), path_arg(&down), &["--no-verify"]);
    run.assert_code(0);
}

#[test]
fn a_report_lost_after_the_whole_pack_is_unknown_not_unchanged() {
    let crate::divergence::Fx { w, up, down } = mirrored();
    w.checkout(&up, "main", None);
    w.commit_file(&up, "slow.txt", "slow\n", "main moves");
    w.checkout(&up, "develop", None);
    // A pre-receive hook slower than the idle timeout, and no keepalive: the pack has been
    // handed over completely, then downstream goes quiet.
    w.git(&down, &["config", "receive.keepAlive", "0"]);
    w.install_hook(
        &down,
        "pre-receive",
        "#!/bin/sh\ncat >/dev/null\nsleep 6\nexit 0\n",
    );

    let run = json(&w, path_arg(&up), path_arg(&down), &["--idle-timeout", "2"]);
    run.assert_code(7);
    let report = run.report();
    assert_eq!(report.0["outcome"], "unknown", "{run}");
    let main = &report.refs()["refs/heads/main"];
    assert_eq!(main.status, "unknown", "{run}");
    assert!(
        main.reason
            .as_deref()
            .unwrap_or_default()
            .contains("may or may not"),
        "{run}"
    );
    let human = w.kalandra(&[
        "sync",
        "--idle-timeout",
        "2",
        path_arg(&up),
        path_arg(&down),
    ]);
    human.assert_code(7);
    assert!(human.stdout.contains("unknown"), "{human}");
    w.assert_fsck(&down);

    // Without the slow hook the next sync converges, whatever the lost one did.
    w.remove_hook(&down, "pre-receive");
    w.sync_ok(&up, &down, &[]);
}

#[test]
fn downstreams_own_reason_replaces_broken_pipe() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.git(&down, &["config", "receive.maxInputSize", "4096"]);
    let run = json(&w, path_arg(&up), path_arg(&down), &[]);
    run.assert_code(4);
    let error = run.failure_report().error().unwrap_or_default().to_owned();
    assert!(
        error.contains("pack exceeds maximum allowed size"),
        "downstream's reason is the error: {error:?}{run}"
    );
    assert!(w.refs(&down).is_empty(), "nothing moved{run}");
}

#[test]
fn a_branch_replaced_by_a_directory_of_branches_converges() {
    for atomic in [false, true] {
        let crate::divergence::Fx { w, up, down } = mirrored();
        let extra: &[&str] = if atomic { &["--atomic"] } else { &[] };
        w.git(&up, &["branch", "df", "main"]);
        w.git(&up, &["branch", "nest/inner", "main"]);
        w.sync_ok(&up, &down, extra);
        // a file becomes a directory, and a directory a file.
        w.git(&up, &["branch", "-D", "df"]);
        w.git(&up, &["branch", "df/one", "develop"]);
        w.git(&up, &["branch", "-D", "nest/inner"]);
        w.git(&up, &["branch", "nest", "develop"]);
        let report = w.sync_ok(&up, &down, extra);
        assert_eq!(report.refs().len(), 4, "atomic={atomic}: {}", report.0);
        assert_refs_eq(&in_scope(&w, &down), &in_scope(&w, &up), "converged");
    }
}

/// A TCP proxy in front of git daemon that swaps equal-length byte strings in what the
/// server sends, so that a real server advertises names it would never produce itself.
fn rewriting_proxy(target: u16, swaps: Vec<(Vec<u8>, Vec<u8>)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let swaps = swaps.clone();
            let (mut s_read, mut c_write) = (server, client);
            // Each read is rewritten on its own: the ls-refs response is small and comes in
            // one piece, and a name split across reads would fail the test, not pass it.
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match s_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &mut buf[..n];
                    for (from, to) in &swaps {
                        let mut i = 0;
                        while i + from.len() <= chunk.len() {
                            if &chunk[i..i + from.len()] == from.as_slice() {
                                chunk[i..i + from.len()].copy_from_slice(to);
                            }
                            i += 1;
                        }
                    }
                    if c_write.write_all(chunk).is_err() {
                        break;
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn ref_names_git_refuses_are_skipped_and_cannot_fake_output() {
    let crate::divergence::Fx { w, up, down } = mirrored();
    for name in ["fooXlock", "aXb", "cXXd", "okay"] {
        w.git(&up, &["branch", name, "main"]);
    }
    let daemon = Daemon::start(w.root());
    let swaps = vec![
        (
            b"refs/heads/fooXlock".to_vec(),
            b"refs/heads/foo.lock".to_vec(),
        ),
        (b"refs/heads/aXb".to_vec(), b"refs/heads/a\nb".to_vec()),
        (b"refs/heads/cXXd".to_vec(), b"refs/heads/c..d".to_vec()),
    ];
    let port = rewriting_proxy(daemon.port(), swaps);
    let relative = up
        .strip_prefix(w.root())
        .expect("inside")
        .display()
        .to_string();
    let up_url = format!("git://127.0.0.1:{port}/{relative}");

    let run = json(&w, &up_url, path_arg(&down), &["--atomic"]);
    run.assert_code(0);
    let report = run.report();
    let skipped: Vec<&str> = report.0["skipped_refs"]
        .as_array()
        .expect("skipped_refs")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        skipped,
        vec!["refs/heads/a\nb", "refs/heads/c..d", "refs/heads/foo.lock"],
        "{run}"
    );
    let after = w.refs(&down);
    assert_eq!(
        after.get("refs/heads/okay"),
        Some(&w.rev(&up, "okay")),
        "the rest is mirrored"
    );
    assert!(!after
        .keys()
        .any(|n| n.contains("Xlock") || n.contains(".lock")));

    // Human output: the skipped name is escaped, so it cannot start a line of its own.
    let human = w.kalandra(&["sync", &up_url, path_arg(&down)]);
    human.assert_code(0);
    assert!(human.stderr.contains("refs/heads/a\\nb"), "{human}");
    assert!(
        !human
            .stdout
            .lines()
            .chain(human.stderr.lines())
            .any(|l| l.starts_with('b')),
        "no line starts with the tail of the split name{human}"
    );
    w.assert_fsck(&down);
}

#[test]
fn control_characters_from_downstream_hooks_are_escaped() {
    let crate::divergence::Fx { w, up, down } = mirrored();
    w.checkout(&up, "main", None);
    w.commit_file(&up, "x.txt", "x\n", "main moves");
    w.checkout(&up, "develop", None);
    w.install_hook(
        &down,
        "update",
        "#!/bin/sh\nprintf 'evil \\033[2J\\ncreated  refs/heads/fake\\n' >&2\nexit 1\n",
    );
    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(6);
    assert!(
        !run.stderr.contains('\x1b'),
        "no raw escape reaches the terminal{run}"
    );
    assert!(
        !run.stdout
            .lines()
            .any(|l| l.starts_with("created  refs/heads/fake")),
        "{run}"
    );
}
