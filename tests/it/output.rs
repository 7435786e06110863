//! Output for people (issue 12): the progress bar on a real pseudo-terminal (`script` from
//! util-linux), plain periodic lines and no escape sequences on a pipe, `--color` and
//! `NO_COLOR`, the `-v` phase logs, and the packet trace of both sides.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{
    assert_refs_eq, helper_dir, kalandra_bin, pair_url, path_arg, path_with_first,
    random_hex_lines, Run, Scope, World,
};
use crate::nginx::{Nginx, PASSWORD};

/// What the terminal showed: everything kalandra wrote, stdout and stderr, through a pty.
struct Screen {
    code: i32,
    raw: String,
}

impl std::fmt::Display for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- exit {} --- what the terminal got (escaped):\n{}\n---",
            self.code,
            self.raw
                .escape_debug()
                .to_string()
                .replace("\\r\\n", "\\r\\n\n")
        )
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Runs kalandra with `args` on a pseudo-terminal of 100 columns (`script -qec`), in the
/// world's isolated environment plus `env` (`None` removes a variable).
fn on_terminal(w: &World, args: &[&str], env: &[(&str, Option<&str>)]) -> Screen {
    run_on_terminal(w, &kalandra_bin(), args, env)
}

fn run_on_terminal(
    w: &World,
    program: &Path,
    args: &[&str],
    env: &[(&str, Option<&str>)],
) -> Screen {
    let mut line = format!(
        "stty cols 100 rows 30; exec {}",
        shell_quote(path_arg(program))
    );
    for arg in args {
        line.push(' ');
        line.push_str(&shell_quote(arg));
    }
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "script", "-qec", &line, "/dev/null"])
        .current_dir(w.root())
        .stdin(std::process::Stdio::null());
    w.isolate(&mut cmd, &w.global_config());
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run script(1) from util-linux: {e}"));
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("script:"),
        "script(1) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Screen {
        code: out.status.code().unwrap_or(-1),
        raw: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// kalandra on pipes, with `env` on top of the isolated environment.
fn on_pipe(w: &World, args: &[&str], env: &[(&str, Option<&str>)]) -> Run {
    let env: Vec<(&str, Option<OsString>)> = env
        .iter()
        .map(|(name, value)| (*name, value.map(OsString::from)))
        .collect();
    w.kalandra_env(w.root(), args, &w.global_config(), &env)
}

/// DOWN holds UP's refs of the default scope, and is connected.
#[track_caller]
fn assert_synced(w: &World, up: &Path, down: &Path, what: &dyn std::fmt::Display) {
    let scope = Scope::from_args(&[]);
    assert_refs_eq(
        &scope.filter(&w.refs(down)),
        &scope.filter(&w.refs(up)),
        &format!("downstream after the sync{what}"),
    );
    w.assert_fsck(down);
}

/// The lines printed above the bar: each starts right after the bar is cleared
/// (`\r` + erase line) with `upstream: ` or `downstream: `, and ends at the padding indicatif
/// writes up to the terminal's width, or at a line end.
fn printed_server_lines(raw: &str) -> Vec<String> {
    raw.split("\r\x1b[2K")
        .filter(|segment| segment.starts_with("upstream: ") || segment.starts_with("downstream: "))
        .map(|segment| {
            let end = segment
                .find("  ")
                .or_else(|| segment.find(['\r', '\n', '\x1b']))
                .unwrap_or(segment.len());
            segment[..end].to_owned()
        })
        .collect()
}

/// bigfile.sh plus a second branch whose pack holds deltas against the first, so that the
/// relay's pack is sizeable and downstream (index-pack, with unpackLimit 1) resolves deltas.
fn big_pair(w: &World) -> (PathBuf, PathBuf) {
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.git(&down, &["config", "receive.unpackLimit", "1"]);
    let text = std::fs::read_to_string(up.join("big.txt")).expect("bigfile.sh wrote big.txt");
    w.commit_file(
        &up,
        "big.txt",
        &format!("{text}one more line\n"),
        "grow big.txt",
    );
    (up, down)
}

/// A packObjectsHook body that hands upstream's pack out 16 KiB at a time, a tenth of a
/// second apart.
const THROTTLED_PACK: &str = "tmp=$(mktemp)\n\"$@\" >\"$tmp\" || exit 1\nsize=$(wc -c <\"$tmp\")\n\
    i=0\nwhile [ $((i * 16384)) -lt \"$size\" ]; do\n  \
    dd if=\"$tmp\" bs=16384 skip=$i count=1 2>/dev/null\n  sleep 0.1\n  i=$((i + 1))\ndone\n\
    rm -f \"$tmp\"";

