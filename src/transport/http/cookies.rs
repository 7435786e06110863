//! `http.cookieFile`: cookies read from a file in the Netscape format curl
//! reads for git (one cookie a line: domain, include-subdomains, path,
//! secure, expiry, name, value, separated by tabs), sent to the servers
//! they match.
//!
//! Hand-written rather than reqwest's cookie store: that store parses
//! `Set-Cookie` headers, not this file format, and the matching here is a
//! few lines. Cookies a server sets are not kept (`http.saveCookies` is not
//! honoured: Kalandra keeps no state between runs).
//!
//! Values are secrets (session cookies): `Debug` shows only names.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use url::Url;

/// One cookie of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    /// Without a leading dot.
    domain: String,
    include_subdomains: bool,
    path: String,
    secure: bool,
    /// Seconds since the epoch; 0 for a session cookie (sent, as curl sends
    /// it while it lasts).
    expires: u64,
    name: String,
    value: String,
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cookie")
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The cookies of a Netscape cookie file. Comments, blank lines and lines
/// of another shape are skipped (curl skips them too); `#HttpOnly_` before
/// a domain only marks the cookie for scripts, which do not exist here.
pub fn parse(text: &str) -> Vec<Cookie> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_end_matches('\r');
            let line = line.strip_prefix("#HttpOnly_").unwrap_or(line);
            if line.starts_with('#') || line.trim().is_empty() {
                return None;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let [domain, subdomains, path, secure, expires, name, value] = fields[..] else {
                return None;
            };
            let domain = domain.trim_start_matches('.').to_ascii_lowercase();
            if domain.is_empty() {
                return None;
            }
            Some(Cookie {
                domain,
                include_subdomains: subdomains.eq_ignore_ascii_case("TRUE"),
                path: path.to_owned(),
                secure: secure.eq_ignore_ascii_case("TRUE"),
                expires: expires.parse().unwrap_or(0),
                name: name.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// The `Cookie` header for a request to `url` at `now`: every cookie whose
/// domain, path and scheme match and that has not expired, in file order.
pub fn header_for(cookies: &[Cookie], url: &Url, now: SystemTime) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let pairs: Vec<String> = cookies
        .iter()
        .filter(|c| {
            let domain = host == c.domain
                || (c.include_subdomains && host.ends_with(&format!(".{}", c.domain)));
            domain
                && path_matches(url.path(), &c.path)
                && (!c.secure || url.scheme() == "https")
                && (c.expires == 0 || c.expires > now)
        })
        .map(|c| format!("{}={}", c.name, c.value))
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("; "))
}

/// RFC 6265 5.1.4: the cookie path is the request path, or a prefix of it
/// ending in `/` or followed by `/`.
fn path_matches(path: &str, cookie_path: &str) -> bool {
    if cookie_path.is_empty() {
        return true;
    }
    match path.strip_prefix(cookie_path) {
        Some(rest) => rest.is_empty() || cookie_path.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Netscape HTTP Cookie File\n\
        \n\
        git.example\tFALSE\t/\tFALSE\t0\tsession\ts3cret\n\
        .example.org\tTRUE\t/team\tTRUE\t4102444800\tsso\tabc\n\
        #HttpOnly_git.example\tFALSE\t/\tFALSE\t0\thttponly\tyes\n\
        old.example\tFALSE\t/\tFALSE\t1\texpired\tgone\n\
        not a cookie line\n";

    fn header(url: &str) -> Option<String> {
        let url = Url::parse(url).expect("a valid URL");
        header_for(
            &parse(FILE),
            &url,
            UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000),
        )
    }

    #[test]
    fn parses_the_netscape_format() {
        let cookies = parse(FILE);
        assert_eq!(cookies.len(), 4);
        assert_eq!(cookies[1].domain, "example.org");
        assert!(cookies[1].include_subdomains && cookies[1].secure);
        assert_eq!(cookies[2].name, "httponly");
    }

    #[test]
    fn sends_what_matches() {
        assert_eq!(
            header("http://git.example/r.git/info/refs").as_deref(),
            Some("session=s3cret; httponly=yes")
        );
        assert_eq!(
            header("https://git.example.org/team/r.git").as_deref(),
            Some("sso=abc")
        );
        // Secure cookies only over https; paths on boundaries; no subdomain
        // without the flag; expired cookies never.
        assert_eq!(header("http://git.example.org/team/r.git"), None);
        assert_eq!(header("https://git.example.org/teamwork/r.git"), None);
        assert_eq!(header("http://a.git.example/r.git"), None);
        assert_eq!(header("http://old.example/r.git"), None);
    }

    #[test]
    fn debug_hides_values() {
        let shown = format!("{:?}", parse(FILE));
        assert!(
            !shown.contains("s3cret") && shown.contains("session"),
            "{shown}"
        );
    }
}
