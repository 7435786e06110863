//! The remote helper `git-remote-kalandra`, driven through the real `git` with the helper's
//! directory first on PATH.
//!
//! A `kalandra::UP=>DOWN` remote reads like UP (ls-remote, clone, fetch and pull give what
//! the same command gives against UP) and a push into it makes DOWN's refs name objects that
//! come from UP, the local repository sending none. Push rules (fast-forward, tags, deletes,
//! `--mirror`, `--atomic`, leases, options) are git's.
//!
//! After every push, DOWN passes `git fsck --connectivity-only` and holds exactly the refs
//! the test expects, including the ones that must not change.

use std::path::{Path, PathBuf};

use crate::harness::{
    assert_refs_eq, file_url, pair_file_url, pair_url, path_arg, GitRun, Refs, World,
    PERL_PROC_RECEIVE_PRELUDE,
};

/// `-c protocol.version=0`: git speaks v0 to the helper, which falls back to its v0 path.
const V0: &[&str] = &["-c", "protocol.version=0"];
/// Protocol v2, git's default.
const V2: &[&str] = &[];

/// `args` with git's `-c` options `proto` first.
fn with_proto<'a>(proto: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    proto.iter().chain(args).copied().collect()
}

/// A world with the `mirror.sh` fixture: UP is its `upstream` (HEAD -> develop).
pub(crate) struct Fx {
    pub(crate) w: World,
    pub(crate) up: PathBuf,
    /// The empty bare repository.
    pub(crate) empty: PathBuf,
    /// A bare repository holding only refs outside branches and tags, whose objects UP lacks.
    extra: PathBuf,
}

