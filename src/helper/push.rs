//! `push` through the pair: DOWN's refs move to what the local refspecs
//! name, and the objects come from UP. The local repository only resolves
//! names; it sends nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::ancestry::{self, Ancestry, NotAncestor};
use crate::commit_graph::Limits;
use crate::helper::command::{MissingCapability, PushReply, PushSpec, Refusal};
use crate::helper::local::LocalRepo;
use crate::helper::options::Options;
use crate::helper::pair::Pair;
use crate::helper::tips::{self, AdvertisedTips};
use crate::oid::ObjectId;
use crate::plan::RefUpdate;
use crate::progress::Progress;
use crate::relay::{self, PushOptions, RefStatus, Relay};
use crate::session::upload_pack;

/// A push that could not run at all (a ref refused is not an error: it
/// gets its reply).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Relay(#[from] relay::Error),
    /// Nothing was pushed: DOWN lacks what the push asked for.
    #[error(transparent)]
    Unsupported(#[from] MissingCapability),
}

/// What was decided for one refspec before anything is pushed.
enum Decision {
    Push(RefUpdate),
    Reply(PushReply),
}

/// Runs one push batch and returns a reply per refspec, in order.
pub async fn push(
    pair: &Pair,
    specs: &[PushSpec],
    options: &Options,
    progress: &Progress,
) -> Result<Vec<(String, PushReply)>, Error> {
    // Every question for upstream goes over this session's connection, never
    // a second one beside it: some servers (dulwich's TCP server) serve one
    // connection at a time and would leave a second waiting until the first
    // closes.
    let mut relay = Relay::connect(&pair.upstream, &pair.downstream, &pair.settings).await?;
    // As git's send-pack, before anything else and even for --dry-run:
    // receive-pack would quietly ignore what it did not advertise.
    let asked = [
        (options.atomic, MissingCapability::Atomic),
        (
            !options.push_options.is_empty(),
            MissingCapability::PushOptions,
        ),
    ];
    if let Some(&(_, missing)) = asked
        .iter()
        .find(|(asked, missing)| *asked && !relay.downstream_supports(missing.capability()))
    {
        relay.close().await;
        return Err(missing.into());
    }
    let down: BTreeMap<String, ObjectId> = relay.downstream_refs().into_iter().collect();
    let down_has: BTreeSet<ObjectId> = down.values().cloned().collect();
    let local = LocalRepo;

    // First pass: what git itself would check, from names alone.
    let mut decisions = Vec::with_capacity(specs.len());
    let mut needs_ancestry = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let old = down.get(&spec.dst).cloned();
        let leased = options.lease(&spec.dst);
        if let Some(expected) = leased {
            if expected.as_ref() != old.as_ref() {
                decisions.push(Decision::Reply(PushReply::Refused(Refusal::StaleInfo)));
                continue;
            }
        }
        // A lease that holds allows a non-fast-forward, as --force-with-lease does.
        let forced = spec.force || leased.is_some();
        if spec.is_delete() {
            decisions.push(match old {
                Some(old) => Decision::Push(RefUpdate {
                    name: spec.dst.clone(),
                    old: Some(old),
                    new: None,
                }),
                None => Decision::Reply(PushReply::UpToDate),
            });
            continue;
        }
        let Some(new) = local.resolve(&spec.src).await else {
            decisions.push(Decision::Reply(PushReply::Error(format!(
                "cannot resolve {:?} in the local repository",
                spec.src
            ))));
            continue;
        };
        match &old {
            Some(old) if *old == new => {
                decisions.push(Decision::Reply(PushReply::UpToDate));
                continue;
            }
            Some(_) if !forced && spec.dst.starts_with("refs/tags/") => {
                decisions.push(Decision::Reply(PushReply::Refused(Refusal::AlreadyExists)));
                continue;
            }
            Some(_) if !forced => needs_ancestry.push(i),
            _ => {}
        }
        decisions.push(Decision::Push(RefUpdate {
            name: spec.dst.clone(),
            old,
            new: Some(new),
        }));
    }

    // Second pass: every new object must exist on UP, unless DOWN has it.
    let wanted: BTreeSet<ObjectId> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Push(u) => u.new.clone(),
            Decision::Reply(_) => None,
        })
        .filter(|oid| !down_has.contains(oid))
        .collect();
    if relay.upstream().is_v2() {
        let missing;
        (relay, missing) = missing_upstream(pair, relay, wanted.into_iter().collect()).await?;
        for decision in &mut decisions {
            if let Decision::Push(RefUpdate { new: Some(new), .. }) = decision {
                if missing.contains(new) {
                    *decision = Decision::Reply(PushReply::Error(format!(
                        "object {new} is not in upstream {}; push it to UP first",
                        pair.upstream
                    )));
                }
            }
        }
    } else {
        // v0 serves only advertised tips: each object through a tip that
        // reaches it ([`tips`]), or the ref is refused here, before
        // downstream hears anything.
        let listed = relay
            .upstream()
            .list_refs(&[String::new()])
            .await
            .map_err(relay::Error::from)?;
        let advertised = AdvertisedTips::new(listed.refs, listed.peeled);
        for decision in &mut decisions {
            let Decision::Push(RefUpdate {
                name,
                new: Some(new),
                ..
            }) = decision
            else {
                continue;
            };
            if !wanted.contains(new) {
                continue;
            }
            match tips::tip_reaching(&advertised, &local, new, name).await {
                Some(tip) => {
                    if tip != *new {
                        tracing::debug!("asking v0 upstream for {tip}, which reaches {new}");
                    }
                    relay.want_through(new.clone(), tip);
                }
                None => {
                    *decision = Decision::Reply(PushReply::Error(format!(
                        "upstream {} speaks protocol v0, which serves only the tips of its \
                         refs, and no tip it advertises reaches {new} in the local \
                         repository; push a ref naming it to UP first, or fetch UP's refs \
                         here so that the tip that holds it is known",
                        pair.upstream
                    )));
                }
            }
        }
    }

    // Third pass: non-forced updates must be fast-forwards.
    for i in needs_ancestry {
        let Decision::Push(RefUpdate {
            name,
            old: Some(old),
            new: Some(new),
        }) = &decisions[i]
        else {
            continue;
        };
        if let Some(reply) = fast_forward_refusal(pair, &mut relay, &local, name, old, new).await? {
            decisions[i] = Decision::Reply(reply);
        }
    }

    let refused = decisions
        .iter()
        .any(|d| matches!(d, Decision::Reply(r) if !r.is_success()));
    if options.atomic && refused {
        relay.close().await;
        return Ok(specs
            .iter()
            .zip(decisions)
            .map(|(spec, d)| {
                let reply = match d {
                    Decision::Reply(reply) if !reply.is_success() => reply,
                    _ => PushReply::Error("atomic push failed".into()),
                };
                (spec.dst.clone(), reply)
            })
            .collect());
    }

    let updates: Vec<RefUpdate> = decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Push(u) => Some(u.clone()),
            Decision::Reply(_) => None,
        })
        .collect();
    let results: BTreeMap<String, PushReply> = if options.dry_run || updates.is_empty() {
        relay.close().await;
        updates
            .iter()
            .map(|u| (u.name.clone(), PushReply::Ok))
            .collect()
    } else {
        let caps = crate::batch::caps_from_env(options.atomic, |name| std::env::var(name).ok())
            .map_err(relay::Error::from)?;
        let push_options = PushOptions {
            atomic: options.atomic,
            progress: options.progress,
            push_options: options.push_options.clone(),
            max_pack_bytes: caps.max_pack_bytes,
            max_refs_per_push: caps.max_refs,
        };
        let sides = crate::batch::Sides {
            upstream: &pair.upstream,
            downstream: &pair.downstream,
            transport: &pair.settings,
        };
        // The LFS objects the pushed commits point to go first, from UP's
        // LFS server to DOWN's, as `kalandra sync` sends them.
        let lfs = crate::lfs::mode_from_env(|name| std::env::var(name).ok())
            .map_err(relay::Error::from)?;
        let mut relay = relay;
        if lfs != crate::lfs::Mode::Off {
            let given = crate::lfs::Endpoints::default();
            let report =
                relay::lfs_step(&mut relay, &sides, &updates, (lfs, &given, None), progress)
                    .await?;
            if report.objects > 0 {
                tracing::info!("{} LFS objects copied", report.objects);
            }
        }
        // A push too big for downstream's caps goes in steps, as `kalandra
        // sync --max-pack-bytes` does.
        let result = if caps.may_split(&updates) {
            let (result, steps) =
                crate::batch::push(relay, &sides, &updates, None, &push_options, progress).await?;
            if steps.len() > 1 {
                tracing::info!("pushed in {} steps", steps.len());
            }
            result
        } else {
            relay.push(&updates, &push_options, progress).await?
        };
        result
            .refs
            .into_iter()
            .map(|r| {
                let reply = match r.status {
                    RefStatus::Ok | RefStatus::Planned | RefStatus::Kept => PushReply::Ok,
                    RefStatus::Rejected | RefStatus::Unknown => {
                        PushReply::Error(r.reason.unwrap_or_else(|| "rejected".into()))
                    }
                };
                (r.name, reply)
            })
            .collect()
    };
    Ok(specs
        .iter()
        .zip(decisions)
        .map(|(spec, d)| {
            let reply = match d {
                Decision::Reply(reply) => reply,
                Decision::Push(u) => results
                    .get(&u.name)
                    .cloned()
                    .unwrap_or_else(|| PushReply::Error("no result from downstream".into())),
            };
            (spec.dst.clone(), reply)
        })
        .collect())
}

