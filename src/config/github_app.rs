//! `[[github_app]]`: a GitHub App whose installation tokens authenticate
//! git over http(s) for the repositories of the owners it lists.

use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use url::Url;

use super::settings::{in_file_order, At};
use super::{Checker, SecretRef};
use crate::forge::github_app::{App, PUBLIC_API};
use crate::forge::jwt::{AppKey, Issuer};
use crate::forge::owners::{self, OwnerPattern};
use crate::url::mask_credentials;

/// The keys of a `[[github_app]]`, in the order the docs list them.
pub(super) const KEYS: &[&str] = &[
    "app_id",
    "client_id",
    "key_file",
    "key_env",
    "owners",
    "api_url",
    "git_host",
];

impl Checker<'_> {
    /// Every `[[github_app]]`, in file order.
    pub(super) fn github_apps(&mut self, value: &Spanned<DeValue<'_>>) -> Vec<App> {
        self.array_of_tables(value, "github_app")
            .into_iter()
            .filter_map(|(header, table)| self.github_app(header, table))
            .collect()
    }

    fn github_app(&mut self, header: usize, table: &DeTable<'_>) -> Option<App> {
        let (mut app_id, mut client_id, mut key_file, mut key_env) = (None, None, None, None);
        let (mut owners, mut api_url, mut git_host) = (None, None, None);
        let mut valid = true;
        for (key, value) in in_file_order(table) {
            let name: &str = key.get_ref();
            let at = value.span().start;
            let mut string = |this: &mut Self| {
                let text = this.string(name, value);
                valid &= text.is_some();
                text.map(|value| At { value, at })
            };
            match name {
                "app_id" => match self.integer(name, value) {
                    Some(0) => {
                        self.error(at, "`app_id` must be 1 or more");
                        valid = false;
                    }
                    Some(id) => app_id = Some(At { value: id, at }),
                    None => valid = false,
                },
                "client_id" => client_id = string(self),
                "key_file" => key_file = string(self),
                "key_env" => key_env = string(self),
                "owners" => owners = self.owner_patterns(value),
                "api_url" => api_url = string(self),
                "git_host" => git_host = string(self),
                _ => {
                    valid = false;
                    let lower = name.to_ascii_lowercase();
                    if keys_closest(name).is_none()
                        && ["key", "pem", "secret", "token", "password"]
                            .iter()
                            .any(|w| lower.contains(w))
                    {
                        self.error(
                            key.span().start,
                            format!("`{name}` would put a secret in the config file; name the app's private key with `key_file` or `key_env` instead (the value is not shown)"),
                        );
                    } else {
                        self.unknown_key(name, key.span().start, KEYS);
                    }
                }
            }
        }
        let issuer = match (app_id, client_id) {
            (Some(id), Some(client)) => {
                self.error(
                    id.at.max(client.at),
                    "both `app_id` and `client_id` are set: keep one",
                );
                None
            }
            (Some(id), None) => Some(Issuer::AppId(id.value)),
            (None, Some(client)) if client.value.trim().is_empty() => {
                self.error(client.at, "`client_id` is empty");
                None
            }
            (None, Some(client)) => Some(Issuer::ClientId(client.value)),
            (None, None) => {
                if valid {
                    self.error(header, "[[github_app]] has no `app_id` or `client_id`");
                }
                None
            }
        };
        let key = self.app_key(header, key_file, key_env, valid);
        if owners.is_none() && !table.contains_key("owners") {
            self.error(
                header,
                "[[github_app]] has no `owners`: list the owners (or \"owner/repo\") whose repositories it serves",
            );
        }
        let api_url = match api_url {
            Some(raw) => self.api_url(&raw)?,
            None => Url::parse(PUBLIC_API).expect("because the public API's URL is valid"),
        };
        let git_host = match git_host {
            Some(host) => self.git_host(&host)?,
            None if api_url.host_str() == Some("api.github.com") => "github.com".to_owned(),
            None => owners::authority(&api_url)?,
        };
        Some(App {
            issuer: issuer?,
            key: key?,
            owners: owners?,
            api_url,
            git_host,
        })
    }

    /// `key_file` or `key_env`, read and parsed now so that a missing or
    /// broken key stops the run before anything connects.
    fn app_key(
        &mut self,
        header: usize,
        file: Option<At<String>>,
        env: Option<At<String>>,
        report_missing: bool,
    ) -> Option<SecretRef> {
        let (key, raw) = match (env, file) {
            (Some(env), Some(file)) => {
                self.error(
                    env.at.max(file.at),
                    "both `key_file` and `key_env` are set: keep one",
                );
                return None;
            }
            (Some(env), None) => ("key_env", env),
            (None, Some(file)) => ("key_file", file),
            (None, None) => {
                if report_missing {
                    self.error(
                        header,
                        "[[github_app]] has no `key_file` or `key_env` (the app's private key)",
                    );
                }
                return None;
            }
        };
        if raw.value.is_empty() {
            self.error(raw.at, format!("`{key}` is empty"));
            return None;
        }
        if raw.value.contains("-----BEGIN") || raw.value.contains('\n') {
            self.error(
                raw.at,
                format!("`{key}` holds the key itself: the config file names it only, with `key_file = \"PATH\"` or `key_env = \"NAME\"` (the value is not shown)"),
            );
            return None;
        }
        let secret = match key {
            "key_env" => SecretRef::Env(raw.value),
            _ => SecretRef::File(self.beside_config(Path::new(&raw.value))),
        };
        let pem = match &secret {
            SecretRef::Env(name) => (self.env)(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, format!("${name}")))
                .ok_or_else(|| format!("environment variable {name} is not set or is empty")),
            SecretRef::File(path) => (self.read)(path)
                .map(|v| (v, path.display().to_string()))
                .map_err(|e| format!("cannot read the key file {}: {e}", path.display())),
        };
        match pem {
            Ok((pem, source)) => {
                if let Err(e) = AppKey::from_pem(&pem, &source) {
                    self.error(raw.at, format!("`{key}`: {e}"));
                }
            }
            Err(why) => self.error(raw.at, format!("`{key}`: {why}")),
        }
        Some(secret)
    }

    fn owner_patterns(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Vec<OwnerPattern>> {
        let strings = self.strings("owners", value)?;
        if strings.is_empty() {
            self.error(value.span().start, "`owners` is empty");
            return None;
        }
        let mut patterns = Vec::with_capacity(strings.len());
        for text in strings {
            match OwnerPattern::parse(&text.value) {
                Ok(pattern) => patterns.push(pattern),
                Err(e) => self.error(text.at, format!("`owners`: {e}")),
            }
        }
        Some(patterns)
    }

    /// `api_url`: http(s), no credentials, query or fragment; kept without
    /// a trailing slash.
    pub(super) fn api_url(&mut self, raw: &At<String>) -> Option<Url> {
        let masked = mask_credentials(&raw.value);
        let url = match Url::parse(&raw.value) {
            Ok(url) => url,
            Err(e) => {
                self.error(raw.at, format!("invalid `api_url` {masked:?}: {e}"));
                return None;
            }
        };
        let problem = if !matches!(url.scheme(), "http" | "https") {
            Some("is not an http(s) URL")
        } else if !url.username().is_empty() || url.password().is_some() {
            Some("has credentials in it: the app's key authenticates it")
        } else if url.query().is_some() || url.fragment().is_some() {
            Some("has a query or fragment")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.error(raw.at, format!("`api_url` {masked:?} {problem} (expected \"https://api.github.com\" or, for GitHub Enterprise Server, \"https://HOST/api/v3\")"));
            return None;
        }
        let mut url = url;
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
        Some(url)
    }

    /// `git_host`: `host` or `host:port`, as git URLs on it write it,
    /// with the path the repositories live under when it is not the root.
    fn git_host(&mut self, raw: &At<String>) -> Option<String> {
        let parsed = Url::parse(&format!("https://{}", raw.value)).ok();
        let host = parsed.as_ref().and_then(|url| {
            let clean = url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none();
            let path = url.path().trim_end_matches('/');
            clean
                .then(|| owners::authority(url).map(|host| format!("{host}{path}")))
                .flatten()
        });
        match host {
            Some(host) if !raw.value.contains("://") => Some(host),
            _ => {
                self.error(
                    raw.at,
                    format!(
                        "`git_host` {:?} is not a host: expected \"HOST\" or \"HOST:PORT\", as in the git URLs",
                        raw.value
                    ),
                );
                None
            }
        }
    }
}