impl Fx {
    pub(crate) fn new() -> Self {
        let w = World::new();
        let fx = w.fixture("mirror.sh");
        Fx {
            up: fx.join("upstream"),
            empty: fx.join("empty.git"),
            extra: fx.join("down-extra.git"),
            w,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.w.root()
    }

    /// Push UP's branches and tags into `down` with plain git (not the helper).
    pub(crate) fn seed(&self, down: &Path) {
        self.w.git(
            &self.up,
            &[
                "push",
                "-q",
                path_arg(down),
                "refs/heads/*:refs/heads/*",
                "refs/tags/*:refs/tags/*",
            ],
        );
    }

    /// The empty DOWN, seeded with UP's branches and tags; its refs.
    fn seeded_down(&self) -> (PathBuf, Refs) {
        self.seed(&self.empty);
        let refs = self.w.refs(&self.empty);
        assert_eq!(
            refs,
            branches_and_tags(&self.w.refs(&self.up)),
            "precondition: DOWN seeded with UP's branches and tags"
        );
        (self.empty.clone(), refs)
    }

    /// A plain, non-bare clone of UP at `<root>/local` (its own objects: all of UP's).
    pub(crate) fn local(&self) -> PathBuf {
        let local = self.root().join("local");
        self.w.git(
            self.root(),
            &["clone", "-q", path_arg(&self.up), path_arg(&local)],
        );
        local
    }

    /// `rev` in UP.
    fn up_rev(&self, rev: &str) -> String {
        self.w.rev(&self.up, rev)
    }

    /// A bare local repository at `<root>/local.git` holding only branches and tags, all on
    /// UP's objects but not UP's refs (a branch and a tag deleted, one rewound, one added);
    /// its refs.
    fn mirror_source(&self) -> (PathBuf, Refs) {
        let w = &self.w;
        let local = self.root().join("local.git");
        w.git(self.root(), &["init", "-q", "--bare", path_arg(&local)]);
        w.git(
            &local,
            &[
                "fetch",
                "-q",
                path_arg(&self.up),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        );
        w.git(&local, &["branch", "-q", "-D", "feature/a"]);
        w.git(&local, &["tag", "-d", "light"]);
        w.git(
            &local,
            &[
                "update-ref",
                "refs/heads/release/1.x",
                &self.up_rev("v1.0^{commit}"),
            ],
        );
        w.git(
            &local,
            &[
                "update-ref",
                "refs/heads/extra",
                &self.up_rev("feature/deep/nested"),
            ],
        );
        let local_refs = w.refs(&local);
        assert_eq!(
            branches_and_tags(&local_refs),
            local_refs,
            "precondition: only branches and tags locally"
        );
        (local, local_refs)
    }
}

fn branches_and_tags(refs: &Refs) -> Refs {
    refs.iter()
        .filter(|(n, _)| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"))
        .map(|(n, o)| (n.clone(), o.clone()))
        .collect()
}

/// `refs` with `changes` applied: `Some(oid)` sets, `None` deletes.
fn with_changes(refs: &Refs, changes: &[(&str, Option<&str>)]) -> Refs {
    let mut out = refs.clone();
    for (name, oid) in changes {
        match oid {
            Some(oid) => out.insert(name.to_string(), oid.to_string()),
            None => out.remove(*name),
        };
    }
    out
}

/// DOWN passes fsck and holds exactly `expected`.
#[track_caller]
fn assert_down(w: &World, down: &Path, expected: &Refs, what: &str) {
    assert_refs_eq(&w.refs(down), expected, what);
    w.assert_fsck(down);
}

/// `git push <args>` from `local` through the helper.
fn push(w: &World, local: &Path, args: &[&str]) -> GitRun {
    let mut all = vec!["push"];
    all.extend_from_slice(args);
    w.try_helper_git(local, &all)
}

// ---------------------------------------------------------------------------------------------
// Reads go to UP.

fn ls_remote_matches_upstream(proto: &[&str]) {
    let fx = Fx::new();
    let w = &fx.w;
    // DOWN has refs UP lacks: none of them may show up.
    let down = &fx.extra;
    for flags in [&[][..], &["--symref"][..]] {
        let mut direct_args = vec!["ls-remote"];
        direct_args.extend_from_slice(flags);
        direct_args.push(path_arg(&fx.up));
        let direct = w.git(fx.root(), &with_proto(proto, &direct_args));
        assert!(
            direct.contains("refs/tags/v1.0^{}") && direct.contains("refs/heads/develop"),
            "precondition: UP's advertisement: {direct}"
        );
        for url in [pair_url(&fx.up, down), pair_file_url(&fx.up, down)] {
            let mut args = vec!["ls-remote"];
            args.extend_from_slice(flags);
            args.push(&url);
            let run = w.try_helper_git(fx.root(), &with_proto(proto, &args));
            run.assert_ok();
            assert_eq!(
                run.stdout.trim_end(),
                direct,
                "ls-remote {flags:?} through {url} differs from ls-remote of UP{run}"
            );
        }
    }
}

#[test]
fn ls_remote_matches_upstream_v2() {
    ls_remote_matches_upstream(V2);
}

#[test]
fn ls_remote_matches_upstream_v0() {
    ls_remote_matches_upstream(V0);
}

/// A clone through the helper and a direct clone of UP: same refs, same HEAD branch, same
/// checked-out tree, clean work tree.
fn assert_clones_equal(w: &World, via: &Path, direct: &Path, url: &str) {
    assert_refs_eq(
        &w.refs(via),
        &w.refs(direct),
        "refs of the clone via the helper",
    );
    assert_eq!(
        w.head_target(via),
        w.head_target(direct),
        "HEAD branch of the clone via the helper"
    );
    assert_eq!(
        w.rev(via, "HEAD^{tree}"),
        w.rev(direct, "HEAD^{tree}"),
        "checked-out tree"
    );
    assert_eq!(
        w.git(via, &["status", "--porcelain"]),
        "",
        "clean work tree"
    );
    assert_eq!(w.git(via, &["config", "remote.origin.url"]), url);
    w.assert_fsck(via);
}

fn clone_matches_direct_clone(proto: &[&str], file_urls: bool) {
    let fx = Fx::new();
    let w = &fx.w;
    let url = if file_urls {
        pair_file_url(&fx.up, &fx.extra)
    } else {
        pair_url(&fx.up, &fx.extra)
    };
    let via = fx.root().join("via");
    let direct = fx.root().join("direct");
    w.try_helper_git(
        fx.root(),
        &with_proto(proto, &["clone", "-q", &url, path_arg(&via)]),
    )
    .assert_ok();
    w.git(
        fx.root(),
        &with_proto(proto, &["clone", "-q", path_arg(&fx.up), path_arg(&direct)]),
    );
    assert_eq!(
        w.head_target(&direct).as_deref(),
        Some("refs/heads/develop"),
        "precondition: UP's HEAD is develop"
    );
    assert_clones_equal(w, &via, &direct, &url);
    let refs = w.refs(&via);
    assert!(
        refs.keys().all(|n| !n.starts_with("refs/keep/")),
        "DOWN's refs leaked into the clone: {refs:?}"
    );
}

#[test]
fn clone_matches_direct_clone_v2() {
    clone_matches_direct_clone(V2, true);
}

#[test]
fn clone_matches_direct_clone_v0() {
    clone_matches_direct_clone(V0, false);
}

/// Clone through the helper and directly; UP changes (new commits, a new branch and tag, a
/// forced rewind, a deleted branch); `fetch`, `fetch --prune` and `pull` give the same
/// results in both clones.
fn fetch_and_pull_follow_upstream(proto: &[&str]) {
    let fx = Fx::new();
    let w = &fx.w;
    let url = pair_url(&fx.up, &fx.empty);
    let via = fx.root().join("via");
    let direct = fx.root().join("direct");
    w.helper_git(
        fx.root(),
        &with_proto(proto, &["clone", "-q", &url, path_arg(&via)]),
    );
    w.git(
        fx.root(),
        &with_proto(proto, &["clone", "-q", path_arg(&fx.up), path_arg(&direct)]),
    );
    assert_clones_equal(w, &via, &direct, &url);

    // UP moves on.
    let up = &fx.up;
    w.checkout(up, "fresh", Some("main"));
    w.commit_file(up, "fresh.txt", "fresh\n", "fresh branch");
    w.git(up, &["tag", "-a", "-m", "fresh tag", "v9"]);
    let rewound = fx.up_rev("v1.0^{commit}");
    w.git(up, &["update-ref", "refs/heads/release/1.x", &rewound]);
    w.git(up, &["branch", "-q", "-D", "feature/a"]);
    w.checkout(up, "develop", None);
    let develop = w.commit_file(up, "src/dev.txt", "dev 4\n", "dev 4");

    for args in [&["fetch", "-q"][..], &["fetch", "-q", "--prune"][..]] {
        w.helper_git(&via, &with_proto(proto, args));
        w.git(&direct, &with_proto(proto, args));
        assert_refs_eq(
            &w.refs(&via),
            &w.refs(&direct),
            &format!("refs after {args:?} via the helper"),
        );
    }
    let refs = w.refs(&via);
    assert_eq!(refs["refs/remotes/origin/develop"], develop);
    assert_eq!(refs["refs/remotes/origin/release/1.x"], rewound);
    assert_eq!(refs["refs/tags/v9"], fx.up_rev("refs/tags/v9"));
    assert!(!refs.contains_key("refs/remotes/origin/feature/a"));

    // Another commit, then pull (fetch + fast-forward) in both.
    let develop = w.commit_file(up, "src/dev.txt", "dev 5\n", "dev 5");
    w.helper_git(&via, &with_proto(proto, &["pull", "-q", "--ff-only"]));
    w.git(&direct, &with_proto(proto, &["pull", "-q", "--ff-only"]));
    assert_eq!(w.rev(&via, "HEAD"), develop, "pull through the helper");
    assert_clones_equal(w, &via, &direct, &url);
    assert_eq!(
        std::fs::read_to_string(via.join("src/dev.txt")).expect("pulled file"),
        "dev 5\n"
    );
    assert_eq!(w.refs(&fx.empty), Refs::new(), "reads never write DOWN");
}

#[test]
fn fetch_and_pull_follow_upstream_v2() {
    fetch_and_pull_follow_upstream(V2);
}

#[test]
fn fetch_and_pull_follow_upstream_v0() {
    fetch_and_pull_follow_upstream(V0);
}

/// The `.keep` files the helper named to git (`lock <file>`) in `run`'s
/// `GIT_TRANSPORT_HELPER_DEBUG` output.
fn locked_keep_files(run: &GitRun) -> Vec<PathBuf> {
    run.stderr
        .lines()
        .filter_map(|l| l.split_once("Remote helper: <- lock "))
        .map(|(_, path)| PathBuf::from(path))
        .collect()
}

/// The v0 fallback's `fetch` keeps the pack it indexes (`index-pack --keep`) and names the
/// `.keep` file to git (`lock <file>`), as git's own fetch-pack does, so a concurrent gc cannot
/// drop the pack before git has written the refs. git removes the file afterwards.
#[test]
fn v0_fetch_keeps_its_pack_until_git_has_written_the_refs() {
    let fx = Fx::new();
    let w = &fx.w;
    let url = pair_url(&fx.up, &fx.empty);
    let via = fx.root().join("via");
    let debug = [("GIT_TRANSPORT_HELPER_DEBUG", "1".into())];
    let clone = w.try_helper_git_env(
        fx.root(),
        &with_proto(V0, &["clone", "-q", &url, path_arg(&via)]),
        &debug,
    );
    clone.assert_ok();
    let new = w.commit_file(&fx.up, "src/dev.txt", "dev 4\n", "dev 4");
    let fetch = w.try_helper_git_env(&via, &with_proto(V0, &["fetch", "-q"]), &debug);
    fetch.assert_ok();
    assert_eq!(w.refs(&via)["refs/remotes/origin/develop"], new);

    let pack_dir = via.join(".git/objects/pack");
    for run in [&clone, &fetch] {
        let locked = locked_keep_files(run);
        assert_eq!(locked.len(), 1, "one lock per fetch{run}");
        let keep = &locked[0];
        assert_eq!(
            keep.parent(),
            Some(pack_dir.as_path()),
            "{}",
            keep.display()
        );
        assert!(
            keep.with_extension("pack").exists(),
            "the locked pack is there: {}",
            keep.display()
        );
    }
    let left: Vec<_> = std::fs::read_dir(&pack_dir)
        .expect("the clone has a pack directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "keep"))
        .collect();
    assert!(left.is_empty(), "git left .keep files: {left:?}");
    w.assert_full_fsck(&via);
}

// ---------------------------------------------------------------------------------------------
// Pushes write UP's objects into DOWN.

#[test]
fn push_creates_refs_from_upstreams_objects() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let down = fx.empty.clone();
    let url = pair_url(&fx.up, &down);
    push(
        w,
        &local,
        &[
            &url,
            "origin/feature/a:refs/heads/published",
            "refs/tags/v1.0:refs/tags/v1.0",
            "refs/tags/blob-tag:refs/tags/blob-tag",
        ],
    )
    .assert_ok();
    let expected: Refs = [
        ("refs/heads/published", fx.up_rev("feature/a")),
        ("refs/tags/v1.0", fx.up_rev("refs/tags/v1.0")),
        ("refs/tags/blob-tag", fx.up_rev("refs/tags/blob-tag")),
    ]
    .into_iter()
    .map(|(n, o)| (n.to_owned(), o))
    .collect();
    assert_down(w, &down, &expected, "DOWN after the push");
    assert_eq!(w.git(&down, &["cat-file", "-t", "refs/tags/v1.0"]), "tag");
    assert_eq!(
        w.git(&down, &["rev-list", "--count", "refs/heads/published"]),
        w.git(&fx.up, &["rev-list", "--count", "feature/a"]),
        "the whole history arrived"
    );
    assert_eq!(
        w.refs(&local)["refs/remotes/origin/feature/a"],
        fx.up_rev("feature/a"),
        "the local repository is untouched"
    );
}

#[test]
fn push_with_file_urls_and_head_as_source() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let down = fx.empty.clone();
    let url = pair_file_url(&fx.up, &down);
    push(w, &local, &[&url, "HEAD:refs/heads/from-head"]).assert_ok();
    let expected: Refs = [("refs/heads/from-head".to_owned(), fx.up_rev("develop"))].into();
    assert_down(w, &down, &expected, "DOWN after pushing HEAD");
}

#[test]
fn object_missing_upstream_is_refused_with_advice() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let url = pair_url(&fx.up, &down);

    // A commit only the local repository has: a fast-forward of develop, and a new branch.
    let local_only = w.commit_file(&local, "local.txt", "local only\n", "local only");
    for spec in ["HEAD:refs/heads/develop", "HEAD:refs/heads/brand-new"] {
        let run = push(w, &local, &[&url, spec]);
        run.assert_failed().assert_stderr_has(&["push it to"]);
        assert_down(w, &down, &before, &format!("DOWN after refused {spec}"));
    }
    // A tag object only the local repository has, on a commit UP has.
    w.git(
        &local,
        &["tag", "-a", "-m", "local tag", "local-tag", "origin/main"],
    );
    let run = push(
        w,
        &local,
        &[&url, "refs/tags/local-tag:refs/tags/local-tag"],
    );
    run.assert_failed().assert_stderr_has(&["push it to"]);
    assert_down(w, &down, &before, "DOWN after the refused local tag");

    // Only that ref fails: another ref of the same push, on UP's objects, goes through.
    let run = push(
        w,
        &local,
        &[
            &url,
            "HEAD:refs/heads/brand-new",
            "origin/main:refs/heads/also",
        ],
    );
    run.assert_failed().assert_stderr_has(&["push it to"]);
    let before = with_changes(&before, &[("refs/heads/also", Some(&fx.up_rev("main")))]);
    assert_down(w, &down, &before, "DOWN after a push with one ref UP lacks");

    // Following the advice: once UP has the commit, the same push goes through.
    w.git(
        &local,
        &["push", "-q", path_arg(&fx.up), "HEAD:refs/heads/from-local"],
    );
    push(w, &local, &[&url, "HEAD:refs/heads/develop"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(&before, &[("refs/heads/develop", Some(&local_only))]),
        "DOWN after pushing once UP has the commit",
    );
}

#[test]
fn non_fast_forward_needs_force() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let url = pair_file_url(&fx.up, &down);
    let release = fx.up_rev("release/1.x");
    let feature_a = fx.up_rev("feature/a");

    let run = push(w, &local, &[&url, "origin/release/1.x:refs/heads/main"]);
    run.assert_failed()
        .assert_stderr_has(&["[rejected]"])
        .assert_stderr_has_any(&["non-fast-forward", "fetch first"]);
    assert_down(w, &down, &before, "DOWN after a rejected non-fast-forward");

    push(w, &local, &[&url, "+origin/release/1.x:refs/heads/main"]).assert_ok();
    let after_plus = with_changes(&before, &[("refs/heads/main", Some(&release))]);
    assert_down(w, &down, &after_plus, "DOWN after +src:dst");

    push(
        w,
        &local,
        &["--force", &url, "origin/feature/a:refs/heads/release/1.x"],
    )
    .assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(&after_plus, &[("refs/heads/release/1.x", Some(&feature_a))]),
        "DOWN after --force",
    );
}

