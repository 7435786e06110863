//! The downstream side: git-receive-pack, which speaks protocol v0 only.
//!
//! The session is split in two once the commands are sent: a
//! [`PackWriter`] that the relay streams the pack into, and a
//! [`ReportReader`] that reads progress and the final report at the same
//! time, so that neither server can block the other on a full pipe.

use std::collections::VecDeque;

use tokio::io::AsyncWriteExt;

use crate::limits::{self, Budget, Limits};
use crate::oid::ObjectFormat;
use crate::pkt_io::{self, PacketReader};
use crate::progress::{Progress, Side};
use crate::session::{agent, detail_suffix};
use crate::trace::{Direction, PacketTrace};
use crate::transport::{BoxReader, BoxWriter, Connection, ServerProcess};
use crate::wire::advertisement::{self, Advertisement, AdvertisementParser};
use crate::wire::capabilities;
use crate::wire::commands::{self, Command};
use crate::wire::pkt::{self, Decoded, Packet};
use crate::wire::report::{self, Report, ReportParser};
use crate::wire::sideband::{self, Band};

/// How many of downstream's last progress lines are kept to explain a
/// rejection (hook output arrives on band 2).
const KEPT_MESSAGES: usize = 20;

/// Talking to downstream's receive-pack failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading from downstream {repo} failed{}", detail_suffix(detail))]
    Read {
        repo: String,
        detail: Option<String>,
        #[source]
        source: pkt_io::Error,
    },
    #[error("writing to downstream {repo} failed{}", detail_suffix(detail))]
    Write {
        repo: String,
        detail: Option<String>,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "downstream {repo} closed the connection {when}{}",
        detail_suffix(detail)
    )]
    Closed {
        repo: String,
        when: &'static str,
        detail: Option<String>,
    },
    #[error("downstream {repo} sent a malformed ref advertisement")]
    Advertisement {
        repo: String,
        #[source]
        source: advertisement::Error,
    },
    #[error("downstream {repo} sent bad capabilities")]
    Capabilities {
        repo: String,
        #[source]
        source: capabilities::Error,
    },
    #[error("downstream {repo} sent a malformed side-band packet")]
    Sideband {
        repo: String,
        #[source]
        source: sideband::Error,
    },
    #[error("downstream {repo} sent a malformed report")]
    Report {
        repo: String,
        #[source]
        source: report::Error,
    },
    #[error("downstream {repo} sent a malformed pkt-line inside its report")]
    ReportFraming {
        repo: String,
        #[source]
        source: pkt::Error,
    },
    #[error("downstream {repo} reported an error: {message}")]
    Server { repo: String, message: String },
    #[error("invalid limits for downstream {repo}")]
    Limits {
        repo: String,
        #[source]
        source: limits::Error,
    },
    #[error("cannot push to downstream {repo}")]
    Commands {
        repo: String,
        #[source]
        source: commands::Error,
    },
}

/// A connected receive-pack after its ref advertisement.
pub struct ReceivePack {
    repo: String,
    reader: PacketReader<BoxReader>,
    writer: BoxWriter,
    /// The packet trace of what is sent, when asked for.
    sent: Option<PacketTrace>,
    process: Option<ServerProcess>,
    advertisement: Advertisement,
    object_format: ObjectFormat,
}

/// How the push should be made.
#[derive(Debug, Clone, Default)]
pub struct PushArgs {
    pub atomic: bool,
    pub progress: bool,
    pub push_options: Vec<String>,
}

