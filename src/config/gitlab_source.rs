//! `[[gitlab_source]]`: one mirror per project of a GitLab group (and, if
//! asked, of its subgroups), each into a downstream pattern. Parsing here
//! is pure; the projects are listed by
//! [`crate::forge::discovery::discover`].

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use url::Url;

use super::gitlab::default_api_url;
use super::keys::Table;
use super::settings::{At, Settings};
use super::{Checker, Forges, Mirror, Origin};
use crate::forge::gitlab::{Instance, Project, PUBLIC_URL};
use crate::url::RepoUrl;
use crate::url_rewrite::{Direction, Rewrites};

/// Which projects by visibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GitlabVisibility {
    #[default]
    All,
    Public,
    Internal,
    Private,
}

/// What a `[[gitlab_source]]` keeps of the group's projects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitlabFilters {
    /// Archived projects too (default: left out).
    pub archived: bool,
    /// Forks too (default: left out).
    pub forks: bool,
    pub visibility: GitlabVisibility,
    /// A glob over the project's path below the group (`*` any run of
    /// characters, case-insensitive); `None`: every project.
    pub matches: Option<String>,
}

impl GitlabFilters {
    /// Whether `project`, at `path` below the group, is mirrored.
    pub fn keep(&self, project: &Project, path: &str) -> bool {
        let visibility = project.visibility.as_deref().unwrap_or("private");
        (self.archived || !project.archived)
            && (self.forks || !project.is_fork())
            && match self.visibility {
                GitlabVisibility::All => true,
                GitlabVisibility::Public => visibility == "public",
                GitlabVisibility::Internal => visibility == "internal",
                GitlabVisibility::Private => visibility == "private",
            }
            && self.matches.as_ref().is_none_or(|glob| {
                crate::plan::wildcard_match(
                    glob.to_ascii_lowercase().as_bytes(),
                    path.to_ascii_lowercase().as_bytes(),
                )
            })
    }
}

/// One `[[gitlab_source]]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GitlabSource {
    /// The group's full path (`platform` or `platform/tools`).
    pub group: String,
    /// Projects of subgroups too.
    pub subgroups: bool,
    /// Each mirror's name pattern; default `{path}`.
    pub name: String,
    /// Each mirror's downstream pattern.
    pub downstream: String,
    pub filters: GitlabFilters,
    /// Where GitLab is.
    pub url: Url,
    pub api_url: Url,
    /// The `[[gitlab]]` of that instance, whose token lists the group; if
    /// none, the group's public projects are listed without one.
    pub instance: Option<Instance>,
    /// Every other setting of each mirror.
    pub prototype: Mirror,
    /// The file's forges, for each side of each mirror.
    pub forges: Forges,
    /// Whether the table names each side's token itself.
    pub own_tokens: [bool; 2],
    /// The user's `url.*.insteadOf` (for each upstream) and
    /// `pushInsteadOf` (for each downstream), as for a `[[mirror]]`.
    pub rewrites: Rewrites,
}

impl GitlabSource {
    /// The project's path below the group (`cli`, or `tools/cli` for a
    /// subgroup's), or `None` when it is not under the group.
    pub fn path_below(&self, project: &Project) -> Option<String> {
        below(&self.group, &project.path_with_namespace)
    }

    /// The mirror of `project`, or why not.
    pub fn mirror_for(&self, project: &Project) -> Result<Mirror, String> {
        let path = self.path_below(project).ok_or_else(|| {
            format!(
                "{} is not under the group {}",
                project.path_with_namespace, self.group
            )
        })?;
        let clone_url = self
            .rewrites
            .apply(&project.http_url_to_repo, Direction::Fetch);
        let upstream = RepoUrl::parse(&clone_url)
            .map_err(|e| format!("its http_url_to_repo {clone_url}: {e}"))?;
        let raw = self
            .rewrites
            .apply(
                &substitute(&self.downstream, &self.group, &project.path, &path),
                Direction::Push,
            )
            .into_owned();
        let downstream = RepoUrl::parse(&raw).map_err(|e| format!("downstream {raw}: {e}"))?;
        let mut mirror = self.prototype.clone();
        mirror.name = substitute(&self.name, &self.group, &project.path, &path);
        mirror.upstream = upstream;
        mirror.downstream = downstream;
        Ok(self.forges.apply(mirror, self.own_tokens))
    }
}

