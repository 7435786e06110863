//! Property tests ("fuzzing" without a nightly toolchain): every parser that reads bytes from a
//! server, from git or from the user is fed arbitrary input and mutated recordings of real
//! server output (byte flips, truncations, insertions). Each must return a value or an error,
//! never panic, never produce more than it was given, and stop at the documented caps; where
//! an encoder exists, decoding what it wrote gives the input back.
//!
//! The suite runs proptest's default number of cases (256 per property; `PROPTEST_CASES`
//! overrides it). `bench/fuzz.sh` runs the same properties for an hour; docs/robustness.md
//! reports the result.

use std::pin::Pin;
use std::task::{Context, Poll};

use kalandra::helper::{command, options::Options, quote};
use kalandra::limits::Limits;
use kalandra::oid::{ObjectFormat, ObjectId};
use kalandra::pkt_io::{self, PacketReader};
use kalandra::transport::ssh::config as ssh_config;
use kalandra::url::{mask_credentials, RepoUrl};
use kalandra::wire::advertisement::AdvertisementParser;
use kalandra::wire::commands::{self, Command};
use kalandra::wire::pkt::{self, Decoded, Packet, MAX_DATA_LEN};
use kalandra::wire::report::ReportParser;
use kalandra::wire::v2::{self, FetchRequest, LsRefsRequest};
use kalandra::wire::{fetch, sideband};
use proptest::prelude::*;
use tokio::io::{AsyncRead, ReadBuf};

/// `printf 0000 | git upload-pack --advertise-refs` (git 2.47.3).
const UPLOAD_PACK_V0: &[u8] = b"010b890c228dd533332a4add2fb4e2ec8c3971b3f9cf HEAD\0\
multi_ack thin-pack side-band side-band-64k ofs-delta shallow deepen-since deepen-not \
deepen-relative no-progress include-tag multi_ack_detailed no-done symref=HEAD:refs/heads/main \
object-format=sha1 agent=git/2.47.3\n\
003c890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/dev\n\
003d890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/main\n\
003afba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v1\n\
003d890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/tags/v1^{}\n\
0000";

/// `git receive-pack --advertise-refs` of a shallow bare clone (git 2.47.3).
const RECEIVE_PACK_SHALLOW: &[u8] =
    b"00b1a46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\0\
report-status report-status-v2 delete-refs side-band-64k quiet atomic ofs-delta \
object-format=sha1 agent=git/2.47.3\n\
0035shallow a46acda9c6bbc9781e9380077fcaf50499e5402d\n\
0000";

/// `GIT_PROTOCOL=version=2 git upload-pack --advertise-refs` (git 2.47.3).
const V2_CAPS: &[u8] = b"000eversion 2\n\
0015agent=git/2.47.3\n\
0013ls-refs=unborn\n\
0020fetch=shallow wait-for-done\n\
0012server-option\n\
0017object-format=sha1\n\
0000";

/// upload-pack's answer to `ls-refs` with `peel`, `symrefs` and `unborn` (git 2.47.3).
const LS_REFS: &[u8] =
    b"0050a46acda9c6bbc9781e9380077fcaf50499e5402d HEAD symref-target:refs/heads/main\n\
003c890c228dd533332a4add2fb4e2ec8c3971b3f9cf refs/heads/dev\n\
003da46acda9c6bbc9781e9380077fcaf50499e5402d refs/heads/main\n\
006afba17aa11a9eade640e7b19bb59b6a76bd66f995 refs/tags/v1 \
peeled:890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
0000";

/// A v2 fetch response without `done` (git 2.47.3): acknowledgments, then the packfile
/// section with progress and the start of the pack.
const V2_FETCH: &[u8] = b"0014acknowledgments\n\
0031ACK 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
000aready\n\
0001000dpackfile\n\
0023\x02Enumerating objects: 4, done.\n\
0022\x02Counting objects:  25% (1/4)\r\
00db\x01PACK\0\0\0\x02\0\0\0\x03";

