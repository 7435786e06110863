//! The fault sweep: a [`FaultProxy`] in front of a real server (`git daemon`, nginx +
//! `git http-backend`, or OpenSSH's sshd), on the upstream or the downstream side, cuts, stalls, drips, flips or duplicates bytes at offsets placed across a
//! whole sync (advertisement, negotiation, pack start, middle and end, the report). Every run
//! must end with a documented exit code and an error message, leave downstream's refs either
//! as they were or as the exit code and report say, and keep downstream fsck-clean.
//!
//! The suite runs a small sweep; `KALANDRA_FAULT_SWEEP=long` (`bench/fault_sweep.sh`) runs
//! many more offsets and longer drips. See docs/robustness.md, "Fault injection".

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fault_proxy::{Direction, Fault, FaultProxy, Injection, Transcript};
use crate::git_daemon::Daemon;
use crate::harness::{path_arg, random_hex_lines, Refs, Run, World};
use crate::nginx::Nginx;
use crate::sshd::{self, Protocol, Sshd};

/// Exit codes docs/exit-codes.md allows for a sync that reached its servers (5: a mangled
/// advertisement can look like an empty upstream, which the mass-delete guard refuses).
const DOCUMENTED: &[i32] = &[0, 3, 4, 5, 6, 7, 8];

/// Generous: `--max-duration` is 30 s, and kalandra must end on its own well before this.
const RUN_BOUND: Duration = Duration::from_secs(90);

/// How many faulty runs a sweep has going at once: most of a run is waiting (on an idle
/// timeout, a drip, a server's process start), not computing.
const AT_ONCE: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Upstream,
    Downstream,
}

/// The server behind the proxy, and so the transport kalandra speaks through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// `git daemon --enable=receive-pack`.
    Git,
    /// nginx + fcgiwrap + `git http-backend`, smart HTTP protocol v2 (`/v2/`).
    Http,
    /// OpenSSH's sshd, protocol v2; known_hosts trusts its key at each proxy's port.
    Ssh,
}

enum Server {
    Git(Daemon),
    Http(Nginx),
    Ssh(Sshd),
}

impl Server {
    fn start(transport: Transport, w: &World) -> Self {
        match transport {
            Transport::Git => Server::Git(Daemon::start(w.root())),
            Transport::Http => Server::Http(Nginx::start(w)),
            Transport::Ssh => Server::Ssh(sshd::start_for(w, Protocol::V2)),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Server::Git(daemon) => daemon.port(),
            Server::Http(nginx) => nginx.port,
            Server::Ssh(sshd) => sshd.port(),
        }
    }

    /// The URL of `repo` (under the world's `root`) through a proxy on `port`. For ssh, first
    /// trusts the server's host key as `[127.0.0.1]:port` in `~/.ssh/known_hosts`.
    fn url_through(&self, w: &World, repo: &Path, port: u16) -> String {
        let relative = repo.strip_prefix(w.root()).expect("inside the root");
        match self {
            Server::Git(_) => format!("git://127.0.0.1:{port}/{}", relative.display()),
            // nginx has no server_name: the Host header (the proxy's port) does not matter.
            Server::Http(_) => format!("http://127.0.0.1:{port}/v2/{}", relative.display()),
            Server::Ssh(sshd) => {
                use std::io::Write;
                let line = format!("[127.0.0.1]:{port} {}\n", sshd.host_public_key());
                // One short append per case: cases running at once do not interleave lines.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(w.home().join(".ssh").join("known_hosts"))
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .expect("can append to known_hosts");
                format!(
                    "ssh://{}@127.0.0.1:{port}{}",
                    sshd.user(),
                    repo.to_str().expect("test paths are UTF-8")
                )
            }
        }
    }
}

fn long_sweep() -> bool {
    std::env::var("KALANDRA_FAULT_SWEEP").is_ok_and(|v| v == "long")
}

