//! The relay: upstream's pack streamed into downstream as it arrives.
//!
//! [`Relay::connect`] opens both sides and reads both advertisements;
//! [`Relay::push`] fetches exactly what downstream lacks and streams it into
//! receive-pack behind the ref-update commands; [`sync`] puts planning in
//! between. Nothing touches the local disk, and memory is bounded by one
//! pkt-line per side.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::ancestry::{self, Ancestry, NotAncestor};
use crate::commit_graph::Limits;
use crate::oid::{ObjectFormat, ObjectId};
use crate::plan::{self, Action, PlanOptions, RefUpdate, SkippedRef, UpdateKind, Verdict};
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
    #[error(
        "downstream {repo} could not store the pack: {message}{}",
        said_suffix(said)
    )]
    Unpack {
        repo: String,
        message: String,
        /// What downstream printed last (index-pack's own reason).
        said: Vec<String>,
    },
    #[error("downstream {repo} reported success, but a fresh look at its refs disagrees: {}", mismatches.join("; "))]
    Verify {
        repo: String,
        mismatches: Vec<String>,
    },
    /// Internal to a split push ([`crate::batch`]): the pack passed the
    /// cap, the transfer was cut before its end, and downstream kept its
    /// refs.
    #[error("the pack passed --max-pack-bytes ({}) after {sent_objects} of its {objects} objects; the transfer was cut, so downstream kept its refs", crate::progress::human_bytes(*cap))]
    PackTooLarge {
        cap: u64,
        /// The objects the whole pack holds (its header).
        objects: u32,
        /// Those relayed before the cap.
        sent_objects: u32,
    },
    #[error(transparent)]
    Batch(#[from] crate::batch::Error),
    #[error(transparent)]
    Lfs(#[from] crate::lfs::Error),
    #[error("downstream {repo} does not support {what} (it does not advertise `{capability}`); nothing was pushed")]
    Unsupported {
        repo: String,
        what: &'static str,
        capability: &'static str,
    },
}

impl Error {
    /// A next step for failures that have an obvious one: a downstream on
    /// this machine that does not exist yet.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Connect {
                side: Side::Downstream,
                source: transport::Error::NotFound { path },
                ..
            } => Some(format!(
                "create it first with `git init --bare {path}`, or set `create_missing = true` \
                 for this mirror in a fleet config"
            )),
            _ => None,
        }
    }
}

fn said_suffix(said: &[String]) -> String {
    match said {
        [] => String::new(),
        lines => format!(" (downstream said: {})", lines.join(" / ")),
    }
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
    /// The whole pack was handed over but downstream's report never came:
    /// the ref may or may not have moved.
    Unknown,
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
    /// Some refs may or may not have moved: downstream took the whole
    /// pack, then its report was lost.
    Unknown,
}

impl PushResult {
    pub fn rejected(&self) -> usize {
        self.count(RefStatus::Rejected)
    }

    pub fn count(&self, status: RefStatus) -> usize {
        self.refs.iter().filter(|r| r.status == status).count()
    }

    pub fn outcome(&self) -> Outcome {
        if self.count(RefStatus::Unknown) > 0 {
            Outcome::Unknown
        } else if self.rejected() == 0 {
            Outcome::Complete
        } else if self.pushed > 0 && self.count(RefStatus::Ok) == 0 {
            Outcome::NothingLanded
        } else {
            Outcome::Partial
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            refs: Vec::new(),
            pack: None,
            bytes_relayed: 0,
            downstream_messages: Vec::new(),
            pushed: 0,
        }
    }

