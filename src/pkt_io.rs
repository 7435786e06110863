//! Reading pkt-lines from any async byte stream.
//!
//! The framing itself is decoded by [`crate::wire::pkt`]; this only keeps a
//! buffer filled. Memory is bounded by one maximal pkt-line (65520 bytes),
//! however long the stream.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::limits::{self, Limits};
use crate::progress::Side;
use crate::trace::{Direction, PacketTrace};
use crate::wire::pkt::{self, Decoded, Packet};

/// Enough for one maximal pkt-line plus room to read ahead.
const BUFFER_LEN: usize = 128 * 1024;

/// Reading a pkt-line failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the connection failed while reading")]
    Io(#[source] std::io::Error),
    #[error("the stream ended in the middle of a pkt-line (after {partial:?})")]
    Truncated { partial: String },
    #[error("malformed pkt-line")]
    Malformed(#[source] pkt::Error),
    #[error(transparent)]
    Limit(limits::Error),
}

/// What a pkt-line holds, remembered while the decoder's borrow ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Data,
    Flush,
    Delim,
    ResponseEnd,
}

/// Reads one pkt-line at a time, borrowing payloads from its own buffer.
pub struct PacketReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    last_payload: std::ops::Range<usize>,
    limits: Limits,
    trace: Option<PacketTrace>,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            last_payload: 0..0,
            limits: Limits::default(),
            trace: None,
        }
    }

    /// Traces every pkt-line read as coming from `side`, when the
    /// environment asks for a packet trace ([`crate::trace`]).
    pub fn with_trace(mut self, side: Side) -> Self {
        self.trace = PacketTrace::from_env(side, Direction::Read);
        self
    }

    /// The caps [`Self::read_until_flush`] holds each list to.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The next pkt-line, or `None` when the stream ends cleanly between
    /// two pkt-lines. An end inside a pkt-line is [`Error::Truncated`].
    pub async fn next(&mut self) -> Result<Option<Packet<'_>>, Error> {
        loop {
            match pkt::decode(&self.buf[self.start..self.end]).map_err(Error::Malformed)? {
                Decoded::Complete { packet, consumed } => {
                    if let Some(trace) = &mut self.trace {
                        trace.packet(packet);
                    }
                    let (kind, data_len) = match packet {
                        Packet::Data(data) => (Kind::Data, data.len()),
                        Packet::Flush => (Kind::Flush, 0),
                        Packet::Delim => (Kind::Delim, 0),
                        Packet::ResponseEnd => (Kind::ResponseEnd, 0),
                    };
                    let data_start = self.start + consumed - data_len;
                    self.start += consumed;
                    self.last_payload = data_start..self.start;
                    return Ok(Some(match kind {
                        Kind::Data => Packet::Data(&self.buf[data_start..self.start]),
                        Kind::Flush => Packet::Flush,
                        Kind::Delim => Packet::Delim,
                        Kind::ResponseEnd => Packet::ResponseEnd,
                    }));
                }
                Decoded::Incomplete { .. } => {
                    if !self.fill().await? {
                        if self.start == self.end {
                            return Ok(None);
                        }
                        return Err(Error::Truncated {
                            partial: crate::wire::shorten(&self.buf[self.start..self.end]),
                        });
                    }
                }
            }
        }
    }

    /// The payload of the data pkt-line that [`Self::next`] returned last.
    /// Valid until the next call to `next`.
    pub fn last_payload(&self) -> &[u8] {
        &self.buf[self.last_payload.clone()]
    }

    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self
            .inner
            .read(&mut self.buf[self.end..])
            .await
            .map_err(Error::Io)?;
        self.end += n;
        Ok(n > 0)
    }

    /// Reads data pkt-lines until a flush, handing each payload to `line`.
    /// Used for advertisements and other flush-terminated lists, which are
    /// held to the reader's [`Limits`]: past them, [`Error::Limit`] names
    /// `list` and the cap.
    pub async fn read_until_flush<E>(
        &mut self,
        list: &'static str,
        mut line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, Error> {
        let mut budget = self.limits.budget(list);
        loop {
            match self.next().await? {
                Some(Packet::Data(data)) => {
                    budget.take_line(data.len()).map_err(Error::Limit)?;
                    if let Err(e) = line(data) {
                        return Ok(Err(e));
                    }
                }
                Some(_) => return Ok(Ok(())),
                None => {
                    return Err(Error::Truncated {
                        partial: "end of stream before the closing flush-pkt".into(),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_ends_cleanly() {
        let bytes: &[u8] = b"0009hello0000";
        let mut reader = PacketReader::new(bytes);
        assert_eq!(
            reader.next().await.expect("ok"),
            Some(Packet::Data(b"hello"))
        );
        assert_eq!(reader.next().await.expect("ok"), Some(Packet::Flush));
        assert_eq!(reader.next().await.expect("ok"), None);
    }

    #[tokio::test]
    async fn eof_inside_a_line_is_an_error() {
        let bytes: &[u8] = b"0009hel";
        let mut reader = PacketReader::new(bytes);
        let err = reader.next().await.expect_err("truncated");
        assert!(matches!(err, Error::Truncated { .. }), "{err}");
        assert!(err.to_string().contains("0009hel"), "{err}");
    }

    #[tokio::test]
    async fn maximal_lines_fit() {
        let mut bytes = b"fff0".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 0xfff0 - 4));
        bytes.extend_from_slice(&bytes.clone());
        let mut reader = PacketReader::new(&bytes[..]);
        for _ in 0..2 {
            match reader.next().await.expect("ok") {
                Some(Packet::Data(d)) => assert_eq!(d.len(), 0xfff0 - 4),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(reader.next().await.expect("ok"), None);
    }

    #[tokio::test]
    async fn lists_past_the_caps_fail_naming_the_cap() {
        let mut bytes = Vec::new();
        for _ in 0..5 {
            bytes.extend_from_slice(b"000aline\n\n");
        }
        bytes.extend_from_slice(pkt::FLUSH);
        let read = |limits: Limits| {
            let bytes = bytes.clone();
            async move {
                let mut reader = PacketReader::new(&bytes[..]).with_limits(limits);
                reader
                    .read_until_flush("test list", |_| Ok::<(), ()>(()))
                    .await
            }
        };
        let exact = Limits {
            max_refs: 5,
            max_advertisement_bytes: 50,
        };
        assert!(matches!(read(exact).await, Ok(Ok(()))));
        let err = read(Limits {
            max_refs: 4,
            ..exact
        })
        .await
        .expect_err("lines");
        assert!(err.to_string().contains("more than 4 lines"), "{err}");
        let err = read(Limits {
            max_advertisement_bytes: 49,
            ..exact
        })
        .await
        .expect_err("bytes");
        assert!(
            err.to_string()
                .contains("test list is larger than 49 bytes"),
            "{err}"
        );
    }
}