/// The mirror fixture mirrored once into a pristine downstream, then changed upstream so that
/// the next sync creates, updates (with a 64 KiB pack of incompressible data) and deletes.
struct Bench {
    // Declared first: stopped (with every process it started) before the world's files go.
    server: Server,
    transport: Transport,
    w: World,
    up: PathBuf,
    pristine: PathBuf,
    before: Refs,
    cases: AtomicUsize,
}

impl Bench {
    fn new(transport: Transport) -> Self {
        let w = World::new();
        let fx = w.fixture("mirror.sh");
        let (up, pristine) = (fx.join("upstream"), fx.join("empty.git"));
        w.sync_ok(&up, &pristine, &[]);
        let before = w.refs(&pristine);
        w.checkout(&up, "main", None);
        w.commit_file(&up, "fault.txt", &random_hex_lines(11, 1024), "64 KiB more");
        w.git(&up, &["branch", "fault/new", "main"]);
        w.git(&up, &["branch", "-D", "feature/a"]);
        w.checkout(&up, "develop", None);
        let server = Server::start(transport, &w);
        Bench {
            server,
            transport,
            w,
            up,
            pristine,
            before,
            cases: AtomicUsize::new(0),
        }
    }

    /// A fresh copy of the pristine downstream, under the server's root.
    fn fresh_downstream(&self) -> PathBuf {
        let n = self.cases.fetch_add(1, Ordering::Relaxed);
        let down = self.w.root().join(format!("down-{n}.git"));
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.pristine)
            .arg(&down)
            .status()
            .expect("cp runs");
        assert!(status.success(), "cannot copy the pristine downstream");
        down
    }

    /// One sync with `side` behind a proxy injecting `injection`.
    fn run(&self, side: Side, injection: Option<Injection>) -> (Run, PathBuf, FaultProxy) {
        let down = self.fresh_downstream();
        let proxy = FaultProxy::start(self.server.port(), injection);
        let through = |repo: &Path| self.server.url_through(&self.w, repo, proxy.port());
        let (up, down_url) = match side {
            Side::Upstream => (through(&self.up), path_arg(&down).to_owned()),
            Side::Downstream => (path_arg(&self.up).to_owned(), through(&down)),
        };
        let started = Instant::now();
        // No agent and no host-key override from the outside: ssh uses ~/.ssh only.
        let env: [(&str, Option<OsString>); 2] = [
            ("SSH_AUTH_SOCK", None),
            ("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", None),
        ];
        let run = self.w.kalandra_env(
            self.w.root(),
            &[
                "sync",
                "--json",
                "--connect-timeout",
                "5",
                "--idle-timeout",
                "2",
                "--max-duration",
                "30",
                &up,
                &down_url,
            ],
            &self.w.global_config(),
            &env,
        );
        assert!(
            started.elapsed() < RUN_BOUND,
            "kalandra took {:?} with {injection:?} on {:?} {side:?}{run}",
            started.elapsed(),
            self.transport
        );
        (run, down, proxy)
    }

    /// The clean run: must succeed; returns what went each way.
    fn clean(&self, side: Side) -> [Transcript; 2] {
        let (run, down, proxy) = self.run(side, None);
        run.assert_code(0);
        self.w.assert_fsck(&down);
        [
            proxy.transcript(Direction::ToServer),
            proxy.transcript(Direction::ToClient),
        ]
    }

    /// One faulty run, checked. Returns its exit code.
    fn case(&self, side: Side, label: &str, injection: Injection) -> i32 {
        let (run, down, proxy) = self.run(side, Some(injection));
        drop(proxy);
        let what = format!("{:?} {side:?} {label} {injection:?}", self.transport);
        assert!(
            DOCUMENTED.contains(&run.code),
            "undocumented exit code for {what}{run}"
        );
        let report = run.report();
        let reported = report.refs();
        match run.code {
            0 => {}
            // The sync itself finished: each ref that did not land says why.
            3 | 6 | 7 => assert!(
                reported
                    .values()
                    .filter(|r| r.status != "ok")
                    .all(|r| r.reason.as_deref().is_some_and(|m| !m.trim().is_empty())),
                "a ref that did not land without a reason for {what}{run}"
            ),
            _ => assert!(
                report.error().is_some_and(|e| !e.trim().is_empty()),
                "a failure without an error message for {what}{run}"
            ),
        }
        let after = self.w.refs(&down);
        let names: std::collections::BTreeSet<&String> =
            self.before.keys().chain(after.keys()).collect();
        for name in names {
            let (was, is) = (self.before.get(name), after.get(name));
            if was == is {
                continue;
            }
            // Moved: only where the exit code and the report say it may have.
            let entry = reported.get(name);
            let allowed = match run.code {
                0 | 3 | 6 => &["ok"][..],
                7 | 8 => &["ok", "unknown"][..],
                _ => &[][..],
            };
            assert!(
                entry.is_some_and(|e| {
                    allowed.contains(&e.status.as_str()) && e.change.new.as_ref() == is
                }),
                "{name} moved from {was:?} to {is:?}, which exit {} and the report do not say \
                 ({entry:?}) for {what}{run}",
                run.code
            );
        }
        if run.code == 0 {
            for (name, entry) in &reported {
                assert_eq!(
                    after.get(name),
                    entry.change.new.as_ref(),
                    "exit 0 but {name} did not land for {what}{run}"
                );
            }
        }
        self.w.assert_fsck(&down);
        eprintln!(
            "fault-sweep {:?} {side:?} {:?} {label} at {} {:?}: exit {} in {} ms{}",
            self.transport,
            injection.direction,
            injection.at,
            injection.fault,
            run.code,
            report.0["elapsed_ms"],
            report
                .error()
                .map(|e| format!(": {}", e.lines().next().unwrap_or_default()))
                .unwrap_or_default()
        );
        let _ = std::fs::remove_dir_all(&down);
        run.code
    }
}