fn keys_closest(name: &str) -> Option<&'static str> {
    super::keys::closest(name, KEYS)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::{Path, PathBuf};

    use super::super::{parse, Errors, Fleet};
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/github-app-test-key.pkcs1.pem");

    fn env(name: &str) -> Option<String> {
        match name {
            "APP_KEY" => Some(KEY.into()),
            "DOWN_TOKEN" => Some("t".into()),
            _ => None,
        }
    }

    fn read(path: &Path) -> io::Result<String> {
        match path.to_str() {
            Some("conf/app.pem") => Ok(KEY.into()),
            Some("conf/not-a-key.pem") => Ok("hello\n".into()),
            Some("conf/token") => Ok("t0ken".into()),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }

    fn parsed(text: &str) -> Result<Fleet, Errors> {
        parse(text, Path::new("conf/mirrors.toml"), &env, &read)
    }

    fn errors(text: &str) -> Vec<String> {
        match parsed(text) {
            Ok(fleet) => panic!("invalid, but gave {:?}", fleet.github_apps),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    const APPS: &str = r#"
[defaults]
downstream_token_env = "DOWN_TOKEN"

[[github_app]]
app_id = 101
key_file = "app.pem"
owners = ["acme", "acme-*"]

[[github_app]]
client_id = "Iv1.beta"
key_env = "APP_KEY"
owners = ["beta", "acme/special"]
api_url = "https://ghe.example/api/v3/"

[[github_app]]
app_id = 7
key_env = "APP_KEY"
owners = ["*"]
api_url = "http://127.0.0.1:9999"
git_host = "127.0.0.1:8080/git/"

[[mirror]]
name = "a"
upstream = "https://github.com/acme/api.git"
downstream = "https://github.com/acme-mirror/api.git"

[[mirror]]
name = "b"
upstream = "https://ghe.example/beta/web.git"
downstream = "https://github.com/acme/web.git"
downstream_token_file = "token"

[[mirror]]
name = "c"
upstream = "http://127.0.0.1:8080/git/x/y.git"
downstream = "ssh://git@github.com/acme/c.git"
"#;

    #[test]
    fn config_github_apps_serve_their_host_and_owners_first_match_wins() {
        let fleet = parsed(APPS).unwrap_or_else(|e| panic!("{e}"));
        let [first, ghes, local] = &fleet.github_apps[..] else {
            panic!("three apps: {:?}", fleet.github_apps)
        };
        assert_eq!(first.issuer, Issuer::AppId(101));
        assert_eq!(first.key, SecretRef::File(PathBuf::from("conf/app.pem")));
        assert_eq!(first.api_url.as_str(), "https://api.github.com/");
        assert_eq!(first.git_host, "github.com");
        assert_eq!(ghes.issuer, Issuer::ClientId("Iv1.beta".into()));
        assert_eq!(ghes.api_url.as_str(), "https://ghe.example/api/v3");
        assert_eq!(ghes.git_host, "ghe.example");
        assert_eq!(local.git_host, "127.0.0.1:8080/git");
        let [a, b, c] = &fleet.mirrors[..] else {
            panic!("three mirrors")
        };
        assert_eq!(a.upstream_app.as_ref(), Some(first));
        // The app wins over a [defaults] token...
        assert_eq!(a.downstream_app.as_ref(), Some(first));
        assert_eq!(a.downstream_token, None);
        assert_eq!(b.upstream_app.as_ref(), Some(ghes));
        // ...and a mirror's own token wins over the app.
        assert_eq!(b.downstream_app, None);
        assert_eq!(
            b.downstream_token,
            Some(SecretRef::File(PathBuf::from("conf/token")))
        );
        assert_eq!(c.upstream_app.as_ref(), Some(local));
        // ssh is not the app's business.
        assert_eq!(c.downstream_app, None);
        assert_eq!(
            c.downstream_token,
            Some(SecretRef::Env("DOWN_TOKEN".into()))
        );
    }

    #[test]
    fn config_github_app_errors_have_their_place() {
        assert_eq!(
            errors(
                r#"
[[github_app]]
app_id = 1
client_id = "Iv1.x"
key_file = "missing.pem"
owners = ["acme", "a/b/c", ""]
api_url = "ftp://x"
privat_key = "-----BEGIN RSA PRIVATE KEY-----"
"#
            ),
            [
                "conf/mirrors.toml:4:13: both `app_id` and `client_id` are set: keep one",
                "conf/mirrors.toml:5:12: `key_file`: cannot read the key file conf/missing.pem: entity not found",
                "conf/mirrors.toml:6:19: `owners`: \"a/b/c\" is not an owner pattern: expected \"OWNER\", \"OWNER-*\" or \"OWNER/REPO\"",
                "conf/mirrors.toml:6:28: `owners`: an owner pattern is empty",
                "conf/mirrors.toml:7:11: `api_url` \"ftp://x\" is not an http(s) URL (expected \"https://api.github.com\" or, for GitHub Enterprise Server, \"https://HOST/api/v3\")",
                "conf/mirrors.toml:8:1: `privat_key` would put a secret in the config file; name the app's private key with `key_file` or `key_env` instead (the value is not shown)",
            ]
        );
        assert_eq!(
            errors(
                "[[github_app]]\napp_id = 1\nkey_file = \"not-a-key.pem\"\nowners = [\"acme\"]\ngit_host = \"https://x/\"\nownres = 1\n"
            ),
            [
                "conf/mirrors.toml:3:12: `key_file`: conf/not-a-key.pem holds no RSA private key in PEM form (PKCS#1 \"BEGIN RSA PRIVATE KEY\" or PKCS#8 \"BEGIN PRIVATE KEY\")",
                "conf/mirrors.toml:5:12: `git_host` \"https://x/\" is not a host: expected \"HOST\" or \"HOST:PORT\", as in the git URLs",
                "conf/mirrors.toml:6:1: unknown key `ownres`: did you mean `owners`?",
            ]
        );
        assert_eq!(
            errors("[[github_app]]\nkey_env = \"-----BEGIN RSA PRIVATE KEY-----\\nMIIE\"\n"),
            [
                "conf/mirrors.toml:1:1: [[github_app]] has no `app_id` or `client_id`",
                "conf/mirrors.toml:1:1: [[github_app]] has no `owners`: list the owners (or \"owner/repo\") whose repositories it serves",
                "conf/mirrors.toml:2:11: `key_env` holds the key itself: the config file names it only, with `key_file = \"PATH\"` or `key_env = \"NAME\"` (the value is not shown)",
            ]
        );
        assert_eq!(
            errors("[[github_app]]\napp_id = 0\nkey_env = \"NOPE\"\nowners = []\n"),
            [
                "conf/mirrors.toml:2:10: `app_id` must be 1 or more",
                "conf/mirrors.toml:3:11: `key_env`: environment variable NOPE is not set or is empty",
                "conf/mirrors.toml:4:10: `owners` is empty",
            ]
        );
    }
}
