//! `fetch` (the v0 fallback, when git does not use `stateless-connect`):
//! the objects git asks for are fetched from UP and indexed into the local
//! repository, as `git fetch-pack` would.
//!
//! Like fetch-pack, the new pack is kept (`index-pack --keep`): until git
//! has written the refs that reach its objects, nothing else does, and a
//! concurrent `git gc` could drop it. The helper names the `.keep` file to
//! git (`lock <file>`, gitremote-helpers(7) "fetch"), which removes it once
//! the refs are written.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helper::local::LocalRepo;
use crate::helper::tips::AdvertisedTips;
use crate::oid::ObjectId;
use crate::progress::Progress;
use crate::relay;
use crate::session::upload_pack::{self, FetchArgs};
use crate::transport::TransportSettings;
use crate::url::RepoUrl;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Relay(#[from] relay::Error),
    #[error(transparent)]
    Upstream(#[from] upload_pack::Error),
    #[error("could not run git index-pack in the local repository")]
    IndexPack(#[source] std::io::Error),
    #[error("git index-pack failed on the pack from upstream: {0}")]
    IndexPackFailed(String),
    #[error("expected \"keep\\t<pack hash>\" or \"pack\\t<pack hash>\" from git index-pack, got {found:?}")]
    IndexPackOutput { found: String },
    #[error("could not find the local repository's object directory for the kept pack")]
    ObjectDirectory,
    /// git's own words for the same case (fetch-pack.c), and why.
    #[error(
        "Server does not allow request for unadvertised object {oid}: upstream {repo} speaks \
         protocol v0, which serves only the tips of its refs"
    )]
    Unadvertised { oid: ObjectId, repo: String },
}

/// What `git index-pack --stdin --keep` said on stdout first (pack-write.c
/// `index_pack_lockfile`): the new pack's hash, and whether it wrote a
/// `.keep` file for it (`keep`; `pack` when the pack was already there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPack {
    pub hash: ObjectId,
    pub kept: bool,
}

impl IndexedPack {
    pub fn parse(stdout: &[u8]) -> Result<Self, Error> {
        let found = || Error::IndexPackOutput {
            found: crate::wire::shorten(stdout),
        };
        let line = stdout.split(|&b| b == b'\n').next().ok_or_else(found)?;
        let (kept, hash) = if let Some(hash) = line.strip_prefix(b"keep\t") {
            (true, hash)
        } else if let Some(hash) = line.strip_prefix(b"pack\t") {
            (false, hash)
        } else {
            return Err(found());
        };
        let hash = ObjectId::from_hex(hash).map_err(|_| found())?;
        Ok(Self { hash, kept })
    }
}

/// Fetches `wants` from `upstream` into the local repository; returns the
/// `.keep` file that protects the new pack, for git to remove.
pub async fn fetch(
    upstream: &RepoUrl,
    settings: &TransportSettings,
    wants: Vec<ObjectId>,
    progress: &Progress,
    show_progress: bool,
) -> Result<Option<PathBuf>, Error> {
    let mut session = relay::connect_upstream(upstream, settings).await?;
    if !session.is_v2() {
        // Asked anyway, a v0 server refuses in its own way: git with `not
        // our ref`, JGit by hanging up, dulwich by waiting for the idle
        // timeout. So say it here, as git's fetch-pack does.
        let listed = match session.list_refs(&[String::new()]).await {
            Ok(listed) => listed,
            Err(error) => {
                session.close().await;
                return Err(error.into());
            }
        };
        let advertised = AdvertisedTips::new(listed.refs, listed.peeled);
        if let Some(oid) = wants
            .iter()
            .find(|w| advertised.direct(w).as_ref() != Some(*w))
        {
            session.close().await;
            return Err(Error::Unadvertised {
                oid: oid.clone(),
                repo: upstream.to_string(),
            });
        }
    }
    let haves = LocalRepo.ref_tips().await;
    let args = FetchArgs {
        wants,
        haves,
        thin_pack: true,
        ofs_delta: true,
        progress: show_progress,
        filter: None,
    };
    let mut index = Command::new("git")
        .args(["index-pack", "--stdin", "--fix-thin"])
        .arg(format!("--keep=git-remote-kalandra {}", std::process::id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(Error::IndexPack)?;
    let mut stdin = index.stdin.take().expect("because stdin was piped");
    {
        let mut stream = session.fetch(&args, progress).await?;
        while let Some(chunk) = stream.next_chunk().await? {
            stdin.write_all(chunk).await.map_err(Error::IndexPack)?;
        }
    }
    stdin.shutdown().await.map_err(Error::IndexPack)?;
    drop(stdin);
    let output = index.wait_with_output().await.map_err(Error::IndexPack)?;
    session.close().await;
    if !output.status.success() {
        return Err(Error::IndexPackFailed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let pack = IndexedPack::parse(&output.stdout)?;
    if !pack.kept {
        return Ok(None);
    }
    let objects = LocalRepo
        .object_directory()
        .await
        .ok_or(Error::ObjectDirectory)?;
    Ok(Some(
        objects
            .join("pack")
            .join(format!("pack-{}.keep", pack.hash)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_index_pack_prints() {
        // git 2.47.3 `index-pack --stdin --keep=...`: a new pack, then the
        // same pack again (already there, so not kept).
        let pack =
            IndexedPack::parse(b"keep\t394b43bd5adf19e1cc5b2aa177e05eb01e494872\n").expect("valid");
        assert_eq!(
            pack.hash.as_str(),
            "394b43bd5adf19e1cc5b2aa177e05eb01e494872"
        );
        assert!(pack.kept);
        let pack =
            IndexedPack::parse(b"pack\t394b43bd5adf19e1cc5b2aa177e05eb01e494872\n").expect("valid");
        assert!(!pack.kept);
        let sha256 = format!("keep\t{}\n", "a".repeat(64));
        assert!(IndexedPack::parse(sha256.as_bytes()).expect("valid").kept);
    }

    #[test]
    fn refuses_other_output_quoting_it() {
        for bad in [&b""[..], b"keep\n", b"keep\tnot-a-hash\n", b"lock\tx\n"] {
            let err = IndexedPack::parse(bad).expect_err("invalid");
            assert!(
                err.to_string()
                    .contains(&format!("{:?}", String::from_utf8_lossy(bad))),
                "{err}"
            );
        }
    }
}
