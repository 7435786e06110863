//! The relay: upstream's pack streamed into downstream as it arrives.
//!
//! [`Relay::connect`] opens both sides and reads both advertisements;
//! [`Relay::push`] fetches exactly what downstream lacks and streams it into
//! receive-pack behind the ref-update commands; [`sync`] puts planning in
//! between. Nothing touches the local disk, and memory is bounded by one
//! pkt-line per side.

use std::collections::BTreeSet;
use std::time::Instant;

use crate::ancestry::{self, Ancestry, NotAncestor};
use crate::commit_graph::Limits;
use crate::oid::{ObjectFormat, ObjectId};
use crate::plan::{self, Action, PlanOptions, RefUpdate, UpdateKind, Verdict};
use crate::progress::{Progress, Side};
use crate::session::pack_stream::PackStream;
use crate::session::receive_pack::{self, PackWriter, PushArgs, ReceivePack};
use crate::session::upload_pack::{self, FetchArgs, UploadPack, UpstreamRefs};
use crate::transport::{self, Activity, ConnectOptions, Link, Service, TransportSettings};
use crate::url::RepoUrl;
use crate::wire::commands::Command;
use crate::wire::report::RefResult;

/// A sync or push failed as a whole (a rejected ref is not an error: it is
/// reported in the [`PushResult`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to {side} {repo}", side = side.name())]
    Connect {
        side: Side,
        repo: String,
        #[source]
        source: transport::Error,
    },
    #[error(transparent)]
    Upstream(#[from] upload_pack::Error),
    #[error(transparent)]
    Downstream(#[from] receive_pack::Error),
    #[error("upstream uses {upstream} object ids but downstream uses {downstream}; a mirror needs both sides in the same object format")]
    ObjectFormatMismatch {
        upstream: ObjectFormat,
        downstream: ObjectFormat,
    },
    #[error("refusing the sync")]
    Refused(#[from] plan::Error),
    #[error("the transfer was aborted, so downstream kept its refs")]
    Aborted(#[source] Box<Error>),
    #[error("upstream sent {found:?} where a pack (\"PACK\", version 2 or 3) should start")]
    NotAPack { found: String },
    #[error("downstream {repo} could not store the pack: {message}")]
    Unpack { repo: String, message: String },
    #[error("downstream {repo} does not support {what} (it does not advertise `{capability}`); nothing was pushed")]
    Unsupported {
        repo: String,
        what: &'static str,
        capability: &'static str,
    },
}

/// How a ref ended up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RefStatus {
    Ok,
    Rejected,
    Planned,
    /// Left as downstream has it (`--divergence=keep`).
    Kept,
}

/// One ref's line in a result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefOutcome {
    pub name: String,
    pub action: Action,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
    /// How the update relates to downstream's old value: null for creates
    /// and deletes, and for the remote helper's pushes.
    pub kind: Option<UpdateKind>,
    pub status: RefStatus,
    pub reason: Option<String>,
}

impl RefOutcome {
    fn new(update: &RefUpdate, status: RefStatus, reason: Option<String>) -> Self {
        Self {
            name: update.name.clone(),
            action: update.action(),
            old: update.old.clone(),
            new: update.new.clone(),
            kind: None,
            status,
            reason,
        }
    }
}

/// What the pack from upstream held.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PackStats {
    pub objects: u32,
    pub bytes: u64,
}

/// The result of a push (or of a plan, with every ref `planned`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushResult {
    pub refs: Vec<RefOutcome>,
    /// `None` when nothing was fetched from upstream.
    pub pack: Option<PackStats>,
    /// Pack bytes written to downstream (the empty pack counts).
    pub bytes_relayed: u64,
    /// What downstream said on its progress band: hook output, and the real
    /// reason when an atomic push fails.
    pub downstream_messages: Vec<String>,
    /// How many ref updates were sent to downstream.
    #[serde(skip)]
    pub pushed: usize,
}

/// How much of a push landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// No ref was rejected.
    Complete,
    /// Some refs were rejected (by downstream or by the divergence rules);
    /// every other one landed.
    Partial,
    /// Downstream was asked to update refs and none of them landed.
    NothingLanded,
}

impl PushResult {
    pub fn rejected(&self) -> usize {
        self.count(RefStatus::Rejected)
    }

    pub fn count(&self, status: RefStatus) -> usize {
        self.refs.iter().filter(|r| r.status == status).count()
    }

