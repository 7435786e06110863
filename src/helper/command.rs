//! The remote-helper protocol's commands and replies, as pure text.
//!
//! git writes one command per line on the helper's stdin
//! (gitremote-helpers(7)); batches (`push`, `fetch`) end with a blank
//! line. Replies are fixed strings that git matches exactly, so they all
//! live here.

/// A command line from git could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("unknown remote-helper command {line:?}")]
    Unknown { line: String },
    #[error("malformed remote-helper command {line:?}: expected {expected}")]
    Malformed {
        line: String,
        expected: &'static str,
    },
}

/// One line from git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capabilities,
    /// `list`, or `list for-push` (refs of the side that is pushed to).
    List {
        for_push: bool,
    },
    Option {
        name: String,
        value: String,
    },
    /// `stateless-connect <service>`: a protocol v2 proxy.
    StatelessConnect {
        service: String,
    },
    /// `connect <service>`: a full-duplex proxy (not advertised; refused).
    Connect {
        service: String,
    },
    /// `fetch <oid> <name>`, the v0 fallback.
    Fetch {
        oid: String,
        name: String,
    },
    Push(PushSpec),
    /// The blank line that ends a batch or the session.
    Blank,
}

/// `push [+]<src>:<dst>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSpec {
    pub force: bool,
    /// As the user typed it (`main`, `HEAD~1`, an oid); empty for a delete.
    pub src: String,
    pub dst: String,
}

impl PushSpec {
    pub fn is_delete(&self) -> bool {
        self.src.is_empty()
    }
}

/// Parses one line, without its newline.
pub fn parse(line: &str) -> Result<Command, Error> {
    let malformed = |expected| Error::Malformed {
        line: line.to_owned(),
        expected,
    };
    let words: Vec<&str> = line.splitn(3, ' ').collect();
    match words.as_slice() {
        [""] => Ok(Command::Blank),
        ["capabilities"] => Ok(Command::Capabilities),
        ["list"] => Ok(Command::List { for_push: false }),
        ["list", "for-push"] => Ok(Command::List { for_push: true }),
        ["option", name, value] => Ok(Command::Option {
            name: (*name).to_owned(),
            value: (*value).to_owned(),
        }),
        ["option", ..] => Err(malformed("option <name> <value>")),
        ["stateless-connect", service] => Ok(Command::StatelessConnect {
            service: (*service).to_owned(),
        }),
        ["connect", service] => Ok(Command::Connect {
            service: (*service).to_owned(),
        }),
        ["fetch", oid, name] => Ok(Command::Fetch {
            oid: (*oid).to_owned(),
            name: (*name).to_owned(),
        }),
        ["fetch", ..] => Err(malformed("fetch <oid> <name>")),
        ["push", spec] => parse_push_spec(spec).ok_or_else(|| malformed("push [+]<src>:<dst>")),
        ["push", ..] => Err(malformed("push [+]<src>:<dst>")),
        _ => Err(Error::Unknown {
            line: line.to_owned(),
        }),
    }
}

fn parse_push_spec(spec: &str) -> Option<Command> {
    let (force, spec) = match spec.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, spec),
    };
    // The destination is a full ref name and has no ':'; the source may
    // (e.g. `HEAD:path` is not valid for push, but split at the last one).
    let (src, dst) = spec.rsplit_once(':')?;
    if dst.is_empty() {
        return None;
    }
    Some(Command::Push(PushSpec {
        force,
        src: src.to_owned(),
        dst: dst.to_owned(),
    }))
}

/// The capabilities this helper offers. `connect` is deliberately absent:
/// git would use it for receive-pack too and build the pack from local
/// objects, which is exactly what the pair must not do.
pub const CAPABILITIES: &[&str] = &[
    "stateless-connect",
    "fetch",
    "push",
    "option",
    "object-format",
];

/// Reply to `stateless-connect` when the proxy cannot be set up and git
/// should use `list`/`fetch` instead.
pub const FALLBACK: &str = "fallback";

/// The line before the blank one that ends the reply to a `fetch` batch,
/// naming the `.keep` file that protects the new pack until git has written
/// the refs; git removes the file then (gitremote-helpers(7), "fetch").
pub fn lock_line(keep: &std::path::Path) -> String {
    format!("lock {}\n", keep.display())
}

/// Why git's own checks would refuse a ref; git prints its usual advice
/// for each of these exact strings (transport-helper.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NonFastForward,
    FetchFirst,
    StaleInfo,
    AlreadyExists,
    NeedsForce,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonFastForward => "non-fast forward",
            Self::FetchFirst => "fetch first",
            Self::StaleInfo => "stale info",
            Self::AlreadyExists => "already exists",
            Self::NeedsForce => "needs force",
        }
    }
}

