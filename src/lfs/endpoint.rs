//! Where a repository's LFS objects live, found as git-lfs finds them
//! (`docs/api/server-discovery.md`): `<url>.git/info/lfs` for an http(s)
//! remote, a `.git` added when the URL lacks one, unless the config names
//! the endpoint outright (`lfs.url`-style).

use url::Url;

use crate::url::RepoUrl;

/// The LFS endpoint of `repo`, or `None` where git-lfs would need more
/// than the URL (ssh's `git-lfs-authenticate`, a local repository's own
/// storage). Credentials in the URL are dropped: they are sent as git's
/// are. Pure.
pub fn for_repo(repo: &RepoUrl) -> Option<Url> {
    let RepoUrl::Http { url } = repo else {
        return None;
    };
    let mut endpoint = url.clone();
    let _ = endpoint.set_username("");
    let _ = endpoint.set_password(None);
    endpoint.set_query(None);
    endpoint.set_fragment(None);
    let path = url.path().trim_end_matches('/');
    let path = if path.ends_with(".git") {
        format!("{path}/info/lfs")
    } else {
        format!("{path}.git/info/lfs")
    };
    endpoint.set_path(&path);
    Some(endpoint)
}

/// A side's LFS endpoint and the URL whose user and password go with it:
/// `given` (`--*-lfs-url`) when set, else derived from `repo`. `None`
/// when there is neither. Pure.
pub fn side(repo: &RepoUrl, given: Option<&Url>) -> Option<(Url, Url)> {
    let endpoint = given.cloned().or_else(|| for_repo(repo))?;
    let credentials_from = match repo {
        RepoUrl::Http { url } if given.is_none() => url.clone(),
        _ => endpoint.clone(),
    };
    Some((endpoint, credentials_from))
}

/// What `git-lfs-authenticate` answers (git-lfs `docs/api/server-discovery.md`):
/// the endpoint and the headers to send to it. `Debug` leaves the headers
/// out: they hold a token.
#[derive(Clone, serde::Deserialize)]
pub struct Authenticated {
    pub href: String,
    #[serde(default)]
    pub header: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("href", &crate::url::mask_credentials(&self.href))
            .finish_non_exhaustive()
    }
}

/// The command git-lfs runs over ssh for `path`: `git-lfs-authenticate
/// 'PATH' download|upload`. Pure.
pub fn authenticate_command(path: &str, upload: bool) -> String {
    format!(
        "git-lfs-authenticate {} {}",
        crate::transport::ssh::sq_quote(path),
        if upload { "upload" } else { "download" }
    )
}

/// `git-lfs-authenticate`'s answer, checked: an http(s) `href`. Pure.
pub fn parse_authenticated(out: &[u8]) -> Result<(Url, Authenticated), String> {
    let answer: Authenticated = serde_json::from_slice(out).map_err(|e| {
        format!(
            "git-lfs-authenticate answered what is not its JSON ({e}): {}",
            crate::terminal::escape(&String::from_utf8_lossy(&out[..out.len().min(200)]))
        )
    })?;
    let url = Url::parse(&answer.href)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            format!(
                "git-lfs-authenticate's href {} is not an http(s) URL",
                crate::url::mask_credentials(&answer.href)
            )
        })?;
    Ok((url, answer))
}

/// `{endpoint}/{path}` (`objects/batch`).
pub fn join(endpoint: &Url, path: &str) -> Url {
    let mut url = endpoint.clone();
    let joined = format!("{}/{path}", endpoint.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(raw: &str) -> Option<String> {
        for_repo(&RepoUrl::parse(raw).expect("a URL")).map(|u| u.to_string())
    }

    #[test]
    fn lfs_endpoints_are_derived_as_git_lfs_derives_them() {
        assert_eq!(
            endpoint("https://git.example/org/repo.git").as_deref(),
            Some("https://git.example/org/repo.git/info/lfs")
        );
        assert_eq!(
            endpoint("https://user:secret@git.example/org/repo/").as_deref(),
            Some("https://git.example/org/repo.git/info/lfs")
        );
        assert_eq!(
            endpoint("http://127.0.0.1:8080/git/repo").as_deref(),
            Some("http://127.0.0.1:8080/git/repo.git/info/lfs")
        );
        assert_eq!(endpoint("ssh://git@git.example/org/repo.git"), None);
        assert_eq!(endpoint("/srv/repo.git"), None);
        let given = Url::parse("https://lfs.example/store").expect("URL");
        let ssh = RepoUrl::parse("ssh://git@git.example/org/repo.git").expect("a URL");
        assert_eq!(
            side(&ssh, Some(&given))
                .map(|(e, _)| e.to_string())
                .as_deref(),
            Some("https://lfs.example/store")
        );
        assert_eq!(side(&ssh, None), None);
        assert_eq!(
            authenticate_command("/srv/it's.git", true),
            "git-lfs-authenticate '/srv/it'\\''s.git' upload"
        );
        let (url, answer) = parse_authenticated(
            br#"{"href":"https://lfs.example/r.git/info/lfs","header":{"Authorization":"Bearer t"},"expires_in":3600}"#,
        )
        .expect("valid");
        assert_eq!(url.as_str(), "https://lfs.example/r.git/info/lfs");
        assert_eq!(answer.header["Authorization"], "Bearer t");
        assert!(!format!("{answer:?}").contains("Bearer"));
        assert!(parse_authenticated(b"not json").is_err());
        assert!(parse_authenticated(br#"{"href":"ssh://x/y"}"#).is_err());
        let base = Url::parse("https://git.example/r.git/info/lfs").expect("URL");
        assert_eq!(
            join(&base, "objects/batch").as_str(),
            "https://git.example/r.git/info/lfs/objects/batch"
        );
    }
}
