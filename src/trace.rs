//! The packet trace: every pkt-line read from or written to either server,
//! on stderr or in a file, like git's `GIT_TRACE_PACKET`.
//!
//! `KALANDRA_TRACE_PACKET` turns it on, else `GIT_TRACE_PACKET` (so the
//! variable that traces git's side of a `git push 'kalandra::...'` traces
//! the helper's too). Values as git reads them: `1`, `2` or `true` mean
//! stderr, an absolute path means that file (appended to), `0`, `false`
//! or empty mean off.
//!
//! Lines read `packet: upstream< version 2` (a pkt-line from upstream) or
//! `packet: downstream> 0000` (one Kalandra sent downstream). Bytes that
//! are not printable ASCII are written `\ooo` in octal, as git does, so the
//! side-band byte shows as `\1`, `\2` or `\3`. A pack is summarised: its
//! header as `PACK ...` and, at its end, its size; its data is never dumped.
//! Secrets are masked: the password of a URL, `Authorization`-like values
//! and token-like query parameters (a `bundle-uri` or `packfile-uris` line
//! may carry a signed URL).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::progress::Side;
use crate::wire::pkt::{self, Decoded, Packet};

/// Where the trace goes, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Off,
    Stderr,
    File(PathBuf),
    /// A value git would take as a file descriptor or that is no path:
    /// not supported, warned about once.
    Unsupported(String),
}

impl Target {
    /// Reads a `GIT_TRACE_PACKET`-style value.
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "" | "0" | "false" => Self::Off,
            "1" | "2" | "true" => Self::Stderr,
            path if path.starts_with('/') => Self::File(PathBuf::from(path)),
            other => Self::Unsupported(other.to_owned()),
        }
    }

    fn from_env() -> Self {
        let value = std::env::var("KALANDRA_TRACE_PACKET")
            .or_else(|_| std::env::var("GIT_TRACE_PACKET"))
            .unwrap_or_default();
        Self::parse(&value)
    }
}

enum Sink {
    Stderr,
    File(Mutex<std::fs::File>),
}

impl Sink {
    fn write_lines(&self, lines: &[String]) {
        if lines.is_empty() {
            return;
        }
        let mut text = lines.join("\n");
        text.push('\n');
        match self {
            Self::Stderr => {
                let _ = crate::progress::LogWriter.write_all(text.as_bytes());
            }
            Self::File(file) => {
                if let Ok(mut file) = file.lock() {
                    let _ = file.write_all(text.as_bytes());
                }
            }
        }
    }
}

/// The process's trace sink, read from the environment once.
fn sink() -> Option<&'static Sink> {
    static SINK: OnceLock<Option<Sink>> = OnceLock::new();
    SINK.get_or_init(|| match Target::from_env() {
        Target::Off => None,
        Target::Stderr => Some(Sink::Stderr),
        Target::File(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(file) => Some(Sink::File(Mutex::new(file))),
            Err(error) => {
                tracing::warn!("packet trace off: cannot open {}: {error}", path.display());
                None
            }
        },
        Target::Unsupported(value) => {
            tracing::warn!(
                "packet trace off: {value:?} is neither 1, 2, true nor an absolute path"
            );
            None
        }
    })
    .as_ref()
}

/// Whether `<` (read from the server) or `>` (sent to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Sent,
}

/// One direction of one server's stream, traced.
pub struct PacketTrace {
    sink: &'static Sink,
    format: Format,
}

impl PacketTrace {
    /// A trace for `side`'s stream in `direction`, if the environment asks
    /// for one.
    pub fn from_env(side: Side, direction: Direction) -> Option<Self> {
        Some(Self {
            sink: sink()?,
            format: Format::new(side, direction),
        })
    }

    /// One decoded pkt-line.
    pub fn packet(&mut self, packet: Packet<'_>) {
        let lines = self.format.packet(packet);
        self.sink.write_lines(&lines);
    }

    /// A buffer of whole pkt-lines about to be written.
    pub fn packets(&mut self, bytes: &[u8]) {
        let lines = self.format.packets(bytes);
        self.sink.write_lines(&lines);
    }

