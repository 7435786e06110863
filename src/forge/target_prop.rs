//! `upstream = "target-prop:NAME"`: a mirror's upstream URL read from the
//! custom property `NAME` of its downstream GitHub repository, right
//! before each sync attempt (so that a changed property takes effect).
//!
//! Two forms, as the Python Kalandra writes them (GitHub caps a property's
//! value at 75 characters, too short for some URLs):
//!
//! - **whole**: `NAME` holds the URL (`https://gitlab.example/a/b.git`);
//! - **split**: `NAME-host` holds the scheme and host
//!   (`https://gitlab.example`, or a bare `gitlab.example`, taken as
//!   https) and `NAME` the path (`platform/widget.git`, with or without a
//!   leading `/`). They are joined with one `/`. When `NAME-host` is set,
//!   `NAME` must be a path: a whole URL there too is ambiguous and refused.
//!
//! [`upstream_url`] is the pure part; [`read`] asks the API.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use url::Url;

use crate::terminal::escape;
use crate::transport::HttpError;
use crate::url::RepoUrl;

/// The prefix of `upstream` that names a property.
pub const PREFIX: &str = "target-prop:";

/// The suffix of the property that holds the host in the split form.
pub const HOST_SUFFIX: &str = "-host";

/// The property name in `upstream`, if it is a `target-prop:`.
pub fn property_name(upstream: &str) -> Option<&str> {
    upstream.strip_prefix(PREFIX)
}

/// Whether `name` can be a custom property's name (GitHub allows letters,
/// digits, `_`, `-`, `$`, `#`; at most 75 characters).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 75
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$' | '#'))
}

/// Reading the upstream from a property failed. No variant holds a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot set up a client for {url}")]
    Client {
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("GET {url} failed")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("{url}: GitHub's rate limit is used up for {} s more", retry_after.as_secs())]
    RateLimited { url: String, retry_after: Duration },
    #[error("{url} answered with JSON Kalandra cannot read: {reason}")]
    Response { url: String, reason: String },
    #[error("{repository} has no custom property `{property}` (or it is empty), so its upstream (target-prop:{property}) is unknown: set the property on {repository}")]
    Missing {
        repository: String,
        property: String,
    },
    #[error(
        "the custom property `{property}` of {repository} is not a git URL ({value}): {reason}"
    )]
    Invalid {
        repository: String,
        property: String,
        /// Escaped and cut, with any password masked.
        value: String,
        reason: String,
    },
}

/// The values of a repository's properties that matter here: `NAME` and
/// `NAME-host` (an unset or empty one is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub path_or_url: Option<String>,
    pub host: Option<String>,
}

/// The upstream URL the property values give: the whole form, or the
/// split form joined. `repository` and `property` are for messages.
pub fn upstream_url(values: &Values, repository: &str, property: &str) -> Result<RepoUrl, Error> {
    let Some(value) = values.path_or_url.as_deref().map(str::trim) else {
        return Err(Error::Missing {
            repository: repository.into(),
            property: property.into(),
        });
    };
    let invalid = |shown: &str, reason: String| Error::Invalid {
        repository: repository.into(),
        property: property.into(),
        value: escape(&crate::url::mask_credentials(
            &shown.chars().take(200).collect::<String>(),
        ))
        .into_owned(),
        reason,
    };
    let text = match values.host.as_deref().map(str::trim) {
        None => value.to_owned(),
        Some(host) => {
            if value.contains("://") {
                return Err(invalid(
                    value,
                    format!("`{property}{HOST_SUFFIX}` is set too, so `{property}` must be the path on that host, not a whole URL"),
                ));
            }
            let host = host.trim_end_matches('/');
            let host = if host.contains("://") {
                host.to_owned()
            } else {
                format!("https://{host}")
            };
            format!("{host}/{}", value.trim_start_matches('/'))
        }
    };
    // Only network URLs: a property must not point a mirror at a path on
    // the machine that runs Kalandra.
    match RepoUrl::parse(&text) {
        Ok(RepoUrl::Local { .. }) => Err(invalid(
            &text,
            "a local path; it must be a network URL (https://, ssh://, git://)".into(),
        )),
        Ok(url) => {
            if crate::url::mask_credentials(&text) != text {
                return Err(invalid(
                    &text,
                    "it holds a password; give the mirror a token instead".into(),
                ));
            }
            Ok(url)
        }
        Err(e) => Err(invalid(&text, e.to_string())),
    }
}

/// `NAME` and `NAME-host` out of GitHub's answer to
/// `GET /repos/{owner}/{repo}/properties/values`: an array of
/// `{"property_name": ..., "value": ...}`, where a value is a string, an
/// array of strings (multi-select) or null.
pub fn values_of(body: &[u8], property: &str) -> Result<Values, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        property_name: String,
        value: serde_json::Value,
    }
    let entries: Vec<Entry> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let host_name = format!("{property}{HOST_SUFFIX}");
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e.property_name == name)
            .and_then(|e| e.value.as_str())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
    };
    Ok(Values {
        path_or_url: find(property),
        host: find(&host_name),
    })
}

