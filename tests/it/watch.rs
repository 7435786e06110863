//! `kalandra watch` as a running process: webhooks with real signatures from a real HTTP
//! client, bursts coalesced, SIGHUP reloads (broken and fixed), SIGTERM with syncs in flight,
//! and interval scheduling. Every sync is checked end to end (refs equal, fsck).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{assert_refs_eq, kalandra_bin, Refs, World, STALL_WHILE_PARENT_LIVES};
use crate::watch_http::{openmetrics, openssl_signature};

const SECRET: &str = "hook-secret-for-tests";

/// A running `kalandra watch`, killed on drop.
struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Watch {
    fn start(w: &World, config: &Path, extra: &[&str]) -> Self {
        Self::start_with(w, config, extra, &w.global_config())
    }

    /// [`Watch::start`] with `global_config` as the git config of kalandra and of the local
    /// git servers it starts.
    fn start_with(w: &World, config: &Path, extra: &[&str], global_config: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = w.root().join("watch.log");
        let log_file = std::fs::File::create(&log).expect("can create the log");
        // Everything that can fail comes before the spawn: from the spawn on, the process
        // is owned by a `Watch`, whose drop kills it even when the test panics.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let client = crate::watch_http::client();
        let mut cmd = Command::new(kalandra_bin());
        cmd.args(["watch", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .current_dir(w.root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        w.isolate(&mut cmd, global_config);
        cmd.env("WATCH_SECRET", SECRET);
        let mut watch = Self {
            child: cmd.spawn().expect("can start kalandra watch"),
            port,
            log,
            runtime,
            client,
        };
        watch.wait_ready();
        watch
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kalandra watch exited with {status}:\n{}", self.log());
            }
            if self.get("/readyz").0 == 200 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "kalandra watch was not ready within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        self.runtime.block_on(async {
            match self.client.get(&url).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (status, response.text().await.unwrap_or_default())
                }
                Err(_) => (0, String::new()),
            }
        })
    }

    fn post(&self, path: &str, body: &[u8], headers: &[(&str, String)]) -> u16 {
        let url = self.url(path);
        self.runtime.block_on(async {
            let mut request = self.client.post(&url).body(body.to_vec());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            request
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
    }

    fn status(&self) -> Value {
        let (code, body) = self.get("/status");
        assert_eq!(code, 200, "/status: {body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// The mirror's entry in /status.
    fn mirror(&self, name: &str) -> Value {
        self.status()["mirrors"]
            .as_array()
            .expect("mirrors")
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until `check` holds, or fails with the log after `limit`.
    #[track_caller]
    fn wait_for(&self, what: &str, limit: Duration, mut check: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !check(self) {
            assert!(
                started.elapsed() < limit,
                "{what} did not happen within {limit:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kalandra_syncs_total` for the mirror, all results, from /metrics read by a strict
    /// OpenMetrics reader (a scrape it refuses fails the test).
    fn syncs(&self, name: &str) -> f64 {
        let (code, text) = self.get("/metrics");
        assert_eq!(code, 200, "/metrics: {text}");
        let scrape = openmetrics::parse(&text)
            .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics ({e}):\n{text}"));
        scrape
            .samples
            .iter()
            .filter(|s| s.name == "kalandra_syncs_total")
            .filter(|s| s.labels.get("mirror").map(String::as_str) == Some(name))
            .map(|s| s.value)
            .sum()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("can run kill");
        assert!(status.success());
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(w: &World, text: &str) -> PathBuf {
    let path = w.root().join("watch.toml");
    std::fs::write(&path, text).expect("can write the config");
    path
}

fn entry(name: &str, up: &Path, down: &Path, extra: &str) -> String {
    format!(
        "[[mirror]]\nname = \"{name}\"\nupstream = \"{}\"\ndownstream = \"{}\"\n{extra}\n",
        up.display(),
        down.display()
    )
}

fn pair(w: &World) -> (PathBuf, PathBuf) {
    let fx = w.fixture("mirror.sh");
    (fx.join("upstream-bare.git"), fx.join("empty.git"))
}

fn in_sync(w: &World, up: &Path, down: &Path) -> bool {
    let scope = crate::harness::Scope::new(&[], &[]);
    scope.filter(&w.refs(down)) == scope.filter(&w.refs(up))
}

/// A new commit on upstream's main branch.
fn advance(w: &World, up: &Path, n: usize) -> Refs {
    let tree = w.git(up, &["rev-parse", "main^{tree}"]);
    let parent = w.rev(up, "main");
    let commit = w.git(
        up,
        &[
            "commit-tree",
            tree.trim(),
            "-p",
            parent.trim(),
            "-m",
            &format!("change {n}"),
        ],
    );
    w.git(up, &["update-ref", "refs/heads/main", commit.trim()]);
    w.refs(up)
}

/// A watch of one mirror `app` from `pair`, hooks signed with [`SECRET`], no periodic sync
/// during the test; started, and waited for until its first sync has mirrored upstream.
fn watching_app(w: &World) -> (PathBuf, PathBuf, Watch) {
    let (up, down) = pair(w);
    let path = config(
        w,
        &format!(
            "[defaults]\ninterval = \"24h\"\nwebhook_secret_env = \"WATCH_SECRET\"\n\n{}",
            entry("app", &up, &down, "")
        ),
    );
    let watch = Watch::start(w, &path, &[]);
    // It catches up at start.
    watch.wait_for("the first sync", Duration::from_secs(30), |watch| {
        in_sync(w, &up, &down) && watch.syncs("app") >= 1.0
    });
    (up, down, watch)
}

#[test]
fn a_signed_webhook_syncs_and_bad_ones_are_refused() {
    let w = World::new();
    let (up, down, watch) = watching_app(&w);
    w.assert_in_sync(&up, &down);

    advance(&w, &up, 1);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let before = w.refs(&down);
    // Refused: no signature, a wrong one, a body signed with another secret.
    assert_eq!(watch.post("/hooks/app", body, &[]), 401);
    assert_eq!(
        watch.post(
            "/hooks/app",
            body,
            &[("X-Hub-Signature-256", "sha256=00".to_owned())]
        ),
        401
    );
    assert_eq!(
        watch.post(
            "/hooks/app",
            body,
            &[(
                "X-Hub-Signature-256",
                openssl_signature("not-the-secret", body)
            )]
        ),
        401
    );
    assert_eq!(
        watch.post(
            "/hooks/nope",
            body,
            &[("X-Hub-Signature-256", openssl_signature(SECRET, body))]
        ),
        404
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_refs_eq(&w.refs(&down), &before, "downstream after refused hooks");

    // A good one: the downstream catches up.
    let sent = Instant::now();
    assert_eq!(
        watch.post(
            "/hooks/app",
            body,
            &[("X-Hub-Signature-256", openssl_signature(SECRET, body))]
        ),
        202
    );
    watch.wait_for("the hook's sync", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &down)
    });
    eprintln!("webhook to downstream updated: {:?}", sent.elapsed());
    w.assert_in_sync(&up, &down);
    // GitLab's token header works too.
    advance(&w, &up, 2);
    assert_eq!(
        watch.post(
            "/hooks/app",
            b"{}",
            &[("X-Gitlab-Token", SECRET.to_owned())]
        ),
        202
    );
    watch.wait_for("the GitLab hook's sync", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &down)
    });
    w.assert_in_sync(&up, &down);
    let last = &watch.mirror("app")["last"];
    assert_eq!(last["ok"], true, "{last}");
}

#[test]
fn a_burst_of_webhooks_makes_at_most_two_syncs() {
    let w = World::new();
    let (up, down, watch) = watching_app(&w);
    let before = watch.syncs("app");
    advance(&w, &up, 1);
    let body = b"{}";
    let signature = openssl_signature(SECRET, body);
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(
            watch.post(
                "/hooks/app",
                body,
                &[("X-Hub-Signature-256", signature.clone())]
            ),
            202
        );
    }
    eprintln!("20 hooks sent in {:?}", started.elapsed());
    watch.wait_for("the burst's sync", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &down)
    });
    // Let any follow-up run and settle.
    std::thread::sleep(Duration::from_secs(2));
    watch.wait_for("no sync running", Duration::from_secs(30), |w| {
        w.status()["running"] == 0
    });
    let syncs = watch.syncs("app") - before;
    assert!(
        (1.0..=2.0).contains(&syncs),
        "20 hooks made {syncs} syncs; log:\n{}",
        watch.log()
    );
    w.assert_in_sync(&up, &down);
}

#[test]
fn sighup_keeps_the_old_config_when_the_new_one_is_broken_and_takes_a_fixed_one() {
    let w = World::new();
    let (up, down) = pair(&w);
    let second = w.root().join("second.git");
    w.git(
        w.root(),
        &["init", "-q", "--bare", second.to_str().expect("UTF-8")],
    );
    let good = format!(
        "[defaults]\ninterval = \"24h\"\n\n{}",
        entry("app", &up, &down, "")
    );
    let path = config(&w, &good);
    let watch = Watch::start(&w, &path, &["--log-format", "json"]);
    watch.wait_for("the first sync", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &down)
    });

    std::fs::write(&path, "[[mirror]]\nname = 3\n").expect("can break the config");
    watch.signal("HUP");
    watch.wait_for("the reload error", Duration::from_secs(10), |w| {
        w.log().contains("still running the previous one")
    });
    assert_eq!(watch.get("/readyz").0, 200);
    assert!(
        watch.mirror("app").is_object(),
        "the old mirror is still there"
    );
    assert_eq!(watch.get("/metrics").0, 200);

    std::fs::write(
        &path,
        format!("{good}{}", entry("second", &up, &second, "")),
    )
    .expect("can fix the config");
    watch.signal("HUP");
    watch.wait_for("the new mirror's sync", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &second)
    });
    w.assert_in_sync(&up, &second);
    // --log-format json: every line is one JSON object with a level and a message.
    let log = watch.log();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["fields"]["message"].is_string(), "{line}");
    }
    assert!(log.lines().count() >= 3, "{log}");
}