    /// Adds a later push's result to this one's: its refs and messages,
    /// its bytes, and its pack's objects.
    pub(crate) fn merge(&mut self, later: PushResult) {
        self.refs.extend(later.refs);
        self.pack = match (self.pack, later.pack) {
            (Some(a), Some(b)) => Some(PackStats {
                objects: a.objects + b.objects,
                bytes: a.bytes + b.bytes,
            }),
            (a, b) => a.or(b),
        };
        self.bytes_relayed += later.bytes_relayed;
        self.downstream_messages.extend(later.downstream_messages);
        self.pushed += later.pushed;
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
    let session = UploadPack::handshake(connection, url.to_string()).await?;
    tracing::info!(
        "connected to upstream {url} (protocol v{})",
        if session.is_v2() { 2 } else { 0 }
    );
    Ok(session)
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
    let session = ReceivePack::handshake(connection, url.to_string()).await?;
    tracing::info!(
        "connected to downstream {url} ({} refs advertised)",
        session.advertisement().refs.len()
    );
    Ok(session)
}

/// Both servers, connected and advertised.
pub struct Relay {
    upstream: UploadPack,
    downstream: ReceivePack,
    /// Objects to ask upstream for through another object that reaches
    /// them: a v0 upstream serves only its advertised tips
    /// ([`Relay::want_through`]).
    want_through: BTreeMap<ObjectId, ObjectId>,
}

/// How a push of one step of a split is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capped {
    /// Cut the pack once it passes this many bytes.
    pub cap: Option<u64>,
    /// Ask upstream for fresh deltas against what downstream holds (see
    /// [`ALL_OBJECTS`]), for a pack of old history whose stored deltas point
    /// at newer objects.
    pub search_deltas: bool,
}

/// A filter that omits nothing (no tree is a million levels deep; git
/// refuses trees past `core.maxTreeDepth`, 4096), sent for what it turns
/// off. git's pack-objects walks with reachability bitmaps whenever it can,
/// and a bitmap walk gives its delta search no bases from the `have` side:
/// an object whose stored delta base is not sent goes whole. History sent
/// oldest first is that case throughout (a pack stores newer versions whole
/// and older ones as deltas against them), and measured on a 94 MB history
/// in 4 steps, the steps came to 166 MB with bitmaps and 102 MB without.
/// Bitmaps serve no `tree:<depth>` filter but `tree:0`, so this one makes
/// upstream walk the objects and use the `have` side's trees as delta bases
/// (a thin pack, which receive-pack completes). Were anything omitted after
/// all, downstream's connectivity check would refuse the push.
pub const ALL_OBJECTS: &str = "tree:1000000";

/// How a push is made.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// All or nothing, when downstream supports it.
    pub atomic: bool,
    /// Show progress (downstream is asked to be quiet otherwise).
    pub progress: bool,
    /// `-o` options for downstream's hooks.
    pub push_options: Vec<String>,
    /// `--max-pack-bytes`: the largest pack one push may carry; a sync
    /// that needs more is split ([`crate::batch`]).
    pub max_pack_bytes: Option<u64>,
    /// `--max-refs-per-push`: the most ref updates one push may carry.
    pub max_refs_per_push: Option<usize>,
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
            want_through: BTreeMap::new(),
        })
    }

    /// The upstream session, for questions asked before the push (the
    /// remote helper's checks) over the same connection: some servers
    /// serve one connection at a time.
    pub fn upstream(&mut self) -> &mut UploadPack {
        &mut self.upstream
    }

    /// Asks upstream for `tip` wherever a push needs `object`, which `tip`
    /// reaches: a v0 upload-pack refuses a want that is not one of its
    /// advertised tips. The extra objects the tip brings are harmless to
    /// downstream.
    pub fn want_through(&mut self, object: ObjectId, tip: ObjectId) {
        self.want_through.insert(object, tip);
    }

    /// Every [`Relay::want_through`] given so far, for a relay that takes
    /// over (the later pushes of a split one, [`crate::batch`]).
    pub fn wants_through(&self) -> &BTreeMap<ObjectId, ObjectId> {
        &self.want_through
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
        self.push_capped(updates, options, Capped::default(), progress)
            .await
    }

    /// [`Self::push`], cut off with [`Error::PackTooLarge`] once the pack
    /// passes `capped.cap` bytes. The pack's last bytes (its checksum) are
    /// never sent then, so downstream cannot take a cut pack for a whole one.
    pub async fn push_capped(
        self,
        updates: &[RefUpdate],
        options: &PushOptions,
        capped: Capped,
        progress: &Progress,
    ) -> Result<PushResult, Error> {
        let Capped { cap, search_deltas } = capped;
        let Self {
            mut upstream,
            downstream,
            want_through,
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
        let commands = commands_for(updates, format);
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
            .map(|oid| want_through.get(&oid).cloned().unwrap_or(oid))
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
            let outcome = log_report(reader.read_report(progress).await);
            upstream.close().await;
            return settle(&down_name, updates, None, bytes_relayed, outcome);
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
            filter: (search_deltas && upstream.fetch_supports("filter")).then_some(ALL_OBJECTS),
        };
        progress.phase("waiting for upstream's pack");
        let mut stream = upstream.fetch(&fetch_args, progress).await?;
        let (writer, reader) = downstream.send_commands(&commands, &push_args).await?;
        let (pumped, outcome) =
            tokio::join!(pump(&mut stream, writer, format, cap, progress), async {
                log_report(reader.read_report(progress).await)
            });
        match pumped {
            Ok(stats) => {
                upstream.close().await;
                settle(&down_name, updates, Some(stats), stats.bytes, outcome)
            }
            Err(error @ Error::PackTooLarge { .. }) => {
                tracing::debug!(?outcome, "downstream's answer to the cut pack");
                Err(error)
            }
            Err(error) => {
                // A write to downstream fails because downstream stopped
                // reading, and it usually said why: an unpack error in its
                // report ("pack exceeds maximum allowed size" on its
                // progress band), a fatal line, or its stderr. That is the
                // cause; "Broken pipe" is only the symptom. When upstream
                // failed, the pump's error is the cause.
                let downstream_write =
                    matches!(error, Error::Downstream(receive_pack::Error::Write { .. }));
                match outcome {
                    Ok(outcome) => {
                        if let (true, Err(message)) = (downstream_write, &outcome.report.unpack) {
                            return Err(unpack_error(&down_name, message, &outcome.messages));
                        }
                        tracing::debug!(?outcome.report, "downstream report after the aborted transfer");
                        Err(Error::Aborted(Box::new(error)))
                    }
                    Err(said) if downstream_write => {
                        Err(Error::Aborted(Box::new(Error::Downstream(said))))
                    }
                    Err(_) => Err(Error::Aborted(Box::new(error))),
                }
            }
        }
    }
}

