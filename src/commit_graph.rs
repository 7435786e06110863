//! The commits and tags of a small pack, parsed in memory: which parents
//! each commit names and what each tag points to. This is all the ancestry
//! check ([`crate::ancestry`]) needs from a commits-only (`filter tree:0`)
//! pack.
//!
//! Framing, inflating and the trailer check are gitoxide's
//! (`gix_pack::data::input::BytesToEntriesIter`); hashing and commit and tag
//! parsing are `gix-object`'s. Delta resolution is done here: gix-pack's
//! delta application and delta tree are crate-private, and its public
//! resolvers need the pack as a file on disk, which a relay never writes.
//! Resolving is a short loop over objects held in memory, which the caps in
//! [`Limits`] bound.

use std::collections::HashMap;

use gix_pack::data::entry::Header;
use gix_pack::data::input::{BytesToEntriesIter, EntryDataMode, Mode};

use crate::oid::{ObjectFormat, ObjectId};

/// Caps on what one pack may make this process hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The pack as received.
    pub max_pack_bytes: u64,
    /// All commits and tags, inflated, together.
    pub max_object_bytes: u64,
}

impl Default for Limits {
    /// 64 MiB of pack and 256 MiB of inflated commits: about a million
    /// commits of a typical project, far more than any divergence a mirror
    /// should follow without a person looking at it.
    fn default() -> Self {
        Self {
            max_pack_bytes: 64 << 20,
            max_object_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the commits-only pack is larger than {limit} bytes; refusing to hold it in memory")]
    PackTooLarge { limit: u64 },
    #[error("the commits in the pack inflate to more than {limit} bytes; refusing to hold them in memory")]
    ObjectsTooLarge { limit: u64 },
    #[error("malformed pack: {0}")]
    Pack(String),
    #[error("malformed {kind} object {oid} in the pack: {reason}")]
    Object {
        kind: &'static str,
        oid: ObjectId,
        reason: String,
    },
    #[error("the pack's delta at offset {offset} cannot be resolved: {reason}")]
    Delta { offset: u64, reason: String },
}

/// What a tag object points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTarget {
    pub target: ObjectId,
    /// `commit`, `tag`, `tree` or `blob`, from the tag's `type` line.
    pub kind: &'static str,
}

/// Where peeling an object within the pack ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peeled {
    /// A commit (possibly outside the pack: the tag chain named it).
    Commit(ObjectId),
    /// A tag chain ending in a tree or a blob.
    NotACommit { kind: &'static str },
    /// Neither a commit nor a tag of this pack.
    Unknown,
}

/// The commits and tags of one pack.
#[derive(Debug, Default)]
pub struct CommitGraph {
    commits: HashMap<ObjectId, Vec<ObjectId>>,
    tags: HashMap<ObjectId, TagTarget>,
}

/// One pack entry as read: its kind (a delta's is its base's, learnt when
/// resolved), where its compressed bytes are in the pack, and its inflated
/// bytes while they are needed (empty until then, and again once every
/// delta on it is applied: a walk of a long history holds the pack and
/// little more).
struct Slot {
    offset: u64,
    kind: Option<gix_object::Kind>,
    base: Base,
    compressed: std::ops::Range<usize>,
    size: u64,
    data: Vec<u8>,
}

impl Slot {
    /// The entry's bytes as stored (a delta's instructions), inflated.
    fn inflate(&self, pack: &[u8]) -> Result<Vec<u8>, Error> {
        let compressed = pack.get(self.compressed.clone()).unwrap_or_default();
        inflate(compressed, self.size).map_err(|reason| Error::Delta {
            offset: self.offset,
            reason,
        })
    }
}

enum Base {
    None,
    Offset(u64),
    Id(gix_hash::ObjectId),
}

impl CommitGraph {
    /// Parses a whole pack (header, entries, trailer) held in memory.
    pub fn from_pack(pack: &[u8], format: ObjectFormat, limits: Limits) -> Result<Self, Error> {
        Self::from_pack_with(pack, format, limits, &mut |_| {})
    }

    /// [`Self::from_pack`], handing each blob of the pack (resolved from
    /// its delta if it is one) to `on_blob`.
    pub fn from_pack_with(
        pack: &[u8],
        format: ObjectFormat,
        limits: Limits,
        on_blob: &mut dyn FnMut(&[u8]),
    ) -> Result<Self, Error> {
        Self::from_pack_visit(pack, format, limits, &mut |kind, _, data| {
            if kind == gix_object::Kind::Blob {
                on_blob(data);
            }
        })
    }

