//! The watch service's HTTP listener: webhooks, metrics, health and status.
//!
//! Routes (docs/watch.md, "HTTP API", says the same for operators):
//!
//! - `POST /hooks/{name}`: a webhook for one mirror, authenticated by
//!   GitHub's body signature or GitLab's token ([`signature`](super::signature)).
//! - `POST /hooks`: a GitHub or GitLab push event; every mirror of the pushed
//!   repository whose own secret authenticates the request is triggered.
//! - `GET /metrics`, `GET /healthz`, `GET /readyz`, `GET /status`.
//!
//! The listener decides nothing about mirrors: it asks a [`Control`].
//! Secrets and signatures are never logged nor echoed; names are logged
//! through [`escape`](crate::terminal::escape), since anyone can send them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use super::metrics::{self, Metrics};
use super::push_event::{self, Event};
use super::signature::Credential;
use super::{Control, Triggered};
use crate::terminal::escape;

/// The largest body `POST /hooks/{name}` reads. Only its signature matters
/// for a named hook, and GitHub signs the whole body, so the body must be
/// read whole; a sender with bigger payloads (GitHub's pushes can reach
/// 25 MB) should use a hook with a smaller event or `POST /hooks`.
pub const NAMED_HOOK_BODY_LIMIT: usize = 64 * 1024;

/// The largest body `POST /hooks` reads: push events are parsed, and one
/// with many commits is larger than a named hook needs. GitHub's push
/// payloads list at most 20 commits, which fits in 1 MiB unless commit
/// messages are huge; a bigger one is refused (413) and the interval sync
/// catches up.
pub const PUSH_EVENT_BODY_LIMIT: usize = 1024 * 1024;

/// How long a body may take to arrive, so a slow sender cannot hold a
/// connection and its buffer open.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Listener {
    control: Arc<dyn Control>,
    metrics: Arc<Metrics>,
}

/// The listener's routes, for [`serve`] or a caller with its own server.
pub fn router(control: Arc<dyn Control>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/hooks/{name}", post(named_hook))
        .route("/hooks", post(push_hook))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/status", get(status))
        .with_state(Listener { control, metrics })
}

