//! Repository locations: the URL forms git accepts, parsed once into a
//! [`RepoUrl`] whose `Display` never shows a secret.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a repository lives and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// A path on this machine: `/abs`, `./rel`, `../rel`, `rel` or `file:///abs`.
    Local {
        path: PathBuf,
        /// The `file://` URL as written, which is how it is shown (a
        /// `file://` URL holds no credentials); `None` for a plain path.
        url: Option<String>,
    },
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
    #[error("unsupported transport {transport:?} in {shown:?}: kalandra speaks file, ssh, git and http(s) itself and runs no remote helper (<transport>::<address>)")]
    UnsupportedTransport { transport: String, shown: String },
}

/// The longest git:// host and path: the request `git-receive-pack <path>\0host=<host>:<port>\0\0version=2\0`
/// is one pkt-line of at most 65516 bytes (gitprotocol-pack, "Git
/// Transport"), and the fixed parts take 41 of them.
const GIT_REQUEST_ROOM: usize = 65_516 - 41;

impl RepoUrl {
    /// Parses a location the way git does: a `scheme://` URL, else an
    /// scp-like `host:path` when a `:` comes before the first `/`, else a
    /// local path.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if input.is_empty() {
            return Err(Error::Empty);
        }
        if let Some((scheme, _)) = input.split_once("://") {
            if is_scheme(scheme) {
                return Self::parse_url(input, &scheme.to_ascii_lowercase());
            }
            // git would take `ht_tp://u:p@h/r` for an scp-like host `ht_tp`
            // with the path `//u:p@h/r`, and show the secret in that path.
            // Nobody means that.
            return Err(Error::Malformed {
                shown: shown(input),
                reason: "expected a scheme of letters, digits, '+', '-' and '.' before \"://\""
                    .into(),
            });
        }
        // `<transport>::<address>` makes git run git-remote-<transport>
        // (`ext::`, `fd::`, ...; transport.c, `transport_get`). It is no
        // scp-like host `ext` with the path `:...`.
        if let Some((transport, _)) = input.split_once("::") {
            if is_scheme(transport) {
                return Err(Error::UnsupportedTransport {
                    transport: transport.to_owned(),
                    shown: shown(input),
                });
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
                    url: None,
                })
            }
        }
    }

    fn parse_url(input: &str, scheme: &str) -> Result<Self, Error> {
        let malformed = |reason: String| Error::Malformed {
            shown: shown(input),
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
                    url: Some(input.to_owned()),
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
            "git" => {
                let (host, path) = (host()?, path()?);
                if host.len() + path.len() > GIT_REQUEST_ROOM {
                    return Err(malformed(format!(
                        "the host and path take {} bytes; a git:// request holds at most {GIT_REQUEST_ROOM}",
                        host.len() + path.len()
                    )));
                }
                Ok(Self::Git {
                    host,
                    port: parsed.port(),
                    path,
                })
            }
            "http" | "https" => {
                host()?;
                Ok(Self::Http { url: parsed })
            }
            other => Err(Error::UnsupportedScheme {
                scheme: other.to_owned(),
                shown: shown(input),
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
                shown: shown(input),
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
            Self::Local { path, .. } => Some(path),
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

/// A URL scheme or a remote-helper name as git reads them (RFC 3986:
/// a letter, then letters, digits, `+`, `-` and `.`).
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Masks the secret of every URL in `text`: `scheme://user:secret@host`
/// becomes `scheme://user:***@host`. For text that may not parse as a URL
/// (it is used on input that failed to parse, and on whole messages), so it
/// is lenient: the secret may hold a raw `/`, `@` or `:`, and runs up to
/// the last `@` of the URL-looking word. It errs towards masking too much
/// (a path with `@` after a `host:port/` may be masked too) and never shows
/// a secret. A user name alone is shown, as [`RepoUrl`]'s `Display` does.
pub fn mask_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        // The URL-looking word ends at white space, a quote or the `=>` of
        // a kalandra:: pair.
        let word_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let word_end = after[..word_end].find("=>").unwrap_or(word_end);
        let word = &after[..word_end];
        // The last `@` whose prefix can be `user[:secret]`: a user name has
        // no `/`, a secret (after the first `:`) may hold anything.
        let first_slash = word.find('/').unwrap_or(word.len());
        let colon_before_slash = word[..first_slash].contains(':');
        let userinfo_end = word
            .rmatch_indices('@')
            .map(|(at, _)| at)
            .find(|&at| at < first_slash || colon_before_slash);
        match userinfo_end {
            Some(at) => {
                let userinfo = &word[..at];
                match userinfo.split_once(':') {
                    Some((user, _secret)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                rest = &after[at..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// `input` as quoted in an error: masked, and cut to a readable length.
fn shown(input: &str) -> String {
    const LIMIT: usize = 200;
    let masked = mask_credentials(input);
    match masked.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &masked[..cut]),
        None => masked,
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local { url: Some(url), .. } => f.write_str(url),
            Self::Local { path, url: None } => write!(f, "{}", path.display()),
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

    #[test]
    fn mask_credentials_hides_every_form_of_secret() {
        let cases = [
            (
                "https://alice:hunter2@example.com/r.git",
                "https://alice:***@example.com/r.git",
            ),
            (
                "https://alice:hun/ter2@example.com/r.git",
                "https://alice:***@example.com/r.git",
            ),
            (
                "https://alice:hun@ter2@example.com/r.git",
                "https://alice:***@example.com/r.git",
            ),
            (
                "https://alice:hun:ter2@example.com/r.git",
                "https://alice:***@example.com/r.git",
            ),
            (
                "https://alice:h/u@n:t/er2@example.com:99999/r",
                "https://alice:***@example.com:99999/r",
            ),
            (
                "ftp://alice:hunter2@example.com",
                "ftp://alice:***@example.com",
            ),
            (
                "see \"https://a:hunter2@x/y\" and git://b:hunter2@z/w.",
                "see \"https://a:***@x/y\" and git://b:***@z/w.",
            ),
            (
                "https://a:hunter2@x/y=>https://b:hunter2@z/w",
                "https://a:***@x/y=>https://b:***@z/w",
            ),
            (
                "https://token@example.com/r.git",
                "https://token@example.com/r.git",
            ),
            (
                "https://example.com/r@v1.git",
                "https://example.com/r@v1.git",
            ),
            ("/srv/a@b:c", "/srv/a@b:c"),
            ("no url here", "no url here"),
            ("://:hunter2@", "://:***@"),
            ("é://é:hunter2é@é", "é://é:***@é"),
        ];
        for (input, masked) in cases {
            assert_eq!(mask_credentials(input), masked, "{input}");
        }
    }

    #[test]
    fn unparsable_urls_never_show_their_secret() {
        for bad in [
            "https://alice:hunter2@example.com:99999/r.git",
            "https://alice:hun/ter2@example.com/r.git",
            "ftp://alice:hunter2@example.com/r.git",
            "git://alice:hunter2@example.com",
            "file://alice:hunter2@remote.example/r.git",
            "ht-tp://alice:hunter2@example.com/r.git",
            "ht_tp://alice:hunter2@example.com/r.git",
            "see https://alice:hunter2@example.com/r.git",
            "ext::https://alice:hunter2@example.com/r.git",
        ] {
            let err = RepoUrl::parse(bad).expect_err(bad);
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("ter2"), "{shown}");
        }
    }

    #[test]
    fn remote_helper_transports_are_unsupported_not_scp_hosts() {
        for input in [
            "ext::sh -c 'touch /tmp/pwned'",
            "fd::0",
            "fd::3,4/path",
            "kalandra::/a=>/b",
        ] {
            let err = RepoUrl::parse(input).expect_err(input);
            assert!(
                matches!(err, Error::UnsupportedTransport { .. }),
                "{input}: {err:?}"
            );
            assert!(err.to_string().contains("unsupported transport"), "{err}");
        }
        assert!(matches!(parse("host:a::b"), RepoUrl::Ssh { .. }));
    }

    #[test]
    fn git_paths_too_long_for_the_request_are_refused() {
        let path = "p".repeat(GIT_REQUEST_ROOM);
        let err = RepoUrl::parse(&format!("git://h/{path}")).expect_err("too long");
        assert!(
            err.to_string().contains("a git:// request holds at most"),
            "{err}"
        );
        assert!(err.to_string().len() < 500, "the path is not quoted whole");
        let fits = "p".repeat(GIT_REQUEST_ROOM - 2);
        parse(&format!("git://h/{fits}"));
    }
}
