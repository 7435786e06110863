//! GitHub App authentication: installation access tokens for git over
//! http(s).
//!
//! For a repository `OWNER/REPO` on an app's git host, the app signs a JWT
//! ([`super::jwt`]), finds its installation on the owner
//! (`GET /repos/{owner}/{repo}/installation`) and creates an installation
//! token (`POST /app/installations/{id}/access_tokens`). git then sends
//! the token as the http password, user `x-access-token`.
//!
//! [`AppTokens`] keeps the owner's installation id and the token, one of
//! each per installation for the whole process ([`super::token_cache`]):
//! a fleet of 500 mirrors of one organisation makes one token request an
//! hour. The token is not scoped to one repository, so that every mirror
//! of the installation can share it; it has the permissions the
//! installation grants the app.

use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use url::Url;

use super::jwt::{self, AppKey, Issuer};
use super::owners::{self, OwnerPattern};
use super::token_cache::{Clock, InstallationToken, Slots, SystemClock};
use crate::config::{resolve_secret, SecretError, SecretRef};
use crate::terminal::escape;
use crate::transport::{HttpError, Token};

/// The API of github.com; GitHub Enterprise Server's is `https://HOST/api/v3`.
pub const PUBLIC_API: &str = "https://api.github.com";

/// The longest wait for a rate limit's reset before giving up on the try
/// (the fleet retries it later, as a transient failure). A minute keeps a
/// fleet's slot from being held for long; GitHub's limits reset hourly.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The API version this code was written against
/// (<https://docs.github.com/en/rest/about-the-rest-api/api-versions>).
pub(crate) const API_VERSION: &str = "2022-11-28";

/// One `[[github_app]]` of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub issuer: Issuer,
    /// The private key (PEM), named, never held.
    pub key: SecretRef,
    /// The repositories it serves.
    pub owners: Vec<OwnerPattern>,
    /// Without a trailing slash.
    pub api_url: Url,
    /// `host[:port]` of the git URLs it serves, and the path its
    /// repositories live under if not the root (`127.0.0.1:8080/github`).
    pub git_host: String,
}

impl App {
    /// The owner and repository of `url` when this app serves it: an
    /// http(s) URL on its git host, under one of its owners.
    pub fn serves(&self, url: &Url) -> Option<(String, String)> {
        let (host, prefix) = match self.git_host.split_once('/') {
            Some((host, path)) => (host, format!("/{path}")),
            None => (self.git_host.as_str(), String::new()),
        };
        if owners::authority(url)? != host {
            return None;
        }
        let (owner, repo) = owners::repository(url, &prefix)?;
        self.owners
            .iter()
            .any(|p| p.matches(&owner, &repo))
            .then_some((owner, repo))
    }

    /// `GitHub App 12345`, as messages name it.
    fn name(&self) -> String {
        format!("GitHub App {}", self.issuer)
    }
}

/// Getting an installation token failed. No variant holds a token, a JWT
/// or key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GitHub App {app}: cannot read its private key")]
    KeySecret {
        app: Issuer,
        #[source]
        source: SecretError,
    },
    #[error("GitHub App {app}")]
    Key {
        app: Issuer,
        #[source]
        source: jwt::Error,
    },
    #[error("cannot set up a client for {api_url}")]
    Client {
        api_url: String,
        #[source]
        source: HttpError,
    },
    #[error("{method} {url} failed")]
    Request {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the GitHub App {app} is not installed on {owner} (or its installation there does not include {owner}/{repo}): {url} answered HTTP 404; install the app on {owner}, or give its installation access to {repo}")]
    NotInstalled {
        app: Issuer,
        owner: String,
        repo: String,
        url: String,
    },
    #[error("{url} refused the JWT of GitHub App {app} (HTTP 401): the key from {key_source} is not a current key of app {app} (revoked or replaced?), or {app} is not the app's id{detail}")]
    Unauthorized {
        app: Issuer,
        key_source: String,
        url: String,
        detail: String,
    },
    #[error("{url} refused GitHub App {app} (HTTP 403){detail}")]
    Forbidden {
        app: Issuer,
        url: String,
        detail: String,
    },
    #[error("{url}: GitHub's rate limit for App {app} is used up until {reset}, {} s from now (over the {} s Kalandra waits)", retry_after.as_secs(), MAX_RATE_LIMIT_WAIT.as_secs())]
    RateLimited {
        app: Issuer,
        url: String,
        reset: String,
        retry_after: Duration,
    },
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("{url} answered with JSON Kalandra cannot read: {reason}")]
    Response { url: String, reason: String },
}

