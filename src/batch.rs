//! A push split to fit downstream's caps: at most `--max-refs-per-push`
//! ref updates and `--max-pack-bytes` of pack per push, for forges that
//! refuse bigger pushes (GitHub past 2 GiB, git past
//! `receive.maxInputSize`). No local copy is kept, so the split is found
//! from what upstream can say:
//!
//! 1. The ref updates are pushed in batches of at most the ref cap: the
//!    branch upstream's HEAD names first, then the other branches, other
//!    refs, tags, and deletes last. Each batch is a relay of its own, whose
//!    `have`s are everything downstream holds by then, so no batch needs
//!    objects a later one brings.
//! 2. A batch whose pack passes the byte cap is cut off at the cap (the
//!    pack's checksum is never sent, so downstream keeps its refs) and
//!    split in two; a single ref too big for one push is walked.
//! 3. The walk: upstream's commits that downstream lacks are fetched alone
//!    (`filter tree:0`, as the ancestry check does) and ordered parents
//!    first (a depth-first post-order from the tip, first parents first).
//!    Any prefix of that order holds the whole history of each of its
//!    commits within the missing set, so pushing the prefix's tips (the
//!    commits without a child in it) as temporary refs
//!    `refs/kalandra/checkpoint/N` sends exactly the prefix's objects. Each
//!    step adds as many commits as the last step's bytes per commit say
//!    fit in 80% of the cap; a step cut off at the cap is halved.
//! 4. When every ref landed, the temporary refs are deleted. A run that
//!    stopped half-way leaves them, and the next run starts from them: they
//!    are among downstream's refs, so among the `have`s.
//!
//! Convergence: each step that lands adds at least one commit, and a
//! failed step halves, so a walk of N commits takes at most N landed steps
//! and log2 of the step size failed ones per landed one. A single commit
//! whose own objects pass the cap cannot be split: that is an error naming
//! it. The walk holds upstream's commits-only pack for the missing commits
//! in memory while it reads their parents (at most 256 MiB of pack and 1
//! GiB inflated, [`WALK_LIMITS`]), then their ids and parents.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::commit_graph::{self, CommitGraph, Limits, Peeled};
use crate::oid::ObjectId;
use crate::plan::{self, Action, RefUpdate};
use crate::progress::Progress;
use crate::relay::{self, PushOptions, PushResult, Relay};
use crate::session::upload_pack::CommitsPack;
use crate::transport::TransportSettings;
use crate::url::RepoUrl;

/// Kalandra's temporary refs on downstream while a split push runs.
pub const CHECKPOINT_PREFIX: &str = "refs/kalandra/checkpoint/";

/// The default of `--max-refs-per-push`: forges take a thousand ref
/// updates in one push well.
pub const DEFAULT_MAX_REFS: usize = 1000;

/// `--max-pack-bytes github`: GitHub refuses pushes over 2 GiB; this
/// leaves room for the commands and framing around the pack.
pub const GITHUB_PRESET: u64 = 2000 << 20;

/// A size as `--max-pack-bytes` and `max_pack_bytes` take it: bytes, or a
/// number with `k`, `m` or `g` (as git's config reads them) or `KiB`,
/// `MiB`, `GiB`, all powers of 1024; or the preset `github`. Pure.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("github") {
        return Ok(GITHUB_PRESET);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => {
            return Err(format!(
            "{text:?} is not a size: bytes, or a number with k, m, g (KiB, MiB, GiB), or `github`"
        ))
        }
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: it has no number"))?;
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!(
            "{text:?} is below 1 MiB: a split push could not even carry one ordinary commit"
        ));
    }
    Ok(bytes)
}

/// What a walk may hold of upstream's commits: four times the ancestry
/// check's caps, enough for a few million commits of a typical project.
const WALK_LIMITS: Limits = Limits {
    max_pack_bytes: 256 << 20,
    max_object_bytes: 1 << 30,
};

