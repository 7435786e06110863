//! Capability lists: the v0/v1 list after the NUL of the first advertised
//! ref (gitprotocol-capabilities.txt), and a container for the v2 lines
//! collected with [`crate::wire::v2::parse_capability_line`].

use crate::oid::ObjectFormat;
use crate::wire::{shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected space-separated UTF-8 capabilities, got {found:?}")]
    NotUtf8 { found: String },
    #[error("expected a capability \"<name>\" or \"<name>=<value>\", got {found:?}")]
    EmptyName { found: String },
    #[error("expected object-format \"sha1\" or \"sha256\", got {found:?}")]
    UnknownObjectFormat { found: String },
}

/// Capabilities in the order the server sent them. A name may repeat
/// (`symref=` once per symbolic ref), so this is a list, not a map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    entries: Vec<(String, Option<String>)>,
}

impl Capabilities {
    /// Parses `name` and `name=value` words separated by spaces.
    ///
    /// Empty words are skipped: git's send-pack puts a space right after the
    /// NUL (`\0 report-status ...`) and receive-pack accepts that.
    pub fn parse_v0(text: &[u8]) -> Result<Self, Error> {
        let text = trim_newline(text);
        let text = std::str::from_utf8(text).map_err(|_| Error::NotUtf8 {
            found: shorten(text),
        })?;
        let mut caps = Self::default();
        for word in text.split(' ').filter(|word| !word.is_empty()) {
            let (name, value) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word, None),
            };
            if name.is_empty() {
                return Err(Error::EmptyName {
                    found: shorten(word.as_bytes()),
                });
            }
            caps.push(name, value);
        }
        Ok(caps)
    }

    pub fn push(&mut self, name: &str, value: Option<&str>) {
        self.entries
            .push((name.to_owned(), value.map(str::to_owned)));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// The value of the first capability called `name`, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|(n, v)| if n == name { v.as_deref() } else { None })
    }

    /// The values of every capability called `name`, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .filter_map(|(_, v)| v.as_deref())
    }

    /// The `object-format` capability. Servers that predate it only speak
    /// sha1 (gitprotocol-capabilities.txt, "object-format").
    pub fn object_format(&self) -> Result<ObjectFormat, Error> {
        match self.value("object-format") {
            None => Ok(ObjectFormat::Sha1),
            Some(name) => ObjectFormat::from_name(name).ok_or_else(|| Error::UnknownObjectFormat {
                found: shorten(name.as_bytes()),
            }),
        }
    }

    /// The target of symbolic ref `name`, from `symref=<name>:<target>`.
    pub fn symref_target(&self, name: &str) -> Option<&str> {
        self.values("symref").find_map(|value| {
            let (source, target) = value.split_once(':')?;
            (source == name).then_some(target)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_deref()))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After the NUL of `printf 0000 | git upload-pack --advertise-refs` (git 2.47.3).
    const UPLOAD_PACK_V0: &[u8] = b"multi_ack thin-pack side-band side-band-64k ofs-delta \
shallow deepen-since deepen-not deepen-relative no-progress include-tag multi_ack_detailed \
no-done symref=HEAD:refs/heads/main object-format=sha1 agent=git/2.47.3\n";

    /// After the NUL of `git receive-pack --advertise-refs` on a sha256 repository.
    const RECEIVE_PACK_SHA256: &[u8] = b"report-status report-status-v2 delete-refs \
side-band-64k quiet atomic ofs-delta object-format=sha256 agent=git/2.47.3\n";

    /// After the NUL of the first command git 2.47.3 `push` sent: note the leading space.
    const SEND_PACK: &[u8] =
        b" report-status-v2 side-band-64k quiet push-options object-format=sha1 agent=git/2.47.3";

    #[test]
    fn parses_recorded_upload_pack_capabilities() {
        let caps = Capabilities::parse_v0(UPLOAD_PACK_V0).expect("valid");
        assert_eq!(caps.iter().count(), 16);
        assert!(caps.contains("side-band-64k"));
        assert!(caps.contains("multi_ack_detailed"));
        assert!(!caps.contains("side-band-128k"));
        assert_eq!(caps.value("agent"), Some("git/2.47.3"));
        assert_eq!(caps.value("thin-pack"), None);
        assert_eq!(caps.symref_target("HEAD"), Some("refs/heads/main"));
        assert_eq!(caps.symref_target("refs/heads/main"), None);
        assert_eq!(caps.object_format(), Ok(ObjectFormat::Sha1));
        assert_eq!(caps.iter().next(), Some(("multi_ack", None)));
    }

    #[test]
    fn parses_sha256_and_leading_space() {
        let caps = Capabilities::parse_v0(RECEIVE_PACK_SHA256).expect("valid");
        assert_eq!(caps.object_format(), Ok(ObjectFormat::Sha256));
        assert!(caps.contains("report-status-v2"));
        let caps = Capabilities::parse_v0(SEND_PACK).expect("valid");
        assert_eq!(caps.iter().next(), Some(("report-status-v2", None)));
        assert_eq!(caps.iter().count(), 6);
    }

    #[test]
    fn several_symrefs_and_values() {
        let caps = Capabilities::parse_v0(
            b"symref=HEAD:refs/heads/main symref=refs/remotes/o/HEAD:refs/remotes/o/main",
        )
        .expect("valid");
        assert_eq!(
            caps.values("symref").collect::<Vec<_>>(),
            [
                "HEAD:refs/heads/main",
                "refs/remotes/o/HEAD:refs/remotes/o/main"
            ]
        );
        assert_eq!(
            caps.symref_target("refs/remotes/o/HEAD"),
            Some("refs/remotes/o/main")
        );
    }

    #[test]
    fn empty_and_truncated_lists() {
        let caps = Capabilities::parse_v0(b"").expect("empty list");
        assert!(caps.is_empty());
        assert_eq!(caps.object_format(), Ok(ObjectFormat::Sha1));
        // Cut in the middle of a value: still well formed, just a different value.
        let caps = Capabilities::parse_v0(&UPLOAD_PACK_V0[..UPLOAD_PACK_V0.len() - 6])
            .expect("valid prefix");
        assert_eq!(caps.value("agent"), Some("git/2"));
        let caps = Capabilities::parse_v0(b"object-format=sha").expect("valid words");
        let err = caps.object_format().expect_err("unknown format");
        assert!(err.to_string().contains("\"sha\""), "{err}");
    }

    #[test]
    fn malformed_lists_are_quoted() {
        let err = Capabilities::parse_v0(b"ofs-delta =oops").expect_err("empty name");
        assert!(err.to_string().contains("\"=oops\""), "{err}");
        let err = Capabilities::parse_v0(b"agent=\xff\xfe").expect_err("not utf-8");
        assert!(err.to_string().contains("agent="), "{err}");
    }

    #[test]
    fn push_keeps_order() {
        let mut caps = Capabilities::default();
        caps.push("agent", Some("kalandra/0.1"));
        caps.push("ofs-delta", None);
        assert_eq!(
            caps.iter().collect::<Vec<_>>(),
            [("agent", Some("kalandra/0.1")), ("ofs-delta", None)]
        );
    }
}