#[test]
fn fast_forward_needs_no_force_and_unknown_tips_need_fetch_first() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, _) = fx.seeded_down();
    // DOWN's develop is behind; DOWN's `theirs` names a commit neither UP nor local has.
    let behind = fx.up_rev("develop~2");
    w.git(&down, &["update-ref", "refs/heads/develop", &behind]);
    let scratch = fx.root().join("scratch");
    w.git(fx.root(), &["init", "-q", path_arg(&scratch)]);
    w.commit_file(&scratch, "theirs.txt", "theirs\n", "only DOWN has this");
    w.git(
        &scratch,
        &["push", "-q", path_arg(&down), "HEAD:refs/heads/theirs"],
    );
    let before = w.refs(&down);
    let url = pair_url(&fx.up, &down);

    push(w, &local, &[&url, "origin/develop:refs/heads/develop"]).assert_ok();
    let after_ff = with_changes(
        &before,
        &[("refs/heads/develop", Some(&fx.up_rev("develop")))],
    );
    assert_down(w, &down, &after_ff, "DOWN after a fast-forward");

    let run = push(w, &local, &[&url, "origin/main:refs/heads/theirs"]);
    run.assert_failed()
        .assert_stderr_has(&["[rejected]"])
        .assert_stderr_has_any(&["fetch first", "non-fast-forward"]);
    assert_down(
        w,
        &down,
        &after_ff,
        "DOWN after a rejected update of an unknown tip",
    );

    push(w, &local, &[&url, "+origin/main:refs/heads/theirs"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(
            &after_ff,
            &[("refs/heads/theirs", Some(&fx.up_rev("main")))],
        ),
        "DOWN after forcing over an unknown tip",
    );
}

#[test]
fn existing_tag_needs_force() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let url = pair_url(&fx.up, &down);

    let run = push(w, &local, &[&url, "origin/main:refs/tags/v1.0"]);
    run.assert_failed()
        .assert_stderr_has(&["[rejected]", "already exists"]);
    assert_down(w, &down, &before, "DOWN after a rejected tag update");

    push(w, &local, &[&url, "+origin/main:refs/tags/v1.0"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(&before, &[("refs/tags/v1.0", Some(&fx.up_rev("main")))]),
        "DOWN after a forced tag update",
    );
}

#[test]
fn deletes() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let url = pair_file_url(&fx.up, &down);

    push(w, &local, &[&url, ":refs/heads/feature/a"]).assert_ok();
    let after_one = with_changes(&before, &[("refs/heads/feature/a", None)]);
    assert_down(w, &down, &after_one, "DOWN after :dst");

    push(
        w,
        &local,
        &["--delete", &url, "refs/heads/feature/b", "refs/tags/light"],
    )
    .assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(
            &after_one,
            &[("refs/heads/feature/b", None), ("refs/tags/light", None)],
        ),
        "DOWN after --delete",
    );
}

#[test]
fn push_tags() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let down = fx.empty.clone();
    w.git(
        &fx.up,
        &["push", "-q", path_arg(&down), "main:refs/heads/main"],
    );
    let before = w.refs(&down);
    // A new lightweight tag, on a commit UP has.
    w.git(&local, &["tag", "ci-1", "origin/feature/b"]);
    let url = pair_url(&fx.up, &down);

    push(w, &local, &["--tags", &url]).assert_ok();
    let mut expected = before.clone();
    expected.extend(
        w.refs(&local)
            .into_iter()
            .filter(|(n, _)| n.starts_with("refs/tags/")),
    );
    assert_eq!(expected.len(), 7, "main and 6 tags");
    assert_down(w, &down, &expected, "DOWN after --tags");
}