/// A walk's first step takes this fraction of the commits (1/64).
const FIRST_STEP_SHARE: usize = 64;

/// The share of the cap a walk step aims at: room for a step a little
/// denser than the last.
const AIM: f64 = 0.8;

/// Why a push could not be split to fit. No variant holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("commit {commit} alone needs more than --max-pack-bytes ({}): its own objects cannot be split across pushes; raise the cap (or downstream's limit) for this repository", crate::progress::human_bytes(*cap))]
    CommitTooLarge { commit: ObjectId, cap: u64 },
    #[error("{name} needs a pack larger than --max-pack-bytes ({}), and it cannot be split: {reason}", crate::progress::human_bytes(*cap))]
    CannotSplit {
        name: String,
        cap: u64,
        reason: String,
    },
    #[error("invalid {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    #[error("downstream refused Kalandra's temporary ref {name}{}; a split push needs to create refs under {CHECKPOINT_PREFIX}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    CheckpointRefused {
        name: String,
        reason: Option<String>,
    },
}

/// One push of a split sync, as the output lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    /// 1-based, in the order pushed (cut-off tries included).
    pub number: usize,
    /// `refs` (a batch of the planned updates), `checkpoint` (temporary
    /// refs of a walk) or `cleanup` (their deletion).
    pub kind: &'static str,
    /// Ref updates in this push.
    pub refs: usize,
    /// Objects in its pack, when it carried one.
    pub objects: Option<u32>,
    /// Pack bytes relayed (up to the cap for a cut-off try).
    pub bytes: u64,
    /// Cut off at the cap: downstream kept its refs, and the step was
    /// split.
    pub cut: bool,
}

/// The caps of a push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub max_pack_bytes: Option<u64>,
    pub max_refs: Option<usize>,
}

impl Caps {
    /// Whether `updates` may need more than one push.
    pub fn may_split(&self, updates: &[RefUpdate]) -> bool {
        self.max_pack_bytes.is_some() || self.max_refs.is_some_and(|max| updates.len() > max)
    }
}

/// The caps the remote helper pushes with, from `KALANDRA_MAX_PACK_BYTES`
/// and `KALANDRA_MAX_REFS_PER_PUSH` (as `--max-pack-bytes` and
/// `--max-refs-per-push`; `env` reads a variable). Pure.
pub fn caps_from_env(atomic: bool, env: impl Fn(&str) -> Option<String>) -> Result<Caps, Error> {
    let max_pack_bytes = match env("KALANDRA_MAX_PACK_BYTES").filter(|v| !v.trim().is_empty()) {
        Some(text) => Some(parse_size(&text).map_err(|reason| Error::Setting {
            name: "KALANDRA_MAX_PACK_BYTES",
            reason,
        })?),
        None => None,
    };
    let max_refs = match env("KALANDRA_MAX_REFS_PER_PUSH").filter(|v| !v.trim().is_empty()) {
        Some(text) => match text.trim().parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                return Err(Error::Setting {
                    name: "KALANDRA_MAX_REFS_PER_PUSH",
                    reason: format!("{text:?} is not a number of refs (0: no cap)"),
                })
            }
        },
        None => (!atomic).then_some(DEFAULT_MAX_REFS),
    };
    Ok(Caps {
        max_pack_bytes,
        max_refs,
    })
}

/// The order batches go in: HEAD's branch, other branches, other refs,
/// tags, deletes. Pure.
pub fn order(updates: &[RefUpdate], head: Option<&str>) -> Vec<RefUpdate> {
    let rank = |u: &RefUpdate| -> u8 {
        if u.action() == Action::Delete {
            4
        } else if Some(u.name.as_str()) == head {
            0
        } else if u.name.starts_with("refs/heads/") {
            1
        } else if plan::is_tag(&u.name) {
            3
        } else {
            2
        }
    };
    let mut ordered = updates.to_vec();
    ordered.sort_by_key(rank);
    ordered
}

