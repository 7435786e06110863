//! The fault sweep: a [`FaultProxy`] in front of a real `git daemon`, on the upstream or the
//! downstream side, cuts, stalls, drips, flips or duplicates bytes at offsets placed across a
//! whole sync (advertisement, negotiation, pack start, middle and end, the report). Every run
//! must end with a documented exit code and an error message, leave downstream's refs either
//! as they were or as the exit code and report say, and keep downstream fsck-clean.
//!
//! The suite runs a small sweep; `KALANDRA_FAULT_SWEEP=long` (`bench/fault_sweep.sh`) runs
//! many more offsets and longer drips. See docs/robustness.md, "Fault injection".

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::fault_proxy::{Direction, Fault, FaultProxy, Injection, Transcript};
use crate::git_daemon::Daemon;
use crate::harness::{path_arg, random_hex_lines, Refs, Run, World};

/// Exit codes docs/exit-codes.md allows for a sync that reached its servers (5: a mangled
/// advertisement can look like an empty upstream, which the mass-delete guard refuses).
const DOCUMENTED: &[i32] = &[0, 3, 4, 5, 6, 7, 8];

/// Generous: `--max-duration` is 30 s, and kalandra must end on its own well before this.
const RUN_BOUND: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Upstream,
    Downstream,
}

fn long_sweep() -> bool {
    std::env::var("KALANDRA_FAULT_SWEEP").is_ok_and(|v| v == "long")
}

/// The mirror fixture mirrored once into a pristine downstream, then changed upstream so that
/// the next sync creates, updates (with a 64 KiB pack of incompressible data) and deletes.
struct Bench {
    w: World,
    up: PathBuf,
    pristine: PathBuf,
    before: Refs,
    daemon: Daemon,
    cases: std::cell::Cell<usize>,
}

impl Bench {
    fn new() -> Self {
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
        let daemon = Daemon::start(w.root());
        Bench {
            w,
            up,
            pristine,
            before,
            daemon,
            cases: std::cell::Cell::new(0),
        }
    }

    /// A fresh copy of the pristine downstream, under the daemon's root.
    fn fresh_downstream(&self) -> PathBuf {
        let n = self.cases.get();
        self.cases.set(n + 1);
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
        let proxy = FaultProxy::start(self.daemon.port(), injection);
        let through = |repo: &std::path::Path| {
            let relative = repo.strip_prefix(self.w.root()).expect("inside the root");
            format!("git://127.0.0.1:{}/{}", proxy.port(), relative.display())
        };
        let (up, down_url) = match side {
            Side::Upstream => (through(&self.up), path_arg(&down).to_owned()),
            Side::Downstream => (path_arg(&self.up).to_owned(), through(&down)),
        };
        let started = Instant::now();
        let run = self.w.kalandra(&[
            "sync",
            "--json",
            "--idle-timeout",
            "2",
            "--max-duration",
            "30",
            &up,
            &down_url,
        ]);
        assert!(
            started.elapsed() < RUN_BOUND,
            "kalandra took {:?} with {injection:?} on {side:?}{run}",
            started.elapsed()
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
        let what = format!("{side:?} {label} {injection:?}");
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
            "fault-sweep {side:?} {:?} {label} at {} {:?}: exit {} in {} ms{}",
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

/// Named offsets across one direction of a clean run: its start, the advertisement (or first
/// request), what follows it (negotiation, commands, the report), the pack's start, middle and
/// last 24 bytes, the last byte, and the next connection (downstream's fresh look at its refs).
fn landmarks(t: &Transcript) -> Vec<(String, u64)> {
    let total = t.bytes.len() as u64;
    let end_of = |offset: u64| {
        t.connection_starts
            .iter()
            .copied()
            .find(|&s| s > offset)
            .unwrap_or(total)
    };
    let mut out: Vec<(String, u64)> = vec![("start".into(), 0)];
    let flush = first_flush(&t.bytes).map(|f| f as u64);
    if let Some(f) = flush {
        out.push(("advertisement".into(), f / 2));
        out.push(("advertisement end".into(), f));
        out.push(("after advertisement".into(), f + 5));
    }
    let pack = t
        .bytes
        .windows(4)
        .position(|w| w == b"PACK")
        .map(|p| p as u64);
    let last = match pack {
        Some(p) => {
            let end = end_of(p);
            out.push(("before pack".into(), p.saturating_sub(6)));
            out.push(("pack start".into(), p + 2));
            out.push(("pack middle".into(), (p + end) / 2));
            end
        }
        None => end_of(0),
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

/// The faults of one sweep, and at which landmarks (None: all of them).
fn faults() -> Vec<(Fault, Option<&'static [&'static str]>)> {
    if long_sweep() {
        return vec![
            (Fault::Cut, None),
            (Fault::Flip, None),
            (Fault::Duplicate { len: 1 }, None),
            (Fault::Duplicate { len: 100 }, None),
            (Fault::Stall, None),
            (
                Fault::Drip {
                    bytes: 400,
                    delay: Duration::from_millis(5),
                },
                None,
            ),
        ];
    }
    vec![
        (Fault::Cut, None),
        (Fault::Flip, None),
        (Fault::Duplicate { len: 16 }, None),
        (
            Fault::Stall,
            Some(&["advertisement", "pack middle", "last byte"]),
        ),
        (
            Fault::Drip {
                bytes: 48,
                delay: Duration::from_millis(10),
            },
            Some(&["after advertisement", "pack start", "last 24 bytes"]),
        ),
    ]
}

fn sweep(side: Side, which: fn(&Fault) -> bool) {
    let bench = Bench::new();
    let transcripts = bench.clean(side);
    let mut outcomes: BTreeMap<i32, usize> = BTreeMap::new();
    for direction in [Direction::ToServer, Direction::ToClient] {
        let t = &transcripts[direction.index()];
        assert!(
            !t.bytes.is_empty(),
            "the clean run sent nothing {direction:?} on {side:?}"
        );
        let marks = landmarks(t);
        for (fault, only) in faults().into_iter().filter(|(f, _)| which(f)) {
            for (label, at) in &marks {
                if only.is_some_and(|o| !o.contains(&label.as_str())) {
                    continue;
                }
                let code = bench.case(
                    side,
                    label,
                    Injection {
                        direction,
                        at: *at,
                        fault,
                    },
                );
                *outcomes.entry(code).or_default() += 1;
            }
        }
    }
    eprintln!("fault-sweep {side:?} outcomes by exit code: {outcomes:?}");
}

fn breaks(f: &Fault) -> bool {
    matches!(f, Fault::Cut | Fault::Flip | Fault::Duplicate { .. })
}

fn slows(f: &Fault) -> bool {
    matches!(f, Fault::Stall | Fault::Drip { .. })
}

#[test]
fn faults_upstream_cut_flip_duplicate() {
    sweep(Side::Upstream, breaks);
}

#[test]
fn faults_upstream_stall_drip() {
    sweep(Side::Upstream, slows);
}

#[test]
fn faults_downstream_cut_flip_duplicate() {
    sweep(Side::Downstream, breaks);
}

#[test]
fn faults_downstream_stall_drip() {
    sweep(Side::Downstream, slows);
}

/// Found by the sweep: downstream accepted the push and said `ok`, then the connection for
/// the fresh look at its refs was cut. That was exit 4, "downstream was not changed", with
/// every ref moved.
#[test]
fn a_fresh_look_cut_after_a_reported_push_is_unknown_not_unchanged() {
    let bench = Bench::new();
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
    let bench = Bench::new();
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
