//! receive-pack's answer to a push: `report-status` and `report-status-v2`
//! (gitprotocol-pack.txt, "Report Status" and "report-status-v2"). With
//! side-band these pkt-lines arrive nested inside band 1.

use crate::oid::{InvalidObjectId, ObjectId};
use crate::wire::{shorten, trim_newline};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected \"unpack ok\" or \"unpack <error>\" first, got {found:?}")]
    MissingUnpack { found: String },
    #[error("expected a report with an \"unpack\" line, got no lines")]
    Empty,
    #[error("expected one \"unpack\" line only, got another: {found:?}")]
    DuplicateUnpack { found: String },
    #[error("expected \"ok <refname>\", \"ng <refname> <reason>\" or \"option <key>[ <value>]\", got {found:?}")]
    Malformed { found: String },
    #[error("expected \"option\" lines right after an \"ok <refname>\" line, got {found:?}")]
    OrphanOption { found: String },
    #[error("expected a valid object id in {found:?}")]
    InvalidOid {
        found: String,
        #[source]
        source: InvalidObjectId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefResult {
    Ok,
    Rejected(String),
}

/// The result for one command, named as in the command that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefStatus {
    pub name: String,
    pub result: RefResult,
    /// report-status-v2 only: what the server says it really did for an
    /// `ok` command, when that differs from the command. Empty for a plain
    /// receive-pack.
    pub updates: Vec<ReportedUpdate>,
}

/// One update a server made for a command it answered `ok`, as told by the
/// `option` lines after that `ok` (gitprotocol-pack.txt,
/// "report-status-v2"). A proc-receive hook (githooks(5)) sends them, e.g.
/// for AGit-style `refs/for/<branch>` pushes that update another ref; each
/// update comes as its own `ok <ref>` line repeating the command's name,
/// followed by its options (receive-pack.c `report_v2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedUpdate {
    /// `option refname`: the ref really updated (`None`: the command's).
    pub refname: Option<String>,
    /// `option old-oid`.
    pub old: Option<ObjectId>,
    /// `option new-oid`.
    pub new: Option<ObjectId>,
    /// `option forced-update`: not a fast-forward.
    pub forced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `Err` carries receive-pack's reason, e.g. "unpack-objects abnormal exit".
    pub unpack: Result<(), String>,
    pub refs: Vec<RefStatus>,
}

#[derive(Debug, Default)]
pub struct ReportParser {
    unpack: Option<Result<(), String>>,
    refs: Vec<RefStatus>,
    /// The last ref line was "ok", so "option" lines may follow.
    after_ok: bool,
    /// That "ok" line starts a new update: the first "option" after it
    /// opens a [`ReportedUpdate`].
    new_update: bool,
}

