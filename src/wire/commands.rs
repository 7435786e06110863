//! The update commands a client sends to receive-pack
//! (gitprotocol-pack.txt, "Reference Update Request and Packfile Transfer").

use crate::oid::{InvalidObjectId, ObjectId};
use crate::wire::capabilities::{self, Capabilities};
use crate::wire::pkt::{encode_data, encode_text, FLUSH, MAX_DATA_LEN};
use crate::wire::{shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected \"<old-oid> <new-oid> <refname>[\\0<capabilities>]\", got {found:?}")]
    Malformed { found: String },
    #[error("expected valid object ids in command {found:?}")]
    InvalidOid {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
    #[error(
        "expected a command line of at most {MAX_DATA_LEN} bytes (one pkt-line), got {len} bytes \
         for ref {name:?}: the ref name is too long to push"
    )]
    TooLong { name: String, len: usize },
    #[error("expected a push option of at most {MAX_DATA_LEN} bytes (one pkt-line), got {len} bytes: {found:?}")]
    OptionTooLong { found: String, len: usize },
    #[error("expected valid capabilities after the NUL in command {found:?}")]
    Capabilities {
        found: String,
        #[source]
        source: capabilities::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: ObjectId,
    pub new: ObjectId,
    pub name: String,
}

impl Command {
    /// A delete has the null id as its new value.
    pub fn is_delete(&self) -> bool {
        self.new.is_null()
    }
}

/// Encodes the command list, the flush after it and the push options.
///
/// The capabilities ride on the first command after a NUL. git's send-pack
/// omits the newlines and puts a space after the NUL; receive-pack strips a
/// trailing newline (it reads with `PACKET_READ_CHOMP_NEWLINE`) and skips
/// empty words, so both forms mean the same. Push options follow the
/// flush, each in its own pkt-line, ended by another flush
/// (gitprotocol-pack.txt, "push-options"). With no commands, only a flush is
/// written: receive-pack then expects neither options nor a pack.
///
/// git sets no limit on a ref name's length but a command must fit in one
/// pkt-line, so a name of some 65 400 bytes cannot be pushed: that is
/// [`Error::TooLong`], found before anything is sent.
pub fn encode(
    commands: &[Command],
    capabilities: &[String],
    push_options: &[String],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        let line = format!("{} {} {}", command.old, command.new, command.name);
        let too_long = |len| Error::TooLong {
            name: shorten(command.name.as_bytes()),
            len,
        };
        if i == 0 {
            let line = format!("{line}\0{}\n", capabilities.join(" "));
            encode_data(line.as_bytes(), &mut out).map_err(|_| too_long(line.len()))?;
        } else {
            encode_text(&line, &mut out).map_err(|_| too_long(line.len() + 1))?;
        }
    }
    out.extend_from_slice(FLUSH);
    if !commands.is_empty() && !push_options.is_empty() {
        for option in push_options {
            encode_text(option, &mut out).map_err(|_| Error::OptionTooLong {
                found: shorten(option.as_bytes()),
                len: option.len(),
            })?;
        }
        out.extend_from_slice(FLUSH);
    }
    Ok(out)
}