fn pack_objects_hook(w: &World, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hook = w.root().join("slow-pack.sh");
    std::fs::write(&hook, format!("#!/bin/sh\n{body}\n")).expect("can write the hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
    w.global_config_with(
        "slow-pack.gitconfig",
        &format!("[uploadpack]\n\tpackObjectsHook = {}\n", path_arg(&hook)),
    )
}

fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let at = text.find(prefix)? + prefix.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn a_terminal_shows_the_bar_whole_server_lines_and_the_final_totals() {
    let w = World::new();
    let (up, down) = big_pair(&w);
    let screen = on_terminal(&w, &["sync", "-v", path_arg(&up), path_arg(&down)], &[]);
    assert_eq!(screen.code, 0, "{screen}");
    assert_synced(&w, &up, &down, &screen);
    let raw = &screen.raw;

    // The bar's parts: elapsed seconds, bytes, rate, the objects counted as they stream
    // against the pack header's total.
    let objects =
        number_after(raw, "Relayed ").unwrap_or_else(|| panic!("no final totals{screen}"));
    assert!(
        raw.contains(&format!("  {objects}/{objects} objects | ")),
        "the count reaches the total{screen}"
    );
    let tips: Vec<String> = w
        .refs(&up)
        .into_iter()
        .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .map(|(_, oid)| oid)
        .collect();
    assert_eq!(
        objects as usize,
        w.count_objects_between(&up, &tips, &[]),
        "the bar shows the pack header's object count{screen}"
    );
    assert!(raw.contains("B/s"), "a rate{screen}");
    assert!(
        raw.contains("   0s ") || raw.contains("   1s "),
        "elapsed time{screen}"
    );
    assert!(raw.contains(" KiB "), "bytes relayed{screen}");

    // Server lines reassembled and printed whole above the bar: each finished line once, no
    // meter's intermediate state, nothing cut.
    let lines = printed_server_lines(raw);
    assert!(
        lines.iter().any(|l| l.starts_with("upstream: Total ")),
        "upstream's closing line: {lines:#?}{screen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("downstream: Resolving deltas: 100% ")),
        "downstream's phase: {lines:#?}{screen}"
    );
    for line in &lines {
        let text = line.split_once(": ").map_or("", |(_, t)| t);
        assert!(
            text.ends_with("done.") || text.starts_with("Total ") || !text.contains('%'),
            "a meter's intermediate state was printed as a line: {line:?}{screen}"
        );
        assert_eq!(
            lines.iter().filter(|l| *l == line).count(),
            1,
            "printed twice: {line:?}{screen}"
        );
    }
    assert_eq!(
        number_after(raw, "upstream: Total "),
        Some(objects),
        "upstream's total matches the header{screen}"
    );

    // Meters redraw inside the bar instead.
    assert!(
        raw.contains("  upstream: Compressing objects: ")
            || raw.contains("  upstream: Counting objects: "),
        "upstream's meter in the bar{screen}"
    );

    // Log lines (-v) are not torn: each begins on a cleared line and ends with its line end.
    for phase in ["pack started: ", "pack done: ", "downstream reported: "] {
        let at = raw
            .find(phase)
            .unwrap_or_else(|| panic!("no {phase:?}{screen}"));
        let start = raw[..at].rfind("\x1b[2K").map_or(0, |i| i + 4);
        let head = &raw[start..at];
        assert!(
            head.ends_with(" INFO ") && head.starts_with("20") && !head.contains(['\r', '\x1b']),
            "a log line torn by the bar: {head:?}{screen}"
        );
        let end = at + raw[at..].find('\n').expect("a line end");
        assert!(
            !raw[at..end].contains('\x1b'),
            "a log line torn by the bar: {:?}{screen}",
            &raw[at..end]
        );
    }

    // The final state stays: the totals, then the summary.
    let relayed = raw
        .find(&format!("Relayed {objects} objects, "))
        .unwrap_or_else(|| panic!("no final totals{screen}"));
    assert!(
        raw[relayed..].contains("created  refs/heads/main"),
        "the summary follows the totals{screen}"
    );
    assert!(
        !raw[relayed..].contains("\x1b[2K"),
        "the bar is gone once the totals are printed{screen}"
    );
}

#[test]
fn colour_on_a_terminal_follows_no_color_and_the_flag() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let cyan = "\x1b[36m";
    let mut round = 0;
    let mut sync = |args: &[&str], env: &[(&str, Option<&str>)]| {
        round += 1;
        let down = w.root().join(format!("down-{round}.git"));
        w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        all.extend([path_arg(&up), path_arg(&down)]);
        let screen = on_terminal(&w, &all, env);
        assert_eq!(screen.code, 0, "{screen}");
        assert_synced(&w, &up, &down, &screen);
        screen
    };
    let coloured = sync(&[], &[("NO_COLOR", None)]);
    assert!(
        coloured.raw.contains(cyan),
        "colour by default on a terminal{coloured}"
    );
    let plain = sync(&[], &[("NO_COLOR", Some("1"))]);
    assert!(plain.raw.contains("\x1b[2K"), "still a bar{plain}");
    assert!(!plain.raw.contains(cyan), "NO_COLOR is honoured{plain}");
    let never = sync(&["--color=never", "-v"], &[("NO_COLOR", None)]);
    assert!(
        !never.raw.contains(cyan) && !never.raw.contains("\x1b[32m"),
        "--color=never{never}"
    );
    assert!(never.raw.contains(" INFO "), "{never}");
    let always = sync(&["--color=always"], &[("NO_COLOR", Some("1"))]);
    assert!(
        always.raw.contains(cyan),
        "--color=always wins over NO_COLOR{always}"
    );
}

