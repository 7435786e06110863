//! Fast-forward or forced: every update classified from upstream's commits (the ancestry
//! check), and the divergence policies `force`, `ff-only` and `keep`, `--immutable-tags`.
//!
//! Histories are made with real git; the expected kind of each update is what
//! `git merge-base --is-ancestor` says in a repository holding both sides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::git_daemon::Daemon;
use crate::harness::{assert_refs_eq, path_arg, Run, World};

pub(crate) struct Fx {
    pub(crate) w: World,
    pub(crate) up: PathBuf,
    pub(crate) down: PathBuf,
}

/// The mirror fixture with `config` set on upstream, mirrored once.
pub(crate) fn mirrored_with(config: &[(&str, &str)]) -> Fx {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    for (key, value) in config {
        w.git(&up, &["config", key, value]);
    }
    w.sync_ok(&up, &down, &[]);
    Fx { w, up, down }
}

/// The mirror fixture, mirrored once, with `uploadpack.allowFilter` set on upstream as a
/// forge has it (file:// lets the filter through anyway; git daemon and http obey it).
fn mirrored() -> Fx {
    mirrored_with(&[("uploadpack.allowFilter", "true")])
}

/// `(kind, status, reason)` of each ref in a `--json` report.
fn kinds(run: &Run) -> BTreeMap<String, (Option<String>, String, Option<String>)> {
    run.report()
        .0
        .get("refs")
        .and_then(|r| r.as_array())
        .expect("refs is an array")
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().map(str::to_owned);
            (
                text("name").expect("a name"),
                (
                    text("kind"),
                    text("status").expect("a status"),
                    text("reason"),
                ),
            )
        })
        .collect()
}

fn kind_of(run: &Run, name: &str) -> String {
    kinds(run)
        .get(name)
        .and_then(|(k, _, _)| k.clone())
        .unwrap_or_else(|| panic!("{name} has no kind{run}"))
}

fn json(w: &World, command: &str, up: &str, down: &str, extra: &[&str]) -> Run {
    let mut args = vec![command, "--json"];
    args.extend_from_slice(extra);
    args.extend([up, down]);
    w.kalandra(&args)
}

/// Commit on `branch` of the bare `down` directly, as someone pushing to the mirror would,
/// from a scratch clone so that upstream never sees the commit. Returns the new commit.
fn commit_on_mirror(w: &World, down: &Path, branch: &str) -> String {
    let scratch = w
        .root()
        .join(format!("scratch-{}", branch.replace('/', "-")));
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "-b",
            branch,
            path_arg(down),
            path_arg(&scratch),
        ],
    );
    let oid = w.commit_file(
        &scratch,
        "mirror-only.txt",
        "made on the mirror\n",
        "mirror only",
    );
    w.git(
        &scratch,
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    );
    oid
}

fn daemon_url(w: &World, daemon: &Daemon, repo: &Path) -> String {
    let relative = repo.strip_prefix(w.root()).expect("inside the world");
    daemon.url(&relative.display().to_string())
}

fn is_ancestor(w: &World, repo: &Path, old: &str, new: &str) -> bool {
    w.try_git(repo, &["merge-base", "--is-ancestor", old, new])
        .status
        .success()
}