/// Parses one command line as receive-pack does; the first one carries the
/// capabilities. The inverse of [`encode`], for checking what a client sent.
pub fn parse_line(payload: &[u8]) -> Result<(Command, Option<Capabilities>), Error> {
    let line = trim_newline(payload);
    let (command, caps) = match line.iter().position(|&b| b == 0) {
        Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
        None => (line, None),
    };
    let malformed = || Error::Malformed {
        found: shorten(payload),
    };
    let invalid_oid = |source| Error::InvalidOid {
        found: shorten(payload),
        source,
    };
    let mut words = command.splitn(3, |&b| b == b' ');
    let (Some(old), Some(new), Some(name)) = (words.next(), words.next(), words.next()) else {
        return Err(malformed());
    };
    let old = ObjectId::from_hex(old).map_err(invalid_oid)?;
    let new = ObjectId::from_hex(new).map_err(invalid_oid)?;
    let name = std::str::from_utf8(name).map_err(|_| malformed())?;
    if name.is_empty() || name.contains(' ') || old.format() != new.format() {
        return Err(malformed());
    }
    let caps = caps
        .map(Capabilities::parse_v0)
        .transpose()
        .map_err(|source| Error::Capabilities {
            found: shorten(payload),
            source,
        })?;
    let command = Command {
        old,
        new,
        name: name.to_owned(),
    };
    Ok((command, caps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid::ObjectFormat;
    use crate::wire::pkt::data_payloads;

    fn oid(hex: &str) -> ObjectId {
        ObjectId::from_hex(hex.as_bytes()).expect("valid test id")
    }

    const MAIN: &str = "a46acda9c6bbc9781e9380077fcaf50499e5402d";
    const DEV: &str = "890c228dd533332a4add2fb4e2ec8c3971b3f9cf";

    /// What `git push -o ci.skip -o "note=hi there" <url> main dev` (2.47.3)
    /// sent to receive-pack, up to the pack: no newlines, space after NUL.
    const GIT_PUSH: &[u8] = b"00bc0000000000000000000000000000000000000000 \
a46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\0 report-status-v2 side-band-64k \
quiet push-options object-format=sha1 agent=git/2.47.3\
00640000000000000000000000000000000000000000 890c228dd533332a4add2fb4e2ec8c3971b3f9cf \
refs/heads/dev\
0000\
000bci.skip\
0011note=hi there\
0000";

    /// Our encoding of the same; receive-pack 2.47.3 accepted it (with a pack)
    /// and its pre-receive hook saw both refs and both options without newlines.
    const OURS: &[u8] = b"00a30000000000000000000000000000000000000000 \
a46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\0report-status push-options \
object-format=sha1 agent=kalandra\n\
00650000000000000000000000000000000000000000 890c228dd533332a4add2fb4e2ec8c3971b3f9cf \
refs/heads/dev\n\
0000\
000cci.skip\n\
0012note=hi there\n\
0000";

    fn commands() -> Vec<Command> {
        let null = ObjectId::null(ObjectFormat::Sha1);
        vec![
            Command {
                old: null.clone(),
                new: oid(MAIN),
                name: "refs/heads/main".into(),
            },
            Command {
                old: null,
                new: oid(DEV),
                name: "refs/heads/dev".into(),
            },
        ]
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn encodes_commands_and_push_options() {
        let caps = strings(&[
            "report-status",
            "push-options",
            "object-format=sha1",
            "agent=kalandra",
        ]);
        let options = strings(&["ci.skip", "note=hi there"]);
        assert_eq!(encode(&commands(), &caps, &options).expect("fits"), OURS);
    }

    #[test]
    fn parses_what_git_push_sent() {
        let payloads = data_payloads(GIT_PUSH);
        let (first, caps) = parse_line(payloads[0]).expect("valid");
        let (second, none) = parse_line(payloads[1]).expect("valid");
        assert_eq!(vec![first, second], commands());
        assert_eq!(none, None);
        let caps = caps.expect("first line has capabilities");
        assert!(caps.contains("push-options"));
        assert_eq!(caps.value("agent"), Some("git/2.47.3"));
        // Our encoding parses back to the same commands.
        let ours = data_payloads(OURS);
        assert_eq!(parse_line(ours[0]).expect("valid").0, commands()[0]);
        assert_eq!(parse_line(ours[1]).expect("valid").0, commands()[1]);
    }

    #[test]
    fn deletes_and_edge_cases() {
        // `git push <url> :dev` (2.47.3): a delete, no pack follows.
        let recorded = b"890c228dd533332a4add2fb4e2ec8c3971b3f9cf \
0000000000000000000000000000000000000000 refs/heads/dev\0 report-status-v2 side-band-64k \
quiet object-format=sha1 agent=git/2.47.3";
        let (delete, _) = parse_line(recorded).expect("valid");
        assert!(delete.is_delete());
        assert!(!commands()[0].is_delete());
        let encoded = encode(&[delete], &[], &strings(&["ignored? no: sent"])).expect("fits");
        assert_eq!(
            encoded,
            b"0066890c228dd533332a4add2fb4e2ec8c3971b3f9cf \
0000000000000000000000000000000000000000 refs/heads/dev\0\n0000\
0016ignored? no: sent\n0000"
        );
        assert_eq!(
            encode(&[], &strings(&["report-status"]), &strings(&["x"])).expect("fits"),
            FLUSH
        );
        assert!(encode(&commands(), &[], &[])
            .expect("fits")
            .ends_with(b"refs/heads/dev\n0000"));
    }

    #[test]
    fn truncated_and_malformed_commands_are_quoted() {
        let payloads = data_payloads(OURS);
        let cut = &payloads[1][..60];
        let err = parse_line(cut).expect_err("cut in the new id");
        assert!(err.to_string().contains(&shorten(cut)), "{err}");
        let cut = &payloads[1][..82];
        let err = parse_line(cut).expect_err("no ref name");
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
        for bad in [&b"garbage\n"[..], b"update refs/heads/main please"] {
            let err = parse_line(bad).expect_err("malformed");
            assert!(err.to_string().contains(&shorten(&bad[..7])), "{err}");
        }
        let mut bad_caps = payloads[0].to_vec();
        bad_caps.extend_from_slice(b" =x");
        let err = parse_line(&bad_caps).expect_err("bad caps");
        assert!(matches!(err, Error::Capabilities { .. }), "{err:?}");
    }

    #[test]
    fn a_ref_name_too_long_for_a_pkt_line_is_an_error_not_a_panic() {
        let caps = strings(&["report-status-v2", "side-band-64k", "agent=kalandra"]);
        // 82 bytes of ids and spaces, then the name: this name fits alone,
        // but not with the capabilities of a first command.
        let name = format!("refs/heads/{}", "n".repeat(MAX_DATA_LEN - 82 - 11 - 1));
        for (first, second) in [
            (name.clone(), "refs/heads/ok"),
            ("refs/heads/ok".into(), &name[..]),
        ] {
            let mut list = commands();
            list[0].name = first;
            list[1].name = second.to_owned();
            let result = encode(&list, &caps, &[]);
            if second == name {
                // As a plain line it still fits, exactly.
                let bytes = result.expect("fits without capabilities");
                assert!(bytes.windows(4).any(|w| w == b"fff0"));
                continue;
            }
            let err = result.expect_err("too long");
            assert!(matches!(err, Error::TooLong { .. }), "{err:?}");
            assert!(err.to_string().contains("refs/heads/nnnn"), "{err}");
            assert!(err.to_string().len() < 400, "the name is shortened: {err}");
        }
        let mut list = commands();
        list[1].name = format!("{name}n");
        let err = encode(&list, &caps, &[]).expect_err("too long as a plain line");
        assert!(err.to_string().contains("65517 bytes"), "{err}");
        let err = encode(&commands(), &caps, &["o".repeat(MAX_DATA_LEN)]).expect_err("option");
        assert!(matches!(err, Error::OptionTooLong { .. }), "{err:?}");
    }
}