impl ReceivePack {
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
        let mut reader = PacketReader::new(reader)
            .with_limits(limits)
            .with_trace(Side::Downstream);
        let mut parser = AdvertisementParser::new();
        let mut session_process = process;
        // A server may answer with `ERR <message>` in place of the
        // advertisement (gitprotocol-pack, "Reference Discovery"): git
        // daemon does for a repository it does not serve.
        let mut refused = None;
        let read = reader
            .read_until_flush("ref advertisement", |line| {
                if let Some(message) = pkt::error_line(line) {
                    refused = Some(String::from_utf8_lossy(message).trim().to_owned());
                    return Err(None);
                }
                parser.push_line(line).map_err(Some)
            })
            .await;
        if let Some(message) = refused {
            return Err(Error::Server { repo, message });
        }
        let parsed = match read {
            Ok(parsed) => parsed,
            Err(source) => {
                let detail = crate::transport::failure_detail(&mut session_process).await;
                return Err(match source {
                    pkt_io::Error::Truncated { .. } => Error::Closed {
                        repo,
                        when: "before advertising its refs",
                        detail,
                    },
                    source => Error::Read {
                        repo,
                        detail,
                        source,
                    },
                });
            }
        };
        // `Err(None)` is the ERR line, answered above.
        if let Err(Some(source)) = parsed {
            return Err(Error::Advertisement { repo, source });
        }
        let advertisement = parser.finish();
        let object_format =
            advertisement
                .object_format()
                .map_err(|source| Error::Capabilities {
                    repo: repo.clone(),
                    source,
                })?;
        Ok(Self {
            repo,
            reader,
            writer,
            sent: PacketTrace::from_env(Side::Downstream, Direction::Sent),
            process: session_process,
            advertisement,
            object_format,
        })
    }

    /// The repository, as shown in messages.
    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn advertisement(&self) -> &Advertisement {
        &self.advertisement
    }

    pub fn object_format(&self) -> ObjectFormat {
        self.object_format
    }

    /// Whether the server will apply a push all or nothing.
    pub fn supports_atomic(&self) -> bool {
        self.advertisement.capabilities.contains("atomic")
    }

    /// Capabilities to request with the first command. Each one is asked for
    /// only when advertised: receive-pack ignores unknown ones silently, so
    /// asking blindly would hide a missing feature (e.g. `atomic`).
    fn requested_capabilities(&self, args: &PushArgs) -> Vec<String> {
        let caps = &self.advertisement.capabilities;
        let mut out = Vec::new();
        if caps.contains("report-status-v2") {
            out.push("report-status-v2".to_owned());
        } else {
            // Without a report there is no per-ref result; ask even if the
            // server did not advertise it.
            out.push("report-status".to_owned());
        }
        if caps.contains("side-band-64k") {
            out.push("side-band-64k".to_owned());
        }
        if args.atomic && caps.contains("atomic") {
            out.push("atomic".to_owned());
        }
        if !args.progress && caps.contains("quiet") {
            out.push("quiet".to_owned());
        }
        if !args.push_options.is_empty() && caps.contains("push-options") {
            out.push("push-options".to_owned());
        }
        if caps.contains("object-format") || self.object_format != ObjectFormat::Sha1 {
            out.push(format!("object-format={}", self.object_format));
        }
        if caps.contains("agent") {
            out.push(format!("agent={}", agent()));
        }
        out
    }

    /// Sends the update commands and splits the session for the pack.
    pub async fn send_commands(
        mut self,
        commands: &[Command],
        args: &PushArgs,
    ) -> Result<(PackWriter, ReportReader), Error> {
        let caps = self.requested_capabilities(args);
        let sideband = caps.iter().any(|c| c == "side-band-64k");
        let push_options: &[String] = if caps.iter().any(|c| c == "push-options") {
            &args.push_options
        } else {
            &[]
        };
        let bytes = match commands::encode(commands, &caps, push_options) {
            Ok(bytes) => bytes,
            Err(source) => {
                return Err(Error::Commands {
                    repo: self.repo,
                    source,
                })
            }
        };
        if let Some(trace) = &mut self.sent {
            trace.packets(&bytes);
        }
        if let Err(source) = self.writer.write_all(&bytes).await {
            let detail = self.failure_detail().await;
            return Err(Error::Write {
                repo: self.repo,
                detail,
                source,
            });
        }
        Ok((
            PackWriter {
                repo: self.repo.clone(),
                writer: self.writer,
                sent: self.sent,
            },
            ReportReader {
                repo: self.repo,
                reader: self.reader,
                process: self.process,
                sideband,
                messages: VecDeque::new(),
            },
        ))
    }

    /// Ends a session that pushes nothing: a flush with no commands.
    pub async fn close(mut self) {
        if let Some(trace) = &mut self.sent {
            trace.packets(pkt::FLUSH);
        }
        let _ = self.writer.write_all(pkt::FLUSH).await;
        let _ = self.writer.shutdown().await;
        drop(self.writer);
        if let Some(process) = &mut self.process {
            let _ = process.wait().await;
        }
    }

    async fn failure_detail(&mut self) -> Option<String> {
        crate::transport::failure_detail(&mut self.process).await
    }
}

/// Where the pack goes.
pub struct PackWriter {
    repo: String,
    writer: BoxWriter,
    sent: Option<PacketTrace>,
}

impl PackWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(trace) = &mut self.sent {
            trace.raw_pack(bytes);
        }
        self.writer
            .write_all(bytes)
            .await
            .map_err(|source| Error::Write {
                repo: self.repo.clone(),
                detail: None,
                source,
            })
    }

    /// Flushes and closes the stream: the pack is complete.
    pub async fn finish(mut self) -> Result<(), Error> {
        if let Some(trace) = &mut self.sent {
            trace.raw_pack_end();
        }
        let result = async {
            self.writer.flush().await?;
            self.writer.shutdown().await
        }
        .await;
        result.map_err(|source| Error::Write {
            repo: self.repo.clone(),
            detail: None,
            source,
        })
    }
}