#[test]
fn updates_are_classified_as_git_would_judge_them() {
    let Fx { w, up, down } = mirrored();
    let old_main = w.rev(&up, "main");
    let old_develop = w.rev(&up, "develop");
    // main: rewound to its first parent (the parent case).
    w.git(&up, &["branch", "-f", "main", "main~1"]);
    // feature/a: a sibling of its tip (shares the tip's parent).
    w.checkout(&up, "feature/a", None);
    w.git(&up, &["reset", "-q", "--hard", "HEAD~1"]);
    w.commit_file(&up, "a.txt", "a sibling\n", "sibling of feature a 2");
    // develop: a fast-forward through a merge whose second parent is the old tip.
    w.checkout(&up, "develop", None);
    w.checkout(&up, "side", Some("develop~1"));
    w.commit_file(&up, "side.txt", "side\n", "side");
    w.checkout(&up, "develop", None);
    w.git(&up, &["merge", "-q", "--no-ff", "-m", "merge side", "side"]);
    w.git(&up, &["branch", "-D", "side"]);
    // feature/b: a plain fast-forward of several commits.
    w.checkout(&up, "feature/b", None);
    for i in 0..3 {
        w.commit_file(&up, "b.txt", &format!("b {i}\n"), &format!("b {i}"));
    }
    w.checkout(&up, "develop", None);
    // A moved annotated tag.
    w.git(&up, &["tag", "-f", "-a", "-m", "moved", "v1.1", "develop"]);
    assert!(!is_ancestor(&w, &up, &old_main, &w.rev(&up, "main")));
    assert!(is_ancestor(&w, &up, &old_develop, &w.rev(&up, "develop")));

    let expected = [
        ("refs/heads/main", "forced"),
        ("refs/heads/feature/a", "forced"),
        ("refs/heads/develop", "fast-forward"),
        ("refs/heads/feature/b", "fast-forward"),
        ("refs/tags/v1.1", "tag-moved"),
    ];
    let plan = json(&w, "plan", path_arg(&up), path_arg(&down), &[]);
    plan.assert_code(0);
    for (name, kind) in expected {
        assert_eq!(kind_of(&plan, name), kind, "{name} in plan{plan}");
    }
    let plan_text = w.kalandra(&["plan", path_arg(&up), path_arg(&down)]);
    plan_text.assert_code(0);
    assert!(
        plan_text.stdout.contains("(forced)") && plan_text.stdout.contains("(tag moved)"),
        "plan shows forced updates and moved tags{plan_text}"
    );

    // The default policy (force) pushes them all and says which were forced.
    let report = w.sync_ok(&up, &down, &[]);
    let refs = report.0["refs"].as_array().expect("refs").clone();
    for (name, kind) in expected {
        let entry = refs
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} in the sync report: {}", report.0));
        assert_eq!(entry["kind"], kind, "{name}: {}", report.0);
    }
}

/// upload-pack leaves a have unacknowledged when an earlier have's parent is that commit, so
/// when downstream's old `main` (a merge of `topic`) sorts before old `topic`, a have-only
/// answer would call topic's fast-forward forced. The commit ids are made to sort that way.
#[test]
fn a_fast_forward_of_a_branch_merged_into_another_is_not_called_forced() {
    let w = World::new();
    let up = w.root().join("order");
    w.git(w.root(), &["init", "-q", "-b", "main", path_arg(&up)]);
    w.commit_file(&up, "README", "x\n", "initial");
    w.checkout(&up, "topic", Some("main"));
    w.commit_file(&up, "t.txt", "t\n", "topic 1");
    w.checkout(&up, "main", None);
    w.commit_file(&up, "lib.txt", "l\n", "lib 2");
    let (mut main, topic) = (String::new(), w.rev(&up, "topic"));
    for salt in 0..64 {
        let message = format!("merge topic {salt}");
        w.git(&up, &["merge", "-q", "--no-ff", "-m", &message, "topic"]);
        main = w.rev(&up, "main");
        if main < topic {
            break;
        }
        w.git(&up, &["reset", "-q", "--hard", "HEAD~1"]);
    }
    assert!(main < topic, "no merge id sorted before {topic}");
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    w.sync_ok(&up, &down, &[]);

    w.checkout(&up, "topic", None);
    w.commit_file(&up, "ff.txt", "ff\n", "ff");
    w.checkout(&up, "main", None);
    w.git(&up, &["reset", "-q", "--hard", "HEAD~1"]);
    w.commit_file(&up, "rw.txt", "rw\n", "rewritten");
    assert!(is_ancestor(&w, &up, &topic, &w.rev(&up, "topic")));

    let plan = json(&w, "plan", path_arg(&up), path_arg(&down), &[]);
    plan.assert_code(0);
    assert_eq!(kind_of(&plan, "refs/heads/topic"), "fast-forward", "{plan}");
    assert_eq!(kind_of(&plan, "refs/heads/main"), "forced", "{plan}");
    let run = json(
        &w,
        "sync",
        path_arg(&up),
        path_arg(&down),
        &["--divergence", "ff-only"],
    );
    assert_eq!(
        w.refs(&down).get("refs/heads/topic"),
        w.refs(&up).get("refs/heads/topic"),
        "ff-only lands the fast-forward{run}"
    );
}

