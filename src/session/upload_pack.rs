//! The upstream side: git-upload-pack, in protocol v2 with a v0 fallback.
//!
//! v2 is preferred because `ls-refs` takes `ref-prefix` (a forge's
//! `refs/pull/*` is never even listed) and `fetch` serves any object the
//! server has, not only advertised tips (gitprotocol-v2, "fetch").

use crate::limits::{self, Limits};
use crate::oid::{ObjectFormat, ObjectId};
use crate::pkt_io::{self, PacketReader};
use crate::progress::{Progress, Side};
use crate::session::pack_stream::PackStream;
use crate::session::{agent, detail_suffix};
use crate::trace::{Direction, PacketTrace};
use crate::transport::{BoxReader, BoxWriter, Connection, ServerProcess};
use crate::wire::advertisement::{self, Advertisement, AdvertisementParser};
use crate::wire::capabilities::{self, Capabilities};
use crate::wire::fetch::{self, Ack, Section};
use crate::wire::pkt::{self, Packet};
use crate::wire::sideband;
use crate::wire::v2::{self, FetchRequest, LsRefsRequest};

use tokio::io::AsyncWriteExt;

/// Talking to upstream's upload-pack failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading from upstream {repo} failed{}", detail_suffix(detail))]
    Read {
        repo: String,
        detail: Option<String>,
        #[source]
        source: pkt_io::Error,
    },
    #[error("writing to upstream {repo} failed{}", detail_suffix(detail))]
    Write {
        repo: String,
        detail: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "upstream {repo} closed the connection {when}{}",
        detail_suffix(detail)
    )]
    Closed {
        repo: String,
        when: &'static str,
        detail: Option<String>,
    },
    #[error("upstream {repo} sent a malformed ref advertisement")]
    Advertisement {
        repo: String,
        #[source]
        source: advertisement::Error,
    },
    #[error("upstream {repo} sent bad capabilities")]
    Capabilities {
        repo: String,
        #[source]
        source: capabilities::Error,
    },
    #[error("upstream {repo} sent a malformed protocol v2 line")]
    V2 {
        repo: String,
        #[source]
        source: v2::Error,
    },
    #[error("upstream {repo} sent a malformed fetch response")]
    FetchResponse {
        repo: String,
        #[source]
        source: fetch::Error,
    },
    #[error("upstream {repo} sent a malformed side-band packet")]
    Sideband {
        repo: String,
        #[source]
        source: sideband::Error,
    },
    #[error("upstream {repo} reported an error: {message}")]
    Server { repo: String, message: String },
    #[error("invalid limits for upstream {repo}")]
    Limits {
        repo: String,
        #[source]
        source: limits::Error,
    },
    #[error("upstream {repo} sent {found:?} where {expected} was expected")]
    Unexpected {
        repo: String,
        expected: &'static str,
        found: String,
    },
}

/// [`Error::Closed`]'s `when` once the pack has started.
pub(crate) const MID_PACK: &str = "in the middle of the pack";

impl Error {
    /// Whether upstream hung up after the pack had started.
    pub fn closed_mid_pack(&self) -> bool {
        matches!(self, Self::Closed { when, .. } if *when == MID_PACK)
    }
}

/// The protocol the server chose in its first response.
enum Protocol {
    V2 { capabilities: Capabilities },
    V0 { advertisement: Advertisement },
}

/// Upstream's refs in scope, as listed by the server.
#[derive(Debug, Clone)]
pub struct UpstreamRefs {
    pub refs: Vec<(String, ObjectId)>,
    /// The branch HEAD points at, if the server said.
    pub head_target: Option<String>,
    /// HEAD's value (also when it is detached).
    pub head: Option<ObjectId>,
    /// For annotated tags: the object each one finally points to (`^{}`).
    pub peeled: Vec<(String, ObjectId)>,
}

/// What one negotiation round revealed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiation {
    /// Haves the server has too.
    pub common: Vec<ObjectId>,
    /// Every want reaches a common have.
    pub ready: bool,
}

/// The answer to a commits-only fetch ([`UploadPack::fetch_commits`]).
#[derive(Debug, Default)]
pub struct CommitsFetch {
    /// Haves the server has (only from a round without `done`).
    pub acked: Vec<ObjectId>,
    /// The pack, when the server sent one.
    pub pack: Option<CommitsPack>,
}

