//! Each `[[mirror]]`, and each name of each `[[template]]`, made a
//! [`Mirror`]: names checked and claimed, `{name}` substituted, URLs parsed.

use std::path::Path;

use super::settings::{At, Settings};
use super::{Checker, Mirror, Origin, Place};
use crate::forge::target_prop;
use crate::url::{mask_credentials, RepoUrl};
use crate::url_rewrite::Direction;

/// What `{name}` stands for in a template's `name`, `upstream` and
/// `downstream`.
const PLACEHOLDER: &str = "{name}";

impl Checker<'_> {
    /// A `[[mirror]]` whose header is at `header`, its settings merged
    /// over the defaults.
    pub(super) fn mirror(&mut self, header: usize, s: &Settings) -> Option<Mirror> {
        let name = match &s.name {
            Some(name) => {
                self.check_mirror_name(name);
                self.claim(&name.value, self.place(name.at));
                Some(name.value.clone())
            }
            None => {
                if !s.written.contains(&"name") {
                    self.error(header, "[[mirror]] has no `name`");
                }
                None
            }
        };
        let property = s
            .upstream
            .as_ref()
            .and_then(|u| self.target_prop(&u.value, u.at));
        let [upstream, downstream] = [("upstream", &s.upstream), ("downstream", &s.downstream)]
            .map(|(key, url)| match url {
                Some(_) if key == "upstream" && property.is_some() => None,
                Some(url) => self.url(key, &url.value, url.at),
                None => {
                    if !s.written.contains(&key) {
                        self.error(header, format!("[[mirror]] has no `{key}`"));
                    }
                    None
                }
            });
        let origin = Origin {
            line: self.place(header).line,
            template: None,
        };
        let downstream = downstream?;
        if !self.create_missing_fits(header, s, &downstream) {
            return None;
        }
        let Some(property) = property else {
            return Some(s.mirror(name?, upstream?, downstream, origin));
        };
        let mut mirror = s.mirror(name?, downstream.clone(), downstream, origin);
        mirror.upstream_property = property;
        Some(mirror)
    }

    /// `Some(Some(NAME))` when `upstream` is `target-prop:NAME` with a
    /// valid name, `Some(None)` when it is one with a bad name (reported),
    /// `None` when it is a URL.
    fn target_prop(&mut self, upstream: &str, at: usize) -> Option<Option<String>> {
        let name = target_prop::property_name(upstream)?;
        if target_prop::valid_name(name) {
            return Some(Some(name.to_owned()));
        }
        self.error(
            at,
            format!(
                "`upstream = \"{}{}\"`: a custom property's name is 1 to 75 letters, digits, `_`, `-`, `$` or `#`",
                target_prop::PREFIX,
                crate::terminal::escape(name)
            ),
        );
        Some(None)
    }

    /// `create_missing` creates a local downstream with `git init --bare`
    /// and a GitHub one through the `[[github_app]]` that serves it; any
    /// other is refused where it is written rather than failing on every
    /// sync.
    fn create_missing_fits(&mut self, header: usize, s: &Settings, downstream: &RepoUrl) -> bool {
        if s.create_missing != Some(true) || downstream.local_path().is_some() {
            return true;
        }
        if let RepoUrl::Http { url } = downstream {
            if self.forges.apps.iter().any(|app| app.serves(url).is_some())
                || self.forges.gitlab.iter().any(|g| g.serves(url).is_some())
            {
                return true;
            }
        }
        self.error(
            header,
            format!(
                "`create_missing = true` creates local repositories, GitHub repositories \
                 through a [[github_app]] that serves them and GitLab projects through a \
                 [[gitlab]]; downstream {} is none of these: create it on its server first \
                 (or drop create_missing)",
                mask_credentials(&downstream.to_string())
            ),
        );
        false
    }

    /// The mirrors of the `index`th `[[template]]`, whose header is at
    /// `header`, its settings merged over the defaults.
    pub(super) fn template(&mut self, index: usize, header: usize, s: &Settings) -> Vec<Mirror> {
        let names = self.template_names(header, s);
        let pattern = match &s.name {
            Some(pattern) => {
                self.check_mirror_name(pattern);
                pattern.value.as_str()
            }
            None => PLACEHOLDER,
        };
        let mut sides =
            [("upstream", &s.upstream), ("downstream", &s.downstream)].map(|(key, url)| {
                if url.is_none() && !s.written.contains(&key) {
                    self.error(header, format!("[[template]] has no `{key}`"));
                }
                (key, url.as_ref())
            });
        let origin = Origin {
            line: self.place(header).line,
            template: Some(index),
        };
        let mut mirrors = Vec::with_capacity(names.len());
        for (raw, place) in names {
            let name = pattern.replace(PLACEHOLDER, &raw);
            self.claim(&name, place);
            // A side that fails for one name fails alike for the others
            // (names cannot change a URL's shape): it is reported once,
            // then left out.
            let mut property = None;
            let [upstream, downstream] = sides.each_mut().map(|(key, url)| {
                let pattern = (*url)?;
                let value = pattern.value.replace(PLACEHOLDER, &raw);
                if *key == "upstream" {
                    if let Some(name) = self.target_prop(&value, pattern.at) {
                        property = Some(name);
                        // Stands for downstream below; a bad name is said once.
                        if property == Some(None) {
                            *url = None;
                        }
                        return Some(RepoUrl::Local {
                            path: Default::default(),
                            url: None,
                        });
                    }
                }
                let parsed = self.url(key, &value, pattern.at);
                if parsed.is_none() {
                    *url = None;
                }
                parsed
            });
            if let (Some(upstream), Some(downstream)) = (upstream, downstream) {
                if !self.create_missing_fits(header, s, &downstream) {
                    // Said once for the template, as for a bad URL.
                    sides[1].1 = None;
                    continue;
                }
                let mirror = match property {
                    Some(Some(property)) => {
                        let mut m = s.mirror(name, downstream.clone(), downstream, origin.clone());
                        m.upstream_property = Some(property);
                        m
                    }
                    Some(None) => continue,
                    None => s.mirror(name, upstream, downstream, origin.clone()),
                };
                mirrors.push(mirror);
            }
        }
        mirrors
    }

    /// A mirror's name, or a template's name pattern: anything a table
    /// or a log line can show.
    fn check_mirror_name(&mut self, name: &At<String>) {
        if name.value.is_empty() {
            self.error(name.at, "`name` is empty");
        } else if name.value.chars().any(char::is_control) {
            self.error(name.at, "`name` holds a control character");
        }
    }

    /// Records that `name` is taken, reporting it if it already was.
    fn claim(&mut self, name: &str, place: Place) {
        match self.names.get(name) {
            Some(first) => {
                let first = if first.file == place.file {
                    format!("line {}", first.line)
                } else {
                    format!("{}:{}", first.file.display(), first.line)
                };
                self.error_at(
                    &place,
                    format!("duplicate mirror name {name:?}: first defined at {first}"),
                );
            }
            None => {
                self.names.insert(name.to_owned(), place);
            }
        }
    }

    /// `upstream` or `downstream`: a URL without a password in it, or a
    /// local path (relative ones from the config file's directory), after
    /// the user's `url.*.insteadOf` rules (`pushInsteadOf` for `downstream`).
    fn url(&mut self, key: &str, raw: &str, at: usize) -> Option<RepoUrl> {
        let masked = mask_credentials(raw);
        if masked != raw {
            self.error(
                at,
                format!(
                    "`{key}` has a password in its URL ({masked}): name the token with `{key}_token_env` or `{key}_token_file` instead"
                ),
            );
            return None;
        }
        let direction = match key {
            "downstream" => Direction::Push,
            _ => Direction::Fetch,
        };
        match RepoUrl::parse(&self.rewrites.apply(raw, direction)) {
            // A file:// URL is absolute: only a plain path is relative.
            Ok(RepoUrl::Local { path, url }) => Some(RepoUrl::Local {
                path: self.beside_config(&path),
                url,
            }),
            Ok(RepoUrl::Http { mut url }) if is_token(url.username()) => {
                let _ = url.set_username("***");
                self.error(
                    at,
                    format!(
                        "`{key}` has a token as its user name ({url}): name the token with `{key}_token_env` or `{key}_token_file` instead"
                    ),
                );
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                self.error(at, format!("invalid `{key}`: {e}"));
                None
            }
        }
    }

    /// A template's names, from `names` or `names_file`, each with the
    /// place it was written.
    fn template_names(&mut self, header: usize, s: &Settings) -> Vec<(String, Place)> {
        match (&s.names, &s.names_file) {
            (Some(list), Some(file)) => {
                self.error(
                    list.at.max(file.at),
                    "a [[template]] takes `names` or `names_file`, not both",
                );
                Vec::new()
            }
            (None, None) => {
                self.error(header, "[[template]] has no `names` or `names_file`");
                Vec::new()
            }
            (Some(list), None) => list
                .value
                .iter()
                .filter_map(|name| match safe_name(&name.value) {
                    Ok(()) => Some((name.value.clone(), self.place(name.at))),
                    Err(why) => {
                        let message = format!("invalid name {:?} in `names`: {why}", name.value);
                        self.error(name.at, message);
                        None
                    }
                })
                .collect(),
            (None, Some(file)) => self.names_file(file),
        }
    }

    /// One name a line; blank lines and `#` comments skipped. A bad name
    /// is reported at its own line of that file.
    fn names_file(&mut self, file: &At<String>) -> Vec<(String, Place)> {
        if file.value.is_empty() {
            self.error(file.at, "`names_file` is empty");
            return Vec::new();
        }
        let path = self.beside_config(Path::new(&file.value));
        let text = match (self.read)(&path) {
            Ok(text) => text,
            Err(e) => {
                let message = format!("`names_file`: cannot read {}: {e}", path.display());
                self.error(file.at, message);
                return Vec::new();
            }
        };
        let mut names = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let name = line.trim();
            if name.is_empty() || name.starts_with('#') {
                continue;
            }
            let indent = &line[..line.len() - line.trim_start().len()];
            let place = Place {
                file: path.clone(),
                line: index + 1,
                column: indent.chars().count() + 1,
            };
            match safe_name(name) {
                Ok(()) => names.push((name.to_owned(), place)),
                Err(why) => self.error_at(&place, format!("invalid name {name:?}: {why}")),
            }
        }
        names
    }
}

/// A template's name goes into URLs and paths: letters, digits, `.`, `_`,
/// `-` and `/` only, no `..`, and no leading `-` or `/` (an option, or a
/// path from the root).
fn safe_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err("names hold only letters, digits, '.', '_', '-' and '/'");
    }
    if name.contains("..") {
        return Err("it contains \"..\"");
    }
    if name.starts_with(['-', '/']) {
        return Err("it begins with '-' or '/'");
    }
    Ok(())
}

/// A user name that is a forge's access token, as some guides put it in
/// `https://TOKEN@host/...`: GitHub's and GitLab's token prefixes.
fn is_token(user: &str) -> bool {
    [
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "github_pat_",
        "glpat-",
    ]
    .iter()
    .any(|prefix| user.starts_with(prefix))
}