#[test]
fn push_mirror() {
    let fx = Fx::new();
    let w = &fx.w;
    let (local, local_refs) = fx.mirror_source();

    // DOWN: UP's branches and tags, a ref outside them, HEAD on develop.
    let (down, _) = fx.seeded_down();
    w.git(&fx.up, &["push", "-q", path_arg(&down), "main:refs/keep/x"]);
    w.git(&down, &["symbolic-ref", "HEAD", "refs/heads/develop"]);
    let url = pair_url(&fx.up, &down);

    let run = push(w, &local, &["--mirror", &url]);
    run.assert_ok();
    assert!(
        !run.stderr.lines().any(|l| l.trim_end().ends_with("HEAD")),
        "git tried to push HEAD{run}"
    );
    assert_down(w, &down, &local_refs, "DOWN after --mirror");
    assert_eq!(
        w.head_target(&down).as_deref(),
        Some("refs/heads/develop"),
        "DOWN's HEAD is untouched"
    );
}

/// A DOWN that borrows objects from another repository (`objects/info/alternates`, as forges
/// do for forks) advertises that repository's tips as `.have` lines. They are not refs: git
/// refuses a whole push on them (`.have (funny refname)`), so `list for-push` leaves them out.
#[test]
fn push_mirror_to_a_downstream_with_alternates() {
    let fx = Fx::new();
    let w = &fx.w;
    let (local, local_refs) = fx.mirror_source();
    let (down, _) = fx.seeded_down();
    let up_objects = w.git(
        &fx.up,
        &[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "objects",
        ],
    );
    w.write(
        &down,
        "objects/info/alternates",
        format!("{up_objects}\n").as_bytes(),
    );
    let advertised = w.git(&down, &["receive-pack", "--advertise-refs", "."]);
    assert!(
        advertised.contains(" .have"),
        "precondition: DOWN advertises .have lines: {advertised}"
    );
    let url = pair_url(&fx.up, &down);

    let run = push(w, &local, &["--mirror", &url]);
    run.assert_ok();
    assert_down(w, &down, &local_refs, "DOWN with alternates after --mirror");
}

/// An `update` hook declining `refs/heads/frozen`.
const DECLINE_FROZEN: &str = r#"#!/bin/sh
if [ "$1" = refs/heads/frozen ]; then
  echo "kalandra-test: frozen is frozen" >&2
  exit 1
fi
exit 0
"#;

#[test]
fn atomic_push_refused_by_a_hook_changes_nothing() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    w.install_hook(&down, "update", DECLINE_FROZEN);
    let url = pair_url(&fx.up, &down);
    let specs = [
        "origin/develop:refs/heads/brand-new",
        "origin/main:refs/heads/frozen",
    ];

    let mut args = vec!["--atomic", url.as_str()];
    args.extend(specs);
    let run = push(w, &local, &args);
    run.assert_failed();
    assert_down(w, &down, &before, "DOWN after a refused atomic push");

    // The same push without --atomic: the other ref goes through.
    let mut args = vec![url.as_str()];
    args.extend(specs);
    let run = push(w, &local, &args);
    run.assert_failed().assert_stderr_has(&["frozen"]);
    assert_down(
        w,
        &down,
        &with_changes(
            &before,
            &[("refs/heads/brand-new", Some(&fx.up_rev("develop")))],
        ),
        "DOWN after the same push, not atomic",
    );
}

/// A post-receive hook that talks on both of its outputs, and an update hook that refuses
/// one ref saying why.
const TALKATIVE_POST_RECEIVE: &str = r#"#!/bin/sh
while read old new ref; do echo "kalandra-test: received $ref"; done
echo "kalandra-test: on stderr" >&2
"#;

/// The lines git shows as a server's (`remote: ...`, with git's clear-to-end-of-line suffix).
fn remote_lines(run: &GitRun) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("remote: "))
        .collect()
}

/// DOWN's hook output shows on a successful push as plain git shows it: every `remote:` line
/// the same, byte for byte, with and without `-q` and `--progress` (git hides only its own
/// progress under `-q`). A hook's refusal shows once.
#[test]
fn downstream_hook_output_shows_as_git_shows_it() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, _) = fx.seeded_down();
    // Plain git's output, from a twin of DOWN with the same hooks.
    let twin = fx.root().join("twin.git");
    w.git(
        fx.root(),
        &["clone", "-q", "--bare", path_arg(&down), path_arg(&twin)],
    );
    for repo in [&down, &twin] {
        w.install_hook(repo, "post-receive", TALKATIVE_POST_RECEIVE);
        w.install_hook(repo, "update", DECLINE_FROZEN);
    }
    let url = pair_url(&fx.up, &down);

    for (i, flags) in [&[][..], &["-q"][..], &["--progress"][..]]
        .iter()
        .enumerate()
    {
        let spec = format!("origin/develop:refs/heads/hooked-{i}");
        let mut plain_args = flags.to_vec();
        plain_args.extend([path_arg(&twin), spec.as_str()]);
        let plain = push(w, &local, &plain_args);
        plain.assert_ok();
        let mut args = flags.to_vec();
        args.extend([url.as_str(), spec.as_str()]);
        let run = push(w, &local, &args);
        run.assert_ok();
        let expected: Vec<&str> = remote_lines(&plain)
            .into_iter()
            .filter(|l| l.contains("kalandra-test"))
            .collect();
        assert_eq!(
            expected,
            [
                format!("remote: kalandra-test: received refs/heads/hooked-{i}        "),
                "remote: kalandra-test: on stderr        ".to_owned(),
            ],
            "precondition: plain git {flags:?} shows the hook{plain}"
        );
        let shown: Vec<&str> = remote_lines(&run)
            .into_iter()
            .filter(|l| l.contains("kalandra-test"))
            .collect();
        assert_eq!(
            shown, expected,
            "git push {flags:?} through the helper{run}"
        );
        assert_eq!(
            w.rev(&down, &format!("refs/heads/hooked-{i}")),
            fx.up_rev("develop")
        );
    }
    w.assert_fsck(&down);

    let run = push(w, &local, &[&url, "origin/main:refs/heads/frozen"]);
    run.assert_failed();
    assert_eq!(
        run.stderr
            .matches("kalandra-test: frozen is frozen")
            .count(),
        1,
        "the refusal's reason shows once{run}"
    );
    assert!(
        remote_lines(&run)
            .iter()
            .any(|l| l.contains("frozen is frozen")),
        "as a remote: line{run}"
    );
}

/// `--atomic` and `-o` against a DOWN that does not advertise `atomic` / `push-options`: git's
/// send-pack dies before sending anything (receive-pack would quietly push non-atomically or
/// drop the options). Through the helper the push fails with the same message, DOWN untouched.
#[test]
fn push_needing_a_capability_downstream_lacks_fails_as_git_does() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    w.git(&down, &["config", "receive.advertiseAtomic", "false"]);
    let seen = fx.root().join("push-options.txt");
    record_push_options(w, &down, &seen);
    w.git(&down, &["config", "receive.advertisePushOptions", "false"]);
    let url = pair_url(&fx.up, &down);
    let specs = [
        "origin/develop:refs/heads/brand-new",
        "+origin/feature/a:refs/heads/main",
    ];
    let atomic = "the receiving end does not support --atomic push";
    let options = "the receiving end does not support push options";
    let cases: [(&[&str], &str); 4] = [
        (&["--atomic"], atomic),
        (&["--atomic", "--dry-run"], atomic),
        (&["-o", "x"], options),
        (&["--atomic", "-o", "x"], atomic),
    ];
    for (flags, message) in cases {
        let fatal = format!("fatal: {message}");
        let mut direct = vec!["push"];
        direct.extend(flags);
        direct.push(path_arg(&down));
        direct.extend(specs);
        let direct = w.try_helper_git(&local, &direct);
        direct.assert_failed().assert_stderr_has(&[&fatal]);

        let mut args = flags.to_vec();
        args.push(&url);
        args.extend(specs);
        let run = push(w, &local, &args);
        run.assert_failed().assert_stderr_has(&[&fatal]);
        assert!(!run.stderr.contains("->"), "a ref was reported{run}");
        assert_down(w, &down, &before, &format!("DOWN after push {flags:?}"));
        assert!(!seen.exists(), "DOWN's pre-receive hook ran for {flags:?}");
    }

    // Once DOWN advertises them, the same push goes through.
    w.git(&down, &["config", "receive.advertiseAtomic", "true"]);
    w.git(&down, &["config", "receive.advertisePushOptions", "true"]);
    let mut args = vec!["--atomic", "-o", "x", url.as_str()];
    args.extend(specs);
    push(w, &local, &args).assert_ok();
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the pre-receive hook ran"),
        "count=1\n0=x\n"
    );
    assert_down(
        w,
        &down,
        &with_changes(
            &before,
            &[
                ("refs/heads/brand-new", Some(&fx.up_rev("develop"))),
                ("refs/heads/main", Some(&fx.up_rev("feature/a"))),
            ],
        ),
        "DOWN after the push it advertises everything for",
    );
}

