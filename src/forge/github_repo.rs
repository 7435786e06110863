//! A downstream GitHub repository through the REST API, as the GitHub App
//! that serves it: read it, create it when it is missing
//! (`create_missing`), and point its default branch at upstream's
//! (`follow_head`).
//!
//! Every call sends the app's installation token (the one the sync pushes
//! with), never the app's JWT: creating a repository and changing its
//! settings are acts of the installation, which needs the
//! Administration (read and write) permission for them.

use std::time::{Duration, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use url::Url;

use super::github_app::{rate_limit, App};
use crate::terminal::escape;
use crate::transport::{HttpError, Token};

/// The API version this code was written against.
const API_VERSION: &str = "2022-11-28";

/// Who may see a repository that `create_missing` creates
/// (`create_visibility`). `internal` exists only in organisations of a
/// GitHub Enterprise account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Visibility {
    /// A mirror may hold what its upstream keeps private: private unless
    /// said otherwise.
    #[default]
    Private,
    Internal,
    Public,
}

impl Visibility {
    /// The config's (and GitHub's) word; `None` for any other.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "private" => Some(Self::Private),
            "internal" => Some(Self::Internal),
            "public" => Some(Self::Public),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Internal => "internal",
            Self::Public => "public",
        }
    }
}

/// An API call about a repository failed. No variant holds the token.
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
    #[error("{method} {url} answered HTTP {status}: {token_source} may not {act}; grant the app the Administration (read and write) permission there and accept it in the installation{detail}")]
    Forbidden {
        method: &'static str,
        url: String,
        status: u16,
        /// The token's source (`GitHub App 7's installation token for
        /// acme`), never the token.
        token_source: String,
        act: &'static str,
        detail: String,
    },
    #[error("{url}: GitHub refused to create {owner}/{repo}{detail}; {hint}")]
    Unprocessable {
        url: String,
        owner: String,
        repo: String,
        detail: String,
        hint: &'static str,
    },
    #[error("{url}: GitHub's rate limit for this installation is used up for {} s", retry_after.as_secs())]
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
}

/// What Kalandra reads of a repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Repository {
    /// A branch name, without `refs/heads/`. An empty repository has one
    /// too (the one it would get).
    pub default_branch: String,
    #[serde(default)]
    pub visibility: Option<String>,
}

/// The body of `POST /orgs/{org}/repos` for a mirror: a bare repository
/// (no README, no license), and none of the features a mirror does not
/// use switched on by the creation. Pure, for tests.
pub fn create_body(name: &str, visibility: Visibility) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "visibility": visibility.as_str(),
        "private": visibility != Visibility::Public,
        "auto_init": false,
        "has_issues": false,
        "has_projects": false,
        "has_wiki": false,
    })
}

/// The branch `PATCH /repos/{o}/{r}` should set as the default so that it
/// is upstream's, or `None` when nothing is to be done: upstream's HEAD is
/// not a branch (or unknown), or the default already is that branch.
/// Pure, for tests.
pub fn default_branch_change(upstream_head: Option<&str>, current: &str) -> Option<String> {
    let branch = upstream_head?.strip_prefix("refs/heads/")?;
    (!branch.is_empty() && branch != current).then(|| branch.to_owned())
}

/// One repository `owner/repo` of `app`'s host, reached with `token`.
pub struct RepoApi<'a> {
    pub app: &'a App,
    pub token: &'a Token,
    pub owner: &'a str,
    pub repo: &'a str,
    pub connect_timeout: Duration,
}