/// Where the first flush-pkt (`0000`) of a pkt-line stream starts, if the stream opens with
/// well-formed pkt-lines up to it.
fn first_flush(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 4 <= bytes.len() {
        let len = usize::from_str_radix(std::str::from_utf8(&bytes[at..at + 4]).ok()?, 16).ok()?;
        match len {
            0 => return Some(at),
            1..=3 => at += 4,
            _ => at += len,
        }
    }
    None
}

/// Where the first flush-pkt of an HTTP exchange starts: in the first message body (after
/// the headers and, if chunked, the first chunk's size line) that opens with pkt-lines. The
/// `GET .../info/refs` request has no body; the next candidate is then the first POST's.
fn first_flush_in_http_body(bytes: &[u8]) -> Option<usize> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut from = 0;
    while let Some(headers) = find(&bytes[from..], b"\r\n\r\n") {
        let mut body = from + headers + 4;
        if let Some(line) = find(&bytes[body..], b"\r\n") {
            if (1..=8).contains(&line) && bytes[body..body + line].iter().all(u8::is_ascii_hexdigit)
            {
                body += line + 2;
            }
        }
        if let Some(flush) = first_flush(&bytes[body..]) {
            return Some(body + flush);
        }
        from = body;
    }
    None
}

/// Named offsets across one direction of a clean run: its start, the advertisement (or first
/// request), what follows it (negotiation, commands, the report), the pack's start, middle and
/// last 24 bytes, the last byte, and the next connection (downstream's fresh look at its refs).
///
/// ssh is encrypted: the advertisement and the pack cannot be found in its bytes. Its marks
/// are the end of the version banner, then fractions of the first session (the key exchange
/// and authentication come first, the pack in the largest share of the rest), its last
/// bytes and the next session.
fn landmarks(t: &Transcript, transport: Transport) -> Vec<(String, u64)> {
    let total = t.bytes.len() as u64;
    let end_of = |offset: u64| {
        t.connection_starts
            .iter()
            .copied()
            .find(|&s| s > offset)
            .unwrap_or(total)
    };
    let mut out: Vec<(String, u64)> = vec![("start".into(), 0)];
    let last = match transport {
        Transport::Ssh => {
            let session = end_of(0);
            if let Some(banner) = t.bytes.windows(2).position(|w| w == b"\r\n") {
                out.push(("after banner".into(), banner as u64 + 2));
            }
            for (label, eighths) in [("session 1/8", 1), ("session 1/4", 2)] {
                out.push((label.into(), session * eighths / 8));
            }
            for (label, eighths) in [("session 1/2", 4), ("session 3/4", 6)] {
                out.push((label.into(), session * eighths / 8));
            }
            session
        }
        Transport::Git | Transport::Http => {
            let flush = match transport {
                Transport::Http => first_flush_in_http_body(&t.bytes),
                _ => first_flush(&t.bytes),
            };
            if let Some(f) = flush.map(|f| f as u64) {
                out.push(("advertisement".into(), f / 2));
                out.push(("advertisement end".into(), f));
                out.push(("after advertisement".into(), f + 5));
            }
            let pack = t
                .bytes
                .windows(4)
                .position(|w| w == b"PACK")
                .map(|p| p as u64);
            match pack {
                Some(p) => {
                    let end = end_of(p);
                    out.push(("before pack".into(), p.saturating_sub(6)));
                    out.push(("pack start".into(), p + 2));
                    out.push(("pack middle".into(), (p + end) / 2));
                    end
                }
                None => end_of(0),
            }
        }
    };
    out.push(("last 24 bytes".into(), last.saturating_sub(24)));
    out.push(("last 8 bytes".into(), last.saturating_sub(8)));
    out.push(("last byte".into(), last.saturating_sub(1)));
    if let Some(&next) = t.connection_starts.get(1) {
        out.push(("next connection".into(), next + 2));
    }
    if long_sweep() {
        for i in 1..48 {
            out.push((format!("{i}/48"), total * i / 48));
        }
        let named: Vec<u64> = out.iter().map(|(_, n)| *n).collect();
        for n in named {
            for d in [1, 2, 3] {
                out.push(("near".into(), n + d));
                out.push(("near".into(), n.saturating_sub(d)));
            }
        }
    }
    out.retain(|(_, n)| *n < total);
    out.sort_by_key(|(_, n)| *n);
    out.dedup_by_key(|(_, n)| *n);
    out
}

