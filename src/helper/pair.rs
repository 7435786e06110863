//! The `UP=>DOWN` pair in a `kalandra::UP=>DOWN` URL.

use crate::location::{self, Locations};
use crate::transport::TransportSettings;
use crate::url::{self, RepoUrl};
use crate::url_rewrite::Direction;

/// The expected shape, shown in every error.
pub const EXPECTED_FORM: &str =
    "kalandra::UP=>DOWN, e.g. 'kalandra::https://a.example/x.git=>ssh://git@b.example/x.git'";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no '=>' in {shown:?}; expected {EXPECTED_FORM}")]
    NoArrow { shown: String },
    #[error("more than one '=>' in {shown:?}; expected {EXPECTED_FORM}")]
    SeveralArrows { shown: String },
    #[error("bad {side} side of the pair")]
    Side {
        side: &'static str,
        #[source]
        source: location::Error,
    },
    #[error(transparent)]
    Settings(location::Error),
}

/// Upstream (read from) and downstream (written to), and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub upstream: RepoUrl,
    pub downstream: RepoUrl,
    pub settings: TransportSettings,
}

impl Pair {
    /// Parses the text after `kalandra::`, verbatim as git passes it, with
    /// the user's `url.*.insteadOf` rules and `protocol.*` settings.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let locations = Locations::load_blocking().map_err(Error::Settings)?;
        Self::parse_with(text, &locations)
    }

    /// [`Pair::parse`] with the settings given: UP is rewritten as a fetch
    /// URL, DOWN as a push URL (`pushInsteadOf` first).
    pub fn parse_with(text: &str, locations: &Locations) -> Result<Self, Error> {
        let mut parts = text.split("=>");
        let (Some(up), Some(down)) = (parts.next(), parts.next()) else {
            return Err(Error::NoArrow { shown: mask(text) });
        };
        if parts.next().is_some() {
            return Err(Error::SeveralArrows { shown: mask(text) });
        }
        let upstream = locations
            .resolve(up, Direction::Fetch)
            .map_err(|source| Error::Side {
                side: "upstream (UP)",
                source,
            })?;
        let downstream =
            locations
                .resolve(down, Direction::Push)
                .map_err(|source| Error::Side {
                    side: "downstream (DOWN)",
                    source,
                })?;
        Ok(Self {
            upstream,
            downstream,
            settings: TransportSettings::from_env(),
        })
    }
}

/// The pair text with any `user:secret@` masked, for messages.
fn mask(text: &str) -> String {
    text.split("=>")
        .map(|part| match RepoUrl::parse(part) {
            Ok(url) => url.to_string(),
            Err(_) => url::mask_credentials(part),
        })
        .collect::<Vec<_>>()
        .join("=>")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the user's git configuration.
    fn parse(text: &str) -> Result<Pair, Error> {
        Pair::parse_with(text, &Locations::default())
    }

    #[test]
    fn each_side_is_rewritten_for_its_direction() {
        let config = crate::git_config::GitConfig::from_listing(
            "url./srv/read/.insteadof\nx:\0url./srv/write/.pushinsteadof\nx:\0",
        );
        let pair = Pair::parse_with("x:r.git=>x:r.git", &Locations::from_config(&config))
            .expect("valid pair");
        assert_eq!(pair.upstream.to_string(), "/srv/read/r.git");
        assert_eq!(pair.downstream.to_string(), "/srv/write/r.git");
    }

    #[test]
    fn splits_on_the_arrow() {
        let pair = parse("/up.git=>file:///down.git").expect("valid pair");
        assert_eq!(pair.upstream.to_string(), "/up.git");
        // Shown as given: a file:// URL stays one.
        assert_eq!(pair.downstream.to_string(), "file:///down.git");
    }

    #[test]
    fn missing_or_doubled_arrows_show_the_form() {
        let err = parse("/up.git").expect_err("no arrow");
        assert!(err.to_string().contains("kalandra::UP=>DOWN"), "{err}");
        let err = parse("/a=>/b=>/c").expect_err("two arrows");
        assert!(err.to_string().contains("kalandra::UP=>DOWN"), "{err}");
    }

    #[test]
    fn secrets_never_show() {
        let err = parse("https://u:hunter2@a.example/x=>https://u:hunter2@b.example/y=>/c")
            .expect_err("two arrows");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = parse("ftp://u:hunter2@a.example/x=>/b").expect_err("bad scheme");
        assert!(!format!("{err} {:?}", err).contains("hunter2"), "{err}");
        for text in [
            "https://u:hun/ter2@a.example/x=>/b=>/c",
            "https://u:hun/ter2@a.example:99999/x",
            "ftp://u:hun@ter2@a.example/x=>https://u:hunter2@b.example:0x/y",
        ] {
            let err = parse(text).expect_err(text);
            let shown = format!("{err} {err:?} {:#}", anyhow_like(&err));
            assert!(!shown.contains("ter2"), "{shown}");
            assert!(shown.contains("u:***@"), "{shown}");
        }
    }

    #[test]
    fn a_bad_side_is_named() {
        let err = parse("/up=>-down").expect_err("option-like");
        assert!(err.to_string().contains("downstream"), "{err}");
    }

    /// The error with its causes, as the binaries print it.
    fn anyhow_like(err: &Error) -> String {
        let mut text = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
}
