//! Which refs a sync touches: the default scope, --include/--exclude, never-pushed refs.

use crate::harness::{Scope, World};

#[test]
fn refs_outside_scope_are_left_untouched() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("down-extra.git"));
    let before = w.refs(&down);
    for name in ["refs/keep/x", "refs/backup/main", "refs/notes/commits"] {
        assert!(
            before.contains_key(name),
            "precondition: downstream has {name}"
        );
    }
    let up_refs = w.refs(&up);
    assert_ne!(
        up_refs["refs/notes/commits"], before["refs/notes/commits"],
        "precondition: both sides have their own notes"
    );

    // sync_ok checks that every downstream ref outside the scope is unchanged.
    w.sync_ok(&up, &down, &[]);
    let after = w.refs(&down);
    assert_eq!(after["refs/notes/commits"], before["refs/notes/commits"]);
    for name in [
        "refs/pull/1/head",
        "refs/merge-requests/2/head",
        "refs/changes/34/1234/1",
        "refs/keep-up/y",
    ] {
        assert!(
            !after.contains_key(name),
            "{name} is outside the scope but was pushed"
        );
    }

    // Changes upstream outside the scope are not for us: nothing to do.
    w.git(
        &up,
        &["notes", "add", "-f", "-m", "another note", "develop"],
    );
    w.git(&up, &["update-ref", "refs/pull/1/head", "main"]);
    let report = w.sync_ok(&up, &down, &[]);
    assert!(report.refs().is_empty(), "{:?}", report.refs());
    assert_eq!(w.refs(&down), after);
}

#[test]
fn include_replaces_the_default_scope_and_star_matches_slashes() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));

    let feature = ["--include", "refs/heads/feature/*"];
    let report = w.sync_ok(&up, &down, &feature);
    let names: Vec<String> = w.refs(&down).into_keys().collect();
    assert_eq!(
        names,
        [
            "refs/heads/feature/a",
            "refs/heads/feature/b",
            "refs/heads/feature/deep/nested"
        ],
        "only the included refs, '*' spanning '/'"
    );
    assert_eq!(report.refs().len(), 3);

    // Fill in the rest, then change things inside and outside the include.
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    w.git(&up, &["branch", "-D", "main", "release/1.x"]);
    w.git(&up, &["tag", "-d", "v1.1"]);
    w.checkout(&up, "feature/a", None);
    let a = w.commit_file(&up, "a.txt", "feature a 3\n", "feature a 3");
    w.checkout(&up, "develop", None);

    // sync_ok checks that main, release/1.x and v1.1 (outside the include) stay as they were.
    let report = w.sync_ok(&up, &down, &feature);
    let refs = report.refs();
    assert_eq!(refs.keys().collect::<Vec<_>>(), ["refs/heads/feature/a"]);
    let after = w.refs(&down);
    assert_eq!(after["refs/heads/feature/a"], a);
    for name in [
        "refs/heads/main",
        "refs/heads/release/1.x",
        "refs/tags/v1.1",
    ] {
        assert_eq!(
            after.get(name),
            before.get(name),
            "{name} is outside --include"
        );
    }
}

#[test]
fn exclude_wins_over_include() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));

    // --exclude narrows the default scope.
    w.sync_ok(&up, &down, &["--exclude", "refs/tags/*"]);
    let refs = w.refs(&down);
    assert_eq!(refs.len(), 6, "branches only: {refs:?}");
    assert!(refs.keys().all(|k| k.starts_with("refs/heads/")));

    // Several includes and an exclude that overlaps one of them.
    let args = [
        "--include",
        "refs/heads/*",
        "--exclude",
        "refs/heads/feature/*",
        "--include",
        "refs/tags/v1*",
    ];
    w.git(&up, &["branch", "-D", "feature/b"]);
    w.checkout(&up, "feature/a", None);
    w.commit_file(&up, "a.txt", "excluded change\n", "excluded change");
    w.checkout(&up, "develop", None);
    let report = w.sync_ok(&up, &down, &args);
    let names: Vec<String> = report.refs().into_keys().collect();
    assert_eq!(
        names,
        ["refs/tags/v1.0", "refs/tags/v1.0-again", "refs/tags/v1.1"],
        "the v1 tags are created; the excluded feature branches are neither updated nor deleted"
    );
    let after = w.refs(&down);
    assert!(after.contains_key("refs/heads/feature/b"));
    assert_ne!(after["refs/heads/feature/a"], w.rev(&up, "feature/a"));
    assert!(!after.contains_key("refs/tags/light"));

    // The same glob included and excluded: excluded.
    let report = w.sync_ok(
        &up,
        &down,
        &[
            "--include",
            "refs/heads/feature/a",
            "--exclude",
            "refs/heads/feature/a",
        ],
    );
    assert!(report.refs().is_empty());
    assert_ne!(
        w.refs(&down)["refs/heads/feature/a"],
        w.rev(&up, "feature/a")
    );
}

#[test]
fn review_refs_are_never_pushed_even_if_included() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));

    let report = w.sync_ok(&up, &down, &["--include", "refs/*"]);
    let after = w.refs(&down);
    let all = Scope::new(&["refs/*"], &[]);
    assert_eq!(after.len(), all.filter(&w.refs(&up)).len());
    assert!(after.contains_key("refs/notes/commits"));
    assert!(after.contains_key("refs/keep-up/y"));
    for name in [
        "refs/pull/1/head",
        "refs/merge-requests/2/head",
        "refs/changes/34/1234/1",
    ] {
        assert!(!after.contains_key(name), "{name} must never be pushed");
        assert!(
            !report.refs().contains_key(name),
            "{name} must not be planned"
        );
    }

    // Naming them explicitly changes nothing either.
    let report = w.sync_ok(
        &up,
        &down,
        &[
            "--include",
            "refs/pull/*",
            "--include",
            "refs/merge-requests/*",
            "--include",
            "refs/changes/*",
        ],
    );
    assert!(report.refs().is_empty(), "{:?}", report.refs());
    assert_eq!(w.refs(&down), after);
}