    /// [`Self::from_pack`], handing every object of the pack (resolved from
    /// its delta if it is one) to `on_object` with its kind and id.
    pub fn from_pack_visit(
        pack: &[u8],
        format: ObjectFormat,
        limits: Limits,
        on_object: &mut dyn FnMut(gix_object::Kind, &ObjectId, &[u8]),
    ) -> Result<Self, Error> {
        if pack.len() as u64 > limits.max_pack_bytes {
            return Err(Error::PackTooLarge {
                limit: limits.max_pack_bytes,
            });
        }
        let hash_kind = hash_kind(format);
        // The iterator checks the framing and the trailer; the compressed
        // bytes stay in `pack`, inflated only when resolved.
        let entries = BytesToEntriesIter::new_from_header(
            pack,
            Mode::Verify,
            EntryDataMode::Ignore,
            hash_kind,
        )
        .map_err(|e| Error::Pack(e.to_string()))?;
        let mut budget = limits.max_object_bytes;
        let mut slots: Vec<Slot> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::Pack(e.to_string()))?;
            let size = entry.decompressed_size;
            let (kind, base) = match entry.header {
                Header::Commit => (Some(gix_object::Kind::Commit), Base::None),
                Header::Tag => (Some(gix_object::Kind::Tag), Base::None),
                Header::Tree => (Some(gix_object::Kind::Tree), Base::None),
                Header::Blob => (Some(gix_object::Kind::Blob), Base::None),
                Header::OfsDelta { base_distance } => {
                    let base = Header::verified_base_pack_offset(entry.pack_offset, base_distance)
                        .ok_or_else(|| Error::Delta {
                            offset: entry.pack_offset,
                            reason: format!("base distance {base_distance} points before the pack"),
                        })?;
                    (None, Base::Offset(base))
                }
                Header::RefDelta { base_id } => (None, Base::Id(base_id)),
            };
            // Trees and blobs only come from a server that ignored the
            // filter; they count against the same budget as commits.
            budget = budget.checked_sub(size).ok_or(Error::ObjectsTooLarge {
                limit: limits.max_object_bytes,
            })?;
            let start = entry.pack_offset + u64::from(entry.header_size);
            let end = start + entry.compressed_size;
            let range = |at: u64| usize::try_from(at).map_err(|e| Error::Pack(e.to_string()));
            slots.push(Slot {
                offset: entry.pack_offset,
                kind,
                base,
                compressed: range(start)?..range(end)?,
                size,
                data: Vec::new(),
            });
        }
        let mut graph = CommitGraph::default();
        resolve(
            pack,
            &mut slots,
            hash_kind,
            &mut budget,
            limits,
            &mut graph,
            on_object,
        )?;
        Ok(graph)
    }

    /// The parents of `commit`, if it is in the pack.
    pub fn parents(&self, commit: &ObjectId) -> Option<&[ObjectId]> {
        self.commits.get(commit).map(Vec::as_slice)
    }

    /// `commit` as the graph holds it, if it is in the pack.
    pub fn commit(&self, commit: &ObjectId) -> Option<&ObjectId> {
        self.commits.get_key_value(commit).map(|(id, _)| id)
    }

    pub fn contains_commit(&self, commit: &ObjectId) -> bool {
        self.commits.contains_key(commit)
    }

    pub fn commits(&self) -> impl Iterator<Item = (&ObjectId, &[ObjectId])> {
        self.commits.iter().map(|(c, p)| (c, p.as_slice()))
    }

    pub fn commit_count(&self) -> usize {
        self.commits.len()
    }

    pub fn tag(&self, tag: &ObjectId) -> Option<&TagTarget> {
        self.tags.get(tag)
    }

    /// Follows tags of this pack from `oid` until something else.
    pub fn peel(&self, oid: &ObjectId) -> Peeled {
        let mut current = oid.clone();
        // A chain longer than the number of tags has a cycle, which only a
        // hash collision could make; stop rather than loop.
        for _ in 0..=self.tags.len() {
            if self.commits.contains_key(&current) {
                return Peeled::Commit(current);
            }
            match self.tags.get(&current) {
                Some(TagTarget { target, kind }) => match *kind {
                    "tag" => current = target.clone(),
                    "commit" => return Peeled::Commit(target.clone()),
                    other => return Peeled::NotACommit { kind: other },
                },
                None => return Peeled::Unknown,
            }
        }
        Peeled::Unknown
    }
}

fn hash_kind(format: ObjectFormat) -> gix_hash::Kind {
    match format {
        ObjectFormat::Sha1 => gix_hash::Kind::Sha1,
        ObjectFormat::Sha256 => gix_hash::Kind::Sha256,
    }
}

fn to_oid(id: &gix_hash::ObjectId) -> ObjectId {
    ObjectId::from_hex(id.to_hex().to_string().as_bytes())
        .expect("because gix-hash renders a valid hex id")
}

