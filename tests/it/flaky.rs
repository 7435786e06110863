//! Servers that fail for a while, then work: for retry tests.
//!
//! - [`FlakyHttp`]: an HTTP proxy on 127.0.0.1 in front of a real server (the harness's
//!   nginx) that answers the first N requests with an error status (503 or 429, with or
//!   without `Retry-After`), then forwards every request. It counts the requests it saw.
//! - [`LateListener`]: a port on 127.0.0.1 on which connections are refused until it is
//!   opened (now, or after a delay); from then on it forwards raw TCP to a real server (git
//!   daemon, nginx), through [`FaultProxy`].
//!
//! Both fail the test with the reason when they cannot start; neither passes silently.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use kalandra::error_kind::{classify, ErrorKind};
use kalandra::relay;

use crate::fault_proxy::{Direction, FaultProxy};
use crate::git_daemon::Daemon;
use crate::harness::{path_arg, World};
use crate::nginx::Nginx;

/// How a [`FlakyHttp`] fails.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failing {
    /// Requests answered with `status` before the proxy starts forwarding
    /// (`usize::MAX`: never).
    pub requests: usize,
    /// 503, 429, ...
    pub status: u16,
    /// Sent as `Retry-After: <seconds>` with each failure.
    pub retry_after_secs: Option<u64>,
}

impl Failing {
    /// The first `requests` requests get `503 Service Unavailable`, without `Retry-After`.
    pub(crate) fn unavailable(requests: usize) -> Self {
        Self {
            requests,
            status: 503,
            retry_after_secs: None,
        }
    }

    pub(crate) fn retry_after(self, secs: u64) -> Self {
        Self {
            retry_after_secs: Some(secs),
            ..self
        }
    }
}

/// One request the proxy saw, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// `GET /v2/r.git/info/refs?service=git-upload-pack HTTP/1.1`.
    pub request_line: String,
    /// The status the proxy answered itself, or `None` when it forwarded the request.
    pub failed_with: Option<u16>,
}

struct HttpShared {
    failing: Failing,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// The proxy; dropping it stops accepting (connections in flight run to their end).
pub(crate) struct FlakyHttp {
    port: u16,
    shared: Arc<HttpShared>,
}

impl FlakyHttp {
    /// A proxy to `127.0.0.1:<target>` that fails as `failing` says, then forwards.
    pub(crate) fn start(target: u16, failing: Failing) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port for the proxy");
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(HttpShared {
            failing,
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(client, target, &shared));
            }
        });
        Self { port, shared }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<proxy port>/<location>/<repo>`, as [`Nginx::url`].
    pub(crate) fn url(&self, location: &str, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{location}/{repo}", self.port)
    }

    /// Every request so far, in the order they arrived.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests arrived.
    pub(crate) fn requests(&self) -> usize {
        self.seen().len()
    }

    /// How many of them the proxy failed.
    pub(crate) fn failed(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.failed_with.is_some())
            .count()
    }
}

impl Drop for FlakyHttp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop` and ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The largest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

/// One connection: one request. Forwarded requests carry `Connection: close`, so the
/// server closes after its answer and the client opens a new connection for the next
/// request: each request passes the proxy's count.
fn serve(mut client: TcpStream, target: u16, shared: &HttpShared) {
    let Some((head, rest)) = read_head(&mut client) else {
        return;
    };
    let request_line = String::from_utf8_lossy(head.split(|&b| b == b'\n').next().unwrap_or(&[]))
        .trim_end()
        .to_owned();
    let failed_with = {
        let mut seen = shared.seen.lock().unwrap_or_else(|e| e.into_inner());
        let failed_with = (seen.len() < shared.failing.requests).then_some(shared.failing.status);
        seen.push(Seen {
            request_line,
            failed_with,
        });
        failed_with
    };
    match failed_with {
        Some(status) => answer_failure(client, status, shared.failing.retry_after_secs),
        None => forward(client, target, &head, &rest),
    }
}

