//! LFS pointer files (git-lfs's `docs/spec.md`): the small blob git holds
//! in place of a large file.
//!
//! ```text
//! version https://git-lfs.github.com/spec/v1
//! oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393
//! size 12345
//! ```
//!
//! Quirks: a pointer is at most 1024 bytes; `version` comes first and the
//! other keys follow sorted; every line ends with `\n`; extension lines
//! (`ext-0-name sha256:...`) may come between `version` and `oid`. The
//! pre-release spec URL `https://hawser.github.com/spec/v1` still appears in
//! old repositories, and git-lfs reads it.

/// The largest blob that can be a pointer.
pub const MAX_POINTER_BYTES: usize = 1024;

/// What a pointer points to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pointer {
    /// The sha256 of the content, 64 lowercase hex digits.
    pub oid: String,
    pub size: u64,
}

/// The pointer `blob` is, or `None` for any other blob. Pure.
pub fn parse(blob: &[u8]) -> Option<Pointer> {
    if blob.len() > MAX_POINTER_BYTES || !blob.ends_with(b"\n") {
        return None;
    }
    let text = std::str::from_utf8(blob).ok()?;
    let mut lines = text[..text.len() - 1].split('\n');
    let version = lines.next()?.strip_prefix("version ")?;
    if !matches!(
        version,
        "https://git-lfs.github.com/spec/v1" | "https://hawser.github.com/spec/v1"
    ) {
        return None;
    }
    let (mut oid, mut size) = (None, None);
    let mut last_key = "";
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        // The keys after `version` are sorted, each once.
        if key <= last_key {
            return None;
        }
        last_key = key;
        match key {
            "oid" => {
                let hex = value.strip_prefix("sha256:")?;
                let valid =
                    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                oid = valid.then(|| hex.to_owned());
                oid.as_ref()?;
            }
            "size" => {
                let valid = !value.is_empty()
                    && value.bytes().all(|b| b.is_ascii_digit())
                    && (value == "0" || !value.starts_with('0'));
                size = Some(value.parse().ok().filter(|_| valid)?);
            }
            _ if key.starts_with("ext-") => {}
            _ => return None,
        }
    }
    Some(Pointer {
        oid: oid?,
        size: size?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OID: &str = "4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393";

    fn pointer(text: &str) -> Option<Pointer> {
        parse(text.as_bytes())
    }

    #[test]
    fn lfs_pointers_parse_as_git_lfs_writes_them() {
        let good =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n");
        assert_eq!(
            pointer(&good),
            Some(Pointer {
                oid: OID.into(),
                size: 12345
            })
        );
        let hawser = good.replace("git-lfs.github.com", "hawser.github.com");
        assert!(pointer(&hawser).is_some());
        let ext = format!(
            "version https://git-lfs.github.com/spec/v1\next-0-foo sha256:{OID}\noid sha256:{OID}\nsize 0\n"
        );
        assert_eq!(pointer(&ext).map(|p| p.size), Some(0));
    }

    #[test]
    fn lfs_other_blobs_are_not_pointers() {
        let good =
            format!("version https://git-lfs.github.com/spec/v1\noid sha256:{OID}\nsize 12345\n");
        for bad in [
            good.trim_end().to_owned(),
            good.replace("size 12345", "size 012"),
            good.replace("size 12345", "size -1"),
            good.replace("sha256:", "sha1:"),
            good.replace(OID, &OID.to_uppercase()),
            good.replace(
                &format!("oid sha256:{OID}\nsize 12345"),
                &format!("size 12345\noid sha256:{OID}"),
            ),
            good.replace("v1", "v2"),
            format!("{good}extra line\n"),
            "hello\n".into(),
            format!("{good}{}", " ".repeat(MAX_POINTER_BYTES)),
        ] {
            assert_eq!(pointer(&bad), None, "{bad:?}");
        }
    }
}
