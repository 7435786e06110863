//! `[[github_source]]`: one mirror per repository of a GitHub
//! organisation, each into a downstream pattern. Parsing here is pure; the
//! repositories are listed by [`crate::forge::github_org::discover`].

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::github_org::substitute;
use super::keys::Table;
use super::settings::{At, Settings};
use super::{Checker, Mirror, Origin};
use crate::forge::App;
use crate::url::RepoUrl;
use crate::url_rewrite::{Direction, Rewrites};

/// Which repositories by visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    #[default]
    All,
    Public,
    Private,
}

/// What a `[[github_source]]` keeps of the org's repositories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    /// Archived repositories too (default: left out).
    pub archived: bool,
    /// Forks too (default: left out).
    pub forks: bool,
    pub visibility: Visibility,
    /// A glob over the repository's name (`*` any run of characters,
    /// case-insensitive); `None`: every name.
    pub matches: Option<String>,
}

/// One repository as the org's listing gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub clone_url: String,
    pub private: bool,
    pub archived: bool,
    pub fork: bool,
}

impl Filters {
    /// Whether `repo` is mirrored.
    pub fn keep(&self, repo: &Listed) -> bool {
        (self.archived || !repo.archived)
            && (self.forks || !repo.fork)
            && match self.visibility {
                Visibility::All => true,
                Visibility::Public => !repo.private,
                Visibility::Private => repo.private,
            }
            && self.matches.as_ref().is_none_or(|glob| {
                crate::plan::wildcard_match(
                    glob.to_ascii_lowercase().as_bytes(),
                    repo.name.to_ascii_lowercase().as_bytes(),
                )
            })
    }
}

/// One `[[github_source]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubSource {
    pub org: String,
    /// Each mirror's name pattern (`{name}`, `{org}`); default `{name}`.
    pub name: String,
    /// Each mirror's downstream pattern (`{name}`, `{org}`).
    pub downstream: String,
    pub filters: Filters,
    /// The app that lists the org and reads its repositories, if one
    /// serves it; else the org's public repositories are listed without
    /// authentication.
    pub app: Option<App>,
    /// The API to list with: the app's, or `api.github.com`.
    pub api_url: url::Url,
    /// Every other setting of each mirror.
    pub prototype: Mirror,
    /// The file's forges, for each side of each mirror.
    pub forges: super::Forges,
    /// Whether the table names each side's token itself.
    pub own_tokens: [bool; 2],
    /// The user's `url.*.insteadOf` (for each upstream) and
    /// `pushInsteadOf` (for each downstream), as for a `[[mirror]]`.
    pub rewrites: Rewrites,
}

impl GithubSource {
    /// The mirror of `repo`, or why not.
    pub fn mirror_for(&self, repo: &Listed) -> Result<Mirror, String> {
        let clone_url = self.rewrites.apply(&repo.clone_url, Direction::Fetch);
        let upstream =
            RepoUrl::parse(&clone_url).map_err(|e| format!("its clone_url {clone_url}: {e}"))?;
        let raw = self
            .rewrites
            .apply(
                &substitute(&self.downstream, &self.org, &repo.name),
                Direction::Push,
            )
            .into_owned();
        let downstream = RepoUrl::parse(&raw).map_err(|e| format!("downstream {raw}: {e}"))?;
        let mut mirror = self.prototype.clone();
        mirror.name = substitute(&self.name, &self.org, &repo.name);
        mirror.upstream = upstream;
        mirror.downstream = downstream;
        Ok(self.forges.apply(mirror, self.own_tokens))
    }
}

/// The keys a `[[github_source]]` has besides the per-mirror ones.
const OWN_KEYS: &[&str] = &["org", "archived", "forks", "visibility", "match", "api_url"];

/// One `[[github_source]]` as read, before it is checked against the apps.
pub(super) struct SourceTable {
    header: usize,
    org: Option<At<String>>,
    /// The API to list with when no app serves the org (GitHub
    /// Enterprise Server's, say).
    api_url: Option<At<String>>,
    filters: Filters,
    own_tokens: [bool; 2],
    settings: Settings,
}

