//! Bad input and hostile servers: ref names and paths too long for a pkt-line, secrets in
//! URLs that do not parse, remote-helper transports, and servers whose advertisement never
//! ends. Every run must end with a documented exit code and, with `--json`, one JSON object;
//! never a panic (exit 101), never a secret on any output.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{helper_bin, path_arg, Run, World};

/// Exit codes docs/exit-codes.md lists.
const DOCUMENTED: [i32; 7] = [0, 1, 2, 3, 4, 5, 6];

/// Checks what every run here must do: a documented code, no panic, and with `--json`
/// exactly one JSON object.
fn assert_clean_ending(run: &Run) {
    assert!(
        DOCUMENTED.contains(&run.code),
        "undocumented exit code{run}"
    );
    assert!(!run.stderr.contains("panicked"), "kalandra panicked{run}");
    if run.args.iter().any(|a| a == "--json") {
        let report = run.report();
        assert_eq!(
            report.ok(),
            run.code == 0,
            "ok must match the exit code{run}"
        );
    }
}

/// A repository with one commit on `main`, and a `refs/heads/` branch whose name is `len`
/// bytes long. The name is far past any file system's limit for a loose ref, so it is written
/// into packed-refs, which git reads and serves as any other ref.
fn repo_with_long_ref(w: &World, dir: &str, len: usize) -> (PathBuf, String) {
    let repo = w.root().join(dir);
    w.git(
        w.root(),
        &["init", "-q", "--bare", "-b", "main", path_arg(&repo)],
    );
    let work = w.root().join(format!("{dir}-work"));
    w.git(w.root(), &["init", "-q", "-b", "main", path_arg(&work)]);
    let oid = w.commit_file(&work, "a.txt", "a\n", "one commit");
    w.git(&work, &["push", "-q", path_arg(&repo), "main"]);
    let name = format!("refs/heads/{}", "n".repeat(len - "refs/heads/".len()));
    std::fs::write(
        repo.join("packed-refs"),
        format!("# pack-refs with: peeled fully-peeled \n{oid} {name}\n"),
    )
    .expect("can write packed-refs");
    let listed = w.git(&repo, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        listed.contains(&name),
        "precondition: git lists the long ref"
    );
    (repo, name)
}

/// 65 450 bytes: the advertisement line `<oid> <name>\n` still fits in a pkt-line, a push
/// command `<old> <new> <name>\n` (82 bytes more than the name) no longer does.
const LONG_REF: usize = 65_450;

#[test]
fn a_ref_name_too_long_to_push_upstream_ends_with_an_error_not_a_panic() {
    let w = World::new();
    let (up, name) = repo_with_long_ref(&w, "up.git", LONG_REF);
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let run = w.kalandra(&["sync", "--json", path_arg(&up), path_arg(&down)]);
    assert_clean_ending(&run);
    let down_refs = w.git(&down, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        !down_refs.contains(&name),
        "the long ref cannot have landed{run}"
    );
    if run.code == 4 {
        run.assert_stderr_mentions(&["too long"]);
        assert!(
            run.stderr.len() < 4000,
            "the name is shortened in messages{run}"
        );
    }
}

#[test]
fn a_ref_name_too_long_to_delete_downstream_ends_with_an_error_not_a_panic() {
    let w = World::new();
    let (down, name) = repo_with_long_ref(&w, "down.git", LONG_REF);
    // The same history without the long ref: the sync deletes it downstream.
    let up = w.root().join("up.git");
    let work = w.root().join("down.git-work");
    w.git(
        w.root(),
        &["clone", "-q", "--bare", path_arg(&work), path_arg(&up)],
    );
    let run = w.kalandra(&["sync", "--json", path_arg(&up), path_arg(&down)]);
    assert_clean_ending(&run);
    let down_refs = w.git(&down, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        down_refs.contains(&name),
        "no push command can carry the name, so the ref stays{run}"
    );
    // The planner leaves a name no push can carry out of the plan, and says so.
    run.assert_code(0);
    let skipped = &run.report().0["skipped_refs"];
    assert!(
        skipped
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r["name"] == name.as_str()
                && r["side"] == "downstream"
                && r["reason"]
                    .as_str()
                    .is_some_and(|why| why.contains("bytes long")))),
        "the long ref is listed as skipped{run}"
    );
}

#[test]
fn a_git_path_too_long_for_the_request_is_a_usage_error() {
    let w = World::new();
    // Something listens, so that a request would be sent if the URL were taken.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("bound").port();
    let up = format!("git://127.0.0.1:{port}/{}", "p".repeat(70_000));
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let run = w.kalandra(&["sync", "--json", &up, path_arg(&down)]);
    assert_clean_ending(&run);
    run.assert_code(2);
    let report = run.failure_report();
    assert!(
        report
            .error()
            .unwrap_or_default()
            .contains("git:// request holds at most"),
        "{run}"
    );
    assert!(
        run.stderr.len() < 2000,
        "the path is shortened in the message{run}"
    );
}

