//! Connection and protocol failures (exit 4): a broken upstream, missing repositories.

use std::path::{Path, PathBuf};

use crate::harness::{path_arg, random_hex_lines, Refs, World, STALL_WHILE_PARENT_LIVES};

/// Bytes of pack data the broken upstream lets through before it stops.
const CUT_AFTER: usize = 2000;

struct Broken {
    w: World,
    up: PathBuf,
    down: PathBuf,
    before: Refs,
}

/// Mirror the big-file fixture, then add upstream a commit whose pack is far larger than
/// [`CUT_AFTER`], so that cutting the pack there is cutting it in the middle.
fn mirrored_with_big_change_pending() -> Broken {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    let old = w.rev(&up, "main");
    let new = w.commit_file(&up, "more.txt", &random_hex_lines(7, 4096), "256 KiB more");
    w.git(&up, &["branch", "second", "main"]);

    let pack = w.git_with_input(
        &up,
        &["pack-objects", "--revs", "--stdout", "--thin", "-q"],
        format!("{new}\n^{old}\n").as_bytes(),
    );
    assert!(
        pack.len() > 20 * CUT_AFTER,
        "precondition: the pending pack ({} bytes) must be much bigger than {CUT_AFTER} bytes",
        pack.len()
    );
    Broken {
        w,
        up,
        down,
        before,
    }
}

/// A global git config whose `uploadpack.packObjectsHook` runs pack-objects but lets only
/// [`CUT_AFTER`] bytes of its pack through, then exits with `exit_code`.
fn truncating_upstream_config(w: &World, exit_code: i32) -> PathBuf {
    let hook = w.root().join(format!("truncate-pack-{exit_code}.sh"));
    std::fs::write(
        &hook,
        format!("#!/bin/sh\n\"$@\" | head -c {CUT_AFTER}\nexit {exit_code}\n"),
    )
    .expect("can write the hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
    }
    w.global_config_with(
        &format!("truncating-{exit_code}.gitconfig"),
        &format!("[uploadpack]\n\tpackObjectsHook = {}\n", path_arg(&hook)),
    )
}

fn assert_failed_cleanly(b: &Broken, config: &Path) {
    let Broken {
        w,
        up,
        down,
        before,
    } = b;
    let run = w.kalandra_with(
        w.root(),
        &["sync", "--json", path_arg(up), path_arg(down)],
        config,
    );
    run.assert_code(4);
    let report = run.failure_report();
    assert!(
        report.refs().values().all(|r| r.status != "ok"),
        "no ref may be reported ok when the pack never arrived{run}"
    );
    assert_eq!(&w.refs(down), before, "downstream refs must be unchanged");
    w.assert_fsck(down);

    // The human-readable run names the failure on stderr.
    let run = w.kalandra_with(w.root(), &["sync", path_arg(up), path_arg(down)], config);
    run.assert_code(4);
    run.assert_stderr_mentions(&["upstream", "pack", "upload-pack"]);
    assert_eq!(&w.refs(down), before, "downstream refs must be unchanged");
    w.assert_fsck(down);

    // With a healthy upstream the same sync goes through.
    w.sync_ok(up, down, &[]);
}

#[test]
fn upstream_dying_mid_pack_changes_nothing() {
    let b = mirrored_with_big_change_pending();
    let config = truncating_upstream_config(&b.w, 1);
    assert_failed_cleanly(&b, &config);
}

#[test]
fn upstream_truncating_pack_without_error_changes_nothing() {
    let b = mirrored_with_big_change_pending();
    let config = truncating_upstream_config(&b.w, 0);
    assert_failed_cleanly(&b, &config);
}

#[test]
fn upstream_dying_mid_pack_on_initial_mirror_leaves_downstream_empty() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let config = truncating_upstream_config(&w, 1);
    let run = w.kalandra_with(w.root(), &["sync", path_arg(&up), path_arg(&down)], &config);
    run.assert_code(4);
    assert!(w.refs(&down).is_empty(), "downstream must stay empty{run}");
    w.assert_fsck(&down);
}

/// An upstream whose pack-objects sends part of the pack, then goes silent without closing.
#[test]
fn stalled_upstream_hits_the_idle_timeout_and_changes_nothing() {
    let b = mirrored_with_big_change_pending();
    let hook = b.w.root().join("stall-pack.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\n\"$@\" | head -c {CUT_AFTER}\n{STALL_WHILE_PARENT_LIVES}"),
    )
    .expect("can write the hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
    }
    let config = b.w.global_config_with(
        "stalling.gitconfig",
        &format!("[uploadpack]\n\tpackObjectsHook = {}\n", path_arg(&hook)),
    );
    let started = std::time::Instant::now();
    let run = b.w.kalandra_with(
        b.w.root(),
        &[
            "sync",
            "--idle-timeout",
            "2",
            path_arg(&b.up),
            path_arg(&b.down),
        ],
        &config,
    );
    run.assert_code(4);
    run.assert_stderr_mentions(&["idle timeout"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(45),
        "kalandra must give up on its own long before the stalled server wakes up{run}"
    );
    assert_eq!(
        b.w.refs(&b.down),
        b.before,
        "downstream refs must be unchanged"
    );
    b.w.assert_fsck(&b.down);
}

#[test]
fn missing_upstream_is_a_connection_failure_naming_it() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("down-extra.git");
    let before = w.refs(&down);
    let missing = w.root().join("no-such-upstream.git");

    let run = w.kalandra(&["sync", path_arg(&missing), path_arg(&down)]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("no-such-upstream.git"),
        "the error must name the missing repository{run}"
    );
    assert_eq!(w.refs(&down), before);

    let run = w.kalandra(&["sync", "--json", path_arg(&missing), path_arg(&down)]);
    run.assert_code(4);
    run.failure_report();

    let run = w.kalandra(&["plan", path_arg(&missing), path_arg(&down)]);
    run.assert_code(4);
    assert_eq!(w.refs(&down), before);
}

#[test]
fn missing_downstream_is_a_connection_failure_naming_it() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let missing = w.root().join("no-such-downstream.git");

    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&missing)]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("no-such-downstream.git"),
        "the error must name the missing repository{run}"
    );
    assert!(
        !missing.exists(),
        "kalandra must not create the downstream repository"
    );

    let url = format!("file://{}", path_arg(&missing));
    let run = w.kalandra(&["sync", "--json", path_arg(&up), &url]);
    run.assert_code(4);
    run.failure_report();
    assert!(!missing.exists());
}

#[test]
fn directory_that_is_not_a_repository_is_a_connection_failure() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let plain = w.root().join("plain-directory");
    std::fs::create_dir_all(&plain).expect("can create a directory");
    std::fs::write(plain.join("file.txt"), "not a repository\n").expect("can write");

    let run = w.kalandra(&["sync", path_arg(&plain), path_arg(&down)]);
    run.assert_code(4);
    assert!(
        run.stderr.contains("plain-directory"),
        "the error must name it{run}"
    );
    assert!(w.refs(&down).is_empty());
}