/// Which of `wants` upstream (v2) does not have, asked over the relay's own
/// session: each want is also sent as a `have`, so that upload-pack has
/// something to acknowledge, and with `wait-for-done` it sends no pack. The
/// session stays usable, unless a want is missing: upload-pack then fails
/// with `not our ref <oid>`, naming exactly one, and ends. That one is set
/// aside, the relay closed and both sides connected anew (so no server ever
/// has two of the helper's connections open at once), and the rest asked
/// again.
///
/// A server without `wait-for-done` (git before 2.32) would send a pack
/// instead; it is asked on a connection of its own beside the relay's
/// ([`UploadPack::negotiate`] drops that connection instead of reading the
/// pack).
///
/// [`UploadPack::negotiate`]: crate::session::upload_pack::UploadPack::negotiate
async fn missing_upstream(
    pair: &Pair,
    mut relay: Relay,
    mut wants: Vec<ObjectId>,
) -> Result<(Relay, BTreeSet<ObjectId>), relay::Error> {
    let mut missing = BTreeSet::new();
    while !wants.is_empty() {
        let upstream = relay.upstream();
        let result = if upstream.fetch_supports("wait-for-done") {
            upstream
                .fetch_commits(&wants, &wants, false, None, true, 0)
                .await
                .map(|_| ())
        } else {
            let beside = relay::connect_upstream(&pair.upstream, &pair.settings).await?;
            beside.negotiate(&wants, &[]).await.map(|_| ())
        };
        match result {
            Ok(()) => break,
            Err(upload_pack::Error::Server { message, .. }) => {
                let named = wants
                    .iter()
                    .position(|w| message.contains("not our ref") && message.contains(w.as_str()));
                let Some(i) = named else {
                    relay.close().await;
                    return Err(upload_pack::Error::Server {
                        repo: pair.upstream.to_string(),
                        message,
                    }
                    .into());
                };
                missing.insert(wants.remove(i));
                if relay.upstream().fetch_supports("wait-for-done") {
                    relay.close().await;
                    relay =
                        Relay::connect(&pair.upstream, &pair.downstream, &pair.settings).await?;
                }
            }
            Err(other) => {
                relay.close().await;
                return Err(other.into());
            }
        }
    }
    Ok((relay, missing))
}

