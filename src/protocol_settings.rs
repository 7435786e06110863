//! The `protocol.*` settings: which transports may be used
//! (`protocol.allow`, `protocol.<name>.allow`, `GIT_ALLOW_PROTOCOL`,
//! `GIT_PROTOCOL_FROM_USER`) and which protocol version upstream is asked
//! for (`protocol.version`), with git's semantics and messages
//! (transport.c `is_transport_allowed`, protocol.c
//! `get_protocol_version_config`; git-config(1), "protocol.allow").
//!
//! Pure: built from a [`GitConfig`] and an environment lookup.

use crate::git_config::{parse_bool, GitConfig};
use crate::url::RepoUrl;

/// A setting refuses the transport, or is not one git accepts. The
/// messages are git's own.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("transport '{name}' not allowed")]
    NotAllowed { name: String },
    #[error("unknown value for config '{key}': {value}")]
    UnknownValue { key: String, value: String },
    #[error("bad boolean environment value '{value}' for '{variable}'")]
    BadBoolean {
        variable: &'static str,
        value: String,
    },
}

/// The protocol version to ask upstream for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// The original protocol (`protocol.version` 0).
    V0,
    /// v0 with a `version 1` line first; Kalandra asks for v0 then, which
    /// every server that speaks v1 also speaks.
    V1,
    V2,
}

impl Version {
    /// Whether upstream is asked for protocol v2.
    pub fn is_v2(self) -> bool {
        self == Self::V2
    }
}

/// `protocol.<name>.allow` and `protocol.allow` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Allow {
    Always,
    Never,
    /// Only when the command was started by the user
    /// (`GIT_PROTOCOL_FROM_USER`, true unless set).
    User,
}

/// The `protocol.*` settings and their environment variables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtocolSettings {
    /// `protocol.*` entries as listed (key lower case, value).
    entries: Vec<(String, Option<String>)>,
    /// `GIT_ALLOW_PROTOCOL`: when set, the only transports allowed,
    /// whatever the configuration says.
    allow_list: Option<Vec<String>>,
    /// `GIT_PROTOCOL_FROM_USER`, unparsed.
    from_user: Option<String>,
}

impl ProtocolSettings {
    /// The settings of `config`, with the environment from `env`.
    pub fn new(config: &GitConfig, env: &dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            entries: config
                .entries()
                .filter(|(key, _)| key.starts_with("protocol."))
                .map(|(k, v)| (k.to_owned(), v.map(str::to_owned)))
                .collect(),
            allow_list: env("GIT_ALLOW_PROTOCOL")
                .map(|list| list.split(':').map(str::to_owned).collect()),
            from_user: env("GIT_PROTOCOL_FROM_USER"),
        }
    }

    /// [`Self::new`] with the process's environment.
    pub fn from_env(config: &GitConfig) -> Self {
        Self::new(config, &|name| std::env::var(name).ok())
    }

    fn last(&self, key: &str) -> Option<Option<&str>> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
    }

    /// `protocol.version`: 2 unless set.
    pub fn version(&self) -> Result<Version, Error> {
        let Some(value) = self.last("protocol.version") else {
            return Ok(Version::V2);
        };
        match value.map(str::trim) {
            Some("0") => Ok(Version::V0),
            Some("1") => Ok(Version::V1),
            Some("2") => Ok(Version::V2),
            other => Err(Error::UnknownValue {
                key: "protocol.version".into(),
                value: other.unwrap_or_default().to_owned(),
            }),
        }
    }

    /// Refuses `url` when its transport is not allowed.
    pub fn check(&self, url: &RepoUrl) -> Result<(), Error> {
        self.check_name(transport_name(url))
    }

    /// Refuses the transport `name` (`file`, `ssh`, `ext`, ...) when it is
    /// not allowed.
    pub fn check_name(&self, name: &str) -> Result<(), Error> {
        if self.allowed(name)? {
            Ok(())
        } else {
            Err(Error::NotAllowed {
                name: name.to_owned(),
            })
        }
    }

    fn allowed(&self, name: &str) -> Result<bool, Error> {
        if let Some(list) = &self.allow_list {
            return Ok(list.iter().any(|allowed| allowed == name));
        }
        match self.policy(name)? {
            Allow::Always => Ok(true),
            Allow::Never => Ok(false),
            Allow::User => match self.from_user.as_deref() {
                None => Ok(true),
                Some(value) => parse_bool(value).ok_or_else(|| Error::BadBoolean {
                    variable: "GIT_PROTOCOL_FROM_USER",
                    value: value.to_owned(),
                }),
            },
        }
    }

    /// `protocol.<name>.allow`, else `protocol.allow`, else git's default.
    fn policy(&self, name: &str) -> Result<Allow, Error> {
        // The protocol name in a key is a subsection: git compares it as
        // written, so it is matched case-sensitively here too.
        let specific = format!("protocol.{name}.allow");
        for key in [specific.as_str(), "protocol.allow"] {
            if let Some(value) = self.last(key) {
                return parse_allow(key, value);
            }
        }
        Ok(match name {
            "http" | "https" | "git" | "ssh" => Allow::Always,
            "ext" => Allow::Never,
            // Everything else, `file` included since git 2.38.1.
            _ => Allow::User,
        })
    }
}

