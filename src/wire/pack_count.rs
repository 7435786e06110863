//! Counts a pack's objects as its bytes stream past, for the progress bar.
//!
//! A pack entry says how big its object is once inflated, not how many
//! bytes it takes in the pack (gitformat-pack.txt, "pack-*.pack files have
//! the following format"): the only way to find where one entry ends and
//! the next begins is to run its zlib stream to the end. So the counter
//! inflates every entry into a small scratch buffer that is thrown away.
//! Memory stays fixed (the inflate state and 32 KiB); the cost is CPU,
//! which is why the relay counts only when a person watches a terminal.
//!
//! Nothing here judges the pack: downstream's index-pack does. On bytes that
//! make no sense the counter stops and keeps its last count.
//!
//! Hand-written rather than gix-pack's `BytesToEntriesIter`: that one reads
//! from a blocking `BufRead` (the relay has async chunks) and collects each
//! entry's compressed bytes in a `Vec` even when told to ignore them, so one
//! large blob would be held whole in memory. The inflating is gix-zlib's.

use gix_zlib::{Decompress, FlushDecompress, Status};

const PACK_HEADER_LEN: usize = 12;
/// No valid entry header is longer: a 64-bit size, a 64-bit offset and a
/// SHA-256 id, each with room to spare.
const MAX_ENTRY_HEADER_LEN: usize = 64;
const SCRATCH_LEN: usize = 32 * 1024;

/// A pack's objects counted as its bytes arrive, in chunks of any size.
pub struct ObjectCounter {
    hash_len: usize,
    total: Option<u32>,
    done: u32,
    state: State,
    header: Vec<u8>,
    inflate: Decompress,
    scratch: Box<[u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    PackHeader,
    EntryHeader,
    Inflating,
    /// All entries seen (the trailer's checksum follows), or given up.
    Done,
}

impl ObjectCounter {
    /// `hash_len` is the object id length in bytes (20 for SHA-1, 32 for
    /// SHA-256), which REF_DELTA entries carry.
    pub fn new(hash_len: usize) -> Self {
        Self {
            hash_len,
            total: None,
            done: 0,
            state: State::PackHeader,
            header: Vec::with_capacity(MAX_ENTRY_HEADER_LEN),
            inflate: Decompress::new(),
            scratch: vec![0; SCRATCH_LEN].into_boxed_slice(),
        }
    }

    /// The objects the pack header announced, once it has arrived.
    pub fn total(&self) -> Option<u32> {
        self.total
    }

    /// The entries that have arrived whole.
    pub fn done(&self) -> u32 {
        self.done
    }