/// `full` below `group` (case-insensitively, as GitLab's paths are), or
/// `None`. Pure.
pub fn below(group: &str, full: &str) -> Option<String> {
    let prefix = format!("{}/", group.to_ascii_lowercase());
    full.to_ascii_lowercase()
        .starts_with(&prefix)
        .then(|| full[prefix.len()..].to_owned())
        .filter(|rest| !rest.is_empty())
}

/// `pattern` with `{group}`, `{name}` (the project's own path), `{path}`
/// (its path below the group) and `{path_dashed}` (the same with `-` for
/// `/`) replaced. Pure.
pub fn substitute(pattern: &str, group: &str, name: &str, path: &str) -> String {
    pattern
        .replace("{group}", group)
        .replace("{name}", name)
        .replace("{path_dashed}", &path.replace('/', "-"))
        .replace("{path}", path)
}

/// The keys a `[[gitlab_source]]` has besides the per-mirror ones.
const OWN_KEYS: &[&str] = &[
    "url",
    "group",
    "subgroups",
    "archived",
    "forks",
    "visibility",
    "match",
];

/// One `[[gitlab_source]]` as read, before it is checked against the
/// `[[gitlab]]`s.
pub(super) struct GitlabSourceTable {
    header: usize,
    url: Option<At<String>>,
    group: Option<At<String>>,
    subgroups: bool,
    filters: GitlabFilters,
    own_tokens: [bool; 2],
    settings: Settings,
}

impl Checker<'_> {
    pub(super) fn gitlab_source_tables(
        &mut self,
        value: &Spanned<DeValue<'_>>,
    ) -> Vec<GitlabSourceTable> {
        let mut tables = Vec::new();
        for (header, table) in self.array_of_tables(value, "gitlab_source") {
            let mut rest: DeTable<'_> = table.clone();
            let (mut url, mut group, mut subgroups) = (None, None, false);
            let mut filters = GitlabFilters::default();
            for key in OWN_KEYS {
                let Some((_, value)) = rest.remove_entry(*key) else {
                    continue;
                };
                let at = value.span().start;
                match *key {
                    "url" => url = self.string(key, &value).map(|v| At { value: v, at }),
                    "group" => group = self.string(key, &value).map(|v| At { value: v, at }),
                    "subgroups" => subgroups = self.boolean(key, &value).unwrap_or(false),
                    "archived" => filters.archived = self.boolean(key, &value).unwrap_or(false),
                    "forks" => filters.forks = self.boolean(key, &value).unwrap_or(false),
                    "match" => filters.matches = self.string(key, &value),
                    _ => match self.string(key, &value).as_deref() {
                        Some("all") => filters.visibility = GitlabVisibility::All,
                        Some("public") => filters.visibility = GitlabVisibility::Public,
                        Some("internal") => filters.visibility = GitlabVisibility::Internal,
                        Some("private") => filters.visibility = GitlabVisibility::Private,
                        Some(other) => self.error(
                            at,
                            format!(
                                "`visibility` is \"all\", \"public\", \"internal\" or \"private\", not {other:?}"
                            ),
                        ),
                        None => {}
                    },
                }
            }
            if let Some((key, _)) = rest.get_key_value("upstream") {
                self.error(
                    key.span().start,
                    "[[gitlab_source]] takes each upstream from the group's listing; drop `upstream`",
                );
                rest.remove("upstream");
            }
            let settings = self.settings(&rest, Table::Mirror);
            let own_tokens = super::own_tokens(&settings);
            tables.push(GitlabSourceTable {
                header,
                url,
                group,
                subgroups,
                filters,
                own_tokens,
                settings,
            });
        }
        tables
    }

    pub(super) fn gitlab_source(
        &mut self,
        t: GitlabSourceTable,
        defaults: &Settings,
    ) -> Option<GitlabSource> {
        let s = t.settings.over(defaults);
        let Some(group) = t.group else {
            self.error(
                t.header,
                "[[gitlab_source]] has no `group`: the group's full path, e.g. \"platform\"",
            );
            return None;
        };
        let Some(downstream) = s.downstream.clone() else {
            self.error(t.header, "[[gitlab_source]] has no `downstream`: a pattern with {name} or {path}, e.g. \"https://github.com/acme-mirror/{name}.git\"");
            return None;
        };
        let path = group.value.trim_matches('/');
        if path.is_empty() || path.contains([' ', '\\']) || path.contains("//") {
            self.error(
                group.at,
                "`group` must be a group's full path (`platform` or `platform/tools`)",
            );
            return None;
        }
        let url = match &t.url {
            Some(raw) => self.gitlab_url("url", raw)?,
            None => Url::parse(PUBLIC_URL).expect("because GitLab.com's URL is valid"),
        };
        let example = self
            .rewrites
            .apply(
                &substitute(&downstream.value, path, "example", "example"),
                Direction::Push,
            )
            .into_owned();
        if let Err(e) = RepoUrl::parse(&example) {
            self.error(downstream.at, format!("`downstream`: {e}"));
            return None;
        }
        let instance = self
            .forges
            .gitlab
            .iter()
            .find(|i| same_instance(&i.url, &url))
            .cloned();
        let api_url = instance
            .as_ref()
            .map_or_else(|| default_api_url(&url), |i| i.api_url.clone());
        let placeholder = RepoUrl::Local {
            path: Default::default(),
            url: None,
        };
        let origin = Origin {
            line: self.place(t.header).line,
            template: None,
        };
        let prototype = s.mirror(String::new(), placeholder.clone(), placeholder, origin);
        Some(GitlabSource {
            group: path.to_owned(),
            subgroups: t.subgroups,
            name: s
                .name
                .as_ref()
                .map_or("{path}".to_owned(), |n| n.value.clone()),
            downstream: downstream.value,
            filters: t.filters,
            url,
            api_url,
            instance,
            prototype,
            forges: self.forges.clone(),
            own_tokens: t.own_tokens,
            rewrites: self.rewrites.clone(),
        })
    }
}

