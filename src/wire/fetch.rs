//! Fetch responses: the section headers of a v2 `fetch` response
//! (gitprotocol-v2.txt, "fetch", output) and the acknowledgment lines of
//! both protocol versions (gitprotocol-pack.txt, "Packfile Negotiation").

use crate::oid::{InvalidObjectId, ObjectId};
use crate::wire::{pkt, shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("upstream sent an error: {0}")]
    Server(String),
    #[error("expected a fetch response section header (acknowledgments, shallow-info, wanted-refs, packfile-uris, packfile), got {found:?}")]
    UnknownSection { found: String },
    #[error("expected \"ACK <oid>[ continue|common|ready]\", \"NAK\" or \"ready\", got {found:?}")]
    MalformedAck { found: String },
    #[error("expected a valid object id in acknowledgment {found:?}")]
    InvalidOid {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Acknowledgments,
    ShallowInfo,
    WantedRefs,
    PackfileUris,
    Packfile,
}

/// The first line of each section of a v2 fetch response.
///
/// upload-pack may send `ERR <msg>` instead, for example for a want it does
/// not have ("not our ref"); that becomes [`Error::Server`].
pub fn parse_section_header(payload: &[u8]) -> Result<Section, Error> {
    if let Some(message) = pkt::error_line(payload) {
        return Err(Error::Server(String::from_utf8_lossy(message).into_owned()));
    }
    match trim_newline(payload) {
        b"acknowledgments" => Ok(Section::Acknowledgments),
        b"shallow-info" => Ok(Section::ShallowInfo),
        b"wanted-refs" => Ok(Section::WantedRefs),
        b"packfile-uris" => Ok(Section::PackfileUris),
        b"packfile" => Ok(Section::Packfile),
        _ => Err(Error::UnknownSection {
            found: shorten(payload),
        }),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// The server has this object too.
    Common(ObjectId),
    /// The server has none of the haves sent so far.
    Nak,
    /// The server can send a pack now; the client should send `done`.
    Ready,
}

/// Parses one acknowledgment line.
///
/// v2 sends `ACK <oid>`, `NAK` and a separate `ready`. v0 sends `ACK <oid>`
/// and, with `multi_ack`/`multi_ack_detailed`, `ACK <oid> continue`,
/// `ACK <oid> common` or `ACK <oid> ready` (gitprotocol-pack.txt,
/// "Packfile Negotiation"). `ACK <oid> ready` becomes [`Ack::Ready`]: being
/// ready is what changes the client's next step; the id is common either way.
pub fn parse_ack_line(payload: &[u8]) -> Result<Ack, Error> {
    if let Some(message) = pkt::error_line(payload) {
        return Err(Error::Server(String::from_utf8_lossy(message).into_owned()));
    }
    let line = trim_newline(payload);
    match line {
        b"NAK" => return Ok(Ack::Nak),
        b"ready" => return Ok(Ack::Ready),
        _ => {}
    }
    let malformed = || Error::MalformedAck {
        found: shorten(payload),
    };
    let rest = line.strip_prefix(b"ACK ").ok_or_else(malformed)?;
    let (hex, status) = match rest.iter().position(|&b| b == b' ') {
        Some(space) => (&rest[..space], Some(&rest[space + 1..])),
        None => (rest, None),
    };
    let oid = ObjectId::from_hex(hex).map_err(|source| Error::InvalidOid {
        found: shorten(payload),
        source,
    })?;
    match status {
        None | Some(b"continue") | Some(b"common") => Ok(Ack::Common(oid)),
        Some(b"ready") => Ok(Ack::Ready),
        Some(_) => Err(malformed()),
    }
}

/// Whether a payload of a v0 fetch response is a negotiation line that
/// comes before the side-band pack: `ACK`/`NAK`, or the `shallow`/
/// `unshallow` lines of a shallow fetch (gitprotocol-pack.txt, "Packfile
/// Negotiation" and "Shallow Clone and Fetch"). Side-band packets start with
/// byte 1, 2 or 3 and are never negotiation lines.
pub fn is_v0_negotiation_line(payload: &[u8]) -> bool {
    match payload.first() {
        None | Some(1..=3) => false,
        Some(_) => {
            let line = trim_newline(payload);
            line == b"NAK"
                || line.starts_with(b"ACK ")
                || line.starts_with(b"shallow ")
                || line.starts_with(b"unshallow ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pkt::{data_payloads, decode, Decoded, Packet};

    fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("valid test id")
    }

    /// upload-pack 2.47.3, v2 fetch with a have it knows and no `done`:
    /// acknowledgments, delimiter, then the packfile section (pack cut short).
    const V2_ACK_READY: &[u8] = b"0014acknowledgments\n\
0031ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
000aready\n\
0001000dpackfile\n\
00db\x01PACK\0\0\0\x02\0\0\0\x03";

    /// The same with a have it does not know.
    const V2_NAK: &[u8] = b"0014acknowledgments\n0008NAK\n0000";

    /// The same with `done`: no acknowledgments, the pack and progress at once.
    const V2_DONE: &[u8] = b"000dpackfile\n\
0023\x02Enumerating objects: 4, done.\n";

    /// upload-pack refusing a want in v2.
    const V2_NOT_OUR_REF: &[u8] =
        b"0049ERR upload-pack: not our ref 1111111111111111111111111111111111111111";

    /// v0 stateless upload-pack, `multi_ack_detailed`, one have and `done`.
    const V0_DETAILED: &[u8] = b"0038ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf common\n\
0031ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
00db\x01PACK\0\0\0\x02\0\0\0\x03";

    /// The same with plain `multi_ack`.
    const V0_MULTI_ACK: &[u8] = b"003aACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf continue\n\
0031ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
00ef\x01PACK\0\0\0\x02";

    /// v0 with `deepen 1`: the shallow list comes before any ACK/NAK.
    const V0_SHALLOW: &[u8] = b"0034shallow a46acda9c6bbc9781e9380077fcaf50499e5402d\n0000";

    /// The start of the (cut short) band 1 payload that follows the ACKs.
    fn pack_start(recording: &[u8]) -> &[u8] {
        let at = recording
            .windows(5)
            .position(|w| w == b"\x01PACK")
            .expect("recording has a pack");
        &recording[at..]
    }

    const COMMON: &str = "890c228dd533332a4add2fb4e2ec8c3971b3f9cf";

    #[test]
    fn parses_recorded_v2_sections_and_acks() {
        let payloads = data_payloads(V2_ACK_READY);
        assert_eq!(
            parse_section_header(payloads[0]),
            Ok(Section::Acknowledgments)
        );
        assert_eq!(parse_ack_line(payloads[1]), Ok(Ack::Common(oid(COMMON))));
        assert_eq!(parse_ack_line(payloads[2]), Ok(Ack::Ready));
        assert_eq!(parse_section_header(payloads[3]), Ok(Section::Packfile));

        let payloads = data_payloads(V2_NAK);
        assert_eq!(
            parse_section_header(payloads[0]),
            Ok(Section::Acknowledgments)
        );
        assert_eq!(parse_ack_line(payloads[1]), Ok(Ack::Nak));

        let payloads = data_payloads(V2_DONE);
        assert_eq!(parse_section_header(payloads[0]), Ok(Section::Packfile));
        for (header, section) in [
            (&b"shallow-info\n"[..], Section::ShallowInfo),
            (b"wanted-refs\n", Section::WantedRefs),
            (b"packfile-uris", Section::PackfileUris),
        ] {
            assert_eq!(parse_section_header(header), Ok(section));
        }
    }

    #[test]
    fn server_errors_are_reported() {
        let Ok(Decoded::Complete {
            packet: Packet::Data(payload),
            ..
        }) = decode(V2_NOT_OUR_REF)
        else {
            panic!("recording is one data packet");
        };
        let err = parse_section_header(payload).expect_err("ERR line");
        assert_eq!(
            err,
            Error::Server(
                "upload-pack: not our ref 1111111111111111111111111111111111111111".into()
            )
        );
        assert!(err.to_string().contains("not our ref"), "{err}");
        assert!(matches!(parse_ack_line(payload), Err(Error::Server(_))));
    }

    #[test]
    fn parses_recorded_v0_acks() {
        let payloads = data_payloads(V0_DETAILED);
        assert!(is_v0_negotiation_line(payloads[0]));
        assert!(is_v0_negotiation_line(payloads[1]));
        assert!(!is_v0_negotiation_line(pack_start(V0_DETAILED)));
        assert_eq!(parse_ack_line(payloads[0]), Ok(Ack::Common(oid(COMMON))));
        assert_eq!(parse_ack_line(payloads[1]), Ok(Ack::Common(oid(COMMON))));

        let payloads = data_payloads(V0_MULTI_ACK);
        assert_eq!(parse_ack_line(payloads[0]), Ok(Ack::Common(oid(COMMON))));
        assert!(!is_v0_negotiation_line(pack_start(V0_MULTI_ACK)));

        let line = format!("ACK {COMMON} ready\n");
        assert_eq!(parse_ack_line(line.as_bytes()), Ok(Ack::Ready));
    }

    #[test]
    fn classifies_v0_pre_pack_lines() {
        let payloads = data_payloads(V0_SHALLOW);
        assert!(is_v0_negotiation_line(payloads[0]));
        assert!(is_v0_negotiation_line(b"NAK\n"));
        assert!(is_v0_negotiation_line(b"NAK"));
        assert!(is_v0_negotiation_line(
            b"unshallow a46acda9c6bbc9781e9380077fcaf50499e5402d\n"
        ));
        assert!(!is_v0_negotiation_line(b"\x02Counting objects\r"));
        assert!(!is_v0_negotiation_line(b"\x03fatal"));
        assert!(!is_v0_negotiation_line(b""));
        assert!(!is_v0_negotiation_line(b"PACK"));
    }

    #[test]
    fn truncated_lines_are_errors() {
        let payloads = data_payloads(V0_DETAILED);
        let err = parse_ack_line(&payloads[0][..20]).expect_err("short id");
        assert!(err.to_string().contains("ACK 890c228dd533332a"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
        let err = parse_ack_line(b"AC").expect_err("cut keyword");
        assert!(err.to_string().contains("\"AC\""), "{err}");
        let err = parse_section_header(b"packfi").expect_err("cut header");
        assert!(err.to_string().contains("\"packfi\""), "{err}");
    }

    #[test]
    fn malformed_lines_are_quoted() {
        let err = parse_section_header(b"garbage\n").expect_err("unknown");
        assert!(err.to_string().contains("got \"garbage\\n\""), "{err}");
        let line = format!("ACK {COMMON} maybe\n");
        let err = parse_ack_line(line.as_bytes()).expect_err("unknown status");
        assert!(
            err.to_string().contains(&format!("ACK {COMMON} maybe")),
            "{err}"
        );
        let err = parse_ack_line(b"nak\n").expect_err("lowercase");
        assert!(err.to_string().contains("\"nak\\n\""), "{err}");
    }
}
