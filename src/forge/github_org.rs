//! `[[github_org]]` discovery: the repositories of an organisation whose
//! custom property names an upstream, each made a mirror
//! (`upstream = "target-prop:PROPERTY"`). Run after the config is loaded
//! (`sync --config`, `plan --config`, `config list`) and by `watch` at
//! each reload and every [`REDISCOVER_EVERY`].
//!
//! The org is listed with `GET /orgs/{org}/properties/values` (every
//! repository with its properties, in pages; `Link: <...>; rel="next"`
//! followed as given), with the org installation's token.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, LINK};

use super::github_app::{self, AppTokens};
use crate::config::{Fleet, GithubOrg, GithubSource, Listed};

/// How often `watch` lists the orgs again, besides each reload: new
/// repositories appear within ten minutes, and 100 repositories a page
/// keep it to a few requests per org.
pub const REDISCOVER_EVERY: Duration = Duration::from_secs(600);

/// Asked for each page (GitHub's maximum).
const PER_PAGE: u32 = 100;

/// A page limit, so that a server whose `next` loops cannot hold a run.
const MAX_PAGES: usize = 1000;

/// Listing an org failed. No variant holds a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("discovery of {org}: cannot get the installation token")]
    Token {
        org: String,
        #[source]
        source: github_app::Error,
    },
    #[error("discovery of {org}: cannot set up a client for {url}")]
    Client {
        org: String,
        url: String,
        #[source]
        source: crate::transport::HttpError,
    },
    #[error("discovery of {org}: GET {url} failed")]
    Request {
        org: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("discovery of {org}: {url} answered HTTP {status}{detail}{hint}")]
    Status {
        org: String,
        url: String,
        status: u16,
        detail: String,
        hint: &'static str,
    },
    #[error("discovery of {org}: {url} answered with JSON Kalandra cannot read: {reason}")]
    Response {
        org: String,
        url: String,
        reason: String,
    },
    #[error("discovery of {org}: more than {MAX_PAGES} pages; the server's `next` links may loop")]
    TooManyPages { org: String },
    #[error("discovery of {org}: {url}: GitHub's rate limit is used up until {reset}, {} s from now (over the {} s Kalandra waits)", retry_after.as_secs(), github_app::MAX_RATE_LIMIT_WAIT.as_secs())]
    RateLimited {
        org: String,
        url: String,
        reset: String,
        retry_after: Duration,
    },
}

/// The URL of the next page in a `Link` header (RFC 8288), as GitHub
/// writes it: `<https://...?page=2>; rel="next", <...>; rel="last"`.
/// Hand-written: the one header shape needs a dozen lines, not a crate.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .map(|rel| {
                    rel.trim_matches('"')
                        .split_whitespace()
                        .any(|r| r == "next")
                })
                .unwrap_or(false)
        });
        is_next.then(|| target.to_owned())
    })
}

/// The names of the repositories, in one page of
/// `GET /orgs/{org}/properties/values`, whose `property` is a non-empty
/// string.
pub fn repositories_with(body: &[u8], property: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Repository {
        repository_name: String,
        properties: Vec<Value>,
    }
    #[derive(serde::Deserialize)]
    struct Value {
        property_name: String,
        value: serde_json::Value,
    }
    let page: Vec<Repository> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(page
        .into_iter()
        .filter(|r| {
            r.properties.iter().any(|p| {
                p.property_name == property
                    && p.value.as_str().is_some_and(|v| !v.trim().is_empty())
            })
        })
        .map(|r| r.repository_name)
        .collect())
}

