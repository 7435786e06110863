//! Safety guards: an upstream with nothing in scope, and mass deletes (exit 5).

use crate::harness::{path_arg, Scope, World};

/// Delete `names` (full ref names) in `repo`.
fn delete_refs(w: &World, repo: &std::path::Path, names: &[&str]) {
    let input: String = names.iter().map(|n| format!("delete {n}\n")).collect();
    w.git_with_input(repo, &["update-ref", "--stdin"], input.as_bytes());
}

#[test]
fn empty_upstream_deletes_nothing_unless_allowed() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("down-extra.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    let empty = w.root().join("empty-upstream.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&empty)]);

    let run = w.kalandra(&["sync", path_arg(&empty), path_arg(&down)]);
    run.assert_code(5);
    assert!(
        !run.stderr.trim().is_empty(),
        "a refusal must say why on stderr{run}"
    );
    assert_eq!(w.refs(&down), before, "a refused sync changes nothing");

    let run = w.kalandra(&["sync", "--json", path_arg(&empty), path_arg(&down)]);
    run.assert_code(5);
    run.failure_report();
    assert_eq!(w.refs(&down), before, "a refused sync changes nothing");

    // Allowed: every ref in scope goes, refs outside the scope stay (sync_ok checks both).
    // Deleting the branch HEAD names is git's own policy question, not kalandra's: allow it.
    w.git(&down, &["config", "receive.denyDeleteCurrent", "warn"]);
    let report = w.sync_ok(&empty, &down, &["--allow-mass-delete"]);
    assert_eq!(report.refs().len(), 11);
    assert!(Scope::default().filter(&w.refs(&down)).is_empty());
    assert_eq!(w.refs(&down)["refs/keep/x"], before["refs/keep/x"]);
}

#[test]
fn upstream_with_refs_but_none_in_scope_deletes_nothing_unless_allowed() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream-bare.git"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    let in_scope: Vec<String> = Scope::default().filter(&w.refs(&up)).into_keys().collect();
    let names: Vec<&str> = in_scope.iter().map(String::as_str).collect();
    delete_refs(&w, &up, &names);
    assert!(
        !w.refs(&up).is_empty(),
        "precondition: upstream keeps refs outside the scope"
    );

    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(5);
    assert_eq!(w.refs(&down), before);
    w.assert_fsck(&down);

    // Deleting the branch HEAD names is git's own policy question, not kalandra's: allow it.
    w.git(&down, &["config", "receive.denyDeleteCurrent", "warn"]);
    w.sync_ok(&up, &down, &["--allow-mass-delete"]);
    assert!(w.refs(&down).is_empty());
}

#[test]
fn mass_delete_is_refused_then_allowed() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    // down-extra.git has 3 refs outside the scope: they must not count in the guard's total.
    let (up, down) = (fx.join("upstream"), fx.join("down-extra.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    assert_eq!(Scope::default().filter(&before).len(), 11);
    assert_eq!(before.len(), 14);

    // 6 of 11 in scope: 12 > 11, refused (it would pass if all 14 refs were counted).
    w.checkout(&up, "main", None);
    w.commit_file(&up, "main.txt", "moved\n", "main moves too");
    w.checkout(&up, "develop", None);
    delete_refs(
        &w,
        &up,
        &[
            "refs/heads/feature/a",
            "refs/heads/feature/b",
            "refs/heads/feature/deep/nested",
            "refs/heads/release/1.x",
            "refs/tags/light",
            "refs/tags/blob-tag",
        ],
    );

    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(5);
    assert!(
        !run.stderr.trim().is_empty(),
        "a refusal must say why on stderr{run}"
    );
    assert_eq!(
        w.refs(&down),
        before,
        "a refused sync changes nothing, not even main"
    );

    let run = w.kalandra(&["sync", "--json", path_arg(&up), path_arg(&down)]);
    run.assert_code(5);
    run.failure_report();
    assert_eq!(w.refs(&down), before);

    // --no-prune deletes nothing, so there is nothing to guard against.
    w.sync_ok(&up, &down, &["--no-prune"]);

    let report = w.sync_ok(&up, &down, &["--allow-mass-delete"]);
    let deletes = report
        .refs()
        .values()
        .filter(|r| r.change.action == "delete")
        .count();
    assert_eq!(deletes, 6);
}

#[test]
fn deleting_exactly_half_is_allowed() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("down-extra.git"));
    w.git(&up, &["branch", "twelfth", "main"]);
    w.sync_ok(&up, &down, &[]);
    assert_eq!(Scope::default().filter(&w.refs(&down)).len(), 12);

    delete_refs(
        &w,
        &up,
        &[
            "refs/heads/feature/a",
            "refs/heads/feature/b",
            "refs/heads/feature/deep/nested",
            "refs/heads/release/1.x",
            "refs/tags/light",
            "refs/tags/blob-tag",
        ],
    );
    // 6 * 2 > 12 is false: allowed without --allow-mass-delete.
    let report = w.sync_ok(&up, &down, &[]);
    assert_eq!(report.refs().len(), 6);
}

#[test]
fn mass_delete_guard_counts_refs_in_the_selected_scope() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);
    let feature = ["--include", "refs/heads/feature/*"];

    // 2 of the 3 feature branches: 4 > 3, refused, though it is 2 of 11 refs overall.
    delete_refs(&w, &up, &["refs/heads/feature/a", "refs/heads/feature/b"]);
    let mut args = vec!["sync"];
    args.extend_from_slice(&feature);
    args.extend([path_arg(&up), path_arg(&down)]);
    let run = w.kalandra(&args);
    run.assert_code(5);
    assert_eq!(w.refs(&down), before);

    let mut allowed = feature.to_vec();
    allowed.push("--allow-mass-delete");
    let report = w.sync_ok(&up, &down, &allowed);
    assert_eq!(report.refs().len(), 2);
}