    /// Raw pack bytes (receive-pack takes the pack outside pkt-lines).
    pub fn raw_pack(&mut self, bytes: &[u8]) {
        let lines = self.format.raw_pack(bytes);
        self.sink.write_lines(&lines);
    }

    /// The end of a raw pack.
    pub fn raw_pack_end(&mut self) {
        let lines = self.format.pack_end();
        self.sink.write_lines(&lines);
    }
}

/// The pure part: pkt-lines in, trace lines out.
#[derive(Debug)]
pub struct Format {
    prefix: String,
    pack: Option<PackSize>,
}

#[derive(Debug, Default)]
struct PackSize {
    packets: u64,
    bytes: u64,
}

impl Format {
    pub fn new(side: Side, direction: Direction) -> Self {
        let arrow = match direction {
            Direction::Read => '<',
            Direction::Sent => '>',
        };
        Self {
            prefix: format!("packet: {}{arrow} ", side.name()),
            pack: None,
        }
    }

    /// The trace lines for one pkt-line: usually one, none inside a pack,
    /// two at a pack's end (its size, then the flush).
    pub fn packet(&mut self, packet: Packet<'_>) -> Vec<String> {
        let mut out = Vec::new();
        match packet {
            Packet::Data(data) => {
                if let Some(pack) = &mut self.pack {
                    if data.first() == Some(&1) {
                        pack.packets += 1;
                        pack.bytes += data.len() as u64 - 1;
                        return out;
                    }
                } else if let Some(header) = pack_start(data) {
                    self.pack = Some(PackSize {
                        packets: 1,
                        bytes: data.len() as u64 - u64::from(data[0] == 1),
                    });
                    out.push(format!("{}{}", self.prefix, pack_line(data, header)));
                    return out;
                }
                out.push(format!("{}{}", self.prefix, mask_secrets(&quote(data))));
            }
            Packet::Flush => {
                out.extend(self.pack_end());
                out.push(format!("{}0000", self.prefix));
            }
            Packet::Delim => out.push(format!("{}0001", self.prefix)),
            Packet::ResponseEnd => out.push(format!("{}0002", self.prefix)),
        }
        out
    }

    /// The trace lines for a buffer of pkt-lines; a malformed or partial
    /// rest is shown as such rather than decoded.
    pub fn packets(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            match pkt::decode(bytes) {
                Ok(Decoded::Complete { packet, consumed }) => {
                    out.extend(self.packet(packet));
                    bytes = &bytes[consumed..];
                }
                _ => {
                    out.push(format!(
                        "{}(not a pkt-line: {} bytes)",
                        self.prefix,
                        bytes.len()
                    ));
                    break;
                }
            }
        }
        out
    }

    /// Raw pack bytes: the header once, then only counted.
    pub fn raw_pack(&mut self, bytes: &[u8]) -> Vec<String> {
        match &mut self.pack {
            Some(pack) => {
                pack.packets += 1;
                pack.bytes += bytes.len() as u64;
                Vec::new()
            }
            None => {
                self.pack = Some(PackSize {
                    packets: 1,
                    bytes: bytes.len() as u64,
                });
                let line = match pack_start(bytes) {
                    Some(header) => pack_line(bytes, header),
                    None => format!("(pack data, {} bytes)", bytes.len()),
                };
                vec![format!("{}{line}", self.prefix)]
            }
        }
    }

    /// The line that closes a pack, if one is open.
    pub fn pack_end(&mut self) -> Vec<String> {
        match self.pack.take() {
            Some(pack) => vec![format!(
                "{}PACK done ({} bytes in {} writes or packets)",
                self.prefix, pack.bytes, pack.packets
            )],
            None => Vec::new(),
        }
    }
}

/// The object count of a pack that starts in `data` (raw, or on side-band
/// 1), if it does; `Some(None)` when the header is cut short.
fn pack_start(data: &[u8]) -> Option<Option<u32>> {
    let pack = if data.starts_with(b"PACK") {
        data
    } else if data.starts_with(b"\x01PACK") {
        &data[1..]
    } else {
        return None;
    };
    Some(
        pack.get(8..12)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]])),
    )
}