/// Reads downstream's progress and report while the pack streams in.
pub struct ReportReader {
    repo: String,
    reader: PacketReader<BoxReader>,
    process: Option<ServerProcess>,
    sideband: bool,
    messages: VecDeque<String>,
}

/// The report, and what downstream said on the way (hook output).
#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub report: Report,
    pub messages: Vec<String>,
}

impl ReportReader {
    pub async fn read_report(mut self, progress: &Progress) -> Result<PushOutcome, Error> {
        let mut parser = ReportParser::new();
        let mut budget = self.reader.limits().budget("push report");
        let mut inner = Vec::new();
        let mut report_done = false;
        loop {
            let packet = match self.reader.next().await {
                Ok(Some(packet)) => packet,
                Ok(None) if report_done => break,
                Ok(None) => return Err(self.closed("before reporting the result").await),
                Err(source) => return Err(self.read_error(source).await),
            };
            let data = match packet {
                Packet::Flush => {
                    if report_done || !self.sideband {
                        break;
                    }
                    continue;
                }
                Packet::Data(data) => data,
                _ => continue,
            };
            if !self.sideband {
                if let Err(limit) = budget.take_line(data.len()) {
                    return Err(self.read_error(pkt_io::Error::Limit(limit)).await);
                }
                parser.push_line(data).map_err(|source| Error::Report {
                    repo: self.repo.clone(),
                    source,
                })?;
                continue;
            }
            match sideband::demux(data) {
                Ok(Band::Data(bytes)) => {
                    inner.extend_from_slice(bytes);
                    report_done |= self.drain_report(&mut inner, &mut parser, &mut budget)?;
                }
                Ok(Band::Progress(text)) => {
                    progress.server_message(Side::Downstream, text);
                    let text = String::from_utf8_lossy(text).into_owned();
                    for line in text.split(['\n', '\r']).filter(|l| !l.trim().is_empty()) {
                        if self.messages.len() == KEPT_MESSAGES {
                            self.messages.pop_front();
                        }
                        self.messages.push_back(line.trim_end().to_owned());
                    }
                }
                Ok(Band::Fatal(text)) => {
                    return Err(Error::Server {
                        repo: self.repo.clone(),
                        message: String::from_utf8_lossy(text).trim().to_owned(),
                    })
                }
                Err(source) => {
                    return Err(Error::Sideband {
                        repo: self.repo.clone(),
                        source,
                    })
                }
            }
        }
        let report = parser.finish().map_err(|source| Error::Report {
            repo: self.repo.clone(),
            source,
        })?;
        if let Some(process) = &mut self.process {
            let _ = process.wait().await;
        }
        Ok(PushOutcome {
            report,
            messages: self.messages.into(),
        })
    }

    /// With side-band, the report is pkt-lines nested inside band 1, and one
    /// inner line may be split across band packets. Returns true at the
    /// inner flush that ends the report.
    fn drain_report(
        &self,
        inner: &mut Vec<u8>,
        parser: &mut ReportParser,
        budget: &mut Budget,
    ) -> Result<bool, Error> {
        let mut consumed_total = 0;
        let mut done = false;
        while let Decoded::Complete { packet, consumed } = pkt::decode(&inner[consumed_total..])
            .map_err(|source| Error::ReportFraming {
                repo: self.repo.clone(),
                source,
            })?
        {
            consumed_total += consumed;
            match packet {
                Packet::Data(line) => {
                    budget.take_line(line.len()).map_err(|limit| Error::Read {
                        repo: self.repo.clone(),
                        detail: None,
                        source: pkt_io::Error::Limit(limit),
                    })?;
                    parser.push_line(line).map_err(|source| Error::Report {
                        repo: self.repo.clone(),
                        source,
                    })?
                }
                Packet::Flush => {
                    done = true;
                    break;
                }
                _ => {}
            }
        }
        inner.drain(..consumed_total);
        Ok(done)
    }

    async fn failure_detail(&mut self) -> Option<String> {
        crate::transport::failure_detail(&mut self.process).await
    }

    async fn closed(&mut self, when: &'static str) -> Error {
        Error::Closed {
            repo: self.repo.clone(),
            when,
            detail: self.failure_detail().await,
        }
    }

    async fn read_error(&mut self, source: pkt_io::Error) -> Error {
        Error::Read {
            repo: self.repo.clone(),
            detail: self.failure_detail().await,
            source,
        }
    }
}