/// `refs` split into batches of at most `max` (all in one when `None`).
/// Pure.
pub fn batches(refs: Vec<RefUpdate>, max: Option<usize>) -> VecDeque<Vec<RefUpdate>> {
    let max = max.unwrap_or(usize::MAX).max(1);
    let mut out = VecDeque::new();
    let mut current = Vec::new();
    for update in refs {
        current.push(update);
        if current.len() == max {
            out.push_back(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push_back(current);
    }
    out
}

/// `tip`'s commits in `graph`, parents first: a depth-first post-order,
/// first parents first. A commit's parents outside `graph` (downstream
/// has them) are not followed. Pure.
pub fn parents_first<'g>(graph: &'g CommitGraph, tip: &ObjectId) -> Vec<&'g ObjectId> {
    // Borrowed from the graph: a walk of a long history holds each id once.
    let mut order = Vec::with_capacity(graph.commit_count());
    let Some(tip) = graph.commit(tip) else {
        return order;
    };
    let mut seen: HashSet<&ObjectId> = HashSet::from([tip]);
    let mut stack: Vec<(&ObjectId, usize)> = vec![(tip, 0)];
    while let Some((commit, next)) = stack.last_mut() {
        let parents = graph.parents(commit).unwrap_or(&[]);
        if let Some(parent) = parents.get(*next) {
            *next += 1;
            if graph.contains_commit(parent) && seen.insert(parent) {
                stack.push((parent, 0));
            }
        } else {
            order.push(*commit);
            stack.pop();
        }
    }
    order
}

/// The tips of a parents-first prefix as it grows: the commits without a
/// child in it.
#[derive(Debug, Clone, Default)]
pub struct Tips {
    tips: BTreeSet<ObjectId>,
}

impl Tips {
    /// Adds `commit`, whose parents (those in the prefix) are in already.
    pub fn add(&mut self, commit: &ObjectId, parents: &[ObjectId]) {
        for parent in parents {
            self.tips.remove(parent);
        }
        self.tips.insert(commit.clone());
    }

    pub fn commits(&self) -> impl Iterator<Item = &ObjectId> {
        self.tips.iter()
    }
}

/// The name of the `i`th checkpoint ref of a walk whose names start at
/// `base`.
fn checkpoint_name(base: usize, i: usize) -> String {
    format!("{CHECKPOINT_PREFIX}{}", base + i)
}

/// The updates that make this walk's checkpoint refs (`current`, name →
/// commit) name `tips`, reusing names from `base` on. Pure.
pub fn checkpoint_updates(
    current: &BTreeMap<String, ObjectId>,
    tips: &[ObjectId],
    base: usize,
) -> Vec<RefUpdate> {
    let mut updates = Vec::new();
    let wanted: BTreeMap<String, &ObjectId> = tips
        .iter()
        .enumerate()
        .map(|(i, tip)| (checkpoint_name(base, i), tip))
        .collect();
    for (name, tip) in &wanted {
        let old = current.get(name);
        if old != Some(*tip) {
            updates.push(RefUpdate {
                name: name.clone(),
                old: old.cloned(),
                new: Some((*tip).clone()),
            });
        }
    }
    for (name, old) in current {
        if !wanted.contains_key(name) {
            updates.push(RefUpdate {
                name: name.clone(),
                old: Some(old.clone()),
                new: None,
            });
        }
    }
    updates
}

/// How many commits the next walk step takes, from the last step's
/// `commits` and `bytes`, growing at most fourfold. Pure.
pub fn next_step(cap: u64, commits: usize, bytes: u64) -> usize {
    let per_commit = (bytes as f64 / commits.max(1) as f64).max(1.0);
    let fit = ((cap as f64 * AIM) / per_commit).floor() as usize;
    fit.clamp(1, commits.saturating_mul(4).max(1))
}

/// Where a split push goes, and how to connect there again.
pub struct Sides<'a> {
    pub upstream: &'a RepoUrl,
    pub downstream: &'a RepoUrl,
    pub transport: &'a TransportSettings,
}

