//! Split pushes (`--max-pack-bytes`, `--max-refs-per-push`): a sync too big for one push into
//! a downstream that caps pushes (`receive.maxInputSize`, as a forge does) goes in several,
//! each under the cap, with temporary `refs/kalandra/checkpoint/*` refs that are gone at the
//! end; a stopped run resumes from them; a commit too big for any push is named.
//!
//! Every successful sync is checked end to end (refs equal, `git fsck`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{kalandra_bin, Run, World};

const MIB: u64 = 1 << 20;

fn sync(w: &World, up: &Path, down: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "sync",
        up.to_str().expect("UTF-8"),
        down.to_str().expect("UTF-8"),
        "--json",
    ];
    args.extend_from_slice(extra);
    w.kalandra_env(w.root(), &args, &w.global_config(), &[])
}

fn report(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"))
}

fn steps(report: &Value) -> Vec<Value> {
    report["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in {report}"))
        .clone()
}

/// Downstream refuses a push whose pack passes `limit` bytes, as a forge does.
fn cap_downstream(w: &World, down: &Path, limit: &str) {
    w.git(down, &["config", "receive.maxInputSize", limit]);
}

#[track_caller]
fn assert_no_checkpoints(w: &World, down: &Path) {
    let left = w.git(down, &["for-each-ref", "refs/kalandra/"]);
    assert!(left.trim().is_empty(), "temporary refs left: {left}");
}

/// The size of upstream's pack on disk: what one uncapped push would relay.
fn pack_size(w: &World, repo: &Path) -> u64 {
    let out = w.git(repo, &["count-objects", "-v"]);
    let kib: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("size-pack: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size-pack in {out}"));
    kib * 1024
}