/// At most this many connections are served at once; more wait in the
/// kernel's accept queue. It bounds the file descriptors and memory that
/// clients can make the listener hold.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a client may take to send a request's headers. With
/// [`BODY_TIMEOUT`] for hook bodies, a slow client cannot hold one of the
/// [`MAX_CONNECTIONS`] forever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the routes on `listener` until `shutdown` completes, then stops
/// accepting, lets the requests in progress finish, and closes idle
/// connections.
///
/// Connections beyond [`MAX_CONNECTIONS`] are not accepted until one ends
/// (the bounded accept loop of tokio's mini-redis). A failed `accept`
/// (out of file descriptors, say) is logged and retried after a pause,
/// so the error is for the caller's API only.
pub async fn serve(
    listener: tokio::net::TcpListener,
    control: Arc<dyn Control>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router(control, metrics));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; trying again in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A refusal or an acceptance, with a one-line reason for the sender (a
/// forge shows it in its delivery log).
fn reply(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

async fn named_hook(
    State(listener): State<Listener>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let control = &listener.control;
    let outcome = |result: &str| tracing::info!(mirror = %escape(&name), result, "webhook");
    if !control.has_mirror(&name) {
        outcome("unknown mirror");
        return Err(reply(StatusCode::NOT_FOUND, "no mirror has this name\n"));
    }
    let Some(secret) = control.webhook_secret(&name) else {
        outcome("refused: no secret configured");
        return Err(reply(
            StatusCode::UNAUTHORIZED,
            "webhooks are not configured for this mirror: it has no webhook secret\n",
        ));
    };
    let (credential, body) = credential_and_body(&headers, body, NAMED_HOOK_BODY_LIMIT)
        .await
        .map_err(|refusal| refusal.logged(outcome))?;
    if !credential.verifies(&secret, &body) {
        outcome("refused: bad signature or token");
        return Err(reply(StatusCode::UNAUTHORIZED, "bad signature or token\n"));
    }
    match control.trigger(&name) {
        Triggered::Queued => {
            outcome("triggered");
            Ok(reply(StatusCode::ACCEPTED, "sync queued\n"))
        }
        // Removed by a reload since the name was looked up.
        Triggered::Unknown => {
            outcome("unknown mirror");
            Err(reply(StatusCode::NOT_FOUND, "no mirror has this name\n"))
        }
    }
}

/// `POST /hooks`'s answer when something was triggered.
#[derive(serde::Serialize)]
struct PushAccepted {
    triggered: Vec<String>,
}

async fn push_hook(
    State(listener): State<Listener>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Response> {
    let control = &listener.control;
    let header = |name: &str| header_bytes(&headers, name);
    let outcome = |result: &str| tracing::info!(result, "push event");
    let event = match Event::from_headers(header) {
        Some(event @ (Event::GithubPush | Event::GitlabPush)) => event,
        Some(Event::Ping) => return Ok(reply(StatusCode::OK, "pong\n")),
        Some(Event::Other) => return Ok(reply(StatusCode::OK, "ignored: not a push event\n")),
        None => {
            outcome("refused: no event header");
            return Err(reply(
                StatusCode::BAD_REQUEST,
                "expected a GitHub (X-GitHub-Event) or GitLab (X-Gitlab-Event) event\n",
            ));
        }
    };
    let (credential, body) = credential_and_body(&headers, body, PUSH_EVENT_BODY_LIMIT)
        .await
        .map_err(|refusal| refusal.logged(outcome))?;
    let urls = push_event::repository_urls(event, &body).map_err(|error| {
        outcome("refused: unreadable push event");
        (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response()
    })?;
    let candidates = control.mirrors_for_repository(&urls);
    if candidates.is_empty() {
        outcome("no mirror of this repository");
        return Err(reply(
            StatusCode::NOT_FOUND,
            "no mirror has this upstream\n",
        ));
    }
    // Each mirror is authenticated with its own secret: knowing one
    // mirror's secret must not trigger another mirror of the same upstream.
    let mut triggered = Vec::new();
    for mirror in candidates {
        let verified = control
            .webhook_secret(&mirror)
            .is_some_and(|secret| credential.verifies(&secret, &body));
        let result = match verified {
            false => "refused: bad signature or token",
            true => match control.trigger(&mirror) {
                Triggered::Queued => "triggered",
                Triggered::Unknown => "unknown mirror",
            },
        };
        tracing::info!(mirror = %escape(&mirror), result, "push event");
        if result == "triggered" {
            triggered.push(mirror);
        }
    }
    if triggered.is_empty() {
        return Err(reply(StatusCode::UNAUTHORIZED, "bad signature or token\n"));
    }
    Ok((StatusCode::ACCEPTED, Json(PushAccepted { triggered })).into_response())
}

async fn metrics_text(State(listener): State<Listener>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        listener.metrics.encode(),
    )
        .into_response()
}

async fn ready(State(listener): State<Listener>) -> Response {
    if listener.control.ready() {
        reply(StatusCode::OK, "ready\n")
    } else {
        reply(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn status(State(listener): State<Listener>) -> Json<serde_json::Value> {
    Json(listener.control.status())
}

fn header_bytes<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers.get(name).map(|value| value.as_bytes())
}

/// The request's credential, then its body: a request without a credential
/// is refused before its body is read.
async fn credential_and_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Credential, Bytes), Refusal> {
    let credential =
        Credential::from_headers(|name| header_bytes(headers, name)).ok_or(Refusal {
            status: StatusCode::UNAUTHORIZED,
            text: "missing X-Hub-Signature-256 or X-Gitlab-Token\n",
            log: "refused: no signature",
        })?;
    Ok((credential, read_body(headers, body, limit).await?))
}

/// Why a request was refused before its credential was checked.
struct Refusal {
    status: StatusCode,
    text: &'static str,
    log: &'static str,
}

impl Refusal {
    /// The answer, after logging the refusal with `outcome`.
    fn logged(self, outcome: impl Fn(&str)) -> Response {
        outcome(self.log);
        reply(self.status, self.text)
    }
}

const TOO_LARGE: Refusal = Refusal {
    status: StatusCode::PAYLOAD_TOO_LARGE,
    text: "body too large\n",
    log: "refused: body too large",
};

/// The whole body, refused as soon as it is known to pass `limit`: from
/// its `Content-Length` before reading, else while reading a chunked body.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(TOO_LARGE);
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Refusal {
                status: StatusCode::BAD_REQUEST,
                text: "the body could not be read\n",
                log: "refused: body cut short",
            })?;
            if out.len() + chunk.len() > limit {
                return Err(TOO_LARGE);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or(Err(Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            text: "the body took too long\n",
            log: "refused: body too slow",
        }))
}