#[test]
fn a_pipe_gets_a_plain_line_every_five_seconds_and_no_escape_sequences() {
    let w = World::new();
    let (up, down) = big_pair(&w);
    // upstream's pack-objects starts after 6 s: longer than the default interval.
    let config = pack_objects_hook(&w, "sleep 6\nexec \"$@\"");
    let env: Vec<(&str, Option<OsString>)> = vec![("NO_COLOR", None)];
    let started = std::time::Instant::now();
    let run = w.kalandra_env(
        w.root(),
        &["sync", "-v", path_arg(&up), path_arg(&down)],
        &config,
        &env,
    );
    run.assert_code(0);
    assert_synced(&w, &up, &down, &run);
    assert!(
        !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
        "an escape sequence on a pipe{run}"
    );
    assert!(!run.stderr.contains('\r'), "a redraw on a pipe{run}");
    let ticks: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("kalandra: ") && l.contains(" relayed ("))
        .collect();
    let most = (started.elapsed().as_secs_f64() / 5.0).floor() as usize;
    assert!(
        !ticks.is_empty() && ticks.len() <= most,
        "a line every 5 s, at most {most}: {ticks:#?}{run}"
    );
    assert!(
        ticks[0].ends_with(" s: waiting for upstream's pack") && ticks[0].contains(", 5 s: "),
        "the line says what the sync waits for: {ticks:#?}{run}"
    );
}

#[test]
fn a_trickling_pack_on_a_pipe_gets_lines_at_the_set_interval_and_a_short_sync_none() {
    let w = World::new();
    let (up, down) = big_pair(&w);
    let config = pack_objects_hook(&w, THROTTLED_PACK);
    let env: Vec<(&str, Option<OsString>)> =
        vec![("KALANDRA_PROGRESS_INTERVAL", Some("0.5".into()))];
    let run = w.kalandra_env(
        w.root(),
        &["sync", path_arg(&up), path_arg(&down)],
        &config,
        &env,
    );
    run.assert_code(0);
    assert_synced(&w, &up, &down, &run);
    // A line every half second while the pack trickles in, its bytes growing.
    let relaying: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("kalandra: ") && l.ends_with(" s: relaying the pack"))
        .collect();
    assert!(relaying.len() >= 2, "{relaying:#?}{run}");
    let bytes = |line: &str| line.split(" relayed").next().map(str::to_owned);
    assert_ne!(
        bytes(relaying[0]),
        bytes(relaying[relaying.len() - 1]),
        "the bytes grow between the lines: {relaying:#?}{run}"
    );
    assert!(
        relaying.iter().all(|l| l.contains(", pack of ")),
        "the pack header's total: {relaying:#?}{run}"
    );

    // Nothing pending: a sync well under the interval prints only its summary.
    let again = on_pipe(&w, &["sync", path_arg(&up), path_arg(&down)], &[]);
    again.assert_code(0);
    assert_eq!(again.stderr, "", "{again}");
}