    /// Takes the next bytes of the pack; returns [`Self::done`].
    pub fn push(&mut self, mut data: &[u8]) -> u32 {
        while !data.is_empty() {
            match self.state {
                State::Done => break,
                State::PackHeader => {
                    let take = (PACK_HEADER_LEN - self.header.len()).min(data.len());
                    self.header.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.header.len() == PACK_HEADER_LEN {
                        if !self.header.starts_with(b"PACK") {
                            self.state = State::Done;
                            break;
                        }
                        let n = &self.header[8..12];
                        let total = u32::from_be_bytes([n[0], n[1], n[2], n[3]]);
                        self.total = Some(total);
                        self.header.clear();
                        self.state = if total == 0 {
                            State::Done
                        } else {
                            State::EntryHeader
                        };
                    }
                }
                State::EntryHeader => {
                    self.header.push(data[0]);
                    data = &data[1..];
                    match entry_header_len(&self.header, self.hash_len) {
                        Ok(Some(_)) => {
                            self.header.clear();
                            self.inflate.reset();
                            self.state = State::Inflating;
                        }
                        Ok(None) if self.header.len() < MAX_ENTRY_HEADER_LEN => {}
                        _ => self.state = State::Done,
                    }
                }
                State::Inflating => {
                    let (in_before, out_before) =
                        (self.inflate.total_in(), self.inflate.total_out());
                    let status =
                        self.inflate
                            .decompress(data, &mut self.scratch, FlushDecompress::None);
                    let consumed = (self.inflate.total_in() - in_before) as usize;
                    let produced = self.inflate.total_out() - out_before;
                    data = &data[consumed..];
                    match status {
                        Ok(Status::StreamEnd) => {
                            self.done += 1;
                            self.state = if Some(self.done) == self.total {
                                State::Done
                            } else {
                                State::EntryHeader
                            };
                        }
                        // Input left but nothing moved: not a zlib stream.
                        Ok(_) if consumed == 0 && produced == 0 && !data.is_empty() => {
                            self.state = State::Done
                        }
                        Ok(_) => {}
                        Err(_) => self.state = State::Done,
                    }
                }
            }
        }
        self.done
    }
}

/// The length of the entry header at the start of `buf`: `Ok(None)` when
/// more bytes are needed, `Err` for a type no pack holds. The header is a
/// type and size varint, then for OFS_DELTA (6) an offset varint, for
/// REF_DELTA (7) the base's object id.
fn entry_header_len(buf: &[u8], hash_len: usize) -> Result<Option<usize>, ()> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let kind = (first >> 4) & 7;
    if kind == 0 || kind == 5 {
        return Err(());
    }
    let mut at = 0;
    while buf[at] & 0x80 != 0 {
        at += 1;
        if at >= buf.len() {
            return Ok(None);
        }
    }
    at += 1;
    match kind {
        6 => loop {
            let Some(&byte) = buf.get(at) else {
                return Ok(None);
            };
            at += 1;
            if byte & 0x80 == 0 {
                return Ok(Some(at));
            }
        },
        7 if buf.len() < at + hash_len => Ok(None),
        7 => Ok(Some(at + hash_len)),
        _ => Ok(Some(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut out =
            gix_zlib::stream::deflate::Write::new(Vec::new(), gix_zlib::Compression::DEFAULT);
        out.write_all(data).expect("in memory");
        out.flush().expect("in memory");
        out.into_inner()
    }

    /// A pack with a blob big enough to span many chunks, a commit, an
    /// OFS_DELTA and a REF_DELTA entry (their delta data is not checked;
    /// only the framing matters here), and a trailer.
    fn pack(hash_len: usize) -> Vec<u8> {
        let mut pack = b"PACK\0\0\0\x02\0\0\0\x04".to_vec();
        let big: Vec<u8> = (0..25_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        pack.extend(entry_header(3, big.len() as u64));
        pack.extend(deflate(&big));
        let commit = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nhi\n";
        pack.extend(entry_header(1, commit.len() as u64));
        pack.extend(deflate(commit));
        let delta = b"\x05\x05\x90\x05";
        pack.extend(entry_header(6, delta.len() as u64));
        pack.extend([0x91, 0x2e]); // an offset varint of two bytes
        pack.extend(deflate(delta));
        pack.extend(entry_header(7, delta.len() as u64));
        pack.extend(std::iter::repeat_n(0xab, hash_len));
        pack.extend(deflate(delta));
        pack.extend(std::iter::repeat_n(0xcd, hash_len));
        pack
    }

    fn entry_header(kind: u8, mut size: u64) -> Vec<u8> {
        let mut out = vec![(kind << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            *out.last_mut().expect("one byte") |= 0x80;
            out.push((size & 0x7f) as u8);
            size >>= 7;
        }
        out
    }

    #[test]
    fn counts_every_entry_whatever_the_chunk_size() {
        for hash_len in [20, 32] {
            let pack = pack(hash_len);
            for chunk in [1, 2, 7, 13, 4096, 65515, pack.len()] {
                let mut counter = ObjectCounter::new(hash_len);
                let mut seen = Vec::new();
                for piece in pack.chunks(chunk) {
                    seen.push(counter.push(piece));
                }
                assert_eq!(counter.total(), Some(4), "chunk {chunk}");
                assert_eq!(counter.done(), 4, "chunk {chunk}, hash {hash_len}");
                assert!(seen.windows(2).all(|w| w[0] <= w[1]), "never goes back");
                if chunk < 4096 {
                    assert!(
                        seen.contains(&1),
                        "counts as the bytes arrive, not at the end"
                    );
                }
            }
        }
    }

    #[test]
    fn the_big_object_is_counted_only_once_it_has_fully_arrived() {
        let pack = pack(20);
        let mut counter = ObjectCounter::new(20);
        assert_eq!(counter.push(&pack[..1000]), 0);
        assert_eq!(counter.total(), Some(4));
    }

    #[test]
    fn nonsense_stops_the_count_without_panicking() {
        let mut counter = ObjectCounter::new(20);
        assert_eq!(counter.push(b"NOPE\0\0\0\x02\0\0\0\x04 more"), 0);
        assert_eq!(counter.total(), None);

        let mut counter = ObjectCounter::new(20);
        let mut bytes = b"PACK\0\0\0\x02\0\0\0\x02".to_vec();
        bytes.extend(entry_header(1, 3));
        bytes.extend(b"not zlib at all");
        bytes.extend(entry_header(1, 3));
        assert_eq!(counter.push(&bytes), 0);
        assert_eq!(counter.push(&deflate(b"abc")), 0, "stays stopped");

        let mut counter = ObjectCounter::new(20);
        assert_eq!(counter.push(b"PACK\0\0\0\x02\0\0\0\x01\x50"), 0, "type 5");
        assert_eq!(counter.push(&[0xff; 100]), 0);
    }

    #[test]
    fn an_empty_pack_is_done_at_once() {
        let mut counter = ObjectCounter::new(20);
        assert_eq!(counter.push(b"PACK\0\0\0\x02\0\0\0\0"), 0);
        assert_eq!(counter.total(), Some(0));
        assert_eq!(counter.push(&[0; 20]), 0);
    }
}
