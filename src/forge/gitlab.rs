//! GitLab's REST API (v4), for `[[gitlab]]` instances: which repository
//! URLs an instance serves, and the few calls a mirror needs (read a
//! project, find a namespace, create a project, set its default branch,
//! list a group's projects).
//!
//! Every call authenticates with `PRIVATE-TOKEN`, which GitLab takes for
//! personal, project and group access tokens alike. The shapes are those of
//! GitLab's documentation (`doc/api/projects.md`, `groups.md`,
//! `namespaces.md`, `rest/_index.md` for pagination).
//!
//! Quirks worth knowing:
//! - A project or namespace is named by its full path, URL-encoded as one
//!   path segment (`platform%2Ftools%2Fcli`); a `/` left raw is a different
//!   route.
//! - GitLab answers 404, not 403, for a project the token may not see.
//! - Pagination is by page number: `x-next-page` is empty on the last page,
//!   and `Link` carries the same `rel="next"`. Past 10,000 results GitLab
//!   leaves out `x-total`, never `x-next-page`.
//! - A rate limit is 429 with `Retry-After` (seconds) and `RateLimit-Reset`
//!   (epoch seconds).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use reqwest::StatusCode;
use url::Url;

use super::github_app::MAX_RATE_LIMIT_WAIT;
use super::github_repo::Visibility;
use crate::config::SecretRef;
use crate::terminal::escape;
use crate::transport::{HttpError, Token};

/// GitLab.com, the default of `[[gitlab_source]] url`.
pub const PUBLIC_URL: &str = "https://gitlab.com";

/// Asked for each page (GitLab's maximum).
const PER_PAGE: u32 = 100;

/// A page limit, so that a server whose `next` loops cannot hold a run.
const MAX_PAGES: usize = 1000;

/// How many times one call waits out a rate limit before giving up.
const RATE_LIMIT_TRIES: u32 = 3;

/// One `[[gitlab]]` of the config file: a GitLab instance and the token
/// Kalandra uses on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Where GitLab is, with its relative root if any
    /// (`https://example.com/gitlab`), without a trailing `/`.
    pub url: Url,
    /// `{url}/api/v4` unless set.
    pub api_url: Url,
    /// The token, named, never held.
    pub token: Option<SecretRef>,
}

impl Instance {
    /// The project path (`group/sub/project`) of `url` when it is a
    /// repository on this instance: an http(s) URL on its host and port,
    /// under its relative root, with a namespace and a project.
    pub fn serves(&self, url: &Url) -> Option<String> {
        project_path(&self.url, url)
    }

    /// `GitLab at https://gitlab.example`, as messages name it.
    pub fn name(&self) -> String {
        format!("GitLab at {}", self.url)
    }
}

/// The project path of `repo` on the GitLab at `base`, or `None`. Pure.
pub fn project_path(base: &Url, repo: &Url) -> Option<String> {
    if !matches!(repo.scheme(), "http" | "https") {
        return None;
    }
    if super::owners::authority(repo)? != super::owners::authority(base)? {
        return None;
    }
    let root = base.path().trim_end_matches('/');
    let rest = repo.path().strip_prefix(root)?.strip_prefix('/')?;
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix(".git").unwrap_or(rest);
    let segments: Vec<&str> = rest.split('/').collect();
    let clean = segments.len() >= 2
        && segments
            .iter()
            .all(|s| !s.is_empty() && *s != "." && *s != ".." && *s != "-");
    (clean && repo.query().is_none()).then(|| {
        segments
            .iter()
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
            .collect::<Vec<_>>()
            .join("/")
    })
}

/// A call to GitLab's API failed. No variant holds the token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    #[error("{method} {url} answered HTTP 401: GitLab does not accept {token_source} (revoked, expired or mistyped){detail}")]
    Unauthorized {
        method: &'static str,
        url: String,
        token_source: String,
        detail: String,
    },
    #[error("{method} {url} answered HTTP 403: {token_source} may not {act}; {hint}{detail}")]
    Forbidden {
        method: &'static str,
        url: String,
        token_source: String,
        act: &'static str,
        hint: &'static str,
        detail: String,
    },
    #[error("{url}: GitLab refused to create {path}{detail}; {hint}")]
    Refused {
        url: String,
        path: String,
        detail: String,
        hint: &'static str,
    },
    #[error("{url}: {what} {path} does not exist on GitLab, or the token cannot see it{hint}")]
    Missing {
        url: String,
        what: &'static str,
        path: String,
        hint: &'static str,
    },
    #[error("{url}: GitLab's rate limit is used up for {} s more", retry_after.as_secs())]
    RateLimited { url: String, retry_after: Duration },
    #[error("{method} {url} answered HTTP {status}{detail}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url} answered with JSON Kalandra cannot read: {reason}")]
    Response { url: String, reason: String },
    #[error("{url}: more than {MAX_PAGES} pages; the server's `next` links may loop")]
    TooManyPages { url: String },
}