/// Refs other than tags that name annotated tags are peeled before asking about ancestry, as
/// git's push does (git refuses non-commits under refs/heads/, so these live in refs/x/).
#[test]
fn refs_naming_annotated_tags_are_peeled_on_both_sides() {
    let Fx { w, up, down } = mirrored();
    let scope = [
        "--include",
        "refs/heads/*",
        "--include",
        "refs/tags/*",
        "--include",
        "refs/x/*",
    ];
    // t names an annotated tag (of a commit main descends from); u names a commit.
    w.git(&up, &["update-ref", "refs/x/t", "v1.0"]);
    w.git(&up, &["update-ref", "refs/x/u", "main"]);
    w.git(&up, &["update-ref", "refs/x/back", "main"]);
    w.sync_ok(&up, &down, &scope);
    // t: tag -> a descendant commit (fast-forward once OLD is peeled);
    // u: commit -> a tag of a descendant of it (fast-forward once NEW is peeled);
    // back: commit -> a tag of an older commit (a rewind).
    w.git(&up, &["update-ref", "refs/x/t", "main"]);
    w.checkout(&up, "main", None);
    w.commit_file(&up, "later.txt", "later\n", "later");
    w.git(&up, &["tag", "-a", "-m", "later", "later", "main"]);
    w.git(&up, &["update-ref", "refs/x/u", "refs/tags/later"]);
    w.git(&up, &["update-ref", "refs/x/back", "refs/tags/v1.0"]);
    w.checkout(&up, "develop", None);

    let mut args = vec!["plan", "--json"];
    args.extend(scope);
    args.extend([path_arg(&up), path_arg(&down)]);
    let plan = w.kalandra(&args);
    plan.assert_code(0);
    assert_eq!(kind_of(&plan, "refs/x/t"), "fast-forward", "{plan}");
    assert_eq!(kind_of(&plan, "refs/x/u"), "fast-forward", "{plan}");
    assert_eq!(kind_of(&plan, "refs/x/back"), "forced", "{plan}");
    w.sync_ok(&up, &down, &scope);
}

#[test]
fn ff_only_refuses_a_commit_made_on_the_mirror_and_lands_the_rest() {
    let Fx { w, up, down } = mirrored();
    let mirror_commit = commit_on_mirror(&w, &down, "develop");
    w.checkout(&up, "develop", None);
    w.commit_file(&up, "dev.txt", "upstream moves on\n", "upstream moves");
    w.checkout(&up, "main", None);
    w.commit_file(&up, "main.txt", "main moves\n", "main moves");
    w.checkout(&up, "develop", None);

    let run = json(
        &w,
        "sync",
        path_arg(&up),
        path_arg(&down),
        &["--divergence=ff-only"],
    );
    run.assert_code(3);
    let report = run.report();
    assert_eq!(report.0["outcome"], "partial", "{run}");
    let refs = kinds(&run);
    let (kind, status, reason) = &refs["refs/heads/develop"];
    assert_eq!(kind.as_deref(), Some("forced"), "{run}");
    assert_eq!(status, "rejected", "{run}");
    let reason = reason.clone().unwrap_or_default();
    assert!(
        reason.contains("non-fast-forward") && reason.contains("not in upstream"),
        "the reason says why: {reason:?}{run}"
    );
    assert_eq!(refs["refs/heads/main"].1, "ok", "{run}");
    let after = w.refs(&down);
    assert_eq!(
        after["refs/heads/develop"], mirror_commit,
        "the mirror's commit stays"
    );
    assert_eq!(after["refs/heads/main"], w.rev(&up, "main"), "main landed");
    w.assert_fsck(&down);

    // The human output says the same.
    let text = w.kalandra(&[
        "sync",
        "--divergence=ff-only",
        path_arg(&up),
        path_arg(&down),
    ]);
    text.assert_code(3);
    assert!(
        text.stdout.contains("rejected refs/heads/develop") && text.stdout.contains("1 rejected"),
        "{text}"
    );
}

#[test]
fn keep_leaves_a_divergent_mirror_ref_alone_every_time() {
    let Fx { w, up, down } = mirrored();
    let mirror_commit = commit_on_mirror(&w, &down, "feature/a");
    w.checkout(&up, "feature/a", None);
    w.commit_file(&up, "a.txt", "upstream a\n", "upstream moves a");
    w.checkout(&up, "develop", None);
    w.commit_file(&up, "dev.txt", "dev moves\n", "dev moves");

    for round in 0..2 {
        let run = json(
            &w,
            "sync",
            path_arg(&up),
            path_arg(&down),
            &["--divergence=keep"],
        );
        run.assert_code(0);
        let refs = kinds(&run);
        let (kind, status, reason) = &refs["refs/heads/feature/a"];
        assert_eq!(kind.as_deref(), Some("forced"), "round {round}{run}");
        assert_eq!(status, "kept", "round {round}{run}");
        assert!(reason.is_some(), "a kept ref says why{run}");
        assert_eq!(
            w.refs(&down)["refs/heads/feature/a"],
            mirror_commit,
            "round {round}: the mirror's commit is kept"
        );
    }
    assert_eq!(w.refs(&down)["refs/heads/develop"], w.rev(&up, "develop"));
    w.assert_fsck(&down);

    // `force` (the default) then follows upstream, and says it forced.
    let run = json(&w, "sync", path_arg(&up), path_arg(&down), &[]);
    run.assert_code(0);
    assert_eq!(kind_of(&run, "refs/heads/feature/a"), "forced", "{run}");
    assert_eq!(
        w.refs(&down)["refs/heads/feature/a"],
        w.rev(&up, "feature/a")
    );
}

