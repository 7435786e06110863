//! Is OLD an ancestor of NEW, as upstream sees them? Decided from
//! upstream's commits, without a local copy.
//!
//! upload-pack's `ready` is no answer: it also comes back when NEW is OLD's
//! parent or sibling, because upload-pack marks a `have`'s parents as
//! common too. It says a pack can be made, nothing about ancestry.
//!
//! The question is answered with a commits-only fetch (`filter tree:0`, not
//! thin): `want NEW`, `have OLD`. Such a pack P holds exactly the commits
//! reachable from NEW that are not reachable from OLD. Then:
//!
//! > OLD is an ancestor of NEW exactly when NEW == OLD, or OLD is a parent
//! > of a commit in P.
//!
//! If OLD is an ancestor of NEW, take a path of parents from NEW down to
//! OLD. Every commit on it other than OLD is a descendant of OLD, so it is
//! not reachable from OLD (history has no cycles) and is in P; the last one
//! of them has OLD as a parent. Conversely, a commit in P is reachable from
//! NEW, so if OLD is its parent, OLD is reachable from NEW.
//!
//! With several haves at once (one request for many refs), P lacks the
//! history of every have, so a path may leave P through another ref's old
//! commit. Finding OLD as a parent still proves ancestry; not finding it
//! proves nothing, and that ref is asked about on its own.
//!
//! Annotated tags are peeled as git's push does (`ref_newer`): NEW within
//! P, and OLD with a second tiny fetch (`want OLD`, `deepen 1`), since
//! upload-pack peels a tag `have` to its commit before excluding history.
//! A side that peels to a tree or blob is not a commit: never a fast-forward.
//!
//! A have that upstream does not acknowledge is not in upstream, and
//! since upstream holds NEW's whole history, it cannot be NEW's ancestor.
//! That answer needs no pack, and is all that a server without `filter`
//! can give.

use std::collections::{BTreeSet, HashSet};

use crate::commit_graph::{self, CommitGraph, Limits, Peeled};
use crate::oid::ObjectId;
use crate::session::upload_pack::{self, CommitsPack, UploadPack};

/// Why OLD is not an ancestor of NEW.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAncestor {
    /// Upstream does not have OLD (a commit made downstream only).
    OldNotInUpstream,
    /// Both are in upstream and NEW's history does not reach OLD.
    Diverged,
    /// OLD or NEW peels to a tree or blob.
    NotACommit,
}

/// The answer for one (OLD, NEW) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ancestry {
    Ancestor,
    NotAncestor(NotAncestor),
    /// Nothing available decides; the reason names what is missing.
    Undecidable(String),
}

/// One question: is `old` an ancestor of `new`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub old: ObjectId,
    pub new: ObjectId,
}

/// Answers every query over one upstream session, which stays usable.
/// Transport and protocol failures are errors; a question that upstream
/// cannot answer (no `filter`, protocol v0, a pack past the caps) is an
/// [`Ancestry::Undecidable`] answer.
pub async fn check(
    upstream: &mut UploadPack,
    queries: &[Query],
    limits: Limits,
) -> Result<Vec<Ancestry>, upload_pack::Error> {
    let mut answers: Vec<Option<Ancestry>> = queries
        .iter()
        .map(|q| (q.old == q.new).then_some(Ancestry::Ancestor))
        .collect();
    let open: Vec<usize> = (0..queries.len())
        .filter(|&i| answers[i].is_none())
        .collect();
    if open.is_empty() {
        return Ok(finish(answers));
    }
    if !upstream.is_v2() {
        return Ok(fill(
            answers,
            "upstream speaks protocol v0, which cannot fetch commits only".into(),
        ));
    }
    let filter = upstream.fetch_supports("filter");
    if !filter && !upstream.fetch_supports("wait-for-done") {
        return Ok(fill(answers, no_filter_reason()));
    }

    let wants = distinct(open.iter().map(|&i| &queries[i].new));
    let haves = distinct(open.iter().map(|&i| &queries[i].old));
    let first = upstream
        .fetch_commits(&wants, &haves, false, None, !filter, limits.max_pack_bytes)
        .await?;
    let acked: HashSet<ObjectId> = first.acked.into_iter().collect();
    for &i in &open {
        if !acked.contains(&queries[i].old) {
            answers[i] = Some(Ancestry::NotAncestor(NotAncestor::OldNotInUpstream));
        }
    }
    let open: Vec<usize> = open.into_iter().filter(|&i| answers[i].is_none()).collect();
    if open.is_empty() {
        return Ok(finish(answers));
    }
    if !filter {
        return Ok(fill(answers, no_filter_reason()));
    }

    // The batch: proves the common case (fast-forwards) in one round trip.
    let pack = match first.pack {
        Some(pack) => Some(pack),
        None => {
            let wants = distinct(open.iter().map(|&i| &queries[i].new));
            let haves = distinct(open.iter().map(|&i| &queries[i].old));
            upstream
                .fetch_commits(&wants, &haves, true, None, false, limits.max_pack_bytes)
                .await?
                .pack
        }
    };
    if let Ok(graph) = parse(pack, upstream, limits) {
        for &i in &open {
            let q = &queries[i];
            if let Peeled::Commit(tip) = graph.peel(&q.new) {
                if graph.contains_commit(&tip) && reaches_as_parent(&graph, &tip, &q.old) {
                    answers[i] = Some(Ancestry::Ancestor);
                }
            }
        }
    }

    // The rest, one by one: peel OLD, then `want NEW` / `have OLD`.
    for i in open {
        if answers[i].is_none() {
            answers[i] = Some(check_one(upstream, &queries[i], limits).await?);
        }
    }
    Ok(finish(answers))
}