/// What Kalandra reads of a project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Project {
    pub id: u64,
    /// Its last path segment.
    pub path: String,
    pub path_with_namespace: String,
    /// `None` for an empty repository.
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub archived: bool,
    pub http_url_to_repo: String,
    /// Set only for a fork.
    #[serde(default)]
    pub forked_from_project: Option<serde_json::Value>,
}

impl Project {
    pub fn is_fork(&self) -> bool {
        self.forked_from_project
            .as_ref()
            .is_some_and(|f| !f.is_null())
    }
}

/// What Kalandra reads of a namespace (a group or a user).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Namespace {
    pub id: u64,
    pub full_path: String,
    #[serde(default)]
    pub kind: Option<String>,
}

/// The body of `POST /projects` for a mirror: an empty repository in
/// `namespace_id`, with none of the features a mirror does not use. Pure.
pub fn create_body(namespace_id: u64, path: &str, visibility: Visibility) -> serde_json::Value {
    serde_json::json!({
        "name": path,
        "path": path,
        "namespace_id": namespace_id,
        "visibility": visibility.as_str(),
        "initialize_with_readme": false,
    })
}

/// `RepoPath` split into its namespace and its own path. Pure.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    path.rsplit_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// A path as one URL path segment (`a/b` → `a%2Fb`), as GitLab's `:id`
/// takes it. Pure.
pub fn encode_id(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, ID).to_string()
}

/// All but RFC 3986's unreserved characters: `/` among them.
const ID: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How long a 429 asks to wait: `Retry-After` seconds, else
/// `RateLimit-Reset` (epoch seconds) from `now`. `None` for any other
/// answer. Pure.
pub fn rate_limit(status: u16, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if status != 429 {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(seconds) = header(RETRY_AFTER.as_str()) {
        return Some(Duration::from_secs(seconds));
    }
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    Some(Duration::from_secs(
        header("ratelimit-reset").map_or(60, |reset| reset.saturating_sub(now)),
    ))
}

/// The next page's URL of a listing: `Link: <...>; rel="next"`, else
/// `x-next-page` applied to `current`. `None` on the last page. Pure.
pub fn next_page(headers: &HeaderMap, current: &Url) -> Option<String> {
    if let Some(next) = headers
        .get(LINK)
        .and_then(|v| v.to_str().ok())
        .and_then(super::github_org::next_link)
    {
        return Some(next);
    }
    let page = headers
        .get("x-next-page")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty())?;
    let mut url = current.clone();
    let pairs: Vec<(String, String)> = current
        .query_pairs()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair("page", page);
    Some(url.to_string())
}

/// GitLab's error body, `{"message": ...}` (a string, or an object of
/// field errors) or `{"error": ..., "error_description": ...}`, as a
/// suffix for a message: escaped and cut, since it is the server's text.
pub fn detail(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let text = match (
        value.get("message"),
        value.get("error_description").or(value.get("error")),
    ) {
        (Some(serde_json::Value::String(m)), _) => m.clone(),
        (Some(serde_json::Value::Object(fields)), _) => fields
            .iter()
            .map(|(field, errors)| {
                let errors = match errors {
                    serde_json::Value::Array(list) => list
                        .iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                format!("{field} {errors}")
            })
            .collect::<Vec<_>>()
            .join("; "),
        (_, Some(serde_json::Value::String(e))) => e.clone(),
        _ => return String::new(),
    };
    let text: String = text.chars().take(300).collect();
    format!(" ({})", escape(&text))
}

/// Calls to one GitLab instance with one token (or none: public data
/// only).
pub struct Api<'a> {
    pub api_url: &'a Url,
    pub token: Option<&'a Token>,
    pub connect_timeout: Duration,
}

