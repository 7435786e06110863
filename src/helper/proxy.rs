//! `stateless-connect git-upload-pack`: git speaks protocol v2 to UP
//! through the helper, one request and one response at a time.
//!
//! Per gitremote-helpers(7), after the helper's blank "ready" line it
//! passes on the server's capability advertisement, then for each request
//! (pkt-lines up to a flush) the whole response followed by a
//! response-end packet (`0002`), which tells git the response is complete.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::limits::{self, Budget, Limits};
use crate::pkt_io::{self, PacketReader};
use crate::progress::Side;
use crate::trace::{Direction, PacketTrace};
use crate::transport::{self, ConnectOptions, Service, TransportSettings};
use crate::url::RepoUrl;
use crate::wire::pkt::{self, Packet};
use crate::wire::v2;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to upstream {repo}")]
    Connect {
        repo: String,
        #[source]
        source: transport::Error,
    },
    #[error("reading from upstream {repo} failed")]
    Upstream {
        repo: String,
        #[source]
        source: pkt_io::Error,
    },
    #[error("upstream {repo} closed the connection in the middle of a response")]
    UpstreamClosed { repo: String },
    #[error("invalid limits for upstream {repo}")]
    Limits {
        repo: String,
        #[source]
        source: limits::Error,
    },
    #[error("reading git's request failed")]
    Git(#[source] pkt_io::Error),
    #[error("writing failed")]
    Write(#[source] std::io::Error),
}

/// What happened when the proxy was asked for.
pub enum Outcome {
    /// The session ran until git closed it.
    Done,
    /// UP does not speak v2; the caller replies `fallback`.
    Fallback,
}

/// Proxies git (`from_git`/`to_git`) to UP's upload-pack until git ends.
pub async fn stateless_connect<R, W>(
    upstream: &RepoUrl,
    settings: &TransportSettings,
    from_git: R,
    mut to_git: W,
) -> Result<Outcome, Error>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let repo = upstream.to_string();
    let limits = Limits::from_env().map_err(|source| Error::Limits {
        repo: repo.clone(),
        source,
    })?;
    let connection = transport::connect(
        upstream,
        Service::UploadPack,
        ConnectOptions {
            protocol_v2: true,
            settings: settings.clone(),
        },
    )
    .await
    .map_err(|source| Error::Connect {
        repo: repo.clone(),
        source,
    })?;
    let mut up_writer = connection.writer;
    let mut up = PacketReader::new(connection.reader).with_trace(Side::Upstream);
    let mut sent_trace = PacketTrace::from_env(Side::Upstream, Direction::Sent);
    let upstream_error = |source| Error::Upstream {
        repo: repo.clone(),
        source,
    };

    // The capability advertisement decides between proxy and fallback.
    let mut advertisement = Vec::new();
    match up.next().await.map_err(upstream_error)? {
        Some(Packet::Data(line)) if v2::is_version_2(line) => {
            pkt::encode_data(line, &mut advertisement).expect("because a read line fits a pkt-line")
        }
        _ => return Ok(Outcome::Fallback),
    }
    // Held whole before git sees it, so held to the same caps as any
    // advertisement.
    let mut budget = limits.budget("capability advertisement");
    copy_until_flush(&mut up, &mut advertisement, &mut budget, &repo).await?;
    to_git.write_all(b"\n").await.map_err(Error::Write)?;
    to_git
        .write_all(&advertisement)
        .await
        .map_err(Error::Write)?;
    to_git.flush().await.map_err(Error::Write)?;

    let mut git = PacketReader::new(from_git);
    loop {
        let mut request = Vec::new();
        let mut commands = 0;
        loop {
            match git.next().await.map_err(Error::Git)? {
                None => return Ok(Outcome::Done),
                Some(packet) => {
                    let end = packet == Packet::Flush;
                    commands += usize::from(matches!(packet, Packet::Data(_)));
                    encode(packet, &mut request);
                    if end {
                        break;
                    }
                }
            }
        }
        if let Some(trace) = &mut sent_trace {
            trace.packets(&request);
        }
        up_writer.write_all(&request).await.map_err(Error::Write)?;
        up_writer.flush().await.map_err(Error::Write)?;
        if commands == 0 {
            // A lone flush ends a v2 session; the server answers nothing.
            return Ok(Outcome::Done);
        }
        let mut response = Vec::new();
        copy_until_flush_streaming(&mut up, &mut response, &mut to_git, &repo).await?;
        to_git
            .write_all(pkt::RESPONSE_END)
            .await
            .map_err(Error::Write)?;
        to_git.flush().await.map_err(Error::Write)?;
    }
}

fn encode(packet: Packet<'_>, out: &mut Vec<u8>) {
    match packet {
        Packet::Data(data) => {
            pkt::encode_data(data, out).expect("because a read line fits a pkt-line")
        }
        Packet::Flush => out.extend_from_slice(pkt::FLUSH),
        Packet::Delim => out.extend_from_slice(pkt::DELIM),
        Packet::ResponseEnd => out.extend_from_slice(pkt::RESPONSE_END),
    }
}

async fn copy_until_flush<R: AsyncRead + Unpin>(
    up: &mut PacketReader<R>,
    out: &mut Vec<u8>,
    budget: &mut Budget,
    repo: &str,
) -> Result<(), Error> {
    loop {
        match up.next().await {
            Ok(Some(packet)) => {
                if let Packet::Data(data) = packet {
                    budget
                        .take_line(data.len())
                        .map_err(|limit| Error::Upstream {
                            repo: repo.to_owned(),
                            source: pkt_io::Error::Limit(limit),
                        })?;
                }
                let end = packet == Packet::Flush;
                encode(packet, out);
                if end {
                    return Ok(());
                }
            }
            Ok(None) => {
                return Err(Error::UpstreamClosed {
                    repo: repo.to_owned(),
                })
            }
            Err(source) => {
                return Err(Error::Upstream {
                    repo: repo.to_owned(),
                    source,
                })
            }
        }
    }
}

/// Copies one response to git as it arrives (a pack can be large), ending
/// at the flush that closes it. An `ERR` line is passed on as it is: git
/// prints it.
async fn copy_until_flush_streaming<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    up: &mut PacketReader<R>,
    buf: &mut Vec<u8>,
    to_git: &mut W,
    repo: &str,
) -> Result<(), Error> {
    loop {
        buf.clear();
        let packet = up.next().await.map_err(|source| Error::Upstream {
            repo: repo.to_owned(),
            source,
        })?;
        let Some(packet) = packet else {
            return Err(Error::UpstreamClosed {
                repo: repo.to_owned(),
            });
        };
        let end = packet == Packet::Flush;
        let is_error = matches!(packet, Packet::Data(d) if pkt::error_line(d).is_some());
        encode(packet, buf);
        to_git.write_all(buf).await.map_err(Error::Write)?;
        if end || is_error {
            return Ok(());
        }
    }
}
