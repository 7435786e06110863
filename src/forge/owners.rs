//! Which repositories a GitHub App serves: its `owners` patterns, and the
//! owner and repository an http(s) URL on its git host names. Pure.

use url::Url;

/// One entry of `owners`: an owner (`acme`), an owner glob (`acme-*`), or
/// one repository (`acme/api`). GitHub's names are case-insensitive, and
/// so is the match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerPattern {
    owner: String,
    repo: Option<String>,
}

/// An `owners` entry that is no pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("an owner pattern is empty")]
    Empty,
    #[error("{0:?} is not an owner pattern: expected \"OWNER\", \"OWNER-*\" or \"OWNER/REPO\"")]
    Shape(String),
    #[error("{0:?} holds a character no GitHub owner or repository name has (letters, digits, '-', '_', '.' and the glob '*' only)")]
    Character(String),
}

impl OwnerPattern {
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::Empty);
        }
        let (owner, repo) = match text.split_once('/') {
            Some((owner, repo)) => (owner, Some(repo)),
            None => (text, None),
        };
        if owner.is_empty() || repo.is_some_and(|r| r.is_empty() || r.contains('/')) {
            return Err(Error::Shape(text.to_owned()));
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*');
        if !text.chars().all(|c| name_char(c) || c == '/') {
            return Err(Error::Character(text.to_owned()));
        }
        Ok(Self {
            owner: owner.to_ascii_lowercase(),
            repo: repo.map(str::to_ascii_lowercase),
        })
    }

    /// Whether the repository `owner/repo` is one this pattern names.
    pub fn matches(&self, owner: &str, repo: &str) -> bool {
        glob(&self.owner, &owner.to_ascii_lowercase())
            && self
                .repo
                .as_ref()
                .is_none_or(|r| glob(r, &repo.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for OwnerPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.owner)?;
        if let Some(repo) = &self.repo {
            write!(f, "/{repo}")?;
        }
        Ok(())
    }
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(text) = text.strip_prefix(head) else {
                return false;
            };
            (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .any(|i| glob(rest, &text[i..]))
        }
    }
}

/// A URL's host and port as a git host is written: `github.com`, or
/// `127.0.0.1:8080` when the port is not the scheme's default.
pub fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The owner and repository an http(s) URL names on a GitHub host whose
/// repositories live under `prefix` (empty on GitHub itself):
/// `https://HOST{prefix}/OWNER/REPO(.git)`, with nothing after. `None` for
/// any other shape.
pub fn repository(url: &Url, prefix: &str) -> Option<(String, String)> {
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    let path = url.path().strip_prefix(prefix.trim_end_matches('/'))?;
    if !path.starts_with('/') {
        return None;
    }
    let path = path.trim_matches('/');
    let (owner, repo) = path.split_once('/')?;
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    if owner.is_empty() || repo.is_empty() || repo.contains('/') {
        return None;
    }
    Some((owner.to_owned(), repo.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> OwnerPattern {
        OwnerPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn github_app_owner_patterns_match_owners_globs_and_repositories() {
        assert!(pattern("acme").matches("acme", "api"));
        assert!(pattern("acme").matches("ACME", "api"));
        assert!(!pattern("acme").matches("acme-labs", "api"));
        assert!(pattern("acme-*").matches("acme-labs", "x"));
        assert!(!pattern("acme-*").matches("acme", "x"));
        assert!(pattern("*").matches("anyone", "x"));
        assert!(pattern("acme/api").matches("acme", "API"));
        assert!(!pattern("acme/api").matches("acme", "web"));
        assert!(pattern("acme/api-*").matches("acme", "api-v2"));
    }

    #[test]
    fn github_app_owner_patterns_refuse_other_shapes() {
        assert_eq!(OwnerPattern::parse(""), Err(Error::Empty));
        for bad in ["/api", "acme/", "a/b/c"] {
            assert_eq!(
                OwnerPattern::parse(bad),
                Err(Error::Shape(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            OwnerPattern::parse("ac me"),
            Err(Error::Character("ac me".into()))
        );
    }

    #[test]
    fn github_app_repository_of_a_url() {
        let of = |u: &str| repository(&Url::parse(u).expect("url"), "");
        let pair = |o: &str, r: &str| Some((o.to_owned(), r.to_owned()));
        assert_eq!(of("https://github.com/acme/api.git"), pair("acme", "api"));
        assert_eq!(of("https://github.com/acme/api/"), pair("acme", "api"));
        assert_eq!(of("http://127.0.0.1:81/acme/api"), pair("acme", "api"));
        assert_eq!(of("https://github.com/acme"), None);
        assert_eq!(of("https://gitlab.com/a/b/c.git"), None);
        let under = |u: &str| repository(&Url::parse(u).expect("url"), "/github");
        assert_eq!(under("http://h/github/acme/api.git"), pair("acme", "api"));
        assert_eq!(under("http://h/githubx/acme/api.git"), None);
        assert_eq!(under("http://h/acme/api.git"), None);
        let host = |u: &str| authority(&Url::parse(u).expect("url"));
        assert_eq!(
            host("https://GitHub.com:443/a/b"),
            Some("github.com".into())
        );
        assert_eq!(
            host("http://127.0.0.1:8080/a/b"),
            Some("127.0.0.1:8080".into())
        );
    }
}
