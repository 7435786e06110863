//! `kalandra watch`'s HTTP listener, served on 127.0.0.1:0 and driven by a
//! real HTTP client: webhook authentication, push events, health, status
//! and metrics. A recording [`Control`] stands in for the scheduler.
//! Signatures are made by `openssl dgst`, not by the code under test.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kalandra::error_kind::ErrorKind;
use kalandra::fleet::MirrorRun;
use kalandra::oid::{ObjectFormat, ObjectId};
use kalandra::plan::{Action, UpdateKind};
use kalandra::relay::{PushResult, RefOutcome, RefStatus, SyncReport};
use kalandra::watch::metrics::Metrics;
use kalandra::watch::{http, Control, Triggered, WebhookSecret};
use reqwest::StatusCode;

/// The scheduler's stand-in: a fixed set of mirrors, and a record of what
/// was triggered.
#[derive(Default)]
struct Recorder {
    /// name → (upstream, secret)
    mirrors: HashMap<String, (String, Option<WebhookSecret>)>,
    triggered: Mutex<Vec<String>>,
    ready: AtomicBool,
}

impl Recorder {
    fn with(mut self, name: &str, upstream: &str, secret: Option<&str>) -> Self {
        let secret = secret.map(|secret| WebhookSecret(secret.to_owned()));
        self.mirrors
            .insert(name.to_owned(), (upstream.to_owned(), secret));
        self
    }

    fn triggered(&self) -> Vec<String> {
        self.triggered.lock().expect("not poisoned").clone()
    }
}