/// Adds the mirrors of every `[[github_org]]` and `[[github_source]]` of
/// `fleet` to its mirrors.
/// A discovered name already taken (by a `[[mirror]]`, a template or an
/// earlier org) is skipped with a warning: the first one wins. A
/// repository whose downstream cannot be made is skipped with a warning.
pub async fn discover(
    fleet: &mut Fleet,
    tokens: &AppTokens,
    connect_timeout: Duration,
) -> Result<(), Error> {
    let mut taken: HashSet<String> = fleet.mirrors.iter().map(|m| m.name.clone()).collect();
    for org in fleet.github_orgs.clone() {
        let names = list(&org, tokens, connect_timeout).await?;
        tracing::info!(
            "[[github_org]] {}: {} repositories with the property {}",
            org.org,
            names.len(),
            org.property
        );
        for name in names {
            match org.mirror_for(&name) {
                Ok(mirror) if taken.insert(mirror.name.clone()) => fleet.mirrors.push(mirror),
                Ok(mirror) => tracing::warn!(
                    "[[github_org]] {}: mirror name {} is taken; {}/{name} is left out",
                    org.org,
                    mirror.name,
                    org.org
                ),
                Err(reason) => {
                    tracing::warn!("[[github_org]] {}: {name} left out: {reason}", org.org)
                }
            }
        }
    }
    for source in fleet.github_sources.clone() {
        let repos = list_source(&source, tokens, connect_timeout).await?;
        tracing::info!(
            "[[github_source]] {}: {} repositories kept by the filters",
            source.org,
            repos.len()
        );
        for repo in repos {
            match source.mirror_for(&repo) {
                Ok(mirror) if taken.insert(mirror.name.clone()) => fleet.mirrors.push(mirror),
                Ok(mirror) => tracing::warn!(
                    "[[github_source]] {}: mirror name {} is taken; {} is left out",
                    source.org,
                    mirror.name,
                    repo.name
                ),
                Err(reason) => {
                    tracing::warn!(
                        "[[github_source]] {}: {} left out: {reason}",
                        source.org,
                        repo.name
                    )
                }
            }
        }
    }
    Ok(())
}

/// The names of `org`'s repositories whose property is set, every page.
async fn list(
    org: &GithubOrg,
    tokens: &AppTokens,
    connect_timeout: Duration,
) -> Result<Vec<String>, Error> {
    let token = tokens
        .token(&org.app, &org.org, "", connect_timeout)
        .await
        .map_err(|source| Error::Token {
            org: org.org.clone(),
            source,
        })?;
    let url = endpoint(
        &org.app.api_url,
        &format!("orgs/{}/properties/values", org.org),
        "",
    );
    let answers = pages(&org.org, url, Some(&token.secret), connect_timeout).await;
    let mut names = Vec::new();
    for (url, body) in forgetting_refused_token(answers, tokens, Some(&token.secret)).await? {
        names.extend(repositories_with(&body, &org.property).map_err(|reason| {
            Error::Response {
                org: org.org.clone(),
                url,
                reason,
            }
        })?);
    }
    Ok(names)
}

/// `answers`, after dropping the installation token they were refused
/// with (HTTP 401) from the cache: the next listing gets a new one.
async fn forgetting_refused_token<T>(
    answers: Result<T, Error>,
    tokens: &AppTokens,
    secret: Option<&str>,
) -> Result<T, Error> {
    if let (Err(Error::Status { status: 401, .. }), Some(secret)) = (&answers, secret) {
        tokens.forget_refused(secret).await;
    }
    answers
}

/// `{api_url}/{path}?per_page=100{query}`.
fn endpoint(api_url: &url::Url, path: &str, query: &str) -> url::Url {
    let mut url = api_url.clone();
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url.set_query(Some(&format!("per_page={PER_PAGE}{query}")));
    url
}

/// Every page from `url` on, following `Link: rel="next"`: each page's
/// URL and body.
async fn pages(
    org: &str,
    url: url::Url,
    token: Option<&str>,
    connect_timeout: Duration,
) -> Result<Vec<(String, bytes::Bytes)>, Error> {
    let name = org.to_owned();
    let client = crate::transport::api_client(&url, connect_timeout)
        .await
        .map_err(|source| Error::Client {
            org: name.clone(),
            url: url.to_string(),
            source,
        })?;
    let mut bodies = Vec::new();
    let mut next = Some(url);
    // Once per listing, as for the token requests: a limit that resets
    // within a minute is waited out, a longer one fails the discovery.
    let mut waited = false;
    while let Some(url) = next.take() {
        if bodies.len() >= MAX_PAGES {
            return Err(Error::TooManyPages { org: name });
        }
        let shown = url.to_string();
        let request_failed = |source| Error::Request {
            org: name.clone(),
            url: shown.clone(),
            source,
        };
        let mut request = client
            .get(url.clone())
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", github_app::API_VERSION);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("token {token}"));
        }
        let response = request.send().await.map_err(request_failed)?;
        let status = response.status();
        let link = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let limit = github_app::rate_limit(
            status.as_u16(),
            response.headers(),
            std::time::SystemTime::now(),
        );
        let body = response.bytes().await.map_err(request_failed)?;
        if let Some(limit) = limit {
            if !waited && limit.wait <= github_app::MAX_RATE_LIMIT_WAIT {
                tracing::info!(
                    "{shown}: GitHub's rate limit resets in {} s; waiting",
                    limit.wait.as_secs()
                );
                // A second past the reset: GitHub's clock may lag ours.
                tokio::time::sleep(limit.wait + Duration::from_secs(1)).await;
                waited = true;
                next = Some(url);
                continue;
            }
            let reset = std::time::SystemTime::now() + limit.wait;
            return Err(Error::RateLimited {
                org: name.clone(),
                url: shown.clone(),
                reset: humantime::format_rfc3339_seconds(reset).to_string(),
                retry_after: limit.wait,
            });
        }
        if !status.is_success() {
            return Err(Error::Status {
                org: name.clone(),
                url: shown.clone(),
                status: status.as_u16(),
                detail: github_app::detail(&body),
                hint: if status.as_u16() == 403 && shown.contains("/properties/values") {
                    " (the app needs the organisation permission Custom properties: read)"
                } else {
                    ""
                },
            });
        }
        // Followed as given, but only on the API's own origin: a `Link`
        // elsewhere would carry the token there.
        next = match link.map(|l| url.join(&l)) {
            Some(Ok(next)) if next.origin() == url.origin() => Some(next),
            Some(_) => {
                return Err(Error::Response {
                    org: name.clone(),
                    url: shown.clone(),
                    reason: "its `Link: rel=\"next\"` is not a URL on the API's host".into(),
                })
            }
            None => None,
        };
        bodies.push((shown, body));
    }
    Ok(bodies)
}