/// The request head (through its blank line) and whatever body bytes came with it.
fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        match client.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn answer_failure(mut client: TcpStream, status: u16, retry_after: Option<u64>) {
    let reason = match status {
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Failing",
    };
    let body = format!("flaky proxy: {status} on purpose\n");
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(secs) = retry_after {
        response.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(&body);
    if client.write_all(response.as_bytes()).is_err() {
        return;
    }
    // Read what the client still sends (a request body) before closing: closing with
    // unread bytes would reset the connection, and the client might never read the answer.
    let _ = client.shutdown(Shutdown::Write);
    let _ = client.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 16 * 1024];
    while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn closing(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

fn forward(client: TcpStream, target: u16, head: &[u8], rest: &[u8]) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    if server.write_all(&closing(head)).is_err() || server.write_all(rest).is_err() {
        return;
    }
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let upload = thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let mut client_write = client;
    let _ = std::io::copy(&mut server, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = upload.join();
}

/// A port that refuses connections until [`LateListener::open`] (or the delay of
/// [`LateListener::open_after`]); then a clean TCP relay to the target.
pub(crate) struct LateListener {
    port: u16,
    target: u16,
    proxy: Arc<Mutex<Option<Result<FaultProxy, String>>>>,
}

impl LateListener {
    /// Reserves a free port and leaves it closed: connecting is refused.
    pub(crate) fn reserve(target: u16) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        Self {
            port,
            target,
            proxy: Arc::default(),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Starts accepting now. Panics if the port cannot be bound (taken meanwhile).
    pub(crate) fn open(&self) {
        open_on(self.port, self.target, &self.proxy);
        self.wait_open(Duration::ZERO);
    }

    /// Starts accepting `delay` from now, in the background (not if dropped before).
    pub(crate) fn open_after(&self, delay: Duration) {
        let (port, target) = (self.port, self.target);
        let proxy: Weak<_> = Arc::downgrade(&self.proxy);
        thread::spawn(move || {
            thread::sleep(delay);
            if let Some(proxy) = proxy.upgrade() {
                open_on(port, target, &proxy);
            }
        });
    }

    /// Waits up to `limit` for the port to be open; panics with the reason if binding it
    /// failed or it did not open in time.
    pub(crate) fn wait_open(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            match &*self.lock() {
                Some(Ok(_)) => return,
                Some(Err(reason)) => panic!("the late listener did not open: {reason}"),
                None => {}
            }
            assert!(
                started.elapsed() <= limit,
                "the late listener on port {} did not open within {limit:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connections accepted so far (0 while closed).
    pub(crate) fn accepted(&self) -> usize {
        match &*self.lock() {
            Some(Ok(proxy)) => proxy
                .transcript(Direction::ToServer)
                .connection_starts
                .len(),
            _ => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Result<FaultProxy, String>>> {
        self.proxy.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn open_on(port: u16, target: u16, slot: &Mutex<Option<Result<FaultProxy, String>>>) {
    let opened = TcpListener::bind(("127.0.0.1", port))
        .map(|listener| FaultProxy::on(listener, target, None))
        .map_err(|e| format!("cannot bind 127.0.0.1:{port}: {e}"));
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened);
}

/// `relay::sync` of two URLs with `settings`, everything else as the defaults.
pub(crate) async fn sync(
    upstream: &str,
    downstream: &str,
    settings: kalandra::transport::TransportSettings,
) -> Result<relay::SyncReport, relay::Error> {
    let parse = |url: &str| kalandra::url::RepoUrl::parse(url).expect("a valid URL");
    let options = relay::SyncOptions {
        transport: settings,
        ..Default::default()
    };
    relay::sync(
        &parse(upstream),
        &parse(downstream),
        &options,
        &kalandra::progress::Progress::hidden(),
    )
    .await
}

/// A raw `GET` of `path` on `127.0.0.1:<port>`: the status line and the whole response.
fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the proxy accepts");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("can send a request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a response until close");
    response
}

#[test]
fn flaky_http_answers_503_twice_then_forwards_and_counts() {
    let w = World::new();
    w.fixture("mirror.sh");
    let nginx = Nginx::start(&w);
    let proxy = FlakyHttp::start(nginx.port, Failing::unavailable(2).retry_after(1));
    let path = "/v2/mirror/upstream/info/refs?service=git-upload-pack";
    for _ in 0..2 {
        let response = get(proxy.port(), path);
        assert!(
            response.starts_with("HTTP/1.1 503 ") && response.contains("\r\nRetry-After: 1\r\n"),
            "{response}"
        );
    }
    let response = get(proxy.port(), path);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(
        response.contains("# service=git-upload-pack"),
        "forwarded to http-backend: {response}"
    );
    let seen = proxy.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(proxy.failed(), 2);
    assert_eq!(seen[0].request_line, format!("GET {path} HTTP/1.1"));
    assert_eq!(seen[2].failed_with, None);
}

#[tokio::test]
async fn flaky_http_two_503s_are_survived_by_the_transports_own_retries() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let nginx = Nginx::start(&w);
    let up_proxy = FlakyHttp::start(nginx.port, Failing::unavailable(2));
    // Downstream too, so that a push is seen passing the proxy.
    let down_proxy = FlakyHttp::start(nginx.port, Failing::unavailable(1).retry_after(0));
    let report = sync(
        &up_proxy.url("v2", "mirror/upstream"),
        &down_proxy.url("v2", "mirror/empty.git"),
        Default::default(),
    )
    .await
    .expect("the sync survives two 503s upstream and one downstream");
    assert_eq!(report.result.outcome(), relay::Outcome::Complete);
    w.assert_in_sync(&up, &down);
    let seen = up_proxy.seen();
    assert_eq!(up_proxy.failed(), 2, "{seen:?}");
    assert!(
        seen.len() > 3
            && seen[..3]
                .iter()
                .all(|s| s.request_line.contains("info/refs")),
        "the advertisement was asked for three times, then the fetch: {seen:?}"
    );
    let seen = down_proxy.seen();
    assert_eq!(down_proxy.failed(), 1, "{seen:?}");
    assert!(
        seen.iter()
            .filter(|s| s.failed_with.is_none())
            .any(|s| s.request_line.starts_with("POST ")
                && s.request_line.contains("git-receive-pack")),
        "the push went through the proxy: {seen:?}"
    );
}

#[tokio::test]
async fn flaky_http_that_never_recovers_is_unavailable_with_retry_after() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let nginx = Nginx::start(&w);
    let proxy = FlakyHttp::start(nginx.port, Failing::unavailable(usize::MAX).retry_after(1));
    let up_url = proxy.url("v2", "mirror/upstream");

    // Without the transport's retries: one request, and the command line's JSON says so.
    let run = w.kalandra_with_env(
        w.root(),
        &["sync", "--json", &up_url, path_arg(&down)],
        &w.global_config(),
        &[("KALANDRA_HTTP_RETRIES", "0".into())],
    );
    run.assert_code(4);
    let report = run.failure_report();
    assert_eq!(report.0["kind"], "unavailable", "{run}");
    assert_eq!(proxy.requests(), 1, "{:?}", proxy.seen());

    // With them (4 by default, each waiting the server's one second): the last answer's
    // Retry-After is what a fleet's retry honours.
    let error = sync(&up_url, path_arg(&down), Default::default())
        .await
        .expect_err("the server never recovers");
    let classified = classify(&error);
    assert_eq!(classified.kind, ErrorKind::Unavailable, "{error:?}");
    assert_eq!(classified.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(proxy.requests(), 1 + 5, "{:?}", proxy.seen());
    assert!(w.refs(&down).is_empty());
}

#[tokio::test]
async fn late_listener_refuses_then_accepts() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let daemon = Daemon::start(w.root());
    let late = LateListener::reserve(daemon.port());
    let url = format!("git://127.0.0.1:{}/mirror/upstream", late.port());

    let error = sync(&url, path_arg(&down), Default::default())
        .await
        .expect_err("nothing listens yet");
    assert_eq!(classify(&error).kind, ErrorKind::Connection, "{error:?}");
    assert_eq!(late.accepted(), 0);

    late.open();
    sync(&url, path_arg(&down), Default::default())
        .await
        .expect("the port accepts now");
    w.assert_in_sync(&up, &down);
    assert!(late.accepted() >= 1);
}

#[tokio::test]
async fn late_listener_opens_by_itself_and_a_transient_retry_gets_through() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let nginx = Nginx::start(&w);
    let late = LateListener::reserve(nginx.port);
    late.open_after(Duration::from_millis(300));
    let url = format!("http://127.0.0.1:{}/v2/mirror/upstream", late.port());

    // The retry loop a fleet runs: retry what is transient, a few times, with a pause.
    let mut refused = 0;
    let report = loop {
        match sync(&url, path_arg(&down), Default::default()).await {
            Ok(report) => break report,
            Err(error) => {
                let classified = classify(&error);
                assert_eq!(classified.kind, ErrorKind::Connection, "{error:?}");
                assert!(classified.kind.is_transient());
                refused += 1;
                assert!(refused < 50, "still refused after {refused} tries");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(refused >= 1, "the first try came before the port opened");
    assert_eq!(report.result.outcome(), relay::Outcome::Complete);
    w.assert_in_sync(&up, &down);
    late.wait_open(Duration::ZERO);
    assert!(late.accepted() >= 1);
}
