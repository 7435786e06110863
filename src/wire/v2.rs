//! Protocol v2 (gitprotocol-v2.txt): the capability advertisement, the
//! `ls-refs` response, and the `ls-refs` and `fetch` requests.

use crate::oid::{InvalidObjectId, ObjectFormat, ObjectId};
use crate::wire::pkt::{encode_text, DELIM, FLUSH, MAX_DATA_LEN};
use crate::wire::{shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected a capability \"<key>\" or \"<key>=<value>\" with key of [A-Za-z0-9_-], got {found:?}")]
    MalformedCapability { found: String },
    #[error("expected \"<oid> <refname>[ symref-target:<ref>][ peeled:<oid>]\" or \"unborn <refname>[ symref-target:<ref>]\", got {found:?}")]
    MalformedRef { found: String },
    #[error("expected a valid object id in ls-refs line {found:?}")]
    InvalidOid {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
    #[error("expected a request line of at most {MAX_DATA_LEN} bytes (one pkt-line), got {len} bytes: {found:?}")]
    RequestTooLong { found: String, len: usize },
}

/// Appends a request line whose length the caller controls (a ref prefix).
fn encode_argument(line: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    encode_text(line, out).map_err(|_| Error::RequestTooLong {
        found: shorten(line.as_bytes()),
        len: line.len() + 1,
    })
}

/// Appends a request line built from object ids and fixed words only.
fn encode_fixed(line: &str, out: &mut Vec<u8>) {
    encode_text(line, out).expect("because object ids and fixed words fit in a pkt-line");
}

/// Whether the first line of a response announces protocol v2.
pub fn is_version_2(first_line: &[u8]) -> bool {
    trim_newline(first_line) == b"version 2"
}

/// One capability line after `version 2`: `key` or `key=value`
/// (gitprotocol-v2.txt, "Capability Advertisement"). Unlike v0, a value may
/// contain spaces (`fetch=shallow wait-for-done`).
pub fn parse_capability_line(payload: &[u8]) -> Result<(String, Option<String>), Error> {
    let malformed = || Error::MalformedCapability {
        found: shorten(payload),
    };
    let line = std::str::from_utf8(trim_newline(payload)).map_err(|_| malformed())?;
    let (key, value) = match line.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (line, None),
    };
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !key_ok {
        return Err(malformed());
    }
    Ok((key.to_owned(), value.map(str::to_owned)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsRef {
    pub name: String,
    /// `None` for an unborn ref: HEAD of a repository without commits.
    pub oid: Option<ObjectId>,
    pub symref_target: Option<String>,
    pub peeled: Option<ObjectId>,
}

/// One line of the `ls-refs` output (gitprotocol-v2.txt, "ls-refs").
/// Attributes only appear when requested (`symrefs`, `peel`, `unborn`).
pub fn parse_ls_refs_line(payload: &[u8]) -> Result<LsRef, Error> {
    let malformed = || Error::MalformedRef {
        found: shorten(payload),
    };
    let invalid_oid = |source| Error::InvalidOid {
        found: shorten(payload),
        source,
    };
    let line = std::str::from_utf8(trim_newline(payload)).map_err(|_| malformed())?;
    let mut words = line.split(' ');
    let first = words.next().ok_or_else(malformed)?;
    let name = words
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(malformed)?;
    let oid = match first {
        "unborn" => None,
        hex => Some(ObjectId::from_hex(hex.as_bytes()).map_err(invalid_oid)?),
    };
    let mut entry = LsRef {
        name: name.to_owned(),
        oid,
        symref_target: None,
        peeled: None,
    };
    for attribute in words {
        if let Some(target) = attribute.strip_prefix("symref-target:") {
            if entry.symref_target.is_some() || target.is_empty() {
                return Err(malformed());
            }
            entry.symref_target = Some(target.to_owned());
        } else if let Some(hex) = attribute.strip_prefix("peeled:") {
            if entry.peeled.is_some() || entry.oid.is_none() {
                return Err(malformed());
            }
            entry.peeled = Some(ObjectId::from_hex(hex.as_bytes()).map_err(invalid_oid)?);
        } else {
            return Err(malformed());
        }
    }
    Ok(entry)
}

/// Common start of a v2 command request: the command, then capabilities,
/// then the delimiter before the command's arguments
/// (gitprotocol-v2.txt, "Command Request"). `agent` and `object-format` go
/// only to a server that advertised them: one that did not (an upload-pack
/// older than git 2.28 knows no `object-format`) dies on the unknown word.
fn encode_command_header(
    command: &str,
    agent: Option<&str>,
    format: Option<ObjectFormat>,
    out: &mut Vec<u8>,
) {
    encode_fixed(&format!("command={command}"), out);
    if let Some(agent) = agent {
        encode_fixed(&format!("agent={agent}"), out);
    }
    if let Some(format) = format {
        encode_fixed(&format!("object-format={format}"), out);
    }
    out.extend_from_slice(DELIM);
}

pub struct LsRefsRequest<'a> {
    /// Sent only when the server advertised `object-format`.
    pub object_format: Option<ObjectFormat>,
    /// Sent only when the server advertised `agent`.
    pub agent: Option<&'a str>,
    /// Only refs starting with one of these; empty means all refs.
    pub prefixes: &'a [String],
    pub symrefs: bool,
    pub peel: bool,
    pub unborn: bool,
}

impl LsRefsRequest<'_> {
    /// Fails only for a prefix too long for a pkt-line.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        encode_command_header("ls-refs", self.agent, self.object_format, &mut out);
        for (wanted, arg) in [
            (self.peel, "peel"),
            (self.symrefs, "symrefs"),
            (self.unborn, "unborn"),
        ] {
            if wanted {
                encode_fixed(arg, &mut out);
            }
        }
        for prefix in self.prefixes {
            encode_argument(&format!("ref-prefix {prefix}"), &mut out)?;
        }
        out.extend_from_slice(FLUSH);
        Ok(out)
    }
}