impl Checker<'_> {
    pub(super) fn github_source_tables(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<SourceTable> {
        let mut tables = Vec::new();
        for (header, table) in self.array_of_tables(value, "github_source") {
            let mut rest: DeTable<'_> = table.clone();
            let mut org = None;
            let mut api_url = None;
            let mut filters = Filters::default();
            for key in OWN_KEYS {
                let Some((_, value)) = rest.remove_entry(*key) else {
                    continue;
                };
                let at = value.span().start;
                match *key {
                    "org" => org = self.string(key, &value).map(|v| At { value: v, at }),
                    "api_url" => api_url = self.string(key, &value).map(|v| At { value: v, at }),
                    "archived" => filters.archived = self.boolean(key, &value).unwrap_or(false),
                    "forks" => filters.forks = self.boolean(key, &value).unwrap_or(false),
                    "match" => filters.matches = self.string(key, &value),
                    _ => match self.string(key, &value).as_deref() {
                        Some("all") => filters.visibility = Visibility::All,
                        Some("public") => filters.visibility = Visibility::Public,
                        Some("private") => filters.visibility = Visibility::Private,
                        Some(other) => self.error(
                            at,
                            format!(
                                "`visibility` is \"all\", \"public\" or \"private\", not {other:?}"
                            ),
                        ),
                        None => {}
                    },
                }
            }
            if let Some((key, _)) = rest.get_key_value("upstream") {
                self.error(
                    key.span().start,
                    "[[github_source]] takes each upstream from the org's listing; drop `upstream`",
                );
                rest.remove("upstream");
            }
            let settings = self.settings(&rest, Table::Mirror);
            let own_tokens = super::own_tokens(&settings);
            tables.push(SourceTable {
                header,
                org,
                api_url,
                filters,
                own_tokens,
                settings,
            });
        }
        tables
    }

    pub(super) fn github_source(
        &mut self,
        t: SourceTable,
        defaults: &Settings,
        apps: &[App],
    ) -> Option<GithubSource> {
        let s = t.settings.over(defaults);
        let Some(org) = t.org else {
            self.error(t.header, "[[github_source]] has no `org`");
            return None;
        };
        let Some(downstream) = s.downstream.clone() else {
            self.error(t.header, "[[github_source]] has no `downstream`: a pattern with {name}, e.g. \"https://gitlab.example/backup/{name}.git\"");
            return None;
        };
        if org.value.is_empty() || org.value.contains(['/', ' ']) {
            self.error(org.at, "`org` must be an organisation's login (no `/`)");
            return None;
        }
        let example = substitute(&downstream.value, &org.value, "example");
        if let Err(e) = RepoUrl::parse(&self.rewrites.apply(&example, Direction::Push)) {
            self.error(downstream.at, format!("`downstream`: {e}"));
            return None;
        }
        let app = apps
            .iter()
            .find(|app| {
                app.owners
                    .iter()
                    .any(|p| p.matches(&org.value, "any-repository"))
            })
            .cloned();
        let own_api_url = match &t.api_url {
            Some(raw) => Some(self.api_url(raw)?),
            None => None,
        };
        let api_url = match (&app, own_api_url) {
            (Some(app), Some(own)) if own != app.api_url => {
                let at = t.api_url.as_ref().map_or(t.header, |a| a.at);
                self.error(
                    at,
                    format!(
                        "`api_url` {own} is not the api_url of GitHub App {}, which lists {}; drop it",
                        app.issuer, org.value
                    ),
                );
                return None;
            }
            (Some(app), _) => app.api_url.clone(),
            (None, Some(own)) => own,
            (None, None) => url::Url::parse(crate::forge::github_app::PUBLIC_API)
                .expect("because the public API's URL is valid"),
        };
        let placeholder = RepoUrl::Local {
            path: Default::default(),
            url: None,
        };
        let origin = Origin {
            line: self.place(t.header).line,
            template: None,
        };
        let prototype = s.mirror(String::new(), placeholder.clone(), placeholder, origin);
        Some(GithubSource {
            org: org.value,
            name: s
                .name
                .as_ref()
                .map_or("{name}".to_owned(), |n| n.value.clone()),
            downstream: downstream.value,
            filters: t.filters,
            app,
            api_url,
            prototype,
            forges: self.forges.clone(),
            own_tokens: t.own_tokens,
            rewrites: self.rewrites.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str, private: bool, archived: bool, fork: bool) -> Listed {
        Listed {
            name: name.into(),
            clone_url: format!("https://github.com/acme/{name}.git"),
            private,
            archived,
            fork,
        }
    }

    #[test]
    fn github_source_filters_keep_what_they_say() {
        let repos = [
            repo("api", false, false, false),
            repo("web", true, false, false),
            repo("old", false, true, false),
            repo("copy", false, false, true),
            repo("API-tools", true, false, false),
        ];
        let kept = |f: &Filters| -> Vec<&str> {
            repos
                .iter()
                .filter(|r| f.keep(r))
                .map(|r| r.name.as_str())
                .collect()
        };
        assert_eq!(kept(&Filters::default()), ["api", "web", "API-tools"]);
        let all = Filters {
            archived: true,
            forks: true,
            ..Filters::default()
        };
        assert_eq!(kept(&all).len(), 5);
        let public = Filters {
            visibility: Visibility::Public,
            ..Filters::default()
        };
        assert_eq!(kept(&public), ["api"]);
        let private = Filters {
            visibility: Visibility::Private,
            ..Filters::default()
        };
        assert_eq!(kept(&private), ["web", "API-tools"]);
        let glob = Filters {
            matches: Some("api*".into()),
            ..Filters::default()
        };
        assert_eq!(kept(&glob), ["api", "API-tools"]);
    }
}