/// A rate limit in an answer: how long until it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub wait: Duration,
}

/// Whether an answer is GitHub's rate limit
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
/// a 403 or 429 with `x-ratelimit-remaining: 0` waits until
/// `x-ratelimit-reset` (epoch seconds); one with `retry-after` (a
/// secondary limit) waits that long. Pure, for tests.
pub fn rate_limit(status: u16, headers: &HeaderMap, now: SystemTime) -> Option<RateLimit> {
    if !matches!(status, 403 | 429) {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(seconds) = header(RETRY_AFTER.as_str()).and_then(|v| v.parse::<u64>().ok()) {
        return Some(RateLimit {
            wait: Duration::from_secs(seconds),
        });
    }
    if header("x-ratelimit-remaining") != Some("0") {
        return None;
    }
    let reset = header("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let wait = match reset {
        Some(reset) => reset.duration_since(now).unwrap_or(Duration::ZERO),
        // No reset given: GitHub's primary limits reset within the hour.
        None => Duration::from_secs(3600),
    };
    Some(RateLimit { wait })
}

/// What to do about a ref GitHub refused because the push changes
/// `.github/workflows/`, which a GitHub App may only do with the Workflows
/// permission (and a personal or OAuth token only with the `workflow`
/// scope): `Some` when `reason`, a `ng` line's reason, is that refusal.
/// GitHub says "refusing to allow a GitHub App to create or update
/// workflow `.github/workflows/ci.yml` without `workflows` permission".
pub fn workflow_refusal_hint(reason: &str) -> Option<&'static str> {
    let refused = reason.contains("to create or update workflow")
        && (reason.contains("without `workflows` permission")
            || reason.contains("without `workflow` scope"));
    refused.then_some(
        "GitHub lets a GitHub App push changes under .github/workflows/ only with the \
         Workflows (read and write) permission, and a personal or OAuth token only with the \
         `workflow` scope: grant it, or exclude the refs that change workflows",
    )
}

/// GitHub's error body, `{"message": "...", ...}`, as a suffix for a
/// message: escaped and cut, since it is the server's text.
pub(crate) fn detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) if !m.message.is_empty() => {
            let text: String = m.message.chars().take(200).collect();
            format!(" (GitHub says: {})", escape(&text))
        }
        _ => String::new(),
    }
}

/// `expires_at` as GitHub writes it (`2016-07-11T22:14:10Z`).
fn parse_expiry(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text)
        .or_else(|_| humantime::parse_rfc3339_weak(text))
        .ok()
}

/// The installation tokens of the process: share one between every mirror
/// (fleet runs, `watch`).
pub struct AppTokens {
    clock: Box<dyn Clock>,
    /// (API, app, owner in lower case) → installation id.
    installations: Slots<(String, Issuer, String), u64>,
    /// (API, app, installation id) → token.
    tokens: Slots<(String, Issuer, u64), InstallationToken>,
    /// (API, app) → when its rate limit resets, while it is used up: the
    /// mirrors that come after the first to hit it fail at once instead of
    /// each spending a request on being refused.
    limited: RateLimits,
}

type RateLimits = std::sync::Mutex<std::collections::HashMap<(String, Issuer), SystemTime>>;

impl Default for AppTokens {
    fn default() -> Self {
        Self::with_clock(Box::new(SystemClock))
    }
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppTokens(..)")
    }
}

impl AppTokens {
    pub fn with_clock(clock: Box<dyn Clock>) -> Self {
        Self {
            clock,
            installations: Slots::default(),
            tokens: Slots::default(),
            limited: RateLimits::default(),
        }
    }