#[test]
fn dry_run_reports_and_changes_nothing() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, _) = fx.seeded_down();
    w.git(
        &down,
        &["update-ref", "refs/heads/main", &fx.up_rev("main~1")],
    );
    let before = w.refs(&down);
    let url = pair_url(&fx.up, &down);

    let run = push(
        w,
        &local,
        &[
            "--dry-run",
            &url,
            "origin/main:refs/heads/main",
            "origin/main:refs/heads/dry",
            ":refs/heads/feature/a",
        ],
    );
    run.assert_ok().assert_stderr_has(&[
        "[new branch]",
        "-> dry",
        "-> main",
        "[deleted]",
        "feature/a",
    ]);
    assert_down(w, &down, &before, "DOWN after --dry-run");
}

#[test]
fn force_with_lease() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let url = pair_url(&fx.up, &down);
    let main = fx.up_rev("main");
    let release = fx.up_rev("release/1.x");
    let lease = format!("--force-with-lease=refs/heads/main:{main}");

    push(
        w,
        &local,
        &[&lease, &url, "origin/release/1.x:refs/heads/main"],
    )
    .assert_ok();
    let after = with_changes(&before, &[("refs/heads/main", Some(&release))]);
    assert_down(w, &down, &after, "DOWN after a push with a matching lease");

    // DOWN's main is no longer what the lease expects.
    let run = push(
        w,
        &local,
        &[&lease, &url, "origin/feature/a:refs/heads/main"],
    );
    run.assert_failed()
        .assert_stderr_has(&["[rejected]", "stale info"]);
    assert_down(w, &down, &after, "DOWN after a push with a stale lease");

    // `--force-with-lease=<ref>:` leases on the ref not existing (git sends the helper
    // `cas <ref>:<null oid>`): it is created when absent, refused as stale once it exists.
    let absent = "--force-with-lease=refs/heads/leased:";
    push(w, &local, &[absent, &url, "origin/main:refs/heads/leased"]).assert_ok();
    let after = with_changes(&after, &[("refs/heads/leased", Some(&main))]);
    assert_down(w, &down, &after, "DOWN after a lease on an absent ref");
    let run = push(
        w,
        &local,
        &[absent, &url, "origin/feature/a:refs/heads/leased"],
    );
    run.assert_failed()
        .assert_stderr_has(&["[rejected]", "stale info"]);
    assert_down(
        w,
        &down,
        &after,
        "DOWN after a lease on an absent ref that exists",
    );
}

/// A `pre-receive` hook that writes the push options it got to `@SEEN@`: their count, then
/// each one byte for byte.
const RECORD_PUSH_OPTIONS: &str = r#"#!/bin/sh
cat >/dev/null
exec >'@SEEN@'
printf 'count=%s\n' "${GIT_PUSH_OPTION_COUNT-unset}"
i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT-0}" ]; do
  eval "value=\$GIT_PUSH_OPTION_$i"
  printf '%s=%s\n' "$i" "$value"
  i=$((i + 1))
done
"#;

/// DOWN advertises push options and records the ones it gets in `seen`.
fn record_push_options(w: &World, down: &Path, seen: &Path) {
    w.git(down, &["config", "receive.advertisePushOptions", "true"]);
    w.install_hook(
        down,
        "pre-receive",
        &RECORD_PUSH_OPTIONS.replace("@SEEN@", path_arg(seen)),
    );
}

#[test]
fn push_options_reach_downstream_hooks() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let seen = fx.root().join("push-options.txt");
    record_push_options(w, &down, &seen);
    let url = pair_url(&fx.up, &down);

    // git C-quotes the last two on their way to the helper.
    let odd = "a \"b\" ü\tt\\z";
    push(
        w,
        &local,
        &[
            "-o",
            "foo",
            "-o",
            "with space",
            "-o",
            odd,
            "-o",
            "\"q",
            &url,
            "origin/main:refs/heads/opts",
        ],
    )
    .assert_ok();
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the pre-receive hook ran"),
        format!("count=4\n0=foo\n1=with space\n2={odd}\n3=\"q\n")
    );
    assert_down(
        w,
        &down,
        &with_changes(&before, &[("refs/heads/opts", Some(&fx.up_rev("main")))]),
        "DOWN after a push with options",
    );
}

/// A `proc-receive` hook (githooks(5)) in perl, the way AGit-style servers take
/// `refs/for/<branch>`: it stores a push to `refs/for/main` as `refs/heads/main` (with
/// `git update-ref`) and says so with `option refname` (report-status-v2); it refuses the
/// other `refs/for/*` refs.
const PROC_RECEIVE_BODY: &str = r#"
1 while defined read_pkt();    # version=1 and its features
write_pkt("version=1");
print "0000";
my @commands;
while (defined(my $line = read_pkt())) {
    push @commands, [split / /, $line];
}
for my $command (@commands) {
    my ($old, $new, $ref) = @$command;
    if ($ref ne "refs/for/main") {
        write_pkt("ng $ref only refs/for/main is reviewed here");
        next;
    }
    my $current = `git rev-parse -q --verify refs/heads/main`;
    chomp $current;
    system("git", "update-ref", "refs/heads/main", $new) == 0
        or die "proc-receive: git update-ref failed\n";
    write_pkt("ok $ref");
    write_pkt("option refname refs/heads/main");
    write_pkt("option old-oid $current") if $current;
    write_pkt("option new-oid $new");
}
print "0000";
"#;

/// A DOWN whose proc-receive hook stores `refs/for/main` as `refs/heads/main`: its report
/// names the pushed ref (`ok refs/for/main`) and the ref it really updated in an option line.
/// The push is reported ok, as git reports it, and DOWN's main moves.
#[test]
fn push_to_a_proc_receive_ref_is_reported_ok() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let (down, _) = fx.seeded_down();
    w.git(
        &down,
        &["update-ref", "refs/heads/main", &fx.up_rev("main~1")],
    );
    w.git(&down, &["config", "receive.procReceiveRefs", "refs/for"]);
    w.install_hook(
        &down,
        "proc-receive",
        &format!("{PERL_PROC_RECEIVE_PRELUDE}{PROC_RECEIVE_BODY}"),
    );
    let before = w.refs(&down);
    let url = pair_url(&fx.up, &down);

    let run = push(w, &local, &[&url, "origin/main:refs/for/main"]);
    run.assert_ok();
    assert!(
        !run.stderr.contains("did not report"),
        "the report was not matched to the command{run}"
    );
    let after = with_changes(&before, &[("refs/heads/main", Some(&fx.up_rev("main")))]);
    assert_down(w, &down, &after, "DOWN after a push to refs/for/main");

    // The hook's refusal of another refs/for/ ref is the ref's error, as with plain git.
    let run = push(w, &local, &[&url, "origin/develop:refs/for/develop"]);
    run.assert_failed()
        .assert_stderr_has(&["[remote rejected]", "only refs/for/main is reviewed here"]);
    assert_down(w, &down, &after, "DOWN after a refused refs/for/ push");
}