impl RepoApi<'_> {
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.app.api_url.clone();
        let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        url
    }

    /// The repository, or `None` when GitHub says it does not exist (or
    /// the installation cannot see it, which GitHub answers alike).
    pub async fn get(&self) -> Result<Option<Repository>, Error> {
        let url = self.endpoint(&format!("repos/{}/{}", self.owner, self.repo));
        match self
            .send(reqwest::Method::GET, &url, None, "read the repository")
            .await
        {
            Ok(body) => parse(&url, &body).map(Some),
            Err(Error::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates the repository in the organisation `owner`.
    pub async fn create(&self, visibility: Visibility) -> Result<Repository, Error> {
        let url = self.endpoint(&format!("orgs/{}/repos", self.owner));
        let body = create_body(self.repo, visibility);
        match self
            .send(
                reqwest::Method::POST,
                &url,
                Some(&body),
                "create repositories",
            )
            .await
        {
            Ok(answer) => parse(&url, &answer),
            Err(Error::Status {
                status: 422,
                detail,
                url,
                ..
            }) => Err(Error::Unprocessable {
                hint: if detail.contains("already exists") {
                    "it exists but the app's installation cannot see it: give the installation \
                     access to it (or to all repositories of the organisation)"
                } else {
                    "check create_visibility (`internal` needs an Enterprise organisation) and \
                     the organisation's repository policies"
                },
                url,
                owner: self.owner.to_owned(),
                repo: self.repo.to_owned(),
                detail,
            }),
            Err(Error::Status {
                status: 404, url, ..
            }) => Err(Error::Status {
                method: "POST",
                status: 404,
                detail: format!(
                    " ({} is not an organisation the app can create repositories in; \
                     create_missing creates repositories in organisations only)",
                    self.owner
                ),
                url,
            }),
            Err(error) => Err(error),
        }
    }

    /// Sets the default branch to `branch` (a name without `refs/heads/`).
    pub async fn set_default_branch(&self, branch: &str) -> Result<(), Error> {
        let url = self.endpoint(&format!("repos/{}/{}", self.owner, self.repo));
        let body = serde_json::json!({ "default_branch": branch });
        self.send(
            reqwest::Method::PATCH,
            &url,
            Some(&body),
            "change the repository's settings",
        )
        .await
        .map(drop)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        act: &'static str,
    ) -> Result<bytes::Bytes, Error> {
        let method_name: &'static str = match method.as_str() {
            "POST" => "POST",
            "PATCH" => "PATCH",
            _ => "GET",
        };
        let client = crate::transport::api_client(url, self.connect_timeout)
            .await
            .map_err(|source| Error::Client {
                api_url: self.app.api_url.to_string(),
                source,
            })?;
        let mut request = client
            .request(method, url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", self.token.secret))
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let request_failed = |source| Error::Request {
            method: method_name,
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(request_failed)?;
        let status = response.status();
        let headers = response.headers().clone();
        let answer = response.bytes().await.map_err(request_failed)?;
        if status.is_success() {
            return Ok(answer);
        }
        if let Some(limit) = rate_limit(status.as_u16(), &headers, SystemTime::now()) {
            return Err(Error::RateLimited {
                url: url.to_string(),
                retry_after: limit.wait,
            });
        }
        let detail = detail(&answer);
        Err(match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Error::Forbidden {
                method: method_name,
                url: url.to_string(),
                status: status.as_u16(),
                token_source: self.token.source.clone(),
                act,
                detail,
            },
            _ => Error::Status {
                method: method_name,
                url: url.to_string(),
                status: status.as_u16(),
                detail,
            },
        })
    }
}

/// GitHub's error body, `{"message": "...", "errors": [...]}`, as a
/// suffix for a message: escaped and cut, since it is the server's text.
fn detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let Ok(m) = serde_json::from_slice::<Message>(body) else {
        return String::new();
    };
    let mut text = m.message;
    for e in &m.errors {
        if let Some(more) = e.get("message").and_then(|v| v.as_str()) {
            text.push_str(": ");
            text.push_str(more);
        }
    }
    if text.is_empty() {
        return String::new();
    }
    let text: String = text.chars().take(200).collect();
    format!(" (GitHub says: {})", escape(&text))
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

    #[test]
    fn github_create_body_is_private_and_empty_by_default() {
        let body = create_body("api", Visibility::default());
        assert_eq!(body["name"], "api");
        assert_eq!(body["visibility"], "private");
        assert_eq!(body["private"], true);
        assert_eq!(body["auto_init"], false);
        let public = create_body("api", Visibility::Public);
        assert_eq!(public["visibility"], "public");
        assert_eq!(public["private"], false);
        assert_eq!(create_body("x", Visibility::Internal)["private"], true);
    }

    #[test]
    fn github_visibility_words_are_read() {
        for v in [
            Visibility::Private,
            Visibility::Internal,
            Visibility::Public,
        ] {
            assert_eq!(Visibility::parse(v.as_str()), Some(v));
        }
        assert_eq!(Visibility::parse("Private"), None);
        assert_eq!(Visibility::parse("secret"), None);
    }

    #[test]
    fn github_default_branch_changes_only_to_a_different_branch() {
        assert_eq!(
            default_branch_change(Some("refs/heads/main"), "master"),
            Some("main".into())
        );
        assert_eq!(default_branch_change(Some("refs/heads/main"), "main"), None);
        assert_eq!(
            default_branch_change(Some("refs/heads/release/2.x"), "main"),
            Some("release/2.x".into())
        );
        assert_eq!(default_branch_change(None, "main"), None);
        assert_eq!(default_branch_change(Some("refs/tags/v1"), "main"), None);
        assert_eq!(default_branch_change(Some("refs/heads/"), "main"), None);
    }

    #[test]
    fn github_error_detail_includes_the_errors_and_is_escaped() {
        assert_eq!(
            detail(
                br#"{"message":"Repository creation failed.","errors":[{"resource":"Repository","code":"custom","field":"name","message":"name already exists on this account"}]}"#
            ),
            " (GitHub says: Repository creation failed.: name already exists on this account)"
        );
        assert_eq!(detail(b"<html>"), "");
        assert_eq!(
            detail(br#"{"message":"x\u001b[31m"}"#),
            " (GitHub says: x\\e[31m)"
        );
    }
}