/// Whether two GitLab URLs name the same instance: host, port and root.
fn same_instance(a: &Url, b: &Url) -> bool {
    crate::forge::owners::authority(a) == crate::forge::owners::authority(b)
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(path: &str, visibility: &str, archived: bool, fork: bool) -> Project {
        Project {
            id: 1,
            path: path.rsplit('/').next().unwrap_or(path).to_owned(),
            path_with_namespace: format!("platform/{path}"),
            default_branch: Some("main".into()),
            visibility: Some(visibility.into()),
            archived,
            http_url_to_repo: format!("https://gitlab.example/platform/{path}.git"),
            forked_from_project: fork.then(|| serde_json::json!({"id": 9})),
        }
    }

    #[test]
    fn gitlab_source_filters_keep_what_they_say() {
        let projects = [
            project("api", "public", false, false),
            project("web", "private", false, false),
            project("old", "public", true, false),
            project("copy", "internal", false, true),
            project("tools/API-cli", "internal", false, false),
        ];
        let kept = |f: &GitlabFilters| -> Vec<String> {
            projects
                .iter()
                .filter(|p| {
                    f.keep(
                        p,
                        &below("platform", &p.path_with_namespace).unwrap_or_default(),
                    )
                })
                .map(|p| p.path.clone())
                .collect()
        };
        assert_eq!(kept(&GitlabFilters::default()), ["api", "web", "API-cli"]);
        let all = GitlabFilters {
            archived: true,
            forks: true,
            ..GitlabFilters::default()
        };
        assert_eq!(kept(&all).len(), 5);
        let internal = GitlabFilters {
            visibility: GitlabVisibility::Internal,
            ..GitlabFilters::default()
        };
        assert_eq!(kept(&internal), ["API-cli"]);
        let glob = GitlabFilters {
            matches: Some("tools/*".into()),
            ..GitlabFilters::default()
        };
        assert_eq!(kept(&glob), ["API-cli"]);
    }

    #[test]
    fn gitlab_source_paths_and_patterns() {
        assert_eq!(below("platform", "platform/api").as_deref(), Some("api"));
        assert_eq!(
            below("Platform", "platform/tools/cli").as_deref(),
            Some("tools/cli")
        );
        assert_eq!(below("platform", "platformx/api"), None);
        assert_eq!(below("platform", "platform/"), None);
        assert_eq!(
            substitute(
                "https://github.com/m/{path_dashed}.git|{path}|{name}|{group}",
                "platform",
                "cli",
                "tools/cli"
            ),
            "https://github.com/m/tools-cli.git|tools/cli|cli|platform"
        );
    }
}
