//! Git LFS objects mirrored with the refs, streamed from upstream's LFS
//! server into downstream's, with no local copy (issue 15).
//!
//! Before the push, the relay asks upstream for the small blobs of the
//! commits it is about to relay (`filter blob:limit=1024`, a pack held in
//! memory up to [`SCAN_LIMITS`]) and keeps those that are LFS pointers
//! ([`pointer`]). Then, in batches of [`api::BATCH_SIZE`]:
//!
//! 1. downstream's batch API (`upload`) says which objects it lacks;
//! 2. upstream's (`download`) says where they are;
//! 3. each is streamed from the one to the other, its sha256 checked on
//!    the way ([`transfer`]), [`CONCURRENT`] at a time, and `verify`d when
//!    downstream asks.
//!
//! Only then is the git push made, so downstream never holds a ref whose
//! LFS content it lacks, and a forge that checks LFS on push accepts it.
//!
//! Endpoints come from the URLs as git-lfs derives them ([`endpoint`]);
//! credentials are the sides' git credentials (the URL's, the side's
//! token, netrc and git's helpers after a 401).

pub mod api;
pub mod endpoint;
pub mod lfsconfig;
pub mod pointer;
pub mod transfer;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use url::Url;

use crate::commit_graph::{CommitGraph, Limits};
use crate::oid::ObjectFormat;
use crate::session::upload_pack::CommitsPack;
use crate::transport::{HttpError, Service, Token};
use api::{Operation, Server};
use pointer::Pointer;

/// Objects copied at once.
pub const CONCURRENT: usize = 4;

/// The filter that brings the pointers: every blob of at most 1 KiB.
pub const SCAN_FILTER: &str = "blob:limit=1024";

/// What the scan may hold: the filtered pack (commits, trees and small
/// blobs of the relayed commits) and its small objects, inflated.
pub const SCAN_LIMITS: Limits = Limits {
    max_pack_bytes: 256 << 20,
    max_object_bytes: 1 << 30,
};

/// LFS endpoints given outright, per side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub upstream: Option<Url>,
    pub downstream: Option<Url>,
}

/// An LFS endpoint as `--*-lfs-url` and `*_lfs_url` take it: http(s), no
/// credentials (those come as git's do), no query. Pure.
pub fn parse_endpoint(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim())
        .map_err(|e| format!("{:?} is not a URL: {e}", crate::url::mask_credentials(text)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "{} is not an http(s) URL",
            crate::url::mask_credentials(text)
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{} has credentials in it: they come from the side's token, netrc or git's helpers",
            crate::url::mask_credentials(text)
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{} has a query or fragment",
            crate::url::mask_credentials(text)
        ));
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// `--lfs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Mirror LFS objects when upstream has an LFS server and the relayed
    /// commits hold pointers.
    #[default]
    Auto,
    /// As `auto`, and fail when that cannot be done.
    On,
    /// Git objects only.
    Off,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "on" => Some(Self::On),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// The remote helper's `--lfs`, from `KALANDRA_LFS` (`env` reads a
/// variable; unset: `auto`). Pure.
pub fn mode_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Mode, Error> {
    match env("KALANDRA_LFS").filter(|v| !v.trim().is_empty()) {
        None => Ok(Mode::Auto),
        Some(text) => Mode::parse(text.trim()).ok_or(Error::Setting {
            name: "KALANDRA_LFS",
            reason: format!("{text:?} is not auto, on or off"),
        }),
    }
}

/// What a sync did about LFS.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Distinct LFS objects the relayed commits point to.
    pub pointers: usize,
    /// Those downstream already had.
    pub present: usize,
    /// Those copied.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Why LFS was left alone under `auto`, if it was.
    pub skipped: Option<String>,
}

