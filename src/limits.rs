//! Caps on what a server can make Kalandra hold in memory.
//!
//! A ref advertisement, a v2 capability list, an `ls-refs` answer and a
//! push report are read whole before anything else happens, and nothing in
//! the protocol bounds them: a hostile or broken server can send lines
//! forever (git itself then grows without limit). Each such list is read
//! against a [`Budget`] of lines and bytes. The defaults are far above any
//! real repository and keep the worst case near 0.7 GB; both can be raised
//! through the environment (docs/usage.md, "Limits").

/// Environment variable that overrides [`Limits::max_refs`].
pub const MAX_REFS_ENV: &str = "KALANDRA_MAX_REFS";
/// Environment variable that overrides [`Limits::max_advertisement_bytes`].
pub const MAX_ADVERTISEMENT_BYTES_ENV: &str = "KALANDRA_MAX_ADVERTISEMENT_BYTES";

/// Lines in one list: refs (peeled `^{}` lines included), capabilities,
/// acknowledgments or report lines. Twice the largest ref counts seen on
/// public hosts (Gerrit servers advertising every change over v0), and
/// about 0.2 GB of parsed refs.
pub const DEFAULT_MAX_REFS: usize = 2_000_000;
/// Bytes in one list, pkt-line headers included. 2 million refs of
/// typical length take 120-200 MB on the wire.
pub const DEFAULT_MAX_ADVERTISEMENT_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected {variable} to be a whole number of at least 1, got {found:?}")]
    InvalidVariable {
        variable: &'static str,
        found: String,
    },
    #[error(
        "the {list} has more than {limit} lines; if that many refs are real, \
         raise {MAX_REFS_ENV} (default {DEFAULT_MAX_REFS})"
    )]
    TooManyLines { list: &'static str, limit: usize },
    #[error(
        "the {list} is larger than {limit} bytes; if that is real, raise \
         {MAX_ADVERTISEMENT_BYTES_ENV} (default {DEFAULT_MAX_ADVERTISEMENT_BYTES})"
    )]
    TooManyBytes { list: &'static str, limit: u64 },
}

/// The caps, per list read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_refs: usize,
    pub max_advertisement_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_refs: DEFAULT_MAX_REFS,
            max_advertisement_bytes: DEFAULT_MAX_ADVERTISEMENT_BYTES,
        }
    }
}

impl Limits {
    /// The defaults, overridden by [`MAX_REFS_ENV`] and
    /// [`MAX_ADVERTISEMENT_BYTES_ENV`]. A value that is not a positive
    /// whole number is an error, never silently the default.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`Self::from_env`] over any source of variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, Error> {
        let number = |variable: &'static str| -> Result<Option<u64>, Error> {
            let Some(raw) = lookup(variable) else {
                return Ok(None);
            };
            let text = raw.to_string_lossy();
            match text.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(Error::InvalidVariable {
                    variable,
                    found: text.chars().take(64).collect(),
                }),
            }
        };
        let defaults = Self::default();
        Ok(Self {
            max_refs: number(MAX_REFS_ENV)?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .unwrap_or(defaults.max_refs),
            max_advertisement_bytes: number(MAX_ADVERTISEMENT_BYTES_ENV)?
                .unwrap_or(defaults.max_advertisement_bytes),
        })
    }

    /// A fresh budget for reading one list, named in errors (`"ref
    /// advertisement"`).
    pub fn budget(&self, list: &'static str) -> Budget {
        Budget {
            list,
            limits: *self,
            lines: 0,
            bytes: 0,
        }
    }
}

/// What is left for one list.
#[derive(Debug, Clone)]
pub struct Budget {
    list: &'static str,
    limits: Limits,
    lines: usize,
    bytes: u64,
}

impl Budget {
    /// Counts one data pkt-line of `payload_len` bytes (plus its header).
    pub fn take_line(&mut self, payload_len: usize) -> Result<(), Error> {
        self.lines += 1;
        self.bytes = self.bytes.saturating_add(payload_len as u64 + 4);
        if self.lines > self.limits.max_refs {
            return Err(Error::TooManyLines {
                list: self.list,
                limit: self.limits.max_refs,
            });
        }
        if self.bytes > self.limits.max_advertisement_bytes {
            return Err(Error::TooManyBytes {
                list: self.list,
                limit: self.limits.max_advertisement_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).into())
        }
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(Limits::from_lookup(lookup(&[])), Ok(Limits::default()));
        let limits = Limits::from_lookup(lookup(&[
            (MAX_REFS_ENV, "10"),
            (MAX_ADVERTISEMENT_BYTES_ENV, " 4096 "),
        ]))
        .expect("valid");
        assert_eq!(
            limits,
            Limits {
                max_refs: 10,
                max_advertisement_bytes: 4096
            }
        );
    }

    #[test]
    fn invalid_values_are_errors_naming_the_variable() {
        for bad in ["0", "abc", "-1", "", "1e6", "99999999999999999999999"] {
            let err = Limits::from_lookup(lookup(&[(MAX_REFS_ENV, bad)])).expect_err(bad);
            assert!(err.to_string().contains(MAX_REFS_ENV), "{err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn budgets_name_the_cap_and_how_to_raise_it() {
        let limits = Limits {
            max_refs: 2,
            max_advertisement_bytes: 100,
        };
        let mut budget = limits.budget("ref advertisement");
        budget.take_line(10).expect("first");
        budget.take_line(10).expect("second");
        let err = budget.take_line(10).expect_err("third line");
        assert!(err.to_string().contains("more than 2 lines"), "{err}");
        assert!(err.to_string().contains(MAX_REFS_ENV), "{err}");
        let mut budget = limits.budget("capability advertisement");
        let err = budget.take_line(97).expect_err("101 bytes");
        assert!(err.to_string().contains("larger than 100 bytes"), "{err}");
        assert!(
            err.to_string().contains(MAX_ADVERTISEMENT_BYTES_ENV),
            "{err}"
        );
        assert!(
            err.to_string().contains("capability advertisement"),
            "{err}"
        );
    }
}
