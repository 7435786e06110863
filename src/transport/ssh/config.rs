//! The parts of `~/.ssh/config` (ssh_config(5)) that decide how to reach a
//! host: pure parsing, no I/O.
//!
//! As in OpenSSH, the first value obtained for an option wins (so specific
//! `Host` blocks go first in the file), except `IdentityFile`, whose values
//! accumulate. `Match` blocks are skipped: their conditions need more than
//! the host name.

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown and changed keys (also `ask`: nobody can be asked).
    Yes,
    /// Trust and record an unknown key; refuse a changed one.
    AcceptNew,
    /// As `AcceptNew` (OpenSSH records the key too). Unlike OpenSSH, a
    /// changed key is still refused: a mirror has no password to protect
    /// by degrading, only data to protect.
    No,
}

impl StrictHostKeyChecking {
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "yes" | "ask" | "true" => Some(Self::Yes),
            "accept-new" => Some(Self::AcceptNew),
            "no" | "off" | "false" => Some(Self::No),
            _ => None,
        }
    }
}

/// The settings that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub user_known_hosts_files: Option<Vec<String>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub connect_timeout: Option<u64>,
}

/// Reads the settings for `host` (the name as given in the URL) from the
/// text of an ssh_config file.
pub fn for_host(text: &str, host: &str) -> HostConfig {
    let mut config = HostConfig::default();
    let mut active = true;
    for line in text.lines() {
        let Some((key, value)) = split_line(line) else {
            continue;
        };
        match key.as_str() {
            "host" => {
                active = host_matches(&value, host);
                continue;
            }
            "match" => {
                active = false;
                continue;
            }
            _ if !active => continue,
            _ => {}
        }
        let first = value
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        match key.as_str() {
            "hostname" => set_once(&mut config.host_name, first),
            "user" => set_once(&mut config.user, first),
            "port" => {
                if let Ok(port) = first.parse() {
                    set_once(&mut config.port, port);
                }
            }
            "identityfile" => config.identity_files.push(value.clone()),
            "identitiesonly" => {
                set_once(&mut config.identities_only, yes_no(&first));
            }
            "userknownhostsfile" => set_once(
                &mut config.user_known_hosts_files,
                value.split_whitespace().map(str::to_owned).collect(),
            ),
            "stricthostkeychecking" => {
                if let Some(mode) = StrictHostKeyChecking::parse(&first) {
                    set_once(&mut config.strict_host_key_checking, mode);
                }
            }
            "connecttimeout" => {
                if let Ok(secs) = first.parse() {
                    set_once(&mut config.connect_timeout, secs);
                }
            }
            _ => {}
        }
    }
    config
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn yes_no(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "yes" | "true")
}

/// `Key value`, `Key=value` or `Key = value`, with comments and blank lines
/// skipped; the key lowercased, surrounding quotes removed from the value.
fn split_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let split = line.find(|c: char| c.is_whitespace() || c == '=')?;
    let key = line[..split].to_ascii_lowercase();
    let value = line[split..]
        .trim_start_matches(|c: char| c.is_whitespace())
        .trim_start_matches('=')
        .trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((key, value.to_owned()))
}

/// A `Host` line's patterns: any positive match and no negated match.
fn host_matches(patterns: &str, host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split_whitespace() {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, host) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, host),
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive as host names are.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Expands `~` and the tokens ssh_config allows in file names:
/// `%d` home, `%h` host, `%r` remote user, `%u` local user, `%%`.
pub fn expand_path(
    raw: &str,
    home: &str,
    host: &str,
    remote_user: &str,
    local_user: &str,
) -> String {
    let raw = match raw.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None if raw == "~" => home.to_owned(),
        None => raw.to_owned(),
    };
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(home),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(remote_user),
            Some('u') => out.push_str(local_user),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# a comment
Host mirror mirror.example
    HostName 10.0.0.7
    User git
    Port 2222
    IdentityFile ~/.ssh/mirror_key
    IdentitiesOnly yes
    UserKnownHostsFile /etc/mirror_known_hosts ~/.ssh/known_hosts2
    StrictHostKeyChecking accept-new

Host *.example !secret.example
    User=other
    IdentityFile \"~/.ssh/id with space\"

Match host mirror
    User never-used

Host *
    User fallback
    Port 22
    IdentityFile ~/.ssh/id_default
";

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = for_host(CONFIG, "mirror");
        assert_eq!(c.host_name.as_deref(), Some("10.0.0.7"));
        assert_eq!(c.user.as_deref(), Some("git"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.identity_files,
            vec!["~/.ssh/mirror_key", "~/.ssh/id_default"]
        );
        assert_eq!(c.identities_only, Some(true));
        assert_eq!(
            c.user_known_hosts_files,
            Some(vec![
                "/etc/mirror_known_hosts".to_owned(),
                "~/.ssh/known_hosts2".to_owned()
            ])
        );
        assert_eq!(
            c.strict_host_key_checking,
            Some(StrictHostKeyChecking::AcceptNew)
        );
    }

    #[test]
    fn patterns_and_negation() {
        let c = for_host(CONFIG, "a.example");
        assert_eq!(c.user.as_deref(), Some("other"));
        assert_eq!(c.identity_files[0], "~/.ssh/id with space");
        let c = for_host(CONFIG, "secret.example");
        assert_eq!(
            c.user.as_deref(),
            Some("fallback"),
            "negated pattern skips the block"
        );
        let c = for_host(CONFIG, "MIRROR");
        assert_eq!(c.port, Some(2222), "host names compare case-insensitively");
        assert!(glob("h?st-*", "host-1"));
        assert!(!glob("h?st", "hoost"));
    }

    #[test]
    fn match_blocks_are_skipped() {
        let c = for_host("Match all\n  User nobody\n", "x");
        assert_eq!(c.user, None);
    }

    #[test]
    fn expands_tokens() {
        assert_eq!(
            expand_path("~/.ssh/%h_%r_%u%%", "/home/me", "h", "git", "me"),
            "/home/me/.ssh/h_git_me%"
        );
        assert_eq!(expand_path("%d/k", "/root", "h", "r", "u"), "/root/k");
    }
}