/// The result once the whole pack (or the commands alone) has been handed
/// over. From then on a lost report does not mean "unchanged": downstream
/// may apply the refs after the connection is gone (a slow hook or
/// connectivity check), so each ref is `unknown` until someone looks.
fn settle(
    downstream: &str,
    updates: &[RefUpdate],
    pack: Option<PackStats>,
    bytes_relayed: u64,
    outcome: Result<receive_pack::PushOutcome, receive_pack::Error>,
) -> Result<PushResult, Error> {
    let result = match outcome {
        Ok(outcome) => finish(downstream, updates, pack, bytes_relayed, outcome)?,
        Err(error) => {
            let reason = format!(
                "the whole pack was sent to downstream, then its report was lost ({}); \
                 the ref may or may not have moved",
                chain(&error)
            );
            PushResult {
                refs: updates
                    .iter()
                    .map(|u| RefOutcome::new(u, RefStatus::Unknown, Some(reason.clone())))
                    .collect(),
                pack,
                bytes_relayed,
                downstream_messages: Vec::new(),
                pushed: 0,
            }
        }
    };
    Ok(result.with_pushed(updates.len()))
}

/// An error and its causes on one line, as `{:#}` prints them, but without
/// a cause whose text the previous link already ends with: some libraries
/// (russh) put their cause into their own message, which would otherwise
/// read twice.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut previous = text.clone();
    let mut cause = error.source();
    while let Some(source) = cause {
        let current = source.to_string();
        if !previous.ends_with(&current) {
            text.push_str(": ");
            text.push_str(&current);
        }
        previous = current;
        cause = source.source();
    }
    text
}

