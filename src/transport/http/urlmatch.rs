//! Which `http.<url>.*` sections apply to a repository URL, and how well,
//! with git's rules (urlmatch.c; git-config(1), `http.<url>.*`).
//!
//! `git config --get-urlmatch` does this, but shows only the last value of
//! a multi-valued key (`http.extraHeader`), and it is one more process per
//! connection; so all `http.*` entries are read once ([`crate::git_config`])
//! and matched here. The URL crate normalises both URLs as git does (scheme
//! and host in lower case, default port dropped, `.` and `..` resolved).

use url::Url;

use crate::git_config::GitConfig;

/// The `http.*` entries that apply to `url`, as git's urlmatch applies
/// them: per variable, an entry from a section that matches at least as
/// well as the best one seen so far for that variable is kept, a worse one
/// is skipped. Kept entries are keyed `http.<variable>`, in order, so the
/// last one is git's value of a single-valued key and all of them are the
/// values of a multi-valued one.
pub fn pick(config: &GitConfig, url: &Url) -> GitConfig {
    let mut best: std::collections::HashMap<&str, Match> = std::collections::HashMap::new();
    let mut kept = Vec::new();
    for (key, value) in config.entries() {
        let Some(rest) = key.strip_prefix("http.") else {
            continue;
        };
        let (rank, variable) = match rest.rsplit_once('.') {
            None => (Match::ANY, rest),
            Some((config_url, variable)) => match matches(config_url, url) {
                Some(rank) => (rank, variable),
                None => continue,
            },
        };
        if best.get(variable).is_some_and(|best| rank < *best) {
            continue;
        }
        best.insert(variable, rank);
        kept.push((format!("http.{variable}"), value.map(str::to_owned)));
    }
    GitConfig::from_entries(kept)
}

/// How well a config URL matches, ordered as git ranks them: the host
/// first (a longer host pattern is more specific), then the path, then
/// whether a user name was given and matched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Match {
    host_len: usize,
    path_len: usize,
    user_matched: bool,
}

impl Match {
    /// The rank of a key without a URL (`http.extraHeader`): it applies to
    /// every URL, below any `http.<url>.` section that matches.
    pub const ANY: Match = Match {
        host_len: 0,
        path_len: 0,
        user_matched: false,
    };
}

/// How `config` (the `<url>` of an `http.<url>.*` key) matches `url`, or
/// `None` when it does not apply.
pub fn matches(config: &str, url: &Url) -> Option<Match> {
    let pattern = Url::parse(config).ok()?;
    if pattern.scheme() != url.scheme() {
        return None;
    }
    let user_matched = if pattern.username().is_empty() {
        false
    } else if pattern.username() == url.username() {
        true
    } else {
        return None;
    };
    let host = pattern.host_str().unwrap_or_default();
    if !host_matches(host, url.host_str().unwrap_or_default()) {
        return None;
    }
    if pattern.port() != url.port() {
        return None;
    }
    let path_len = path_prefix_len(url.path(), pattern.path())?;
    Some(Match {
        host_len: host.len(),
        path_len,
        user_matched,
    })
}

/// Host names compared by dot-separated component; a component `*`
/// matches any one component (`*.example.com` matches `a.example.com`, not
/// `example.com` nor `a.b.example.com`).
fn host_matches(pattern: &str, host: &str) -> bool {
    let (mut pattern, mut host) = (pattern.split('.'), host.split('.'));
    loop {
        match (pattern.next(), host.next()) {
            (None, None) => return true,
            (Some(p), Some(h)) if p == "*" || p == h => {}
            _ => return false,
        }
    }
}

/// git's `url_match_prefix`: the prefix matches when it is the path or a
/// prefix of it that ends on a `/` boundary, both taken as ending in an
/// implicit `/`. The length counts that final `/`.
fn path_prefix_len(path: &str, prefix: &str) -> Option<usize> {
    if prefix.is_empty() || prefix == "/" {
        return (path.is_empty() || path.starts_with('/')).then_some(1);
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a valid URL")
    }

    #[test]
    fn scheme_host_and_port_must_match() {
        let repo = url("https://github.com/owner/repo");
        assert!(matches("https://github.com/", &repo).is_some());
        assert!(matches("https://GitHub.com", &repo).is_some());
        assert!(matches("https://github.com:443/", &repo).is_some());
        assert!(matches("http://github.com/", &repo).is_none());
        assert!(matches("https://github.com:8443/", &repo).is_none());
        assert!(matches("https://gitlab.com/", &repo).is_none());
        assert!(matches("not a url", &repo).is_none());
    }

    #[test]
    fn paths_match_on_segment_boundaries() {
        let repo = url("https://h.example/team/repo.git");
        assert!(matches("https://h.example/team", &repo).is_some());
        assert!(matches("https://h.example/team/", &repo).is_some());
        assert!(matches("https://h.example/team/repo.git", &repo).is_some());
        assert!(matches("https://h.example/te", &repo).is_none());
        assert!(matches("https://h.example/other/", &repo).is_none());
    }

    #[test]
    fn wildcards_match_one_host_component() {
        let repo = url("https://a.example.com/r");
        assert!(matches("https://*.example.com/", &repo).is_some());
        assert!(matches("https://*.example.com/", &url("https://example.com/r")).is_none());
        assert!(matches("https://*.example.com/", &url("https://a.b.example.com/r")).is_none());
    }

    #[test]
    fn a_user_in_the_config_url_must_be_the_urls() {
        let repo = url("https://alice@h.example/r");
        assert!(matches("https://alice@h.example/", &repo).is_some());
        assert!(matches("https://bob@h.example/", &repo).is_none());
        assert!(matches("https://bob@h.example/", &url("https://h.example/r")).is_none());
    }

    #[test]
    fn pick_keeps_the_best_match_per_variable_in_order() {
        let listing = "http.sslverify\nfalse\0\
            http.https://h.example/team.sslverify\ntrue\0\
            http.https://h.example/.sslverify\nfalse\0\
            http.https://other.example/.proxy\nhttp://p:1\0\
            http.extraheader\nA: 1\0\
            http.https://h.example/.extraheader\nB: 2\0\
            http.extraheader\nC: 3\0\
            http.https://h.example/.extraheader\nD: 4\0";
        let picked = pick(
            &GitConfig::from_listing(listing),
            &url("https://h.example/team/repo.git"),
        );
        let entries: Vec<_> = picked.entries().collect();
        assert_eq!(
            entries,
            [
                ("http.sslverify", Some("false")),
                ("http.sslverify", Some("true")),
                ("http.extraheader", Some("A: 1")),
                ("http.extraheader", Some("B: 2")),
                ("http.extraheader", Some("D: 4")),
            ],
            "the less specific sslVerify after the team's is skipped; the proxy is for another \
             host; C is less specific than B"
        );
        assert_eq!(picked.last("http.sslverify"), Some(Some("true")));
    }

    #[test]
    fn ranks_as_git() {
        let repo = url("https://alice@h.example/team/repo.git");
        let rank = |config: &str| matches(config, &repo).expect(config);
        assert!(Match::ANY < rank("https://h.example/"));
        assert!(rank("https://h.example/") < rank("https://h.example/team"));
        assert!(rank("https://h.example/team") < rank("https://alice@h.example/team"));
        assert_eq!(
            rank("https://h.example/team"),
            rank("https://h.example/team/")
        );
        // A longer host pattern outranks a longer path.
        let repo = url("https://git.h.example/team/repo.git");
        let rank = |config: &str| matches(config, &repo).expect(config);
        assert!(rank("https://*.h.example/team/repo.git") < rank("https://git.h.example/"));
    }
}