async fn check_one(
    upstream: &mut UploadPack,
    query: &Query,
    limits: Limits,
) -> Result<Ancestry, upload_pack::Error> {
    let old = std::slice::from_ref(&query.old);
    let peel = upstream
        .fetch_commits(old, &[], true, Some(1), false, limits.max_pack_bytes)
        .await?;
    let old_commit = match parse(peel.pack, upstream, limits) {
        Ok(graph) => match graph.peel(&query.old) {
            Peeled::Commit(commit) => commit,
            Peeled::NotACommit { .. } => return Ok(Ancestry::NotAncestor(NotAncestor::NotACommit)),
            Peeled::Unknown => {
                return Ok(Ancestry::Undecidable(format!(
                    "upstream did not send {} when asked for it",
                    query.old
                )))
            }
        },
        Err(reason) => return Ok(Ancestry::Undecidable(reason)),
    };
    let new = std::slice::from_ref(&query.new);
    let have = std::slice::from_ref(&old_commit);
    let fetched = upstream
        .fetch_commits(new, have, true, None, false, limits.max_pack_bytes)
        .await?;
    let graph = match parse(fetched.pack, upstream, limits) {
        Ok(graph) => graph,
        Err(reason) => return Ok(Ancestry::Undecidable(reason)),
    };
    Ok(match graph.peel(&query.new) {
        Peeled::NotACommit { .. } => Ancestry::NotAncestor(NotAncestor::NotACommit),
        Peeled::Commit(tip) if tip == old_commit => Ancestry::Ancestor,
        Peeled::Commit(tip) if graph.contains_commit(&tip) => {
            if reaches_as_parent(&graph, &tip, &old_commit) {
                Ancestry::Ancestor
            } else {
                Ancestry::NotAncestor(NotAncestor::Diverged)
            }
        }
        // NEW's commit is outside P, so OLD's history holds it: NEW is
        // behind OLD (a rewind), or NEW is a tag whose commit that is.
        Peeled::Commit(_) | Peeled::Unknown => Ancestry::NotAncestor(NotAncestor::Diverged),
    })
}

/// Whether a walk from `tip` through the commits of `graph` meets a commit
/// whose parent is `old`.
fn reaches_as_parent(graph: &CommitGraph, tip: &ObjectId, old: &ObjectId) -> bool {
    let mut seen: HashSet<&ObjectId> = HashSet::new();
    let mut stack = vec![tip];
    while let Some(commit) = stack.pop() {
        if !seen.insert(commit) {
            continue;
        }
        let Some(parents) = graph.parents(commit) else {
            continue;
        };
        for parent in parents {
            if parent == old {
                return true;
            }
            if graph.contains_commit(parent) {
                stack.push(parent);
            }
        }
    }
    false
}

fn parse(
    pack: Option<CommitsPack>,
    upstream: &UploadPack,
    limits: Limits,
) -> Result<CommitGraph, String> {
    let describe = |e: commit_graph::Error| format!("upstream's commits-only pack: {e}");
    match pack {
        Some(CommitsPack::Bytes(bytes)) => {
            CommitGraph::from_pack(&bytes, upstream.object_format(), limits).map_err(describe)
        }
        Some(CommitsPack::TooLarge { limit }) => {
            Err(describe(commit_graph::Error::PackTooLarge { limit }))
        }
        None => Err("upstream sent no pack".into()),
    }
}

fn no_filter_reason() -> String {
    "upstream does not offer `filter` for fetch (git: uploadpack.allowFilter), \
     so its commits cannot be fetched alone"
        .into()
}

fn distinct<'a>(oids: impl Iterator<Item = &'a ObjectId>) -> Vec<ObjectId> {
    oids.cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

fn fill(answers: Vec<Option<Ancestry>>, reason: String) -> Vec<Ancestry> {
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Ancestry::Undecidable(reason.clone())))
        .collect()
}

fn finish(answers: Vec<Option<Ancestry>>) -> Vec<Ancestry> {
    fill(answers, "not asked".into())
}