#[test]
fn immutable_tags_refuse_to_move_or_delete_a_release_tag() {
    let Fx { w, up, down } = mirrored();
    let before = w.refs(&down);
    w.git(
        &up,
        &["tag", "-f", "-a", "-m", "rewritten", "v1.1", "develop"],
    );
    w.git(&up, &["tag", "-d", "v1.0-again"]);
    w.git(&up, &["tag", "-a", "-m", "new", "v2.0", "develop"]);

    let run = json(
        &w,
        "sync",
        path_arg(&up),
        path_arg(&down),
        &["--immutable-tags"],
    );
    run.assert_code(3);
    let refs = kinds(&run);
    assert_eq!(
        refs["refs/tags/v1.1"].0.as_deref(),
        Some("tag-moved"),
        "{run}"
    );
    assert_eq!(refs["refs/tags/v1.1"].1, "rejected", "{run}");
    assert_eq!(refs["refs/tags/v1.0-again"].1, "rejected", "{run}");
    assert_eq!(refs["refs/tags/v2.0"].1, "ok", "new tags are created{run}");
    let after = w.refs(&down);
    assert_eq!(after["refs/tags/v1.1"], before["refs/tags/v1.1"]);
    assert_eq!(
        after["refs/tags/v1.0-again"],
        before["refs/tags/v1.0-again"]
    );
    assert_eq!(after["refs/tags/v2.0"], w.rev(&up, "refs/tags/v2.0"));
    w.assert_fsck(&down);
}

/// Over git:// (a network transport), where upstream's own config decides about `filter`.
#[test]
fn over_git_daemon_with_filter_ff_only_decides_exactly() {
    let Fx { w, up, down } = mirrored();
    let mirror_commit = commit_on_mirror(&w, &down, "develop");
    w.git(&up, &["branch", "-f", "main", "main~1"]);
    w.checkout(&up, "feature/b", None);
    w.commit_file(&up, "b.txt", "b moves\n", "b moves");
    w.checkout(&up, "develop", None);
    let daemon = Daemon::start(w.root());
    let (up_url, down_url) = (daemon_url(&w, &daemon, &up), daemon_url(&w, &daemon, &down));

    let run = json(&w, "sync", &up_url, &down_url, &["--divergence=ff-only"]);
    run.assert_code(3);
    let refs = kinds(&run);
    assert_eq!(
        refs["refs/heads/develop"].0.as_deref(),
        Some("forced"),
        "{run}"
    );
    assert_eq!(refs["refs/heads/develop"].1, "rejected", "{run}");
    assert_eq!(
        refs["refs/heads/main"].0.as_deref(),
        Some("forced"),
        "{run}"
    );
    assert_eq!(refs["refs/heads/main"].1, "rejected", "{run}");
    assert_eq!(
        refs["refs/heads/feature/b"].0.as_deref(),
        Some("fast-forward"),
        "{run}"
    );
    assert_eq!(refs["refs/heads/feature/b"].1, "ok", "{run}");
    let after = w.refs(&down);
    assert_eq!(after["refs/heads/develop"], mirror_commit);
    assert_eq!(after["refs/heads/feature/b"], w.rev(&up, "feature/b"));
    w.assert_fsck(&down);
}

