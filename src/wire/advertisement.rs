//! The v0/v1 reference advertisement that upload-pack (without protocol v2)
//! and receive-pack send first (gitprotocol-pack.txt, "Reference Discovery").

use crate::oid::{InvalidObjectId, ObjectFormat, ObjectId};
use crate::wire::capabilities::{self, Capabilities};
use crate::wire::{shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected a v0/v1 ref advertisement, got {found:?} (protocol v2 is parsed elsewhere)")]
    Version2 { found: String },
    #[error("expected \"version 1\" as the first line only, got {found:?}")]
    UnexpectedVersion { found: String },
    #[error("expected \"<oid> <refname>\", got {found:?}")]
    MalformedRef { found: String },
    #[error("expected \"<oid> <refname>\" with a valid object id, got {found:?}")]
    InvalidOid {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
    #[error("expected \"shallow <oid>\", got {found:?}")]
    InvalidShallow {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
    #[error("expected capabilities after a NUL on the first ref line, got {found:?}")]
    MissingCapabilities { found: String },
    #[error("expected capabilities on the first ref line only, got a second list in {found:?}")]
    DuplicateCapabilities { found: String },
    #[error("expected valid capabilities after the NUL of the first ref line, got {found:?}")]
    Capabilities {
        found: String,
        #[source]
        source: capabilities::Error,
    },
    #[error("expected \"<zero-oid> capabilities^{{}}\" as the only line of an empty repository, got {found:?}")]
    MisplacedCapabilitiesLine { found: String },
    #[error("expected \"<oid> <refname>^{{}}\" right after the ref it peels, got {found:?}")]
    OrphanPeeled { found: String },
    #[error("expected {expected} object ids as the capabilities say, got {found:?}")]
    WrongObjectFormat {
        expected: ObjectFormat,
        found: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisedRef {
    pub name: String,
    pub oid: ObjectId,
    /// What an annotated tag points to, from the following `<name>^{}` line.
    pub peeled: Option<ObjectId>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertisement {
    pub refs: Vec<AdvertisedRef>,
    pub capabilities: Capabilities,
    /// The server repository's shallow boundary (receive-pack on a shallow repository).
    pub shallow: Vec<ObjectId>,
}

impl Advertisement {
    pub fn object_format(&self) -> Result<ObjectFormat, capabilities::Error> {
        self.capabilities.object_format()
    }
}

#[derive(Debug, Default)]
pub struct AdvertisementParser {
    lines: usize,
    advertisement: Advertisement,
    /// Set by the first ref line; `None` until then.
    object_format: Option<ObjectFormat>,
    /// The empty-repository line was seen, so no ref may follow.
    saw_capabilities_line: bool,
}

/// The name git advertises when there is no ref to hang the capabilities on.
const CAPABILITIES_REF: &str = "capabilities^{}";

impl AdvertisementParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the payload of each data pkt-line, in order, until the flush.
    pub fn push_line(&mut self, payload: &[u8]) -> Result<(), Error> {
        let line = trim_newline(payload);
        let first = self.lines == 0;
        self.lines += 1;
        let found = || shorten(payload);

        if crate::wire::v2::is_version_2(line) {
            return Err(Error::Version2 { found: found() });
        }
        if let Some(version) = line.strip_prefix(b"version ") {
            // Protocol v1 is v0 with this line in front (gitprotocol-v2.txt,
            // "Initial Client Request"; gitprotocol-pack.txt, "Reference Discovery").
            return if first && version == b"1" {
                Ok(())
            } else {
                Err(Error::UnexpectedVersion { found: found() })
            };
        }
        if let Some(hex) = line.strip_prefix(b"shallow ") {
            // receive-pack on a shallow repository lists its shallow commits
            // after the refs (gitprotocol-pack.txt, "Reference Discovery": shallow).
            let oid = ObjectId::from_hex(hex).map_err(|source| Error::InvalidShallow {
                found: found(),
                source,
            })?;
            self.advertisement.shallow.push(oid);
            return Ok(());
        }

        let (ref_part, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        let have_caps = self.object_format.is_some();
        match (caps, have_caps) {
            (None, false) => return Err(Error::MissingCapabilities { found: found() }),
            (Some(_), true) => return Err(Error::DuplicateCapabilities { found: found() }),
            _ => {}
        }
        if self.saw_capabilities_line {
            return Err(Error::MisplacedCapabilitiesLine { found: found() });
        }

        let (oid, name) = parse_ref(ref_part, payload)?;
        if let Some(caps) = caps {
            let invalid = |source| Error::Capabilities {
                found: shorten(caps),
                source,
            };
            let capabilities = Capabilities::parse_v0(caps).map_err(invalid)?;
            let format = capabilities.object_format().map_err(invalid)?;
            self.advertisement.capabilities = capabilities;
            self.object_format = Some(format);
        }
        if self.object_format != Some(oid.format()) {
            return Err(Error::WrongObjectFormat {
                expected: self.object_format.unwrap_or(ObjectFormat::Sha1),
                found: found(),
            });
        }

        if name == CAPABILITIES_REF {
            // An empty repository has no ref to carry the capabilities, so git
            // sends this placeholder with the null id instead
            // (gitprotocol-pack.txt, "Reference Discovery").
            if caps.is_none() || !oid.is_null() {
                return Err(Error::MisplacedCapabilitiesLine { found: found() });
            }
            self.saw_capabilities_line = true;
            return Ok(());
        }
        if let Some(base) = name.strip_suffix("^{}") {
            // Only the ref just before: git writes the peeled line right
            // after its tag, and looking further back would let a server
            // make each of a million lines scan a million refs.
            let target = self
                .advertisement
                .refs
                .last_mut()
                .filter(|r| r.name == base && r.peeled.is_none())
                .ok_or_else(|| Error::OrphanPeeled { found: found() })?;
            target.peeled = Some(oid);
            return Ok(());
        }
        self.advertisement.refs.push(AdvertisedRef {
            name: name.to_owned(),
            oid,
            peeled: None,
        });
        Ok(())
    }

    /// The advertisement so far. No lines at all is valid: that is what a
    /// server without refs and without capabilities would send.
    pub fn finish(self) -> Advertisement {
        self.advertisement
    }
}

/// Splits `"<oid> <refname>"`; `payload` is the whole line, for errors.
fn parse_ref<'a>(ref_part: &'a [u8], payload: &[u8]) -> Result<(ObjectId, &'a str), Error> {
    let malformed = || Error::MalformedRef {
        found: shorten(payload),
    };
    let space = ref_part
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(malformed)?;
    let (hex, name) = (&ref_part[..space], &ref_part[space + 1..]);
    let oid = ObjectId::from_hex(hex).map_err(|source| Error::InvalidOid {
        found: shorten(payload),
        source,
    })?;
    let name = std::str::from_utf8(name).map_err(|_| malformed())?;
    if name.is_empty() || name.contains(' ') {
        return Err(malformed());
    }
    Ok((oid, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pkt::data_payloads;

    fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("valid test id")
    }

    /// `printf 0000 | git upload-pack --advertise-refs` (git 2.47.3): HEAD,
    /// two branches and an annotated tag with its peeled line.
    const UPLOAD_PACK_V0: &[u8] = b"010b890c228dd533332a4add2fb4e2ec8c3971b3f9cf HEAD\0\
multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
deepen-relative no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main \
object-format=sha1 agent=git/2.47.3\n\
003c890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/dev\n\
003d890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/main\n\
003afba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v1\n\
003d890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/tags/v1^{}\n\
0000";

    /// The same with `GIT_PROTOCOL=version=1` (after another commit on main).
    const UPLOAD_PACK_V1: &[u8] = b"000eversion 1\n\
010ba46acda9c6bbc9781e9380077fcaf50499e5402d HEAD\0\
multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
deepen-relative no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main \
object-format=sha1 agent=git/2.47.3\n\
003c890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/dev\n\
003da46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\n\
003afba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v1\n\
003d890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/tags/v1^{}\n\
0000";

    /// upload-pack of an empty bare repository.
    const UPLOAD_PACK_EMPTY: &[u8] =
        b"00fa0000000000000000000000000000000000000000 capabilities^{}\0\
multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
deepen-relative no-progress include-tag multi_ack_detailed no-done object-format=sha1 \
agent=git/2.47.3\n\
0000";

    /// upload-pack of a sha256 repository.
    const UPLOAD_PACK_SHA256: &[u8] =
        b"0125d667bfe9738e87799279827eb529a3d78d7a9391703a046a580f4abb5bb7288c HEAD\0\
multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
deepen-relative no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main \
object-format=sha256 agent=git/2.47.3\n\
0055d667bfe9738e87799279827eb529a3d78d7a9391703a046a580f4abb5bb7288c refs/heads/main\n\
0000";

    /// `git receive-pack --advertise-refs` of a shallow (`--depth 1`) bare clone.
    const RECEIVE_PACK_SHALLOW: &[u8] =
        b"00b1a46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\0\
report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta \
object-format=sha1 agent=git/2.47.3\n\
0035shallow a46acda9c6bbc9781e9380077fcaf50499e5402d\n\
0000";

    /// `git receive-pack --advertise-refs` of an empty bare repository.
    const RECEIVE_PACK_EMPTY: &[u8] =
        b"00b10000000000000000000000000000000000000000 capabilities^{}\0\
report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta \
object-format=sha1 agent=git/2.47.3\n\
0000";

    fn parse(recording: &[u8]) -> Result<Advertisement, Error> {
        let mut parser = AdvertisementParser::new();
        for payload in data_payloads(recording) {
            parser.push_line(payload)?;
        }
        Ok(parser.finish())
    }

    #[test]
    fn parses_recorded_upload_pack_v0() {
        let adv = parse(UPLOAD_PACK_V0).expect("valid");
        let names: Vec<_> = adv.refs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["HEAD", "refs/heads/dev", "refs/heads/main", "refs/tags/v1"]
        );
        assert_eq!(
            adv.refs[0].oid,
            oid("890c228dd533332a4add2fb4e2ec8c3971b3f9cf")
        );
        assert_eq!(adv.refs[0].peeled, None);
        assert_eq!(
            adv.refs[3],
            AdvertisedRef {
                name: "refs/tags/v1".into(),
                oid: oid("fba17aa11a9eade640e7b19bb59b6a76bd66f995"),
                peeled: Some(oid("890c228dd533332a4add2fb4e2ec8c3971b3f9cf")),
            }
        );
        assert_eq!(
            adv.capabilities.symref_target("HEAD"),
            Some("refs/heads/main")
        );
        assert_eq!(adv.object_format(), Ok(ObjectFormat::Sha1));
        assert!(adv.shallow.is_empty());
    }

    #[test]
    fn parses_recorded_upload_pack_v1() {
        let adv = parse(UPLOAD_PACK_V1).expect("valid");
        assert_eq!(adv.refs.len(), 4);
        assert_eq!(
            adv.refs[2].oid,
            oid("a46acda9c6bbc9781e9380077fcaf50499e5402d")
        );
        assert!(adv.capabilities.contains("side-band-64k"));
    }

    #[test]
    fn empty_repositories_advertise_no_refs() {
        for recording in [UPLOAD_PACK_EMPTY, RECEIVE_PACK_EMPTY] {
            let adv = parse(recording).expect("valid");
            assert!(adv.refs.is_empty());
            assert_eq!(adv.capabilities.value("agent"), Some("git/2.47.3"));
        }
        let adv = parse(RECEIVE_PACK_EMPTY).expect("valid");
        assert!(adv.capabilities.contains("report-status-v2"));
        assert_eq!(
            parse(b"0000").expect("nothing at all"),
            Advertisement::default()
        );
    }

    #[test]
    fn parses_recorded_sha256_and_shallow() {
        let adv = parse(UPLOAD_PACK_SHA256).expect("valid");
        assert_eq!(adv.object_format(), Ok(ObjectFormat::Sha256));
        assert_eq!(adv.refs[1].oid.format(), ObjectFormat::Sha256);

        let adv = parse(RECEIVE_PACK_SHALLOW).expect("valid");
        assert_eq!(adv.refs.len(), 1);
        assert_eq!(
            adv.shallow,
            [oid("a46acda9c6bbc9781e9380077fcaf50499e5402d")]
        );
    }

    #[test]
    fn truncated_lines_are_errors() {
        let payloads = data_payloads(UPLOAD_PACK_V0);
        // Cut before the NUL: the capabilities are missing.
        let err = AdvertisementParser::new()
            .push_line(&payloads[0][..45])
            .expect_err("no caps");
        assert!(matches!(err, Error::MissingCapabilities { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("890c228dd533332a4add2fb4e2ec8c3971b3f9cf HEAD"));
        // Cut inside the object id.
        let mut parser = AdvertisementParser::new();
        parser.push_line(payloads[0]).expect("valid first line");
        let err = parser.push_line(&payloads[1][..20]).expect_err("short id");
        assert!(matches!(err, Error::MalformedRef { .. }), "{err:?}");
        assert!(
            err.to_string().contains("\"890c228dd533332a4add\""),
            "{err}"
        );
        // Cut inside the object id of a line that still has a name.
        let err = parser
            .push_line(b"890c228dd533332a4add refs/heads/dev\n")
            .expect_err("short id");
        assert!(matches!(err, Error::InvalidOid { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("890c228dd533332a4add refs/heads/dev"));
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn malformed_lines_are_quoted() {
        let payloads = data_payloads(UPLOAD_PACK_V0);
        let with_first = || {
            let mut parser = AdvertisementParser::new();
            parser.push_line(payloads[0]).expect("valid first line");
            parser
        };
        let cases: [(&[u8], &str); 6] = [
            (
                b"garbage\n",
                "expected \"<oid> <refname>\", got \"garbage\\n\"",
            ),
            (payloads[0], "second list"),
            (b"version 2\n", "v2"),
            (b"version 1\n", "first line only"),
            (
                b"fba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v2^{}\n",
                "peels",
            ),
            (
                b"d667bfe9738e87799279827eb529a3d78d7a9391703a046a580f4abb5bb7288c refs/heads/x\n",
                "sha1 object ids",
            ),
        ];
        for (line, expected) in cases {
            let err = with_first().push_line(line).expect_err("malformed");
            assert!(err.to_string().contains(expected), "{err}");
            let quoted = shorten(&line[..7]);
            assert!(err.to_string().contains(&quoted), "{err}");
        }
        let err = AdvertisementParser::new()
            .push_line(b"version 2\n")
            .expect_err("v2");
        assert!(matches!(err, Error::Version2 { .. }));
        let err = AdvertisementParser::new()
            .push_line(b"shallow zzz\n")
            .expect_err("bad shallow");
        assert!(err.to_string().contains("shallow zzz"), "{err}");
    }

    #[test]
    fn a_peeled_line_must_follow_its_tag() {
        let payloads = data_payloads(UPLOAD_PACK_V0);
        let mut parser = AdvertisementParser::new();
        for line in &payloads[..4] {
            parser.push_line(line).expect("valid");
        }
        // refs/tags/v1 came last: its peeled line fits; main's does not any more.
        let err = parser
            .push_line(b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/main^{}\n")
            .expect_err("not right after main");
        assert!(matches!(err, Error::OrphanPeeled { .. }), "{err:?}");
        parser.push_line(payloads[4]).expect("right after v1");
    }

    #[test]
    fn capabilities_line_only_in_empty_repositories() {
        let payloads = data_payloads(UPLOAD_PACK_EMPTY);
        let mut parser = AdvertisementParser::new();
        parser.push_line(payloads[0]).expect("valid");
        let err = parser
            .push_line(b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/main\n")
            .expect_err("ref after capabilities^{}");
        assert!(
            matches!(err, Error::MisplacedCapabilitiesLine { .. }),
            "{err:?}"
        );
        let err = AdvertisementParser::new()
            .push_line(b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf capabilities^{}\0agent=x\n")
            .expect_err("non-null id");
        assert!(err.to_string().contains("capabilities^{}"), "{err}");
        let err = AdvertisementParser::new()
            .push_line(
                b"0000000000000000000000000000000000000000 capabilities^{}\0object-format=md5\n",
            )
            .expect_err("unknown format");
        assert!(matches!(err, Error::Capabilities { .. }), "{err:?}");
        assert!(err.to_string().contains("object-format=md5"), "{err}");
    }
}
