//! `fetch` (the v0 fallback, when git does not use `stateless-connect`):
//! the objects git asks for are fetched from UP and indexed into the local
//! repository, as `git fetch-pack` would.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::helper::local::LocalRepo;
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
}

/// Fetches `wants` from `upstream` into the local repository.
pub async fn fetch(
    upstream: &RepoUrl,
    settings: &TransportSettings,
    wants: Vec<ObjectId>,
    progress: &Progress,
    show_progress: bool,
) -> Result<(), Error> {
    let mut session = relay::connect_upstream(upstream, settings).await?;
    let haves = LocalRepo.ref_tips().await;
    let args = FetchArgs {
        wants,
        haves,
        thin_pack: true,
        ofs_delta: true,
        progress: show_progress,
    };
    let mut index = Command::new("git")
        .args(["index-pack", "--stdin", "--fix-thin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
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
    Ok(())
}