fn pack_line(data: &[u8], objects: Option<u32>) -> String {
    let band = if data.first() == Some(&1) { "\\1" } else { "" };
    match objects {
        Some(n) => format!("{band}PACK ... ({n} objects)"),
        None => format!("{band}PACK ..."),
    }
}

/// A payload as git's trace shows it: printable ASCII as is, anything else
/// as `\ooo` octal, and the one trailing newline dropped.
pub fn quote(data: &[u8]) -> String {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let mut out = String::with_capacity(data.len());
    for &byte in data {
        if (0x20..0x7f).contains(&byte) && byte != b'\\' {
            out.push(byte as char);
        } else if byte == b'\\' {
            out.push_str("\\\\");
        } else {
            out.push_str(&format!("\\{byte:o}"));
        }
    }
    out
}

/// Query keys and header names whose values are secrets, compared in lower
/// case as substrings (`X-Amz-Signature`, `access_token`, `api_key`, ...).
const SECRET_KEYS: [&str; 8] = [
    "token",
    "password",
    "passwd",
    "secret",
    "signature",
    "credential",
    "auth",
    "key",
];

/// `text` with every secret replaced by `***`: a URL's password
/// ([`crate::url::mask_credentials`]), the value after `Authorization:`,
/// `Bearer` or `Basic`, and the value of a `key=value` whose key names a
/// secret. It errs towards masking too much.
pub fn mask_secrets(text: &str) -> String {
    let text = crate::url::mask_credentials(text);
    let lower = text.to_ascii_lowercase();
    // Header-like: everything after `authorization:` is the secret.
    if let Some(at) = lower.find("authorization:") {
        let head = &text[..at + "authorization:".len()];
        let space = if text[head.len()..].starts_with(' ') {
            " "
        } else {
            ""
        };
        return format!("{head}{space}***");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    loop {
        // The next `=` or scheme word (`Bearer`, `Basic`) that hides a secret.
        let Some((value_start, key_end)) = next_secret(rest) else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..key_end]);
        out.push_str("***");
        let value = &rest[value_start..];
        let end = value
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | ',' | '"' | '\''))
            .unwrap_or(value.len());
        rest = &value[end..];
    }
}

