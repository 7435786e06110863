//! Sessions speak one git service each over a [`crate::transport::Connection`]:
//! [`upload_pack`] on the upstream side, [`receive_pack`] downstream. They
//! put the pure parsers of [`crate::wire`] together with async I/O.

pub mod pack_stream;
pub mod receive_pack;
pub mod upload_pack;

/// Formats an optional server message as a suffix for an error.
pub(crate) fn detail_suffix(detail: &Option<String>) -> String {
    match detail {
        Some(text) => format!(": {text}"),
        None => String::new(),
    }
}

/// The agent string sent to both servers.
pub fn agent() -> String {
    format!("kalandra/{}", env!("CARGO_PKG_VERSION"))
}