/// Why a non-forced update of `dst` from `old` to `new` must be refused, if
/// it must. The local repository answers "yes, a fast-forward" when it can.
/// Otherwise a v2 upstream, which has `new`'s whole history (a shallow CI
/// checkout usually lacks `old`, and may lack the commits between them),
/// decides from its commits ([`crate::ancestry`]), never from upload-pack's
/// `ready`. A v0 upstream cannot send commits alone, so then only the local
/// repository can decide ([`local_refusal`]).
async fn fast_forward_refusal(
    pair: &Pair,
    relay: &mut Relay,
    local: &LocalRepo,
    dst: &str,
    old: &ObjectId,
    new: &ObjectId,
) -> Result<Option<PushReply>, relay::Error> {
    let here = local.is_ancestor(old, new).await;
    if here == Some(true) {
        return Ok(None);
    }
    let undecidable = |reason: &str| {
        PushReply::Error(format!(
            "cannot tell whether downstream's {dst} ({old}) is an ancestor of {new}: {reason}; \
             push with --force (or --force-with-lease) to overwrite it"
        ))
    };
    if !relay.upstream().is_v2() {
        let reason = format!(
            "upstream {} speaks protocol v0, which cannot send commits alone, and this \
             shallow repository's history does not reach it (git fetch --deepen or \
             --unshallow fetches more)",
            pair.upstream
        );
        return Ok(Some(
            local_refusal(local, here, old, new)
                .await
                .unwrap_or_else(|| undecidable(&reason)),
        ));
    }
    let query = ancestry::Query {
        old: old.clone(),
        new: new.clone(),
    };
    let answers = ancestry::check(relay.upstream(), &[query], Limits::default()).await?;
    // git's own words: `fetch first` when the old object is unknown here,
    // `non-fast forward` when it is known; git adds its usual hints.
    let behind = if local.object_type(old).await.is_some() {
        Refusal::NonFastForward
    } else {
        Refusal::FetchFirst
    };
    Ok(match answers.into_iter().next() {
        Some(Ancestry::Ancestor) => None,
        Some(Ancestry::NotAncestor(NotAncestor::NotACommit)) => {
            Some(PushReply::Refused(Refusal::NeedsForce))
        }
        Some(Ancestry::NotAncestor(_)) | None => Some(PushReply::Refused(behind)),
        Some(Ancestry::Undecidable(reason)) => Some(undecidable(&reason)),
    })
}

