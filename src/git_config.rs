//! The user's git configuration, read with `git config` itself so that
//! every file git reads (system, global, XDG, the repository's, includes,
//! `git -c` through `GIT_CONFIG_PARAMETERS`, `GIT_CONFIG_COUNT`) counts the
//! same for Kalandra. This is the only module that runs `git config`.
//!
//! What git prints is parsed by [`GitConfig::from_listing`], a pure
//! function; the settings modules ([`crate::url_rewrite`],
//! [`crate::protocol_settings`]) read a [`GitConfig`] and never run git.
//!
//! Every connection needs these settings, and a fleet makes hundreds of
//! connections a minute: one `git config` each doubled a no-op fleet
//! run's CPU. [`GitConfig::read`] therefore keeps what it read for
//! [`CACHE_FOR`], shared by everything in the process (concurrent callers
//! wait for the one read in flight). A change to the user's configuration
//! takes effect within that time, in a long-running `kalandra watch` too.

use std::collections::HashMap;
use std::process::{Output, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// How long a reading of the configuration is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(5);

type Reading = Arc<OnceCell<Result<GitConfig, Error>>>;

/// The readings of the last [`CACHE_FOR`], by pattern.
static CACHE: LazyLock<Mutex<HashMap<String, (Instant, Reading)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// `git config` could not be read: git itself would stop here too.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("cannot read the git configuration: {said}")]
    Unreadable { said: String },
}

/// The entries of the user's git configuration that one `--get-regexp`
/// selected, in the order git applies them (later wins for a single-valued
/// key).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GitConfig {
    /// `(key, value)`; the key as git prints it (section and variable in
    /// lower case, a subsection verbatim); `None` for a key written
    /// without `=` (git's "implicit true").
    entries: Vec<(String, Option<String>)>,
}

/// The keys Kalandra reads outside `http.*`: `url.<base>.insteadOf`,
/// `url.<base>.pushInsteadOf` and `protocol.*`.
pub const SETTINGS_PATTERN: &str = r"^(url\..*\.(insteadof|pushinsteadof)|protocol\..*)$";

impl GitConfig {
    /// The entries matching `pattern` (git's `--get-regexp`), read with
    /// the process's environment, or as read less than [`CACHE_FOR`] ago.
    /// No git on this machine means an empty configuration: there is then
    /// no configuration git would honour.
    pub async fn read(pattern: &str) -> Result<Self, Error> {
        let reading = {
            let mut cache = CACHE
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            cache.retain(|_, (read_at, _)| now.duration_since(*read_at) < CACHE_FOR);
            Arc::clone(
                &cache
                    .entry(pattern.to_owned())
                    .or_insert_with(|| (now, Arc::new(OnceCell::new())))
                    .1,
            )
        };
        reading
            .get_or_init(|| async {
                let output = tokio::process::Command::new("git")
                    .args(["config", "-z", "--get-regexp", pattern])
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await;
                Self::from_output(output)
            })
            .await
            .clone()
    }

    /// [`GitConfig::read`] for callers outside the async runtime (the
    /// fleet config's loader, the remote helper's URL).
    pub fn read_blocking(pattern: &str) -> Result<Self, Error> {
        let output = std::process::Command::new("git")
            .args(["config", "-z", "--get-regexp", pattern])
            .stdin(Stdio::null())
            .output();
        Self::from_output(output)
    }

    fn from_output(output: std::io::Result<Output>) -> Result<Self, Error> {
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                tracing::debug!("cannot run git config: {e}");
                return Ok(Self::default());
            }
        };
        // `--get-regexp` and `--get-urlmatch` exit 1 when nothing matches.
        match output.status.code() {
            Some(0) => Ok(Self::from_listing(&String::from_utf8_lossy(&output.stdout))),
            Some(1) => Ok(Self::default()),
            _ => Err(Error::Unreadable {
                said: first_line(&output.stderr),
            }),
        }
    }

    /// Parses `git config -z --get-regexp` output: `key\nvalue\0` per
    /// entry, or `key\0` for a key without a value.
    pub fn from_listing(listed: &str) -> Self {
        let entries = listed
            .split('\0')
            .filter(|entry| !entry.is_empty())
            .map(|entry| match entry.split_once('\n') {
                Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
                None => (entry.to_owned(), None),
            })
            .collect();
        Self { entries }
    }

    /// A configuration of these entries, in order.
    pub fn from_entries(entries: Vec<(String, Option<String>)>) -> Self {
        Self { entries }
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_deref()))
    }

    /// The value git uses for a single-valued `key` (the last one), given
    /// in lower case: `Some(None)` for a key without `=`.
    pub fn last(&self, key: &str) -> Option<Option<&str>> {
        self.entries()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .last()
    }
}

/// git's boolean spellings (`git_parse_maybe_bool`): `None` when `value`
/// is none of them. An empty value is false, as for git.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" | "" => Some(false),
        other => other.parse::<i64>().ok().map(|n| n != 0),
    }
}

/// What git said, in one line, for a message.
fn first_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.unwrap_or("git config failed")
        .trim_start_matches("fatal: ")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_null_separated_listing() {
        let config = GitConfig::from_listing(
            "url.ssh://git@host/.insteadof\ngh:\0protocol.version\n0\0protocol.version\n1\0url.x.insteadof\0",
        );
        let entries: Vec<_> = config.entries().collect();
        assert_eq!(
            entries,
            [
                ("url.ssh://git@host/.insteadof", Some("gh:")),
                ("protocol.version", Some("0")),
                ("protocol.version", Some("1")),
                ("url.x.insteadof", None),
            ]
        );
        assert_eq!(config.last("protocol.version"), Some(Some("1")));
        assert_eq!(config.last("Protocol.Version"), Some(Some("1")));
        assert_eq!(config.last("protocol.allow"), None);
        assert_eq!(GitConfig::from_listing(""), GitConfig::default());
    }

    #[test]
    fn a_value_may_hold_newlines() {
        let config = GitConfig::from_listing("protocol.x\na\nb\0");
        assert_eq!(config.last("protocol.x"), Some(Some("a\nb")));
    }

    #[test]
    fn bools_as_git_spells_them() {
        assert_eq!(parse_bool("Yes"), Some(true));
        assert_eq!(parse_bool("on"), Some(true));
        assert_eq!(parse_bool("2"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool(""), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn an_unreadable_config_quotes_git() {
        assert_eq!(
            first_line(b"fatal: bad config line 3 in file /h/.gitconfig\n"),
            "bad config line 3 in file /h/.gitconfig"
        );
    }
}