/// The faults of one sweep, and whether each is limited to a few marks ([`slow_marks`]).
fn faults() -> Vec<(Fault, bool)> {
    if long_sweep() {
        return vec![
            (Fault::Cut, false),
            (Fault::Flip, false),
            (Fault::Duplicate { len: 1 }, false),
            (Fault::Duplicate { len: 100 }, false),
            (Fault::Stall, false),
            (
                Fault::Drip {
                    bytes: 400,
                    delay: Duration::from_millis(5),
                },
                false,
            ),
        ];
    }
    vec![
        (Fault::Cut, false),
        (Fault::Flip, false),
        (Fault::Duplicate { len: 16 }, false),
        (Fault::Stall, true),
        (
            Fault::Drip {
                bytes: 48,
                delay: Duration::from_millis(10),
            },
            true,
        ),
    ]
}

/// The stall and drip placements: for ssh, the fractions of the session stand in for the
/// advertisement and the pack.
fn slow_marks(transport: Transport, fault: &Fault) -> &'static [&'static str] {
    match (transport, fault) {
        (Transport::Ssh, Fault::Stall) => &["session 1/8", "session 1/2", "last byte"],
        (Transport::Ssh, _) => &["after banner", "session 1/4", "last 24 bytes"],
        (_, Fault::Stall) => &["advertisement", "pack middle", "last byte"],
        _ => &["after advertisement", "pack start", "last 24 bytes"],
    }
}