/// The repositories in one page of `GET /orgs/{org}/repos`.
pub fn listed(body: &[u8]) -> Result<Vec<Listed>, String> {
    #[derive(serde::Deserialize)]
    struct Repository {
        name: String,
        clone_url: String,
        private: bool,
        #[serde(default)]
        archived: bool,
        fork: bool,
    }
    let page: Vec<Repository> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(page
        .into_iter()
        .map(|r| Listed {
            name: r.name,
            clone_url: r.clone_url,
            private: r.private,
            archived: r.archived,
            fork: r.fork,
        })
        .collect())
}

/// The repositories of a `[[github_source]]`'s org that its filters keep.
async fn list_source(
    source: &GithubSource,
    tokens: &AppTokens,
    connect_timeout: Duration,
) -> Result<Vec<Listed>, Error> {
    let token = match &source.app {
        Some(app) => Some(
            tokens
                .token(app, &source.org, "", connect_timeout)
                .await
                .map_err(|e| Error::Token {
                    org: source.org.clone(),
                    source: e,
                })?,
        ),
        None => None,
    };
    let url = endpoint(
        &source.api_url,
        &format!("orgs/{}/repos", source.org),
        "&type=all",
    );
    let secret = token.as_ref().map(|t| t.secret.as_str());
    let answers = pages(&source.org, url, secret, connect_timeout).await;
    let mut repos = Vec::new();
    for (url, body) in forgetting_refused_token(answers, tokens, secret).await? {
        repos.extend(listed(&body).map_err(|reason| Error::Response {
            org: source.org.clone(),
            url,
            reason,
        })?);
    }
    repos.retain(|r| source.filters.keep(r));
    Ok(repos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_link_header_next_is_found() {
        let header = r#"<https://api.github.com/orgs/a/properties/values?per_page=100&page=2>; rel="next", <https://api.github.com/orgs/a/properties/values?per_page=100&page=3>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/orgs/a/properties/values?per_page=100&page=2")
        );
        assert_eq!(
            next_link(r#"<https://x/?page=1>; rel="prev", <https://x/?page=1>; rel="first""#),
            None
        );
        assert_eq!(
            next_link(r#"<https://x/?page=4>;rel=next"#).as_deref(),
            Some("https://x/?page=4")
        );
        assert_eq!(next_link("garbage"), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn github_org_page_keeps_repositories_with_the_property() {
        let body = br#"[
            {"repository_id":1,"repository_name":"api","repository_full_name":"a/api",
             "properties":[{"property_name":"mirror-source","value":"https://x/api.git"}]},
            {"repository_id":2,"repository_name":"web","repository_full_name":"a/web",
             "properties":[{"property_name":"mirror-source","value":""}]},
            {"repository_id":3,"repository_name":"ops","repository_full_name":"a/ops",
             "properties":[{"property_name":"team","value":"x"}]},
            {"repository_id":4,"repository_name":"lib","repository_full_name":"a/lib",
             "properties":[{"property_name":"mirror-source","value":null}]}
        ]"#;
        assert_eq!(
            repositories_with(body, "mirror-source"),
            Ok(vec!["api".to_owned()])
        );
        assert!(repositories_with(b"{}", "x").is_err());
    }
}
