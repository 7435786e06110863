//! What the command line tells people and machines: the summary per kind of change, `-q`,
//! `plan --exit-code`, downstream's HEAD, hints, the JSON kinds of real failures, signals and
//! closed pipes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{kalandra_bin, path_arg, Run, World, STALL_WHILE_PARENT_LIVES};
use crate::nginx::Nginx;

struct Mirrored {
    w: World,
    up: PathBuf,
    down: PathBuf,
}

/// The mirror fixture, synced once.
fn mirrored() -> Mirrored {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    Mirrored { w, up, down }
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

#[test]
fn the_summary_counts_each_kind_of_change() {
    let Mirrored { w, up, down } = mirrored();
    w.checkout(&up, "main", None);
    w.commit_file(&up, "ff.txt", "fast-forward\n", "fast-forward on main");
    w.git(&up, &["branch", "-f", "feature/a", "release/1.x"]);
    w.git(&up, &["branch", "-D", "feature/b"]);
    w.git(&up, &["tag", "-f", "-a", "-m", "moved", "v1.1", "develop"]);
    w.git(&up, &["branch", "brand-new", "develop"]);
    w.checkout(&up, "develop", None);

    let run = w.kalandra(&["plan", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert_eq!(
        last_line(&run.stdout),
        "plan: 1 to create, 1 to update (fast-forward), 1 to update (forced), 1 tags to move, \
         1 to delete; nothing was changed",
        "{run}"
    );
    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    let summary = last_line(&run.stdout);
    assert!(
        summary.starts_with(
            "1 created, 1 updated (fast-forward), 1 updated (forced), 1 tag moved, 1 deleted; "
        ) && summary.contains(" relayed in "),
        "{run}"
    );
    assert_eq!(
        w.refs(&up).get("refs/heads/brand-new"),
        w.refs(&down).get("refs/heads/brand-new")
    );
    w.assert_fsck(&down);
}

/// A `file://` URL is shown as given in the report, the log and errors, not as the bare path
/// it names.
#[test]
fn file_urls_are_shown_as_given() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let up_url = format!("file://{}", up.display());
    let down_url = format!("file://{}", down.display());
    let run = w.kalandra(&["sync", "-v", "--json", &up_url, &down_url]);
    run.assert_code(0);
    let report = run.report();
    assert_eq!(report.0["upstream"], up_url.as_str(), "{run}");
    assert_eq!(report.0["downstream"], down_url.as_str(), "{run}");
    assert!(
        run.stderr
            .contains(&format!("connected to upstream {up_url} ")),
        "{run}"
    );
    w.assert_in_sync(&up, &down);

    let missing = format!("file://{}/no-such.git", w.root().display());
    let run = w.kalandra(&["sync", &up_url, &missing]);
    run.assert_code(4);
    run.assert_stderr_mentions(&[&missing]);
}

#[test]
fn quiet_is_silent_on_success_but_prints_a_rejected_ref() {
    let Mirrored { w, up, down } = mirrored();
    w.checkout(&up, "main", None);
    w.commit_file(&up, "m.txt", "main moves\n", "main moves");
    w.checkout(&up, "feature/a", None);
    w.commit_file(&up, "a.txt", "a moves\n", "a moves");
    w.checkout(&up, "develop", None);
    w.install_hook(
        &down,
        "update",
        "#!/bin/sh\nif [ \"$1\" = refs/heads/main ]; then echo 'main is frozen' >&2; exit 1; fi\n",
    );
    let before = w.refs(&down);
    let run = w.kalandra(&["sync", "-q", path_arg(&up), path_arg(&down)]);
    run.assert_code(3);
    assert_eq!(run.stdout, "", "-q prints nothing on stdout{run}");
    assert!(
        run.stderr
            .contains("kalandra: error: rejected refs/heads/main:"),
        "the refused ref is an error even under -q{run}"
    );
    assert!(
        !run.stderr.contains("feature/a"),
        "a ref that landed is success chatter{run}"
    );
    let after = w.refs(&down);
    assert_eq!(after.get("refs/heads/main"), before.get("refs/heads/main"));
    assert_eq!(
        after.get("refs/heads/feature/a"),
        w.refs(&up).get("refs/heads/feature/a")
    );

    w.remove_hook(&down, "update");
    let run = w.kalandra(&["sync", "-q", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert_eq!(
        (run.stdout.as_str(), run.stderr.as_str()),
        ("", ""),
        "{run}"
    );
    w.assert_fsck(&down);
}

#[test]
fn plan_exit_code_says_whether_changes_are_pending() {
    let Mirrored { w, up, down } = mirrored();
    let run = w.kalandra(&["plan", "--exit-code", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    w.commit_file(&up, "x.txt", "x\n", "one more");
    let run = w.kalandra(&["plan", "--exit-code", path_arg(&up), path_arg(&down)]);
    run.assert_code(1);
    // The same as `git diff --exit-code`, which is what the flag promises.
    let diff = w.try_git(&up, &["diff", "--exit-code", "HEAD~1", "HEAD"]);
    assert_eq!(diff.status.code(), Some(1));
    let run = w.kalandra(&[
        "plan",
        "--json",
        "--exit-code",
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(1);
    assert!(run.report().ok(), "pending changes are not a failure{run}");
    let run = w.kalandra(&["plan", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    let run = w.kalandra(&["sync", "--exit-code", path_arg(&up), path_arg(&down)]);
    run.assert_code(2);
    run.assert_stderr_mentions(&["--exit-code only applies to `kalandra plan`"]);
}

#[test]
fn a_downstream_head_that_leads_nowhere_is_reported_and_set_head_fixes_it() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let down = w.root().join("fresh.git");
    w.git(
        w.root(),
        &["init", "-q", "--bare", "-b", "master", path_arg(&down)],
    );

    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    run.assert_stderr_mentions(&[
        "downstream's head points to refs/heads/master, which downstream does not have, \
         upstream's to refs/heads/develop; pass --set-head",
    ]);
    // What the warning is about: git itself cannot check anything out of this mirror.
    let clone = w.try_git(w.root(), &["clone", "-q", path_arg(&down), "clone-before"]);
    let said = String::from_utf8_lossy(&clone.stderr);
    assert!(
        said.contains("remote HEAD refers to nonexistent ref"),
        "{said}"
    );

    let run = w.kalandra(&[
        "sync",
        "--json",
        "--set-head",
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(0);
    let head = &run.report().0["head"];
    assert_eq!(head["upstream"], "refs/heads/develop", "{run}");
    assert_eq!(head["downstream"], "refs/heads/develop", "{run}");
    assert_eq!(head["set"], true, "{run}");
    assert_eq!(head["dangling"], false, "{run}");
    assert_eq!(
        w.git(&down, &["symbolic-ref", "HEAD"]),
        "refs/heads/develop",
        "downstream's HEAD follows upstream's"
    );
    w.git(w.root(), &["clone", "-q", path_arg(&down), "clone-after"]);
    assert_eq!(
        w.git(&w.root().join("clone-after"), &["rev-parse", "HEAD"]),
        w.rev(&up, "develop"),
        "a clone of the mirror checks out upstream's default branch"
    );
    let run = w.kalandra(&["sync", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert!(!run.stderr.contains("HEAD"), "nothing left to say{run}");
}

#[test]
fn a_missing_downstream_suggests_git_init_bare() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let missing = w.root().join("nowhere.git");
    let run = w.kalandra(&["sync", path_arg(&fx.join("upstream")), path_arg(&missing)]);
    run.assert_code(4);
    run.assert_stderr_mentions(&[&format!(
        "hint: create it first with `git init --bare {}`",
        missing.display()
    )]);
    let run = w.kalandra(&[
        "sync",
        "--json",
        path_arg(&fx.join("upstream")),
        path_arg(&missing),
    ]);
    let report = run.failure_report();
    assert_eq!(report.0["kind"], "not-found", "{run}");
    assert!(
        report.0["hint"]
            .as_str()
            .is_some_and(|h| h.contains("git init --bare")),
        "{run}"
    );
    assert!(!missing.exists(), "nothing was created");
}

/// A guard trip lists, in JSON, exactly the refs it kept from being deleted.
#[test]
fn a_guard_lists_the_refs_it_would_have_deleted() {
    let Mirrored { w, up, down } = mirrored();
    let before = w.refs(&down);
    for branch in [
        "main",
        "feature/a",
        "feature/b",
        "feature/deep/nested",
        "release/1.x",
    ] {
        w.git(&up, &["branch", "-D", branch]);
    }
    let scope = ["--include", "refs/heads/*"];
    let run = w.kalandra(&[
        "sync",
        "--json",
        scope[0],
        scope[1],
        path_arg(&up),
        path_arg(&down),
    ]);
    run.assert_code(5);
    let report = run.failure_report();
    assert_eq!(report.0["kind"], "guard", "{run}");
    let listed: Vec<&str> = report.0["would_delete"]
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        listed,
        [
            "refs/heads/feature/a",
            "refs/heads/feature/b",
            "refs/heads/feature/deep/nested",
            "refs/heads/main",
            "refs/heads/release/1.x"
        ],
        "{run}"
    );
    let run = w.kalandra(&["sync", scope[0], scope[1], path_arg(&up), path_arg(&down)]);
    run.assert_code(5);
    run.assert_stderr_mentions(&["would delete refs/heads/release/1.x"]);
    assert_eq!(w.refs(&down), before, "the guard changed nothing");
}

/// The JSON `kind` of failures reproduced for real, each against the server that causes it.
#[test]
fn json_kinds_of_real_failures() {
    let Mirrored { w, up, down } = mirrored();
    let before = w.refs(&down);
    let kind_of = |args: &[&str], code: i32| {
        let run = w.kalandra(args);
        run.assert_code(code);
        let report = run.report();
        assert!(!report.ok(), "{run}");
        (
            report.0["kind"].as_str().unwrap_or_default().to_owned(),
            run,
        )
    };

    let nginx = Nginx::start(&w);
    let wrong = nginx.url_as("auth", "mirror/upstream", "alice", "wrong-password");
    let (kind, run) = kind_of(&["sync", "--json", &wrong, path_arg(&down)], 4);
    assert_eq!(kind, "auth", "{run}");
    assert!(!run.stdout.contains("wrong-password") && !run.stderr.contains("wrong-password"));

    let missing = w.root().join("missing.git");
    let (kind, run) = kind_of(&["sync", "--json", path_arg(&missing), path_arg(&down)], 4);
    assert_eq!(kind, "not-found", "{run}");

    // A hook that declines a ref: the run ends with a report, not ok, kind `rejected`.
    w.commit_file(&up, "r.txt", "refused\n", "refused");
    w.install_hook(
        &down,
        "pre-receive",
        "#!/bin/sh\necho 'closed for today' >&2\nexit 1\n",
    );
    let (kind, run) = kind_of(&["sync", "--json", path_arg(&up), path_arg(&down)], 6);
    assert_eq!(kind, "rejected", "{run}");
    assert!(run.report().0["outcome"] == "nothing-landed", "{run}");
    w.remove_hook(&down, "pre-receive");

    // An ssh server whose host key is not the one known_hosts has for it.
    {
        use crate::sshd::{self, Protocol, Sshd};
        use std::os::unix::fs::PermissionsExt;
        let sshd = Sshd::start(&w.root().join("sshd"), Protocol::V2);
        let keys = w.root().join("keys");
        let key = sshd::keygen(&keys.join("client"), "", "kalandra-test-client");
        let impostor = sshd::keygen(&keys.join("impostor"), "", "impostor");
        sshd.authorize(&key);
        let ssh_dir = w.home().join(".ssh");
        std::fs::create_dir_all(&ssh_dir).expect("can create ~/.ssh");
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))
            .expect("can chmod ~/.ssh");
        std::fs::write(
            ssh_dir.join("config"),
            format!(
                "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
                key.display()
            ),
        )
        .expect("can write ~/.ssh/config");
        std::fs::write(
            ssh_dir.join("known_hosts"),
            format!(
                "[127.0.0.1]:{} {}\n",
                sshd.port(),
                sshd::public_key(&impostor)
            ),
        )
        .expect("can write known_hosts");
        let (kind, run) = kind_of(&["sync", "--json", &sshd.url(&up), path_arg(&down)], 4);
        assert_eq!(kind, "host-key", "{run}");
        assert!(run.stderr.contains("CHANGED"), "{run}");
    }

    // A stalled upstream: the idle timeout.
    let stall = stalling_upstream_config(&w);
    let run = w.kalandra_with(
        w.root(),
        &[
            "sync",
            "--json",
            "--idle-timeout",
            "1",
            path_arg(&up),
            path_arg(&down),
        ],
        &stall,
    );
    run.assert_code(4);
    assert_eq!(run.failure_report().0["kind"], "timeout", "{run}");
    assert_eq!(w.refs(&down), before, "no failure moved a ref");
    w.assert_fsck(&down);
}

/// A global git config whose upload-pack sends a little of the pack, then stalls while
/// upload-pack lives; the hook touches `pack-started` first.
fn stalling_upstream_config(w: &World) -> PathBuf {
    let marker = w.root().join("pack-started");
    let hook = w.root().join("stall-pack.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch {}\n\"$@\" | head -c 100\n{STALL_WHILE_PARENT_LIVES}",
            path_arg(&marker)
        ),
    )
    .expect("can write the hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
    }
    w.global_config_with(
        "stalling.gitconfig",
        &format!("[uploadpack]\n\tpackObjectsHook = {}\n", path_arg(&hook)),
    )
}

/// Starts kalandra with `args`, stdout and stderr piped.
fn spawn(w: &World, args: &[&str], global_config: &Path) -> std::process::Child {
    let mut cmd = Command::new(kalandra_bin());
    cmd.args(args)
        .current_dir(w.root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    w.isolate(&mut cmd, global_config);
    cmd.spawn().expect("can start kalandra")
}

/// Waits for `child`, killing it after a minute, and collects its output.
fn finish(mut child: std::process::Child, args: &[&str]) -> Run {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("can wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kalandra {args:?} did not end within a minute of the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("utf-8 stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("utf-8 stderr");
    }
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// Waits until the stalling hook has started the pack, and a moment more for its first bytes
/// to reach downstream.
fn wait_for_pack(marker: &Path) {
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pack never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("can run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// SIGINT and SIGTERM in the middle of the pack: a documented exit code, one JSON object of
/// kind `interrupted`, and downstream exactly as it was.
#[test]
fn a_signal_mid_pack_leaves_downstream_unchanged() {
    let Mirrored { w, up, down } = mirrored();
    w.commit_file(
        &up,
        "big.txt",
        &crate::harness::random_hex_lines(3, 4096),
        "more",
    );
    let before = w.refs(&down);
    let stall = stalling_upstream_config(&w);
    let marker = w.root().join("pack-started");
    for (name, code) in [("INT", 130), ("TERM", 143)] {
        let _ = std::fs::remove_file(&marker);
        let args = ["sync", "--json", path_arg(&up), path_arg(&down)];
        let child = spawn(&w, &args, &stall);
        wait_for_pack(&marker);
        signal(&child, name);
        let run = finish(child, &args);
        run.assert_code(code);
        let report = run.failure_report();
        assert_eq!(report.0["kind"], "interrupted", "{run}");
        assert!(
            run.stderr.contains(&format!("interrupted by SIG{name}")),
            "{run}"
        );
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert_eq!(
            w.refs(&down),
            before,
            "downstream unchanged after SIG{name}"
        );
        w.assert_fsck(&down);
    }
}

/// `kalandra plan ... | head -0`: the reader is gone before the first line; kalandra ends
/// quietly with the shell's SIGPIPE code, as git does, and never panics.
#[test]
fn a_closed_stdout_ends_quietly() {
    let Mirrored { w, up, down } = mirrored();
    w.commit_file(&up, "x.txt", "x\n", "pending");
    for json in [false, true] {
        let mut args = vec!["plan"];
        if json {
            args.push("--json");
        }
        args.extend([path_arg(&up), path_arg(&down)]);
        let mut child = spawn(&w, &args, &w.global_config());
        drop(child.stdout.take());
        let run = finish(child, &args);
        assert_eq!(run.code, 141, "{run}");
        assert!(!run.stderr.contains("panicked"), "{run}");
        assert!(!run.stderr.contains("Broken pipe"), "quietly{run}");
    }
}

/// Every failure path ends with a documented code: exit 101 (a panic) would be a bug.
#[test]
fn no_failure_path_panics() {
    let Mirrored { w, up, down } = mirrored();
    let bad_config = w.root().join("bad.toml");
    std::fs::write(&bad_config, "[[mirror]]\nname = 1\nupstreem = \"x\"\n").expect("can write");
    let up = path_arg(&up).to_owned();
    let down = path_arg(&down).to_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["sync", "", &down],
        vec!["sync", "--json", "ftp://example.invalid/x.git", &down],
        vec!["sync", "--json", "http://127.0.0.1:1/x.git", &down],
        vec!["sync", "--json", "ssh://127.0.0.1:1/x.git", &down],
        vec!["sync", "--json", "git://127.0.0.1:1/x.git", &down],
        vec!["sync", "--json", &up, "/dev/null"],
        vec!["plan", "--json", "--exit-code", &up, "/nonexistent/x.git"],
        vec!["sync", "--json", "--include", "heads/*", &up, &down],
        vec!["sync", "--json", "--config", path_arg(&bad_config)],
        vec!["plan", "--config", "/nonexistent.toml"],
        vec!["config", "check", path_arg(&bad_config)],
        vec!["config", "list", "--json", "/nonexistent.toml"],
        vec!["sync", "--connect-timeout", "0", &up, &down],
        vec!["no-such-command"],
    ];
    for args in cases {
        let run = w.kalandra(&args);
        assert_ne!(run.code, 101, "a panic{run}");
        assert!(!run.stderr.contains("panicked"), "a panic{run}");
        assert_ne!(run.code, 0, "a bad input was accepted{run}");
    }
    // The remote helper, run by hand or fed garbage where git's commands should be.
    let pair = format!("{up}=>{down}");
    let helper_cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![], ""),
        (vec!["origin", "no-arrow"], "capabilities\n"),
        (vec!["origin", &pair], "garbage\n"),
        (vec!["origin", &pair], "fetch 0123 refs/heads/x\n\n"),
        (vec!["origin", &pair], "push refs/heads/a\n\n"),
        (vec!["origin", &pair], "option depth x\nlist\nfrobnicate\n"),
    ];
    for (args, stdin) in helper_cases {
        use std::io::Write;
        let mut cmd = Command::new(crate::harness::helper_bin());
        cmd.args(&args)
            .current_dir(w.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        w.isolate(&mut cmd, &w.global_config());
        let mut child = cmd.spawn().expect("can start the helper");
        let _ = child
            .stdin
            .take()
            .expect("piped")
            .write_all(stdin.as_bytes());
        let out = child.wait_with_output().expect("the helper ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?} {stdin:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} {stdin:?}: {stderr}");
        assert!(
            !out.status.success(),
            "{args:?} {stdin:?} was accepted: {stderr}"
        );
    }
}

/// The URL a shell leaves when it takes `>` for a redirection: git runs the helper with
/// `UP=`, and the helper says to quote the URL instead of "no '=>'".
#[test]
fn the_helper_explains_an_unquoted_pair_url() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let url = format!("kalandra::{}=", path_arg(&up));
    let run = w.try_helper_git(w.root(), &["ls-remote", &url]);
    assert!(!run.success(), "{run}");
    assert!(
        run.stderr.contains("ends in '='") && run.stderr.contains("Quote the URL"),
        "{run}"
    );
    // Quoted, the same pair works.
    let url = format!(
        "kalandra::{}=>{}",
        path_arg(&up),
        path_arg(&fx.join("empty.git"))
    );
    let run = w.helper_git(w.root(), &["ls-remote", &url]);
    assert!(run.stdout.contains("refs/heads/develop"), "{run}");
}

#[test]
fn helper_help_and_version() {
    for flag in ["--help", "-h"] {
        let out = Command::new(crate::harness::helper_bin())
            .arg(flag)
            .output()
            .expect("can run the helper");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flag}: {out:?}");
        assert!(text.contains("kalandra::UP=>DOWN"), "{flag}: {text}");
        assert!(
            text.contains("Quote the URL") || flag == "-h",
            "{flag}: {text}"
        );
    }
    let out = Command::new(crate::harness::helper_bin())
        .arg("--version")
        .output()
        .expect("can run the helper");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("git-remote-kalandra {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The completion scripts load in their shell, and the man pages render with man's own
/// formatter.
#[test]
fn completions_and_man_pages() {
    let w = World::new();
    let run = w.kalandra(&["completions", "bash"]);
    run.assert_code(0);
    let script = w.root().join("kalandra.bash");
    std::fs::write(&script, &run.stdout).expect("can write");
    let check = Command::new("bash")
        .args([
            "-c",
            &format!("source {} && complete -p kalandra", path_arg(&script)),
        ])
        .output()
        .expect("can run bash");
    assert!(
        check.status.success() && String::from_utf8_lossy(&check.stdout).contains("kalandra"),
        "bash loads the completion: {check:?}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = w.kalandra(&["completions", shell]);
        run.assert_code(0);
        assert!(run.stdout.contains("sync"), "{shell}{run}");
    }

    let dir = w.root().join("man1");
    let run = w.kalandra(&["manpages", path_arg(&dir)]);
    run.assert_code(0);
    for page in [
        "kalandra.1",
        "kalandra-sync.1",
        "kalandra-plan.1",
        "kalandra-watch.1",
        "git-remote-kalandra.1",
    ] {
        let path = dir.join(page);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{page} was not written: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is roff"
        );
        // groff (man's formatter) renders it without warnings.
        let rendered = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .expect("groff runs (tests/run.sh installs groff-base)");
        assert!(
            rendered.status.success() && rendered.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
    }
    let sync = std::fs::read_to_string(dir.join("kalandra-sync.1")).expect("written");
    assert!(
        sync.contains("set\\-head") || sync.contains("set-head"),
        "flags are documented"
    );
}

/// A fleet run stopped by SIGTERM while a mirror's pack stalls: exit 143, one JSON document of
/// kind `interrupted`, and the mirror's downstream as it was. An invalid config under
/// `--json` is one document too, of kind `config`.
#[test]
fn a_fleet_stops_on_a_signal_and_reports_a_bad_config_as_json() {
    let Mirrored { w, up, down } = mirrored();
    w.commit_file(
        &up,
        "big.txt",
        &crate::harness::random_hex_lines(5, 4096),
        "more",
    );
    let before = w.refs(&down);
    let config = w.root().join("mirrors.toml");
    std::fs::write(
        &config,
        format!(
            "[[mirror]]\nname = \"app\"\nupstream = \"{}\"\ndownstream = \"{}\"\n",
            path_arg(&up),
            path_arg(&down)
        ),
    )
    .expect("can write the config");
    let stall = stalling_upstream_config(&w);
    let marker = w.root().join("pack-started");
    let args = ["sync", "--json", "--config", path_arg(&config)];
    let child = spawn(&w, &args, &stall);
    wait_for_pack(&marker);
    signal(&child, "TERM");
    let run = finish(child, &args);
    run.assert_code(143);
    let value: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}){run}"));
    assert_eq!(value["kind"], "interrupted", "{run}");
    assert_eq!(value["schema_version"], 1, "{run}");
    assert_eq!(w.refs(&down), before, "downstream unchanged");
    w.assert_fsck(&down);

    std::fs::write(&config, "[[mirror]]\nname = \"app\"\nupstreem = \"x\"\n").expect("can write");
    let run = w.kalandra(&args);
    run.assert_code(2);
    let value: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}){run}"));
    assert_eq!(value["kind"], "config", "{run}");
    let errors = value["config_errors"].as_array().expect("a list");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("mirrors.toml:3:"))),
        "each problem with its place{run}"
    );
}

/// `git clone` through the remote helper with a packet trace: git traces its side, the
/// helper traces its conversation with UP, the pack summarised in one line.
#[test]
fn the_helper_traces_its_conversation_with_upstream() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let up = fx.join("upstream");
    let url = format!(
        "kalandra::{}=>{}",
        path_arg(&up),
        path_arg(&fx.join("empty.git"))
    );
    let trace = w.root().join("trace.txt");
    let run = w.try_helper_git_env(
        w.root(),
        &["clone", "-q", &url, "traced"],
        &[("KALANDRA_TRACE_PACKET", trace.clone().into_os_string())],
    );
    run.assert_ok();
    let text = std::fs::read_to_string(&trace).expect("the trace file was written");
    assert!(text.contains("packet: upstream> command=ls-refs"), "{text}");
    assert!(text.contains("packet: upstream> command=fetch"), "{text}");
    assert!(text.contains("packet: upstream< PACK "), "{text}");
    assert_eq!(
        w.git(&w.root().join("traced"), &["rev-parse", "HEAD"]),
        w.rev(&up, "HEAD")
    );
}