/// The refusal the local repository proves on its own, as git's push
/// decides it (`set_ref_status_for_push`), or `None` when it cannot. `here`
/// is its answer to "is `old` an ancestor of `new`" (never `Some(false)` in
/// a shallow repository).
///
/// A shallow history still proves "not an ancestor" when every cut in
/// `new`'s history (a commit whose parents the clone left out) is itself an
/// ancestor of `old`. A path of parents from `new` down to `old` either stays
/// in the history here, where the walk did not find `old`, or leaves it
/// through a cut, below which `old` would then lie; but a cut below `old`
/// cannot also be above it (history has no cycles, and a cut is not `old`,
/// which the walk would have met). That is the usual rejected push from a
/// CI checkout: downstream moved on from the commit the clone started at.
async fn local_refusal(
    local: &LocalRepo,
    here: Option<bool>,
    old: &ObjectId,
    new: &ObjectId,
) -> Option<PushReply> {
    let non_fast_forward = Some(PushReply::Refused(Refusal::NonFastForward));
    if here == Some(false) {
        return non_fast_forward;
    }
    let shallow = local.is_shallow().await;
    if local.object_type(old).await.is_none() {
        // A complete history that lacks `old` does not contain it.
        return (!shallow).then_some(PushReply::Refused(Refusal::FetchFirst));
    }
    if !local.is_commitish(old).await || !local.is_commitish(new).await {
        return Some(PushReply::Refused(Refusal::NeedsForce));
    }
    if local.history_here_contains(new, old).await != Some(false) {
        return None;
    }
    let cuts = local.shallow_cuts_of(new).await?;
    for cut in &cuts {
        if local.is_ancestor(cut, old).await != Some(true) {
            return None;
        }
    }
    non_fast_forward
}
