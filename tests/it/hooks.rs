//! Downstream refusing refs: hooks, atomic pushes, and a ref that moves under our feet.

use std::path::{Path, PathBuf};

use crate::harness::{expected_changes, path_arg, Refs, Scope, World};

/// An `update` hook that declines exactly one ref (git then reports it as "hook declined").
const DECLINE_FEATURE_A: &str = r#"#!/bin/sh
if [ "$1" = refs/heads/feature/a ]; then
  echo "kalandra-test: feature/a is frozen" >&2
  exit 1
fi
exit 0
"#;

struct Setup {
    w: World,
    up: PathBuf,
    down: PathBuf,
    /// Downstream refs after the initial mirror.
    before: Refs,
}

/// Mirror, then change upstream: main and feature/a move, a tag and a branch are new.
fn mirrored_then_changed() -> Setup {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    w.checkout(&up, "main", None);
    w.commit_file(&up, "main.txt", "main moves\n", "main moves");
    w.git(&up, &["tag", "-a", "-m", "release 3", "v3"]);
    w.checkout(&up, "feature/a", None);
    w.commit_file(&up, "a.txt", "feature a moves\n", "feature a moves");
    w.checkout(&up, "brand-new", Some("develop"));
    w.commit_file(&up, "new.txt", "new\n", "brand new branch");
    w.checkout(&up, "develop", None);
    Setup {
        w,
        up,
        down,
        before,
    }
}

fn sync_json(w: &World, up: &Path, down: &Path, extra: &[&str]) -> crate::harness::Run {
    let mut args = vec!["sync", "--json"];
    args.extend_from_slice(extra);
    args.extend([path_arg(up), path_arg(down)]);
    w.kalandra(&args)
}

#[test]
fn hook_rejecting_one_ref_fails_the_whole_atomic_push() {
    let Setup {
        w,
        up,
        down,
        before,
    } = mirrored_then_changed();
    w.install_hook(&down, "update", DECLINE_FEATURE_A);
    let expected = expected_changes(&w.refs(&up), &before, &Scope::default(), true);
    assert_eq!(expected.len(), 4, "precondition: four refs to push");

    let run = sync_json(&w, &up, &down, &["--atomic"]);
    run.assert_code(6);
    let report = run.report();
    assert!(!report.ok(), "a rejected ref means ok=false{run}");
    assert_eq!(report.0["outcome"], "nothing-landed", "{run}");
    let refs = report.refs();
    let a = &refs["refs/heads/feature/a"];
    assert_eq!(a.status, "rejected", "{run}");
    let reason = a.reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("hook declined"),
        "the hook's reason is reported: {reason:?}{run}"
    );
    for (name, r) in &refs {
        assert_ne!(
            r.status, "ok",
            "{name} reported ok, but an atomic push changes nothing{run}"
        );
    }
    assert_eq!(
        refs.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every planned ref is reported{run}"
    );
    assert_eq!(
        w.refs(&down),
        before,
        "atomic: no ref may change downstream"
    );
    w.assert_fsck(&down);

    // The human-readable run says so too.
    let run = w.kalandra(&["sync", "--atomic", path_arg(&up), path_arg(&down)]);
    run.assert_code(6);
    assert_eq!(w.refs(&down), before);

    // Once the hook is gone, everything goes through.
    w.remove_hook(&down, "update");
    w.sync_ok(&up, &down, &[]);
}

#[test]
fn hook_rejecting_one_ref_by_default_updates_the_others() {
    let Setup {
        w,
        up,
        down,
        before,
    } = mirrored_then_changed();
    w.install_hook(&down, "update", DECLINE_FEATURE_A);
    let up_refs = w.refs(&up);

    let run = sync_json(&w, &up, &down, &[]);
    run.assert_code(3);
    let report = run.report();
    assert!(!report.ok());
    assert_eq!(report.0["outcome"], "partial", "{run}");
    let refs = report.refs();
    assert_eq!(refs.len(), 4, "{run}");
    for (name, r) in &refs {
        if name == "refs/heads/feature/a" {
            assert_eq!(r.status, "rejected", "{run}");
            let reason = r.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("hook declined"), "{reason:?}{run}");
        } else {
            assert_eq!(r.status, "ok", "{name} should have gone through{run}");
        }
    }
    let after = w.refs(&down);
    assert_eq!(
        after["refs/heads/feature/a"],
        before["refs/heads/feature/a"]
    );
    for name in ["refs/heads/main", "refs/tags/v3", "refs/heads/brand-new"] {
        assert_eq!(
            after.get(name),
            up_refs.get(name),
            "{name} must be updated by default (per-ref pushes)"
        );
    }
    w.assert_fsck(&down);
}

/// A pre-receive hook that, like a concurrent pusher, moves refs/heads/main downstream to
/// `oid` after kalandra has read the advertisement but before the refs are updated.
fn concurrent_writer(oid: &str) -> String {
    format!(
        r#"#!/bin/sh
cat >/dev/null
# Ref updates are forbidden inside receive-pack's quarantine; a concurrent pusher has none.
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
git update-ref refs/heads/main {oid} || exit 1
exit 0
"#
    )
}

