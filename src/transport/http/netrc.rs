//! `~/.netrc` (or `$NETRC`): `machine HOST login USER password SECRET`, as
//! curl and so git read it.

use std::path::PathBuf;

/// A login found for a host (`Debug` only in tests: it holds a secret).
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub struct Entry {
    pub login: String,
    pub password: String,
}

/// The netrc file to read: `$NETRC`, else `$HOME/.netrc`.
pub fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".netrc"))
}

/// The entry for `host` in the netrc text: the first `machine` that names
/// it (and `user`, when the URL gave one), else `default`.
pub fn lookup(text: &str, host: &str, user: Option<&str>) -> Option<Entry> {
    let mut tokens = Tokens::new(text);
    let mut default = None;
    // The machine being read: Some(true) if it matches `host`, Some(false)
    // if not, None for `default`.
    let mut current: Option<(Option<bool>, Option<String>, Option<String>)> = None;
    let finish = |entry: Option<(Option<bool>, Option<String>, Option<String>)>,
                  default: &mut Option<Entry>|
     -> Option<Entry> {
        let (matches, login, password) = entry?;
        let entry = Entry {
            login: login?,
            password: password?,
        };
        if user.is_some_and(|u| u != entry.login) {
            return None;
        }
        match matches {
            Some(true) => Some(entry),
            Some(false) => None,
            None => {
                default.get_or_insert(entry);
                None
            }
        }
    };
    while let Some(token) = tokens.next() {
        match token {
            "machine" => {
                if let Some(found) = finish(current.take(), &mut default) {
                    return Some(found);
                }
                let name = tokens.next()?;
                current = Some((Some(name.eq_ignore_ascii_case(host)), None, None));
            }
            "default" => {
                if let Some(found) = finish(current.take(), &mut default) {
                    return Some(found);
                }
                current = Some((None, None, None));
            }
            "login" => {
                let value = tokens.next().map(str::to_owned);
                if let Some(entry) = current.as_mut() {
                    entry.1 = value;
                }
            }
            "password" => {
                let value = tokens.next().map(str::to_owned);
                if let Some(entry) = current.as_mut() {
                    entry.2 = value;
                }
            }
            "account" => {
                tokens.next();
            }
            // A macro definition runs to the next blank line.
            "macdef" => tokens.skip_macro(),
            _ => {}
        }
    }
    finish(current.take(), &mut default).or(default)
}

/// Whitespace-separated tokens; `"quoted strings"` may hold spaces.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self { rest: text }
    }

    fn next(&mut self) -> Option<&'a str> {
        self.rest = self.rest.trim_start();
        if self.rest.is_empty() {
            return None;
        }
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            self.rest = quoted.get(end + 1..).unwrap_or("");
            return Some(&quoted[..end]);
        }
        let end = self
            .rest
            .find(char::is_whitespace)
            .unwrap_or(self.rest.len());
        let (token, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(token)
    }

    fn skip_macro(&mut self) {
        match self.rest.find("\n\n") {
            Some(end) => self.rest = &self.rest[end..],
            None => self.rest = "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(login: &str, password: &str) -> Option<Entry> {
        Some(Entry {
            login: login.into(),
            password: password.into(),
        })
    }

    const TEXT: &str = "\
machine other.example login bob password b0b
machine git.example
  login alice
  password \"s3cret with space\"
macdef init
machine git.example login mallory password evil

default login anon password anon
";

    #[test]
    fn finds_the_machine_over_several_lines() {
        assert_eq!(
            lookup(TEXT, "git.example", None),
            entry("alice", "s3cret with space")
        );
        assert_eq!(lookup(TEXT, "OTHER.example", None), entry("bob", "b0b"));
    }

    #[test]
    fn a_user_in_the_url_picks_that_login() {
        assert_eq!(lookup(TEXT, "git.example", Some("bob")), None);
        assert_eq!(
            lookup(TEXT, "git.example", Some("alice")),
            entry("alice", "s3cret with space")
        );
    }

    #[test]
    fn falls_back_to_default() {
        assert_eq!(lookup(TEXT, "nowhere.example", None), entry("anon", "anon"));
        assert_eq!(lookup("machine a login x password y", "b", None), None);
    }

    #[test]
    fn macros_are_skipped() {
        // The `machine` inside the macro body is not an entry.
        let text =
            "macdef x\nmachine evil.example login m password p\n\nmachine ok login o password k\n";
        assert_eq!(lookup(text, "evil.example", None), None);
        assert_eq!(lookup(text, "ok", None), entry("o", "k"));
    }

    #[test]
    fn an_entry_without_password_is_not_used() {
        assert_eq!(lookup("machine h login only", "h", None), None);
    }
}
