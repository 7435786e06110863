//! Repository locations: the URL forms git accepts, parsed once into a
//! [`RepoUrl`] whose `Display` never shows a secret.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a repository lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// A path on this machine: `/abs`, `./rel`, `../rel`, `rel` or `file:///abs`.
    Local { path: PathBuf },
    /// `ssh://[user@]host[:port]/path` or scp-like `[user@]host:path`.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `git://host[:port]/path`.
    Git {
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// `http[s]://[user[:secret]@]host[:port]/path`.
    Http { url: url::Url },
}

/// A repository location that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("empty repository location")]
    Empty,
    #[error("unsupported URL scheme {scheme:?} in {shown:?}: expected file://, ssh://, git://, http:// or https://")]
    UnsupportedScheme { scheme: String, shown: String },
    #[error("malformed URL {shown:?}: {reason}")]
    Malformed { shown: String, reason: String },
    #[error("refusing {what} {value:?}: it begins with '-' and would be read as an option")]
    LooksLikeOption { what: &'static str, value: String },
}

impl RepoUrl {
    /// Parses a location the way git does: a `scheme://` URL, else an
    /// scp-like `host:path` when a `:` comes before the first `/`, else a
    /// local path.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if input.is_empty() {
            return Err(Error::Empty);
        }
        if let Some((scheme, _)) = input.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
            {
                return Self::parse_url(input, &scheme.to_ascii_lowercase());
            }
        }
        let colon = input.find(':');
        let slash = input.find('/');
        match (colon, slash) {
            (Some(c), s) if s.is_none_or(|s| c < s) => Self::parse_scp(input, c),
            _ => {
                refuse_option("path", input)?;
                Ok(Self::Local {
                    path: PathBuf::from(input),
                })
            }
        }
    }

    fn parse_url(input: &str, scheme: &str) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            shown: mask_userinfo(input),
            reason,
        };
        let parsed = url::Url::parse(input).map_err(|e| malformed(e.to_string()))?;
        let host = || -> Result<String, Error> {
            let host = parsed
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| malformed("no host".into()))?;
            refuse_option("host", host)?;
            Ok(host.to_owned())
        };
        let path = || -> Result<String, Error> {
            let path = percent_decode(parsed.path());
            if path.is_empty() || path == "/" {
                return Err(malformed("no repository path".into()));
            }
            Ok(path)
        };
        match scheme {
            "file" => {
                if parsed
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(malformed("file:// URLs cannot name a remote host".into()));
                }
                Ok(Self::Local {
                    path: PathBuf::from(path()?),
                })
            }
            "ssh" | "git+ssh" | "ssh+git" => {
                let user = Some(percent_decode(parsed.username())).filter(|u| !u.is_empty());
                if let Some(user) = &user {
                    refuse_option("user", user)?;
                }
                let host = host()?;
                // git treats `ssh://host/~user/repo` as a path relative to
                // the home directory: keep the `~` form without the slash.
                let mut path = path()?;
                if path.starts_with("/~") {
                    path.remove(0);
                }
                Ok(Self::Ssh {
                    user,
                    host,
                    port: parsed.port(),
                    path,
                })
            }
            "git" => Ok(Self::Git {
                host: host()?,
                port: parsed.port(),
                path: path()?,
            }),
            "http" | "https" => {
                host()?;
                Ok(Self::Http { url: parsed })
            }
            other => Err(Error::UnsupportedScheme {
                scheme: other.to_owned(),
                shown: mask_userinfo(input),
            }),
        }
    }

    fn parse_scp(input: &str, colon: usize) -> Result<Self, Error> {
        let (authority, path) = (&input[..colon], &input[colon + 1..]);
        let (user, host) = match authority.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_owned()), host),
            None => (None, authority),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || path.is_empty() {
            return Err(Error::Malformed {
                shown: input.to_owned(),
                reason: "expected [user@]host:path".into(),
            });
        }
        refuse_option("host", host)?;
        if let Some(user) = &user {
            refuse_option("user", user)?;
        }
        Ok(Self::Ssh {
            user,
            host: host.to_owned(),
            port: None,
            path: path.to_owned(),
        })
    }

    /// The local path, for [`RepoUrl::Local`].
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Self::Local { path } => Some(path),
            _ => None,
        }
    }

    /// The scheme name, for messages.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Local { .. } => "file",
            Self::Ssh { .. } => "ssh",
            Self::Git { .. } => "git",
            Self::Http { url } if url.scheme() == "https" => "https",
            Self::Http { .. } => "http",
        }
    }
}