/// Reads the properties of `owner/repo` at `api_url` with `token` (the
/// downstream's installation token) and returns the upstream they give.
pub async fn read(
    api_url: &Url,
    owner: &str,
    repo: &str,
    property: &str,
    token: &str,
    connect_timeout: Duration,
) -> Result<RepoUrl, Error> {
    let mut url = api_url.clone();
    let path = format!(
        "{}/repos/{owner}/{repo}/properties/values",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    let shown = url.to_string();
    let client = crate::transport::api_client(&url, connect_timeout)
        .await
        .map_err(|source| Error::Client {
            url: shown.clone(),
            source,
        })?;
    let response = client
        .get(url)
        .header(AUTHORIZATION, format!("token {token}"))
        .header(ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", super::github_app::API_VERSION)
        .send()
        .await
        .map_err(|source| Error::Request {
            url: shown.clone(),
            source,
        })?;
    let status = response.status();
    let limit = super::github_app::rate_limit(
        status.as_u16(),
        response.headers(),
        std::time::SystemTime::now(),
    );
    let body = response.bytes().await.map_err(|source| Error::Request {
        url: shown.clone(),
        source,
    })?;
    if let Some(limit) = limit {
        return Err(Error::RateLimited {
            url: shown,
            retry_after: limit.wait,
        });
    }
    if !status.is_success() {
        return Err(Error::Status {
            url: shown,
            status: status.as_u16(),
            detail: super::github_app::detail(&body),
        });
    }
    let values = values_of(&body, property).map_err(|reason| Error::Response {
        url: shown.clone(),
        reason,
    })?;
    upstream_url(&values, &format!("{owner}/{repo}"), property)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(path: Option<&str>, host: Option<&str>) -> Values {
        Values {
            path_or_url: path.map(Into::into),
            host: host.map(Into::into),
        }
    }

    fn url(v: &Values) -> Result<String, String> {
        upstream_url(v, "acme/widget", "mirror-source")
            .map(|u| u.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn target_prop_prefix_names_the_property() {
        assert_eq!(
            property_name("target-prop:mirror-source"),
            Some("mirror-source")
        );
        assert_eq!(property_name("https://x/y"), None);
        assert!(valid_name("mirror-source"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"a".repeat(76)));
    }

    #[test]
    fn target_prop_whole_form_is_the_url() {
        assert_eq!(
            url(&values(Some(" https://gitlab.example/a/b.git "), None)),
            Ok("https://gitlab.example/a/b.git".into())
        );
        assert_eq!(
            url(&values(Some("ssh://git@host/a.git"), None)),
            Ok("ssh://git@host/a.git".into())
        );
    }

    #[test]
    fn target_prop_split_form_joins_host_and_path() {
        for (host, path) in [
            ("https://gitlab.example", "platform/widget.git"),
            ("https://gitlab.example/", "/platform/widget.git"),
            ("gitlab.example", "platform/widget.git"),
        ] {
            assert_eq!(
                url(&values(Some(path), Some(host))),
                Ok("https://gitlab.example/platform/widget.git".into()),
                "{host} + {path}"
            );
        }
        let both = url(&values(Some("https://a/b.git"), Some("https://c"))).expect_err("refused");
        assert!(both.contains("mirror-source-host` is set too"), "{both}");
    }

    #[test]
    fn target_prop_missing_or_bad_values_are_named_errors() {
        let missing = url(&values(None, Some("https://h"))).expect_err("refused");
        assert!(
            missing.contains("acme/widget has no custom property `mirror-source`"),
            "{missing}"
        );
        let local = url(&values(Some("/etc/passwd"), None)).expect_err("refused");
        assert!(local.contains("local path"), "{local}");
        let secret = url(&values(Some("https://u:hunter2@h/x.git"), None)).expect_err("refused");
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(secret.contains("acme/widget") && secret.contains("mirror-source"));
        let junk = url(&values(Some("not a url\u{1b}[31m"), None)).expect_err("refused");
        assert!(!junk.contains('\u{1b}'), "{junk}");
    }

    #[test]
    fn target_prop_values_are_read_from_github_answer() {
        let body = br#"[{"property_name":"mirror-source","value":"a/b.git"},
                        {"property_name":"mirror-source-host","value":"https://h"},
                        {"property_name":"teams","value":["x","y"]},
                        {"property_name":"empty","value":null}]"#;
        assert_eq!(
            values_of(body, "mirror-source"),
            Ok(values(Some("a/b.git"), Some("https://h")))
        );
        assert_eq!(values_of(body, "empty"), Ok(values(None, None)));
        assert_eq!(values_of(body, "teams"), Ok(values(None, None)));
        assert!(values_of(b"{}", "x").is_err());
    }
}