/// receive-pack 2.47.3 with `side-band-64k` and `report-status-v2`, a proc-receive hook's
/// options, a rejection, and hook output on band 2.
const RECEIVE_PACK_REPORT: &[u8] = b"0015\x02no pushes today\n\
00d4\x01000eunpack ok\n\
0019ok refs/for/main/t1\n\
0021option refname refs/heads/t1\n\
003foption old-oid 890c228dd533332a4add2fb4e2ec8c3971b3f9cf\n\
003foption new-oid a46acda9c6bbc9781e9380077fcaf50499e5402d\n\
0031ng refs/heads/main pre-receive hook declined\n\
00000000";

const RECORDINGS: &[&[u8]] = &[
    UPLOAD_PACK_V0,
    RECEIVE_PACK_SHALLOW,
    V2_CAPS,
    LS_REFS,
    V2_FETCH,
    RECEIVE_PACK_REPORT,
];

/// One edit of a recording.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Duplicate { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 1..8),
                // Protocol-shaped insertions hit the interesting paths more often.
                prop::sample::select(vec![
                    b"0000".to_vec(),
                    b"0001".to_vec(),
                    b"0002".to_vec(),
                    b"0004".to_vec(),
                    b"fff0".to_vec(),
                    b"ffff".to_vec(),
                    b"\0".to_vec(),
                    b"^{}".to_vec(),
                    b"ERR ".to_vec(),
                    b"option ".to_vec(),
                    b" ".to_vec(),
                ]),
            ]
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
        (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        let pos = |at: usize| if len == 0 { 0 } else { at % (len + 1) };
        match m {
            Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
            Mutation::Set { at, byte } if len > 0 => bytes[at % len] = *byte,
            Mutation::Truncate { at } => bytes.truncate(pos(*at)),
            Mutation::Insert {
                at,
                bytes: inserted,
            } => {
                let at = pos(*at);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Remove { at, len: n } => {
                let at = pos(*at);
                bytes.drain(at..(at + n).min(len));
            }
            Mutation::Duplicate { at, len: n } => {
                let at = pos(*at);
                let piece = bytes[at..(at + n).min(len)].to_vec();
                bytes.splice(at..at, piece);
            }
            _ => {}
        }
    }
    bytes
}

/// A recording with up to 8 mutations, or arbitrary bytes.
fn server_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (
            prop::sample::select(RECORDINGS.to_vec()),
            proptest::collection::vec(mutation(), 0..8)
        )
            .prop_map(|(recording, mutations)| apply(recording.to_vec(), &mutations)),
        1 => proptest::collection::vec(any::<u8>(), 0..512),
    ]
}

/// The data payloads of `bytes` as pkt-lines, as far as they decode.
fn payloads(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok(Decoded::Complete { packet, consumed }) = pkt::decode(bytes) {
        if let Packet::Data(data) = packet {
            out.push(data.to_vec());
        }
        bytes = &bytes[consumed..];
    }
    out
}