/// What follows an `acknowledgments` section.
#[derive(Debug, PartialEq, Eq)]
enum Acks {
    /// `ready`: more sections, the pack among them.
    Ready,
    /// The response ends; ask again, with `done`.
    NotReady,
    /// No acknowledgments at all: the `packfile` section has begun.
    PackFollows,
}

/// A commits-only pack as received.
#[derive(Debug)]
pub enum CommitsPack {
    Bytes(Vec<u8>),
    /// Larger than the cap: read to its end and dropped, so the session
    /// stays usable, but not kept.
    TooLarge {
        limit: u64,
    },
}

/// What to fetch, and how the pack should be built.
#[derive(Debug, Clone)]
pub struct FetchArgs {
    pub wants: Vec<ObjectId>,
    pub haves: Vec<ObjectId>,
    pub thin_pack: bool,
    pub ofs_delta: bool,
    pub progress: bool,
    /// `filter <spec>`, only for a server whose `fetch` lists `filter`.
    pub filter: Option<&'static str>,
}

/// A connected upload-pack after its first response.
pub struct UploadPack {
    pub(super) repo: String,
    pub(super) reader: PacketReader<BoxReader>,
    writer: BoxWriter,
    /// The packet trace of what is sent, when asked for.
    sent: Option<PacketTrace>,
    process: Option<ServerProcess>,
    protocol: Protocol,
    object_format: ObjectFormat,
    /// Whether a request has been sent (a v0 session takes one only).
    requested: bool,
}

impl UploadPack {
    /// Reads the server's first response: a v2 capability advertisement,
    /// or (from a server that ignores `GIT_PROTOCOL`) a v0 ref advertisement.
    pub async fn handshake(connection: Connection, repo: String) -> Result<Self, Error> {
        let Connection {
            reader,
            writer,
            process,
        } = connection;
        let limits = match Limits::from_env() {
            Ok(limits) => limits,
            Err(source) => return Err(Error::Limits { repo, source }),
        };
        let mut session = Self {
            repo,
            reader: PacketReader::new(reader)
                .with_limits(limits)
                .with_trace(Side::Upstream),
            writer,
            sent: PacketTrace::from_env(Side::Upstream, Direction::Sent),
            process,
            protocol: Protocol::V0 {
                advertisement: Advertisement::default(),
            },
            object_format: ObjectFormat::Sha1,
            requested: false,
        };
        session.protocol = session.read_first_response().await?;
        tracing::debug!(
            "upstream {} speaks protocol v{}",
            session.repo,
            if session.is_v2() { 2 } else { 0 }
        );
        session.object_format = match &session.protocol {
            Protocol::V2 { capabilities } => capabilities.object_format(),
            Protocol::V0 { advertisement } => advertisement.object_format(),
        }
        .map_err(|source| Error::Capabilities {
            repo: session.repo.clone(),
            source,
        })?;
        Ok(session)
    }

    async fn read_first_response(&mut self) -> Result<Protocol, Error> {
        let first = match self.reader.next().await {
            Ok(Some(Packet::Data(line))) => Some(line.to_vec()),
            Ok(Some(_)) => None,
            Ok(None) => return Err(self.closed("before advertising its refs").await),
            Err(source) => return Err(self.read_error(source).await),
        };
        let Some(first) = first else {
            // A flush first: a v0 server with no refs at all.
            return Ok(Protocol::V0 {
                advertisement: Advertisement::default(),
            });
        };
        if let Some(message) = pkt::error_line(&first) {
            return Err(self.server_error(message));
        }
        if v2::is_version_2(&first) {
            let mut capabilities = Capabilities::default();
            let result = self
                .reader
                .read_until_flush("capability advertisement", |line| {
                    let (name, value) = v2::parse_capability_line(line)?;
                    capabilities.push(&name, value.as_deref());
                    Ok(())
                })
                .await;
            self.check(result, |repo, source| Error::V2 { repo, source })
                .await?;
            return Ok(Protocol::V2 { capabilities });
        }
        let mut parser = AdvertisementParser::new();
        let mut result = parser.push_line(&first).map(|_| ());
        if result.is_ok() {
            let read = self
                .reader
                .read_until_flush("ref advertisement", |line| parser.push_line(line))
                .await;
            result = match read {
                Ok(inner) => inner,
                Err(source) => return Err(self.read_error(source).await),
            };
        }
        result.map_err(|source| Error::Advertisement {
            repo: self.repo.clone(),
            source,
        })?;
        Ok(Protocol::V0 {
            advertisement: parser.finish(),
        })
    }