fn inflate(compressed: &[u8], size: u64) -> Result<Vec<u8>, String> {
    let size = usize::try_from(size).map_err(|_| format!("object of {size} bytes"))?;
    let mut out = vec![0; size];
    let (_, _, written) = gix_zlib::Inflate::default()
        .once(compressed, &mut out)
        .map_err(|e| format!("zlib: {e}"))?;
    if written != size {
        return Err(format!("inflated to {written} bytes, header said {size}"));
    }
    Ok(out)
}

/// Resolves every delta to a full object and records commits and tags,
/// bases before their deltas: a walk from the non-delta entries down to
/// the deltas on them, linear in the number of entries whatever their order.
fn resolve(
    pack: &[u8],
    slots: &mut [Slot],
    hash_kind: gix_hash::Kind,
    budget: &mut u64,
    limits: Limits,
    graph: &mut CommitGraph,
    on_object: &mut dyn FnMut(gix_object::Kind, &ObjectId, &[u8]),
) -> Result<(), Error> {
    let by_offset: HashMap<u64, usize> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| (s.offset, i))
        .collect();
    let mut offset_children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut id_children: HashMap<gix_hash::ObjectId, Vec<usize>> = HashMap::new();
    let mut ready = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        match &slot.base {
            Base::None => ready.push(i),
            Base::Offset(offset) => {
                let base = by_offset.get(offset).ok_or_else(|| Error::Delta {
                    offset: slot.offset,
                    reason: format!("no entry starts at base offset {offset}"),
                })?;
                offset_children.entry(*base).or_default().push(i);
            }
            Base::Id(id) => id_children.entry(*id).or_default().push(i),
        }
    }
    let mut resolved = 0;
    while let Some(i) = ready.pop() {
        resolved += 1;
        let kind = slots[i]
            .kind
            .expect("because a slot is ready once its kind is known");
        if matches!(slots[i].base, Base::None) {
            slots[i].data = slots[i].inflate(pack)?;
        }
        let id = gix_object::compute_hash(hash_kind, kind, &slots[i].data)
            .map_err(|e| Error::Pack(e.to_string()))?;
        record(graph, kind, &id, &slots[i].data, hash_kind)?;
        on_object(kind, &to_oid(&id), &slots[i].data);
        let mut children = offset_children.remove(&i).unwrap_or_default();
        children.extend(id_children.remove(&id).unwrap_or_default());
        for child in children {
            let delta = slots[child].inflate(pack)?;
            let full = apply_delta(&slots[i].data, &delta, budget, limits).map_err(|reason| {
                Error::Delta {
                    offset: slots[child].offset,
                    reason,
                }
            })?;
            slots[child].data = full;
            slots[child].kind = Some(kind);
            ready.push(child);
        }
        // Recorded, and every delta on it applied: its bytes are done with
        // (a walk of a long history would otherwise hold them all).
        slots[i].data = Vec::new();
    }
    if resolved < slots.len() {
        let stuck = slots
            .iter()
            .find(|s| s.kind.is_none())
            .map_or(0, |s| s.offset);
        return Err(Error::Delta {
            offset: stuck,
            reason: "its base is not in the pack (a thin pack, or a delta cycle)".into(),
        });
    }
    Ok(())
}

fn record(
    graph: &mut CommitGraph,
    kind: gix_object::Kind,
    id: &gix_hash::ObjectId,
    data: &[u8],
    hash_kind: gix_hash::Kind,
) -> Result<(), Error> {
    let oid = to_oid(id);
    match kind {
        gix_object::Kind::Commit => {
            let commit =
                gix_object::CommitRef::from_bytes(data, hash_kind).map_err(|e| Error::Object {
                    kind: "commit",
                    oid: oid.clone(),
                    reason: e.to_string(),
                })?;
            let parents = commit.parents().map(|p| to_oid(&p)).collect();
            graph.commits.insert(oid, parents);
        }
        gix_object::Kind::Tag => {
            let tag =
                gix_object::TagRef::from_bytes(data, hash_kind).map_err(|e| Error::Object {
                    kind: "tag",
                    oid: oid.clone(),
                    reason: e.to_string(),
                })?;
            let kind = match tag.target_kind {
                gix_object::Kind::Commit => "commit",
                gix_object::Kind::Tag => "tag",
                gix_object::Kind::Tree => "tree",
                gix_object::Kind::Blob => "blob",
            };
            graph.tags.insert(
                oid,
                TagTarget {
                    target: to_oid(&tag.target()),
                    kind,
                },
            );
        }
        gix_object::Kind::Tree | gix_object::Kind::Blob => {}
    }
    Ok(())
}