/// A capability a push needs from DOWN's receive-pack and DOWN did not
/// advertise. git's send-pack dies before sending anything then, with these
/// exact messages (send-pack.c), rather than push without it: receive-pack
/// would silently apply a non-atomic push or drop the options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MissingCapability {
    #[error("the receiving end does not support --atomic push")]
    Atomic,
    #[error("the receiving end does not support push options")]
    PushOptions,
}

impl MissingCapability {
    /// The capability receive-pack advertises.
    pub fn capability(self) -> &'static str {
        match self {
            Self::Atomic => "atomic",
            Self::PushOptions => "push-options",
        }
    }
}

/// A per-ref reply to a push batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushReply {
    Ok,
    UpToDate,
    Refused(Refusal),
    Error(String),
}

impl PushReply {
    /// The reply line, without the newline.
    pub fn line(&self, dst: &str) -> String {
        match self {
            Self::Ok => format!("ok {dst}"),
            Self::UpToDate => format!("ok {dst} up to date"),
            Self::Refused(refusal) => format!("error {dst} {}", refusal.as_str()),
            // git unquotes a C-quoted message; a plain one must not start
            // with '"' and stays on one line.
            Self::Error(message) => {
                let message = message.replace(['\n', '\r'], " ");
                let message = message.trim_start_matches('"');
                format!("error {dst} {message}")
            }
        }
    }

    pub fn is_success(&self) -> bool {
        matches!(self, Self::Ok | Self::UpToDate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(parse("capabilities"), Ok(Command::Capabilities));
        assert_eq!(parse(""), Ok(Command::Blank));
        assert_eq!(parse("list"), Ok(Command::List { for_push: false }));
        assert_eq!(parse("list for-push"), Ok(Command::List { for_push: true }));
        assert_eq!(
            parse("option push-option has spaces in it"),
            Ok(Command::Option {
                name: "push-option".into(),
                value: "has spaces in it".into()
            })
        );
        assert_eq!(
            parse("stateless-connect git-upload-pack"),
            Ok(Command::StatelessConnect {
                service: "git-upload-pack".into()
            })
        );
        assert_eq!(
            parse("fetch 0123456789012345678901234567890123456789 refs/heads/main"),
            Ok(Command::Fetch {
                oid: "0123456789012345678901234567890123456789".into(),
                name: "refs/heads/main".into()
            })
        );
    }

    #[test]
    fn parses_push_specs() {
        assert_eq!(
            parse("push +HEAD~1:refs/heads/x"),
            Ok(Command::Push(PushSpec {
                force: true,
                src: "HEAD~1".into(),
                dst: "refs/heads/x".into()
            }))
        );
        let Ok(Command::Push(delete)) = parse("push :refs/heads/gone") else {
            panic!("a delete parses")
        };
        assert!(delete.is_delete());
        assert!(!delete.force);
    }

    #[test]
    fn rejects_malformed_lines_quoting_them() {
        let err = parse("push refs/heads/x").expect_err("no colon");
        assert!(err.to_string().contains("push refs/heads/x"), "{err}");
        assert!(matches!(parse("frobnicate"), Err(Error::Unknown { .. })));
        assert!(matches!(parse("fetch abc"), Err(Error::Malformed { .. })));
        assert!(matches!(parse("push a:"), Err(Error::Malformed { .. })));
    }

    #[test]
    fn missing_capabilities_use_send_packs_messages() {
        assert_eq!(
            MissingCapability::Atomic.to_string(),
            "the receiving end does not support --atomic push"
        );
        assert_eq!(
            MissingCapability::PushOptions.to_string(),
            "the receiving end does not support push options"
        );
        assert_eq!(MissingCapability::PushOptions.capability(), "push-options");
    }

    #[test]
    fn replies_use_gits_exact_strings() {
        let dst = "refs/heads/main";
        assert_eq!(PushReply::Ok.line(dst), "ok refs/heads/main");
        assert_eq!(
            PushReply::UpToDate.line(dst),
            "ok refs/heads/main up to date"
        );
        assert_eq!(
            PushReply::Refused(Refusal::NonFastForward).line(dst),
            "error refs/heads/main non-fast forward"
        );
        assert_eq!(
            PushReply::Refused(Refusal::FetchFirst).line(dst),
            "error refs/heads/main fetch first"
        );
        assert_eq!(
            PushReply::Error("two\nlines".into()).line(dst),
            "error refs/heads/main two lines"
        );
    }
}
