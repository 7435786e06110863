//! Mirroring proper: initial mirror, incremental syncs, nothing to do, sha256.

use crate::harness::{path_arg, Change, Scope, World};

/// The fixture `mirror.sh` has 6 branches and 5 tags.
const MIRROR_REFS_IN_SCOPE: usize = 11;

#[test]
fn initial_mirror_into_empty_repository() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    assert!(
        w.refs(&down).is_empty(),
        "precondition: downstream is empty"
    );
    let up_in_scope = Scope::default().filter(&w.refs(&up));
    assert_eq!(
        up_in_scope.len(),
        MIRROR_REFS_IN_SCOPE,
        "precondition: fixture refs in scope"
    );

    let report = w.sync_ok(&up, &down, &[]);

    assert_eq!(report.object_format(), "sha1");
    let down_refs = w.refs(&down);
    assert_eq!(
        Scope::default().filter(&down_refs).len(),
        MIRROR_REFS_IN_SCOPE
    );
    // Annotated tags arrive as tag objects (not peeled), the tag of a tag and the tag of a blob too.
    for (tag, kind) in [
        ("refs/tags/v1.0", "tag"),
        ("refs/tags/v1.0-again", "tag"),
        ("refs/tags/light", "commit"),
        ("refs/tags/blob-tag", "blob"),
    ] {
        assert_eq!(
            w.git(&down, &["cat-file", "-t", tag]),
            kind,
            "type of {tag} downstream"
        );
    }
    assert!(down_refs.contains_key("refs/heads/feature/deep/nested"));
    for outside in ["refs/notes/commits", "refs/pull/1/head", "refs/keep-up/y"] {
        assert!(
            !down_refs.contains_key(outside),
            "{outside} is outside the scope but was pushed"
        );
    }

    // Exactly the objects reachable from the refs in scope: no more, no less.
    let wants: Vec<String> = up_in_scope.values().cloned().collect();
    let needed = w.count_objects_between(&up, &wants, &[]) as u64;
    let (objects, bytes) = report.pack().expect("an initial mirror fetches a pack");
    assert_eq!(
        objects, needed,
        "pack.objects must be the objects reachable from the refs in scope"
    );
    assert!(bytes > 0);
    assert!(
        report.bytes_relayed() >= bytes,
        "bytes_relayed must cover the pack"
    );
}

#[test]
fn incremental_sync_follows_every_kind_of_change() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    // New commits on an existing branch.
    w.checkout(&up, "main", None);
    w.commit_file(&up, "main.txt", "main moves on\n", "main moves on");
    let main = w.commit_file(
        &up,
        "main.txt",
        "main moves on again\n",
        "main moves on again",
    );
    // A new branch with its own commit, nested.
    w.checkout(&up, "topic/new", Some("main"));
    let topic = w.commit_file(&up, "topic.txt", "new topic\n", "new topic");
    // New annotated and lightweight tags.
    w.git(&up, &["tag", "-a", "-m", "release 2.0", "v2.0", "main"]);
    w.git(&up, &["tag", "nightly", "topic/new"]);
    // Moved tags: annotated and lightweight.
    w.git(
        &up,
        &[
            "tag",
            "-f",
            "-a",
            "-m",
            "release 1.1, redone",
            "v1.1",
            "main",
        ],
    );
    w.git(&up, &["tag", "-f", "light", "topic/new"]);
    // A force-pushed branch: rewritten, the old tip is no ancestor of the new one.
    let old_feature_a = w.rev(&up, "refs/heads/feature/a");
    w.checkout(&up, "feature/a", Some("feature/a~1"));
    let feature_a = w.commit_file(
        &up,
        "a.txt",
        "feature a, rewritten\n",
        "feature a 2, rewritten",
    );
    // A deleted branch.
    w.git(&up, &["branch", "-D", "release/1.x"]);
    w.checkout(&up, "develop", None);

    let report = w.sync_ok(&up, &down, &[]);

    let refs = report.refs();
    assert_eq!(
        refs["refs/heads/main"].change,
        Change::update(&before["refs/heads/main"], &main)
    );
    assert_eq!(refs["refs/heads/topic/new"].change, Change::create(&topic));
    assert_eq!(
        refs["refs/heads/feature/a"].change,
        Change::update(&old_feature_a, &feature_a)
    );
    assert_eq!(refs["refs/tags/v1.1"].change.action, "update");
    assert_eq!(refs["refs/tags/light"].change.action, "update");
    assert_eq!(refs["refs/tags/v2.0"].change.action, "create");
    assert_eq!(refs["refs/tags/nightly"].change, Change::create(&topic));
    assert_eq!(
        refs["refs/heads/release/1.x"].change,
        Change::delete(&before["refs/heads/release/1.x"])
    );
    let down_refs = w.refs(&down);
    assert!(!down_refs.contains_key("refs/heads/release/1.x"));
    assert_eq!(down_refs["refs/heads/feature/a"], feature_a);
    assert_eq!(w.git(&down, &["cat-file", "-t", "refs/tags/v1.1"]), "tag");
    assert_eq!(w.rev(&down, "refs/tags/v1.1^{commit}"), main);
    let (objects, _) = report.pack().expect("new commits need a pack");
    let wants: Vec<String> = Scope::default()
        .filter(&w.refs(&up))
        .into_values()
        .collect();
    let haves: Vec<String> = before.into_values().collect();
    assert_eq!(
        objects,
        w.count_objects_between(&up, &wants, &haves) as u64,
        "the pack holds exactly the objects downstream lacks"
    );
}

