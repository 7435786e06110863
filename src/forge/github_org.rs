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
use crate::config::{Fleet, GithubOrg};

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
    #[error("[[github_org]] {org}: cannot get the installation token")]
    Token {
        org: String,
        #[source]
        source: github_app::Error,
    },
    #[error("[[github_org]] {org}: cannot set up a client for {url}")]
    Client {
        org: String,
        url: String,
        #[source]
        source: crate::transport::HttpError,
    },
    #[error("[[github_org]] {org}: GET {url} failed")]
    Request {
        org: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("[[github_org]] {org}: {url} answered HTTP {status}{detail}{hint}")]
    Status {
        org: String,
        url: String,
        status: u16,
        detail: String,
        hint: &'static str,
    },
    #[error("[[github_org]] {org}: {url} answered with JSON Kalandra cannot read: {reason}")]
    Response {
        org: String,
        url: String,
        reason: String,
    },
    #[error(
        "[[github_org]] {org}: more than {MAX_PAGES} pages; the server's `next` links may loop"
    )]
    TooManyPages { org: String },
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

/// Adds the mirrors of every `[[github_org]]` of `fleet` to its mirrors.
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
    Ok(())
}

/// The names of `org`'s repositories whose property is set, every page.
async fn list(
    org: &GithubOrg,
    tokens: &AppTokens,
    connect_timeout: Duration,
) -> Result<Vec<String>, Error> {
    let name = org.org.clone();
    let token = tokens
        .token(&org.app, &org.org, "", connect_timeout)
        .await
        .map_err(|source| Error::Token {
            org: name.clone(),
            source,
        })?;
    let mut url = org.app.api_url.clone();
    let path = format!(
        "{}/orgs/{}/properties/values",
        url.path().trim_end_matches('/'),
        org.org
    );
    url.set_path(&path);
    url.set_query(Some(&format!("per_page={PER_PAGE}")));
    let client = crate::transport::api_client(&url, connect_timeout)
        .await
        .map_err(|source| Error::Client {
            org: name.clone(),
            url: url.to_string(),
            source,
        })?;
    let mut names = Vec::new();
    let mut next = Some(url);
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        if pages > MAX_PAGES {
            return Err(Error::TooManyPages { org: name });
        }
        let shown = url.to_string();
        let request_failed = |source| Error::Request {
            org: name.clone(),
            url: shown.clone(),
            source,
        };
        let response = client
            .get(url.clone())
            .header(AUTHORIZATION, format!("token {}", token.secret))
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", github_app::API_VERSION)
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        let link = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = response.bytes().await.map_err(request_failed)?;
        if !status.is_success() {
            return Err(Error::Status {
                org: name.clone(),
                url: shown.clone(),
                status: status.as_u16(),
                detail: github_app::detail(&body),
                hint: if status.as_u16() == 403 {
                    " (the app needs the organisation permission Custom properties: read)"
                } else {
                    ""
                },
            });
        }
        names.extend(repositories_with(&body, &org.property).map_err(|reason| {
            Error::Response {
                org: name.clone(),
                url: shown.clone(),
                reason,
            }
        })?);
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
    }
    Ok(names)
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
