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
//! A have that upstream lacks cannot be NEW's ancestor, since upstream
//! holds NEW's whole history. Acknowledgments tell which haves it lacks,
//! once the ones an earlier have hid are asked about again
//! ([`absent_haves`]). That answer needs no pack, and is all that a server
//! without `filter` can give.

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
    let absent = absent_haves(upstream, &wants, haves, first.acked, limits).await?;
    for &i in &open {
        if absent.contains(&queries[i].old) {
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

/// Which of `haves`, sent in that order in a round that acknowledged
/// `acked`, upstream lacks, asking again about the ones a round leaves open.
///
/// A have that upstream does not acknowledge is not always one it lacks:
/// upload-pack marks the parents of each have it has as known to the client
/// and acknowledges no later have it marked (upload-pack.c, `do_got_oid`).
/// So downstream's old `main` sent first hides its parent, the old `topic`,
/// sent next. A have is surely lacking only when no have before it in its
/// round was acknowledged ([`settle_round`]); the others are asked again, in
/// a new round (a v2 `fetch` command starts with no object marked), which
/// settles at least its first have.
async fn absent_haves(
    upstream: &mut UploadPack,
    wants: &[ObjectId],
    mut haves: Vec<ObjectId>,
    mut acked: Vec<ObjectId>,
    limits: Limits,
) -> Result<HashSet<ObjectId>, upload_pack::Error> {
    let mut absent = HashSet::new();
    loop {
        let acked_set: HashSet<ObjectId> = acked.into_iter().collect();
        let round = settle_round(&haves, &acked_set);
        absent.extend(round.absent);
        if round.open.is_empty() {
            return Ok(absent);
        }
        haves = round.open;
        // Acknowledgments only where the server can hold the pack back
        // (`wait-for-done`, which a server without `filter` has, or it
        // would not be asked); otherwise a `ready` brings a commits-only
        // pack, which is read and dropped.
        let acks_only = upstream.fetch_supports("wait-for-done");
        acked = upstream
            .fetch_commits(wants, &haves, false, None, acks_only, limits.max_pack_bytes)
            .await?
            .acked;
    }
}

/// What one negotiation round says about its haves.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    /// Not acknowledged, and no acknowledged have came before: upstream
    /// lacks them.
    absent: Vec<ObjectId>,
    /// Not acknowledged after an acknowledged one, which may have hidden
    /// them: to be asked again.
    open: Vec<ObjectId>,
}

/// Sorts the haves of a round, in the order they were sent, by what their
/// acknowledgments prove. Pure.
fn settle_round(sent: &[ObjectId], acked: &HashSet<ObjectId>) -> Round {
    let mut round = Round::default();
    let mut after_ack = false;
    for have in sent {
        if acked.contains(have) {
            after_ack = true;
        } else if after_ack {
            round.open.push(have.clone());
        } else {
            round.absent.push(have.clone());
        }
    }
    round
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

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:040x}").as_bytes()).expect("hex")
    }

    #[test]
    fn haves_before_the_first_acknowledged_one_are_lacking_the_others_asked_again() {
        let sent = [oid(1), oid(2), oid(3), oid(4), oid(5)];
        let acked: HashSet<ObjectId> = [oid(3), oid(5)].into_iter().collect();
        assert_eq!(
            settle_round(&sent, &acked),
            Round {
                absent: vec![oid(1), oid(2)],
                open: vec![oid(4)],
            }
        );
        // All acknowledged, or none: nothing left to ask.
        let all: HashSet<ObjectId> = sent.iter().cloned().collect();
        assert_eq!(settle_round(&sent, &all), Round::default());
        let none = settle_round(&sent, &HashSet::new());
        assert_eq!(none.absent, sent.to_vec());
        assert!(none.open.is_empty());
    }
}