/// git's delta format (gitformat-pack, "Deltified representation"): the
/// base's size and the result's size as little-endian base-128 numbers,
/// then instructions that copy a range of the base or insert literal bytes.
fn apply_delta(
    base: &[u8],
    delta: &[u8],
    budget: &mut u64,
    limits: Limits,
) -> Result<Vec<u8>, String> {
    let mut at = 0;
    let base_size = read_size(delta, &mut at)?;
    let result_size = read_size(delta, &mut at)?;
    if base_size != base.len() as u64 {
        return Err(format!(
            "the delta expects a base of {base_size} bytes, the base has {}",
            base.len()
        ));
    }
    *budget = budget.checked_sub(result_size).ok_or(format!(
        "the commits in the pack inflate to more than {} bytes; refusing to hold them in memory",
        limits.max_object_bytes
    ))?;
    let mut out = Vec::with_capacity(result_size as usize);
    while at < delta.len() {
        let op = delta[at];
        at += 1;
        if op & 0x80 != 0 {
            let mut offset = 0usize;
            let mut size = 0usize;
            for (bit, shift) in [(0x01, 0), (0x02, 8), (0x04, 16), (0x08, 24)] {
                if op & bit != 0 {
                    offset |= usize::from(*delta.get(at).ok_or("truncated copy")?) << shift;
                    at += 1;
                }
            }
            for (bit, shift) in [(0x10, 0), (0x20, 8), (0x40, 16)] {
                if op & bit != 0 {
                    size |= usize::from(*delta.get(at).ok_or("truncated copy")?) << shift;
                    at += 1;
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            let end = offset.checked_add(size).ok_or("copy range overflows")?;
            out.extend_from_slice(base.get(offset..end).ok_or("copy beyond the base")?);
        } else if op != 0 {
            let end = at + usize::from(op);
            out.extend_from_slice(delta.get(at..end).ok_or("truncated insert")?);
            at = end;
        } else {
            return Err("reserved delta instruction 0".into());
        }
        if out.len() as u64 > result_size {
            return Err("the delta writes more than its stated size".into());
        }
    }
    if out.len() as u64 != result_size {
        return Err(format!(
            "the delta produced {} bytes, it stated {result_size}",
            out.len()
        ));
    }
    Ok(out)
}

fn read_size(delta: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut size = 0u64;
    let mut shift = 0;
    loop {
        let byte = *delta.get(*at).ok_or("truncated delta header")?;
        *at += 1;
        if shift > 56 {
            return Err("delta header size too large".into());
        }
        size |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_copy_and_insert_instructions() {
        let base = b"hello, world";
        // base size 12, result size 11: copy "hello" (offset 0, size 5), insert " you".. etc.
        let delta = [12, 11, 0x90, 5, 6, b',', b' ', b'y', b'o', b'u', b'!'];
        let mut budget = 100;
        let out = apply_delta(base, &delta, &mut budget, Limits::default()).expect("valid delta");
        assert_eq!(out, b"hello, you!");
        assert_eq!(budget, 89);
    }

    #[test]
    fn rejects_bad_deltas_with_reasons() {
        let limits = Limits::default();
        let mut budget = 100;
        let wrong_base = [5, 1, 1, b'x'];
        assert!(apply_delta(b"abc", &wrong_base, &mut budget, limits)
            .expect_err("a bad delta")
            .contains("base of 5"));
        let beyond = [3, 4, 0x91, 1, 4];
        assert!(apply_delta(b"abc", &beyond, &mut budget, limits)
            .expect_err("a bad delta")
            .contains("beyond the base"));
        let reserved = [3, 1, 0];
        assert!(apply_delta(b"abc", &reserved, &mut budget, limits)
            .expect_err("a bad delta")
            .contains("reserved"));
        let mut tiny = 2;
        let big = [3, 3, 0x90, 3];
        assert!(apply_delta(b"abc", &big, &mut tiny, limits)
            .expect_err("a bad delta")
            .contains("inflate to more than"));
    }

    #[test]
    fn the_empty_pack_has_no_commits() {
        let graph = CommitGraph::from_pack(
            ObjectFormat::Sha1.empty_pack(),
            ObjectFormat::Sha1,
            Limits::default(),
        )
        .expect("empty pack");
        assert_eq!(graph.commit_count(), 0);
    }

    #[test]
    fn garbage_and_oversized_packs_are_errors() {
        let format = ObjectFormat::Sha1;
        assert!(matches!(
            CommitGraph::from_pack(b"NOPE\0\0\0\x02\0\0\0\0", format, Limits::default()),
            Err(Error::Pack(_))
        ));
        let tiny = Limits {
            max_pack_bytes: 8,
            max_object_bytes: 8,
        };
        assert!(matches!(
            CommitGraph::from_pack(format.empty_pack(), format, tiny),
            Err(Error::PackTooLarge { limit: 8 })
        ));
    }
}