#[test]
fn color_always_colours_logs_on_a_pipe_and_auto_does_not() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    for (flag, no_color, coloured) in [
        ("--color=always", Some("1"), true),
        ("--color=auto", None, false),
        ("--color=never", None, false),
    ] {
        let down = w.root().join(format!("{}.git", &flag[8..]));
        w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
        let run = on_pipe(
            &w,
            &["sync", "-v", flag, path_arg(&up), path_arg(&down)],
            &[("NO_COLOR", no_color)],
        );
        run.assert_code(0);
        assert_synced(&w, &up, &down, &run);
        assert!(run.stderr.contains("INFO"), "{run}");
        assert_eq!(run.stderr.contains('\x1b'), coloured, "{flag}{run}");
        assert!(
            !run.stdout.contains('\x1b'),
            "{flag}: the summary is never coloured{run}"
        );
    }
}

#[test]
fn verbose_shows_each_phase_in_order() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let run = on_pipe(&w, &["sync", "-v", path_arg(&up), path_arg(&down)], &[]);
    run.assert_code(0);
    assert_synced(&w, &up, &down, &run);
    let created = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("created "))
        .count();
    let objects = {
        let tips: Vec<String> = Scope::from_args(&[])
            .filter(&w.refs(&up))
            .into_values()
            .collect();
        w.count_objects_between(&up, &tips, &[])
    };
    let phases = [
        "connected to upstream ".to_owned(),
        format!("upstream lists {created} refs in scope, downstream 0"),
        format!("plan: {created} updates ({created} to create, 0 to update, 0 to delete)"),
        format!("pack started: {objects} objects"),
        format!("pack done: {objects} objects, "),
        format!("downstream reported: unpack ok, {created} refs updated, 0 refused"),
    ];
    let mut from = 0;
    for phase in &phases {
        let at = run.stderr[from..]
            .find(&format!(" INFO {phase}"))
            .unwrap_or_else(|| panic!("no {phase:?} after byte {from}{run}"));
        from += at;
    }
    assert!(
        run.stderr.contains(" INFO connected to downstream "),
        "{run}"
    );
    // Without -v, none of it.
    let quiet = w.root().join("quiet.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&quiet)]);
    let run = on_pipe(&w, &["sync", path_arg(&up), path_arg(&quiet)], &[]);
    run.assert_code(0);
    assert!(!run.stderr.contains("INFO"), "{run}");
}

#[test]
fn packet_trace_shows_both_sides_over_http_and_never_the_password() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let server = Nginx::start(&w);
    let up_url = server.url_as("auth", "mirror/upstream", "alice", PASSWORD);
    let down_url = server.url_as("auth", "mirror/empty.git", "alice", PASSWORD);
    let run = on_pipe(
        &w,
        &["sync", "-vv", &up_url, &down_url],
        &[("KALANDRA_TRACE_PACKET", Some("1"))],
    );
    run.assert_code(0);
    assert_synced(&w, &up, &down, &run);
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "the password leaked{run}"
    );
    for needle in [
        "packet: upstream< version 2\n",
        "packet: upstream> command=ls-refs\n",
        "packet: upstream> command=fetch\n",
        "packet: upstream< packfile\n",
        "packet: upstream< \\1PACK ... (",
        "packet: upstream< PACK done (",
        "packet: downstream< ",
        "report-status",
        "packet: downstream> PACK ... (",
        "packet: downstream< \\1000eunpack ok",
    ] {
        assert!(
            run.stderr.contains(needle),
            "no {needle:?} in the trace{run}"
        );
    }
    let sent_commands = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("packet: downstream> 0000000000000000000000000000000000000000 "))
        .count();
    assert!(
        sent_commands >= 1,
        "the ref-update commands are traced{run}"
    );
    // Pack data is summarised: the trace is text, one pkt-line a line.
    assert!(
        run.stderr.chars().all(|c| c == '\n' || !c.is_control()),
        "raw bytes in the trace{run}"
    );
    let pack_lines = run.stderr.lines().filter(|l| l.contains("PACK")).count();
    assert_eq!(
        pack_lines, 4,
        "one line at each pack's start and end, per side{run}"
    );
}

