//! pkt-line framing: four hex digits of length (counting themselves), then
//! the payload. `0000`, `0001` and `0002` are the special flush, delimiter
//! and response-end packets (gitprotocol-common.txt, "pkt-line Format";
//! gitprotocol-v2.txt, "Packet-Line Framing").
//!
//! Decoding is delegated to [`gix_packetline::decode::streaming`]; this
//! module maps its result into types that do not leak the dependency.

use crate::wire::shorten;

pub const FLUSH: &[u8] = b"0000";
pub const DELIM: &[u8] = b"0001";
pub const RESPONSE_END: &[u8] = b"0002";

/// The largest pkt-line is 65520 bytes including its 4 byte header
/// (`LARGE_PACKET_MAX` in git's pkt-line.h).
pub const MAX_DATA_LEN: usize = 65516;

const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("expected a pkt-line header of 4 hex digits (0000-0002 or 0004-fff0), got {found:?}")]
    InvalidHeader {
        found: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    #[error("expected a pkt-line payload of at most {MAX_DATA_LEN} bytes, got {len} bytes starting {found:?}")]
    PayloadTooLong { len: usize, found: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Data(&'a [u8]),
    Flush,
    Delim,
    ResponseEnd,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// One packet, which took `consumed` bytes of the buffer (header included).
    Complete { packet: Packet<'a>, consumed: usize },
    /// The buffer holds only part of a packet: at least `needed` more bytes must be read.
    Incomplete { needed: usize },
}

/// Decodes the packet at the start of `buf`.
///
/// Lines starting with `ERR ` come back as ordinary [`Packet::Data`]: only the
/// caller knows whether such a line can be an error at that point (inside a
/// pack on band 1, `ERR ` is just data). See [`error_line`].
pub fn decode(buf: &[u8]) -> Result<Decoded<'_>, Error> {
    // git's own reader accepts "0004" as an empty data packet even though
    // gitprotocol-common.txt says implementations SHOULD NOT send it;
    // gix rejects it, so it is handled here to be as lenient as git.
    if buf.starts_with(b"0004") {
        return Ok(Decoded::Complete {
            packet: Packet::Data(&[]),
            consumed: HEADER_LEN,
        });
    }
    let stream = gix_packetline::decode::streaming(buf).map_err(|source| Error::InvalidHeader {
        found: shorten(&buf[..buf.len().min(HEADER_LEN)]),
        source: Box::new(source),
    })?;
    Ok(match stream {
        gix_packetline::decode::Stream::Complete {
            line,
            bytes_consumed,
        } => {
            let packet = match line {
                gix_packetline::PacketLineRef::Data(data) => Packet::Data(data),
                gix_packetline::PacketLineRef::Flush => Packet::Flush,
                gix_packetline::PacketLineRef::Delimiter => Packet::Delim,
                gix_packetline::PacketLineRef::ResponseEnd => Packet::ResponseEnd,
            };
            Decoded::Complete {
                packet,
                consumed: bytes_consumed,
            }
        }
        gix_packetline::decode::Stream::Incomplete { bytes_needed } => Decoded::Incomplete {
            needed: bytes_needed,
        },
    })
}

/// Appends one data packet carrying `payload` unchanged.
pub fn encode_data(payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    if payload.len() > MAX_DATA_LEN {
        return Err(Error::PayloadTooLong {
            len: payload.len(),
            found: shorten(payload),
        });
    }
    let len = payload.len() + HEADER_LEN;
    out.extend_from_slice(format!("{len:04x}").as_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends one text packet: `line` terminated by exactly one `\n`.
///
/// A line longer than [`MAX_DATA_LEN`] with its newline is an error, and
/// nothing is appended: a ref name can be that long (git sets no limit), a
/// pkt-line cannot.
pub fn encode_text(line: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    let newline = if line.ends_with('\n') { 0 } else { 1 };
    let len = line.len() + newline;
    if len > MAX_DATA_LEN {
        return Err(Error::PayloadTooLong {
            len,
            found: shorten(line.as_bytes()),
        });
    }
    out.extend_from_slice(format!("{:04x}", len + HEADER_LEN).as_bytes());
    out.extend_from_slice(line.as_bytes());
    if newline == 1 {
        out.push(b'\n');
    }
    Ok(())
}

/// Returns the message of an `ERR <msg>` packet, without its newline.
///
/// A server may send such a packet instead of any response
/// (gitprotocol-pack.txt, "pkt-line Format": "ERR" packets).
pub fn error_line(payload: &[u8]) -> Option<&[u8]> {
    payload.strip_prefix(b"ERR ").map(crate::wire::trim_newline)
}

/// Test helper: the payloads of the data packets in `buf` up to the first
/// flush (or the end), for feeding recorded server output to line parsers.
#[cfg(test)]
pub(crate) fn data_payloads(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut payloads = Vec::new();
    while let Ok(Decoded::Complete { packet, consumed }) = decode(buf) {
        buf = &buf[consumed..];
        match packet {
            Packet::Data(data) => payloads.push(data),
            Packet::Flush => break,
            Packet::Delim | Packet::ResponseEnd => {}
        }
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GIT_PROTOCOL=version=2 git upload-pack --advertise-refs` (git 2.47.3).
    const V2_CAPS: &[u8] = b"000eversion 2\n\
0015agent=git/2.47.3\n\
0013ls-refs=unborn\n\
0020fetch=shallow wait-for-done\n\
0012server-option\n\
0017object-format=sha1\n\
0000";

    /// v2 `fetch` with haves but without `done` (git 2.47.3 upload-pack):
    /// sections separated by a delimiter, the pack itself cut after the header.
    const V2_FETCH_HEAD: &[u8] = b"0014acknowledgments\n\
0031ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
000aready\n\
0001000dpackfile\n";

    /// upload-pack refusing a want (git 2.47.3, v2 fetch).
    const ERR_NOT_OUR_REF: &[u8] =
        b"0049ERR upload-pack: not our ref 1111111111111111111111111111111111111111";

    fn decode_all(mut buf: &[u8]) -> Vec<Packet<'_>> {
        let mut packets = Vec::new();
        while !buf.is_empty() {
            match decode(buf).expect("valid recording") {
                Decoded::Complete { packet, consumed } => {
                    packets.push(packet);
                    buf = &buf[consumed..];
                }
                Decoded::Incomplete { needed } => panic!("incomplete, {needed} more"),
            }
        }
        packets
    }

    #[test]
    fn decodes_recorded_v2_capability_advertisement() {
        let packets = decode_all(V2_CAPS);
        assert_eq!(
            packets,
            vec![
                Packet::Data(b"version 2\n"),
                Packet::Data(b"agent=git/2.47.3\n"),
                Packet::Data(b"ls-refs=unborn\n"),
                Packet::Data(b"fetch=shallow wait-for-done\n"),
                Packet::Data(b"server-option\n"),
                Packet::Data(b"object-format=sha1\n"),
                Packet::Flush,
            ]
        );
    }

    #[test]
    fn decodes_delimiter_and_response_end() {
        let packets = decode_all(V2_FETCH_HEAD);
        assert_eq!(packets[3], Packet::Delim);
        assert_eq!(packets[4], Packet::Data(b"packfile\n"));
        assert_eq!(
            decode(b"0002rest").expect("valid"),
            Decoded::Complete {
                packet: Packet::ResponseEnd,
                consumed: 4
            }
        );
    }

    #[test]
    fn err_lines_are_plain_data() {
        let packets = decode_all(ERR_NOT_OUR_REF);
        let Packet::Data(payload) = packets[0] else {
            panic!("expected data, got {:?}", packets[0]);
        };
        assert_eq!(
            error_line(payload),
            Some(&b"upload-pack: not our ref 1111111111111111111111111111111111111111"[..])
        );
        assert_eq!(error_line(b"ERR oops\n"), Some(&b"oops"[..]));
        assert_eq!(error_line(b"packfile\n"), None);
    }

    #[test]
    fn truncated_input_asks_for_more() {
        assert_eq!(
            decode(b"00").expect("short header"),
            Decoded::Incomplete { needed: 2 }
        );
        assert_eq!(
            decode(&V2_CAPS[..8]).expect("short payload"),
            Decoded::Incomplete { needed: 6 }
        );
        assert_eq!(
            decode(b"").expect("empty"),
            Decoded::Incomplete { needed: 4 }
        );
    }

    #[test]
    fn empty_data_packet_is_accepted_like_git() {
        assert_eq!(
            decode(b"0004").expect("empty packet"),
            Decoded::Complete {
                packet: Packet::Data(b""),
                consumed: 4
            }
        );
    }

    #[test]
    fn malformed_headers_are_quoted() {
        for bad in [&b"zzzzversion"[..], b"0003x", b"fff1"] {
            let err = decode(bad).expect_err("malformed");
            let quoted = String::from_utf8_lossy(&bad[..4]).into_owned();
            assert!(err.to_string().contains(&quoted), "{err}");
            assert!(err.to_string().contains("expected"), "{err}");
            assert!(std::error::Error::source(&err).is_some());
        }
    }

    #[test]
    fn encodes_data_and_text() {
        let mut out = Vec::new();
        encode_text("command=ls-refs", &mut out).expect("short");
        encode_text("agent=git/2.47.3\n", &mut out).expect("short");
        out.extend_from_slice(DELIM);
        encode_data(b"\x01PACK", &mut out).expect("short");
        out.extend_from_slice(FLUSH);
        assert_eq!(
            out,
            b"0014command=ls-refs\n0015agent=git/2.47.3\n00010009\x01PACK0000"
        );
    }

    #[test]
    fn encode_round_trips_largest_payload() {
        let payload = vec![b'x'; MAX_DATA_LEN];
        let mut out = Vec::new();
        encode_data(&payload, &mut out).expect("fits");
        assert_eq!(&out[..4], b"fff0");
        assert_eq!(
            decode(&out).expect("valid"),
            Decoded::Complete {
                packet: Packet::Data(&payload),
                consumed: MAX_DATA_LEN + 4
            }
        );
    }

    #[test]
    fn encode_rejects_oversized_payload() {
        let payload = vec![b'y'; MAX_DATA_LEN + 1];
        let mut out = Vec::new();
        let err = encode_data(&payload, &mut out).expect_err("too long");
        assert!(err.to_string().contains("yyyy"), "{err}");
        assert!(err.to_string().contains("65517"), "{err}");
        assert!(out.is_empty());
    }

    #[test]
    fn encode_text_rejects_an_oversized_line_instead_of_panicking() {
        let mut out = Vec::new();
        let fits = "z".repeat(MAX_DATA_LEN - 1);
        encode_text(&fits, &mut out).expect("fits with its newline");
        assert_eq!(&out[..4], b"fff0");
        out.clear();
        let err = encode_text(&"z".repeat(MAX_DATA_LEN), &mut out).expect_err("too long");
        assert!(err.to_string().contains("65517"), "{err}");
        assert!(out.is_empty());
    }
}
