//! The `git-remote-kalandra` remote helper: `kalandra::UP=>DOWN` URLs.
//!
//! Reads go to UP (a v2 proxy, or `list`/`fetch` as the v0 fallback);
//! pushes make DOWN's refs match the local refspecs with the objects
//! relayed from UP, through the same [`crate::relay`] as `kalandra sync`.
//! [`command`] parses git's lines and holds every reply string.

pub mod command;
pub mod fetch;
pub mod local;
pub mod options;
pub mod pair;
pub mod proxy;
pub mod push;
pub mod quote;
pub mod tips;

use crate::oid::ObjectFormat;
use crate::relay;
use crate::transport::TransportSettings;
use crate::url::RepoUrl;

/// A ref list for `list` or `list for-push`, ready to print.
#[derive(Debug, Clone)]
pub struct RefList {
    pub object_format: ObjectFormat,
    /// `(oid, name)`; symbolic refs as `("@<target>", name)`.
    pub lines: Vec<(String, String)>,
}

impl RefList {
    /// The reply to `list`: optional `:object-format`, one line per ref,
    /// then a blank line.
    pub fn render(&self, with_object_format: bool) -> String {
        let mut out = String::new();
        if with_object_format {
            out.push_str(&format!(":object-format {}\n", self.object_format));
        }
        for (value, name) in &self.lines {
            out.push_str(&format!("{value} {name}\n"));
        }
        out.push('\n');
        out
    }
}

/// `list`: UP's refs and where its HEAD points.
pub async fn list_upstream(
    upstream: &RepoUrl,
    settings: &TransportSettings,
) -> Result<RefList, relay::Error> {
    let mut session = relay::connect_upstream(upstream, settings).await?;
    let refs = session.list_refs(&["refs/".to_owned()]).await;
    let object_format = session.object_format();
    session.close().await;
    let refs = refs?;
    // HEAD first and a `^{}` line after each annotated tag, as upload-pack
    // advertises them: git follows tags during fetch only when it sees
    // what they peel to.
    let mut lines = Vec::new();
    match (refs.head_target, refs.head) {
        (Some(target), _) => lines.push((format!("@{target}"), "HEAD".to_owned())),
        (None, Some(oid)) => lines.push((oid.to_string(), "HEAD".to_owned())),
        (None, None) => {}
    }
    let peeled: std::collections::BTreeMap<String, crate::oid::ObjectId> =
        refs.peeled.into_iter().collect();
    for (name, oid) in refs.refs {
        let peel = peeled
            .get(&name)
            .map(|p| (p.to_string(), format!("{name}^{{}}")));
        lines.push((oid.to_string(), name));
        lines.extend(peel);
    }
    Ok(RefList {
        object_format,
        lines,
    })
}

/// `list for-push`: DOWN's refs under `refs/`. Not HEAD, since git would
/// otherwise send `push :HEAD` for `--mirror` (receive-pack cannot update
/// HEAD); and not the `.have` lines receive-pack advertises for the tips of
/// an alternate object store (gitprotocol-pack.txt, "Reference
/// Discovery"): they name objects, not refs, and git refuses the whole push
/// on them as a "funny refname".
pub async fn list_downstream(
    downstream: &RepoUrl,
    settings: &TransportSettings,
) -> Result<RefList, relay::Error> {
    let session = relay::connect_downstream(downstream, settings).await?;
    let object_format = session.object_format();
    let lines = session
        .advertisement()
        .refs
        .iter()
        .filter(|r| r.name.starts_with("refs/"))
        .map(|r| (r.oid.to_string(), r.name.clone()))
        .collect();
    session.close().await;
    Ok(RefList {
        object_format,
        lines,
    })
}
