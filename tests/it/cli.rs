//! The command line itself: usage errors (exit 2), dangerous paths, output options.

use crate::harness::{path_arg, World};

#[test]
fn usage_errors_exit_2_and_change_nothing() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let (up, down) = (path_arg(&up), path_arg(&down));

    let cases: &[&[&str]] = &[
        &[],
        &["sync"],
        &["sync", up],
        &["sync", up, down, "extra-argument"],
        &["frobnicate", up, down],
        &["sync", "--no-such-option", up, down],
        &["sync", "--include", up, down, "--exclude"],
        &["plan", up],
    ];
    for args in cases {
        let run = w.kalandra(args);
        run.assert_code(2);
        assert!(
            !run.stderr.trim().is_empty(),
            "a usage error explains itself on stderr{run}"
        );
        assert!(w.refs(&fx.join("empty.git")).is_empty(), "{run}");
    }
}

#[test]
fn unsupported_url_is_a_usage_error() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));

    for bad in ["nosuchscheme://host/repo.git", "file://"] {
        let run = w.kalandra(&["sync", bad, path_arg(&down)]);
        run.assert_code(2);
        let run = w.kalandra(&["sync", "--json", path_arg(&up), bad]);
        run.assert_code(2);
        run.failure_report();
    }
    assert!(w.refs(&down).is_empty());
}

#[test]
fn paths_beginning_with_a_dash_are_refused() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    // Real repositories whose names begin with '-', reached relative to kalandra's cwd, so
    // only the leading dash (an option to git upload-pack/receive-pack) can be the problem.
    let dash_down = w.root().join("-down.git");
    w.git(w.root(), &["init", "-q", "--bare", "./-down.git"]);
    let dash_up = w.root().join("-up");
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "--mirror",
            path_arg(&fx.join("upstream")),
            "./-up",
        ],
    );
    let down = fx.join("empty.git");

    for args in [
        ["sync", "--", "./mirror/upstream", "-down.git"],
        ["sync", "--", "-up", "./mirror/empty.git"],
        ["plan", "--", "-up", "./mirror/empty.git"],
        ["sync", "--", "-up", "-down.git"],
    ] {
        let run = w.kalandra(&args);
        run.assert_code(2);
        assert!(w.refs(&dash_down).is_empty(), "{run}");
        assert!(w.refs(&down).is_empty(), "{run}");
    }
    assert!(dash_up.is_dir());

    // The same repositories, named safely, are fine.
    w.sync_ok_as(&dash_up, &dash_down, "./-up", "./-down.git", &[]);
}

#[test]
fn quiet_and_verbose_are_accepted() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));

    let run = w.kalandra(&["sync", "-q", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert!(
        run.stdout.trim().is_empty(),
        "--quiet prints nothing on success{run}"
    );
    let before = w.refs(&down);
    assert_eq!(before.len(), 11, "{run}");
    w.assert_fsck(&down);

    w.checkout(&up, "main", None);
    w.commit_file(&up, "v.txt", "verbose\n", "verbose");
    w.checkout(&up, "develop", None);
    let run = w.kalandra(&["sync", "-v", "-v", path_arg(&up), path_arg(&down)]);
    run.assert_code(0);
    assert_eq!(
        w.refs(&down)["refs/heads/main"],
        w.rev(&up, "main"),
        "{run}"
    );
    w.sync_ok(&up, &down, &["-v"]);
}