/// Hands out its bytes in chunks of the given sizes (cycled), as a socket may.
struct Chunked {
    bytes: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = size.min(buf.remaining()).min(self.bytes.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(future)
}

fn oid_strategy() -> impl Strategy<Value = ObjectId> {
    prop_oneof![
        "[0-9a-f]{40}".prop_map(|hex| ObjectId::from_hex(hex.as_bytes()).expect("sha1 hex")),
        Just(ObjectId::null(ObjectFormat::Sha1)),
    ]
}

/// Ref names as git allows them on the wire: no space, no NUL, no newline.
fn ref_name() -> impl Strategy<Value = String> {
    "refs/(heads|tags)/[^ :\\x00\\n]{1,40}"
}

proptest! {
    #[test]
    fn pkt_decode_never_panics_and_stays_in_bounds(bytes in server_bytes()) {
        match pkt::decode(&bytes) {
            Ok(Decoded::Complete { packet, consumed }) => {
                prop_assert!(consumed >= 4 && consumed <= bytes.len());
                if let Packet::Data(data) = packet {
                    prop_assert_eq!(data.len(), consumed - 4);
                    prop_assert!(data.len() <= MAX_DATA_LEN);
                }
            }
            Ok(Decoded::Incomplete { needed }) => prop_assert!(needed > 0),
            Err(err) => prop_assert!(err.to_string().len() < 400),
        }
    }

    #[test]
    fn pkt_encode_then_decode_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300), big in 0..3usize) {
        // Sometimes near the largest payload, where the header is fff0.
        let payload = if big == 0 { [payload.clone(), vec![b'x'; MAX_DATA_LEN - payload.len()]].concat() } else { payload };
        let mut out = Vec::new();
        pkt::encode_data(&payload, &mut out).expect("fits");
        prop_assert_eq!(out.len(), payload.len() + 4);
        match pkt::decode(&out).expect("valid") {
            Decoded::Complete { packet: Packet::Data(data), consumed } => {
                prop_assert_eq!(data, &payload[..]);
                prop_assert_eq!(consumed, out.len());
            }
            other => prop_assert!(false, "decoded {:?}", other),
        }
        let mut too_long = payload.clone();
        too_long.resize(MAX_DATA_LEN + 1 + payload.len() % 7, b'y');
        let mut none = Vec::new();
        prop_assert!(pkt::encode_data(&too_long, &mut none).is_err());
        prop_assert!(none.is_empty());
    }

    #[test]
    fn pkt_encode_text_round_trips(line in "[^\\n]{0,200}") {
        let mut out = Vec::new();
        pkt::encode_text(&line, &mut out).expect("fits");
        let decoded = payloads(&out);
        prop_assert_eq!(decoded.len(), 1);
        let expected = format!("{line}\n");
        prop_assert_eq!(&decoded[0][..], expected.as_bytes());
    }

    #[test]
    fn packet_reader_never_panics_and_never_returns_more_than_it_read(
        bytes in server_bytes(),
        sizes in proptest::collection::vec(1..64usize, 1..4),
        max_refs in 1..6usize,
    ) {
        let total = bytes.len();
        let limits = Limits { max_refs, max_advertisement_bytes: 200 };
        let reader = Chunked { bytes: bytes.clone(), at: 0, sizes: sizes.clone(), turn: 0 };
        let mut reader = PacketReader::new(reader).with_limits(limits);
        let (returned, packets) = block_on(async {
            let mut returned = 0;
            let mut packets = 0;
            loop {
                match reader.next().await {
                    Ok(Some(Packet::Data(data))) => returned += data.len() + 4,
                    Ok(Some(_)) => returned += 4,
                    Ok(None) | Err(_) => break,
                }
                packets += 1;
            }
            (returned, packets)
        });
        prop_assert!(returned <= total);
        prop_assert!(packets <= total / 4);
        // Lists are held to the limits whatever the framing.
        let reader = Chunked { bytes, at: 0, sizes, turn: 0 };
        let mut reader = PacketReader::new(reader).with_limits(limits);
        let mut lines = 0;
        let result = block_on(reader.read_until_flush("list", |_| { lines += 1; Ok::<(), ()>(()) }));
        prop_assert!(lines <= max_refs);
        if let Err(pkt_io::Error::Limit(err)) = result {
            prop_assert!(err.to_string().contains("KALANDRA_MAX_"));
        }
    }

    #[test]
    fn v0_advertisements_parse_or_fail_cleanly(bytes in server_bytes()) {
        let lines = payloads(&bytes);
        let mut parser = AdvertisementParser::new();
        let mut fed = 0;
        for line in &lines {
            fed += 1;
            if let Err(err) = parser.push_line(line) {
                prop_assert!(err.to_string().len() < 600, "{}", err);
                break;
            }
        }
        let advertisement = parser.finish();
        prop_assert!(advertisement.refs.len() + advertisement.shallow.len() <= fed);
        for r in &advertisement.refs {
            prop_assert!(!r.name.is_empty() && r.name.len() <= bytes.len());
        }
    }

    #[test]
    fn v2_lines_parse_or_fail_cleanly(bytes in server_bytes()) {
        for line in payloads(&bytes).iter().chain([bytes.clone()].iter()) {
            let _ = v2::is_version_2(line);
            if let Ok((key, value)) = v2::parse_capability_line(line) {
                prop_assert!(key.len() + value.map_or(0, |v| v.len()) <= line.len());
            }
            match v2::parse_ls_refs_line(line) {
                Ok(entry) => prop_assert!(!entry.name.is_empty() && entry.name.len() <= line.len()),
                Err(err) => prop_assert!(err.to_string().len() < 600, "{}", err),
            }
        }
    }

    #[test]
    fn fetch_responses_and_side_band_parse_or_fail_cleanly(bytes in server_bytes()) {
        for line in payloads(&bytes).iter().chain([bytes.clone()].iter()) {
            let _ = fetch::parse_section_header(line);
            let _ = fetch::parse_ack_line(line);
            let _ = fetch::is_v0_negotiation_line(line);
            match sideband::demux(line) {
                Ok(sideband::Band::Data(d) | sideband::Band::Progress(d) | sideband::Band::Fatal(d)) => {
                    prop_assert_eq!(d.len() + 1, line.len());
                    for piece in sideband::progress_lines(d) {
                        prop_assert!(!piece.is_empty() && piece.len() <= d.len());
                    }
                }
                Err(err) => prop_assert!(err.to_string().len() < 400),
            }
        }
    }

    #[test]
    fn reports_parse_or_fail_cleanly(bytes in server_bytes()) {
        // With side-band the report is pkt-lines nested in band 1: parse both levels.
        let mut inner = Vec::new();
        let outer = payloads(&bytes);
        for line in &outer {
            if let Ok(sideband::Band::Data(d)) = sideband::demux(line) {
                inner.extend_from_slice(d);
            }
        }
        for lines in [payloads(&inner), outer] {
            let mut parser = ReportParser::new();
            let mut fed = 0;
            for line in &lines {
                fed += 1;
                if parser.push_line(line).is_err() {
                    break;
                }
            }
            if let Ok(report) = parser.finish() {
                prop_assert!(report.refs.len() <= fed);
                let updates: usize = report.refs.iter().map(|r| r.updates.len()).sum();
                prop_assert!(updates <= fed);
            }
        }
    }

    #[test]
    fn commands_encode_then_parse_round_trips(
        list in proptest::collection::vec((oid_strategy(), oid_strategy(), ref_name()), 1..5),
        caps in proptest::collection::vec("[a-z][a-z0-9-]{0,15}(=[a-z0-9/.]{1,10})?", 0..5),
        options in proptest::collection::vec("[^\\n]{0,30}", 0..3),
    ) {
        let list: Vec<Command> = list
            .into_iter()
            .map(|(old, new, name)| Command { old, new, name })
            .collect();
        let bytes = commands::encode(&list, &caps, &options).expect("short lines fit");
        let lines = payloads(&bytes);
        prop_assert!(lines.len() >= list.len());
        for (i, command) in list.iter().enumerate() {
            let (parsed, parsed_caps) = commands::parse_line(&lines[i]).expect("our own encoding");
            prop_assert_eq!(&parsed, command);
            prop_assert_eq!(parsed_caps.is_some(), i == 0);
            if let Some(parsed_caps) = parsed_caps {
                let names: Vec<String> = parsed_caps.iter().map(|(n, v)| match v {
                    Some(v) => format!("{n}={v}"),
                    None => n.to_owned(),
                }).collect();
                prop_assert_eq!(names, caps.clone());
            }
        }
    }

    #[test]
    fn command_lines_parse_or_fail_cleanly(bytes in server_bytes()) {
        for line in payloads(&bytes).iter().chain([bytes.clone()].iter()) {
            match commands::parse_line(line) {
                Ok((command, _)) => prop_assert!(command.name.len() <= line.len()),
                Err(err) => prop_assert!(err.to_string().len() < 600, "{}", err),
            }
        }
    }

    #[test]
    fn v2_requests_encode_what_they_were_given(
        prefixes in proptest::collection::vec("refs/[^\\n]{0,40}", 0..5),
        wants in proptest::collection::vec(oid_strategy(), 0..4),
        haves in proptest::collection::vec(oid_strategy(), 0..4),
        flags in proptest::collection::vec(any::<bool>(), 6),
        deepen in proptest::option::of(1..1000u32),
    ) {
        let request = LsRefsRequest {
            object_format: Some(ObjectFormat::Sha1),
            agent: Some("kalandra/test"),
            prefixes: &prefixes,
            symrefs: flags[0],
            peel: flags[1],
            unborn: flags[2],
        };
        let bytes = request.encode().expect("short prefixes fit");
        let lines: Vec<String> = payloads(&bytes).into_iter().map(|l| String::from_utf8(l).expect("text")).collect();
        prop_assert_eq!(&lines[0], "command=ls-refs\n");
        let sent: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("ref-prefix ")).map(|p| p.trim_end_matches('\n')).collect();
        prop_assert_eq!(sent, prefixes.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert!(bytes.ends_with(pkt::FLUSH));

        let request = FetchRequest {
            object_format: Some(ObjectFormat::Sha1),
            agent: Some("kalandra/test"),
            wants: &wants,
            haves: &haves,
            thin_pack: flags[3],
            ofs_delta: flags[4],
            no_progress: flags[5],
            filter: flags[0].then_some("tree:0"),
            deepen,
            wait_for_done: flags[1],
        };
        for (bytes, done) in [(request.encode(), true), (request.encode_negotiation(), false)] {
            let lines: Vec<String> = payloads(&bytes).into_iter().map(|l| String::from_utf8(l).expect("text")).collect();
            let sent_wants: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("want ")).map(|w| w.trim_end()).collect();
            let sent_haves: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("have ")).map(|h| h.trim_end()).collect();
            prop_assert_eq!(sent_wants, wants.iter().map(|w| w.as_str()).collect::<Vec<_>>());
            prop_assert_eq!(sent_haves, haves.iter().map(|h| h.as_str()).collect::<Vec<_>>());
            prop_assert_eq!(lines.iter().any(|l| l == "done\n"), done);
        }
    }

    #[test]
    fn helper_commands_parse_or_fail_cleanly(line in prop_oneof![
        "[^\\n]{0,80}",
        "(capabilities|list|list for-push|option|fetch|push|stateless-connect|connect)( [^\\n]{0,40}){0,3}",
    ]) {
        match command::parse(&line) {
            Ok(command::Command::Push(spec)) => {
                prop_assert!(!spec.dst.is_empty());
                prop_assert!(spec.src.len() + spec.dst.len() < line.len());
            }
            Ok(_) => {}
            Err(err) => prop_assert!(err.to_string().contains("remote-helper command")),
        }
    }

    #[test]
    fn helper_push_specs_round_trip(force in any::<bool>(), src in "([^ :+\\n][^ :\\n]{0,19})?", dst in ref_name()) {
        let line = format!("push {}{src}:{dst}", if force { "+" } else { "" });
        match command::parse(&line).expect("a valid push line") {
            command::Command::Push(spec) => {
                prop_assert_eq!(spec.force, force);
                prop_assert_eq!(spec.src, src);
                prop_assert_eq!(spec.dst, dst);
            }
            other => prop_assert!(false, "parsed {:?}", other),
        }
    }

    #[test]
    fn helper_options_and_c_unquoting_never_panic(
        name in prop_oneof![
            prop::sample::select(vec!["progress", "verbosity", "object-format", "dry-run", "atomic", "push-option", "cas"]).prop_map(str::to_owned),
            "[a-z-]{0,12}",
        ],
        value in prop_oneof!["[^\\n]{0,60}", "\"([^\"\\\\\\n]|\\\\[abfnrtv\\\\\"0-7]{1,3}){0,20}\"?[^\\n]{0,3}"],
    ) {
        let mut options = Options::default();
        let _ = options.apply(&name, &value).line();
        if let Ok((out, rest)) = quote::unquote_c_style(value.as_bytes()) {
            prop_assert!(out.len() + rest.len() < value.len());
        }
        let _ = quote::option_value(&value);
    }

    #[test]
    fn c_quoting_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        // Quoted as git's quote_c_style writes it (quote.c).
        let mut quoted = b"\"".to_vec();
        for &b in &bytes {
            match b {
                0x07 => quoted.extend_from_slice(b"\\a"),
                0x08 => quoted.extend_from_slice(b"\\b"),
                0x0c => quoted.extend_from_slice(b"\\f"),
                b'\n' => quoted.extend_from_slice(b"\\n"),
                b'\r' => quoted.extend_from_slice(b"\\r"),
                b'\t' => quoted.extend_from_slice(b"\\t"),
                0x0b => quoted.extend_from_slice(b"\\v"),
                b'\\' | b'"' => quoted.extend_from_slice(&[b'\\', b]),
                b if !(0x20..0x7f).contains(&b) => quoted.extend_from_slice(format!("\\{b:03o}").as_bytes()),
                b => quoted.push(b),
            }
        }
        quoted.push(b'"');
        let (out, rest) = quote::unquote_c_style(&quoted).expect("git's quoting");
        prop_assert_eq!(out, bytes);
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn urls_parse_or_fail_cleanly(input in prop_oneof![
        "[^\\x00]{0,80}",
        "(https?|git|ssh|file|ftp|ext|fd|git\\+ssh)(://|::|:)[a-z:@/%.\\[\\]0-9-]{0,40}",
    ]) {
        match RepoUrl::parse(&input) {
            Ok(url) => { let _ = (url.to_string(), url.scheme()); }
            Err(err) => prop_assert!(err.to_string().chars().count() < 600, "{}", err),
        }
        let masked = mask_credentials(&input);
        prop_assert!(masked.len() <= input.len() + 4 * input.matches("://").count());
    }

    #[test]
    fn url_secrets_never_show(
        scheme in prop::sample::select(vec!["https", "http", "git", "ssh", "ftp", "ht-tp", "file"]),
        user in "[a-z]{1,8}",
        secret in "[a-zA-Z0-9/@:%?#]{0,12}",
        host in "[a-z]{1,8}(\\.example)?",
        port in prop_oneof![Just(String::new()), ":[0-9]{1,6}", ":x[0-9]"],
        path in prop_oneof![Just(String::new()), "/[a-z@:/]{0,12}"],
        prefix in prop_oneof![Just(String::new()), Just("ext::".to_owned()), Just("see ".to_owned())],
    ) {
        // A marker that cannot appear by chance, with the generated secret around it.
        let secret = format!("{secret}Zq9Xk{secret}");
        let input = format!("{prefix}{scheme}://{user}:{secret}@{host}{port}{path}");
        let masked = mask_credentials(&input);
        prop_assert!(!masked.contains("Zq9Xk"), "{} -> {}", input, masked);
        match RepoUrl::parse(&input) {
            Ok(url) => {
                // A URL that parses shows its own Display; a `/` in the secret then ends the
                // authority, which is the URL's meaning, not a leak of a password.
                if !secret.contains(['/', '?', '#']) {
                    prop_assert!(!url.to_string().contains("Zq9Xk"), "{} -> {}", input, url);
                }
            }
            Err(err) => {
                let shown = format!("{err} {err:?}");
                prop_assert!(!shown.contains("Zq9Xk"), "{} -> {}", input, shown);
            }
        }
    }

    #[test]
    fn ssh_config_never_panics(
        text in prop_oneof![
            "[^\\x00]{0,200}",
            proptest::collection::vec(
                "(Host|Match|HostName|User|Port|IdentityFile|IdentitiesOnly|UserKnownHostsFile|StrictHostKeyChecking|ConnectTimeout)[ =\\t]{1,2}[^\\n]{0,30}",
                0..8,
            ).prop_map(|lines| lines.join("\n")),
        ],
        host in "[a-z*?!.]{0,12}",
        raw in "[~%a-z/]{0,20}",
    ) {
        let config = ssh_config::for_host(&text, &host);
        prop_assert!(config.identity_files.len() <= text.lines().count());
        let expanded = ssh_config::expand_path(&raw, "/home/u", &host, "git", "me");
        prop_assert!(expanded.len() <= raw.len() * 8 + 8);
    }
}