#[test]
fn no_prune_keeps_branches_deleted_upstream() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    w.git(&up, &["branch", "-D", "release/1.x", "feature/b"]);
    w.git(&up, &["tag", "-d", "v1.0-again"]);
    w.checkout(&up, "main", None);
    let main = w.commit_file(&up, "main.txt", "after deletes\n", "after deletes");
    w.checkout(&up, "develop", None);

    let report = w.sync_ok(&up, &down, &["--no-prune"]);
    let refs = report.refs();
    assert!(
        refs.values().all(|r| r.change.action != "delete"),
        "--no-prune must plan no delete: {:?}",
        refs
    );
    assert_eq!(
        refs["refs/heads/main"].change,
        Change::update(&before["refs/heads/main"], &main)
    );
    let after = w.refs(&down);
    for gone in [
        "refs/heads/release/1.x",
        "refs/heads/feature/b",
        "refs/tags/v1.0-again",
    ] {
        assert_eq!(
            after.get(gone),
            before.get(gone),
            "{gone} must stay downstream with --no-prune"
        );
    }

    // Without --no-prune the next sync deletes them (3 of 11: no guard).
    let report = w.sync_ok(&up, &down, &[]);
    let deletes = report
        .refs()
        .values()
        .filter(|r| r.change.action == "delete")
        .count();
    assert_eq!(deletes, 3);
}

#[test]
fn nothing_to_do_exits_zero_with_no_refs() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    let report = w.sync_ok(&up, &down, &[]);
    assert!(report.refs().is_empty(), "nothing to do must list no refs");
    assert_eq!(report.pack(), None, "nothing to do must fetch no pack");

    // The human-readable form says so with exit 0 too.
    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert_eq!(w.refs(&down), before);
    w.assert_fsck(&down);
}

#[test]
fn update_that_needs_no_new_objects() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);

    // New refs at commits downstream already has: one a tip there, one only an ancestor;
    // and a branch moved back to an ancestor.
    let main = w.rev(&up, "main");
    let ancestor = w.rev(&up, "main~2");
    w.git(&up, &["branch", "copy-of-main", "main"]);
    w.git(&up, &["tag", "at-ancestor", &ancestor]);
    w.git(&up, &["branch", "-f", "feature/deep/nested", "develop~1"]);

    let report = w.sync_ok(&up, &down, &[]);

    let refs = report.refs();
    assert_eq!(refs.len(), 3, "{refs:?}");
    assert_eq!(
        refs["refs/heads/copy-of-main"].change,
        Change::create(&main)
    );
    assert_eq!(
        refs["refs/tags/at-ancestor"].change,
        Change::create(&ancestor)
    );
    assert_eq!(
        refs["refs/heads/feature/deep/nested"].change.action,
        "update"
    );
    if let Some((objects, _)) = report.pack() {
        assert_eq!(
            objects, 0,
            "downstream has every object already; the pack must be empty"
        );
    }
}

#[test]
fn deletes_only() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let before = w.refs(&down);

    w.git(&up, &["branch", "-D", "feature/deep/nested"]);
    w.git(&up, &["tag", "-d", "light", "v1.0-again"]);

    let report = w.sync_ok(&up, &down, &[]);

    let refs = report.refs();
    assert_eq!(refs.len(), 3, "{refs:?}");
    for name in [
        "refs/heads/feature/deep/nested",
        "refs/tags/light",
        "refs/tags/v1.0-again",
    ] {
        assert_eq!(refs[name].change, Change::delete(&before[name]));
    }
    assert_eq!(report.pack(), None, "deletes need no pack from upstream");
}

#[test]
fn bare_upstream_as_file_url_into_relative_downstream() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream-bare.git"), fx.join("empty.git"));
    let url = format!("file://{}", path_arg(&up));

    w.sync_ok_as(&up, &down, &url, "./mirror/empty.git", &[]);
    assert_eq!(
        Scope::default().filter(&w.refs(&down)).len(),
        MIRROR_REFS_IN_SCOPE
    );

    // And back the other way round: relative upstream, file:// downstream, after a change.
    w.git(&up, &["branch", "-f", "main", "main~1"]);
    let down_url = format!("file://{}", path_arg(&down));
    w.sync_ok_as(&up, &down, "./mirror/upstream-bare.git", &down_url, &[]);
}