/// An LFS step failed; the push was not made. No variant holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("LFS: cannot set up a client for {endpoint}")]
    Client {
        endpoint: String,
        #[source]
        source: HttpError,
    },
    #[error("LFS: {side}'s batch request to {url} failed")]
    Request {
        side: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("LFS: {side}'s batch API at {url} answered HTTP {status}{detail}")]
    Batch {
        side: &'static str,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("LFS: {side}'s batch API at {url} answered what Kalandra cannot use: {reason}")]
    Answer {
        side: &'static str,
        url: String,
        reason: String,
    },
    #[error("LFS object {oid}: the {what} failed ({side}): {detail}")]
    Object {
        oid: String,
        side: &'static str,
        what: &'static str,
        detail: String,
    },
    #[error("LFS object {oid} from upstream is corrupt: {detail}; nothing was pushed")]
    Corrupt { oid: String, detail: String },
    #[error("LFS object {oid}: {side} refused it (code {code}: {message})")]
    Refused {
        side: &'static str,
        oid: String,
        code: u16,
        message: String,
    },
    #[error("LFS: {side} {url} has no LFS endpoint Kalandra can find (only http(s) URLs have one yet); use --lfs=off to relay git objects only")]
    NoEndpoint { side: &'static str, url: String },
    #[error("invalid {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    #[error("LFS: {side}'s git-lfs-authenticate over ssh failed: {reason}")]
    Authenticate { side: &'static str, reason: String },
    #[error("LFS: cannot find the pointers of the relayed commits: {reason}")]
    Scan { reason: String },
}

/// The LFS pointers in a pack of small blobs. Pure.
pub fn pointers_in(pack: &[u8], format: ObjectFormat) -> Result<BTreeSet<Pointer>, String> {
    let mut found = BTreeSet::new();
    CommitGraph::from_pack_with(pack, format, SCAN_LIMITS, &mut |blob| {
        if let Some(p) = pointer::parse(blob) {
            found.insert(p);
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(found)
}

/// The pointers in the answer to a scan fetch.
pub fn pointers_from(
    pack: Option<CommitsPack>,
    format: ObjectFormat,
) -> Result<BTreeSet<Pointer>, Error> {
    match pack {
        Some(CommitsPack::Bytes(bytes)) => {
            pointers_in(&bytes, format).map_err(|reason| Error::Scan { reason })
        }
        Some(CommitsPack::TooLarge { limit }) => Err(Error::Scan {
            reason: format!(
                "the relayed commits' trees and small blobs take more than {} (the scan's memory cap)",
                crate::progress::human_bytes(limit)
            ),
        }),
        // No new objects at all.
        None => Ok(BTreeSet::new()),
    }
}

/// Whether `side`'s endpoint is an LFS server: a batch request answers
/// 2xx there, and 404 elsewhere. A server that cannot be reached, or that
/// refuses the credentials, is an error.
pub async fn has_server(side: &Side<'_>, connect_timeout: Duration) -> Result<bool, Error> {
    let mut server = Server::new(side, "upstream", Service::UploadPack, connect_timeout).await?;
    server.probe().await
}

/// A side's LFS endpoint: `given` when set; else derived from an http(s)
/// URL; else, for an ssh URL, what `git-lfs-authenticate` answers over ssh
/// (`upload` for downstream). The URL whose user and password go with it,
/// and the headers to send. `None` when the side has none.
pub async fn resolve(
    repo: &crate::url::RepoUrl,
    given: Option<&Url>,
    side: &'static str,
    settings: &crate::transport::TransportSettings,
) -> Result<Option<(Url, Url, std::collections::BTreeMap<String, String>)>, Error> {
    if let Some((endpoint, credentials)) = endpoint::side(repo, given) {
        return Ok(Some((endpoint, credentials, Default::default())));
    }
    let crate::url::RepoUrl::Ssh { path, .. } = repo else {
        return Ok(None);
    };
    let command = endpoint::authenticate_command(path, side == "downstream");
    let failed = |reason: String| Error::Authenticate { side, reason };
    let out = match crate::transport::ssh_output(repo, &command, settings).await {
        Some(Ok(out)) => out,
        Some(Err(e)) => return Err(failed(crate::relay::chain(&e))),
        None => return Ok(None),
    };
    // A server without git-lfs-authenticate prints nothing (its error goes
    // to stderr): no LFS there.
    if out.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let (url, answer) = endpoint::parse_authenticated(&out).map_err(failed)?;
    Ok(Some((url.clone(), url, answer.header)))
}

/// One side's LFS server, as the sync sees it.
pub struct Side<'a> {
    pub endpoint: Url,
    /// Headers to send to it (`git-lfs-authenticate`'s `header`).
    pub headers: std::collections::BTreeMap<String, String>,
    /// The side's git URL: a user and password in it are sent to the LFS
    /// server too, as git-lfs sends them.
    pub repo: &'a Url,
    pub token: Option<&'a Token>,
}

/// Copies every object of `pointers` that downstream lacks from
/// upstream's LFS server to downstream's.
pub async fn mirror(
    pointers: &BTreeSet<Pointer>,
    up: Side<'_>,
    down: Side<'_>,
    connect_timeout: Duration,
    progress: &crate::progress::Progress,
) -> Result<Report, Error> {
    let mut report = Report {
        pointers: pointers.len(),
        ..Report::default()
    };
    let mut up = Server::new(&up, "upstream", Service::UploadPack, connect_timeout).await?;
    let mut down = Server::new(&down, "downstream", Service::ReceivePack, connect_timeout).await?;
    let all: Vec<Pointer> = pointers.iter().cloned().collect();
    for chunk in all.chunks(api::BATCH_SIZE) {
        let mut uploads = Vec::new();
        for answer in down.batch(Operation::Upload, chunk).await? {
            if let Some(error) = answer.error {
                return Err(Error::Refused {
                    side: "downstream",
                    oid: answer.oid,
                    code: error.code,
                    message: error.message,
                });
            }
            match answer.actions.and_then(|a| a.upload.map(|u| (u, a.verify))) {
                Some((upload, verify)) => uploads.push((answer.oid, upload, verify)),
                None => report.present += 1,
            }
        }
        if uploads.is_empty() {
            continue;
        }
        let wanted: Vec<Pointer> = chunk
            .iter()
            .filter(|p| uploads.iter().any(|(oid, ..)| *oid == p.oid))
            .cloned()
            .collect();
        progress.phase(&format!("LFS: copying {} objects", wanted.len()));
        let mut copies = Vec::new();
        for answer in up.batch(Operation::Download, &wanted).await? {
            if let Some(error) = answer.error {
                return Err(Error::Refused {
                    side: "upstream",
                    oid: answer.oid,
                    code: error.code,
                    message: error.message,
                });
            }
            let download =
                answer
                    .actions
                    .and_then(|a| a.download)
                    .ok_or_else(|| Error::Answer {
                        side: "upstream",
                        url: up.endpoint.to_string(),
                        reason: format!("no download action for {}", answer.oid),
                    })?;
            let (pointer, upload, verify) = wanted
                .iter()
                .find(|p| p.oid == answer.oid)
                .and_then(|p| {
                    uploads
                        .iter()
                        .find(|(oid, ..)| *oid == p.oid)
                        .map(|(_, u, v)| (p.clone(), u.clone(), v.clone()))
                })
                .ok_or_else(|| Error::Answer {
                    side: "upstream",
                    url: up.endpoint.to_string(),
                    reason: format!("an answer for {}, which was not asked for", answer.oid),
                })?;
            copies.push((pointer, download, upload, verify));
        }
        let copying: Vec<_> = copies
            .iter()
            .map(|(pointer, download, upload, verify)| {
                copy_with_retries(&up, &down, pointer, download, upload, verify.as_ref())
            })
            .collect();
        let mut running = futures_util::stream::iter(copying).buffer_unordered(CONCURRENT);
        while let Some(copied) = running.next().await {
            let bytes = copied?;
            report.objects += 1;
            report.bytes += bytes;
        }
    }
    Ok(report)
}

/// How many times one object is tried, as git-lfs retries a transfer.
const TRIES: u32 = 3;

/// [`transfer::copy`], tried again after a failed transfer (a reset, a
/// 5xx): a corrupt object is not.
async fn copy_with_retries(
    up: &Server,
    down: &Server,
    pointer: &Pointer,
    download: &api::Action,
    upload: &api::Action,
    verify: Option<&api::Action>,
) -> Result<u64, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        match transfer::copy(up, down, pointer, download, upload, verify).await {
            Err(error @ Error::Object { .. }) if tries < TRIES => {
                tracing::info!("{error}; trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(tries))).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfs_modes_parse() {
        assert_eq!(Mode::parse("auto"), Some(Mode::Auto));
        assert_eq!(Mode::parse("on"), Some(Mode::On));
        assert_eq!(Mode::parse("off"), Some(Mode::Off));
        assert_eq!(Mode::parse("yes"), None);
        assert_eq!(Mode::default(), Mode::Auto);
        assert_eq!(mode_from_env(|_| None).ok(), Some(Mode::Auto));
        assert_eq!(mode_from_env(|_| Some("off".into())).ok(), Some(Mode::Off));
        assert!(mode_from_env(|_| Some("maybe".into())).is_err());
        assert_eq!(
            parse_endpoint("https://lfs.example/a/").map(|u| u.to_string()),
            Ok("https://lfs.example/a".into())
        );
        assert!(parse_endpoint("https://u:secret@lfs.example/a")
            .expect_err("credentials")
            .contains("credentials"));
        assert!(parse_endpoint("ssh://lfs.example/a").is_err());
    }
}
