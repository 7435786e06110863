//! Object ids and object formats, as they appear on the wire: lowercase hex.
//!
//! Kalandra never looks inside objects, so an id is only ever compared, hashed
//! and echoed back to a server. Keeping the hex form avoids converting twice.

use std::fmt;

/// The hash function a repository uses (`object-format` capability).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// Parses the value of an `object-format=` capability.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }

    /// Length of an object id in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha1 => 40,
            Self::Sha256 => 64,
        }
    }

    /// Length of the raw hash, which is also the length of a pack's trailer.
    pub fn raw_len(self) -> usize {
        self.hex_len() / 2
    }

    /// A pack with zero objects: `PACK`, version 2, count 0, then the hash of
    /// those 12 bytes. receive-pack needs a pack after any non-delete command,
    /// even when every object is already there (DESIGN.md, wire facts).
    pub fn empty_pack(self) -> &'static [u8] {
        match self {
            Self::Sha1 => EMPTY_PACK_SHA1,
            Self::Sha256 => EMPTY_PACK_SHA256,
        }
    }
}

const EMPTY_PACK_SHA1: &[u8] = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00\
\x02\x9d\x08\x82\x3b\xd8\xa8\xea\xb5\x10\xad\x6a\xc7\x5c\x82\x3c\xfd\x3e\xd3\x1e";

const EMPTY_PACK_SHA256: &[u8] = b"PACK\x00\x00\x00\x02\x00\x00\x00\x00\
\x7e\xd8\x90\xd8\xa4\x57\x60\xf3\xee\xcf\x73\x04\x5b\x1d\x10\x47\
\x08\x5a\xf4\x77\x6d\xc6\x83\xd7\x8e\xac\x82\x20\x3d\xf1\x99\x3f";

impl fmt::Display for ObjectFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An object id in lowercase hex. Its length tells the object format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ObjectId(String);

/// The bytes were not a full-length lowercase hex object id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected a 40 or 64 digit lowercase hex object id, got {found:?}")]
pub struct InvalidObjectId {
    pub found: String,
}

impl ObjectId {
    /// Parses a 40 (sha1) or 64 (sha256) digit lowercase hex id.
    pub fn from_hex(hex: &[u8]) -> Result<Self, InvalidObjectId> {
        let valid_len = hex.len() == 40 || hex.len() == 64;
        if valid_len && hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            let text = std::str::from_utf8(hex).expect("because hex digits are ASCII");
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidObjectId {
                found: crate::wire::shorten(hex),
            })
        }
    }

    /// The all-zero id, which stands for "no object" in ref updates.
    pub fn null(format: ObjectFormat) -> Self {
        Self("0".repeat(format.hex_len()))
    }

    pub fn is_null(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }

    pub fn format(&self) -> ObjectFormat {
        if self.0.len() == 64 {
            ObjectFormat::Sha256
        } else {
            ObjectFormat::Sha1
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 7 digits, the way git abbreviates in messages.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sha1_and_sha256() {
        let a = ObjectId::from_hex(&[b'a'; 40]).expect("valid sha1");
        assert_eq!(a.format(), ObjectFormat::Sha1);
        let b = ObjectId::from_hex(&[b'0'; 64]).expect("valid sha256");
        assert_eq!(b.format(), ObjectFormat::Sha256);
        assert!(b.is_null());
        assert!(!a.is_null());
    }

    #[test]
    fn rejects_wrong_length_and_uppercase() {
        assert!(ObjectId::from_hex(&[b'a'; 39]).is_err());
        assert!(ObjectId::from_hex(&[b'A'; 40]).is_err());
        let err = ObjectId::from_hex(b"not-an-id").expect_err("invalid");
        assert!(err.to_string().contains("not-an-id"), "{err}");
    }

    #[test]
    fn empty_packs_have_header_and_trailer() {
        for format in [ObjectFormat::Sha1, ObjectFormat::Sha256] {
            let pack = format.empty_pack();
            assert_eq!(&pack[..12], b"PACK\0\0\0\x02\0\0\0\0");
            assert_eq!(pack.len(), 12 + format.raw_len());
        }
    }
}
