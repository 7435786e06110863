//! `url.<base>.insteadOf` and `url.<base>.pushInsteadOf`: locations
//! rewritten before they are parsed, as git rewrites a remote's URL
//! (remote.c, `alias_url`).
//!
//! git's rules, which this module keeps:
//!
//! - A rule applies when its prefix is a prefix of the location, compared
//!   byte for byte (no URL normalisation, case matters).
//! - Of all matching prefixes, the longest wins. Between equal prefixes
//!   under two bases, the base that appears first in the configuration
//!   wins (git keeps one list entry per base, in order of first
//!   appearance, and only a strictly longer match replaces the best).
//! - `insteadOf` applies to both directions. `pushInsteadOf` applies to
//!   the push side only, and there it is tried on the location as given;
//!   when none matches, the push side falls back to `insteadOf`
//!   (`add_pushurl_alias`).
//! - Rules never chain: the rewritten location is not rewritten again.
//!
//! The unit tests' cases were checked against git 2.47 (`git ls-remote
//! --get-url`, `git remote get-url [--push]`).

use std::borrow::Cow;

use crate::git_config::GitConfig;

/// Which side a location is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Read from: upstream.
    Fetch,
    /// Written to: downstream.
    Push,
}

/// One `url.<base>.insteadOf = <prefix>` (or `pushInsteadOf` when `push`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub base: String,
    pub prefix: String,
    pub push: bool,
}

/// All rules of a configuration, grouped as git groups them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    fetch: Vec<Base>,
    push: Vec<Base>,
}

/// A base and the prefixes it replaces, in configuration order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Base {
    base: String,
    prefixes: Vec<String>,
}

impl Rewrites {
    /// The rules, in configuration order.
    pub fn new(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut rewrites = Self::default();
        for rule in rules {
            let list = if rule.push {
                &mut rewrites.push
            } else {
                &mut rewrites.fetch
            };
            match list.iter_mut().find(|b| b.base == rule.base) {
                Some(base) => base.prefixes.push(rule.prefix),
                None => list.push(Base {
                    base: rule.base,
                    prefixes: vec![rule.prefix],
                }),
            }
        }
        rewrites
    }

    /// The `url.*.insteadof` and `url.*.pushinsteadof` entries of
    /// `config`. A key without a value is skipped (git stops with
    /// "missing value"; a warning says so here).
    pub fn from_config(config: &GitConfig) -> Self {
        let rules = config.entries().filter_map(|(key, value)| {
            let rest = key.strip_prefix("url.")?;
            let (base, variable) = rest.rsplit_once('.')?;
            let push = match variable {
                "insteadof" => false,
                "pushinsteadof" => true,
                _ => return None,
            };
            let Some(prefix) = value else {
                tracing::warn!("ignoring {key}: it has no value");
                return None;
            };
            Some(Rule {
                base: base.to_owned(),
                prefix: prefix.to_owned(),
                push,
            })
        });
        Self::new(rules)
    }

    /// Whether there is no rule at all.
    pub fn is_empty(&self) -> bool {
        self.fetch.is_empty() && self.push.is_empty()
    }

    /// `location` as git would use it for `direction`.
    pub fn apply<'a>(&self, location: &'a str, direction: Direction) -> Cow<'a, str> {
        if direction == Direction::Push {
            if let Some(rewritten) = longest(&self.push, location) {
                return Cow::Owned(rewritten);
            }
        }
        match longest(&self.fetch, location) {
            Some(rewritten) => Cow::Owned(rewritten),
            None => Cow::Borrowed(location),
        }
    }
}