#[test]
fn ref_moved_between_advertisement_and_push_is_not_overwritten() {
    let Setup {
        w,
        up,
        down,
        before,
    } = mirrored_then_changed();
    // A value downstream already has, different from both the advertised and the new one.
    let concurrent = before["refs/heads/develop"].clone();
    assert_ne!(concurrent, before["refs/heads/main"]);
    w.install_hook(&down, "pre-receive", &concurrent_writer(&concurrent));

    let run = sync_json(&w, &up, &down, &["--atomic"]);
    run.assert_code(6);
    let report = run.report();
    assert!(!report.ok());
    let refs = report.refs();
    assert_eq!(refs["refs/heads/main"].status, "rejected", "{run}");
    assert!(
        refs["refs/heads/main"].reason.is_some(),
        "a rejection has a reason{run}"
    );

    let after = w.refs(&down);
    assert_eq!(
        after["refs/heads/main"], concurrent,
        "the concurrently written value must be kept"
    );
    let mut expected = before.clone();
    expected.insert("refs/heads/main".into(), concurrent.clone());
    crate::harness::assert_refs_eq(&after, &expected, "atomic: nothing else changed");
    w.assert_fsck(&down);

    // The next sync (no concurrent writer) converges.
    w.remove_hook(&down, "pre-receive");
    w.sync_ok(&up, &down, &[]);
}

#[test]
fn ref_moved_between_advertisement_and_push_per_ref() {
    let Setup {
        w,
        up,
        down,
        before,
    } = mirrored_then_changed();
    let concurrent = before["refs/heads/develop"].clone();
    w.install_hook(&down, "pre-receive", &concurrent_writer(&concurrent));
    let up_refs = w.refs(&up);

    let run = sync_json(&w, &up, &down, &[]);
    run.assert_code(3);
    let refs = run.report().refs();
    assert_eq!(refs["refs/heads/main"].status, "rejected", "{run}");
    assert_eq!(refs["refs/heads/feature/a"].status, "ok", "{run}");

    let after = w.refs(&down);
    assert_eq!(
        after["refs/heads/main"], concurrent,
        "the concurrent write is kept"
    );
    for name in [
        "refs/heads/feature/a",
        "refs/tags/v3",
        "refs/heads/brand-new",
    ] {
        assert_eq!(
            after.get(name),
            up_refs.get(name),
            "{name} must be updated by default (per-ref pushes)"
        );
    }
    w.assert_fsck(&down);
}

/// Fifty new branches and one refused by downstream's hook.
fn fifty_branches_and_a_refused_one() -> Setup {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    let tip = w.rev(&up, "develop");
    for i in 0..50 {
        w.git(&up, &["branch", &format!("many/{i:02}"), &tip]);
    }
    w.git(&up, &["branch", "-f", "feature/a", "main"]);
    w.install_hook(&down, "update", DECLINE_FEATURE_A);
    Setup {
        w,
        up,
        down,
        before,
    }
}

#[test]
fn one_refused_ref_lets_fifty_others_land_by_default() {
    let Setup {
        w,
        up,
        down,
        before,
    } = fifty_branches_and_a_refused_one();
    let run = sync_json(&w, &up, &down, &[]);
    run.assert_code(3);
    let report = run.report();
    assert!(!report.ok(), "{run}");
    assert_eq!(report.0["outcome"], "partial", "{run}");
    let refs = report.refs();
    assert_eq!(refs.len(), 51, "{run}");
    let ok = refs.values().filter(|r| r.status == "ok").count();
    assert_eq!(ok, 50, "{run}");
    assert_eq!(refs["refs/heads/feature/a"].status, "rejected", "{run}");
    let mut expected = w.refs(&up);
    expected.retain(|name, _| Scope::default().contains(name));
    expected.insert(
        "refs/heads/feature/a".into(),
        before["refs/heads/feature/a"].clone(),
    );
    crate::harness::assert_refs_eq(&w.refs(&down), &expected, "fifty landed, one kept");
    w.assert_fsck(&down);
}

#[test]
fn one_refused_ref_under_atomic_holds_back_all_fifty() {
    let Setup {
        w,
        up,
        down,
        before,
    } = fifty_branches_and_a_refused_one();
    let run = sync_json(&w, &up, &down, &["--atomic"]);
    run.assert_code(6);
    let report = run.report();
    assert_eq!(report.0["outcome"], "nothing-landed", "{run}");
    let refs = report.refs();
    assert_eq!(refs.len(), 51, "{run}");
    assert!(refs.values().all(|r| r.status == "rejected"), "{run}");
    crate::harness::assert_refs_eq(&w.refs(&down), &before, "atomic: nothing moved");
    w.assert_fsck(&down);
}

#[test]
fn atomic_against_a_downstream_without_atomic_fails_before_pushing() {
    let Setup {
        w,
        up,
        down,
        before,
    } = mirrored_then_changed();
    w.git(&down, &["config", "receive.advertiseAtomic", "false"]);
    let run = sync_json(&w, &up, &down, &["--atomic"]);
    run.assert_code(5);
    let report = run.failure_report();
    let error = report.error().unwrap_or_default().to_owned();
    assert!(
        error.contains("does not support an atomic push") && error.contains("`atomic`"),
        "the error names the missing capability: {error:?}{run}"
    );
    assert_eq!(w.refs(&down), before, "nothing was pushed");
    // Without --atomic the same downstream takes the refs one by one.
    w.sync_ok(&up, &down, &[]);
}