fn parse_allow(key: &str, value: Option<&str>) -> Result<Allow, Error> {
    let unknown = || Error::UnknownValue {
        key: key.to_owned(),
        value: value.unwrap_or_default().to_owned(),
    };
    let value = value.ok_or_else(unknown)?;
    if value.eq_ignore_ascii_case("always") {
        Ok(Allow::Always)
    } else if value.eq_ignore_ascii_case("never") {
        Ok(Allow::Never)
    } else if value.eq_ignore_ascii_case("user") {
        Ok(Allow::User)
    } else {
        Err(unknown())
    }
}

/// The name git checks for a location's transport: `file` for local
/// paths, `ssh` for ssh and scp-like locations, `git`, `http`, `https`.
pub fn transport_name(url: &RepoUrl) -> &str {
    match url {
        RepoUrl::Local { .. } => "file",
        RepoUrl::Ssh { .. } => "ssh",
        RepoUrl::Git { .. } => "git",
        RepoUrl::Http { url } => url.scheme(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listing: &str, env: &[(&str, &str)]) -> ProtocolSettings {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProtocolSettings::new(&GitConfig::from_listing(listing), &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn allowed(s: &ProtocolSettings, name: &str) -> bool {
        s.check_name(name).is_ok()
    }

    #[test]
    fn git_defaults() {
        let s = settings("", &[]);
        for name in ["http", "https", "git", "ssh", "file", "kalandra"] {
            assert!(allowed(&s, name), "{name}");
        }
        assert_eq!(
            s.check_name("ext")
                .expect_err("ext is never allowed by default")
                .to_string(),
            "transport 'ext' not allowed"
        );
        assert_eq!(s.version(), Ok(Version::V2));
    }

    #[test]
    fn user_only_protocols_follow_git_protocol_from_user() {
        let s = settings("", &[("GIT_PROTOCOL_FROM_USER", "0")]);
        assert!(!allowed(&s, "file"));
        assert!(allowed(&s, "ssh"));
        assert!(!allowed(&s, "ext"));
        let s = settings("", &[("GIT_PROTOCOL_FROM_USER", "maybe")]);
        assert!(matches!(
            s.check_name("file"),
            Err(Error::BadBoolean { .. })
        ));
        assert!(allowed(&s, "https"), "only user-only protocols read it");
    }

    #[test]
    fn the_specific_setting_wins_over_the_general_one() {
        let s = settings("protocol.allow\nnever\0protocol.file.allow\nALWAYS\0", &[]);
        assert!(allowed(&s, "file"));
        assert!(
            !allowed(&s, "https"),
            "protocol.allow overrides the defaults"
        );
        let s = settings(
            "protocol.file.allow\nnever\0protocol.file.allow\nuser\0",
            &[],
        );
        assert!(allowed(&s, "file"), "the last value wins");
    }

    #[test]
    fn empty_variables_refuse_as_in_git() {
        // Checked with git 2.47: both refuse `file`.
        assert!(!allowed(
            &settings("", &[("GIT_ALLOW_PROTOCOL", "")]),
            "file"
        ));
        assert!(!allowed(
            &settings("", &[("GIT_PROTOCOL_FROM_USER", "")]),
            "file"
        ));
        assert_eq!(
            settings("", &[("GIT_PROTOCOL_FROM_USER", "bogus")])
                .check_name("file")
                .expect_err("bogus")
                .to_string(),
            "bad boolean environment value 'bogus' for 'GIT_PROTOCOL_FROM_USER'"
        );
    }

    #[test]
    fn the_environment_list_overrides_everything() {
        let s = settings(
            "protocol.file.allow\nalways\0",
            &[("GIT_ALLOW_PROTOCOL", "ssh:https")],
        );
        assert!(allowed(&s, "ssh"));
        assert!(allowed(&s, "https"));
        assert!(!allowed(&s, "file"));
        assert!(!allowed(&s, "http"));
        let s = settings("", &[("GIT_ALLOW_PROTOCOL", "ext")]);
        assert!(allowed(&s, "ext"));
    }

    #[test]
    fn unknown_values_are_refused_with_gits_message() {
        let s = settings("protocol.file.allow\nbogus\0", &[]);
        assert_eq!(
            s.check_name("file").expect_err("bogus").to_string(),
            "unknown value for config 'protocol.file.allow': bogus"
        );
        let s = settings("protocol.version\n3\0", &[]);
        assert_eq!(
            s.version().expect_err("3").to_string(),
            "unknown value for config 'protocol.version': 3"
        );
    }

    #[test]
    fn versions() {
        for (value, version) in [("0", Version::V0), ("1", Version::V1), ("2", Version::V2)] {
            let s = settings(&format!("protocol.version\n{value}\0"), &[]);
            assert_eq!(s.version(), Ok(version));
        }
    }

    #[test]
    fn transport_names() {
        let name = |text: &str| transport_name(&RepoUrl::parse(text).expect("valid")).to_owned();
        assert_eq!(name("/srv/r.git"), "file");
        assert_eq!(name("file:///srv/r.git"), "file");
        assert_eq!(name("git@host:r.git"), "ssh");
        assert_eq!(name("ssh://host/r.git"), "ssh");
        assert_eq!(name("git://host/r.git"), "git");
        assert_eq!(name("https://host/r.git"), "https");
        assert_eq!(name("http://host/r.git"), "http");
    }
}