impl ReportParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed each inner pkt-line payload in order, up to the flush.
    ///
    /// Statuses keep the name of the command they answer, whatever
    /// `option refname` says: that is how a caller matches them to what it
    /// sent. The options become the status's [`ReportedUpdate`]s.
    pub fn push_line(&mut self, payload: &[u8]) -> Result<(), Error> {
        let line = trim_newline(payload);
        let found = || shorten(payload);

        if let Some(status) = line.strip_prefix(b"unpack ") {
            if self.unpack.is_some() {
                return Err(Error::DuplicateUnpack { found: found() });
            }
            self.unpack = Some(match status {
                b"ok" => Ok(()),
                reason => Err(String::from_utf8_lossy(reason).into_owned()),
            });
            return Ok(());
        }
        if self.unpack.is_none() {
            return Err(Error::MissingUnpack { found: found() });
        }

        if let Some(name) = line.strip_prefix(b"ok ") {
            if name.is_empty() {
                return Err(Error::Malformed { found: found() });
            }
            let name = String::from_utf8_lossy(name).into_owned();
            // A second update for the same command repeats its "ok" line
            // (receive-pack refuses two commands for one ref).
            let repeated = self.after_ok && self.refs.last().is_some_and(|last| last.name == name);
            if !repeated {
                self.refs.push(RefStatus {
                    name,
                    result: RefResult::Ok,
                    updates: Vec::new(),
                });
            }
            self.after_ok = true;
            self.new_update = true;
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix(b"ng ") {
            // git's send-pack tolerates a missing reason, so do we.
            let (name, reason) = match rest.iter().position(|&b| b == b' ') {
                Some(space) => (&rest[..space], &rest[space + 1..]),
                None => (rest, &b""[..]),
            };
            if name.is_empty() {
                return Err(Error::Malformed { found: found() });
            }
            self.refs.push(RefStatus {
                name: String::from_utf8_lossy(name).into_owned(),
                result: RefResult::Rejected(String::from_utf8_lossy(reason).into_owned()),
                updates: Vec::new(),
            });
            self.after_ok = false;
            return Ok(());
        }
        if let Some(option) = line.strip_prefix(b"option ") {
            let Some(status) = self.refs.last_mut().filter(|_| self.after_ok) else {
                return Err(Error::OrphanOption { found: found() });
            };
            if std::mem::take(&mut self.new_update) {
                status.updates.push(ReportedUpdate::default());
            }
            let update = status
                .updates
                .last_mut()
                .expect("because an update was opened after the ok line");
            let (key, value) = match option.iter().position(|&b| b == b' ') {
                Some(space) => (&option[..space], Some(&option[space + 1..])),
                None => (option, None),
            };
            let oid = |hex| {
                ObjectId::from_hex(hex).map_err(|source| Error::InvalidOid {
                    found: found(),
                    source,
                })
            };
            match (key, value) {
                (b"refname", Some(name)) if !name.is_empty() => {
                    update.refname = Some(String::from_utf8_lossy(name).into_owned());
                }
                (b"refname", _) => return Err(Error::Malformed { found: found() }),
                (b"old-oid", Some(hex)) => update.old = Some(oid(hex)?),
                (b"new-oid", Some(hex)) => update.new = Some(oid(hex)?),
                (b"old-oid" | b"new-oid", None) => return Err(Error::Malformed { found: found() }),
                (b"forced-update", _) => update.forced = true,
                // git's send-pack skips keys it does not know; a newer
                // server's extra detail must not fail a push it applied.
                _ => {}
            }
            return Ok(());
        }
        Err(Error::Malformed { found: found() })
    }

    pub fn finish(self) -> Result<Report, Error> {
        let unpack = self.unpack.ok_or(Error::Empty)?;
        Ok(Report {
            unpack,
            refs: self.refs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pkt::data_payloads;
    use crate::wire::sideband::{demux, Band};

    /// receive-pack 2.47.3 with `report-status side-band-64k`, two refs
    /// created: the report is nested in one band 1 packet.
    const SIDEBAND_OK: &[u8] = b"0044\x01000eunpack ok\n\
0017ok refs/heads/main\n\
0016ok refs/heads/dev\n\
00000000";

    /// `report-status` without side-band, push refused by a pre-receive hook.
    const HOOK_DECLINED: &[u8] = b"000eunpack ok\n\
0031ng refs/heads/main pre-receive hook declined\n\
0000";

    /// `report-status` after a pack cut short.
    const BAD_PACK: &[u8] = b"0028unpack unpack-objects abnormal exit\n\
0026ng refs/heads/main unpacker error\n\
0000";

    /// `report-status-v2` (band 1's content) from receive-pack 2.47.3 with
    /// `receive.procReceiveRefs=refs/for` and a proc-receive hook that took
    /// `refs/for/main` as two updates, refs/heads/main and a forced
    /// refs/changes/1, and refused refs/for/other.
    const PROC_RECEIVE: &[u8] = b"000eunpack ok\n\
0015ok refs/for/main\n\
0023option refname refs/heads/main\n\
003coption new-oid 785be155f46003ce1e61d91d0b155a4cf73a5bde\n\
0015ok refs/for/main\n\
0022option refname refs/changes/1\n\
003coption old-oid 785be155f46003ce1e61d91d0b155a4cf73a5bde\n\
003coption new-oid 785be155f46003ce1e61d91d0b155a4cf73a5bde\n\
0019option forced-update\n\
001fng refs/for/other not here\n\
0000";

    /// `report-status-v2` from a proc-receive hook for refs/for/main that
    /// reports every option, then a normal ref.
    const V2_OPTIONS: &[u8] = b"000eunpack ok\n\
0015ok refs/for/main\n\
0024option refname refs/heads/topic\n\
003coption old-oid 0000000000000000000000000000000000000000\n\
003coption new-oid a46acda9c6bbc9781e9380077fcaf50499e5402d\n\
0019option forced-update\n\
0016ok refs/heads/dev\n\
0000";

    fn parse(lines: Vec<&[u8]>) -> Result<Report, Error> {
        let mut parser = ReportParser::new();
        for line in lines {
            parser.push_line(line)?;
        }
        parser.finish()
    }

    fn ok(name: &str) -> RefStatus {
        RefStatus {
            name: name.into(),
            result: RefResult::Ok,
            updates: Vec::new(),
        }
    }

    fn oid(hex: &str) -> Option<ObjectId> {
        Some(ObjectId::from_hex(hex.as_bytes()).expect("valid"))
    }

    #[test]
    fn parses_recorded_sideband_report() {
        let outer = data_payloads(SIDEBAND_OK);
        let Ok(Band::Data(inner)) = demux(outer[0]) else {
            panic!("expected band 1");
        };
        let report = parse(data_payloads(inner)).expect("valid");
        assert_eq!(
            report,
            Report {
                unpack: Ok(()),
                refs: vec![ok("refs/heads/main"), ok("refs/heads/dev")],
            }
        );
    }

    #[test]
    fn parses_recorded_rejections() {
        let report = parse(data_payloads(HOOK_DECLINED)).expect("valid");
        assert_eq!(report.unpack, Ok(()));
        assert_eq!(
            report.refs,
            [RefStatus {
                name: "refs/heads/main".into(),
                result: RefResult::Rejected("pre-receive hook declined".into()),
                updates: Vec::new(),
            }]
        );
        let report = parse(data_payloads(BAD_PACK)).expect("valid");
        assert_eq!(report.unpack, Err("unpack-objects abnormal exit".into()));
        assert_eq!(
            report.refs[0].result,
            RefResult::Rejected("unpacker error".into())
        );
    }

    #[test]
    fn v2_options_describe_the_command_they_follow() {
        let report = parse(data_payloads(V2_OPTIONS)).expect("valid");
        let topic = ReportedUpdate {
            refname: Some("refs/heads/topic".into()),
            old: oid(&"0".repeat(40)),
            new: oid("a46acda9c6bbc9781e9380077fcaf50499e5402d"),
            forced: true,
        };
        assert_eq!(
            report.refs,
            [
                RefStatus {
                    updates: vec![topic],
                    ..ok("refs/for/main")
                },
                ok("refs/heads/dev")
            ]
        );
    }

    #[test]
    fn parses_recorded_proc_receive_report() {
        let report = parse(data_payloads(PROC_RECEIVE)).expect("valid");
        let new = oid("785be155f46003ce1e61d91d0b155a4cf73a5bde");
        assert_eq!(
            report.refs,
            [
                RefStatus {
                    updates: vec![
                        ReportedUpdate {
                            refname: Some("refs/heads/main".into()),
                            old: None,
                            new: new.clone(),
                            forced: false,
                        },
                        ReportedUpdate {
                            refname: Some("refs/changes/1".into()),
                            old: new.clone(),
                            new,
                            forced: true,
                        },
                    ],
                    ..ok("refs/for/main")
                },
                RefStatus {
                    name: "refs/for/other".into(),
                    result: RefResult::Rejected("not here".into()),
                    updates: Vec::new(),
                },
            ]
        );
    }

    #[test]
    fn unknown_v2_options_are_skipped_as_git_does() {
        let mut parser = ReportParser::new();
        for line in [
            &b"unpack ok\n"[..],
            b"ok refs/for/main\n",
            b"option colour blue\n",
            b"option refname refs/heads/main\n",
        ] {
            parser.push_line(line).expect("valid");
        }
        let report = parser.finish().expect("valid");
        assert_eq!(
            report.refs[0].updates,
            [ReportedUpdate {
                refname: Some("refs/heads/main".into()),
                ..ReportedUpdate::default()
            }]
        );
    }

    #[test]
    fn truncated_reports_are_errors() {
        assert_eq!(ReportParser::new().finish(), Err(Error::Empty));
        let lines = data_payloads(V2_OPTIONS);
        // The stream cut before the unpack line: a ref line comes first.
        let err = parse(lines[1..].to_vec()).expect_err("no unpack");
        assert!(err.to_string().contains("\"ok refs/for/main\\n\""), "{err}");
        // Cut inside an option's object id.
        let err = parse(vec![lines[0], lines[1], &lines[3][..30]]).expect_err("short id");
        assert!(
            err.to_string().contains("option old-oid 0000000000000"),
            "{err}"
        );
        let err = parse(vec![b"unpa"]).expect_err("cut keyword");
        assert!(err.to_string().contains("\"unpa\""), "{err}");
    }

    #[test]
    fn malformed_lines_are_quoted() {
        let unpacked = || {
            let mut parser = ReportParser::new();
            parser.push_line(b"unpack ok\n").expect("valid");
            parser
        };
        let cases: [(&[u8], &str); 6] = [
            (b"garbage\n", "got \"garbage\\n\""),
            (b"unpack ok\n", "another"),
            (b"ok \n", "\"ok \\n\""),
            (b"option refname refs/heads/x\n", "right after"),
            (b"option colour blue\n", "right after"),
            (b"ng \n", "\"ng \\n\""),
        ];
        for (line, expected) in cases {
            let err = unpacked().push_line(line).expect_err("malformed");
            assert!(err.to_string().contains(expected), "{err}");
        }
        for (line, expected) in [
            (&b"option refname\n"[..], "option refname"),
            (b"option new-oid\n", "option new-oid"),
        ] {
            let mut parser = unpacked();
            parser.push_line(b"ok refs/heads/main\n").expect("valid");
            let err = parser.push_line(line).expect_err("no value");
            assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
            assert!(err.to_string().contains(expected), "{err}");
        }
        // Options after a rejection belong to nothing.
        let mut parser = unpacked();
        parser
            .push_line(b"ng refs/heads/main\n")
            .expect("reason is optional");
        let err = parser
            .push_line(b"option forced-update\n")
            .expect_err("after ng");
        assert!(matches!(err, Error::OrphanOption { .. }), "{err:?}");
    }
}