/// URL forms whose secret, `hunter2` cut anywhere, must show nowhere.
const SECRET_FORMS: &[&str] = &[
    // bad port
    "https://alice:hunter2@example.invalid:99999/r.git",
    // unknown scheme
    "ftp://alice:hunter2@example.invalid/r.git",
    // no path
    "git://alice:hunter2@example.invalid",
    // a raw '/', '@' and ':' in the password
    "https://alice:hun/ter2@example.invalid/r.git",
    "https://alice:hun@ter2@example.invalid:99999/r.git",
    "https://alice:hun:ter2@example.invalid:0x/r.git",
    "https://alice:h/u@n:ter2@example.invalid:99999/r.git",
    // a scheme git knows but kalandra does not, a remote-helper transport
    "ht-tp://alice:hunter2@example.invalid/r.git",
    "ext::https://alice:hunter2@example.invalid/r.git",
];

fn assert_no_secret(text: &str, context: &dyn std::fmt::Display) {
    for piece in ["hunter2", "ter2", "hun/", "hun@", "hun:"] {
        assert!(
            !text.contains(piece),
            "a piece of the secret ({piece}) shows{context}"
        );
    }
}

#[test]
fn secrets_in_urls_that_do_not_parse_show_nowhere() {
    let w = World::new();
    let good = w.root().join("good.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&good)]);
    for form in SECRET_FORMS {
        for args in [
            vec!["sync", "--json", form, path_arg(&good)],
            vec!["plan", "--json", path_arg(&good), form],
            vec!["sync", form, path_arg(&good)],
        ] {
            let run = w.kalandra(&args);
            assert_clean_ending(&run);
            run.assert_code(2);
            assert_no_secret(&run.stdout, &run);
            assert_no_secret(&run.stderr, &run);
            assert!(
                run.stderr.contains("alice:***@"),
                "the URL is shown, masked{run}"
            );
        }
    }
}

#[test]
fn secrets_in_a_bad_pair_show_nowhere_from_the_remote_helper() {
    let w = World::new();
    for form in SECRET_FORMS {
        for pair in [
            format!("{form}=>/tmp/down.git"),
            format!("/tmp/up.git=>{form}"),
            format!("{form}=>{form}=>/x"),
        ] {
            let mut cmd = Command::new(helper_bin());
            cmd.args(["origin", &format!("kalandra::{pair}")]);
            w.isolate(&mut cmd, &w.global_config());
            let out = cmd.stdin(Stdio::null()).output().expect("the helper runs");
            let output = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let shown = format!("\n--- the helper exited {:?}:\n{output}", out.status.code());
            assert_eq!(out.status.code(), Some(128), "{shown}");
            assert_no_secret(&output, &shown);
            assert!(
                output.contains("alice:***@"),
                "the URL is shown, masked{shown}"
            );
        }
    }
}

#[test]
fn remote_helper_transports_are_unsupported_not_ssh_hosts() {
    let w = World::new();
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let marker = w.root().join("ext-ran");
    let ext = format!("ext::sh -c touch% {}", path_arg(&marker));
    for up in [ext.as_str(), "fd::0", "fd::3,4/r.git"] {
        let run = w.kalandra(&["sync", "--json", up, path_arg(&down)]);
        assert_clean_ending(&run);
        run.assert_code(2);
        // ext:: gets git's own refusal first (protocol.ext.allow is never by default).
        run.assert_stderr_mentions(&["unsupported transport", "transport 'ext' not allowed"]);
        assert!(
            !run.stderr.contains("ssh://"),
            "not taken for an ssh host{run}"
        );
    }
    assert!(!marker.exists(), "nothing was run");
}

/// A git:// server on 127.0.0.1 that answers each request with `serve`, for at most
/// `connections` connections and [`HOSTILE_DEADLINE`]; it stops by itself.
struct HostileDaemon {
    port: u16,
}

/// How long a hostile server keeps going at most, whatever the client does.
const HOSTILE_DEADLINE: Duration = Duration::from_secs(60);

impl HostileDaemon {
    fn start(connections: usize, serve: fn(&mut TcpStream, Instant)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        std::thread::spawn(move || {
            let deadline = Instant::now() + HOSTILE_DEADLINE;
            let mut served = 0;
            while served < connections && Instant::now() < deadline {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        served += 1;
                        let _ = stream.set_nonblocking(false);
                        std::thread::spawn(move || {
                            if read_request(&mut stream).is_some() {
                                serve(&mut stream, deadline);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HostileDaemon { port }
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/r.git", self.port)
    }
}

/// Reads the git:// request pkt-line (`git-upload-pack /r.git\0host=...\0`).
fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut header = [0; 4];
    stream.read_exact(&mut header).ok()?;
    let len = usize::from_str_radix(std::str::from_utf8(&header).ok()?, 16).ok()?;
    let mut payload = vec![0; len.checked_sub(4)?];
    stream.read_exact(&mut payload).ok()?;
    Some(payload)
}

fn pkt(text: &str) -> Vec<u8> {
    let mut out = format!("{:04x}", text.len() + 4).into_bytes();
    out.extend_from_slice(text.as_bytes());
    out
}

/// Writes `line(i)` for i = 0, 1, ... in batches until the client goes away or the deadline
/// passes: an advertisement that never ends.
fn endless(stream: &mut TcpStream, deadline: Instant, first: &str, line: fn(u64) -> String) {
    let _ = stream.write_all(&pkt(first));
    let mut i = 0u64;
    while Instant::now() < deadline {
        let mut batch = Vec::with_capacity(64 * 1024);
        while batch.len() < 60 * 1024 {
            batch.extend_from_slice(&pkt(&line(i)));
            i += 1;
        }
        if stream.write_all(&batch).is_err() {
            return;
        }
    }
}

fn endless_v0(stream: &mut TcpStream, deadline: Instant) {
    endless(
        stream,
        deadline,
        "1111111111111111111111111111111111111111 HEAD\0side-band-64k ofs-delta agent=hostile\n",
        |i| format!("1111111111111111111111111111111111111111 refs/heads/b{i}\n"),
    );
}

fn endless_v2_capabilities(stream: &mut TcpStream, deadline: Instant) {
    endless(stream, deadline, "version 2\n", |i| {
        format!("x-cap-{i}={}\n", "v".repeat(200))
    });
}

/// Runs `kalandra sync --json UP DOWN` with `env`, which must fail within a generous bound
/// (a hang would be the bug) with exit 4 and an error naming `needle`.
fn assert_capped(w: &World, up: &str, down: &str, env: &[(&str, &str)], needle: &str) {
    let env: Vec<(&str, std::ffi::OsString)> = env.iter().map(|(k, v)| (*k, (*v).into())).collect();
    let started = Instant::now();
    let run = w.kalandra_with_env(
        w.root(),
        &["sync", "--json", up, down],
        &w.global_config(),
        &env,
    );
    assert!(
        started.elapsed() < HOSTILE_DEADLINE,
        "kalandra read until the server gave up{run}"
    );
    assert_clean_ending(&run);
    run.assert_code(4);
    let report = run.failure_report();
    let error = report.error().unwrap_or_default();
    assert!(error.contains(needle), "the error names the cap{run}");
}

#[test]
fn an_endless_v0_advertisement_upstream_fails_at_the_ref_cap() {
    let w = World::new();
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let server = HostileDaemon::start(1, endless_v0);
    assert_capped(
        &w,
        &server.url(),
        path_arg(&down),
        &[("KALANDRA_MAX_REFS", "50000")],
        "raise KALANDRA_MAX_REFS",
    );
}

#[test]
fn an_endless_v0_advertisement_downstream_fails_at_the_byte_cap() {
    let w = World::new();
    let up = w.root().join("up.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&up)]);
    let server = HostileDaemon::start(1, endless_v0);
    assert_capped(
        &w,
        path_arg(&up),
        &server.url(),
        &[("KALANDRA_MAX_ADVERTISEMENT_BYTES", "4000000")],
        "raise KALANDRA_MAX_ADVERTISEMENT_BYTES",
    );
}

#[test]
fn an_endless_v2_capability_list_fails_at_the_byte_cap() {
    let w = World::new();
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&down)]);
    let server = HostileDaemon::start(1, endless_v2_capabilities);
    assert_capped(
        &w,
        &server.url(),
        path_arg(&down),
        &[("KALANDRA_MAX_ADVERTISEMENT_BYTES", "4000000")],
        "capability advertisement is larger than 4000000 bytes",
    );
}

#[test]
fn invalid_limit_variables_are_usage_errors() {
    let w = World::new();
    let (up, down) = (w.root().join("up.git"), w.root().join("down.git"));
    for repo in [&up, &down] {
        w.git(w.root(), &["init", "-q", "--bare", path_arg(repo)]);
    }
    for (name, value) in [
        ("KALANDRA_MAX_REFS", "0"),
        ("KALANDRA_MAX_REFS", "abc"),
        ("KALANDRA_MAX_ADVERTISEMENT_BYTES", "-5"),
    ] {
        let run = w.kalandra_with_env(
            w.root(),
            &["sync", "--json", path_arg(&up), path_arg(&down)],
            &w.global_config(),
            &[(name, value.into())],
        );
        assert_clean_ending(&run);
        run.assert_code(2);
        run.assert_stderr_mentions(&[name]);
    }
}