fn sweep(transport: Transport, side: Side, which: fn(&Fault) -> bool) {
    let bench = Bench::new(transport);
    let transcripts = bench.clean(side);
    let mut cases: Vec<(String, Injection)> = Vec::new();
    for direction in [Direction::ToServer, Direction::ToClient] {
        let t = &transcripts[direction.index()];
        assert!(
            !t.bytes.is_empty(),
            "the clean run sent nothing {direction:?} on {transport:?} {side:?}"
        );
        let marks = landmarks(t, transport);
        for (fault, limited) in faults().into_iter().filter(|(f, _)| which(f)) {
            for (label, at) in &marks {
                if limited && !slow_marks(transport, &fault).contains(&label.as_str()) {
                    continue;
                }
                let injection = Injection {
                    direction,
                    at: *at,
                    fault,
                };
                cases.push((label.clone(), injection));
            }
        }
    }
    let outcomes: Mutex<BTreeMap<i32, usize>> = Mutex::default();
    for batch in cases.chunks(AT_ONCE) {
        std::thread::scope(|s| {
            for (label, injection) in batch {
                let (bench, outcomes) = (&bench, &outcomes);
                s.spawn(move || {
                    let code = bench.case(side, label, *injection);
                    *outcomes
                        .lock()
                        .expect("no case panicked holding the tally")
                        .entry(code)
                        .or_default() += 1;
                });
            }
        });
    }
    let outcomes = outcomes
        .into_inner()
        .expect("no case panicked holding the tally");
    eprintln!(
        "fault-sweep {transport:?} {side:?} {} runs, by exit code: {outcomes:?}",
        cases.len()
    );
}

fn breaks(f: &Fault) -> bool {
    matches!(f, Fault::Cut | Fault::Flip | Fault::Duplicate { .. })
}

fn slows(f: &Fault) -> bool {
    matches!(f, Fault::Stall | Fault::Drip { .. })
}

#[test]
fn faults_upstream_cut_flip_duplicate() {
    sweep(Transport::Git, Side::Upstream, breaks);
}

#[test]
fn faults_upstream_stall_drip() {
    sweep(Transport::Git, Side::Upstream, slows);
}

#[test]
fn faults_downstream_cut_flip_duplicate() {
    sweep(Transport::Git, Side::Downstream, breaks);
}

#[test]
fn faults_downstream_stall_drip() {
    sweep(Transport::Git, Side::Downstream, slows);
}

#[test]
fn faults_http_upstream_cut_flip_duplicate() {
    sweep(Transport::Http, Side::Upstream, breaks);
}

#[test]
fn faults_http_upstream_stall_drip() {
    sweep(Transport::Http, Side::Upstream, slows);
}

#[test]
fn faults_http_downstream_cut_flip_duplicate() {
    sweep(Transport::Http, Side::Downstream, breaks);
}

#[test]
fn faults_http_downstream_stall_drip() {
    sweep(Transport::Http, Side::Downstream, slows);
}

#[test]
fn faults_ssh_upstream_cut_flip_duplicate() {
    sweep(Transport::Ssh, Side::Upstream, breaks);
}

#[test]
fn faults_ssh_upstream_stall_drip() {
    sweep(Transport::Ssh, Side::Upstream, slows);
}

#[test]
fn faults_ssh_downstream_cut_flip_duplicate() {
    sweep(Transport::Ssh, Side::Downstream, breaks);
}

#[test]
fn faults_ssh_downstream_stall_drip() {
    sweep(Transport::Ssh, Side::Downstream, slows);
}