pub struct FetchRequest<'a> {
    /// Sent only when the server advertised `object-format`.
    pub object_format: Option<ObjectFormat>,
    /// Sent only when the server advertised `agent`.
    pub agent: Option<&'a str>,
    pub wants: &'a [ObjectId],
    pub haves: &'a [ObjectId],
    pub thin_pack: bool,
    pub ofs_delta: bool,
    pub no_progress: bool,
    /// `filter <spec>` (e.g. `tree:0` for commits and tags only); only
    /// for a server whose `fetch` capability lists `filter`.
    pub filter: Option<&'a str>,
    /// `deepen <n>`: history cut `n` commits below each want.
    pub deepen: Option<u32>,
    /// `wait-for-done`: acknowledge haves but send no pack before `done`.
    pub wait_for_done: bool,
}

impl FetchRequest<'_> {
    /// A single-round request: always ends with `done`, so the server skips
    /// the acknowledgments section and sends the pack right away
    /// (gitprotocol-v2.txt, "fetch", `done`).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_round(true)
    }

    /// A negotiation round without `done`: the server answers with an
    /// `acknowledgments` section (`ACK` for each have it has, and `ready`
    /// once every want reaches a common have), and sends a pack only after
    /// `ready`. Used to ask whether objects exist and how they relate.
    pub fn encode_negotiation(&self) -> Vec<u8> {
        self.encode_round(false)
    }

    fn encode_round(&self, done: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command_header("fetch", self.agent, self.object_format, &mut out);
        for (wanted, arg) in [
            (self.thin_pack, "thin-pack"),
            (self.ofs_delta, "ofs-delta"),
            (self.no_progress, "no-progress"),
            (self.wait_for_done, "wait-for-done"),
        ] {
            if wanted {
                encode_fixed(arg, &mut out);
            }
        }
        if let Some(depth) = self.deepen {
            encode_fixed(&format!("deepen {depth}"), &mut out);
        }
        if let Some(spec) = self.filter {
            encode_fixed(&format!("filter {spec}"), &mut out);
        }
        for want in self.wants {
            encode_fixed(&format!("want {want}"), &mut out);
        }
        for have in self.haves {
            encode_fixed(&format!("have {have}"), &mut out);
        }
        if done {
            encode_fixed("done", &mut out);
        }
        out.extend_from_slice(FLUSH);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::capabilities::Capabilities;
    use crate::wire::pkt::data_payloads;

    fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("valid test id")
    }

    /// `GIT_PROTOCOL=version=2 git upload-pack --advertise-refs` (git 2.47.3).
    const CAPS: &[u8] = b"000eversion 2\n\
0015agent=git/2.47.3\n\
0013ls-refs=unborn\n\
0020fetch=shallow wait-for-done\n\
0012server-option\n\
0017object-format=sha1\n\
0000";

    /// upload-pack's answer to `ls-refs` with `peel`, `symrefs` and `unborn`.
    const LS_REFS: &[u8] =
        b"0050a46acda9c6bbc9781e9380077fcaf50499e5402d HEAD symref-target:refs/heads/main\n\
003c890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/dev\n\
003da46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\n\
006afba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v1 \
peeled:890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
0000";

    /// The same for an empty bare repository.
    const LS_REFS_EMPTY: &[u8] = b"002eunborn HEAD symref-target:refs/heads/main\n0000";

    /// The same for a sha256 repository.
    const LS_REFS_SHA256: &[u8] =
        b"0068d667bfe9738e87799279827eb529a3d78d7a9391703a046a580f4abb5bb7288c HEAD \
symref-target:refs/heads/main\n\
0055d667bfe9738e87799279827eb529a3d78d7a9391703a046a580f4abb5bb7288c refs/heads/main\n\
0000";

    /// What `git clone` (2.47.3) sends as its ls-refs request (GIT_TRACE_PACKET).
    const CLONE_LS_REFS_REQUEST: &[u8] = b"0014command=ls-refs\n\
0015agent=git/2.47.3\n\
0017object-format=sha1\n\
00010009peel\n\
000csymrefs\n\
000bunborn\n\
0014ref-prefix HEAD\n\
001bref-prefix refs/heads/\n\
001aref-prefix refs/tags/\n\
0000";

    /// A fetch request that upload-pack 2.47.3 answered with a pack. git itself
    /// orders the arguments thin-pack, no-progress, ofs-delta; order is free.
    const FETCH_REQUEST: &[u8] = b"0012command=fetch\n\
0015agent=git/2.47.3\n\
0017object-format=sha1\n\
0001000ethin-pack\n\
000eofs-delta\n\
0032want a46acda9c6bbc9781e9380077fcaf50499e5402d\n\
0032have 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
0009done\n\
0000";

    #[test]
    fn parses_recorded_capabilities() {
        let payloads = data_payloads(CAPS);
        assert!(is_version_2(payloads[0]));
        assert!(is_version_2(b"version 2"));
        assert!(!is_version_2(b"version 1\n"));
        let mut caps = Capabilities::default();
        for line in &payloads[1..] {
            let (key, value) = parse_capability_line(line).expect("valid");
            caps.push(&key, value.as_deref());
        }
        assert_eq!(caps.value("agent"), Some("git/2.47.3"));
        assert_eq!(caps.value("ls-refs"), Some("unborn"));
        assert_eq!(caps.value("fetch"), Some("shallow wait-for-done"));
        assert!(caps.contains("server-option"));
        assert_eq!(caps.value("server-option"), None);
        assert_eq!(caps.object_format(), Ok(ObjectFormat::Sha1));
    }

    #[test]
    fn malformed_capabilities_are_quoted() {
        for bad in [&b"=sha1\n"[..], b"fetch shallow", b"", b"agent\xff=x"] {
            let err = parse_capability_line(bad).expect_err("malformed");
            assert!(
                err.to_string().contains(&shorten(&bad[..bad.len().min(5)])),
                "{err}"
            );
        }
        // A truncated line is still one capability: the cut cannot be seen.
        assert_eq!(
            parse_capability_line(b"object-for").expect("valid"),
            ("object-for".to_owned(), None)
        );
    }

    #[test]
    fn parses_recorded_ls_refs() {
        let refs: Vec<_> = data_payloads(LS_REFS)
            .into_iter()
            .map(|line| parse_ls_refs_line(line).expect("valid"))
            .collect();
        assert_eq!(
            refs[0],
            LsRef {
                name: "HEAD".into(),
                oid: Some(oid("a46acda9c6bbc9781e9380077fcaf50499e5402d")),
                symref_target: Some("refs/heads/main".into()),
                peeled: None,
            }
        );
        assert_eq!(refs[1].name, "refs/heads/dev");
        assert_eq!(refs[1].symref_target, None);
        assert_eq!(
            refs[3],
            LsRef {
                name: "refs/tags/v1".into(),
                oid: Some(oid("fba17aa11a9eade640e7b19bb59b6a76bd66f995")),
                symref_target: None,
                peeled: Some(oid("890c228dd533332a4add2fb4e2ec8c3971b3f9cf")),
            }
        );
    }

    #[test]
    fn parses_recorded_unborn_and_sha256() {
        let payloads = data_payloads(LS_REFS_EMPTY);
        assert_eq!(
            parse_ls_refs_line(payloads[0]).expect("valid"),
            LsRef {
                name: "HEAD".into(),
                oid: None,
                symref_target: Some("refs/heads/main".into()),
                peeled: None,
            }
        );
        for line in data_payloads(LS_REFS_SHA256) {
            let entry = parse_ls_refs_line(line).expect("valid");
            assert_eq!(entry.oid.map(|o| o.format()), Some(ObjectFormat::Sha256));
        }
    }

    #[test]
    fn truncated_ls_refs_lines_are_errors() {
        let payloads = data_payloads(LS_REFS);
        for cut in [20, 41, 100] {
            let line = &payloads[3][..cut];
            let err = parse_ls_refs_line(line).expect_err("truncated");
            assert!(err.to_string().contains(&shorten(line)), "{err}");
        }
    }

    #[test]
    fn malformed_ls_refs_lines_are_quoted() {
        for bad in [
            &b"garbage\n"[..],
            b"unborn\n",
            b"unborn HEAD peeled:890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n",
            b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf HEAD frobbed:yes\n",
            b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf HEAD symref-target:a symref-target:b\n",
        ] {
            let err = parse_ls_refs_line(bad).expect_err("malformed");
            let quoted = shorten(crate::wire::trim_newline(bad));
            assert!(err.to_string().contains(&quoted), "{err}");
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }

    #[test]
    fn encodes_ls_refs_like_git_clone() {
        let prefixes = ["HEAD".to_owned(), "refs/heads/".into(), "refs/tags/".into()];
        let request = LsRefsRequest {
            object_format: Some(ObjectFormat::Sha1),
            agent: Some("git/2.47.3"),
            prefixes: &prefixes,
            symrefs: true,
            peel: true,
            unborn: true,
        };
        assert_eq!(request.encode().expect("fits"), CLONE_LS_REFS_REQUEST);
        let minimal = LsRefsRequest {
            object_format: Some(ObjectFormat::Sha256),
            agent: Some("kalandra"),
            prefixes: &[],
            symrefs: false,
            peel: false,
            unborn: false,
        };
        assert_eq!(
            minimal.encode().expect("fits"),
            b"0014command=ls-refs\n0013agent=kalandra\n0019object-format=sha256\n00010000"
        );
    }

    #[test]
    fn unadvertised_agent_and_object_format_are_not_sent() {
        // What git sends to a server that advertises neither (git < 2.28).
        let old_server = LsRefsRequest {
            object_format: None,
            agent: None,
            prefixes: &[],
            symrefs: false,
            peel: false,
            unborn: false,
        };
        assert_eq!(
            old_server.encode().expect("fits"),
            b"0014command=ls-refs\n00010000"
        );
    }

    #[test]
    fn an_oversized_ref_prefix_is_an_error_not_a_panic() {
        let prefixes = [format!("refs/heads/{}", "p".repeat(MAX_DATA_LEN))];
        let request = LsRefsRequest {
            object_format: Some(ObjectFormat::Sha1),
            agent: Some("kalandra"),
            prefixes: &prefixes,
            symrefs: true,
            peel: true,
            unborn: false,
        };
        let err = request.encode().expect_err("too long");
        assert!(matches!(err, Error::RequestTooLong { .. }), "{err:?}");
        assert!(
            err.to_string().contains("ref-prefix refs/heads/ppp"),
            "{err}"
        );
    }

    #[test]
    fn encodes_fetch_request() {
        let wants = [oid("a46acda9c6bbc9781e9380077fcaf50499e5402d")];
        let haves = [oid("890c228dd533332a4add2fb4e2ec8c3971b3f9cf")];
        let request = FetchRequest {
            object_format: Some(ObjectFormat::Sha1),
            agent: Some("git/2.47.3"),
            wants: &wants,
            haves: &haves,
            thin_pack: true,
            ofs_delta: true,
            no_progress: false,
            filter: None,
            deepen: None,
            wait_for_done: false,
        };
        assert_eq!(request.encode(), FETCH_REQUEST);
        let quiet = FetchRequest {
            no_progress: true,
            thin_pack: false,
            haves: &[],
            ..request
        };
        let encoded = quiet.encode();
        assert!(encoded.ends_with(
            b"0001000eofs-delta\n0010no-progress\n\
0032want a46acda9c6bbc9781e9380077fcaf50499e5402d\n0009done\n0000"
        ));
        // As git 2.47 sends them for `git fetch --filter=tree:0 --depth=1`.
        let commits_only = FetchRequest {
            filter: Some("tree:0"),
            deepen: Some(1),
            ..quiet
        };
        assert!(commits_only.encode().ends_with(
            b"0010no-progress\n000ddeepen 1\n0012filter tree:0\n\
0032want a46acda9c6bbc9781e9380077fcaf50499e5402d\n0009done\n0000"
        ));
    }
}