#[test]
fn sigterm_stops_within_the_grace_period_and_downstream_is_consistent() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let before = w.refs(&down);
    // Upstream goes silent before the pack (until kalandra drops it): the sync is surely in
    // flight at SIGTERM.
    let hook = w.root().join("slow-pack.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ntouch '{}'\n{STALL_WHILE_PARENT_LIVES}exec \"$@\"\n",
            w.root().join("pack-started").display()
        ),
    )
    .expect("can write the hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
    }
    let global = w.global_config_with(
        "slow.gitconfig",
        &format!(
            "[uploadpack]\n\tpackObjectsHook = {}\n\tkeepAlive = 1\n",
            hook.display()
        ),
    );
    let path = config(
        &w,
        &format!(
            "[defaults]\ninterval = \"24h\"\n\n{}",
            entry("big", &up, &down, "")
        ),
    );
    let mut watch = Watch::start_with(&w, &path, &["--grace", "1"], &global);
    let marker = w.root().join("pack-started");
    watch.wait_for("the relay to start", Duration::from_secs(30), |_| {
        marker.exists()
    });
    watch.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = watch.child.try_wait().expect("can wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "kalandra watch did not stop after SIGTERM:\n{}",
            watch.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("stopped {:?} after SIGTERM", started.elapsed());
    assert!(
        status.success(),
        "exit 0 after SIGTERM: {status}\n{}",
        watch.log()
    );
    assert!(
        watch
            .log()
            .contains("did not finish within the grace period"),
        "the relay was cut at the grace period:\n{}",
        watch.log()
    );
    // The pack never arrived whole, so no ref moved; the repository is whole.
    assert_refs_eq(&w.refs(&down), &before, "downstream after SIGTERM");
    w.assert_fsck(&down);
}