#[test]
fn a_big_history_goes_in_pushes_under_downstreams_cap() {
    let w = World::new();
    let fx = w.fixture("big_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    cap_downstream(&w, &down, "5m");

    // Without a cap, downstream refuses the one big push.
    let run = sync(&w, &up, &down, &["--no-verify"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains("pack exceeds maximum allowed size"),
        "{run}"
    );
    assert!(w.git(&down, &["for-each-ref"]).trim().is_empty());

    let run = sync(&w, &up, &down, &["--max-pack-bytes", "5m"]);
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    let steps = steps(&report);
    let landed: Vec<&Value> = steps.iter().filter(|s| s["cut"] == false).collect();
    assert!(
        steps.iter().filter(|s| s["kind"] == "checkpoint").count() >= 8,
        "{steps:#?}"
    );
    for step in &landed {
        let bytes = step["bytes"].as_u64().expect("bytes");
        assert!(bytes <= 5 * MIB, "a push past the cap landed: {step}");
    }
    assert_eq!(
        steps.last().map(|s| s["kind"].clone()),
        Some("cleanup".into())
    );
    // What was relayed is about one pack: the landed pushes, and the cut tries at most a cap
    // each.
    let cut = steps.iter().filter(|s| s["cut"] == true).count() as u64;
    let relayed = report["bytes_relayed"].as_u64().expect("bytes_relayed");
    let pack = pack_size(&w, &up);
    assert!(
        relayed <= pack + pack / 10 + cut * 5 * MIB,
        "{relayed} relayed for a {pack}-byte pack with {cut} cut tries"
    );
    assert!(run.stdout.contains("\"kind\":\"checkpoint\""), "{run}");
    w.assert_in_sync(&up, &down);
    assert_no_checkpoints(&w, &down);

    // The next sync has nothing to do, in one push or none.
    let run = sync(&w, &up, &down, &["--max-pack-bytes", "5m"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(steps_of(&run).len() <= 1, "{run}");
}

/// History sent oldest first is the case git's pack storage serves worst: each file's newest
/// version is stored whole and the older ones as deltas against it. An upstream with
/// reachability bitmaps (as servers keep them) sends every step's newest versions whole
/// unless asked for fresh deltas; then the steps come to about one pack.
#[test]
fn split_steps_of_deltified_history_come_to_about_one_pack() {
    let w = World::new();
    let fx = w.fixture("growing_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    cap_downstream(&w, &down, "1m");

    let run = sync(&w, &up, &down, &["--max-pack-bytes", "1m"]);
    assert_eq!(run.code, 0, "{run}");
    let steps = steps_of(&run);
    let landed: u64 = steps
        .iter()
        .filter(|s| s["cut"] == false)
        .map(|s| s["bytes"].as_u64().expect("bytes"))
        .sum();
    let checkpoints = steps.iter().filter(|s| s["kind"] == "checkpoint").count();
    assert!(checkpoints >= 4, "{steps:#?}");
    let pack = pack_size(&w, &up);
    // Measured: 0.98 times the pack; 7.9 times (in 42 steps) with the newest versions whole.
    assert!(
        landed * 10 <= pack * 13,
        "{landed} bytes landed in {checkpoints} steps for a {pack}-byte pack: {steps:#?}"
    );
    w.assert_in_sync(&up, &down);
    assert_no_checkpoints(&w, &down);
}

fn steps_of(run: &Run) -> Vec<Value> {
    steps(&report(run))
}

#[test]
fn twenty_thousand_tags_go_in_pushes_of_a_thousand() {
    let w = World::new();
    let fx = w.fixture("many_tags.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));

    let run = sync(&w, &up, &down, &["--max-refs-per-push", "1000"]);
    assert_eq!(run.code, 0, "{run}");
    let steps = steps_of(&run);
    assert!(steps.len() >= 20, "{} pushes", steps.len());
    for step in &steps {
        assert_eq!(step["kind"], "refs", "{step}");
        assert!(step["refs"].as_u64().expect("refs") <= 1000, "{step}");
    }
    assert_eq!(
        steps
            .iter()
            .map(|s| s["refs"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        20_011
    );
    w.assert_in_sync(&up, &down);
    assert_eq!(w.git(&down, &["tag"]).lines().count(), 20_010);
}

/// `human_bytes`' text ("3.0 MiB", "176 B") back to bytes, roughly.
fn bytes_of(text: &str) -> u64 {
    let (number, unit) = text.trim().split_once(' ').unwrap_or((text, "B"));
    let number: f64 = number.parse().unwrap_or(0.0);
    let scale = match unit {
        "KiB" => 1024.0,
        "MiB" => MIB as f64,
        "GiB" => (1u64 << 30) as f64,
        _ => 1.0,
    };
    (number * scale) as u64
}

#[test]
fn a_stopped_split_push_resumes_from_its_checkpoints() {
    let w = World::new();
    let fx = w.fixture("big_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    cap_downstream(&w, &down, "5m");

    // Run 1, killed once three checkpoint pushes have landed.
    let mut cmd = Command::new(kalandra_bin());
    cmd.args([
        "sync",
        up.to_str().expect("UTF-8"),
        down.to_str().expect("UTF-8"),
        "--max-pack-bytes",
        "5m",
        "-v",
    ])
    .current_dir(w.root())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    w.isolate(&mut cmd, &w.global_config());
    let mut child = cmd.spawn().expect("kalandra starts");
    let stderr = child.stderr.take().expect("piped");
    let (mut landed, mut cut, mut first_relayed) = (0, 0, 0u64);
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("UTF-8 log");
        log.push_str(&line);
        log.push('\n');
        if line.contains("cut at the cap") {
            cut += 1;
        }
        if let Some(rest) = line.split_once("(checkpoint): ").map(|(_, r)| r) {
            if let Some(size) = rest
                .split_once("ref updates, ")
                .and_then(|(_, s)| s.strip_suffix(" relayed"))
            {
                landed += 1;
                first_relayed += bytes_of(size);
                if landed == 3 {
                    child.kill().expect("can kill kalandra");
                    break;
                }
            }
        }
    }
    let status = child.wait().expect("kalandra ends");
    assert_eq!(
        landed, 3,
        "run 1 ended ({status}) before three checkpoints:\n{log}"
    );
    first_relayed += cut * 5 * MIB;
    let checkpoints = w.git(&down, &["for-each-ref", "refs/kalandra/checkpoint/"]);
    assert!(!checkpoints.trim().is_empty(), "no checkpoint left:\n{log}");
    assert!(
        w.git(&down, &["for-each-ref", "refs/heads/", "refs/tags/"])
            .trim()
            .is_empty(),
        "a user ref moved before the end"
    );

    // Run 2 starts from the checkpoints, walking straight away: no try of the whole ref.
    let run = sync(&w, &up, &down, &["--max-pack-bytes", "5m"]);
    assert_eq!(run.code, 0, "{run}");
    let steps = steps_of(&run);
    assert!(steps.iter().all(|s| s["cut"] == false), "{steps:#?}");
    let second = report(&run)["bytes_relayed"]
        .as_u64()
        .expect("bytes_relayed");
    let pack = pack_size(&w, &up);
    assert!(
        second < pack,
        "run 2 relayed {second} bytes, a whole pack is {pack}: it started over"
    );
    assert!(
        first_relayed + second <= pack + pack / 10 + 3 * 5 * MIB,
        "runs 1 and 2 relayed {first_relayed} + {second} bytes for a {pack}-byte pack"
    );
    w.assert_in_sync(&up, &down);
    assert_no_checkpoints(&w, &down);
}

#[test]
fn a_commit_bigger_than_the_cap_is_named_and_nothing_is_left_behind() {
    let w = World::new();
    let fx = w.fixture("big_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    cap_downstream(&w, &down, "5m");
    let root = w
        .git(&up, &["rev-list", "--max-parents=0", "main"])
        .trim()
        .to_owned();

    // Each commit adds 1 MiB of random bytes: with its tree, more than a 1 MiB cap.
    let run = sync(&w, &up, &down, &["--max-pack-bytes", "1m"]);
    assert_ne!(run.code, 0, "{run}");
    let report = report(&run);
    assert_eq!(report["kind"], "rejected", "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "commit {root} alone needs more than --max-pack-bytes (1.0 MiB)"
        )),
        "{error}"
    );
    assert!(
        w.git(&down, &["for-each-ref"]).trim().is_empty(),
        "downstream changed"
    );
}

#[test]
fn a_push_through_the_remote_helper_is_split_the_same_way() {
    let w = World::new();
    let fx = w.fixture("big_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    cap_downstream(&w, &down, "5m");
    let local = w.root().join("local.git");
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "--bare",
            up.to_str().expect("UTF-8"),
            local.to_str().expect("UTF-8"),
        ],
    );
    let url = crate::harness::pair_url(&up, &down);
    let args = ["push", url.as_str(), "main", "v1"];

    let run = w.try_helper_git(&local, &args);
    assert_ne!(run.code, 0, "an uncapped push went through{run}");
    assert!(w.git(&down, &["for-each-ref"]).trim().is_empty());

    let run = w.try_helper_git_env(&local, &args, &[("KALANDRA_MAX_PACK_BYTES", "5m".into())]);
    run.assert_ok();
    w.assert_in_sync(&up, &down);
    assert_no_checkpoints(&w, &down);
}

/// Over http, a cut push is a request whose body ends before the pack's checksum: http-backend's
/// receive-pack fails it, and no ref moves.
#[test]
fn a_split_push_into_an_http_downstream_stays_under_its_cap() {
    let w = World::new();
    let fx = w.fixture("big_history.sh");
    let (up, down) = (fx.join("upstream.git"), fx.join("empty.git"));
    let nginx = crate::nginx::Nginx::start(&w);
    nginx.set_server_config("[receive]\n\tmaxInputSize = 5m\n");
    let down_url = nginx.url("v2", "big_history/empty.git");
    let up_arg = up.to_str().expect("UTF-8");

    let run = w.kalandra_env(
        w.root(),
        &["sync", up_arg, &down_url, "--json"],
        &w.global_config(),
        &[],
    );
    assert_ne!(run.code, 0, "an uncapped push went through{run}");
    assert!(w.git(&down, &["for-each-ref"]).trim().is_empty());

    let run = w.kalandra_env(
        w.root(),
        &[
            "sync",
            up_arg,
            &down_url,
            "--json",
            "--max-pack-bytes",
            "5m",
        ],
        &w.global_config(),
        &[],
    );
    assert_eq!(run.code, 0, "{run}");
    let steps = steps_of(&run);
    assert!(steps.iter().any(|s| s["cut"] == true), "{steps:#?}");
    assert!(steps.len() >= 8, "{steps:#?}");
    w.assert_in_sync(&up, &down);
    assert_no_checkpoints(&w, &down);
}

/// A stopped split push's temporary refs are deleted by the next run that completes, even one
/// that needs no split (or has nothing to push), and they are never mirrored or pruned as the
/// user's refs: a pruning scope of `refs/*` leaves them out of the plan.
#[test]
fn temporary_refs_a_stopped_run_left_are_deleted_by_the_next_complete_run() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream-bare.git"), fx.join("empty.git"));
    let main = w
        .git(&up, &["rev-parse", "refs/heads/main"])
        .trim()
        .to_owned();
    let down_arg = down.to_str().expect("UTF-8");
    w.git(
        &up,
        &["push", "-q", down_arg, "main~1:refs/kalandra/checkpoint/0"],
    );

    let run = sync(&w, &up, &down, &["--include", "refs/*"]);
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    assert!(
        !report.to_string().contains("refs/kalandra/"),
        "a temporary ref was planned: {report}"
    );
    assert_no_checkpoints(&w, &down);

    // With nothing to push.
    w.git(&down, &["update-ref", "refs/kalandra/checkpoint/3", &main]);
    let run = sync(&w, &up, &down, &["--include", "refs/*", "--no-prune"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report_refs(&run), 0, "{run}");
    assert_no_checkpoints(&w, &down);
}

fn report_refs(run: &Run) -> usize {
    report(run)["refs"].as_array().map_or(0, Vec::len)
}
