//! `[[gitlab]]`: a GitLab instance and the access token Kalandra uses on
//! it (git over http(s), and the API for `create_missing`, `follow_head`
//! and `[[gitlab_source]]`).

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use url::Url;

use super::settings::{in_file_order, At, TokenKeys};
use super::Checker;
use crate::forge::gitlab::Instance;
use crate::url::mask_credentials;

/// The keys of a `[[gitlab]]`, in the order the docs list them.
pub(super) const KEYS: &[&str] = &["url", "api_url", "token_env", "token_file"];

impl Checker<'_> {
    /// Every `[[gitlab]]`, in file order.
    pub(super) fn gitlabs(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<Instance> {
        self.array_of_tables(value, "gitlab")
            .into_iter()
            .filter_map(|(header, table)| self.gitlab(header, table))
            .collect()
    }

    fn gitlab(&mut self, header: usize, table: &DeTable<'_>) -> Option<Instance> {
        let (mut url, mut api_url, mut token) = (None, None, TokenKeys::default());
        // A misspelt or refused key already said what is wrong.
        let mut valid = true;
        for (key, value) in in_file_order(table) {
            let name: &str = key.get_ref();
            let at = value.span().start;
            let string = |this: &mut Self| this.string(name, value).map(|v| At { value: v, at });
            match name {
                "url" => url = string(self),
                "api_url" => api_url = string(self),
                "token_env" => token.env = string(self),
                "token_file" => token.file = string(self),
                _ => {
                    valid = false;
                    let lower = name.to_ascii_lowercase();
                    if super::keys::closest(name, KEYS).is_none()
                        && ["token", "secret", "password", "key"]
                            .iter()
                            .any(|w| lower.contains(w))
                    {
                        self.error(
                            key.span().start,
                            format!("`{name}` would put a secret in the config file; name the token with `token_env` or `token_file` instead (the value is not shown)"),
                        );
                    } else {
                        self.unknown_key(name, key.span().start, KEYS);
                    }
                }
            }
        }
        let Some(url) = url else {
            self.error(
                header,
                "[[gitlab]] has no `url`: where GitLab is, e.g. \"https://gitlab.example\"",
            );
            return None;
        };
        let missing_token = token.env.is_none() && token.file.is_none();
        let token = self.token("token", token);
        if missing_token && valid {
            self.error(
                header,
                "[[gitlab]] has no `token_env` or `token_file` (a personal, project or group access token)",
            );
        }
        let url = self.gitlab_url("url", &url)?;
        let api_url = match api_url {
            Some(raw) => self.gitlab_url("api_url", &raw)?,
            None => default_api_url(&url),
        };
        Some(Instance {
            url,
            api_url,
            token: Some(token?),
        })
    }

    /// A GitLab `url` or `api_url`: http(s), no credentials, query or
    /// fragment; kept without a trailing `/`.
    pub(super) fn gitlab_url(&mut self, key: &str, raw: &At<String>) -> Option<Url> {
        let masked = mask_credentials(&raw.value);
        let url = match Url::parse(&raw.value) {
            Ok(url) => url,
            Err(e) => {
                self.error(raw.at, format!("invalid `{key}` {masked:?}: {e}"));
                return None;
            }
        };
        let problem = if !matches!(url.scheme(), "http" | "https") {
            Some("is not an http(s) URL")
        } else if !url.username().is_empty() || url.password().is_some() {
            Some("has credentials in it: name the token with `token_env` or `token_file`")
        } else if url.query().is_some() || url.fragment().is_some() {
            Some("has a query or fragment")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(raw.at, format!("`{key}` {masked:?} {problem}"));
            return None;
        }
        let mut url = url;
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        Some(url)
    }
}

/// `{url}/api/v4`.
pub(super) fn default_api_url(url: &Url) -> Url {
    let mut api = url.clone();
    let path = format!("{}/api/v4", url.path().trim_end_matches('/'));
    api.set_path(&path);
    api
}