fn unpack_error(downstream: &str, message: &str, messages: &[String]) -> Error {
    let said = messages
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|m| m.trim().to_owned())
        .collect();
    Error::Unpack {
        repo: downstream.to_owned(),
        message: message.to_owned(),
        said,
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
        return Err(unpack_error(downstream, message, &outcome.messages));
    }
    let refs = updates
        .iter()
        .map(|u| {
            let status = report.refs.iter().find(|s| s.name == u.name);
            let (status, reason) = match status.map(|s| &s.result) {
                Some(RefResult::Ok) => (RefStatus::Ok, None),
                Some(RefResult::Rejected(reason)) => (RefStatus::Rejected, Some(reason.clone())),
                // Not rejected: a report that skips a ref (or names it garbled) says nothing
                // about it. The fresh look at downstream's refs settles it, else it stays
                // unknown (exit 7).
                None => (
                    RefStatus::Unknown,
                    Some(
                        "downstream did not report on this ref; it may or may not have moved"
                            .to_owned(),
                    ),
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
    cap: Option<u64>,
    progress: &Progress,
) -> Result<PackStats, Error> {
    let hold = format.raw_len();
    let mut tail: Vec<u8> = Vec::with_capacity(2 * hold);
    let mut header: Vec<u8> = Vec::with_capacity(12);
    let mut total: u64 = 0;
    let mut counter = (progress.counts_objects() || cap.is_some())
        .then(|| crate::wire::pack_count::ObjectCounter::new(format.raw_len()));
    let mut counted = 0;
    while let Some(chunk) = stream.next_chunk().await? {
        if let Some(counter) = &mut counter {
            counted = counter.push(chunk);
            progress.objects_received(counted);
        }
        if let Some(cap) = cap.filter(|&cap| total + chunk.len() as u64 > cap) {
            // Dropping the writer without its `finish` ends the request
            // (or closes receive-pack's input) before the checksum.
            let objects = match header.get(8..12) {
                Some(n) => u32::from_be_bytes([n[0], n[1], n[2], n[3]]),
                None => 0,
            };
            return Err(Error::PackTooLarge {
                cap,
                objects,
                sent_objects: counted,
            });
        }
        if header.len() < 12 {
            let take = (12 - header.len()).min(chunk.len());
            header.extend_from_slice(&chunk[..take]);
            if header.len() >= 4 && !header.starts_with(b"PACK") {
                return Err(Error::NotAPack {
                    found: crate::wire::shorten(&header),
                });
            }
        }
        if header.len() == 12 && total < 12 {
            let objects = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
            tracing::info!("pack started: {objects} objects");
            progress.pack_started(objects);
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
    tracing::info!(
        "pack done: {objects} objects, {} relayed",
        crate::progress::human_bytes(total)
    );
    progress.pack_sent();
    Ok(PackStats {
        objects,
        bytes: total,
    })
}

/// Logs downstream's report at info level (`-v`) and passes it on.
fn log_report(
    outcome: Result<receive_pack::PushOutcome, receive_pack::Error>,
) -> Result<receive_pack::PushOutcome, receive_pack::Error> {
    if let Ok(outcome) = &outcome {
        let report = &outcome.report;
        let ok = report
            .refs
            .iter()
            .filter(|r| matches!(r.result, RefResult::Ok))
            .count();
        match &report.unpack {
            Ok(()) => tracing::info!(
                "downstream reported: unpack ok, {ok} refs updated, {} refused",
                report.refs.len() - ok
            ),
            Err(reason) => tracing::info!(
                "downstream reported: unpack failed ({}), {ok} refs updated, {} refused",
                crate::terminal::escape(reason),
                report.refs.len() - ok
            ),
        }
    }
    outcome
}

/// What [`sync`] should do.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub plan: PlanOptions,
    pub push: PushOptions,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// Skip re-reading downstream's refs after the push.
    pub no_verify: bool,
    pub transport: TransportSettings,
    /// `--lfs`: whether LFS objects go along ([`crate::lfs`]).
    pub lfs: crate::lfs::Mode,
    /// `--upstream-lfs-url`, `--downstream-lfs-url`: LFS endpoints given
    /// outright, as git's `lfs.url` / `remote.<name>.lfsurl`.
    pub lfs_urls: crate::lfs::Endpoints,
}

/// The result of [`sync`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncReport {
    pub dry_run: bool,
    pub upstream: String,
    pub downstream: String,
    pub object_format: ObjectFormat,
    /// The branch upstream's HEAD points to, when upstream says.
    pub upstream_head: Option<String>,
    #[serde(flatten)]
    pub result: PushResult,
    /// Refs whose names git does not accept, left out of the plan.
    pub skipped_refs: Vec<SkippedRef>,
    /// The pushes of a sync split to fit `--max-pack-bytes` or
    /// `--max-refs-per-push`, in order; empty when it took one push (or
    /// none).
    pub steps: Vec<crate::batch::Step>,
    /// What was done about LFS objects; `None` when nothing was to be
    /// pushed or `--lfs=off`.
    pub lfs: Option<crate::lfs::Report>,
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
    progress.phase("listing refs");
    let object_format = relay.object_format();
    let up_refs = relay
        .upstream_refs(&options.plan.scope.ref_prefixes())
        .await?;
    let scope = &options.plan.scope;
    let (up_valid, mut skipped_refs) = plan::valid_refs(&up_refs.refs, "upstream", scope);
    let (down_valid, down_skipped) =
        plan::valid_refs(&relay.downstream_refs(), "downstream", scope);
    skipped_refs.extend(down_skipped);
    for skipped in &skipped_refs {
        tracing::warn!(
            "skipping {} ref {}: {}",
            skipped.side,
            crate::terminal::escape(&skipped.name),
            skipped.reason
        );
    }
    let updates = match plan::plan(
        &up_valid,
        up_refs.head_target.as_deref(),
        &down_valid,
        &options.plan,
    ) {
        Ok(updates) => updates,
        Err(refused) => {
            relay.close().await;
            return Err(refused.into());
        }
    };
    tracing::info!(
        "upstream lists {} refs in scope, downstream {}",
        up_valid.len(),
        down_valid.len()
    );
    let count = |action: Action| updates.iter().filter(|u| u.action() == action).count();
    tracing::info!(
        "plan: {} updates ({} to create, {} to update, {} to delete)",
        updates.len(),
        count(Action::Create),
        count(Action::Update),
        count(Action::Delete)
    );
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
    // Every LFS object the relayed commits point to goes first: downstream
    // never holds a ref whose LFS content it lacks.
    let lfs = if options.dry_run || options.lfs == crate::lfs::Mode::Off || to_push.is_empty() {
        None
    } else {
        let sides = crate::batch::Sides {
            upstream,
            downstream,
            transport: &options.transport,
        };
        Some(
            lfs_step(
                &mut relay,
                &sides,
                &to_push,
                (options.lfs, &options.lfs_urls, up_refs.head.as_ref()),
                progress,
            )
            .await?,
        )
    };
    // A split push that stopped half-way left its temporary refs; a run
    // that completes deletes them, split or not.
    let leftovers: Vec<RefUpdate> = relay
        .downstream_refs()
        .into_iter()
        .filter(|(name, _)| name.starts_with(crate::batch::CHECKPOINT_PREFIX))
        .map(|(name, oid)| RefUpdate {
            name,
            old: Some(oid),
            new: None,
        })
        .collect();
    let (mut result, steps) = if options.dry_run || to_push.is_empty() {
        relay.close().await;
        (PushResult::empty(), Vec::new())
    } else {
        let head = up_refs.head_target.as_deref();
        push_in_phases(
            relay, upstream, downstream, &to_push, head, options, progress,
        )
        .await?
    };
    if !options.dry_run && steps.is_empty() && !leftovers.is_empty() && result.rejected() == 0 {
        let cleaned = push_without_pack(
            downstream,
            &leftovers,
            &options.push,
            &options.transport,
            progress,
        )
        .await?;
        tracing::info!(
            "deleted {} temporary refs a stopped split push left",
            cleaned.count(RefStatus::Ok)
        );
    }
    if !options.dry_run && !options.no_verify && result.pushed > 0 {
        verify(downstream, &options.transport, &mut result).await?;
    }
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
        upstream_head: up_refs.head_target.clone(),
        result,
        skipped_refs,
        steps,
        lfs,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// The LFS step of a sync: the pointers among the small blobs of the
/// commits about to be relayed, and their objects copied from upstream's
/// LFS server to downstream's. Under `auto`, a sync whose upstream cannot
/// say (v0, no filter, no LFS server) goes on without; once upstream
/// serves the objects, any failure fails the sync before the push.
pub(crate) async fn lfs_step(
    relay: &mut Relay,
    sides: &crate::batch::Sides<'_>,
    to_push: &[RefUpdate],
    (mode, given, head): (crate::lfs::Mode, &crate::lfs::Endpoints, Option<&ObjectId>),
    progress: &Progress,
) -> Result<crate::lfs::Report, Error> {
    use crate::lfs::{self, Mode};
    let (upstream, downstream, transport) = (sides.upstream, sides.downstream, sides.transport);
    let haves: BTreeSet<ObjectId> = relay
        .downstream
        .advertisement()
        .refs
        .iter()
        .map(|r| r.oid.clone())
        .collect();
    let wants: Vec<ObjectId> = to_push
        .iter()
        .filter_map(|u| u.new.clone())
        .filter(|oid| !haves.contains(oid))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if wants.is_empty() {
        return Ok(lfs::Report::default());
    }
    let skip = |reason: String| -> Result<lfs::Report, Error> {
        if mode == Mode::On {
            return Err(lfs::Error::Scan { reason }.into());
        }
        tracing::warn!("LFS objects are not mirrored: {reason} (--lfs=off silences this)");
        Ok(lfs::Report {
            skipped: Some(reason),
            ..lfs::Report::default()
        })
    };
    // Where the objects would come from, before asking upstream for
    // anything: a sync with no LFS server upstream (a file:// or git://
    // upstream without a given endpoint) pays nothing.
    let quiet = |reason: String| -> Result<lfs::Report, Error> {
        tracing::debug!("LFS left alone: {reason}");
        Ok(lfs::Report {
            skipped: Some(reason),
            ..lfs::Report::default()
        })
    };
    // An ssh upstream's endpoint costs a connection of its own
    // (`git-lfs-authenticate`): under `auto` it is asked only once the
    // relayed commits turn out to hold pointers.
    let ssh_later =
        mode == Mode::Auto && given.upstream.is_none() && matches!(upstream, RepoUrl::Ssh { .. });
    let mut up_found = None;
    if !ssh_later {
        let resolved =
            match lfs::resolve(upstream, given.upstream.as_ref(), "upstream", transport).await {
                Ok(resolved) => resolved,
                Err(error) if mode == Mode::Auto => return quiet(error.to_string()),
                Err(error) => return Err(error.into()),
            };
        let Some((up, up_repo, up_headers)) = resolved else {
            if mode == Mode::On {
                return Err(lfs::Error::NoEndpoint {
                    side: "upstream",
                    url: upstream.to_string(),
                }
                .into());
            }
            return quiet(format!(
                "upstream {upstream} has no LFS endpoint Kalandra can find"
            ));
        };
        if mode == Mode::Auto {
            let probe = lfs::Side {
                endpoint: up.clone(),
                headers: up_headers.clone(),
                repo: &up_repo,
                token: transport.upstream_token.as_ref(),
            };
            match lfs::has_server(&probe, transport.connect_timeout).await {
                Ok(true) => {}
                Ok(false) => return quiet(format!("upstream has no LFS server at {up}")),
                Err(error) => return skip(crate::relay::chain(&error)),
            }
        }
        up_found = Some((up, up_repo, up_headers));
    }
    if !relay.upstream.is_v2() {
        return skip("upstream speaks protocol v0, which cannot send the small blobs alone".into());
    }
    if !relay.upstream.fetch_supports("filter") {
        return skip(
            "upstream does not offer `filter` for fetch (git: uploadpack.allowFilter), so its pointers cannot be found without a copy".into(),
        );
    }
    progress.phase("LFS: looking for pointers");
    let haves: Vec<ObjectId> = haves.into_iter().collect();
    let fetched = relay
        .upstream
        .fetch_filtered(
            &wants,
            &haves,
            lfs::SCAN_FILTER,
            lfs::SCAN_LIMITS.max_pack_bytes,
        )
        .await?;
    let pointers = match lfs::pointers_from(fetched.pack, relay.object_format()) {
        Ok(pointers) => pointers,
        Err(error) => return skip(error.to_string()),
    };
    if pointers.is_empty() {
        return Ok(lfs::Report::default());
    }
    tracing::info!(
        "LFS: the relayed commits point to {} objects",
        pointers.len()
    );
    let (up, up_repo, up_headers) = match up_found {
        Some(found) => found,
        None => match lfs::resolve(upstream, None, "upstream", transport).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return skip(format!(
                    "the relayed commits point to {} LFS objects, but upstream {upstream} answers no git-lfs-authenticate",
                    pointers.len()
                ))
            }
            Err(error) => return skip(error.to_string()),
        },
    };
    // `.lfsconfig` at upstream's HEAD may name the LFS server, below an
    // endpoint given outright, as git-lfs reads it.
    let up = match (given.upstream.as_ref(), head) {
        (None, Some(head)) => match lfs_config_url(relay, head).await {
            Some(named) => {
                tracing::info!("LFS: upstream's .lfsconfig names {named}");
                named
            }
            None => up,
        },
        _ => up,
    };
    let up_side = lfs::Side {
        endpoint: up,
        headers: up_headers,
        repo: &up_repo,
        token: transport.upstream_token.as_ref(),
    };
    let Some((down, down_repo, down_headers)) = lfs::resolve(
        downstream,
        given.downstream.as_ref(),
        "downstream",
        transport,
    )
    .await?
    else {
        if mode == Mode::On {
            return Err(lfs::Error::NoEndpoint {
                side: "downstream",
                url: downstream.to_string(),
            }
            .into());
        }
        return skip(format!(
            "the relayed commits point to {} LFS objects, but downstream {downstream} has no LFS endpoint Kalandra can find",
            pointers.len()
        ));
    };
    let down_side = lfs::Side {
        endpoint: down,
        headers: down_headers,
        repo: &down_repo,
        token: transport.downstream_token.as_ref(),
    };
    match lfs::mirror(
        &pointers,
        up_side,
        down_side,
        transport.connect_timeout,
        progress,
    )
    .await
    {
        Ok(report) => {
            tracing::info!(
                "LFS: {} objects copied ({}), {} already downstream",
                report.objects,
                crate::progress::human_bytes(report.bytes),
                report.present
            );
            Ok(report)
        }
        // No LFS server upstream: under `auto`, git objects only.
        Err(lfs::Error::Batch {
            side: "upstream",
            status: 404,
            url,
            ..
        }) if mode == Mode::Auto => skip(format!("upstream has no LFS server at {url}")),
        Err(error) => Err(error.into()),
    }
}

/// The LFS endpoint `.lfsconfig` at `head` names, if upstream can send it
/// alone and it names one; a failure to look is only logged.
async fn lfs_config_url(relay: &mut Relay, head: &ObjectId) -> Option<url::Url> {
    use crate::lfs::lfsconfig;
    let fetched = relay
        .upstream
        .fetch_shallow_filtered(head, lfsconfig::FILTER, lfsconfig::LIMITS.max_pack_bytes)
        .await;
    let pack = match fetched.map(|f| f.pack) {
        Ok(Some(crate::session::upload_pack::CommitsPack::Bytes(pack))) => pack,
        Ok(_) => return None,
        Err(error) => {
            tracing::debug!("LFS: cannot look at .lfsconfig: {}", chain(&error));
            return None;
        }
    };
    match lfsconfig::url_in(&pack, relay.object_format(), head) {
        Ok(url) => url,
        Err(reason) => {
            tracing::warn!("LFS: upstream's .lfsconfig cannot be read: {reason}");
            None
        }
    }
}

/// Pushes `updates`, first the deletes that free a name a create needs.
///
/// Upstream may delete `refs/heads/a` and create `refs/heads/a/b`: git
/// keeps refs as paths, so the create fails ("cannot lock ref") while the
/// old ref exists, in the same push whatever the order, and an atomic sync
/// would fail the same way forever. Those deletes go first, in a push of
/// their own (no pack needed), then everything else. Under `--atomic` each
/// push is all or nothing, with a moment in between where the deletes have
/// landed and the rest not yet.
///
/// Past `--max-refs-per-push` or with `--max-pack-bytes`, the rest goes in
/// as many pushes as the caps need ([`crate::batch`]), with their steps.
async fn push_in_phases(
    relay: Relay,
    upstream: &RepoUrl,
    downstream: &RepoUrl,
    updates: &[RefUpdate],
    head: Option<&str>,
    options: &SyncOptions,
    progress: &Progress,
) -> Result<(PushResult, Vec<crate::batch::Step>), Error> {
    let (first, rest) = plan::split_freeing_deletes(updates);
    let mut early = PushResult::empty();
    if !first.is_empty() {
        tracing::debug!(
            deletes = first.len(),
            "deleting refs that block new ones before the main push"
        );
        early = push_without_pack(
            downstream,
            &first,
            &options.push,
            &options.transport,
            progress,
        )
        .await?;
    }
    let caps = crate::batch::Caps {
        max_pack_bytes: options.push.max_pack_bytes,
        max_refs: options.push.max_refs_per_push,
    };
    let (main, steps) = if caps.may_split(&rest) {
        let sides = crate::batch::Sides {
            upstream,
            downstream,
            transport: &options.transport,
        };
        crate::batch::push(relay, &sides, &rest, head, &options.push, progress).await?
    } else {
        (
            relay.push(&rest, &options.push, progress).await?,
            Vec::new(),
        )
    };
    early.merge(main);
    Ok((early, steps))
}

/// receive-pack's commands for `updates`: a missing side is the null id.
fn commands_for(updates: &[RefUpdate], format: ObjectFormat) -> Vec<Command> {
    let null = ObjectId::null(format);
    updates
        .iter()
        .map(|u| Command {
            old: u.old.clone().unwrap_or_else(|| null.clone()),
            new: u.new.clone().unwrap_or_else(|| null.clone()),
            name: u.name.clone(),
        })
        .collect()
}

/// A deletes-only push on a connection of its own.
pub(crate) async fn push_without_pack(
    downstream: &RepoUrl,
    deletes: &[RefUpdate],
    push: &PushOptions,
    transport: &TransportSettings,
    progress: &Progress,
) -> Result<PushResult, Error> {
    let session = connect_downstream(downstream, transport).await?;
    let repo = session.repo().to_owned();
    let commands = commands_for(deletes, session.object_format());
    let args = PushArgs {
        atomic: push.atomic && session.supports_atomic(),
        progress: push.progress,
        push_options: push.push_options.clone(),
    };
    let (writer, reader) = session.send_commands(&commands, &args).await?;
    writer.finish().await?;
    let outcome = log_report(reader.read_report(progress).await);
    settle(&repo, deletes, None, 0, outcome)
}

/// Trust, but verify: one fresh look at downstream's refs after the push.
/// A ref downstream reported `ok` must now hold the new value; one whose
/// report was lost (`unknown`) is settled by what it holds.
async fn verify(
    downstream: &RepoUrl,
    settings: &TransportSettings,
    result: &mut PushResult,
) -> Result<(), Error> {
    let session = match connect_downstream(downstream, settings).await {
        Ok(session) => session,
        // Nothing to settle: the report stands, unknowns stay unknown.
        Err(error) if result.count(RefStatus::Unknown) > 0 => {
            tracing::warn!("cannot re-read downstream's refs to settle the lost report: {error}");
            return Ok(());
        }
        // Downstream said `ok` and may well have moved the refs: failing the sync as a
        // connection error would claim "downstream was not changed". What landed cannot be
        // confirmed, so it is unknown (exit 7), and the next sync settles it.
        Err(error) => {
            let reason = format!(
                "downstream reported it updated, but the fresh look at its refs failed ({error}); \
                 the ref may or may not have moved"
            );
            for outcome in &mut result.refs {
                if outcome.status == RefStatus::Ok {
                    outcome.status = RefStatus::Unknown;
                    outcome.reason = Some(reason.clone());
                }
            }
            return Ok(());
        }
    };
    let repo = session.repo().to_owned();
    let now: std::collections::HashMap<&str, &ObjectId> = session
        .advertisement()
        .refs
        .iter()
        .map(|r| (r.name.as_str(), &r.oid))
        .collect();
    let mut mismatches = Vec::new();
    for outcome in &mut result.refs {
        let actual = now.get(outcome.name.as_str()).copied();
        match outcome.status {
            RefStatus::Ok if actual != outcome.new.as_ref() => mismatches.push(format!(
                "{} is {} where {} was reported",
                crate::terminal::escape(&outcome.name),
                actual.map_or("absent".to_owned(), |o| o.to_string()),
                outcome
                    .new
                    .as_ref()
                    .map_or("a delete".to_owned(), |o| o.to_string()),
            )),
            RefStatus::Unknown if actual == outcome.new.as_ref() => {
                outcome.status = RefStatus::Ok;
                outcome.reason = Some("landed; downstream's report was lost".into());
            }
            // Still the old value proves nothing: downstream may still be
            // running its hooks and apply the update a moment later.
            _ => {}
        }
    }
    session.close().await;
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(Error::Verify { repo, mismatches })
    }
}