#[test]
fn sha256_pair() {
    let w = World::new();
    let fx = w.fixture("sha256.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    assert_eq!(w.git(&up, &["rev-parse", "--show-object-format"]), "sha256");
    assert_eq!(
        w.git(&down, &["rev-parse", "--show-object-format"]),
        "sha256"
    );

    let report = w.sync_ok(&up, &down, &[]);
    assert_eq!(report.object_format(), "sha256");
    assert_eq!(report.refs().len(), 5, "3 branches and 2 tags");

    // Incremental: a moved branch, a new tag, a deleted branch.
    w.checkout(&up, "main", None);
    w.commit_file(&up, "lib.txt", "lib 3\n", "lib 3");
    w.git(&up, &["tag", "-a", "-m", "sha256 release 2", "v2"]);
    w.git(&up, &["branch", "-D", "feature/x"]);
    w.checkout(&up, "topic", None);
    let report = w.sync_ok(&up, &down, &[]);
    assert_eq!(report.refs().len(), 3);
    assert!(w.refs(&down).keys().all(|k| !k.starts_with("refs/notes/")));
}

#[test]
fn sha1_upstream_into_sha256_downstream_fails_without_change() {
    let w = World::new();
    let sha1 = w.fixture("mirror.sh");
    let sha256 = w.fixture("sha256.sh");
    for down in [sha256.join("empty.git"), sha256.join("upstream")] {
        let before = w.refs(&down);
        let run = w.kalandra(&["sync", path_arg(&sha1.join("upstream")), path_arg(&down)]);
        run.assert_code(4);
        run.assert_stderr_mentions(&["sha256", "sha1", "object format", "object-format", "hash"]);
        assert_eq!(w.refs(&down), before, "downstream must be unchanged");
        w.assert_fsck(&down);
    }
    // --json: ok=false and an error.
    let down = sha256.join("upstream");
    let before = w.refs(&down);
    let run = w.kalandra(&[
        "sync",
        "--json",
        path_arg(&sha1.join("upstream")),
        path_arg(&down),
    ]);
    run.assert_code(4);
    run.failure_report();
    assert_eq!(w.refs(&down), before);
}

#[test]
fn sha256_upstream_into_sha1_downstream_fails_without_change() {
    let w = World::new();
    let sha1 = w.fixture("mirror.sh");
    let sha256 = w.fixture("sha256.sh");
    for down in [sha1.join("empty.git"), sha1.join("down-extra.git")] {
        let before = w.refs(&down);
        let run = w.kalandra(&["sync", path_arg(&sha256.join("upstream")), path_arg(&down)]);
        run.assert_code(4);
        assert_eq!(w.refs(&down), before, "downstream must be unchanged");
        w.assert_fsck(&down);
    }
}

/// A `git` on PATH whose upload-pack ignores `GIT_PROTOCOL`, as servers without protocol v2
/// do: real git, answering with a v0 ref advertisement.
fn v0_only_path(w: &World) -> std::ffi::OsString {
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .expect("can look up git");
    let real = String::from_utf8(real.stdout).expect("utf-8 path");
    let dir = w.root().join("v0-only-bin");
    std::fs::create_dir_all(&dir).expect("can create the wrapper dir");
    let wrapper = dir.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nunset GIT_PROTOCOL\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .expect("can write the wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("can chmod");
    }
    let mut path = dir.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[test]
fn upstream_without_protocol_v2_falls_back_to_v0() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let env = [
        ("PATH", v0_only_path(&w)),
        ("KALANDRA_LOG", "kalandra=debug".into()),
    ];
    let sync = |w: &World| {
        let up_refs = w.refs(&up);
        let run = w.kalandra_with_env(
            w.root(),
            &["sync", "--json", path_arg(&up), path_arg(&down)],
            &w.global_config(),
            &env,
        );
        run.assert_code(0);
        assert!(
            run.stderr.contains("protocol v0"),
            "the upstream should have been read as protocol v0: {run}"
        );
        let report = run.report();
        assert!(report.ok(), "{run}");
        assert_eq!(
            Scope::default().filter(&w.refs(&down)),
            Scope::default().filter(&up_refs),
            "downstream follows upstream: {run}"
        );
        w.assert_fsck(&down);
        report
    };
    let first = sync(&w);
    assert_eq!(first.refs().len(), MIRROR_REFS_IN_SCOPE);

    // Incremental: the haves make upload-pack answer ACK before the pack.
    w.checkout(&up, "main", None);
    let new = w.commit_file(&up, "v0.txt", "over protocol v0\n", "v0 commit");
    let second = sync(&w);
    let refs = second.refs();
    assert_eq!(refs.len(), 1, "only main moved");
    assert_eq!(
        refs["refs/heads/main"].change.new.as_deref(),
        Some(new.as_str())
    );
    let (objects, _) = second.pack().expect("a pack was fetched");
    assert_eq!(objects, 3, "commit, tree and blob only");
}