    pub fn outcome(&self) -> Outcome {
        if self.rejected() == 0 {
            Outcome::Complete
        } else if self.pushed > 0 && self.count(RefStatus::Ok) == 0 {
            Outcome::NothingLanded
        } else {
            Outcome::Partial
        }
    }

    fn empty() -> Self {
        Self {
            refs: Vec::new(),
            pack: None,
            bytes_relayed: 0,
            downstream_messages: Vec::new(),
            pushed: 0,
        }
    }
}

/// Connects to upstream's upload-pack (protocol v2 requested) and reads
/// its first response.
pub async fn connect_upstream(
    url: &RepoUrl,
    settings: &TransportSettings,
) -> Result<UploadPack, Error> {
    connect_upstream_linked(url, settings, &Link::default()).await
}

async fn connect_upstream_linked(
    url: &RepoUrl,
    settings: &TransportSettings,
    link: &Link,
) -> Result<UploadPack, Error> {
    let connection = transport::connect_linked(
        url,
        Service::UploadPack,
        ConnectOptions {
            protocol_v2: true,
            settings: settings.clone(),
        },
        link,
    )
    .await
    .map_err(|source| Error::Connect {
        side: Side::Upstream,
        repo: url.to_string(),
        source,
    })?;
    Ok(UploadPack::handshake(connection, url.to_string()).await?)
}

/// Connects to downstream's receive-pack and reads its advertisement.
pub async fn connect_downstream(
    url: &RepoUrl,
    settings: &TransportSettings,
) -> Result<ReceivePack, Error> {
    connect_downstream_linked(url, settings, &Link::default()).await
}

async fn connect_downstream_linked(
    url: &RepoUrl,
    settings: &TransportSettings,
    link: &Link,
) -> Result<ReceivePack, Error> {
    let connection = transport::connect_linked(
        url,
        Service::ReceivePack,
        ConnectOptions {
            protocol_v2: false,
            settings: settings.clone(),
        },
        link,
    )
    .await
    .map_err(|source| Error::Connect {
        side: Side::Downstream,
        repo: url.to_string(),
        source,
    })?;
    Ok(ReceivePack::handshake(connection, url.to_string()).await?)
}

/// Both servers, connected and advertised.
pub struct Relay {
    upstream: UploadPack,
    downstream: ReceivePack,
}

/// How a push is made.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// All or nothing, when downstream supports it.
    pub atomic: bool,
    /// Show progress (downstream is asked to be quiet otherwise).
    pub progress: bool,
    /// `-o` options for downstream's hooks.
    pub push_options: Vec<String>,
}

impl Relay {
    /// Connects to both sides at once and reads their advertisements.
    ///
    /// Upstream's progress (pack data, progress messages, keepalives) also
    /// keeps downstream's connection alive: while upstream counts and
    /// compresses objects for minutes, downstream waits for the pack and
    /// hears nothing, and that is not a stall. A stalled downstream still
    /// times out: while the relay waits on it, it reads nothing upstream.
    pub async fn connect(
        upstream: &RepoUrl,
        downstream: &RepoUrl,
        settings: &TransportSettings,
    ) -> Result<Self, Error> {
        let upstream_activity = Activity::new();
        let up_link = Link {
            activity: Some(upstream_activity.clone()),
            alive_while: None,
        };
        let down_link = Link {
            activity: None,
            alive_while: Some(upstream_activity),
        };
        let up = connect_upstream_linked(upstream, settings, &up_link);
        let down = connect_downstream_linked(downstream, settings, &down_link);
        let (upstream, downstream) = tokio::try_join!(up, down)?;
        if upstream.object_format() != downstream.object_format() {
            return Err(Error::ObjectFormatMismatch {
                upstream: upstream.object_format(),
                downstream: downstream.object_format(),
            });
        }
        Ok(Self {
            upstream,
            downstream,
        })
    }

    pub fn object_format(&self) -> ObjectFormat {
        self.downstream.object_format()
    }

    /// Whether downstream's receive-pack advertised `capability` (e.g.
    /// `atomic`, `push-options`).
    pub fn downstream_supports(&self, capability: &str) -> bool {
        self.downstream
            .advertisement()
            .capabilities
            .contains(capability)
    }

    /// Downstream's advertised refs (peeled entries aside).
    pub fn downstream_refs(&self) -> Vec<(String, ObjectId)> {
        self.downstream
            .advertisement()
            .refs
            .iter()
            .map(|r| (r.name.clone(), r.oid.clone()))
            .collect()
    }

