//! `kalandra plan` lists what sync would do and changes nothing.

use crate::harness::{expected_changes, path_arg, Scope, World};

#[test]
fn plan_into_empty_downstream_lists_creates_and_changes_nothing() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let objects_before = w.git(&down, &["count-objects", "-v"]);

    let run = w.kalandra(&["plan", "--json", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    let report = run.report();
    assert!(report.ok(), "{run}");
    assert!(report.dry_run(), "plan must report dry_run=true{run}");
    assert_eq!(report.error(), None);
    let expected = expected_changes(&w.refs(&up), &w.refs(&down), &Scope::default(), true);
    assert_eq!(expected.len(), 11);
    report.assert_changes(&expected, "planned", &run);

    assert!(w.refs(&down).is_empty(), "plan must not push any ref");
    assert_eq!(
        w.git(&down, &["count-objects", "-v"]),
        objects_before,
        "plan must not write objects downstream"
    );
}

#[test]
fn plan_lists_updates_and_deletes_and_changes_nothing() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("down-extra.git"));
    w.sync_ok(&up, &down, &[]);

    w.checkout(&up, "main", None);
    w.commit_file(&up, "main.txt", "planned\n", "planned change");
    w.git(&up, &["tag", "-f", "light", "main"]);
    w.git(&up, &["branch", "-D", "feature/b"]);
    w.checkout(&up, "new-branch", Some("main~1"));
    w.checkout(&up, "develop", None);
    let before = w.refs(&down);

    let run = w.kalandra(&["plan", "--json", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    let report = run.report();
    assert!(report.ok() && report.dry_run(), "{run}");
    let expected = expected_changes(&w.refs(&up), &before, &Scope::default(), true);
    assert_eq!(
        expected.len(),
        4,
        "update main, update light, delete feature/b, create new-branch"
    );
    report.assert_changes(&expected, "planned", &run);
    assert_eq!(w.refs(&down), before, "plan must change nothing");

    // Options shape the plan as they shape a sync.
    let run = w.kalandra(&[
        "plan",
        "--json",
        "--no-prune",
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(0);
    let expected = expected_changes(&w.refs(&up), &before, &Scope::default(), false);
    run.report().assert_changes(&expected, "planned", &run);

    let run = w.kalandra(&[
        "plan",
        "--json",
        "--include",
        "refs/tags/*",
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(0);
    let expected = expected_changes(
        &w.refs(&up),
        &before,
        &Scope::new(&["refs/tags/*"], &[]),
        true,
    );
    assert_eq!(expected.len(), 1);
    run.report().assert_changes(&expected, "planned", &run);

    // The human-readable plan names the refs it would change.
    let run = w.kalandra(&["plan", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    let text = format!("{}{}", run.stdout, run.stderr);
    for name in ["main", "light", "feature/b", "new-branch"] {
        assert!(text.contains(name), "the plan should mention {name}{run}");
    }
    assert_eq!(w.refs(&down), before, "plan must change nothing");

    // And the real sync then does exactly what was planned.
    w.sync_ok(&up, &down, &[]);
}