    pub fn object_format(&self) -> ObjectFormat {
        self.object_format
    }

    /// The `object-format` to name in a v2 request: only to a server that
    /// advertised the capability.
    fn announced_format(&self) -> Option<ObjectFormat> {
        match &self.protocol {
            Protocol::V2 { capabilities } if capabilities.contains("object-format") => {
                Some(self.object_format)
            }
            _ => None,
        }
    }

    /// The `agent` to send: only to a server that advertised its own.
    fn announced_agent<'a>(&self, agent: &'a str) -> Option<&'a str> {
        let advertised = match &self.protocol {
            Protocol::V2 { capabilities } => capabilities.contains("agent"),
            Protocol::V0 { advertisement } => advertisement.capabilities.contains("agent"),
        };
        advertised.then_some(agent)
    }

    /// Whether the server speaks protocol v2.
    pub fn is_v2(&self) -> bool {
        matches!(self.protocol, Protocol::V2 { .. })
    }

    /// Whether the v2 `fetch` command takes `feature` (its capability's
    /// value lists them: `fetch=shallow wait-for-done filter`).
    pub fn fetch_supports(&self, feature: &str) -> bool {
        match &self.protocol {
            Protocol::V2 { capabilities } => capabilities
                .value("fetch")
                .is_some_and(|v| v.split(' ').any(|f| f == feature)),
            Protocol::V0 { .. } => false,
        }
    }

    /// A v2 fetch of commits and tags only (`filter tree:0`, not thin): the
    /// history of `wants` that the `haves` do not reach. The session stays
    /// usable for further commands.
    ///
    /// Without `done` the server first acknowledges the haves it has; it
    /// sends the pack in the same response only when it is `ready`, and
    /// otherwise ends the response there (gitprotocol-v2, "fetch" output).
    /// With `done` it sends the pack straight away, and acknowledges nothing.
    ///
    /// `acks_only` asks for acknowledgments and never a pack, without the
    /// filter (`wait-for-done`: the server holds the pack back until a
    /// `done` that never comes), for a server that offers no `filter`.
    pub async fn fetch_commits(
        &mut self,
        wants: &[ObjectId],
        haves: &[ObjectId],
        done: bool,
        deepen: Option<u32>,
        acks_only: bool,
        max_pack_bytes: u64,
    ) -> Result<CommitsFetch, Error> {
        let filter = (!acks_only).then_some("tree:0");
        self.fetch_small(
            wants,
            haves,
            done,
            deepen,
            acks_only,
            filter,
            max_pack_bytes,
        )
        .await
    }

    /// A v2 fetch with `done` and the filter `filter` (e.g. `blob:limit=1k`
    /// for the small blobs, as LFS pointers are): a pack that is held in
    /// memory, up to `max_pack_bytes`. The session stays usable.
    pub async fn fetch_filtered(
        &mut self,
        wants: &[ObjectId],
        haves: &[ObjectId],
        filter: &str,
        max_pack_bytes: u64,
    ) -> Result<CommitsFetch, Error> {
        self.fetch_small(
            wants,
            haves,
            true,
            None,
            false,
            Some(filter),
            max_pack_bytes,
        )
        .await
    }

    /// `want` alone, one commit deep (`deepen 1`), with `filter`: a look at
    /// one commit's top-level files. The session stays usable.
    pub async fn fetch_shallow_filtered(
        &mut self,
        want: &ObjectId,
        filter: &str,
        max_pack_bytes: u64,
    ) -> Result<CommitsFetch, Error> {
        self.fetch_small(
            std::slice::from_ref(want),
            &[],
            true,
            Some(1),
            false,
            Some(filter),
            max_pack_bytes,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn fetch_small(
        &mut self,
        wants: &[ObjectId],
        haves: &[ObjectId],
        done: bool,
        deepen: Option<u32>,
        acks_only: bool,
        filter: Option<&str>,
        max_pack_bytes: u64,
    ) -> Result<CommitsFetch, Error> {
        let agent = agent();
        let request = FetchRequest {
            object_format: self.announced_format(),
            agent: self.announced_agent(&agent),
            wants,
            haves,
            thin_pack: false,
            ofs_delta: true,
            no_progress: true,
            filter,
            deepen,
            wait_for_done: acks_only,
        };
        let request = if done {
            request.encode()
        } else {
            request.encode_negotiation()
        };
        self.send(&request).await?;
        let mut answer = CommitsFetch::default();
        let acks = if done {
            Acks::Ready
        } else {
            self.read_acknowledgments(&mut answer.acked).await?
        };
        match acks {
            Acks::NotReady => return Ok(answer),
            Acks::Ready => self.skip_to_packfile_section().await?,
            Acks::PackFollows => {}
        }
        let progress = Progress::hidden();
        let mut stream = PackStream::new(self, &progress, false);
        let mut pack = Vec::new();
        let mut too_large = false;
        while let Some(chunk) = stream.next_chunk().await? {
            if too_large || (pack.len() + chunk.len()) as u64 > max_pack_bytes {
                too_large = true;
                pack = Vec::new();
            } else {
                pack.extend_from_slice(chunk);
            }
        }
        answer.pack = Some(if too_large {
            CommitsPack::TooLarge {
                limit: max_pack_bytes,
            }
        } else {
            CommitsPack::Bytes(pack)
        });
        Ok(answer)
    }

    /// Reads an `acknowledgments` section into `acked`, and says what
    /// follows it.
    async fn read_acknowledgments(&mut self, acked: &mut Vec<ObjectId>) -> Result<Acks, Error> {
        let mut in_acks = false;
        let mut ready = false;
        let mut budget = self.reader.limits().budget("acknowledgments section");
        loop {
            let line = match self.reader.next().await {
                Ok(Some(Packet::Data(line))) => line.to_vec(),
                Ok(Some(Packet::Delim)) if ready => return Ok(Acks::Ready),
                Ok(Some(Packet::Flush)) if in_acks && !ready => return Ok(Acks::NotReady),
                Ok(Some(other)) => {
                    return Err(Error::Unexpected {
                        repo: self.repo.clone(),
                        expected: "an acknowledgments section",
                        found: format!("{other:?}"),
                    })
                }
                Ok(None) => return Err(self.closed("during negotiation").await),
                Err(source) => return Err(self.read_error(source).await),
            };
            if let Err(limit) = budget.take_line(line.len()) {
                return Err(self.read_error(pkt_io::Error::Limit(limit)).await);
            }
            if let Some(message) = pkt::error_line(&line) {
                return Err(self.server_error(message));
            }
            if !in_acks {
                let section =
                    fetch::parse_section_header(&line).map_err(|source| Error::FetchResponse {
                        repo: self.repo.clone(),
                        source,
                    })?;
                // With no haves there is nothing to acknowledge: upload-pack
                // goes straight to the pack (gitprotocol-v2, "fetch" output).
                if section == Section::Packfile {
                    return Ok(Acks::PackFollows);
                }
                if section != Section::Acknowledgments {
                    return Err(Error::Unexpected {
                        repo: self.repo.clone(),
                        expected: "an acknowledgments section",
                        found: crate::wire::shorten(&line),
                    });
                }
                in_acks = true;
                continue;
            }
            match fetch::parse_ack_line(&line) {
                Ok(Ack::Common(oid)) => acked.push(oid),
                Ok(Ack::Nak) => {}
                Ok(Ack::Ready) => ready = true,
                Err(source) => {
                    return Err(Error::FetchResponse {
                        repo: self.repo.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Lists refs under `prefixes`, plus where HEAD points.
    pub async fn list_refs(&mut self, prefixes: &[String]) -> Result<UpstreamRefs, Error> {
        match &self.protocol {
            Protocol::V0 { advertisement } => {
                let head_target = advertisement
                    .capabilities
                    .symref_target("HEAD")
                    .map(str::to_owned);
                let in_prefixes =
                    |name: &str| prefixes.iter().any(|p| name.starts_with(p.as_str()));
                let listed = || advertisement.refs.iter().filter(|r| in_prefixes(&r.name));
                Ok(UpstreamRefs {
                    refs: listed().map(|r| (r.name.clone(), r.oid.clone())).collect(),
                    head_target,
                    head: advertisement
                        .refs
                        .iter()
                        .find(|r| r.name == "HEAD")
                        .map(|r| r.oid.clone()),
                    peeled: listed()
                        .filter_map(|r| Some((r.name.clone(), r.peeled.clone()?)))
                        .collect(),
                })
            }
            Protocol::V2 { .. } => {
                let mut wanted = prefixes.to_vec();
                wanted.push("HEAD".to_owned());
                let agent = agent();
                let request = LsRefsRequest {
                    object_format: self.announced_format(),
                    agent: self.announced_agent(&agent),
                    prefixes: &wanted,
                    symrefs: true,
                    peel: true,
                    unborn: false,
                }
                .encode()
                .map_err(|source| Error::V2 {
                    repo: self.repo.clone(),
                    source,
                })?;
                self.send(&request).await?;
                let mut lines = Vec::new();
                let mut server_error = None;
                let result = self
                    .reader
                    .read_until_flush("ls-refs answer", |line| {
                        if let Some(message) = pkt::error_line(line) {
                            server_error = Some(String::from_utf8_lossy(message).into_owned());
                            return Ok(());
                        }
                        lines.push(v2::parse_ls_refs_line(line)?);
                        Ok(())
                    })
                    .await;
                if let Some(message) = server_error {
                    return Err(Error::Server {
                        repo: self.repo.clone(),
                        message,
                    });
                }
                self.check(result, |repo, source| Error::V2 { repo, source })
                    .await?;
                let mut listed = UpstreamRefs {
                    refs: Vec::new(),
                    head_target: None,
                    head: None,
                    peeled: Vec::new(),
                };
                for line in lines {
                    if line.name == "HEAD" {
                        listed.head_target = line.symref_target;
                        listed.head = line.oid;
                    } else if let Some(oid) = line.oid {
                        if prefixes.iter().any(|p| line.name.starts_with(p.as_str())) {
                            if let Some(peeled) = line.peeled {
                                listed.peeled.push((line.name.clone(), peeled));
                            }
                            listed.refs.push((line.name, oid));
                        }
                    }
                }
                Ok(listed)
            }
        }
    }

    /// Sends one fetch request with `done` and reads up to the start of the
    /// pack. Errors the server reports before the pack surface here, before
    /// downstream has been told anything.
    pub async fn fetch<'a>(
        &'a mut self,
        args: &FetchArgs,
        progress: &'a Progress,
    ) -> Result<PackStream<'a>, Error> {
        let agent = agent();
        match &self.protocol {
            Protocol::V2 { .. } => {
                let request = FetchRequest {
                    object_format: self.announced_format(),
                    agent: self.announced_agent(&agent),
                    wants: &args.wants,
                    haves: &args.haves,
                    thin_pack: args.thin_pack,
                    ofs_delta: args.ofs_delta,
                    no_progress: !args.progress,
                    filter: args.filter,
                    deepen: None,
                    wait_for_done: false,
                }
                .encode();
                self.send(&request).await?;
                self.skip_to_packfile_section().await?;
                Ok(PackStream::new(self, progress, false))
            }
            Protocol::V0 { advertisement } => {
                // v0 serves only advertised tips unless the server allows
                // more (uploadpack.allowAnySHA1InWant); ask anyway, the
                // server's ERR names the problem if it refuses.
                let Some(request) = v0_fetch_request(args, &agent, &advertisement.capabilities)
                else {
                    return Err(Error::Unexpected {
                        repo: self.repo.clone(),
                        expected: "side-band or side-band-64k among the capabilities",
                        found: "neither (a pack without side-band is not supported)".into(),
                    });
                };
                self.send(&request).await?;
                Ok(PackStream::new(self, progress, true))
            }
        }
    }

    /// Reads v2 response sections until `packfile`. With `done` sent the
    /// server skips `acknowledgments`, but `shallow-info` and others may
    /// come first (gitprotocol-v2, "fetch" output).
    async fn skip_to_packfile_section(&mut self) -> Result<(), Error> {
        loop {
            let header = match self.reader.next().await {
                Ok(Some(Packet::Data(line))) => line.to_vec(),
                Ok(Some(other)) => {
                    return Err(Error::Unexpected {
                        repo: self.repo.clone(),
                        expected: "a fetch response section",
                        found: format!("{other:?}"),
                    })
                }
                Ok(None) => return Err(self.closed("before sending a pack").await),
                Err(source) => return Err(self.read_error(source).await),
            };
            if let Some(message) = pkt::error_line(&header) {
                return Err(self.server_error(message));
            }
            let section =
                fetch::parse_section_header(&header).map_err(|source| Error::FetchResponse {
                    repo: self.repo.clone(),
                    source,
                })?;
            if section == Section::Packfile {
                return Ok(());
            }
            loop {
                match self.reader.next().await {
                    Ok(Some(Packet::Data(_))) => continue,
                    Ok(Some(Packet::Delim)) => break,
                    Ok(Some(other)) => {
                        return Err(Error::Unexpected {
                            repo: self.repo.clone(),
                            expected: "a delim-pkt before the packfile section",
                            found: format!("{other:?}"),
                        })
                    }
                    Ok(None) => return Err(self.closed("before sending a pack").await),
                    Err(source) => return Err(self.read_error(source).await),
                }
            }
        }
    }

    /// One negotiation round without `done`, to learn about objects rather
    /// than to fetch them: which haves the server has, and whether every
    /// want reaches one of them (`ready`; with a single want and a single
    /// have, that means the have is an ancestor of the want). A want the
    /// server lacks fails with its `not our ref` message.
    ///
    /// Consumes the session: after `ready` the server goes on to send a
    /// pack, which is not wanted, so the connection is dropped instead.
    pub async fn negotiate(
        mut self,
        wants: &[ObjectId],
        haves: &[ObjectId],
    ) -> Result<Negotiation, Error> {
        if !self.is_v2() {
            return Err(Error::Unexpected {
                repo: self.repo.clone(),
                expected: "protocol v2 (needed to ask about objects)",
                found: "a protocol v0 advertisement".into(),
            });
        }
        let agent = agent();
        let request = FetchRequest {
            object_format: self.announced_format(),
            agent: self.announced_agent(&agent),
            wants,
            haves,
            thin_pack: false,
            ofs_delta: false,
            no_progress: true,
            filter: None,
            deepen: None,
            wait_for_done: false,
        }
        .encode_negotiation();
        self.send(&request).await?;
        let mut negotiation = Negotiation::default();
        negotiation.ready =
            self.read_acknowledgments(&mut negotiation.common).await? == Acks::Ready;
        Ok(negotiation)
    }

    /// Ends the session politely and waits for the server to exit.
    pub async fn close(mut self) {
        // A flush ends a v2 session between commands; in v0 it is an empty
        // want list, which upload-pack takes as a clean goodbye. Without
        // it the server logs "the remote end hung up unexpectedly" (git
        // daemon) or a traceback (dulwich). After a v0 request the server
        // has sent its pack and is gone.
        if self.is_v2() || !self.requested {
            if let Some(trace) = &mut self.sent {
                trace.packets(pkt::FLUSH);
            }
            let _ = self.writer.write_all(pkt::FLUSH).await;
        }
        let _ = self.writer.shutdown().await;
        drop(self.writer);
        if let Some(process) = &mut self.process {
            let _ = process.wait().await;
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.requested = true;
        if let Some(trace) = &mut self.sent {
            trace.packets(bytes);
        }
        let result = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(source) => Err(Error::Write {
                repo: self.repo.clone(),
                detail: self.failure_detail().await,
                source,
            }),
        }
    }

    async fn failure_detail(&mut self) -> Option<String> {
        crate::transport::failure_detail(&mut self.process).await
    }

    pub(super) async fn closed(&mut self, when: &'static str) -> Error {
        Error::Closed {
            repo: self.repo.clone(),
            when,
            detail: self.failure_detail().await,
        }
    }

    pub(super) async fn read_error(&mut self, source: pkt_io::Error) -> Error {
        Error::Read {
            repo: self.repo.clone(),
            detail: self.failure_detail().await,
            source,
        }
    }

    fn server_error(&self, message: &[u8]) -> Error {
        Error::Server {
            repo: self.repo.clone(),
            message: String::from_utf8_lossy(message).trim().to_owned(),
        }
    }

    /// Unpacks the result of [`PacketReader::read_until_flush`].
    async fn check<E>(
        &mut self,
        result: Result<Result<(), E>, pkt_io::Error>,
        wrap: impl FnOnce(String, E) -> Error,
    ) -> Result<(), Error> {
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(wrap(self.repo.clone(), e)),
            Err(source) => Err(self.read_error(source).await),
        }
    }
}

/// A v0 fetch: wants with capabilities on the first line, a flush, then
/// haves and `done` (gitprotocol-pack, "Packfile Negotiation"). Without
/// multi_ack the server answers one ACK or NAK, then the pack.
///
/// Only capabilities the server advertised are asked for (a client "MUST
/// NOT ask for capabilities the server did not say it supports"): git's
/// upload-pack ignores an unknown one, older servers and other
/// implementations die on it. `None` when the server offers no side-band,
/// which every server since 2009 does, and without which the pack would
/// come as raw bytes with no way to tell its end from a dropped connection.
fn v0_fetch_request(args: &FetchArgs, agent: &str, offered: &Capabilities) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut caps = vec![["side-band-64k", "side-band"]
        .into_iter()
        .find(|band| offered.contains(band))?
        .to_owned()];
    for (wanted, word) in [
        (args.thin_pack, "thin-pack"),
        (args.ofs_delta, "ofs-delta"),
        (!args.progress, "no-progress"),
    ] {
        if wanted && offered.contains(word) {
            caps.push(word.into());
        }
    }
    if offered.contains("agent") {
        caps.push(format!("agent={agent}"));
    }
    let line = |text: &str, out: &mut Vec<u8>| {
        pkt::encode_text(text, out)
            .expect("because object ids and capability words fit in a pkt-line")
    };
    for (i, want) in args.wants.iter().enumerate() {
        if i == 0 {
            line(&format!("want {want} {}", caps.join(" ")), &mut out);
        } else {
            line(&format!("want {want}"), &mut out);
        }
    }
    out.extend_from_slice(pkt::FLUSH);
    for have in &args.haves {
        line(&format!("have {have}"), &mut out);
    }
    line("done", &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> FetchArgs {
        FetchArgs {
            wants: vec![ObjectId::from_hex(&[b'a'; 40]).expect("hex")],
            haves: vec![ObjectId::from_hex(&[b'b'; 40]).expect("hex")],
            thin_pack: true,
            ofs_delta: true,
            progress: false,
            filter: None,
        }
    }

    fn offered(words: &str) -> Capabilities {
        let mut caps = Capabilities::default();
        for word in words.split(' ') {
            match word.split_once('=') {
                Some((name, value)) => caps.push(name, Some(value)),
                None => caps.push(word, None),
            }
        }
        caps
    }

    fn first_line(request: &[u8]) -> String {
        let len = usize::from_str_radix(std::str::from_utf8(&request[..4]).expect("ascii"), 16)
            .expect("hex length");
        String::from_utf8(request[4..len].to_vec()).expect("utf-8")
    }

    #[test]
    fn a_v0_request_asks_only_for_what_git_offered() {
        let git = offered(
            "multi_ack thin-pack side-band side-band-64k ofs-delta shallow no-progress \
             include-tag multi_ack_detailed agent=git/2.47.3",
        );
        let request = v0_fetch_request(&args(), "kalandra/1", &git).expect("side-band");
        assert_eq!(
            first_line(&request),
            format!(
                "want {} side-band-64k thin-pack ofs-delta no-progress agent=kalandra/1\n",
                "a".repeat(40)
            )
        );
        assert!(request.ends_with(b"0032have bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n0009done\n"));
    }

    #[test]
    fn a_v0_request_leaves_out_what_an_older_server_lacks() {
        // A server from before side-band-64k, ofs-delta, no-progress and agent.
        let old = offered("multi_ack thin-pack side-band");
        let request = v0_fetch_request(&args(), "kalandra/1", &old).expect("side-band");
        assert_eq!(
            first_line(&request),
            format!("want {} side-band thin-pack\n", "a".repeat(40))
        );
        assert_eq!(
            v0_fetch_request(&args(), "kalandra/1", &offered("multi_ack ofs-delta")),
            None
        );
    }
}
