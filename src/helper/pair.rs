//! The `UP=>DOWN` pair in a `kalandra::UP=>DOWN` URL.

use crate::transport::TransportSettings;
use crate::url::{self, RepoUrl};

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
        source: url::Error,
    },
}

/// Upstream (read from) and downstream (written to), and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub upstream: RepoUrl,
    pub downstream: RepoUrl,
    pub settings: TransportSettings,
}

impl Pair {
    /// Parses the text after `kalandra::`, verbatim as git passes it.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut parts = text.split("=>");
        let (Some(up), Some(down)) = (parts.next(), parts.next()) else {
            return Err(Error::NoArrow { shown: mask(text) });
        };
        if parts.next().is_some() {
            return Err(Error::SeveralArrows { shown: mask(text) });
        }
        let upstream = RepoUrl::parse(up).map_err(|source| Error::Side {
            side: "upstream (UP)",
            source,
        })?;
        let downstream = RepoUrl::parse(down).map_err(|source| Error::Side {
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

    #[test]
    fn splits_on_the_arrow() {
        let pair = Pair::parse("/up.git=>file:///down.git").expect("valid pair");
        assert_eq!(pair.upstream.to_string(), "/up.git");
        assert_eq!(pair.downstream.to_string(), "/down.git");
    }

    #[test]
    fn missing_or_doubled_arrows_show_the_form() {
        let err = Pair::parse("/up.git").expect_err("no arrow");
        assert!(err.to_string().contains("kalandra::UP=>DOWN"), "{err}");
        let err = Pair::parse("/a=>/b=>/c").expect_err("two arrows");
        assert!(err.to_string().contains("kalandra::UP=>DOWN"), "{err}");
    }

    #[test]
    fn secrets_never_show() {
        let err = Pair::parse("https://u:hunter2@a.example/x=>https://u:hunter2@b.example/y=>/c")
            .expect_err("two arrows");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = Pair::parse("ftp://u:hunter2@a.example/x=>/b").expect_err("bad scheme");
        assert!(!format!("{err} {:?}", err).contains("hunter2"), "{err}");
        for text in [
            "https://u:hun/ter2@a.example/x=>/b=>/c",
            "https://u:hun/ter2@a.example:99999/x",
            "ftp://u:hun@ter2@a.example/x=>https://u:hunter2@b.example:0x/y",
        ] {
            let err = Pair::parse(text).expect_err(text);
            let shown = format!("{err} {err:?} {:#}", anyhow_like(&err));
            assert!(!shown.contains("ter2"), "{shown}");
            assert!(shown.contains("u:***@"), "{shown}");
        }
    }

    #[test]
    fn a_bad_side_is_named() {
        let err = Pair::parse("/up=>-down").expect_err("option-like");
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