/// In `text`, where the next secret value starts, and where the text to
/// keep before `***` ends.
fn next_secret(text: &str) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let mut best: Option<(usize, usize)> = None;
    for scheme in ["bearer ", "basic "] {
        if let Some(at) = lower.find(scheme) {
            let start = at + scheme.len();
            if best.is_none_or(|(s, _)| start < s) {
                best = Some((start, start));
            }
        }
    }
    let mut search = 0;
    while let Some(eq) = lower[search..].find('=').map(|i| i + search) {
        let key_start = lower[..eq]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let key = &lower[key_start..eq];
        if SECRET_KEYS.iter().any(|k| key.contains(k)) {
            let start = eq + 1;
            if best.is_none_or(|(s, _)| start < s) {
                best = Some((start, start));
            }
            break;
        }
        search = eq + 1;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pkt::data_payloads;

    #[test]
    fn targets_read_as_git_reads_them() {
        assert_eq!(Target::parse(""), Target::Off);
        assert_eq!(Target::parse("0"), Target::Off);
        assert_eq!(Target::parse("false"), Target::Off);
        assert_eq!(Target::parse("1"), Target::Stderr);
        assert_eq!(Target::parse("2"), Target::Stderr);
        assert_eq!(Target::parse("true"), Target::Stderr);
        assert_eq!(
            Target::parse("/tmp/trace.log"),
            Target::File("/tmp/trace.log".into())
        );
        assert_eq!(Target::parse("7"), Target::Unsupported("7".into()));
        assert_eq!(
            Target::parse("trace.log"),
            Target::Unsupported("trace.log".into())
        );
    }

    /// upload-pack 2.47.3, v2 fetch: the packfile section with progress
    /// on band 2, the pack on band 1 in two packets, and the flush.
    const FETCH_RESPONSE: &[u8] = b"000dpackfile\n\
0023\x02Enumerating objects: 4, done.\n\
0011\x01PACK\x00\x00\x00\x02\x00\x00\x00\x04\
000a\x01\x95\x0ex\x9c\x01\
0000";

    #[test]
    fn a_fetch_response_is_traced_with_the_pack_summarised() {
        let mut format = Format::new(Side::Upstream, Direction::Read);
        let lines = format.packets(FETCH_RESPONSE);
        assert_eq!(
            lines,
            [
                "packet: upstream< packfile",
                "packet: upstream< \\2Enumerating objects: 4, done.",
                "packet: upstream< \\1PACK ... (4 objects)",
                "packet: upstream< PACK done (17 bytes in 2 writes or packets)",
                "packet: upstream< 0000",
            ]
        );
    }

    #[test]
    fn commands_and_a_raw_pack_sent_downstream() {
        let mut format = Format::new(Side::Downstream, Direction::Sent);
        let mut commands = Vec::new();
        pkt::encode_data(
            b"0000000000000000000000000000000000000000 \
              1111111111111111111111111111111111111111 refs/heads/main\0report-status\n",
            &mut commands,
        )
        .expect("fits");
        commands.extend_from_slice(pkt::FLUSH);
        assert_eq!(
            format.packets(&commands),
            [
                "packet: downstream> 0000000000000000000000000000000000000000 \
                 1111111111111111111111111111111111111111 refs/heads/main\\0report-status",
                "packet: downstream> 0000",
            ]
        );
        assert_eq!(
            format.raw_pack(b"PACK\x00\x00\x00\x02\x00\x00\x01\x00xyz"),
            ["packet: downstream> PACK ... (256 objects)"]
        );
        assert!(format.raw_pack(b"more").is_empty());
        assert_eq!(
            format.pack_end(),
            ["packet: downstream> PACK done (19 bytes in 2 writes or packets)"]
        );
        assert!(format.pack_end().is_empty());
    }

    #[test]
    fn delim_response_end_and_a_partial_buffer() {
        let mut format = Format::new(Side::Upstream, Direction::Sent);
        assert_eq!(
            format.packets(b"00010002000ahel"),
            [
                "packet: upstream> 0001",
                "packet: upstream> 0002",
                "packet: upstream> (not a pkt-line: 7 bytes)",
            ]
        );
    }

    #[test]
    fn report_status_on_band_one_is_quoted() {
        let payloads = data_payloads(b"0013\x01000eunpack ok\n0000");
        let mut format = Format::new(Side::Downstream, Direction::Read);
        assert_eq!(
            format.packet(Packet::Data(payloads[0])),
            ["packet: downstream< \\1000eunpack ok"]
        );
    }

    #[test]
    fn secrets_are_masked() {
        let mut format = Format::new(Side::Upstream, Direction::Read);
        let mut bytes = Vec::new();
        for line in [
            "bundle-uri=https://mirror:hunter2@cdn.example/b.bundle?sig=1\n",
            "packfile-uris https://cdn.example/p?access_token=abc123&x=1\n",
        ] {
            pkt::encode_text(line, &mut bytes).expect("fits");
        }
        let lines = format.packets(&bytes);
        let all = lines.join("\n");
        assert!(!all.contains("hunter2"), "{all}");
        assert!(!all.contains("abc123"), "{all}");
        assert!(
            all.contains("https://mirror:***@cdn.example/b.bundle"),
            "{all}"
        );
        assert!(all.contains("access_token=***&x=1"), "{all}");

        assert_eq!(
            mask_secrets("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: ***"
        );
        assert_eq!(
            mask_secrets("push-option token=s3cr3t ci"),
            "push-option token=*** ci"
        );
        assert_eq!(mask_secrets("Bearer abc.def x"), "Bearer *** x");
        assert_eq!(
            mask_secrets("X-Amz-Signature=deadbeef;api_key=k1"),
            "X-Amz-Signature=***;api_key=***"
        );
        assert_eq!(
            mask_secrets("version 2 agent=git/2.47.3 object-format=sha1"),
            "version 2 agent=git/2.47.3 object-format=sha1",
            "ordinary capabilities stay readable"
        );
    }

    #[test]
    fn quoting_matches_git() {
        assert_eq!(quote(b"want abc\n"), "want abc");
        assert_eq!(quote(b"a\0b\x1b\\\n\n"), "a\\0b\\33\\\\\\12");
    }
}