impl Control for Recorder {
    fn webhook_secret(&self, mirror: &str) -> Option<WebhookSecret> {
        self.mirrors
            .get(mirror)
            .and_then(|(_, secret)| secret.clone())
    }
    fn has_mirror(&self, mirror: &str) -> bool {
        self.mirrors.contains_key(mirror)
    }
    fn mirrors_for_repository(&self, urls: &[String]) -> Vec<String> {
        let mut names: Vec<String> = self
            .mirrors
            .iter()
            .filter(|(_, (upstream, _))| urls.contains(upstream))
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }
    fn trigger(&self, mirror: &str) -> Triggered {
        if !self.has_mirror(mirror) {
            return Triggered::Unknown;
        }
        self.triggered
            .lock()
            .expect("not poisoned")
            .push(mirror.to_owned());
        Triggered::Queued
    }
    fn status(&self) -> serde_json::Value {
        serde_json::json!({"mirrors": {"api": {"ok": true}}})
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// A running listener; dropping it shuts the server down.
struct Server {
    base: String,
    control: Arc<Recorder>,
    metrics: Arc<Metrics>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

const SECRET: &str = "It's a Secret to Everybody";
const UPSTREAM: &str = "https://github.com/octo/api.git";

async fn start(control: Recorder) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let control = Arc::new(control);
    let metrics = Arc::new(Metrics::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(
        listener,
        control.clone(),
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    Server {
        base,
        control,
        metrics,
        client: client(),
        _stop: stop,
    }
}

pub(crate) fn client() -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client")
}

/// The standard mirrors: `api` with a secret, `web` on the same upstream
/// with another secret, `bare` without one.
fn fleet() -> Recorder {
    Recorder::default()
        .with("api", UPSTREAM, Some(SECRET))
        .with("web", UPSTREAM, Some("another secret"))
        .with("bare", "https://example.org/bare.git", None)
}

/// `X-Hub-Signature-256` for `body` under `secret`, by openssl.
pub(crate) fn openssl_signature(secret: &str, body: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(body)
        .expect("openssl reads its input");
    let output = child.wait_with_output().expect("openssl finishes");
    assert!(output.status.success(), "openssl failed");
    let text = String::from_utf8(output.stdout).expect("hex is UTF-8");
    // "SHA2-256(stdin)= <hex>" or "(stdin)= <hex>", depending on the version.
    let hex = text.rsplit("= ").next().expect("a digest").trim();
    assert_eq!(hex.len(), 64, "{text:?}");
    format!("sha256={hex}")
}

impl Server {
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> StatusCode {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
            .send()
            .await
            .expect("the request is answered")
            .status()
    }

    /// POSTs `body` signed with `secret`, as GitHub does.
    async fn post_signed(&self, path: &str, secret: &str, body: &[u8]) -> StatusCode {
        let signature = openssl_signature(secret, body);
        let headers = [("X-Hub-Signature-256", signature.as_str())];
        self.post(path, &headers, body.to_vec()).await
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the request is answered")
    }
}

const BODY: &[u8] = br#"{"zen":"Keep it logically awesome."}"#;

#[tokio::test]
async fn a_good_github_signature_triggers_the_mirror_once() {
    let server = start(fleet()).await;
    let status = server.post_signed("/hooks/api", SECRET, BODY).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(server.control.triggered(), ["api"]);
}

#[tokio::test]
async fn a_good_gitlab_token_triggers_the_mirror() {
    let server = start(fleet()).await;
    let status = server
        .post("/hooks/api", &[("X-Gitlab-Token", SECRET)], BODY.to_vec())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(server.control.triggered(), ["api"]);
}

#[tokio::test]
async fn bad_missing_and_wrongly_keyed_signatures_are_refused_and_trigger_nothing() {
    let server = start(fleet()).await;
    let other_body = openssl_signature(SECRET, b"{}");
    let wrong_secret = openssl_signature("guess", BODY);
    for headers in [
        vec![],
        vec![("X-Hub-Signature-256", "sha256=00")],
        vec![("X-Hub-Signature-256", other_body.as_str())],
        // The same body, replayed with a signature under another secret.
        vec![("X-Hub-Signature-256", wrong_secret.as_str())],
        vec![("X-Gitlab-Token", "guess")],
        // The signature header wins: a good token does not rescue a bad one.
        vec![
            ("X-Hub-Signature-256", "sha256=00"),
            ("X-Gitlab-Token", SECRET),
        ],
    ] {
        let status = server.post("/hooks/api", &headers, BODY.to_vec()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // Another mirror's good signature does not open this one.
    let status = server.post_signed("/hooks/web", SECRET, BODY).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn a_mirror_without_a_secret_refuses_hooks_and_says_why() {
    let server = start(fleet()).await;
    let response = server
        .client
        .post(format!("{}/hooks/bare", server.base))
        .header("X-Gitlab-Token", "")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let text = response.text().await.expect("a body");
    assert!(text.contains("not configured"), "{text}");
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn an_unknown_mirror_is_not_found() {
    let server = start(fleet()).await;
    let status = server.post_signed("/hooks/nope", SECRET, BODY).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_even_when_signed() {
    let server = start(fleet()).await;
    let body = vec![b' '; http::NAMED_HOOK_BODY_LIMIT + 1];
    let status = server.post_signed("/hooks/api", SECRET, &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Exactly at the cap is fine.
    let body = vec![b' '; http::NAMED_HOOK_BODY_LIMIT];
    let status = server.post_signed("/hooks/api", SECRET, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(server.control.triggered(), ["api"]);
}

#[tokio::test]
async fn a_chunked_body_over_the_cap_is_refused() {
    let server = start(fleet()).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..=http::NAMED_HOOK_BODY_LIMIT / 1024)
        .map(|_| Ok(vec![b' '; 1024]))
        .collect();
    let response = server
        .client
        .post(format!("{}/hooks/api", server.base))
        .header("X-Gitlab-Token", SECRET)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(server.control.triggered().is_empty());
}

fn github_push(clone_url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": "1111111111111111111111111111111111111111",
        "repository": {
            "name": "api",
            "full_name": "octo/api",
            "clone_url": clone_url,
            "ssh_url": "git@github.com:octo/api.git",
            "html_url": "https://github.com/octo/api",
            "git_url": "git://github.com/octo/api.git",
        },
        "commits": [],
    }))
    .expect("JSON")
}

#[tokio::test]
async fn a_github_push_event_triggers_only_the_mirrors_whose_secret_signed_it() {
    let server = start(fleet()).await;
    let body = github_push(UPSTREAM);
    let signature = openssl_signature(SECRET, &body);
    let response = server
        .client
        .post(format!("{}/hooks", server.base))
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", &signature)
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("a body")).expect("JSON");
    assert_eq!(answer, serde_json::json!({"triggered": ["api"]}));
    // `web` mirrors the same upstream, but under another secret.
    assert_eq!(server.control.triggered(), ["api"]);
}

#[tokio::test]
async fn a_push_event_signed_by_no_candidate_is_refused() {
    let server = start(fleet()).await;
    let body = github_push(UPSTREAM);
    let signature = openssl_signature("guess", &body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", &signature),
    ];
    let status = server.post("/hooks", &headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let status = server
        .post(
            "/hooks",
            &[("X-GitHub-Event", "push")],
            github_push(UPSTREAM),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn a_push_event_for_a_repository_nobody_mirrors_is_not_found() {
    let server = start(fleet()).await;
    let body = github_push("https://github.com/octo/other.git");
    let signature = openssl_signature(SECRET, &body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-Hub-Signature-256", &signature),
    ];
    let status = server.post("/hooks", &headers, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn a_gitlab_push_event_with_its_token_triggers_the_mirror() {
    let server = start(Recorder::default().with(
        "docs",
        "git@gitlab.example:group/docs.git",
        Some("gl-token"),
    ))
    .await;
    let body = serde_json::to_vec(&serde_json::json!({
        "object_kind": "push",
        "project": {
            "git_http_url": "https://gitlab.example/group/docs.git",
            "git_ssh_url": "git@gitlab.example:group/docs.git",
            "web_url": "https://gitlab.example/group/docs",
        },
    }))
    .expect("JSON");
    let headers = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", "gl-token"),
    ];
    let status = server.post("/hooks", &headers, body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(server.control.triggered(), ["docs"]);
}

#[tokio::test]
async fn pings_and_other_events_trigger_nothing() {
    let server = start(fleet()).await;
    let status = server
        .post("/hooks", &[("X-GitHub-Event", "ping")], b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    let status = server
        .post("/hooks", &[("X-GitHub-Event", "issues")], b"{}".to_vec())
        .await;
    assert_eq!(status, StatusCode::OK);
    let status = server.post("/hooks", &[], b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(server.control.triggered().is_empty());
}

#[tokio::test]
async fn health_readiness_and_status() {
    let server = start(fleet()).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.expect("a body"), "ok\n");
    assert_eq!(
        server.get("/readyz").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.control.ready.store(true, Ordering::SeqCst);
    assert_eq!(server.get("/readyz").await.status(), StatusCode::OK);
    let status = server.get("/status").await;
    assert_eq!(status.status(), StatusCode::OK);
    let json: serde_json::Value =
        serde_json::from_slice(&status.bytes().await.expect("a body")).expect("JSON");
    assert_eq!(json, serde_json::json!({"mirrors": {"api": {"ok": true}}}));
}

#[tokio::test]
async fn unknown_paths_are_not_found_and_wrong_methods_not_allowed() {
    let server = start(fleet()).await;
    assert_eq!(server.get("/nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        server.get("/hooks/api").await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
    let status = server.post("/metrics", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn the_server_stops_when_asked() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let served = tokio::spawn(http::serve(
        listener,
        Arc::new(fleet()),
        Arc::new(Metrics::new()),
        async {},
    ));
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("stops at once")
        .expect("no panic")
        .expect("no I/O error");
}

fn oid(digit: char) -> Option<ObjectId> {
    let hex = digit.to_string().repeat(40);
    Some(ObjectId::from_hex(hex.as_bytes()).expect("40 hex digits"))
}

fn moved(name: &str, action: Action, kind: Option<UpdateKind>, status: RefStatus) -> RefOutcome {
    RefOutcome {
        name: name.to_owned(),
        action,
        old: (action != Action::Create).then(|| oid('1')).flatten(),
        new: (action != Action::Delete).then(|| oid('2')).flatten(),
        kind,
        status,
        reason: None,
    }
}

fn run(name: &str, refs: Vec<RefOutcome>, error: Option<ErrorKind>) -> MirrorRun {
    let report = SyncReport {
        dry_run: false,
        upstream: UPSTREAM.to_owned(),
        downstream: "/srv/mirror.git".to_owned(),
        object_format: ObjectFormat::Sha1,
        upstream_head: None,
        result: PushResult {
            refs,
            pack: None,
            bytes_relayed: 1234,
            downstream_messages: Vec::new(),
            pushed: 0,
        },
        skipped_refs: Vec::new(),
        steps: Vec::new(),
        lfs: None,
        elapsed_ms: 5,
    };
    MirrorRun {
        name: name.to_owned(),
        upstream: UPSTREAM.to_owned(),
        downstream: "/srv/mirror.git".to_owned(),
        ok: error.is_none(),
        attempts: 1,
        elapsed_ms: 5,
        created: false,
        default_branch_set: None,
        error_kind: error,
        error: error.map(|kind| kind.to_string()),
        report: Some(report),
    }
}

#[tokio::test]
async fn metrics_parse_as_openmetrics_and_move_after_syncs_and_retries() {
    let server = start(fleet()).await;
    let scrape = async || {
        let response = server.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.expect("a body");
        openmetrics::parse(&text).unwrap_or_else(|error| panic!("{error}\n{text}"))
    };
    let before = scrape().await;
    assert_eq!(before.value("kalandra_in_flight", &[]), Some(0.0));
    assert_eq!(
        before.value("kalandra_sync_duration_seconds_count", &[]),
        Some(0.0)
    );
    assert_eq!(
        before.value(
            "kalandra_syncs_total",
            &[("mirror", "api"), ("result", "ok")]
        ),
        None
    );

    let metrics = &server.metrics;
    metrics.sync_started("api");
    assert_eq!(scrape().await.value("kalandra_in_flight", &[]), Some(1.0));
    let refs = vec![
        moved(
            "refs/heads/main",
            Action::Update,
            Some(UpdateKind::FastForward),
            RefStatus::Ok,
        ),
        moved(
            "refs/heads/wip",
            Action::Update,
            Some(UpdateKind::Forced),
            RefStatus::Ok,
        ),
        moved("refs/heads/new", Action::Create, None, RefStatus::Ok),
        moved("refs/heads/old", Action::Delete, None, RefStatus::Ok),
        moved(
            "refs/heads/no",
            Action::Update,
            Some(UpdateKind::FastForward),
            RefStatus::Rejected,
        ),
    ];
    metrics.sync_finished(&run("api", refs, None), Duration::from_millis(700));
    metrics.sync_started("web");
    metrics.retried("web");
    metrics.retried("web");
    metrics.sync_finished(
        &run("web", Vec::new(), Some(ErrorKind::Timeout)),
        Duration::from_secs(40),
    );

    let after = scrape().await;
    let api = [("mirror", "api")];
    let web = [("mirror", "web")];
    assert_eq!(after.value("kalandra_in_flight", &[]), Some(0.0));
    assert_eq!(
        after.value(
            "kalandra_syncs_total",
            &[("mirror", "api"), ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "kalandra_syncs_total",
            &[("mirror", "web"), ("result", "timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(after.value("kalandra_retries_total", &web), Some(2.0));
    assert_eq!(
        after.value("kalandra_bytes_relayed_total", &api),
        Some(1234.0)
    );
    for (kind, count) in [
        ("fast-forward", 1.0),
        ("forced", 1.0),
        ("create", 1.0),
        ("delete", 1.0),
    ] {
        let labels = [("mirror", "api"), ("kind", kind)];
        assert_eq!(
            after.value("kalandra_refs_updated_total", &labels),
            Some(count),
            "{kind}"
        );
    }
    assert_eq!(
        after.count("kalandra_refs_updated_total"),
        4,
        "the rejected ref is not counted"
    );
    assert_eq!(after.value("kalandra_mirror_up", &api), Some(1.0));
    assert_eq!(after.value("kalandra_mirror_up", &web), Some(0.0));
    let last = after
        .value("kalandra_last_success_timestamp_seconds", &api)
        .expect("api succeeded");
    assert!(last > 1.7e9, "{last}");
    assert_eq!(
        after.value("kalandra_last_success_timestamp_seconds", &web),
        None
    );
    assert_eq!(
        after.value("kalandra_sync_duration_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        after.value("kalandra_sync_duration_seconds_bucket", &[("le", "1.0")]),
        Some(1.0)
    );
    assert_eq!(
        after.value("kalandra_sync_duration_seconds_bucket", &[("le", "+Inf")]),
        Some(2.0)
    );

    metrics.forget("web");
    let forgotten = scrape().await;
    assert!(
        forgotten
            .samples
            .iter()
            .all(|sample| sample.labels.get("mirror").map(String::as_str) != Some("web")),
        "web's series are gone"
    );
    assert_eq!(forgotten.value("kalandra_mirror_up", &api), Some(1.0));
}

/// A strict reader of the OpenMetrics text format
/// (<https://github.com/prometheus/OpenMetrics/blob/main/specification/OpenMetrics.md>),
/// enough to refuse what a scraper would refuse: every sample belongs to
/// the family declared before it, with a suffix its type allows; label
/// values are quoted and escaped; values are numbers; histogram buckets
/// are cumulative and end at `+Inf`; the text ends with `# EOF`.
pub(crate) mod openmetrics {
    use super::BTreeMap;

    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    pub struct Scrape {
        pub samples: Vec<Sample>,
    }

    impl Scrape {
        /// The value of the one sample with this name and exactly these labels.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect();
            let mut found = self
                .samples
                .iter()
                .filter(|sample| sample.name == name && sample.labels == labels);
            let value = found.next().map(|sample| sample.value);
            assert!(found.next().is_none(), "{name} {labels:?} appears twice");
            value
        }

        pub fn count(&self, name: &str) -> usize {
            self.samples
                .iter()
                .filter(|sample| sample.name == name)
                .count()
        }
    }

    pub fn parse(text: &str) -> Result<Scrape, String> {
        let body = text
            .strip_suffix("# EOF\n")
            .ok_or("the text does not end with \"# EOF\\n\"")?;
        let mut samples = Vec::new();
        // The current family: its name, its type once declared, and
        // whether its samples have begun (metadata must come before them).
        let mut family: Option<(String, Option<String>, bool)> = None;
        let mut declared = std::collections::HashSet::new();
        for line in body.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let keyword = words.next().unwrap_or_default();
                let name = words.next().ok_or(format!("no metric name: {line:?}"))?;
                let rest = words
                    .next()
                    .ok_or(format!("nothing after the name: {line:?}"))?;
                check_name(name)?;
                if family
                    .as_ref()
                    .is_none_or(|(current, _, _)| current != name)
                {
                    if !declared.insert(name.to_owned()) {
                        return Err(format!("{name}'s metadata is split"));
                    }
                    family = Some((name.to_owned(), None, false));
                }
                let (_, kind, started) = family.as_mut().expect("set just above");
                if *started {
                    return Err(format!("metadata after samples: {line:?}"));
                }
                match keyword {
                    "TYPE" => {
                        const TYPES: [&str; 8] = [
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "info",
                            "stateset",
                            "summary",
                            "unknown",
                        ];
                        if !TYPES.contains(&rest) || kind.is_some() {
                            return Err(format!("bad or second TYPE: {line:?}"));
                        }
                        *kind = Some(rest.to_owned());
                    }
                    "HELP" | "UNIT" => {}
                    _ => return Err(format!("unknown comment: {line:?}")),
                }
                continue;
            }
            let (family_name, kind, started) = family
                .as_mut()
                .ok_or(format!("a sample before any metadata: {line:?}"))?;
            *started = true;
            let kind = kind.as_deref().unwrap_or("unknown");
            let sample = parse_sample(line)?;
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_count", "_sum", "_created"],
                _ => &[""],
            };
            let suffix = sample
                .name
                .strip_prefix(family_name.as_str())
                .ok_or(format!("{} outside its family {family_name}", sample.name))?;
            if !suffixes.contains(&suffix) {
                return Err(format!("{} is not a sample name of a {kind}", sample.name));
            }
            if suffix == "_total" && sample.value < 0.0 {
                return Err(format!("negative counter: {line:?}"));
            }
            samples.push(sample);
        }
        check_buckets(&samples)?;
        Ok(Scrape { samples })
    }

    fn check_name(name: &str) -> Result<(), String> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            Ok(())
        } else {
            Err(format!("bad metric name: {name:?}"))
        }
    }

    fn parse_sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or(format!("no value: {line:?}"))?;
        let name = &line[..name_end];
        check_name(name)?;
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest.find("=\"").ok_or(format!("bad label: {line:?}"))?;
                let key = &rest[..eq];
                check_name(key)?;
                let mut value = String::new();
                let mut chars = rest[eq + 2..].char_indices();
                let end = loop {
                    match chars
                        .next()
                        .ok_or(format!("unterminated label value: {line:?}"))?
                    {
                        (at, '"') => break at,
                        (_, '\\') => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(format!("bad escape: {line:?}")),
                        },
                        (_, c) => value.push(c),
                    }
                };
                if labels.insert(key.to_owned(), value).is_some() {
                    return Err(format!("label {key} twice: {line:?}"));
                }
                rest = &rest[eq + 2 + end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or(format!("no space before the value: {line:?}"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            number => number
                .parse::<f64>()
                .map_err(|_| format!("bad value {number:?} in {line:?}"))?,
        };
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// Buckets are cumulative, end at `+Inf`, and `+Inf` equals `_count`.
    fn check_buckets(samples: &[Sample]) -> Result<(), String> {
        let mut last: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        let mut counts: BTreeMap<&str, f64> = BTreeMap::new();
        for sample in samples {
            if let Some(family) = sample.name.strip_suffix("_bucket") {
                let le = sample
                    .labels
                    .get("le")
                    .ok_or(format!("{} without le", sample.name))?;
                let le = match le.as_str() {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().map_err(|_| format!("bad le {le:?}"))?,
                };
                if let Some((bound, count)) = last.get(family) {
                    if le <= *bound || sample.value < *count {
                        return Err(format!("{family}'s buckets are not cumulative"));
                    }
                }
                last.insert(family, (le, sample.value));
            } else if let Some(family) = sample.name.strip_suffix("_count") {
                counts.insert(family, sample.value);
            }
        }
        for (family, (bound, count)) in &last {
            if !bound.is_infinite() || counts.get(family) != Some(count) {
                return Err(format!("{family}'s buckets do not end at +Inf = _count"));
            }
        }
        Ok(())
    }
}

#[test]
fn the_openmetrics_reader_refuses_what_a_scraper_would() {
    let good = "# TYPE a counter\na_total{m=\"x\\\"y\"} 1\n# EOF\n";
    let scrape = openmetrics::parse(good).expect("valid");
    assert_eq!(scrape.value("a_total", &[("m", "x\"y")]), Some(1.0));
    for bad in [
        "# TYPE a counter\na_total 1\n",
        "# TYPE a counter\na 1\n# EOF\n",
        "# TYPE a counter\nb_total 1\n# EOF\n",
        "# TYPE a gauge\na one\n# EOF\n",
        "# TYPE a gauge\na{m=x} 1\n# EOF\n",
        "# TYPE a gauge\na 1\n# HELP a late\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n# EOF\n",
    ] {
        assert!(openmetrics::parse(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn mirror_names_with_quotes_and_backslashes_stay_one_label() {
    let server = start(fleet()).await;
    let name = r#"odd"name\x",mirror="api"#;
    server.metrics.sync_started(name);
    server
        .metrics
        .sync_finished(&run(name, Vec::new(), None), Duration::from_secs(1));
    server.metrics.retried(name);
    let text = server.get("/metrics").await.text().await.expect("a body");
    let scrape = openmetrics::parse(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    let labels = [("mirror", name), ("result", "ok")];
    assert_eq!(scrape.value("kalandra_syncs_total", &labels), Some(1.0));
    assert_eq!(
        scrape.value("kalandra_retries_total", &[("mirror", name)]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("kalandra_mirror_up", &[("mirror", "api")]),
        None
    );
    server.metrics.forget(name);
    let text = server.metrics.encode();
    assert!(!text.contains("odd"), "{text}");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_progress_finish() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let control = Arc::new(fleet());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(http::serve(
        listener,
        control.clone(),
        Arc::new(Metrics::new()),
        async move {
            let _ = stopped.await;
        },
    ));
    // A body that arrives in two halves, the second after the shutdown.
    let (halves, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let half = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(half), receiver))
    });
    halves.send(BODY[..10].to_vec()).await.expect("sent");
    let request = tokio::spawn(
        client()
            .post(format!("{base}/hooks/api"))
            .header("X-Gitlab-Token", SECRET)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(()).expect("the server listens for the signal");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!served.is_finished(), "a request is still in progress");
    halves.send(BODY[10..].to_vec()).await.expect("sent");
    drop(halves);
    let answered = request.await.expect("no panic").expect("answered");
    assert_eq!(answered.status(), StatusCode::ACCEPTED);
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("stops once its connections are done")
        .expect("no panic")
        .expect("no I/O error");
    assert_eq!(control.triggered(), ["api"]);
}

thread_local! {
    /// The watch service's log lines written on this thread.
    static LOGS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes into this thread's [`LOGS`].
struct ThreadLogs;

impl Write for ThreadLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.with(|logs| logs.borrow_mut().extend_from_slice(bytes));
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends `kalandra::watch`'s info lines to the thread that wrote them, for
/// the whole test binary. A scoped subscriber (`set_default`) is not
/// enough: tests on other threads, with no subscriber, race it for each
/// callsite's cached interest and can turn its logging off.
fn capture_watch_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("kalandra::watch=info"))
            .with_writer(|| ThreadLogs)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
    });
    LOGS.with(|logs| logs.borrow_mut().clear());
}

#[tokio::test]
async fn hook_outcomes_are_logged_without_secrets_and_with_names_escaped() {
    // The test's runtime has one thread, which runs the server's tasks too.
    capture_watch_logs();
    let server = start(fleet()).await;
    let signature = openssl_signature(SECRET, BODY);
    let status = server.post_signed("/hooks/api", SECRET, BODY).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let status = server
        .post(
            "/hooks/api",
            &[("X-Gitlab-Token", "guessed-token")],
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let status = server.post("/hooks/evil%1B%5B2J", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let logs = LOGS.with(|logs| String::from_utf8(logs.borrow().clone()).expect("UTF-8"));
    assert!(logs.contains("mirror=api result=\"triggered\""), "{logs}");
    assert!(
        logs.contains("mirror=api result=\"refused: bad signature or token\""),
        "{logs}"
    );
    assert!(logs.contains("mirror=evil\\e[2J"), "{logs}");
    for secret in [SECRET, "guessed-token", &signature[7..], "\x1b"] {
        assert!(!logs.contains(secret), "{secret:?} in {logs}");
    }
}