/// Found by the sweep: downstream accepted the push and said `ok`, then the connection for
/// the fresh look at its refs was cut. That was exit 4, "downstream was not changed", with
/// every ref moved.
#[test]
fn a_fresh_look_cut_after_a_reported_push_is_unknown_not_unchanged() {
    let bench = Bench::new(Transport::Git);
    let [to_server, _] = bench.clean(Side::Downstream);
    let fresh_look = *to_server
        .connection_starts
        .get(1)
        .expect("the clean run opens a second connection to downstream for its fresh look");
    let injection = Injection {
        direction: Direction::ToServer,
        at: fresh_look,
        fault: Fault::Cut,
    };
    let (run, down, proxy) = bench.run(Side::Downstream, Some(injection));
    drop(proxy);
    run.assert_code(7);
    let report = run.report();
    assert_eq!(report.0["outcome"], "unknown", "{run}");
    let after = bench.w.refs(&down);
    for (name, entry) in report.refs() {
        assert_eq!(entry.status, "unknown", "{name}{run}");
        assert!(
            entry
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("fresh look")),
            "{name}: the reason says the fresh look failed{run}"
        );
        assert_eq!(after.get(&name), entry.change.new.as_ref(), "{name} landed");
    }
    bench.w.assert_fsck(&down);
}

/// Found by the sweep: one byte flipped in downstream's report (`ok refs/heads/maio`) made
/// a ref that had landed "rejected" (exit 3). A ref the report does not name is unknown,
/// and the fresh look at downstream's refs settles it.
#[test]
fn a_ref_missing_from_a_garbled_report_is_settled_not_rejected() {
    let bench = Bench::new(Transport::Git);
    let [_, to_client] = bench.clean(Side::Downstream);
    let needle = b"ok refs/heads/main";
    let at = to_client
        .bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the clean report says ok for refs/heads/main")
        + needle.len()
        - 1;
    let injection = Injection {
        direction: Direction::ToClient,
        at: at as u64,
        fault: Fault::Flip,
    };
    let (run, down, proxy) = bench.run(Side::Downstream, Some(injection));
    drop(proxy);
    run.assert_code(0);
    let after = bench.w.refs(&down);
    for (name, entry) in run.report().refs() {
        assert_eq!(entry.status, "ok", "{name}{run}");
        assert_eq!(after.get(&name), entry.change.new.as_ref(), "{name} landed");
    }
    bench.w.assert_fsck(&down);
}

/// Found by the sweep: an ssh server that went silent after the key exchange, during
/// authentication or the channel request, was watched by no timeout: the sync hung until
/// `--max-duration` cut it off, 10 s late, with exit 1. The connect timeout covers it now.
#[test]
fn an_ssh_server_silent_before_the_git_command_runs_is_a_connect_timeout() {
    let bench = Bench::new(Transport::Ssh);
    let [_, to_client] = bench.clean(Side::Downstream);
    // sshd's first encrypted packet (the answer to the userauth service request): the key
    // exchange is over, authentication has not started.
    let injection = Injection {
        direction: Direction::ToClient,
        at: end_of_key_exchange(&to_client.bytes).expect("sshd's NEWKEYS in the clean run"),
        fault: Fault::Stall,
    };
    let (run, down, proxy) = bench.run(Side::Downstream, Some(injection));
    drop(proxy);
    run.assert_code(4);
    assert!(
        run.report()
            .error()
            .is_some_and(|e| e.contains("timed out after 5 s")),
        "the error names the connect timeout{run}"
    );
    assert_eq!(
        bench.w.refs(&down),
        bench.before,
        "downstream unchanged{run}"
    );
    bench.w.assert_fsck(&down);
}

/// The offset just past the server's SSH_MSG_NEWKEYS: after the version line, the binary
/// packets are in the clear until then (RFC 4253 sections 6 and 7.3).
fn end_of_key_exchange(bytes: &[u8]) -> Option<u64> {
    const NEWKEYS: u8 = 21;
    let mut at = bytes.windows(2).position(|w| w == b"\r\n")? + 2;
    loop {
        let length = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        let kind = *bytes.get(at + 5)?;
        at += 4 + length;
        if kind == NEWKEYS {
            return Some(at as u64);
        }
    }
}