    /// Classifies each update (fast-forward, forced, tag moved) with the
    /// ancestry check over the upstream session, which stays usable. The
    /// second value says why an update is forced or undecidable.
    pub async fn classify(
        &mut self,
        updates: &[RefUpdate],
        limits: Limits,
    ) -> Result<Vec<(Option<UpdateKind>, Option<String>)>, Error> {
        let mut kinds: Vec<(Option<UpdateKind>, Option<String>)> = updates
            .iter()
            .map(|u| match u.action() {
                Action::Update if plan::is_tag(&u.name) => (Some(UpdateKind::TagMoved), None),
                _ => (None, None),
            })
            .collect();
        let asked: Vec<usize> = (0..updates.len())
            .filter(|&i| plan::needs_ancestry(&updates[i]))
            .collect();
        if asked.is_empty() {
            return Ok(kinds);
        }
        let queries: Vec<ancestry::Query> = asked
            .iter()
            .filter_map(|&i| {
                Some(ancestry::Query {
                    old: updates[i].old.clone()?,
                    new: updates[i].new.clone()?,
                })
            })
            .collect();
        let answers = ancestry::check(&mut self.upstream, &queries, limits).await?;
        for (&i, answer) in asked.iter().zip(answers) {
            kinds[i] = match answer {
                Ancestry::Ancestor => (Some(UpdateKind::FastForward), None),
                Ancestry::NotAncestor(why) => (
                    Some(UpdateKind::Forced),
                    Some(
                        match why {
                            NotAncestor::OldNotInUpstream => {
                                "downstream's commit is not in upstream"
                            }
                            NotAncestor::Diverged => {
                                "upstream's history does not contain downstream's commit"
                            }
                            NotAncestor::NotACommit => "not a commit on both sides",
                        }
                        .to_owned(),
                    ),
                ),
                Ancestry::Undecidable(reason) => (Some(UpdateKind::Undecidable), Some(reason)),
            };
        }
        Ok(kinds)
    }

    /// Upstream's refs under `prefixes`.
    pub async fn upstream_refs(&mut self, prefixes: &[String]) -> Result<UpstreamRefs, Error> {
        Ok(self.upstream.list_refs(prefixes).await?)
    }

    /// Ends both sessions without changing anything.
    pub async fn close(self) {
        tokio::join!(self.upstream.close(), self.downstream.close());
    }

    /// Applies `updates` to downstream, with the objects from upstream.
    ///
    /// The fetch request goes out first and its response is read up to the
    /// start of the pack, so an upstream that refuses (an unknown object, a
    /// server error) is reported before downstream hears anything.
    pub async fn push(
        self,
        updates: &[RefUpdate],
        options: &PushOptions,
        progress: &Progress,
    ) -> Result<PushResult, Error> {
        let Self {
            mut upstream,
            downstream,
        } = self;
        if updates.is_empty() {
            tokio::join!(upstream.close(), downstream.close());
            return Ok(PushResult::empty());
        }
        let format = downstream.object_format();
        let down_name = downstream.repo().to_owned();
        let caps = &downstream.advertisement().capabilities;
        // receive-pack ignores capabilities it did not advertise, so asking
        // anyway would silently drop the all-or-nothing promise or the
        // options (git refuses the same way, before pushing).
        let unsupported = if options.atomic && !caps.contains("atomic") {
            Some(("an atomic push", "atomic"))
        } else if !options.push_options.is_empty() && !caps.contains("push-options") {
            Some(("push options", "push-options"))
        } else {
            None
        };
        if let Some((what, capability)) = unsupported {
            tokio::join!(upstream.close(), downstream.close());
            return Err(Error::Unsupported {
                repo: down_name,
                what,
                capability,
            });
        }
        let null = ObjectId::null(format);
        let commands: Vec<Command> = updates
            .iter()
            .map(|u| Command {
                old: u.old.clone().unwrap_or_else(|| null.clone()),
                new: u.new.clone().unwrap_or_else(|| null.clone()),
                name: u.name.clone(),
            })
            .collect();
        let caps = &downstream.advertisement().capabilities;
        let downstream_has: BTreeSet<ObjectId> = downstream
            .advertisement()
            .refs
            .iter()
            .map(|r| r.oid.clone())
            .collect();
        let wants: Vec<ObjectId> = updates
            .iter()
            .filter_map(|u| u.new.clone())
            .filter(|oid| !downstream_has.contains(oid))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let push_args = PushArgs {
            atomic: options.atomic,
            progress: options.progress,
            push_options: options.push_options.clone(),
        };
        let needs_pack = commands.iter().any(|c| !c.is_delete());

        if wants.is_empty() {
            // Every object is already downstream. receive-pack still needs a
            // pack after any non-delete command, so send the empty one.
            let (mut writer, reader) = downstream.send_commands(&commands, &push_args).await?;
            let mut bytes_relayed = 0;
            if needs_pack {
                writer.write(format.empty_pack()).await?;
                bytes_relayed = format.empty_pack().len() as u64;
            }
            writer.finish().await?;
            let outcome = reader.read_report(progress).await;
            upstream.close().await;
            let outcome = outcome?;
            return finish(&down_name, updates, None, bytes_relayed, outcome)
                .map(|r| r.with_pushed(updates.len()));
        }

        let fetch_args = FetchArgs {
            wants,
            haves: downstream_has.into_iter().collect(),
            // A thin pack's deltas may use bases that only downstream has;
            // receive-pack completes it (index-pack --fix-thin).
            thin_pack: !caps.contains("no-thin"),
            // Without ofs-delta upload-pack sends REF_DELTA only, which any
            // receiver understands.
            ofs_delta: caps.contains("ofs-delta"),
            progress: options.progress,
        };
        let mut stream = upstream.fetch(&fetch_args, progress).await?;
        let (writer, reader) = downstream.send_commands(&commands, &push_args).await?;
        let (pumped, outcome) = tokio::join!(
            pump(&mut stream, writer, format, progress),
            reader.read_report(progress)
        );
        match pumped {
            Ok(stats) => {
                upstream.close().await;
                finish(&down_name, updates, Some(stats), stats.bytes, outcome?)
                    .map(|r| r.with_pushed(updates.len()))
            }
            Err(error) => {
                // Downstream's side of the story, when it has one, is only
                // context: the pump's error is the cause.
                if let Ok(outcome) = &outcome {
                    tracing::debug!(?outcome.report, "downstream report after the aborted transfer");
                }
                Err(Error::Aborted(Box::new(error)))
            }
        }
    }
}