#[test]
fn git_trace_packet_to_a_file_and_off() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let trace = w.root().join("trace.log");
    for (value, to_file) in [(path_arg(&trace), true), ("0", false)] {
        let down = w.root().join(format!("down-{to_file}.git"));
        w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
        let run = on_pipe(
            &w,
            &["sync", path_arg(&up), path_arg(&down)],
            &[("GIT_TRACE_PACKET", Some(value))],
        );
        run.assert_code(0);
        assert_synced(&w, &up, &down, &run);
        assert!(!run.stderr.contains("packet: "), "{run}");
        if to_file {
            let text = std::fs::read_to_string(&trace).expect("the trace file was written");
            // git upload-pack and receive-pack, run locally, inherit the variable and add
            // their own lines (`packet:  upload-pack> ...`) to the same file.
            for needle in [
                "packet: upstream< ",
                "packet: upstream> ",
                "packet: downstream< ",
                "packet: downstream> ",
            ] {
                assert!(text.contains(needle), "no {needle:?} in {text}");
            }
        }
    }
    let before = std::fs::metadata(&trace).expect("trace file").len();
    let down = w.root().join("down-again.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    on_pipe(
        &w,
        &["sync", path_arg(&up), path_arg(&down)],
        &[
            ("GIT_TRACE_PACKET", Some(path_arg(&trace))),
            ("KALANDRA_TRACE_PACKET", Some("0")),
        ],
    )
    .assert_code(0);
    let after_text = std::fs::read_to_string(&trace).expect("trace file");
    assert!(
        !after_text[before as usize..].contains("packet: upstream"),
        "KALANDRA_TRACE_PACKET=0 wins over GIT_TRACE_PACKET"
    );
}

#[test]
fn a_push_through_the_remote_helper_on_a_terminal_draws_the_bar() {
    let w = World::new();
    let (up, down) = big_pair(&w);
    let local = w.root().join("local");
    w.git(w.root(), &["clone", "-q", path_arg(&up), path_arg(&local)]);
    let path = path_with_first(&helper_dir());
    let git = PathBuf::from("git");
    let url = pair_url(&up, &down);
    let screen = run_on_terminal(
        &w,
        &git,
        &["-C", path_arg(&local), "push", &url, "main"],
        &[("PATH", Some(path.to_str().expect("PATH is UTF-8")))],
    );
    assert_eq!(screen.code, 0, "{screen}");
    assert_eq!(
        w.rev(&down, "refs/heads/main"),
        w.rev(&up, "refs/heads/main"),
        "{screen}"
    );
    w.assert_fsck(&down);
    let objects =
        number_after(&screen.raw, "Relayed ").unwrap_or_else(|| panic!("no totals{screen}"));
    assert!(
        screen
            .raw
            .contains(&format!("  {objects}/{objects} objects | ")),
        "the bar counted the objects{screen}"
    );
    assert!(
        screen.raw.contains(&format!("Relayed {objects} objects, ")),
        "the final totals{screen}"
    );
    assert!(
        printed_server_lines(&screen.raw)
            .iter()
            .any(|l| l.starts_with("downstream: Resolving deltas: 100% ")),
        "downstream's lines above the bar{screen}"
    );
    assert!(
        screen.raw.contains("* [new branch]"),
        "git's own report{screen}"
    );
}

#[test]
fn a_slow_pack_on_a_terminal_counts_objects_as_they_arrive_with_an_eta() {
    let w = World::new();
    let up = w.root().join("up");
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", path_arg(&up)]);
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    for i in 0..40 {
        w.write(
            &up,
            &format!("f{i}.txt"),
            random_hex_lines(i, 256).as_bytes(),
        );
    }
    w.git(&up, &["add", "."]);
    w.git(&up, &["commit", "-q", "-m", "forty files"]);
    let config = pack_objects_hook(&w, THROTTLED_PACK);
    let screen = on_terminal(
        &w,
        &["sync", path_arg(&up), path_arg(&down)],
        &[("GIT_CONFIG_GLOBAL", Some(path_arg(&config)))],
    );
    assert_eq!(screen.code, 0, "{screen}");
    assert_synced(&w, &up, &down, &screen);
    let total =
        number_after(&screen.raw, "Relayed ").unwrap_or_else(|| panic!("no totals{screen}"));
    let head = w.rev(&up, "HEAD");
    assert_eq!(
        total as usize,
        w.count_objects_between(&up, &[head], &[]),
        "{screen}"
    );
    assert!(total >= 20, "precondition: many objects{screen}");
    let midway: Vec<u64> = screen
        .raw
        .match_indices(&format!("/{total} objects, ETA "))
        .filter_map(|(at, _)| {
            let digits = screen.raw[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()?;
            digits.parse().ok()
        })
        .collect();
    assert!(
        midway.iter().any(|&n| n > 0 && n < total),
        "counts between none and all, with an ETA: {midway:?}{screen}"
    );
    assert!(
        midway.windows(2).all(|w| w[0] <= w[1]),
        "{midway:?}{screen}"
    );
}