/// Pushes `updates` within `options`' caps, the first push over `first`;
/// the merged result and the steps. `head` is the branch upstream's HEAD
/// names, pushed first.
pub async fn push(
    first: Relay,
    sides: &Sides<'_>,
    updates: &[RefUpdate],
    head: Option<&str>,
    options: &PushOptions,
    progress: &Progress,
) -> Result<(PushResult, Vec<Step>), relay::Error> {
    let caps = Caps {
        max_pack_bytes: options.max_pack_bytes,
        max_refs: options.max_refs_per_push,
    };
    // Checkpoints downstream are a walk a stopped run began: its ref was too
    // big for one push then, and trying it whole again would relay a cap's
    // worth only to be cut. Walk it straight away instead.
    let resuming = caps.max_pack_bytes.is_some()
        && first
            .downstream_refs()
            .iter()
            .any(|(name, _)| name.starts_with(CHECKPOINT_PREFIX));
    let mut run = Run {
        upstream: sides.upstream,
        downstream: sides.downstream,
        transport: sides.transport,
        options,
        progress,
        caps,
        steps: Vec::new(),
        landed: None,
        want_through: first.wants_through().clone(),
        first: Some(first),
        resuming,
    };
    let ordered = order(updates, head);
    // Under a byte cap, HEAD's branch goes alone: in an initial mirror it
    // holds most of the history, and would make any batch it is in too big.
    let alone = match ordered.first() {
        Some(first) if caps.max_pack_bytes.is_some() && Some(first.name.as_str()) == head => 1,
        _ => 0,
    };
    let mut pending = batches(ordered[alone..].to_vec(), caps.max_refs);
    if alone == 1 {
        pending.push_front(ordered[..1].to_vec());
    }
    let merged = match run.all(pending).await {
        Ok(merged) => merged,
        // No later run can do better than a split that cannot be made:
        // leave nothing of this one behind.
        Err(error @ relay::Error::Batch(_)) => {
            if let Err(cleanup) = run.cleanup().await {
                tracing::warn!(
                    "could not delete the temporary refs: {}",
                    relay::chain(&cleanup)
                );
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let mut merged = merged;
    run.cleanup().await?;
    // Every push counts: the checkpoints' packs, and the cut tries' bytes.
    merged.bytes_relayed = run.steps.iter().map(|s| s.bytes).sum();
    merged.pack = run.landed;
    Ok((merged, run.steps))
}

struct Run<'a> {
    upstream: &'a RepoUrl,
    downstream: &'a RepoUrl,
    transport: &'a TransportSettings,
    options: &'a PushOptions,
    progress: &'a Progress,
    caps: Caps,
    steps: Vec<Step>,
    /// The packs of the pushes that landed, together.
    landed: Option<relay::PackStats>,
    /// The sync's own relay, for the first push.
    first: Option<Relay>,
    /// Whether the first single-ref batch is walked without a try first.
    resuming: bool,
    /// What the first relay asks upstream for in place of what (a v0
    /// upstream serves only its tips), for every relay after it.
    want_through: BTreeMap<ObjectId, ObjectId>,
}

impl Run<'_> {
    async fn relay(&mut self) -> Result<Relay, relay::Error> {
        match self.first.take() {
            Some(relay) => Ok(relay),
            None => {
                let mut relay =
                    Relay::connect(self.upstream, self.downstream, self.transport).await?;
                for (object, tip) in &self.want_through {
                    relay.want_through(object.clone(), tip.clone());
                }
                Ok(relay)
            }
        }
    }

    /// Pushes every batch of `pending`, splitting and walking as the caps
    /// need; the merged result of the planned refs' pushes.
    async fn all(
        &mut self,
        mut pending: VecDeque<Vec<RefUpdate>>,
    ) -> Result<PushResult, relay::Error> {
        let mut merged = PushResult::empty();
        let mut walked: HashSet<String> = HashSet::new();
        while let Some(batch) = pending.pop_front() {
            let queued = pending.len();
            if std::mem::take(&mut self.resuming) && batch.len() == 1 {
                tracing::info!("{}: resuming the walk a stopped run began", batch[0].name);
                walked.insert(batch[0].name.clone());
                // Each step connects anew; a connection left idle through
                // the walk's own fetch would only time out.
                if let Some(relay) = self.first.take() {
                    relay.close().await;
                }
                self.walk(&batch[0]).await?;
            }
            match self.try_push(&batch, "refs", queued).await? {
                Some(result) => merged.merge(result),
                None if batch.len() > 1 => {
                    tracing::info!(
                        "{} ref updates need more than the cap: split in two",
                        batch.len()
                    );
                    let mut first = batch;
                    let second = first.split_off(first.len() / 2);
                    pending.push_front(second);
                    pending.push_front(first);
                }
                None => {
                    let update = &batch[0];
                    if !walked.insert(update.name.clone()) {
                        return Err(cannot_split(
                            update,
                            self.caps,
                            "its commits are downstream already, and what is left (an annotated tag, or a tree or blob it names) still passes the cap",
                        ));
                    }
                    self.walk(update).await?;
                    pending.push_front(batch);
                }
            }
        }
        Ok(merged)
    }

    /// One push of `updates`: its result, or `None` when it passed the cap
    /// and was cut. `left` is how many pushes are known to follow, for the
    /// progress line.
    async fn try_push(
        &mut self,
        updates: &[RefUpdate],
        kind: &'static str,
        left: usize,
    ) -> Result<Option<PushResult>, relay::Error> {
        let number = self.steps.len() + 1;
        self.progress
            .phase(&format!("push {number}/{}", number + left));
        let relay = self.relay().await?;
        let pushed = relay
            .push_capped(
                updates,
                self.options,
                relay::Capped {
                    cap: self.caps.max_pack_bytes,
                    search_deltas: kind == "checkpoint",
                },
                self.progress,
            )
            .await;
        match pushed {
            Ok(result) => {
                let step = Step {
                    number,
                    kind,
                    refs: updates.len(),
                    objects: result.pack.map(|p| p.objects),
                    bytes: result.bytes_relayed,
                    cut: false,
                };
                tracing::info!(
                    "push {number} ({kind}): {} ref updates, {} relayed",
                    step.refs,
                    crate::progress::human_bytes(step.bytes)
                );
                self.steps.push(step);
                if let Some(pack) = result.pack {
                    let total = self.landed.get_or_insert(relay::PackStats {
                        objects: 0,
                        bytes: 0,
                    });
                    total.objects += pack.objects;
                    total.bytes += pack.bytes;
                }
                Ok(Some(result))
            }
            Err(relay::Error::PackTooLarge {
                cap,
                objects,
                sent_objects,
            }) => {
                tracing::info!(
                    "push {number} ({kind}): cut at the cap after {sent_objects} of {objects} objects; downstream kept its refs"
                );
                self.steps.push(Step {
                    number,
                    kind,
                    refs: updates.len(),
                    objects: Some(objects),
                    bytes: cap,
                    cut: true,
                });
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Pushes the history of `update`'s new value in steps under the cap,
    /// as temporary refs.
    async fn walk(&mut self, update: &RefUpdate) -> Result<(), relay::Error> {
        let Some(cap) = self.caps.max_pack_bytes else {
            return Ok(());
        };
        let Some(target) = update.new.clone() else {
            return Err(cannot_split(update, self.caps, "a delete carries no pack"));
        };
        let (graph, checkpoints) = self.missing_commits(update, &target).await?;
        let tip = match graph.peel(&target) {
            Peeled::Commit(commit) => commit,
            Peeled::NotACommit { kind } => {
                return Err(cannot_split(
                    update,
                    self.caps,
                    &format!("it names a {kind}, which has no history to walk"),
                ))
            }
            Peeled::Unknown => target.clone(),
        };
        let order = parents_first(&graph, &tip);
        if order.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "{}: {} commits downstream lacks; pushing them in steps under {}",
            update.name,
            order.len(),
            crate::progress::human_bytes(cap)
        );
        // The cut try says little about where the bytes are (a pack lists
        // commits and trees before blobs), so the first step is small and
        // the next ones are sized by its bytes per commit: pushes are cheap,
        // cut tries cost up to a cap each.
        let mut step = (order.len() / FIRST_STEP_SHARE).max(1);
        // Refs a stopped run left stay as they are (they hold history the
        // `have`s already count); this walk's names come after theirs.
        let base = checkpoints
            .keys()
            .filter_map(|name| name.strip_prefix(CHECKPOINT_PREFIX)?.parse::<usize>().ok())
            .max()
            .map_or(0, |last| last + 1);
        let mut current: BTreeMap<String, ObjectId> = BTreeMap::new();
        let mut tips = Tips::default();
        let mut done = 0;
        while done < order.len() {
            let end = (done + step).min(order.len());
            let mut next = tips.clone();
            for commit in &order[done..end] {
                next.add(commit, graph.parents(commit).unwrap_or(&[]));
            }
            let wanted: Vec<ObjectId> = next.commits().cloned().collect();
            let updates = checkpoint_updates(&current, &wanted, base);
            let left = (order.len() - end).div_ceil(step) + 1;
            match self.try_push(&updates, "checkpoint", left).await? {
                Some(result) => {
                    if let Some(refused) = result
                        .refs
                        .iter()
                        .find(|r| r.status != relay::RefStatus::Ok)
                    {
                        return Err(crate::batch::Error::CheckpointRefused {
                            name: refused.name.clone(),
                            reason: refused.reason.clone(),
                        }
                        .into());
                    }
                    current = wanted
                        .iter()
                        .enumerate()
                        .map(|(i, tip)| (checkpoint_name(base, i), tip.clone()))
                        .collect();
                    step = next_step(cap, end - done, result.bytes_relayed);
                    done = end;
                    tips = next;
                }
                None if end - done == 1 => {
                    return Err(Error::CommitTooLarge {
                        commit: order[done].clone(),
                        cap,
                    }
                    .into())
                }
                None => step = ((end - done) / 2).max(1),
            }
        }
        Ok(())
    }

    /// The commits of `target`'s history that downstream lacks, as
    /// upstream sends them alone, and downstream's checkpoint refs now.
    async fn missing_commits(
        &mut self,
        update: &RefUpdate,
        target: &ObjectId,
    ) -> Result<(CommitGraph, BTreeMap<String, ObjectId>), relay::Error> {
        let settings = self.transport;
        let (up, down) = tokio::try_join!(
            relay::connect_upstream(self.upstream, settings),
            relay::connect_downstream(self.downstream, settings)
        )?;
        let refs: Vec<(String, ObjectId)> = down
            .advertisement()
            .refs
            .iter()
            .map(|r| (r.name.clone(), r.oid.clone()))
            .collect();
        down.close().await;
        let checkpoints: BTreeMap<String, ObjectId> = refs
            .iter()
            .filter(|(name, _)| name.starts_with(CHECKPOINT_PREFIX))
            .cloned()
            .collect();
        let mut up = up;
        if !up.is_v2() {
            up.close().await;
            return Err(cannot_split(
                update,
                self.caps,
                "upstream speaks protocol v0, which serves ref tips only, so the commits in between cannot be pushed on their own",
            ));
        }
        if !up.fetch_supports("filter") {
            up.close().await;
            return Err(cannot_split(
                update,
                self.caps,
                "upstream does not offer `filter` for fetch (git: uploadpack.allowFilter), so its commits cannot be listed without their contents",
            ));
        }
        let haves: Vec<ObjectId> = refs
            .into_iter()
            .map(|(_, oid)| oid)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let limits = WALK_LIMITS;
        let fetched = up
            .fetch_commits(
                std::slice::from_ref(target),
                &haves,
                true,
                None,
                false,
                limits.max_pack_bytes,
            )
            .await?;
        let format = up.object_format();
        up.close().await;
        let graph = match fetched.pack {
            Some(CommitsPack::Bytes(bytes)) => CommitGraph::from_pack(&bytes, format, limits),
            Some(CommitsPack::TooLarge { limit }) => {
                Err(commit_graph::Error::PackTooLarge { limit })
            }
            None => Err(commit_graph::Error::Pack("upstream sent no pack".into())),
        }
        .map_err(|e| {
            cannot_split(
                update,
                self.caps,
                &format!("upstream's commits-only pack: {e}"),
            )
        })?;
        Ok((graph, checkpoints))
    }

    /// Deletes every checkpoint ref downstream holds, this run's and any a
    /// stopped run left.
    async fn cleanup(&mut self) -> Result<(), relay::Error> {
        // The sync's own relay may be unused (nothing to push): its view of
        // downstream is current.
        let refs: HashMap<String, ObjectId> = match self.first.take() {
            Some(relay) => {
                let refs = relay.downstream_refs().into_iter().collect();
                relay.close().await;
                refs
            }
            None => {
                let session = relay::connect_downstream(self.downstream, self.transport).await?;
                let refs = session
                    .advertisement()
                    .refs
                    .iter()
                    .map(|r| (r.name.clone(), r.oid.clone()))
                    .collect();
                session.close().await;
                refs
            }
        };
        let deletes: Vec<RefUpdate> = refs
            .into_iter()
            .filter(|(name, _)| name.starts_with(CHECKPOINT_PREFIX))
            .map(|(name, oid)| RefUpdate {
                name,
                old: Some(oid),
                new: None,
            })
            .collect();
        if deletes.is_empty() {
            return Ok(());
        }
        let number = self.steps.len() + 1;
        self.progress.phase(&format!("push {number}/{number}"));
        let result = relay::push_without_pack(
            self.downstream,
            &deletes,
            self.options,
            self.transport,
            self.progress,
        )
        .await?;
        tracing::info!(
            "push {number} (cleanup): {} temporary refs deleted",
            result.count(relay::RefStatus::Ok)
        );
        self.steps.push(Step {
            number,
            kind: "cleanup",
            refs: deletes.len(),
            objects: None,
            bytes: 0,
            cut: false,
        });
        Ok(())
    }
}

fn cannot_split(update: &RefUpdate, caps: Caps, reason: &str) -> relay::Error {
    Error::CannotSplit {
        name: update.name.clone(),
        cap: caps.max_pack_bytes.unwrap_or_default(),
        reason: reason.to_owned(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> ObjectId {
        ObjectId::from_hex(format!("{n:02x}").repeat(20).as_bytes()).expect("hex")
    }

    fn update(name: &str, old: Option<u8>, new: Option<u8>) -> RefUpdate {
        RefUpdate {
            name: name.into(),
            old: old.map(oid),
            new: new.map(oid),
        }
    }

    #[test]
    fn batch_sizes_parse_as_git_reads_them() {
        assert_eq!(parse_size("5m"), Ok(5 << 20));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("GitHub"), Ok(GITHUB_PRESET));
        assert!(parse_size("5MB").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("100k")
            .expect_err("too small")
            .contains("below 1 MiB"));
        assert!(parse_size("99999999999999g")
            .expect_err("too large")
            .contains("too large"));
    }

    #[test]
    fn batch_caps_come_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let none = caps_from_env(false, env(&[])).expect("valid");
        assert_eq!(none.max_pack_bytes, None);
        assert_eq!(none.max_refs, Some(DEFAULT_MAX_REFS));
        assert_eq!(caps_from_env(true, env(&[])).expect("valid").max_refs, None);
        let set = caps_from_env(
            true,
            env(&[
                ("KALANDRA_MAX_PACK_BYTES", "github"),
                ("KALANDRA_MAX_REFS_PER_PUSH", "50"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            (set.max_pack_bytes, set.max_refs),
            (Some(GITHUB_PRESET), Some(50))
        );
        let bad = caps_from_env(false, env(&[("KALANDRA_MAX_REFS_PER_PUSH", "many")]))
            .expect_err("not a number");
        assert!(
            bad.to_string().contains("KALANDRA_MAX_REFS_PER_PUSH"),
            "{bad}"
        );
    }

    #[test]
    fn batch_order_puts_heads_branch_first_and_deletes_last() {
        let updates = [
            update("refs/tags/v1", None, Some(1)),
            update("refs/heads/gone", Some(2), None),
            update("refs/heads/topic", None, Some(3)),
            update("refs/notes/commits", None, Some(4)),
            update("refs/heads/main", None, Some(5)),
        ];
        let names: Vec<String> = order(&updates, Some("refs/heads/main"))
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(
            names,
            [
                "refs/heads/main",
                "refs/heads/topic",
                "refs/notes/commits",
                "refs/tags/v1",
                "refs/heads/gone"
            ]
        );
        let split = batches(order(&updates, None), Some(2));
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(batches(updates.to_vec(), None).len(), 1);
        assert!(!Caps {
            max_pack_bytes: None,
            max_refs: Some(5)
        }
        .may_split(&updates));
        assert!(Caps {
            max_pack_bytes: None,
            max_refs: Some(4)
        }
        .may_split(&updates));
    }

    #[test]
    fn batch_checkpoint_updates_reuse_names() {
        let current = BTreeMap::from([
            (format!("{CHECKPOINT_PREFIX}0"), oid(1)),
            (format!("{CHECKPOINT_PREFIX}1"), oid(2)),
        ]);
        let updates = checkpoint_updates(&current, &[oid(1)], 0);
        assert_eq!(
            updates,
            [update(&format!("{CHECKPOINT_PREFIX}1"), Some(2), None)]
        );
        let updates = checkpoint_updates(&current, &[oid(3), oid(2), oid(4)], 0);
        assert_eq!(
            updates,
            [
                update(&format!("{CHECKPOINT_PREFIX}0"), Some(1), Some(3)),
                update(&format!("{CHECKPOINT_PREFIX}2"), None, Some(4)),
            ]
        );
        assert_eq!(
            checkpoint_updates(&BTreeMap::new(), &[oid(5)], 7),
            [update(&format!("{CHECKPOINT_PREFIX}7"), None, Some(5))]
        );
    }

    #[test]
    fn batch_tips_follow_a_parents_first_prefix() {
        // 1 <- 2 <- 4 (merge of 2 and 3), 1 <- 3
        let mut tips = Tips::default();
        tips.add(&oid(1), &[]);
        tips.add(&oid(2), &[oid(1)]);
        tips.add(&oid(3), &[oid(1)]);
        assert_eq!(
            tips.commits().cloned().collect::<Vec<_>>(),
            [oid(2), oid(3)]
        );
        tips.add(&oid(4), &[oid(2), oid(3)]);
        assert_eq!(tips.commits().cloned().collect::<Vec<_>>(), [oid(4)]);
    }

    #[test]
    fn batch_steps_aim_at_most_of_the_cap_and_grow_slowly() {
        // 10 commits took 1 MiB: 100 KiB each; 80% of 10 MiB fits 80, but a
        // step grows at most fourfold.
        assert_eq!(next_step(10 << 20, 10, 1 << 20), 40);
        assert_eq!(next_step(10 << 20, 100, 1 << 20), 400);
        assert_eq!(next_step(10 << 20, 1000, 20 << 20), 400);
        assert_eq!(next_step(1 << 20, 1, 50 << 20), 1);
    }
}