fn refuse_option(what: &'static str, value: &str) -> Result<(), Error> {
    if value.starts_with('-') {
        return Err(Error::LooksLikeOption {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Replaces the `user:secret@` part of a URL-looking string with a masked form.
fn mask_userinfo(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else {
        return input.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => input.to_owned(),
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { path } => write!(f, "{}", path.display()),
            Self::Ssh {
                user,
                host,
                port,
                path,
            } => {
                f.write_str("ssh://")?;
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                f.write_str(host)?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                if !path.starts_with('/') {
                    f.write_str("/")?;
                }
                f.write_str(path)
            }
            Self::Git { host, port, path } => match port {
                Some(port) => write!(f, "git://{host}:{port}{path}"),
                None => write!(f, "git://{host}{path}"),
            },
            Self::Http { url } => {
                if url.password().is_some() {
                    let mut shown = url.clone();
                    shown
                        .set_password(Some("***"))
                        .expect("because a URL with a password can hold another");
                    write!(f, "{shown}")
                } else {
                    write!(f, "{url}")
                }
            }
        }
    }
}

impl fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RepoUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RepoUrl {
        RepoUrl::parse(s).expect("valid location")
    }

    #[test]
    fn local_forms() {
        assert_eq!(
            parse("/srv/a.git").local_path(),
            Some(Path::new("/srv/a.git"))
        );
        assert_eq!(parse("./a").local_path(), Some(Path::new("./a")));
        assert_eq!(parse("a/b").local_path(), Some(Path::new("a/b")));
        assert_eq!(
            parse("file:///srv/my%20repo.git").local_path(),
            Some(Path::new("/srv/my repo.git"))
        );
    }

    #[test]
    fn ssh_forms() {
        assert_eq!(
            parse("git@example.com:org/repo.git"),
            RepoUrl::Ssh {
                user: Some("git".into()),
                host: "example.com".into(),
                port: None,
                path: "org/repo.git".into()
            }
        );
        let url = parse("ssh://git@example.com:2222/org/repo.git");
        assert_eq!(url.to_string(), "ssh://git@example.com:2222/org/repo.git");
        assert_eq!(
            parse("ssh://h/~u/r").to_string(),
            "ssh://h/~u/r",
            "home-relative paths survive"
        );
    }

    #[test]
    fn http_display_masks_the_secret() {
        let url = parse("https://alice:hunter2@example.com/r.git");
        let shown = url.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn errors_mask_the_secret_too() {
        let err = RepoUrl::parse("ftp://alice:hunter2@example.com/r.git").expect_err("bad scheme");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("ftp"), "{err}");
    }

    #[test]
    fn refuses_option_like_parts() {
        for bad in [
            "-oProxyCommand=x",
            "-x:path",
            "ssh://-oProxyCommand=x/r",
            "u@-h:p",
        ] {
            assert!(
                matches!(RepoUrl::parse(bad), Err(Error::LooksLikeOption { .. })),
                "{bad} should be refused"
            );
        }
        assert!(matches!(
            RepoUrl::parse("ssh://-user@h/r"),
            Err(Error::LooksLikeOption { what: "user", .. })
        ));
    }

    #[test]
    fn empty_and_pathless() {
        assert_eq!(RepoUrl::parse(""), Err(Error::Empty));
        assert!(matches!(
            RepoUrl::parse("git://host"),
            Err(Error::Malformed { .. })
        ));
    }
}
