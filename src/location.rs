//! A repository location as the user wrote it, made into the [`RepoUrl`]
//! git would use: `url.<base>.insteadOf`/`pushInsteadOf` rewrite it first
//! ([`crate::url_rewrite`]), then it is parsed ([`crate::url`]).
//!
//! Messages and reports show the rewritten location, as git does in its
//! own errors: it is the server Kalandra actually talked to.
//!
//! A `<transport>::<address>` location (`ext::`, `fd::`) is checked against
//! the `protocol.*` settings first, so that `ext::` gets git's own refusal
//! (`transport 'ext' not allowed`) and is never run. Every other transport
//! is checked when it connects ([`crate::transport::connect`]).

use crate::git_config::{self, GitConfig};
use crate::protocol_settings::{self, ProtocolSettings};
use crate::url::{self, RepoUrl};
use crate::url_rewrite::{Direction, Rewrites};

/// A location that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(transparent)]
    Url(#[from] url::Error),
    #[error(transparent)]
    Protocol(#[from] protocol_settings::Error),
    #[error(transparent)]
    Config(#[from] git_config::Error),
}

/// What turns a location into a [`RepoUrl`]: the rewrite rules and the
/// protocol settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Locations {
    pub rewrites: Rewrites,
    pub protocol: ProtocolSettings,
}

impl Locations {
    /// From the user's git configuration and the process's environment.
    pub fn load_blocking() -> Result<Self, Error> {
        Ok(Self::from_config(&GitConfig::read_blocking(
            git_config::SETTINGS_PATTERN,
        )?))
    }

    /// [`Self::load_blocking`] without blocking the runtime.
    pub async fn load() -> Result<Self, Error> {
        Ok(Self::from_config(
            &GitConfig::read(git_config::SETTINGS_PATTERN).await?,
        ))
    }

    /// From a configuration already read, with the process's environment.
    pub fn from_config(config: &GitConfig) -> Self {
        Self {
            rewrites: Rewrites::from_config(config),
            protocol: ProtocolSettings::from_env(config),
        }
    }

    /// `raw` rewritten for `direction`, then parsed.
    pub fn resolve(&self, raw: &str, direction: Direction) -> Result<RepoUrl, Error> {
        let rewritten = self.rewrites.apply(raw, direction);
        if rewritten != raw {
            tracing::debug!(
                "{} is {} (url.*.{})",
                url::mask_credentials(raw),
                url::mask_credentials(&rewritten),
                match direction {
                    Direction::Fetch => "insteadOf",
                    Direction::Push => "pushInsteadOf or insteadOf",
                }
            );
        }
        match RepoUrl::parse(&rewritten) {
            Ok(url) => Ok(url),
            // git refuses a transport it does not allow before it would
            // look for its helper.
            Err(url::Error::UnsupportedTransport { transport, shown }) => {
                self.protocol.check_name(&transport)?;
                Err(url::Error::UnsupportedTransport { transport, shown }.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(listing: &str) -> Locations {
        let config = GitConfig::from_listing(listing);
        Locations {
            rewrites: Rewrites::from_config(&config),
            protocol: ProtocolSettings::new(&config, &|_| None),
        }
    }

    #[test]
    fn rewrites_before_parsing() {
        let l = locations(
            "url.ssh://git@host.example/.insteadof\ngh:\0url.https://write.example/.pushinsteadof\ngh:\0",
        );
        let up = l.resolve("gh:team/r.git", Direction::Fetch).expect("valid");
        assert_eq!(up.to_string(), "ssh://git@host.example/team/r.git");
        let down = l.resolve("gh:team/r.git", Direction::Push).expect("valid");
        assert_eq!(down.to_string(), "https://write.example/team/r.git");
        let plain = l.resolve("/srv/r.git", Direction::Push).expect("valid");
        assert_eq!(plain.to_string(), "/srv/r.git");
    }

    #[test]
    fn ext_is_refused_with_gits_message() {
        let err = locations("")
            .resolve("ext::ssh -i key %S host", Direction::Fetch)
            .expect_err("ext is never allowed by default");
        assert_eq!(err.to_string(), "transport 'ext' not allowed");
        // Allowed, it is still a transport Kalandra does not run.
        let err = locations("protocol.ext.allow\nalways\0")
            .resolve("ext::ssh -i key %S host", Direction::Fetch)
            .expect_err("no remote helpers");
        assert!(
            matches!(err, Error::Url(url::Error::UnsupportedTransport { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_rewrite_to_ext_is_refused_too() {
        let err = locations("url.ext::sh -c evil% .insteadof\nx:\0")
            .resolve("x:r", Direction::Fetch)
            .expect_err("ext");
        assert_eq!(err.to_string(), "transport 'ext' not allowed");
    }
}