#[test]
fn a_short_interval_syncs_again_and_again_and_the_metrics_follow() {
    let w = World::new();
    let (up, down) = pair(&w);
    let missing = w.root().join("missing.git");
    let other = w.root().join("other.git");
    let path = config(
        &w,
        &format!(
            "[defaults]\ninterval = \"1s\"\nretries = 0\n\n{}{}",
            entry("app", &up, &down, ""),
            entry("broken", &missing, &other, "")
        ),
    );
    let watch = Watch::start(&w, &path, &[]);
    watch.wait_for("three syncs", Duration::from_secs(60), |w| {
        w.syncs("app") >= 3.0 && w.syncs("broken") >= 2.0
    });
    let (_, text) = watch.get("/metrics");
    let scrape = openmetrics::parse(&text).expect("valid OpenMetrics");
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert!(
        value(
            "kalandra_syncs_total",
            &[("mirror", "app"), ("result", "ok")]
        ) >= 3.0
    );
    assert!(
        value(
            "kalandra_syncs_total",
            &[("mirror", "broken"), ("result", "not-found")]
        ) >= 2.0
    );
    assert_eq!(value("kalandra_mirror_up", &[("mirror", "app")]), 1.0);
    assert_eq!(value("kalandra_mirror_up", &[("mirror", "broken")]), 0.0);
    assert!(
        value(
            "kalandra_last_success_timestamp_seconds",
            &[("mirror", "app")]
        ) > 1.7e9
    );
    advance(&w, &up, 1);
    watch.wait_for("the change to be mirrored", Duration::from_secs(30), |_| {
        in_sync(&w, &up, &down)
    });
    w.assert_in_sync(&up, &down);
    assert!(!watch.log().contains("panicked"), "{}", watch.log());
}

