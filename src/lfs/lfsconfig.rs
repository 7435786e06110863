//! `.lfsconfig` at upstream's HEAD: the file a repository commits to name
//! its LFS server (`lfs.url`), which git-lfs reads below the user's own
//! settings. Without a local copy, it is fetched alone: HEAD's commit, its
//! root tree and the small blobs beside it (`deepen 1`,
//! `filter combine:tree:2+blob:limit=1024`: depth 0 is the root tree,
//! depth 1 its entries), a few KiB.
//!
//! Hand-written reading of the one key: git's config syntax is read for
//! `[lfs] url = ...` (sections and keys case-insensitive, `#`/`;`
//! comments, double quotes), not included files or other keys, which
//! git-lfs does not take from `.lfsconfig` either for the endpoint.

use std::collections::HashMap;

use url::Url;

use crate::commit_graph::{CommitGraph, Limits};
use crate::oid::{ObjectFormat, ObjectId};

/// The filter of the fetch.
pub const FILTER: &str = "combine:tree:2+blob:limit=1024";

/// What the fetch may hold.
pub const LIMITS: Limits = Limits {
    max_pack_bytes: 16 << 20,
    max_object_bytes: 64 << 20,
};

/// The `lfs.url` that `.lfsconfig` at `head` names, from the fetched pack,
/// or `None` when there is no such file or key. Pure.
pub fn url_in(pack: &[u8], format: ObjectFormat, head: &ObjectId) -> Result<Option<Url>, String> {
    let hash_kind = match format {
        ObjectFormat::Sha1 => gix_hash::Kind::Sha1,
        ObjectFormat::Sha256 => gix_hash::Kind::Sha256,
    };
    let mut trees: HashMap<ObjectId, Vec<u8>> = HashMap::new();
    let mut blobs: HashMap<ObjectId, Vec<u8>> = HashMap::new();
    let mut root = None;
    CommitGraph::from_pack_visit(pack, format, LIMITS, &mut |kind, id, data| match kind {
        gix_object::Kind::Commit if id == head => {
            root = gix_object::CommitRef::from_bytes(data, hash_kind)
                .ok()
                .and_then(|c| ObjectId::from_hex(c.tree().to_hex().to_string().as_bytes()).ok());
        }
        gix_object::Kind::Tree => {
            trees.insert(id.clone(), data.to_vec());
        }
        gix_object::Kind::Blob => {
            blobs.insert(id.clone(), data.to_vec());
        }
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    let Some(tree) = root.and_then(|r| trees.remove(&r)) else {
        return Ok(None);
    };
    let tree = gix_object::TreeRef::from_bytes(&tree, hash_kind).map_err(|e| e.to_string())?;
    let Some(entry) = tree
        .entries
        .iter()
        .find(|e| e.filename == ".lfsconfig" && e.mode.is_blob())
    else {
        return Ok(None);
    };
    let oid =
        ObjectId::from_hex(entry.oid.to_hex().to_string().as_bytes()).map_err(|e| e.to_string())?;
    let Some(text) = blobs.get(&oid) else {
        return Ok(None);
    };
    match lfs_url(&String::from_utf8_lossy(text)) {
        Some(raw) => super::parse_endpoint(&raw).map(Some),
        None => Ok(None),
    }
}

/// The value of `lfs.url` in git config text, the last one winning. Pure.
pub fn lfs_url(text: &str) -> Option<String> {
    let mut section = String::new();
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or_default().trim();
            section = name.to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if section == "lfs" && key.trim().eq_ignore_ascii_case("url") {
            found = Some(unquote(value.trim()));
        }
    }
    found
}

/// A config value without its comment and quotes.
fn unquote(value: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => break,
            c => out.push(c),
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfsconfig_url_is_read_as_git_reads_it() {
        assert_eq!(
            lfs_url("[lfs]\n\turl = https://lfs.example/org/repo\n").as_deref(),
            Some("https://lfs.example/org/repo")
        );
        assert_eq!(
            lfs_url("# comment\n[LFS]\n  URL = \"https://a.example/x\" ; why\n[lfs]\nurl=https://b.example/y\n")
                .as_deref(),
            Some("https://b.example/y")
        );
        assert_eq!(lfs_url("[remote \"origin\"]\n\turl = https://x/\n"), None);
        assert_eq!(lfs_url("[lfs]\n\tfetchexclude = *.iso\n"), None);
        assert_eq!(
            lfs_url("[core]\n\tbare\n[lfs]\n\turl = https://c.example/z\n").as_deref(),
            Some("https://c.example/z")
        );
    }
}
