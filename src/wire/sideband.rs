//! Side-band multiplexing: with `side-band`/`side-band-64k` (always in v2's
//! packfile section) each pkt-line starts with a band byte: 1 pack data,
//! 2 progress text, 3 a fatal error message (gitprotocol-pack.txt,
//! "Packfile Data"; gitprotocol-v2.txt, "packfile").

use crate::wire::shorten;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected a side-band packet starting with band 1, 2 or 3, got an empty packet")]
    Empty,
    #[error("expected a side-band packet starting with band 1, 2 or 3, got {found:?}")]
    UnknownBand { found: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band<'a> {
    Data(&'a [u8]),
    Progress(&'a [u8]),
    /// The remote gave up; the message says why. Nothing follows.
    Fatal(&'a [u8]),
}

/// Splits the band byte off a side-band pkt-line payload.
pub fn demux(payload: &[u8]) -> Result<Band<'_>, Error> {
    match payload.split_first() {
        None => Err(Error::Empty),
        Some((1, rest)) => Ok(Band::Data(rest)),
        Some((2, rest)) => Ok(Band::Progress(rest)),
        Some((3, rest)) => Ok(Band::Fatal(rest)),
        Some(_) => Err(Error::UnknownBand {
            found: shorten(payload),
        }),
    }
}

/// Progress text is "\r"- and "\n"-separated; split it for display.
///
/// A progress meter rewrites its line with `\r` and only ends it with `\n`
/// once done, and one message may be split across packets, so the pieces
/// are what to show, not whole lines.
pub fn progress_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\r' || b == b'\n')
        .filter(|piece| !piece.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pkt::data_payloads;

    /// upload-pack 2.47.3, v2 fetch with `done`: the packfile section starts
    /// with progress on band 2.
    const PROGRESS: &[u8] = b"000dpackfile\n\
0023\x02Enumerating objects: 4, done.\n\
0022\x02Counting objects:  25% (1/4)\r\
0022\x02Counting objects:  50% (2/4)\r\
0029\x02Counting objects: 100% (4/4), done.\n";

    /// upload-pack 2.47.3 on a repository with a missing blob.
    const FATAL: &[u8] = b"000dpackfile\n\
0044\x02fatal: unable to read 61780798228d17af2d34fce4cfbdf35556832472\n\
0047\x03aborting due to possible repository corruption on the remote side.";

    /// receive-pack 2.47.3 with `side-band-64k`, push refused by a
    /// pre-receive hook: hook output on band 2, the report-status pkt-lines
    /// nested in band 1, then the outer flush.
    const RECEIVE_PACK: &[u8] = b"0015\x02no pushes today\n\
0048\x01000eunpack ok\n\
0031ng refs/heads/main pre-receive hook declined\n\
00000000";

    #[test]
    fn demuxes_recorded_progress() {
        let payloads = data_payloads(PROGRESS);
        let texts: Vec<_> = payloads[1..]
            .iter()
            .map(|p| match demux(p) {
                Ok(Band::Progress(text)) => text,
                other => panic!("expected progress, got {other:?}"),
            })
            .collect();
        assert_eq!(texts[0], b"Enumerating objects: 4, done.\n");
        let joined = texts.concat();
        let lines: Vec<_> = progress_lines(&joined).collect();
        assert_eq!(
            lines,
            [
                &b"Enumerating objects: 4, done."[..],
                b"Counting objects:  25% (1/4)",
                b"Counting objects:  50% (2/4)",
                b"Counting objects: 100% (4/4), done.",
            ]
        );
    }

    #[test]
    fn demuxes_recorded_fatal() {
        let payloads = data_payloads(FATAL);
        assert!(matches!(demux(payloads[1]), Ok(Band::Progress(_))));
        assert_eq!(
            demux(payloads[2]),
            Ok(Band::Fatal(
                &b"aborting due to possible repository corruption on the remote side."[..]
            ))
        );
    }

    #[test]
    fn demuxes_recorded_receive_pack_output() {
        let payloads = data_payloads(RECEIVE_PACK);
        assert_eq!(
            demux(payloads[0]),
            Ok(Band::Progress(&b"no pushes today\n"[..]))
        );
        let Ok(Band::Data(inner)) = demux(payloads[1]) else {
            panic!("expected band 1");
        };
        assert_eq!(
            data_payloads(inner),
            [
                &b"unpack ok\n"[..],
                b"ng refs/heads/main pre-receive hook declined\n"
            ]
        );
    }

    #[test]
    fn truncated_and_malformed_packets() {
        assert_eq!(demux(b""), Err(Error::Empty));
        // A packet holding nothing but the band byte is valid, if useless.
        assert_eq!(demux(b"\x01"), Ok(Band::Data(b"")));
        let err = demux(b"PACK\0\0\0\x02").expect_err("no band byte");
        assert!(
            err.to_string().contains("got \"PACK\\0\\0\\0\\u{2}\""),
            "{err}"
        );
        let err = demux(b"\x04hello").expect_err("band 4");
        assert!(err.to_string().contains("hello"), "{err}");
    }

    #[test]
    fn progress_lines_skip_empty_pieces() {
        assert_eq!(progress_lines(b"\r\n\r").count(), 0);
        assert_eq!(
            progress_lines(b"a\r\nb").collect::<Vec<_>>(),
            [&b"a"[..], b"b"]
        );
    }
}