#[test]
fn one_mirror_never_syncs_twice_at_once() {
    let w = World::new();
    let (up, down) = pair(&w);
    // Downstream notices two pushes at once: each push holds a lock for a while.
    let overlaps = w.root().join("overlaps");
    w.install_hook(
        &down,
        "pre-receive",
        &format!(
            "#!/bin/sh\nif ! mkdir '{lock}' 2>/dev/null; then echo overlap >> '{overlaps}'; exit 1; fi\n\
             sleep 0.3\nrmdir '{lock}'\n",
            lock = w.root().join("push-lock").display(),
            overlaps = overlaps.display(),
        ),
    );
    let path = config(
        &w,
        &format!(
            "[defaults]\ninterval = \"1s\"\nwebhook_secret_env = \"WATCH_SECRET\"\n\n{}",
            entry("app", &up, &down, "")
        ),
    );
    let watch = Watch::start(&w, &path, &["--jobs", "4"]);
    let body = b"{}";
    let signature = openssl_signature(SECRET, body);
    let started = Instant::now();
    let mut n = 0;
    // Upstream changes all the time, and hooks keep asking, on top of the interval.
    while started.elapsed() < Duration::from_secs(6) {
        n += 1;
        advance(&w, &up, n);
        for _ in 0..5 {
            watch.post(
                "/hooks/app",
                body,
                &[("X-Hub-Signature-256", signature.clone())],
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    watch.wait_for(
        "the last change to be mirrored",
        Duration::from_secs(30),
        |_| in_sync(&w, &up, &down),
    );
    assert!(
        !overlaps.exists(),
        "two syncs of one mirror pushed at once; log:\n{}",
        watch.log()
    );
    assert!(watch.syncs("app") >= 5.0, "the syncs kept coming");
    w.assert_in_sync(&up, &down);
}