fn finish(
    downstream: &str,
    updates: &[RefUpdate],
    pack: Option<PackStats>,
    bytes_relayed: u64,
    outcome: receive_pack::PushOutcome,
) -> Result<PushResult, Error> {
    let report = outcome.report;
    if let Err(message) = &report.unpack {
        return Err(Error::Unpack {
            repo: downstream.to_owned(),
            message: message.clone(),
        });
    }
    let refs = updates
        .iter()
        .map(|u| {
            let status = report.refs.iter().find(|s| s.name == u.name);
            let (status, reason) = match status.map(|s| &s.result) {
                Some(RefResult::Ok) => (RefStatus::Ok, None),
                Some(RefResult::Rejected(reason)) => (RefStatus::Rejected, Some(reason.clone())),
                None => (
                    RefStatus::Rejected,
                    Some("downstream did not report on this ref".to_owned()),
                ),
            };
            RefOutcome::new(u, status, reason)
        })
        .collect();
    Ok(PushResult {
        refs,
        pack,
        bytes_relayed,
        downstream_messages: outcome.messages,
        pushed: 0,
    })
}

impl PushResult {
    fn with_pushed(mut self, pushed: usize) -> Self {
        self.pushed = pushed;
        self
    }
}

/// Copies band-1 pack data from upstream to downstream as it arrives.
///
/// The last hash-length bytes (the pack's trailing checksum) are held back
/// until upstream ends the pack with a clean flush-pkt. So if upstream fails
/// at any point, even after the last object, downstream never holds a
/// complete pack and cannot move a single ref.
async fn pump(
    stream: &mut PackStream<'_>,
    mut writer: PackWriter,
    format: ObjectFormat,
    progress: &Progress,
) -> Result<PackStats, Error> {
    let hold = format.raw_len();
    let mut tail: Vec<u8> = Vec::with_capacity(2 * hold);
    let mut header: Vec<u8> = Vec::with_capacity(12);
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next_chunk().await? {
        if header.len() < 12 {
            let take = (12 - header.len()).min(chunk.len());
            header.extend_from_slice(&chunk[..take]);
            if header.len() >= 4 && !header.starts_with(b"PACK") {
                return Err(Error::NotAPack {
                    found: crate::wire::shorten(&header),
                });
            }
        }
        total += chunk.len() as u64;
        if chunk.len() >= hold {
            let (send, keep) = chunk.split_at(chunk.len() - hold);
            if !tail.is_empty() {
                writer.write(&tail).await?;
                progress.add_bytes(tail.len());
            }
            writer.write(send).await?;
            progress.add_bytes(send.len());
            tail.clear();
            tail.extend_from_slice(keep);
        } else {
            tail.extend_from_slice(chunk);
            if tail.len() > hold {
                let excess = tail.len() - hold;
                writer.write(&tail[..excess]).await?;
                progress.add_bytes(excess);
                tail.drain(..excess);
            }
        }
    }
    if header.len() < 12 {
        return Err(Error::NotAPack {
            found: crate::wire::shorten(&header),
        });
    }
    writer.write(&tail).await?;
    progress.add_bytes(tail.len());
    writer.finish().await?;
    let objects = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    Ok(PackStats {
        objects,
        bytes: total,
    })
}

