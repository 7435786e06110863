//! Load benchmark (not a test): many syncs at once in one process, through the library.
//!
//! Mirrors UPSTREAM into COUNT fresh bare repositories concurrently with
//! `kalandra::relay::sync`, sampling this process's open file descriptors and
//! resident memory every 20 ms, then checks every mirror (refs equal, fsck) and
//! prints one JSON object: baseline, peak and after-the-run values, errors, wall time.
//! Open descriptors and memory must return to their baseline once the syncs are done.
//!
//!     cargo run --release --example load -- UPSTREAM WORKDIR [COUNT]   (LOAD_ROUNDS=2)
//!
//! `bench/load.sh` runs it against a local path and a git daemon on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kalandra::progress::Progress;
use kalandra::relay::{self, Outcome, SyncOptions};
use kalandra::url::RepoUrl;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn git(args: &[&str], dir: &Path) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refs(repo: &Path) -> String {
    git(
        &[
            "for-each-ref",
            "--format=%(objectname) %(refname)",
            "refs/heads",
            "refs/tags",
        ],
        repo,
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [upstream, workdir, rest @ ..] = args.as_slice() else {
        eprintln!("usage: load UPSTREAM WORKDIR [COUNT]  (UPSTREAM: a path or URL; its local path for checks in LOAD_UPSTREAM_PATH)");
        std::process::exit(2);
    };
    let count: usize = rest.first().and_then(|c| c.parse().ok()).unwrap_or(200);
    let up_url = RepoUrl::parse(upstream).expect("a valid upstream");
    let up_path = std::env::var("LOAD_UPSTREAM_PATH").unwrap_or_else(|_| upstream.clone());
    let workdir = PathBuf::from(workdir);
    std::fs::create_dir_all(&workdir).expect("workdir");
    let downs: Vec<PathBuf> = (0..count)
        .map(|i| {
            let down = workdir.join(format!("down-{i:03}.git"));
            let _ = std::fs::remove_dir_all(&down);
            git(
                &["init", "-q", "--bare", down.to_str().expect("utf-8")],
                &workdir,
            );
            down
        })
        .collect();

    let (fd_base, rss_base) = (open_fds(), status_kib("VmRSS:"));
    let options = Arc::new(SyncOptions::default());
    // Two rounds into fresh mirrors: after the second, descriptors and memory must be
    // where they were after the first (what the allocator keeps is not a leak; growth is).
    let mut rounds = Vec::new();
    let mut errors = Vec::new();
    let round_count: usize = std::env::var("LOAD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    for round in 0..round_count {
        if round > 0 {
            for down in &downs {
                let _ = std::fs::remove_dir_all(down);
                git(
                    &["init", "-q", "--bare", down.to_str().expect("utf-8")],
                    &workdir,
                );
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let (mut fd_peak, mut rss_peak) = (0, 0);
                while !done.load(Ordering::Relaxed) {
                    fd_peak = fd_peak.max(open_fds());
                    rss_peak = rss_peak.max(status_kib("VmRSS:"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (fd_peak, rss_peak)
            })
        };
        let started = Instant::now();
        let tasks: Vec<_> = downs
            .iter()
            .map(|down| {
                let (up, options) = (up_url.clone(), Arc::clone(&options));
                let down = RepoUrl::parse(down.to_str().expect("utf-8")).expect("a path");
                tokio::spawn(async move {
                    let progress = Progress::hidden();
                    relay::sync(&up, &down, &options, &progress).await
                })
            })
            .collect();
        for task in tasks {
            match task.await {
                Ok(Ok(report)) if report.result.outcome() == Outcome::Complete => {}
                Ok(Ok(report)) => errors.push(format!("outcome {:?}", report.result.outcome())),
                Ok(Err(error)) => {
                    let mut text = error.to_string();
                    let mut cause = std::error::Error::source(&error);
                    while let Some(source) = cause {
                        text.push_str(&format!(": {source}"));
                        cause = source.source();
                    }
                    errors.push(text);
                }
                Err(join) => errors.push(join.to_string()),
            }
        }
        let wall = started.elapsed();
        done.store(true, Ordering::Relaxed);
        let (fd_peak, rss_peak) = sampler.await.expect("sampler");
        tokio::time::sleep(Duration::from_secs(1)).await;
        rounds.push(serde_json::json!({
            "wall_s": wall.as_secs_f64(),
            "fds": {"peak": fd_peak, "after": open_fds()},
            "rss_kib": {"peak": rss_peak, "after": status_kib("VmRSS:")},
        }));
    }

    let expected = refs(Path::new(&up_path));
    let mismatched = downs
        .iter()
        .filter(|d| {
            refs(d) != expected
                || !Command::new("git")
                    .args(["fsck", "--connectivity-only", "--no-progress"])
                    .current_dir(d)
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
        .count();
    println!(
        "{}",
        serde_json::json!({
            "syncs_per_round": count,
            "errors": errors.len(),
            "first_errors": errors.iter().take(3).collect::<Vec<_>>(),
            "mirrors_not_equal_or_not_connected": mismatched,
            "baseline": {"fds": fd_base, "rss_kib": rss_base},
            "rounds": rounds,
            "rss_hwm_kib": status_kib("VmHWM:"),
        })
    );
}
