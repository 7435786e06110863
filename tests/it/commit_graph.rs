//! `kalandra::commit_graph` on packs written by real git: deltified commits and tags (both
//! OFS_DELTA and REF_DELTA), sha1 and sha256, compared with `git rev-list --parents`.

use std::collections::BTreeMap;
use std::path::Path;

use kalandra::commit_graph::{CommitGraph, Limits, Peeled};
use kalandra::oid::{ObjectFormat, ObjectId};

use crate::harness::World;

/// A repository of `n` commits whose long, nearly equal messages make git store most of them
/// as deltas, with a merge and an annotated tag.
fn deltified_history(w: &World, format: &str, n: usize) -> std::path::PathBuf {
    let repo = w.root().join(format!("history-{format}"));
    w.git(
        w.root(),
        &[
            "init",
            "-q",
            "-b",
            "main",
            &format!("--object-format={format}"),
            repo.to_str().expect("utf-8 path"),
        ],
    );
    let body =
        "A long commit message body that repeats, so that delta compression finds it.\n".repeat(40);
    for i in 0..n {
        if i == n / 2 {
            w.checkout(&repo, "side", Some("HEAD~3"));
            w.commit_file(&repo, "side.txt", "side\n", &format!("side {i}\n\n{body}"));
            w.checkout(&repo, "main", None);
            w.git(
                &repo,
                &[
                    "merge",
                    "-q",
                    "--no-ff",
                    "-m",
                    &format!("merge {i}\n\n{body}"),
                    "side",
                ],
            );
        }
        w.commit_file(
            &repo,
            "f.txt",
            &format!("{i}\n"),
            &format!("commit {i}\n\n{body}"),
        );
    }
    w.git(
        &repo,
        &[
            "tag",
            "-a",
            "-m",
            &format!("release\n\n{body}"),
            "v1",
            "HEAD~2",
        ],
    );
    repo
}

/// Commits and tags only, as a `filter tree:0` fetch sends them.
fn commits_pack(w: &World, repo: &Path, extra: &[&str]) -> Vec<u8> {
    let list = w.git(repo, &["rev-list", "--all"]);
    let mut input = list.replace(' ', "\n");
    input.push('\n');
    input.push_str(&w.rev(repo, "refs/tags/v1"));
    input.push('\n');
    let mut args = vec!["pack-objects", "--stdout", "--window=50", "--depth=50"];
    args.extend_from_slice(extra);
    w.git_with_input(repo, &args, input.as_bytes())
}

fn parents_by_git(w: &World, repo: &Path) -> BTreeMap<String, Vec<String>> {
    w.git(repo, &["rev-list", "--parents", "--all"])
        .lines()
        .map(|line| {
            let mut words = line.split(' ').map(str::to_owned);
            let commit = words.next().expect("a commit");
            (commit, words.collect())
        })
        .collect()
}

fn check(format: &str, object_format: ObjectFormat, extra: &[&str]) {
    let w = World::new();
    let repo = deltified_history(&w, format, 30);
    let pack = commits_pack(&w, &repo, extra);
    let graph = CommitGraph::from_pack(&pack, object_format, Limits::default())
        .unwrap_or_else(|e| panic!("git's pack parses: {e}"));
    let expected = parents_by_git(&w, &repo);
    assert_eq!(graph.commit_count(), expected.len());
    for (commit, parents) in &expected {
        let id = ObjectId::from_hex(commit.as_bytes()).expect("hex");
        let got: Vec<String> = graph
            .parents(&id)
            .unwrap_or_else(|| panic!("{commit} is in the graph"))
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(&got, parents, "parents of {commit}");
    }
    let tag = ObjectId::from_hex(w.rev(&repo, "refs/tags/v1").as_bytes()).expect("hex");
    let target = w.rev(&repo, "refs/tags/v1^{commit}");
    assert_eq!(
        graph.peel(&tag),
        Peeled::Commit(ObjectId::from_hex(target.as_bytes()).expect("hex"))
    );

    // The pack did exercise delta resolution.
    let probe = w.root().join("probe.pack");
    std::fs::write(&probe, &pack).expect("write the probe pack");
    let probe = probe.to_str().expect("utf-8 path");
    w.git(&repo, &["index-pack", probe]);
    let stats = w.git(
        &repo,
        &["verify-pack", "-s", &probe.replace(".pack", ".idx")],
    );
    assert!(
        stats.contains("chain length = 1:"),
        "the pack must hold deltas for this test to mean anything:\n{stats}"
    );

    // Caps are enforced, with a clear error instead of memory.
    let tiny = Limits {
        max_pack_bytes: 1 << 20,
        max_object_bytes: 4096,
    };
    let error = CommitGraph::from_pack(&pack, object_format, tiny).expect_err("over the cap");
    assert!(error.to_string().contains("4096 bytes"), "{error}");
}

#[test]
fn parses_deltified_commits_and_tags_with_ofs_deltas() {
    check("sha1", ObjectFormat::Sha1, &["--delta-base-offset"]);
}

#[test]
fn parses_deltified_commits_and_tags_with_ref_deltas_in_sha256() {
    // Without --delta-base-offset git writes REF_DELTA entries.
    check("sha256", ObjectFormat::Sha256, &[]);
}

#[test]
fn parses_ref_deltas_in_sha1() {
    check("sha1", ObjectFormat::Sha1, &[]);
}

#[test]
fn a_truncated_pack_is_an_error_not_a_partial_graph() {
    let w = World::new();
    let repo = deltified_history(&w, "sha1", 8);
    let pack = commits_pack(&w, &repo, &[]);
    for cut in [12, pack.len() / 2, pack.len() - 1] {
        assert!(
            CommitGraph::from_pack(&pack[..cut], ObjectFormat::Sha1, Limits::default()).is_err(),
            "a pack cut at {cut} of {} bytes must not parse",
            pack.len()
        );
    }
}
