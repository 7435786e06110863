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
    let relay = Relay::connect(&pair.upstream, &pair.downstream, &pair.settings).await?;
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
    let missing = missing_upstream(pair, wanted.into_iter().collect()).await?;
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

    // Third pass: non-forced updates must be fast-forwards.
    for i in needs_ancestry {
        let Decision::Push(RefUpdate {
            old: Some(old),
            new: Some(new),
            ..
        }) = &decisions[i]
        else {
            continue;
        };
        if let Some(refusal) = fast_forward_refusal(pair, &local, old, new).await? {
            decisions[i] = Decision::Reply(PushReply::Refused(refusal));
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
        for message in &result.downstream_messages {
            if result.rejected() > 0 {
                eprintln!("downstream: {}", crate::terminal::escape(message));
            }
        }
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

/// Which of `wants` upstream does not have. Each round asks upstream for
/// all remaining wants without `done`; a missing one makes upload-pack
/// fail with `not our ref <oid>`, naming exactly one, so it is set aside
/// and the rest asked again.
async fn missing_upstream(
    pair: &Pair,
    mut wants: Vec<ObjectId>,
) -> Result<BTreeSet<ObjectId>, relay::Error> {
    let mut missing = BTreeSet::new();
    while !wants.is_empty() {
        let upstream = relay::connect_upstream(&pair.upstream, &pair.settings).await?;
        if !upstream.is_v2() {
            // v0 cannot be asked; the fetch itself will report a missing object.
            upstream.close().await;
            break;
        }
        match upstream.negotiate(&wants, &[]).await {
            Ok(_) => break,
            Err(upload_pack::Error::Server { message, .. }) => {
                let named = wants
                    .iter()
                    .position(|w| message.contains("not our ref") && message.contains(w.as_str()));
                match named {
                    Some(i) => {
                        missing.insert(wants.remove(i));
                    }
                    None => {
                        return Err(upload_pack::Error::Server {
                            repo: pair.upstream.to_string(),
                            message,
                        }
                        .into())
                    }
                }
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(missing)
}

/// Why a non-forced update from `old` to `new` must be refused, if it must.
/// The local repository answers "yes, a fast-forward" when it can; anything
/// else is asked of upstream, which has `new`'s whole history (a shallow CI
/// checkout usually lacks `old`, and may lack the commits between them).
/// Upstream's answer comes from its commits ([`crate::ancestry`]), never from
/// upload-pack's `ready`.
async fn fast_forward_refusal(
    pair: &Pair,
    local: &LocalRepo,
    old: &ObjectId,
    new: &ObjectId,
) -> Result<Option<Refusal>, relay::Error> {
    if local.is_ancestor(old, new).await == Some(true) {
        return Ok(None);
    }
    let mut upstream = relay::connect_upstream(&pair.upstream, &pair.settings).await?;
    let query = ancestry::Query {
        old: old.clone(),
        new: new.clone(),
    };
    let answers = ancestry::check(&mut upstream, &[query], Limits::default()).await;
    upstream.close().await;
    let answer = answers?.into_iter().next();
    // git's own words: `fetch first` when the old object is unknown here,
    // `non-fast forward` when it is known; git adds its usual hints.
    let behind = if local.object_type(old).await.is_some() {
        Refusal::NonFastForward
    } else {
        Refusal::FetchFirst
    };
    Ok(match answer {
        Some(Ancestry::Ancestor) => None,
        Some(Ancestry::NotAncestor(NotAncestor::NotACommit)) => Some(Refusal::NeedsForce),
        Some(Ancestry::NotAncestor(_)) => Some(behind),
        Some(Ancestry::Undecidable(reason)) => {
            eprintln!(
                "kalandra: cannot tell whether {old} is an ancestor of {new}: {reason}; \
                 refusing as git would without that knowledge (use --force to overwrite)"
            );
            Some(behind)
        }
        None => Some(behind),
    })
}
