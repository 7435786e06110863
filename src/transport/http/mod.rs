//! `http://` and `https://`: git's smart HTTP protocol over reqwest.
//!
//! Smart HTTP is stateless RPC: a `GET info/refs?service=...` returns the
//! advertisement, and every request after it is a POST whose response is the
//! server's answer. The sessions do not know: [`stateless`] turns each
//! flushed request into a POST for upload-pack, and [`streaming`] turns the
//! whole receive-pack conversation into one POST whose body is streamed as
//! the pack arrives. Credentials, retries, TLS and proxies live here, the
//! protocol stays in the sessions.

mod config;
mod cookies;
mod credential;
mod netrc;
mod retry;
mod smart;
mod stateless;
mod streaming;
mod tls;
mod urlmatch;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE, COOKIE, RETRY_AFTER,
};
use reqwest::{Client, RequestBuilder, Response};
use url::Url;

use self::credential::{Credentials, Source};
use super::{ConnectOptions, Connection, LowSpeed, Service};

/// Talking to an HTTP server failed. Messages name the URL without its
/// credentials and never hold a secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("invalid git configuration")]
    Config(#[from] config::Error),
    /// The value is never shown: it is usually a token.
    #[error("http.extraHeader {name:?} is not a valid HTTP header (expected \"Name: value\" in printable ASCII)")]
    ExtraHeader { name: String },
    #[error("cannot use the proxy {proxy:?} (http.proxy)")]
    Proxy {
        proxy: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {url} failed")]
    Request {
        method: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} did not answer within {seconds} s (idle timeout)")]
    Stalled { url: String, seconds: u64 },
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("{host} asks for credentials (HTTP 401) and none were found: give them in the URL, in ${token}, in the netrc file or through a git credential helper")]
    AuthRequired { host: String, token: &'static str },
    #[error("authentication to {host} failed: it refused the credentials from {from} (HTTP 401)")]
    AuthRejected { host: String, from: Source },
    #[error("{from} redirected to {to}, which asks for credentials (HTTP 401); credentials are never sent to another host, so none were tried there: use {to}'s URL directly")]
    AuthAfterRedirect { from: String, to: String },
    #[error("unexpected answer from {url}")]
    Smart {
        url: String,
        #[source]
        source: smart::Error,
    },
}

impl Error {
    /// Where the configured token came from ([`crate::transport::Token::source`])
    /// when the server refused it with a 401; `None` for any other error.
    pub(crate) fn refused_token_source(&self) -> Option<&str> {
        match self {
            Self::AuthRejected {
                from: credential::Source::Configured(source),
                ..
            } => Some(source),
            _ => None,
        }
    }

    /// See [`super::Error::caused_by_git_settings`].
    pub(super) fn caused_by_git_settings(&self) -> bool {
        match self {
            Self::Config(_) | Self::ExtraHeader { .. } => true,
            Self::Tls(error) => error.is_client_cert(),
            _ => false,
        }
    }
}

/// Connects to `service` at an http(s) URL: fetches and checks the ref
/// advertisement, settles authentication, and returns a connection whose
/// reader starts with the advertisement as a direct connection shows it,
/// and git's low-speed limit for the URL (`http.lowSpeedLimit`), if on.
pub(super) async fn connect(
    url: &Url,
    service: Service,
    options: &ConnectOptions,
) -> Result<(Connection, Option<LowSpeed>), Error> {
    let v2 = options.protocol_v2 && service == Service::UploadPack;
    let (mut remote, low_speed) = Remote::new(url, service, options).await?;
    let advertisement = remote.advertisement(v2).await?;
    let remote = Arc::new(remote);
    let connection = match service {
        Service::UploadPack => stateless::connection(remote, advertisement, v2),
        // Credentials for the push are settled when it starts (see
        // `stream_post`).
        Service::ReceivePack => streaming::connection(remote, advertisement),
    };
    Ok((connection, low_speed))
}

/// A client for a forge's REST API at `url` (GitHub App tokens): the TLS
/// and proxy settings git would use for that URL (`http.<url>.sslCAInfo`,
/// `sslVerify`, `sslCert`, `proxy`), but not git's extra headers or
/// cookies, which are meant for git's requests.
pub(crate) async fn api_client(url: &Url, connect_timeout: Duration) -> Result<Client, Error> {
    let config = config::HttpConfig::load(url).await?;
    client_builder(&config, connect_timeout, false)?
        .timeout(API_TIMEOUT)
        .build()
        .map_err(Error::Client)
}

/// A client for a repository's LFS endpoint at `url`: git's TLS, proxy and
/// `http.version` settings for it, as git-lfs takes them, with no overall
/// timeout (an object may take long). Not git's extra headers: the
/// client also follows the batch API's hrefs, often to other hosts.
pub(crate) async fn lfs_client(url: &Url, connect_timeout: Duration) -> Result<Client, Error> {
    let config = config::HttpConfig::load(url).await?;
    client_builder(&config, connect_timeout, config.http2())?
        .build()
        .map_err(Error::Client)
}

/// The username and password a request to `url` for `service`'s side
/// sends first: the URL's, the side's token, or its token variable.
pub(crate) fn first_credentials(
    url: &Url,
    service: Service,
    configured: Option<&crate::transport::Token>,
) -> Option<(String, String)> {
    credential::explicit(url, service, configured).map(|c| (c.username, c.password))
}

/// The username and password after a 401: netrc, else git's credential
/// helpers.
pub(crate) async fn credentials_after_401(url: &Url) -> Option<(String, String)> {
    credential::lookup(url)
        .await
        .map(|c| (c.username, c.password))
}

/// What every client gets from git's settings for its URL: TLS (CA file,
/// verification, client certificate, HTTP/2 when `http2`), the proxy, the
/// user agent, the connect timeout, and git's redirect limit.
fn client_builder(
    config: &config::HttpConfig,
    connect_timeout: Duration,
    http2: bool,
) -> Result<reqwest::ClientBuilder, Error> {
    let tls = tls::client_config(
        config.ca_info.as_deref(),
        config.no_verify,
        config.client_cert().as_ref(),
        http2,
    )?;
    let mut builder = Client::builder()
        .user_agent(concat!("kalandra/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .tls_backend_preconfigured(tls)
        // git follows redirects of the first request (http.followRedirects=initial).
        .redirect(reqwest::redirect::Policy::limited(10));
    if !http2 {
        builder = builder.http1_only();
    }
    if let Some(proxy) = &config.proxy {
        let proxy = reqwest::Proxy::all(proxy.as_str())
            .map_err(|source| Error::Proxy {
                proxy: proxy.clone(),
                source,
            })?
            .no_proxy(reqwest::NoProxy::from_env());
        builder = builder.proxy(proxy);
    }
    Ok(builder)
}

/// A whole API call's limit: its answers are small JSON documents.
const API_TIMEOUT: Duration = Duration::from_secs(60);

/// One repository on one server, shared by a connection's reader and
/// writer.
struct Remote {
    client: Client,
    service: Service,
    /// The repository URL without credentials; after a redirect of
    /// `info/refs`, the URL it was redirected to.
    base: Url,
    /// The URL as given, with its username (for credential lookups).
    given: Url,
    credentials: Mutex<Auth>,
    /// `http.cookieFile`'s cookies.
    cookies: Vec<cookies::Cookie>,
    retry: retry::Policy,
    idle: Duration,
}

#[derive(Default)]
struct Auth {
    current: Option<Credentials>,
    /// Reported to git's credential helpers as working.
    approved: bool,
}

impl Remote {
    async fn new(
        url: &Url,
        service: Service,
        options: &ConnectOptions,
    ) -> Result<(Self, Option<LowSpeed>), Error> {
        let config = config::HttpConfig::load(url).await?;
        let low_speed = config.low_speed(&|name| std::env::var(name).ok())?;
        let base = without_credentials(url);
        if config.no_verify && url.scheme() == "https" {
            tracing::warn!(
                "TLS CERTIFICATE VERIFICATION IS OFF for {} (GIT_SSL_NO_VERIFY or http.sslVerify=false): \
                 anyone on the network path can read and change this transfer, credentials included",
                base
            );
        }
        let builder = client_builder(&config, options.settings.connect_timeout, config.http2())?
            .default_headers(extra_headers(&config.extra_headers)?);
        let mut given = url.clone();
        let _ = given.set_password(None);
        // curl reads a cookie file it cannot open as an empty one.
        let cookies = match &config.cookie_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => cookies::parse(&text),
                Err(e) => {
                    tracing::debug!("cannot read the cookie file {}: {e}", path.display());
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let remote = Self {
            client: builder.build().map_err(Error::Client)?,
            cookies,
            service,
            base,
            given,
            credentials: Mutex::new(Auth {
                current: credential::explicit(url, service, options.settings.token(service)),
                approved: false,
            }),
            retry: retry::Policy::from_env(),
            idle: options.settings.idle_timeout,
        };
        Ok((remote, low_speed))
    }

    fn host(&self) -> String {
        self.base.host_str().unwrap_or_default().to_owned()
    }

    /// `<base>/<path>`.
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, Auth> {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// GET `info/refs`: the advertisement, with any `# service=` preamble
    /// removed. Follows redirects, and later requests go where it ended.
    async fn advertisement(&mut self, v2: bool) -> Result<Bytes, Error> {
        let service = self.service.name();
        let mut url = self.endpoint("info/refs");
        url.set_query(Some(&format!("service={service}")));
        let response = self
            .send("GET", &url, || {
                let request = self.client.get(url.clone());
                if v2 {
                    request.header("Git-Protocol", "version=2")
                } else {
                    request
                }
            })
            .await?;
        if response.url() != &url {
            match base_after_redirect(response.url()) {
                Some(base) => {
                    tracing::info!("{} redirects to {base}", self.base);
                    self.base = base;
                }
                None => tracing::debug!("redirected to {}, keeping {}", response.url(), self.base),
            }
        }
        let smart = |source| Error::Smart {
            url: url.to_string(),
            source,
        };
        smart::check_content_type(
            response.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
            &smart::content_type(service, "advertisement"),
        )
        .map_err(smart)?;
        let body = read_body(response, &url, self.idle).await?;
        let stripped = smart::strip_service_preamble(&body, service).map_err(smart)?;
        Ok(body.slice_ref(stripped))
    }

    /// A receive-pack request holding only a flush: the server does
    /// nothing, but asks for credentials if it wants them.
    async fn probe(&self) -> Result<(), Error> {
        let url = self.endpoint(self.service.name());
        let response = self
            .send("POST", &url, || {
                self.rpc_request(&url).body(Bytes::from_static(b"0000"))
            })
            .await?;
        read_body(response, &url, self.idle).await?;
        Ok(())
    }

    /// A POST to the service, with git's headers.
    fn rpc_request(&self, url: &Url) -> RequestBuilder {
        let service = self.service.name();
        self.client
            .post(url.clone())
            .header(CONTENT_TYPE, smart::content_type(service, "request"))
            .header(ACCEPT, smart::content_type(service, "result"))
    }

    /// Checks an RPC response's content type.
    fn check_result(&self, response: &Response, url: &Url) -> Result<(), Error> {
        smart::check_content_type(
            response.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
            &smart::content_type(self.service.name(), "result"),
        )
        .map_err(|source| Error::Smart {
            url: url.to_string(),
            source,
        })
    }

    /// Sends a request built by `build`, retrying spurious failures and
    /// answering one 401 with credentials from the chain.
    async fn send(
        &self,
        method: &'static str,
        url: &Url,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, Error> {
        let mut attempt = 0;
        loop {
            let credentials = self.auth().current.clone();
            match self
                .attempt(method, url, build(), credentials.as_ref(), true)
                .await
            {
                Ok(response) => {
                    self.approve(credentials.as_ref()).await;
                    return Ok(response);
                }
                Err(Error::Status { status: 401, .. }) => {
                    if let Some(credentials) = credentials {
                        credential::report(&self.given, &credentials, false).await;
                        return Err(Error::AuthRejected {
                            host: self.host(),
                            from: credentials.source,
                        });
                    }
                    let Some(found) = credential::lookup(&self.given).await else {
                        return Err(Error::AuthRequired {
                            host: self.host(),
                            token: credential::token_variable(self.service),
                        });
                    };
                    self.auth().current = Some(found);
                }
                Err(error) => match retry::spurious(&error) {
                    Some(retry_after) if attempt < self.retry.retries => {
                        let delay = self.retry.delay(attempt, retry_after);
                        tracing::warn!(
                            "{error}; retrying in {:.1} s ({} of {})",
                            delay.as_secs_f64(),
                            attempt + 1,
                            self.retry.retries
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    _ => return Err(error),
                },
            }
        }
    }

    /// Once, tells git's helpers that their credentials worked.
    async fn approve(&self, credentials: Option<&Credentials>) {
        let Some(credentials) = credentials else {
            return;
        };
        {
            let mut auth = self.auth();
            if auth.approved {
                return;
            }
            auth.approved = true;
        }
        credential::report(&self.given, credentials, true).await;
    }

    /// One request. Any status but 2xx is an [`Error::Status`]. Until the
    /// response head arrives the idle limit applies, unless the body is
    /// streamed (the head then comes only after the whole pack).
    async fn attempt(
        &self,
        method: &'static str,
        url: &Url,
        request: RequestBuilder,
        credentials: Option<&Credentials>,
        bounded: bool,
    ) -> Result<Response, Error> {
        let mut request = match credentials {
            Some(c) => request.basic_auth(&c.username, Some(&c.password)),
            None => request,
        };
        if let Some(cookie) = cookies::header_for(&self.cookies, url, SystemTime::now()) {
            match HeaderValue::from_str(&cookie) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request = request.header(COOKIE, value);
                }
                Err(_) => tracing::warn!(
                    "skipping http.cookieFile's cookies for {url}: not valid in a header"
                ),
            }
        }
        let sent = if bounded {
            tokio::time::timeout(self.idle, request.send())
                .await
                .map_err(|_| Error::Stalled {
                    url: url.to_string(),
                    seconds: self.idle.as_secs(),
                })?
        } else {
            request.send().await
        };
        let response = sent.map_err(|source| Error::Request {
            method,
            url: url.to_string(),
            source: source.without_url(),
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // reqwest drops the Authorization header on a redirect to another
        // host, port or scheme: a 401 there says nothing about the
        // credentials.
        if status.as_u16() == 401 && !same_origin(response.url(), url) {
            return Err(Error::AuthAfterRedirect {
                from: origin(url),
                to: origin(response.url()),
            });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| retry::parse_retry_after(v.as_bytes(), SystemTime::now()));
        let mut detail = status
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        if let Some(line) = error_text(response, self.idle).await {
            detail.push_str(&format!(": {line}"));
        }
        Err(Error::Status {
            url: url.to_string(),
            status: status.as_u16(),
            detail,
            retry_after,
        })
    }
}

/// `http.extraHeader` lines as headers of every request, marked sensitive
/// so that no log or `Debug` shows them. reqwest drops `Authorization` on
/// a redirect to another host, as curl does for git.
fn extra_headers(lines: &[config::ExtraHeader]) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for line in lines {
        // Only a valid header name is quoted: anything else in the line
        // may be the secret.
        let unnamed = || Error::ExtraHeader {
            name: "(no valid header name)".into(),
        };
        let (name, value) = line.split().ok_or_else(unnamed)?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unnamed())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| Error::ExtraHeader {
            name: name.to_string(),
        })?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// The whole body, failing if it stalls for the idle limit.
async fn read_body(mut response: Response, url: &Url, idle: Duration) -> Result<Bytes, Error> {
    let mut body = BytesMut::new();
    loop {
        let chunk = tokio::time::timeout(idle, response.chunk())
            .await
            .map_err(|_| Error::Stalled {
                url: url.to_string(),
                seconds: idle.as_secs(),
            })?
            .map_err(|source| Error::Request {
                method: "GET",
                url: url.to_string(),
                source: source.without_url(),
            })?;
        match chunk {
            Some(chunk) => body.extend_from_slice(&chunk),
            None => return Ok(body.freeze()),
        }
    }
}

/// The first line of a short plain-text error body (http-backend and most
/// forges explain a 403 or 404 there).
async fn error_text(response: Response, idle: Duration) -> Option<String> {
    let plain = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain {
        return None;
    }
    let text = tokio::time::timeout(idle.min(Duration::from_secs(5)), response.text())
        .await
        .ok()?
        .ok()?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// The URL reqwest gets and errors show: no username, no password (reqwest
/// would turn them into a header of its own).
fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Whether `a` and `b` are on the same scheme, host and port: what reqwest
/// sends credentials to after a redirect.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host[:port]`, never with credentials.
fn origin(url: &Url) -> String {
    match url.port() {
        Some(port) => format!(
            "{}://{}:{port}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        ),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
    }
}

/// Where the repository is after `info/refs` was redirected: the final URL
/// less `/info/refs` and its query. Any other shape is not followed for the
/// POSTs (git refuses it too).
fn base_after_redirect(url: &Url) -> Option<Url> {
    let mut base = without_credentials(url);
    let path = base.path().strip_suffix("/info/refs")?.to_owned();
    base.set_path(&path);
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_base_drops_info_refs_and_query() {
        let url =
            Url::parse("https://u:p@new.example/team/r.git/info/refs?service=git-upload-pack")
                .expect("url");
        let base = base_after_redirect(&url).expect("a repository URL");
        assert_eq!(base.as_str(), "https://new.example/team/r.git");
        let other = Url::parse("https://new.example/login?next=x").expect("url");
        assert_eq!(base_after_redirect(&other), None);
    }

    #[test]
    fn a_bad_extra_header_is_named_never_quoted() {
        let config =
            crate::git_config::GitConfig::from_listing("http.extraheader\nBearer tok3n-no-colon\0");
        let url = Url::parse("https://h.example/r").expect("url");
        let lines = config::extra_headers(&config, &url).expect("valid config");
        let err = extra_headers(&lines).expect_err("no name");
        assert!(!err.to_string().contains("tok3n"), "{err}");
        let config = crate::git_config::GitConfig::from_listing(
            "http.extraheader\nBad name tok3n: x\0http.extraheader\nX-Ok: bad\u{7f}tok3n\0",
        );
        let lines = config::extra_headers(&config, &url).expect("valid config");
        let err = extra_headers(&lines[..1]).expect_err("bad name");
        assert!(!err.to_string().contains("tok3n"), "{err}");
        let err = extra_headers(&lines[1..]).expect_err("bad value");
        assert!(
            err.to_string().contains("\"x-ok\"") && !err.to_string().contains("tok3n"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_reach_reqwest() {
        let url = Url::parse("https://alice:s3cret@git.example/r.git").expect("url");
        let plain = without_credentials(&url);
        assert_eq!(plain.as_str(), "https://git.example/r.git");
    }
}