/// What [`sync`] should do.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub plan: PlanOptions,
    pub push: PushOptions,
    /// Plan only: change nothing.
    pub dry_run: bool,
    pub transport: TransportSettings,
}

/// The result of [`sync`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub upstream: String,
    pub downstream: String,
    pub object_format: ObjectFormat,
    #[serde(flatten)]
    pub result: PushResult,
    pub elapsed_ms: u64,
}

/// Makes downstream follow upstream inside the scope: connect, read both
/// advertisements, plan, then fetch and relay exactly the missing objects.
pub async fn sync(
    upstream: &RepoUrl,
    downstream: &RepoUrl,
    options: &SyncOptions,
    progress: &Progress,
) -> Result<SyncReport, Error> {
    let started = Instant::now();
    let mut relay = Relay::connect(upstream, downstream, &options.transport).await?;
    let object_format = relay.object_format();
    let up_refs = relay
        .upstream_refs(&options.plan.scope.ref_prefixes())
        .await?;
    let down_refs = relay.downstream_refs();
    let updates = match plan::plan(
        &up_refs.refs,
        up_refs.head_target.as_deref(),
        &down_refs,
        &options.plan,
    ) {
        Ok(updates) => updates,
        Err(refused) => {
            relay.close().await;
            return Err(refused.into());
        }
    };
    tracing::debug!(updates = updates.len(), "planned");
    // On failure the relay is dropped, not closed: a polite close waits for
    // upstream's process, which may be the thing that hangs.
    let kinds = relay.classify(&updates, Limits::default()).await?;
    if let Some((_, Some(detail))) = kinds
        .iter()
        .find(|(kind, _)| *kind == Some(UpdateKind::Undecidable))
    {
        tracing::info!("fast-forwards cannot be told from forced updates: {detail}");
    }
    let verdicts: Vec<Verdict> = updates
        .iter()
        .zip(&kinds)
        .map(|(u, (kind, detail))| {
            plan::judge(
                u,
                *kind,
                detail.as_deref(),
                options.plan.divergence,
                options.plan.immutable_tags,
            )
        })
        .collect();
    let refused = verdicts.iter().any(|v| matches!(v, Verdict::Reject(_)));
    // All or nothing: a ref refused by the divergence rules holds back the rest.
    let hold_all = options.push.atomic && refused;
    let to_push: Vec<RefUpdate> = updates
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| **v == Verdict::Push && !hold_all)
        .map(|(u, _)| u.clone())
        .collect();
    let mut result = if options.dry_run || to_push.is_empty() {
        relay.close().await;
        PushResult::empty()
    } else {
        relay.push(&to_push, &options.push, progress).await?
    };
    let mut pushed: std::collections::BTreeMap<String, RefOutcome> =
        result.refs.drain(..).map(|r| (r.name.clone(), r)).collect();
    result.refs = updates
        .iter()
        .zip(verdicts)
        .zip(kinds)
        .map(|((u, verdict), (kind, _))| {
            let mut outcome = match verdict {
                Verdict::Reject(reason) => RefOutcome::new(u, RefStatus::Rejected, Some(reason)),
                Verdict::Keep(reason) => RefOutcome::new(u, RefStatus::Kept, Some(reason)),
                Verdict::Push if hold_all => RefOutcome::new(
                    u,
                    RefStatus::Rejected,
                    Some("atomic push: another ref was refused".into()),
                ),
                Verdict::Push if options.dry_run => RefOutcome::new(u, RefStatus::Planned, None),
                Verdict::Push => pushed.remove(&u.name).unwrap_or_else(|| {
                    RefOutcome::new(u, RefStatus::Rejected, Some("no result".into()))
                }),
            };
            outcome.kind = kind;
            outcome
        })
        .collect();
    Ok(SyncReport {
        dry_run: options.dry_run,
        upstream: upstream.to_string(),
        downstream: downstream.to_string(),
        object_format,
        result,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}