    /// The http password for `owner/repo` through `app` (an empty `repo`:
    /// for the organisation `owner` itself): a cached
    /// installation token while it is fresh, else a new one (one request
    /// per installation however many mirrors ask at once).
    pub async fn token(
        &self,
        app: &App,
        owner: &str,
        repo: &str,
        connect_timeout: Duration,
    ) -> Result<Token, Error> {
        self.token_via(app, owner, repo, connect_timeout, Lookup::Repository)
            .await
    }

    /// The same, with the installation found on the organisation `owner`
    /// (`GET /orgs/{org}/installation`): for a repository that does not
    /// exist yet (`create_missing`), which GitHub's repository lookup
    /// answers 404.
    pub async fn org_token(
        &self,
        app: &App,
        owner: &str,
        repo: &str,
        connect_timeout: Duration,
    ) -> Result<Token, Error> {
        self.token_via(app, owner, repo, connect_timeout, Lookup::Organisation)
            .await
    }

    /// Drops `secret` from the cache when it is still the cached token of
    /// an installation: a server refused it (HTTP 401) before it expired,
    /// say because it was revoked (`DELETE /installation/token`) or its
    /// installation was suspended. The next caller gets a new token. A
    /// token another mirror already fetched in its place is kept.
    pub async fn forget_refused(&self, secret: &str) {
        if self.tokens.forget_where(|t| t.secret == secret).await > 0 {
            // Never the token itself.
            tracing::info!(
                "an installation token was refused (HTTP 401); the next sync asks for a new one"
            );
        }
    }

    async fn token_via(
        &self,
        app: &App,
        owner: &str,
        repo: &str,
        connect_timeout: Duration,
        lookup: Lookup,
    ) -> Result<Token, Error> {
        let api = app.api_url.as_str().to_owned();
        let owner_key = (api.clone(), app.issuer.clone(), owner.to_ascii_lowercase());
        let call = Call {
            app,
            clock: &*self.clock,
            connect_timeout,
            limited: &self.limited,
        };
        let installation = self
            .installations
            .get(
                &owner_key,
                |_| true,
                || call.installation(owner, repo, lookup),
            )
            .await?;
        let token_key = (api, app.issuer.clone(), installation);
        let now = || self.clock.now();
        let token = self
            .tokens
            .get(
                &token_key,
                |t: &InstallationToken| now() < t.refresh_at,
                || call.access_token(installation, owner, repo),
            )
            .await;
        let token = match token {
            Ok(token) => token,
            Err(error) => {
                if matches!(error, Error::NotInstalled { .. }) {
                    // Uninstalled since it was looked up: look again next time.
                    self.installations.forget(&owner_key).await;
                }
                return Err(error);
            }
        };
        Ok(Token {
            secret: token.secret,
            source: format!("{}'s installation token for {owner}", app.name()),
        })
    }
}

/// How an owner's installation is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// `GET /repos/{owner}/{repo}/installation`: the repository must exist
    /// and be covered.
    Repository,
    /// `GET /orgs/{org}/installation`.
    Organisation,
}

/// The API calls for one token request.
struct Call<'a> {
    app: &'a App,
    clock: &'a dyn Clock,
    connect_timeout: Duration,
    limited: &'a RateLimits,
}

