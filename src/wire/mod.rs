//! The git wire protocol as pure functions over bytes.
//!
//! Nothing in this module does I/O. Each parser takes the payload of one
//! pkt-line (or a whole buffer for [`pkt::decode`]) and returns a value or an
//! error that quotes the offending bytes. The async plumbing lives in
//! [`crate::pkt_io`]; the sessions in [`crate::session`] put the two together.

pub mod advertisement;
pub mod capabilities;
pub mod commands;
pub mod fetch;
pub mod pack_count;
pub mod pkt;
pub mod report;
pub mod sideband;
pub mod v2;

/// At most this many bytes of bad input are quoted in an error.
const QUOTE_LIMIT: usize = 64;

/// Quotes bytes for an error message: lossy UTF-8, cut to a readable length.
pub fn shorten(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(QUOTE_LIMIT)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > QUOTE_LIMIT {
        text.push('…');
    }
    text
}

/// Drops one trailing `\n`: git terminates text pkt-lines with one, but
/// the protocol says a receiver must not depend on it.
pub fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}