impl Api<'_> {
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.api_url.clone();
        // `path` holds `%2F`s that `set_path` must keep as they are.
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// The project at `path`, or `None` when GitLab says it does not exist
    /// (or the token cannot see it, which GitLab answers alike).
    pub async fn project(&self, path: &str) -> Result<Option<Project>, Error> {
        let url = self.endpoint(&format!("projects/{}", encode_id(path)));
        match self
            .send(reqwest::Method::GET, &url, None, "read the project")
            .await
        {
            Ok((body, _)) => parse(&url, &body).map(Some),
            Err(Error::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The namespace (group or user) at `path`, or `None`.
    pub async fn namespace(&self, path: &str) -> Result<Option<Namespace>, Error> {
        let url = self.endpoint(&format!("namespaces/{}", encode_id(path)));
        match self
            .send(reqwest::Method::GET, &url, None, "read the namespace")
            .await
        {
            Ok((body, _)) => parse(&url, &body).map(Some),
            Err(Error::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates the project `path` (`namespace/name`) in its namespace,
    /// which must exist.
    pub async fn create(&self, path: &str, visibility: Visibility) -> Result<Project, Error> {
        let url = self.endpoint("projects");
        let Some((namespace, name)) = split_path(path) else {
            return Err(Error::Refused {
                url: url.to_string(),
                path: path.to_owned(),
                detail: String::new(),
                hint: "a GitLab project lives in a namespace: NAMESPACE/PROJECT",
            });
        };
        let Some(ns) = self.namespace(namespace).await? else {
            return Err(Error::Missing {
                url: self
                    .endpoint(&format!("namespaces/{}", encode_id(namespace)))
                    .to_string(),
                what: "namespace",
                path: namespace.to_owned(),
                hint: " (create_missing creates projects in groups and users that exist)",
            });
        };
        let body = create_body(ns.id, name, visibility);
        match self
            .send(reqwest::Method::POST, &url, Some(&body), "create projects")
            .await
        {
            Ok((answer, _)) => parse(&url, &answer),
            Err(Error::Status {
                status: 400,
                detail,
                url,
                ..
            }) => Err(Error::Refused {
                hint: if detail.contains("taken") {
                    "it exists but the token cannot see it: give the token's user (or bot) access to it"
                } else {
                    "check create_visibility against the group's visibility and the instance's settings"
                },
                url,
                path: path.to_owned(),
                detail,
            }),
            Err(error) => Err(error),
        }
    }

    /// Sets the default branch of the project `id` to `branch` (a name
    /// without `refs/heads/`).
    pub async fn set_default_branch(&self, id: u64, branch: &str) -> Result<(), Error> {
        let url = self.endpoint(&format!("projects/{id}"));
        let body = serde_json::json!({ "default_branch": branch });
        self.send(
            reqwest::Method::PUT,
            &url,
            Some(&body),
            "change the project's settings",
        )
        .await
        .map(drop)
    }

    /// Every project of the group `group` (and of its subgroups with
    /// `subgroups`), archived ones only with `archived`, every page.
    /// Projects shared into the group from elsewhere are left out: they
    /// are not the group's.
    pub async fn group_projects(
        &self,
        group: &str,
        subgroups: bool,
        archived: bool,
    ) -> Result<Vec<Project>, Error> {
        let mut url = self.endpoint(&format!("groups/{}/projects", encode_id(group)));
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair(
                    "include_subgroups",
                    if subgroups { "true" } else { "false" },
                )
                .append_pair("with_shared", "false")
                // Stable under offset pagination while projects are added.
                .append_pair("order_by", "id")
                .append_pair("sort", "asc")
                .append_pair("per_page", &PER_PAGE.to_string());
            if !archived {
                query.append_pair("archived", "false");
            }
        }
        let mut projects = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::TooManyPages {
                    url: url.to_string(),
                });
            }
            let (body, headers) = match self
                .send(reqwest::Method::GET, &url, None, "list the group")
                .await
            {
                Err(Error::Status { status: 404, .. }) => {
                    return Err(Error::Missing {
                        url: url.to_string(),
                        what: "group",
                        path: group.to_owned(),
                        hint: "",
                    })
                }
                other => other?,
            };
            projects.extend(parse::<Vec<Project>>(&url, &body)?);
            // Followed as given, but only on the API's own origin: a link
            // elsewhere would carry the token there.
            next = match next_page(&headers, &url).map(|l| url.join(&l)) {
                Some(Ok(next)) if next.origin() == url.origin() => Some(next),
                Some(_) => {
                    return Err(Error::Response {
                        url: url.to_string(),
                        reason: "its next page is not a URL on the API's host".into(),
                    })
                }
                None => None,
            };
        }
        Ok(projects)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        act: &'static str,
    ) -> Result<(bytes::Bytes, HeaderMap), Error> {
        let method_name: &'static str = match method.as_str() {
            "POST" => "POST",
            "PUT" => "PUT",
            _ => "GET",
        };
        let client = crate::transport::api_client(url, self.connect_timeout)
            .await
            .map_err(|source| Error::Client {
                api_url: self.api_url.to_string(),
                source,
            })?;
        let request_failed = |source| Error::Request {
            method: method_name,
            url: url.to_string(),
            source,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let mut request = client
                .request(method.clone(), url.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(token) = self.token {
                request = request.header("PRIVATE-TOKEN", &token.secret);
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string());
            }
            let response = request.send().await.map_err(request_failed)?;
            let status = response.status();
            let headers = response.headers().clone();
            let answer = response.bytes().await.map_err(request_failed)?;
            if status.is_success() {
                return Ok((answer, headers));
            }
            if let Some(wait) = rate_limit(status.as_u16(), &headers, SystemTime::now()) {
                if wait <= MAX_RATE_LIMIT_WAIT && tries < RATE_LIMIT_TRIES {
                    tracing::info!(
                        "{url}: GitLab's rate limit; waiting {} s as it asks",
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                return Err(Error::RateLimited {
                    url: url.to_string(),
                    retry_after: wait,
                });
            }
            let token_source = self
                .token
                .map_or_else(|| "an anonymous request".to_owned(), |t| t.source.clone());
            let detail = detail(&answer);
            return Err(match status {
                StatusCode::UNAUTHORIZED => Error::Unauthorized {
                    method: method_name,
                    url: url.to_string(),
                    token_source,
                    detail,
                },
                StatusCode::FORBIDDEN => Error::Forbidden {
                    method: method_name,
                    url: url.to_string(),
                    token_source,
                    act,
                    hint: if insufficient_scope(&headers, &answer) {
                        "the token needs the `api` scope"
                    } else {
                        "the token's user (or bot) needs the Maintainer role there (Owner to create in a group that restricts it)"
                    },
                    detail,
                },
                _ => Error::Status {
                    method: method_name,
                    url: url.to_string(),
                    status: status.as_u16(),
                    detail,
                },
            });
        }
    }
}

/// Whether a 403 is GitLab's refusal of the token's scopes: OAuth's
/// `insufficient_scope`, in `WWW-Authenticate` or the body's `error`.
fn insufficient_scope(headers: &HeaderMap, body: &[u8]) -> bool {
    let in_header = headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("insufficient_scope"));
    let in_body = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .is_some_and(|e| e == "insufficient_scope");
    in_header || in_body
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

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn gitlab_project_path_is_found_under_the_instance_root() {
        let root = url("https://gitlab.example");
        let cases = [
            (
                "https://gitlab.example/platform/api.git",
                Some("platform/api"),
            ),
            (
                "https://gitlab.example/platform/tools/cli",
                Some("platform/tools/cli"),
            ),
            ("https://GITLAB.example/a/b.git/", Some("a/b")),
            ("https://gitlab.example/solo.git", None),
            ("https://gitlab.example:8443/a/b.git", None),
            ("https://other.example/a/b.git", None),
            ("https://gitlab.example/a//b.git", None),
            ("https://gitlab.example/a/../b.git", None),
            ("ssh://gitlab.example/a/b.git", None),
        ];
        for (repo, expected) in cases {
            assert_eq!(
                project_path(&root, &url(repo)).as_deref(),
                expected,
                "{repo}"
            );
        }
        let relative = url("https://example.com/gitlab");
        assert_eq!(
            project_path(&relative, &url("https://example.com/gitlab/g/p.git")).as_deref(),
            Some("g/p")
        );
        assert_eq!(
            project_path(&relative, &url("https://example.com/gitlabx/g/p.git")),
            None
        );
        assert_eq!(
            project_path(&relative, &url("https://example.com/g/p.git")),
            None
        );
    }

    #[test]
    fn gitlab_ids_are_one_encoded_segment() {
        assert_eq!(encode_id("platform/tools/cli"), "platform%2Ftools%2Fcli");
        assert_eq!(encode_id("a.b-c_d~e f"), "a.b-c_d~e%20f");
        assert_eq!(
            split_path("platform/tools/cli"),
            Some(("platform/tools", "cli"))
        );
        assert_eq!(split_path("solo"), None);
        let api = url("https://gitlab.example/api/v4");
        let api = Api {
            api_url: &api,
            token: None,
            connect_timeout: Duration::from_secs(1),
        };
        assert_eq!(
            api.endpoint("projects/a%2Fb").as_str(),
            "https://gitlab.example/api/v4/projects/a%2Fb"
        );
    }

    #[test]
    fn gitlab_next_page_comes_from_link_or_x_next_page() {
        let current = url("https://gl.example/api/v4/groups/g/projects?per_page=100&page=1");
        let mut headers = HeaderMap::new();
        assert_eq!(next_page(&headers, &current), None);
        headers.insert("x-next-page", HeaderValue::from_static(""));
        assert_eq!(next_page(&headers, &current), None);
        headers.insert("x-next-page", HeaderValue::from_static("2"));
        assert_eq!(
            next_page(&headers, &current).as_deref(),
            Some("https://gl.example/api/v4/groups/g/projects?per_page=100&page=2")
        );
        headers.insert(
            LINK,
            HeaderValue::from_static(
                "<https://gl.example/api/v4/groups/g/projects?page=2&per_page=100>; rel=\"next\", \
                 <https://gl.example/api/v4/groups/g/projects?page=3&per_page=100>; rel=\"last\"",
            ),
        );
        assert_eq!(
            next_page(&headers, &current).as_deref(),
            Some("https://gl.example/api/v4/groups/g/projects?page=2&per_page=100")
        );
    }

    #[test]
    fn gitlab_rate_limit_waits_as_asked() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut headers = HeaderMap::new();
        assert_eq!(rate_limit(403, &headers, now), None);
        assert_eq!(
            rate_limit(429, &headers, now),
            Some(Duration::from_secs(60))
        );
        headers.insert("ratelimit-reset", HeaderValue::from_static("1030"));
        assert_eq!(
            rate_limit(429, &headers, now),
            Some(Duration::from_secs(30))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(rate_limit(429, &headers, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn gitlab_error_bodies_read_as_details() {
        assert_eq!(
            detail(br#"{"message":"404 Project Not Found"}"#),
            " (404 Project Not Found)"
        );
        assert_eq!(
            detail(br#"{"message":{"path":["has already been taken"]}}"#),
            " (path has already been taken)"
        );
        assert_eq!(
            detail(br#"{"error":"insufficient_scope","error_description":"needs api"}"#),
            " (needs api)"
        );
        assert_eq!(detail(b"<html>"), "");
    }

    #[test]
    fn gitlab_project_reads_forks_and_empty_repositories() {
        let body = br#"[
          {"id":1,"path":"a","path_with_namespace":"g/a","default_branch":null,
           "visibility":"private","archived":false,"http_url_to_repo":"https://gl/g/a.git"},
          {"id":2,"path":"b","path_with_namespace":"g/b","default_branch":"main",
           "archived":true,"http_url_to_repo":"https://gl/g/b.git",
           "forked_from_project":{"id":9}}
        ]"#;
        let projects: Vec<Project> = serde_json::from_slice(body).expect("parses");
        assert!(!projects[0].is_fork() && projects[0].default_branch.is_none());
        assert!(projects[1].is_fork() && projects[1].archived);
    }

    #[test]
    fn gitlab_create_body_is_an_empty_project() {
        let body = create_body(7, "cli", Visibility::Internal);
        assert_eq!(body["namespace_id"], 7);
        assert_eq!(body["path"], "cli");
        assert_eq!(body["visibility"], "internal");
        assert_eq!(body["initialize_with_readme"], false);
    }
}