impl Call<'_> {
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.app.api_url.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// The JWT, signed now with the key read now (a rotated key file is
    /// picked up without a restart).
    fn jwt(&self) -> Result<(String, String), Error> {
        let app = &self.app.issuer;
        let pem = resolve_secret(&self.app.key).map_err(|source| Error::KeySecret {
            app: app.clone(),
            source,
        })?;
        let key = AppKey::from_pem(&pem.secret, &pem.source).map_err(|source| Error::Key {
            app: app.clone(),
            source,
        })?;
        let jwt = jwt::sign(app, &key, self.clock.now()).map_err(|source| Error::Key {
            app: app.clone(),
            source,
        })?;
        Ok((jwt, pem.source))
    }

    async fn installation(&self, owner: &str, repo: &str, lookup: Lookup) -> Result<u64, Error> {
        #[derive(serde::Deserialize)]
        struct Installation {
            id: u64,
        }
        // No repository: an organisation's own installation (discovery).
        let lookup = if repo.is_empty() {
            Lookup::Organisation
        } else {
            lookup
        };
        let url = match lookup {
            Lookup::Repository => self.endpoint(&format!("repos/{owner}/{repo}/installation")),
            Lookup::Organisation => self.endpoint(&format!("orgs/{owner}/installation")),
        };
        let body = self.send(reqwest::Method::GET, &url, owner, repo).await?;
        let installation: Installation = parse(&url, &body)?;
        tracing::debug!(
            "{} is installed on {owner} (installation {})",
            self.app.name(),
            installation.id
        );
        Ok(installation.id)
    }

    async fn access_token(
        &self,
        installation: u64,
        owner: &str,
        repo: &str,
    ) -> Result<InstallationToken, Error> {
        #[derive(serde::Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: String,
        }
        let url = self.endpoint(&format!("app/installations/{installation}/access_tokens"));
        let body = self.send(reqwest::Method::POST, &url, owner, repo).await?;
        let answer: AccessToken = parse(&url, &body)?;
        let expires_at = parse_expiry(&answer.expires_at).ok_or_else(|| Error::Response {
            url: url.to_string(),
            reason: format!(
                "expires_at {:?} is not a date",
                escape(&answer.expires_at.chars().take(40).collect::<String>())
            ),
        })?;
        if answer.token.is_empty() {
            return Err(Error::Response {
                url: url.to_string(),
                reason: "the token is empty".into(),
            });
        }
        // Never the token itself.
        tracing::info!(
            "new installation token for {} on {owner} (installation {installation}), expires {}",
            self.app.name(),
            answer.expires_at
        );
        Ok(InstallationToken::new(
            answer.token,
            expires_at,
            self.clock.now(),
        ))
    }

    /// One API request as the app, waiting out a rate limit that resets
    /// within [`MAX_RATE_LIMIT_WAIT`] once.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        owner: &str,
        repo: &str,
    ) -> Result<Bytes, Error> {
        let app = &self.app.issuer;
        let client = crate::transport::api_client(url, self.connect_timeout)
            .await
            .map_err(|source| Error::Client {
                api_url: self.app.api_url.to_string(),
                source,
            })?;
        let method_name: &'static str = if method == reqwest::Method::POST {
            "POST"
        } else {
            "GET"
        };
        let limit_key = (self.app.api_url.to_string(), app.clone());
        let mut waited = false;
        loop {
            let reset = self
                .limited
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&limit_key)
                .copied();
            let now = self.clock.now();
            if let Some(wait) = reset.and_then(|reset| reset.duration_since(now).ok()) {
                if wait > MAX_RATE_LIMIT_WAIT {
                    return Err(Error::RateLimited {
                        app: app.clone(),
                        url: url.to_string(),
                        reset: humantime::format_rfc3339_seconds(now + wait).to_string(),
                        retry_after: wait,
                    });
                }
            }
            let (jwt, key_source) = self.jwt()?;
            let response = client
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, format!("Bearer {jwt}"))
                .header(ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION)
                .send()
                .await
                .map_err(|source| Error::Request {
                    method: method_name,
                    url: url.to_string(),
                    source,
                })?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.map_err(|source| Error::Request {
                method: method_name,
                url: url.to_string(),
                source,
            })?;
            if status.is_success() {
                return Ok(body);
            }
            let url = url.to_string();
            if let Some(limit) = rate_limit(status.as_u16(), &headers, self.clock.now()) {
                if !waited && limit.wait <= MAX_RATE_LIMIT_WAIT {
                    tracing::info!(
                        "{url}: GitHub's rate limit for {} resets in {} s; waiting",
                        self.app.name(),
                        limit.wait.as_secs()
                    );
                    // A second past the reset: GitHub's clock may lag ours.
                    tokio::time::sleep(limit.wait + Duration::from_secs(1)).await;
                    waited = true;
                    continue;
                }
                let reset_at = self.clock.now() + limit.wait;
                self.limited
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(limit_key, reset_at);
                let reset = humantime::format_rfc3339_seconds(reset_at);
                return Err(Error::RateLimited {
                    app: app.clone(),
                    url,
                    reset: reset.to_string(),
                    retry_after: limit.wait,
                });
            }
            let detail = detail(&body);
            return Err(match status {
                StatusCode::NOT_FOUND => Error::NotInstalled {
                    app: app.clone(),
                    owner: owner.to_owned(),
                    repo: repo.to_owned(),
                    url,
                },
                StatusCode::UNAUTHORIZED => Error::Unauthorized {
                    app: app.clone(),
                    key_source,
                    url,
                    detail,
                },
                StatusCode::FORBIDDEN => Error::Forbidden {
                    app: app.clone(),
                    url,
                    detail,
                },
                _ => Error::Status {
                    url,
                    status: status.as_u16(),
                    detail,
                    retry_after: headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs),
                },
            });
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| Error::Response {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn github_rate_limit_waits_until_reset_or_retry_after() {
        let used_up = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1030"),
        ]);
        assert_eq!(
            rate_limit(403, &used_up, at(1000)),
            Some(RateLimit {
                wait: Duration::from_secs(30)
            })
        );
        assert_eq!(
            rate_limit(429, &used_up, at(2000)),
            Some(RateLimit {
                wait: Duration::ZERO
            })
        );
        let secondary = headers(&[("retry-after", "7")]);
        assert_eq!(
            rate_limit(403, &secondary, at(0)).map(|l| l.wait),
            Some(Duration::from_secs(7))
        );
        // A 403 with requests left is a refusal, not a limit.
        let left = headers(&[("x-ratelimit-remaining", "12")]);
        assert_eq!(rate_limit(403, &left, at(0)), None);
        assert_eq!(rate_limit(500, &used_up, at(0)), None);
    }

    #[test]
    fn github_error_detail_is_escaped_and_short() {
        assert_eq!(
            detail(br#"{"message":"Bad credentials\u001b[31m","documentation_url":"x"}"#),
            " (GitHub says: Bad credentials\\e[31m)"
        );
        assert_eq!(detail(b"<html>"), "");
        assert!(detail(format!(r#"{{"message":"{}"}}"#, "a".repeat(500)).as_bytes()).len() < 240);
    }

    #[test]
    fn github_workflow_refusals_are_recognised() {
        for reason in [
            "refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` without `workflows` permission",
            "refusing to allow a Personal Access Token to create or update workflow `.github/workflows/x.yml` without `workflow` scope",
        ] {
            assert!(workflow_refusal_hint(reason).is_some(), "{reason}");
        }
        assert_eq!(workflow_refusal_hint("pre-receive hook declined"), None);
        assert_eq!(
            workflow_refusal_hint("protected branch hook declined"),
            None
        );
    }

    #[test]
    fn github_expires_at_is_read() {
        assert_eq!(
            parse_expiry("1970-01-01T00:01:40Z"),
            Some(UNIX_EPOCH + Duration::from_secs(100))
        );
        assert_eq!(parse_expiry("tomorrow"), None);
    }

    #[test]
    fn github_app_serves_its_host_and_owners_only() {
        let app = App {
            issuer: Issuer::AppId(1),
            key: SecretRef::Env("K".into()),
            owners: vec![
                OwnerPattern::parse("acme").expect("pattern"),
                OwnerPattern::parse("other/one").expect("pattern"),
            ],
            api_url: Url::parse(PUBLIC_API).expect("url"),
            git_host: "github.com".into(),
        };
        let serves = |u: &str| app.serves(&Url::parse(u).expect("url"));
        assert_eq!(
            serves("https://github.com/acme/api.git"),
            Some(("acme".into(), "api".into()))
        );
        assert!(serves("https://github.com/other/one").is_some());
        assert!(serves("https://github.com/other/two").is_none());
        assert!(serves("https://gitlab.com/acme/api").is_none());
        assert!(serves("https://github.com:8443/acme/api").is_none());
    }
}