#[test]
fn shallow_clone_publishes_full_history() {
    let fx = Fx::new();
    let w = &fx.w;
    let down = fx.empty.clone();
    let work = fx.root().join("work");
    w.git(
        fx.root(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &file_url(&fx.up),
            path_arg(&work),
        ],
    );
    assert_eq!(
        w.git(&work, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    assert_eq!(w.git(&work, &["rev-list", "--count", "HEAD"]), "1");

    // Plain git cannot: DOWN lacks the history the shallow clone does not have.
    let plain = w.try_helper_git(
        &work,
        &["push", path_arg(&down), "HEAD:refs/heads/published2"],
    );
    plain
        .assert_failed()
        .assert_stderr_has(&["shallow update not allowed"]);
    assert_down(w, &down, &Refs::new(), "DOWN after the plain push");

    let url = pair_url(&fx.up, &down);
    push(w, &work, &[&url, "HEAD:refs/heads/published"]).assert_ok();
    let develop = fx.up_rev("develop");
    let expected: Refs = [("refs/heads/published".to_owned(), develop.clone())].into();
    assert_down(
        w,
        &down,
        &expected,
        "DOWN after publishing from the shallow clone",
    );
    assert_eq!(
        w.git(&down, &["rev-list", "--count", "refs/heads/published"]),
        w.git(&fx.up, &["rev-list", "--count", "develop"]),
        "DOWN has the full history"
    );
    assert!(
        !down.join("shallow").exists(),
        "DOWN must not become shallow"
    );

    // The next CI run: UP moved on, the shallow clone pulls and publishes a fast-forward.
    let next = w.commit_file(&fx.up, "src/dev.txt", "dev 4\n", "dev 4");
    w.git(&work, &["pull", "-q", "--ff-only"]);
    assert_eq!(w.rev(&work, "HEAD"), next);
    assert_eq!(
        w.git(&work, &["rev-parse", "--is-shallow-repository"]),
        "true"
    );
    push(w, &work, &[&url, "HEAD:refs/heads/published"]).assert_ok();
    let expected: Refs = [("refs/heads/published".to_owned(), next)].into();
    assert_down(
        w,
        &down,
        &expected,
        "DOWN after a fast-forward from the shallow clone",
    );
}

/// A fresh depth-1 clone does not have DOWN's old tip, so git cannot tell a fast-forward
/// itself (it would say "fetch first"): the helper asks UP, which knows the history.
#[test]
fn fresh_shallow_clone_fast_forwards_and_is_refused_non_fast_forwards() {
    let fx = Fx::new();
    let w = &fx.w;
    let (down, _) = fx.seeded_down();
    let behind = fx.up_rev("develop~2");
    w.git(&down, &["update-ref", "refs/heads/develop", &behind]);
    let before = w.refs(&down);
    let work = fx.root().join("work");
    w.git(
        fx.root(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &file_url(&fx.up),
            path_arg(&work),
        ],
    );
    let missing = w.try_git(&work, &["cat-file", "-e", &format!("{behind}^{{commit}}")]);
    assert!(
        !missing.status.success(),
        "precondition: the shallow clone lacks DOWN's old tip"
    );
    let url = pair_url(&fx.up, &down);

    // release/1.x is not an ancestor of develop. The clone lacks DOWN's value, so git's own
    // answer (and the helper's) is `fetch first`.
    let run = push(w, &work, &[&url, "HEAD:refs/heads/release/1.x"]);
    run.assert_failed()
        .assert_stderr_has(&["[rejected]", "fetch first"]);
    assert_down(w, &down, &before, "DOWN after a refused non-fast-forward");

    push(w, &work, &[&url, "HEAD:refs/heads/develop"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(
            &before,
            &[("refs/heads/develop", Some(&fx.up_rev("develop")))],
        ),
        "DOWN after a fast-forward from a fresh shallow clone",
    );
}

/// Rewinds that upload-pack's `ready` once let through: DOWN's tip B, whose parent is A, and
/// a sibling C of B (also a child of A), and a merge M of B and C. Pushed from a depth-1 clone
/// (which knows neither DOWN's tip nor the history between), each non-fast-forward is refused
/// without force, and goes through with `--force` or a matching lease.
#[test]
fn shallow_clone_cannot_rewind_to_a_parent_sibling_or_merge_parent_without_force() {
    let fx = Fx::new();
    let w = &fx.w;
    w.checkout(&fx.up, "t-a", Some("develop"));
    let a = w.commit_file(&fx.up, "t.txt", "a\n", "A");
    w.checkout(&fx.up, "t-b", Some("t-a"));
    let b = w.commit_file(&fx.up, "t.txt", "b\n", "B");
    w.checkout(&fx.up, "t-c", Some("t-a"));
    let c = w.commit_file(&fx.up, "c.txt", "c\n", "C (sibling of B)");
    w.checkout(&fx.up, "t-m", Some("t-b"));
    w.git(&fx.up, &["merge", "-q", "--no-ff", "-m", "M", "t-c"]);
    let m = w.rev(&fx.up, "HEAD");
    w.checkout(&fx.up, "develop", None);
    let (down, _) = fx.seeded_down();
    let url = pair_url(&fx.up, &down);
    let shallow_at = |branch: &str| {
        let work = fx.root().join(format!("work-{branch}"));
        if work.exists() {
            return work;
        }
        w.git(
            fx.root(),
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                "--branch",
                branch,
                &file_url(&fx.up),
                path_arg(&work),
            ],
        );
        work
    };
    let set_down = |oid: &str| {
        w.git(&down, &["update-ref", "refs/heads/topic", oid]);
        w.refs(&down)
    };

    for (down_at, pushed, what) in [
        (&b, "t-a", "the parent of DOWN's tip"),
        (&b, "t-c", "a sibling of DOWN's tip"),
        (&m, "t-b", "the first parent of DOWN's merge"),
        (&m, "t-c", "the second parent of DOWN's merge"),
    ] {
        let before = set_down(down_at);
        let work = shallow_at(pushed);
        let run = push(w, &work, &[&url, "HEAD:refs/heads/topic"]);
        run.assert_failed().assert_stderr_has(&["[rejected]"]);
        assert_down(
            w,
            &down,
            &before,
            &format!("DOWN after pushing {what} without force"),
        );

        let lease = format!("--force-with-lease=refs/heads/topic:{down_at}");
        push(w, &work, &[&lease, &url, "HEAD:refs/heads/topic"]).assert_ok();
        let pushed_oid = w.rev(&fx.up, pushed);
        assert_down(
            w,
            &down,
            &with_changes(&before, &[("refs/heads/topic", Some(&pushed_oid))]),
            &format!("DOWN after pushing {what} with a matching lease"),
        );
        let before = set_down(down_at);
        push(w, &work, &["--force", &url, "HEAD:refs/heads/topic"]).assert_ok();
        assert_down(
            w,
            &down,
            &with_changes(&before, &[("refs/heads/topic", Some(&pushed_oid))]),
            &format!("DOWN after pushing {what} with --force"),
        );
    }
    assert_ne!(a, c);

    // A merge whose first parent is DOWN's tip is a fast-forward, with no force.
    let before = set_down(&b);
    let work = shallow_at("t-m");
    push(w, &work, &[&url, "HEAD:refs/heads/topic"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(&before, &[("refs/heads/topic", Some(&m))]),
        "DOWN after a merge fast-forward",
    );
}

/// An upstream without `filter` cannot say whether DOWN's tip is an ancestor: the helper
/// refuses, says why, and `--force` still works.
#[test]
fn without_filter_upstream_a_shallow_push_is_refused_with_the_reason() {
    let fx = Fx::new();
    let w = &fx.w;
    let (down, _) = fx.seeded_down();
    let behind = fx.up_rev("develop~2");
    w.git(&down, &["update-ref", "refs/heads/develop", &behind]);
    let before = w.refs(&down);
    let work = fx.root().join("work");
    w.git(
        fx.root(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &file_url(&fx.up),
            path_arg(&work),
        ],
    );
    // git daemon obeys the repository's uploadpack.allowFilter (false by default).
    let daemon = crate::git_daemon::Daemon::start(fx.root());
    let relative = |p: &Path| {
        p.strip_prefix(fx.root())
            .expect("inside")
            .display()
            .to_string()
    };
    let url = format!(
        "kalandra::{}=>{}",
        daemon.url(&relative(&fx.up)),
        daemon.url(&relative(&down))
    );
    let run = push(w, &work, &[&url, "HEAD:refs/heads/develop"]);
    run.assert_failed()
        .assert_stderr_has(&["[remote rejected]", "filter", "--force"]);
    assert!(
        !run.stderr.contains("fetch first"),
        "fetching would not help: not git's `fetch first`{run}"
    );
    assert_down(w, &down, &before, "DOWN after a refused undecidable push");
    push(w, &work, &["--force", &url, "HEAD:refs/heads/develop"]).assert_ok();
    assert_down(
        w,
        &down,
        &with_changes(
            &before,
            &[("refs/heads/develop", Some(&fx.up_rev("develop")))],
        ),
        "DOWN after a forced push",
    );
}

// ---------------------------------------------------------------------------------------------
// Bad URLs and missing repositories.

#[test]
fn malformed_urls_show_the_expected_form() {
    let fx = Fx::new();
    let w = &fx.w;
    for url in ["kalandra::nothing-here", "kalandra::a=>b=>c"] {
        let run = w.try_helper_git(fx.root(), &["ls-remote", url]);
        run.assert_failed()
            .assert_stderr_has(&["kalandra::UP=>DOWN"]);
        let dir = fx.root().join("clone");
        let run = w.try_helper_git(fx.root(), &["clone", "-q", url, path_arg(&dir)]);
        run.assert_failed()
            .assert_stderr_has(&["kalandra::UP=>DOWN"]);
        assert!(!dir.exists(), "a failed clone leaves no directory");
    }
    let local = fx.local();
    let run = push(
        w,
        &local,
        &["kalandra::nothing-here", "origin/main:refs/heads/x"],
    );
    run.assert_failed()
        .assert_stderr_has(&["kalandra::UP=>DOWN"]);
}

#[test]
fn missing_repositories_are_named() {
    let fx = Fx::new();
    let w = &fx.w;
    let missing_up = fx.root().join("no-such-up");
    let missing_down = fx.root().join("no-such-down.git");

    let run = w.try_helper_git(fx.root(), &["ls-remote", &pair_url(&missing_up, &fx.empty)]);
    run.assert_failed().assert_stderr_has(&["no-such-up"]);

    let local = fx.local();
    let (down, before) = fx.seeded_down();
    let run = push(
        w,
        &local,
        &[&pair_url(&missing_up, &down), "origin/main:refs/heads/x"],
    );
    run.assert_failed().assert_stderr_has(&["no-such-up"]);
    assert_down(w, &down, &before, "DOWN after a push with UP missing");

    let run = push(
        w,
        &local,
        &[&pair_url(&fx.up, &missing_down), "origin/main:refs/heads/x"],
    );
    run.assert_failed().assert_stderr_has(&["no-such-down.git"]);
    assert!(!missing_down.exists(), "the helper must not create DOWN");
    assert!(!missing_up.exists(), "the helper must not create UP");
}

// ---------------------------------------------------------------------------------------------
// The helper's own protocol: stdout carries only protocol lines.

/// A capability line: a name, maybe `*`-prefixed (mandatory), maybe with an argument.
fn is_capability_line(line: &str) -> bool {
    let line = line.strip_prefix('*').unwrap_or(line);
    let name = line.split(' ').next().unwrap_or_default();
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One parsed line of a `list` reply.
#[derive(Debug, PartialEq, Eq)]
enum ListLine {
    Ref { oid: String, name: String },
    Symref { target: String, name: String },
    ObjectFormat(String),
}

fn parse_list_line(line: &str, hex_len: usize) -> Option<ListLine> {
    if let Some(algo) = line.strip_prefix(":object-format ") {
        return matches!(algo, "sha1" | "sha256").then(|| ListLine::ObjectFormat(algo.into()));
    }
    let (first, name) = line.split_once(' ')?;
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    if let Some(target) = first.strip_prefix('@') {
        return (target.starts_with("refs/") && name == "HEAD").then(|| ListLine::Symref {
            target: target.into(),
            name: name.into(),
        });
    }
    let hex = first.len() == hex_len
        && first
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    hex.then(|| ListLine::Ref {
        oid: first.into(),
        name: name.into(),
    })
}

/// Split the helper's stdout for `capabilities` (+ one `list`) into its blocks, failing the
/// test on anything that is not a protocol line.
fn parse_helper_stdout(run: &GitRun, hex_len: usize, with_list: bool) -> Vec<ListLine> {
    let lines: Vec<&str> = run.stdout.split('\n').collect();
    assert_eq!(
        lines.last(),
        Some(&""),
        "stdout must end with a newline{run}"
    );
    let lines = &lines[..lines.len() - 1];
    let caps_end = lines
        .iter()
        .position(|l| l.is_empty())
        .unwrap_or_else(|| panic!("the capabilities reply has no closing blank line{run}"));
    assert!(caps_end > 0, "no capabilities{run}");
    for cap in &lines[..caps_end] {
        assert!(
            is_capability_line(cap),
            "not a capability line on stdout: {cap:?}{run}"
        );
    }
    let rest = &lines[caps_end + 1..];
    if !with_list {
        assert!(
            rest.is_empty(),
            "stdout goes on after the capabilities{run}"
        );
        return Vec::new();
    }
    assert_eq!(
        rest.last(),
        Some(&""),
        "the list reply has no closing blank line{run}"
    );
    let list = &rest[..rest.len() - 1];
    list.iter()
        .map(|l| {
            parse_list_line(l, hex_len)
                .unwrap_or_else(|| panic!("not a protocol line on stdout: {l:?}{run}"))
        })
        .collect()
}

fn trace_env() -> Vec<(&'static str, std::ffi::OsString)> {
    vec![("KALANDRA_LOG", "trace".into())]
}

#[test]
fn stdout_carries_only_protocol_lines_when_tracing() {
    let fx = Fx::new();
    let w = &fx.w;
    let up_refs = w.refs(&fx.up);
    let arg = format!("{}=>{}", path_arg(&fx.up), path_arg(&fx.extra));
    let args = ["origin", arg.as_str()];

    let caps = w.run_helper(fx.root(), &args, b"capabilities\n\n", &trace_env());
    caps.assert_ok();
    parse_helper_stdout(&caps, 40, false);

    let list = w.run_helper(fx.root(), &args, b"capabilities\nlist\n\n", &trace_env());
    list.assert_ok();
    assert!(
        !list.stderr.trim().is_empty(),
        "KALANDRA_LOG=trace logged nothing on stderr{list}"
    );
    let lines = parse_helper_stdout(&list, 40, true);
    let listed: Refs = lines
        .iter()
        .filter_map(|l| match l {
            ListLine::Ref { oid, name } if name.starts_with("refs/") && !name.ends_with("^{}") => {
                Some((name.clone(), oid.clone()))
            }
            _ => None,
        })
        .collect();
    assert_refs_eq(&listed, &up_refs, "refs `list` gives (UP's)");
    for line in &lines {
        match line {
            ListLine::Symref { target, name } if name == "HEAD" => {
                assert_eq!(target, "refs/heads/develop", "HEAD in `list`{list}")
            }
            ListLine::Ref { oid, name } if name == "HEAD" => {
                assert_eq!(oid, &up_refs["refs/heads/develop"], "HEAD in `list`{list}")
            }
            _ => {}
        }
    }
}

#[test]
fn verbose_git_through_the_helper_with_tracing() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let down = fx.empty.clone();
    let url = pair_url(&fx.up, &down);
    let env = trace_env();

    let run = w.try_helper_git_env(fx.root(), &["ls-remote", &url], &env);
    run.assert_ok();
    assert_eq!(
        run.stdout.trim_end(),
        w.git(fx.root(), &["ls-remote", path_arg(&fx.up)]),
        "ls-remote with tracing on{run}"
    );

    let via = fx.root().join("via");
    w.try_helper_git_env(fx.root(), &["clone", "-v", &url, path_arg(&via)], &env)
        .assert_ok();
    assert_clones_equal(w, &via, &local, &url);

    let new = w.commit_file(&fx.up, "src/dev.txt", "dev 4\n", "dev 4");
    w.try_helper_git_env(&via, &["fetch", "-v"], &env)
        .assert_ok();
    assert_eq!(w.refs(&via)["refs/remotes/origin/develop"], new);

    w.try_helper_git_env(
        &local,
        &["push", "-v", &url, "origin/main:refs/heads/v"],
        &env,
    )
    .assert_ok();
    let expected: Refs = [("refs/heads/v".to_owned(), fx.up_rev("main"))].into();
    assert_down(w, &down, &expected, "DOWN after push -v with tracing");
}

#[test]
fn list_for_push_gives_downstreams_refs() {
    let fx = Fx::new();
    let w = &fx.w;
    let (down, _) = fx.seeded_down();
    w.git(&fx.up, &["push", "-q", path_arg(&down), "main:refs/keep/x"]);
    w.git(&down, &["symbolic-ref", "HEAD", "refs/heads/develop"]);
    let down_refs = w.refs(&down);
    let arg = format!("{}=>{}", path_arg(&fx.up), path_arg(&down));

    let run = w.run_helper(
        fx.root(),
        &["origin", &arg],
        b"capabilities\nlist for-push\n\n",
        &trace_env(),
    );
    run.assert_ok();
    let lines = parse_helper_stdout(&run, 40, true);
    assert_eq!(
        lines.first(),
        Some(&ListLine::ObjectFormat("sha1".into())),
        ":object-format first{run}"
    );
    let mut listed = Refs::new();
    for line in &lines[1..] {
        match line {
            ListLine::Ref { oid, name } => {
                assert!(name != "HEAD", "`list for-push` lists HEAD{run}");
                assert!(
                    listed.insert(name.clone(), oid.clone()).is_none(),
                    "{name} listed twice{run}"
                );
            }
            other => panic!("unexpected line {other:?} in `list for-push`{run}"),
        }
    }
    assert_refs_eq(&listed, &down_refs, "refs `list for-push` gives (DOWN's)");

    // An empty DOWN: only the object format.
    let fx2 = fx.root().join("empty2.git");
    w.git(fx.root(), &["init", "-q", "--bare", path_arg(&fx2)]);
    let arg = format!("{}=>{}", path_arg(&fx.up), path_arg(&fx2));
    let run = w.run_helper(
        fx.root(),
        &["origin", &arg],
        b"capabilities\nlist for-push\n\n",
        &[],
    );
    run.assert_ok();
    assert_eq!(
        parse_helper_stdout(&run, 40, true),
        vec![ListLine::ObjectFormat("sha1".into())],
        "`list for-push` of an empty DOWN{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// sha256.

#[test]
fn sha256_pair_clone_and_push() {
    let w = World::new();
    let fx = w.fixture("sha256.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let url = pair_url(&up, &down);

    let run = w.try_helper_git(w.root(), &["ls-remote", &url]);
    run.assert_ok();
    assert_eq!(
        run.stdout.trim_end(),
        w.git(w.root(), &["ls-remote", path_arg(&up)]),
        "ls-remote of a sha256 pair{run}"
    );

    let via = w.root().join("via");
    let direct = w.root().join("direct");
    w.helper_git(w.root(), &["clone", "-q", &url, path_arg(&via)]);
    w.git(w.root(), &["clone", "-q", path_arg(&up), path_arg(&direct)]);
    assert_eq!(
        w.git(&via, &["rev-parse", "--show-object-format"]),
        "sha256"
    );
    assert_eq!(w.head_target(&via).as_deref(), Some("refs/heads/topic"));
    assert_clones_equal(&w, &via, &direct, &url);

    let arg = format!("{}=>{}", path_arg(&up), path_arg(&down));
    let run = w.run_helper(
        w.root(),
        &["origin", &arg],
        b"capabilities\nlist for-push\n\n",
        &[],
    );
    run.assert_ok();
    assert_eq!(
        parse_helper_stdout(&run, 64, true),
        vec![ListLine::ObjectFormat("sha256".into())],
        "`list for-push` of an empty sha256 DOWN{run}"
    );

    push(
        &w,
        &via,
        &[
            &url,
            "origin/main:refs/heads/main",
            "refs/tags/v1:refs/tags/v1",
        ],
    )
    .assert_ok();
    let expected: Refs = [
        ("refs/heads/main".to_owned(), w.rev(&up, "main")),
        ("refs/tags/v1".to_owned(), w.rev(&up, "refs/tags/v1")),
    ]
    .into();
    assert_down(&w, &down, &expected, "sha256 DOWN after the push");
    assert_eq!(w.git(&down, &["cat-file", "-t", "refs/tags/v1"]), "tag");
}

#[test]
fn configured_remote_by_name() {
    let fx = Fx::new();
    let w = &fx.w;
    let local = fx.local();
    let down = fx.empty.clone();
    // git runs the helper as `git-remote-kalandra pair UP=>DOWN`.
    w.git(&local, &["remote", "add", "pair", &pair_url(&fx.up, &down)]);

    w.helper_git(&local, &["fetch", "-q", "pair"]);
    let fetched: Refs = w
        .refs(&local)
        .into_iter()
        .filter_map(|(n, o)| {
            n.strip_prefix("refs/remotes/pair/")
                .map(|b| (format!("refs/heads/{b}"), o))
        })
        .collect();
    let up_branches: Refs = w
        .refs(&fx.up)
        .into_iter()
        .filter(|(n, _)| n.starts_with("refs/heads/"))
        .collect();
    assert_refs_eq(
        &fetched,
        &up_branches,
        "branches fetched from the named remote",
    );

    w.helper_git(
        &local,
        &["push", "-q", "pair", "origin/main:refs/heads/named"],
    );
    let expected: Refs = [("refs/heads/named".to_owned(), fx.up_rev("main"))].into();
    assert_down(
        w,
        &down,
        &expected,
        "DOWN after pushing to the named remote",
    );
}