/// The location rewritten by the longest matching prefix of `bases`.
fn longest(bases: &[Base], location: &str) -> Option<String> {
    let mut best: Option<(&Base, usize)> = None;
    for base in bases {
        for prefix in &base.prefixes {
            if location.starts_with(prefix.as_str())
                && best.is_none_or(|(_, len)| prefix.len() > len)
            {
                best = Some((base, prefix.len()));
            }
        }
    }
    best.map(|(base, len)| format!("{}{}", base.base, &location[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(base: &str, prefix: &str, push: bool) -> Rule {
        Rule {
            base: base.into(),
            prefix: prefix.into(),
            push,
        }
    }

    #[test]
    fn the_longest_prefix_wins() {
        let rewrites = Rewrites::new([
            rule("ssh://git@short/", "gh:", false),
            rule("https://long.example/team/", "gh:team/", false),
        ]);
        assert_eq!(
            rewrites.apply("gh:team/r.git", Direction::Fetch),
            "https://long.example/team/r.git"
        );
        assert_eq!(
            rewrites.apply("gh:other/r.git", Direction::Fetch),
            "ssh://git@short/other/r.git"
        );
        assert_eq!(
            rewrites.apply("/plain/path", Direction::Fetch),
            "/plain/path"
        );
    }

    #[test]
    fn equal_prefixes_go_to_the_base_seen_first() {
        // Base A appears first, so A wins the tie although B's rule for
        // `x:` comes before A's.
        let rewrites = Rewrites::new([
            rule("A/", "other:", false),
            rule("B/", "x:", false),
            rule("A/", "x:", false),
        ]);
        assert_eq!(rewrites.apply("x:r", Direction::Fetch), "A/r");
    }

    #[test]
    fn push_instead_of_applies_to_the_push_side_only() {
        let rewrites = Rewrites::new([
            rule("https://read.example/", "gh:", false),
            rule("ssh://git@write.example/", "gh:", true),
        ]);
        assert_eq!(
            rewrites.apply("gh:r.git", Direction::Fetch),
            "https://read.example/r.git"
        );
        assert_eq!(
            rewrites.apply("gh:r.git", Direction::Push),
            "ssh://git@write.example/r.git"
        );
    }

    #[test]
    fn the_push_side_falls_back_to_instead_of() {
        let rewrites = Rewrites::new([
            rule("https://read.example/", "gh:", false),
            rule("ssh://git@write.example/", "other:", true),
        ]);
        assert_eq!(
            rewrites.apply("gh:r.git", Direction::Push),
            "https://read.example/r.git"
        );
    }

    #[test]
    fn a_push_rule_is_tried_on_the_location_as_given_not_chained() {
        // git matches pushInsteadOf against the original URL, and a
        // rewritten URL is never rewritten again.
        let rewrites = Rewrites::new([
            rule("mid:", "gh:", false),
            rule("ssh://git@write.example/", "mid:", true),
            rule("never/", "https://", false),
        ]);
        assert_eq!(rewrites.apply("gh:r", Direction::Push), "mid:r");
        assert_eq!(rewrites.apply("gh:r", Direction::Fetch), "mid:r");
        assert_eq!(
            rewrites.apply("mid:r", Direction::Push),
            "ssh://git@write.example/r"
        );
    }

    #[test]
    fn prefixes_match_bytes_exactly() {
        let rewrites = Rewrites::new([rule("https://x/", "GH:", false)]);
        assert_eq!(rewrites.apply("gh:r", Direction::Fetch), "gh:r");
        assert_eq!(rewrites.apply("GH:r", Direction::Fetch), "https://x/r");
    }

    #[test]
    fn reads_the_rules_from_git_config_entries() {
        let config = GitConfig::from_listing(
            "url.ssh://git@host.example/.insteadof\ngh:\0\
             url.https://a.b/c.d/.pushinsteadof\ngh:\0\
             url.noval.insteadof\0\
             protocol.version\n2\0",
        );
        assert_eq!(
            Rewrites::from_config(&config),
            Rewrites::new([
                rule("ssh://git@host.example/", "gh:", false),
                rule("https://a.b/c.d/", "gh:", true),
            ])
        );
        assert!(Rewrites::from_config(&GitConfig::default()).is_empty());
    }
}