/// An upstream without `filter` can still say that downstream's commit is not in upstream
/// (it does not acknowledge it), but not whether an old commit it has is an ancestor.
#[test]
fn without_filter_ff_only_decides_what_it_can_and_refuses_the_rest_as_undecidable() {
    let Fx { w, up, down } = mirrored();
    w.git(&up, &["config", "uploadpack.allowFilter", "false"]);
    let mirror_commit = commit_on_mirror(&w, &down, "develop");
    let old_main = w.rev(&up, "main");
    w.git(&up, &["branch", "-f", "main", "main~1"]);
    let daemon = Daemon::start(w.root());
    let (up_url, down_url) = (daemon_url(&w, &daemon, &up), daemon_url(&w, &daemon, &down));

    let run = json(&w, "sync", &up_url, &down_url, &["--divergence=ff-only"]);
    run.assert_code(3);
    let refs = kinds(&run);
    let (kind, status, reason) = &refs["refs/heads/develop"];
    assert_eq!(
        (kind.as_deref(), status.as_str()),
        (Some("forced"), "rejected"),
        "{run}"
    );
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("not in upstream"),
        "{run}"
    );
    let (kind, status, reason) = &refs["refs/heads/main"];
    assert_eq!(
        (kind.as_deref(), status.as_str()),
        (Some("undecidable"), "rejected"),
        "{run}"
    );
    let reason = reason.clone().unwrap_or_default();
    assert!(
        reason.contains("undecidable") && reason.contains("filter"),
        "the reason names the missing capability: {reason:?}{run}"
    );
    let after = w.refs(&down);
    assert_eq!(after["refs/heads/develop"], mirror_commit);
    assert_eq!(after["refs/heads/main"], old_main);

    // Under the default policy the same updates go through, marked as such.
    let run = json(&w, "sync", &up_url, &down_url, &[]);
    run.assert_code(0);
    assert_eq!(kind_of(&run, "refs/heads/main"), "undecidable", "{run}");
    assert_eq!(kind_of(&run, "refs/heads/develop"), "forced", "{run}");
    let mut expected = w.refs(&up);
    expected.retain(|n, _| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"));
    assert_refs_eq(&w.refs(&down), &expected, "the mirror follows upstream");
    w.assert_fsck(&down);
}

/// Over smart HTTP, where each request is its own POST: the acknowledgments round, the
/// `ready` pack and the follow-up requests all go through http-backend.
#[test]
fn over_smart_http_ff_only_decides_exactly() {
    let Fx { w, up, down } = mirrored();
    let mirror_commit = commit_on_mirror(&w, &down, "develop");
    w.git(&up, &["branch", "-f", "main", "main~1"]);
    w.checkout(&up, "feature/b", None);
    w.commit_file(&up, "b.txt", "b over http\n", "b over http");
    w.checkout(&up, "develop", None);
    let server = crate::nginx::Nginx::start(&w);
    let (up_url, down_url) = (
        server.url("v2", "mirror/upstream"),
        server.url("v2", "mirror/empty.git"),
    );

    let run = json(&w, "sync", &up_url, &down_url, &["--divergence=ff-only"]);
    run.assert_code(3);
    let refs = kinds(&run);
    for (name, kind, status) in [
        ("refs/heads/develop", "forced", "rejected"),
        ("refs/heads/main", "forced", "rejected"),
        ("refs/heads/feature/b", "fast-forward", "ok"),
    ] {
        assert_eq!(refs[name].0.as_deref(), Some(kind), "{name}{run}");
        assert_eq!(refs[name].1, status, "{name}{run}");
    }
    let after = w.refs(&down);
    assert_eq!(after["refs/heads/develop"], mirror_commit);
    assert_eq!(after["refs/heads/feature/b"], w.rev(&up, "feature/b"));
    w.assert_fsck(&down);
}

/// The library's ancestry check: a commits-only pack over the cap is refused with a clear
/// reason (not held), and the upstream session stays usable for the next question.
#[tokio::test]
async fn an_oversized_commits_pack_is_undecidable_and_the_session_goes_on() {
    use kalandra::ancestry::{self, Ancestry, Query};
    use kalandra::commit_graph::Limits;
    use kalandra::oid::ObjectId;

    let Fx { w, up, .. } = mirrored();
    let oid = |rev: &str| ObjectId::from_hex(w.rev(&up, rev).as_bytes()).expect("hex");
    let url = kalandra::url::RepoUrl::parse(path_arg(&up)).expect("a path");
    let settings = kalandra::transport::TransportSettings::from_env();
    let mut session = kalandra::relay::connect_upstream(&url, &settings)
        .await
        .expect("upstream answers");
    let far = Query {
        old: oid("main~3"),
        new: oid("main"),
    };
    let tiny = Limits {
        max_pack_bytes: 64,
        max_object_bytes: 1 << 20,
    };
    let answers = ancestry::check(&mut session, std::slice::from_ref(&far), tiny)
        .await
        .expect("the session works");
    match &answers[..] {
        [Ancestry::Undecidable(reason)] => assert!(
            reason.contains("larger than 64 bytes"),
            "the reason names the cap: {reason}"
        ),
        other => panic!("expected undecidable past the cap, got {other:?}"),
    }
    let answers = ancestry::check(&mut session, &[far], Limits::default())
        .await
        .expect("the same session answers again");
    assert_eq!(answers, vec![Ancestry::Ancestor]);
    session.close().await;
}
