//! The fleet config file: many mirrors in one TOML file.
//!
//! [`load`] reads and validates a file before anything connects; every
//! problem is reported with its file, line and column. Templates are
//! expanded here, so the rest of Kalandra only sees [`Mirror`]s. The
//! format is documented in docs/config.md.
//!
//! [`parse`] does the work over text, with the environment and the file
//! system given, so that every message can be tested on a string. The
//! steps, in order: TOML syntax ([`toml::de::DeTable`] keeps each value's
//! span), each table's keys (`settings`), each mirror and template merged
//! over `[defaults]` and expanded (`expand`).
//!
//! Secrets are only named here ([`SecretRef`]); [`resolve_secret`] reads
//! one at sync time.

mod duration;
mod expand;
mod github_app;
mod github_org;
mod github_source;
mod gitlab;
mod gitlab_source;
mod keys;
mod secret;
mod settings;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::forge::github_repo::Visibility;
use crate::forge::gitlab::Instance;
use crate::forge::App;
use crate::git_config::GitConfig;
use crate::plan::Divergence;
use crate::url::RepoUrl;
use crate::url_rewrite::Rewrites;
use keys::Table;
use settings::{a_type, in_file_order, Settings};

pub use github_org::GithubOrg;
pub use github_source::{Filters, GithubSource, Listed, Visibility as SourceVisibility};
pub use gitlab_source::{GitlabFilters, GitlabSource, GitlabVisibility};
pub use secret::{resolve_secret, resolve_secret_with, SecretError};

/// Every mirror of a config file, templates expanded, in file order
/// (mirrors first in their order, then each template's names in order).
#[derive(Debug, Clone)]
pub struct Fleet {
    pub path: PathBuf,
    pub mirrors: Vec<Mirror>,
    /// The `[[github_app]]`s, in file order.
    pub github_apps: Vec<App>,
    /// The `[[github_org]]`s, in file order: their mirrors are added to
    /// `mirrors` by [`crate::forge::github_org::discover`].
    pub github_orgs: Vec<GithubOrg>,
    /// The `[[github_source]]`s, in file order: their mirrors are added
    /// by the same step.
    pub github_sources: Vec<GithubSource>,
    /// The `[[gitlab]]`s, in file order.
    pub gitlab: Vec<Instance>,
    /// The `[[gitlab_source]]`s, in file order: their mirrors are added
    /// by the same step.
    pub gitlab_sources: Vec<GitlabSource>,
}

impl Fleet {
    /// Whether loading this config lists repositories through an API.
    pub fn discovers(&self) -> bool {
        !self.github_orgs.is_empty()
            || !self.github_sources.is_empty()
            || !self.gitlab_sources.is_empty()
    }
}

/// One upstream/downstream pair and how to sync it.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// Unique within the file.
    pub name: String,
    /// With `upstream_property`, a stand-in (the downstream URL) until the
    /// property is read before each sync.
    pub upstream: RepoUrl,
    pub downstream: RepoUrl,
    /// `upstream = "target-prop:NAME"`: the custom property of the
    /// downstream GitHub repository that holds the upstream URL
    /// ([`crate::forge::target_prop`]), read through `downstream_app`.
    pub upstream_property: Option<String>,
    /// Empty means the default scope (branches and tags).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub prune: bool,
    pub divergence: Divergence,
    pub immutable_tags: bool,
    pub atomic: bool,
    pub allow_mass_delete: bool,
    /// `None`: the environment's or the built-in default.
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub low_speed_limit: Option<u64>,
    pub low_speed_time: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub upstream_token: Option<SecretRef>,
    pub downstream_token: Option<SecretRef>,
    /// The GitHub App whose installation token is upstream's http
    /// password: the first `[[github_app]]` that serves upstream's URL,
    /// unless the mirror (or its template) names a token of its own.
    pub upstream_app: Option<App>,
    /// The same for downstream.
    pub downstream_app: Option<App>,
    /// The `[[gitlab]]` downstream is a project of, when no GitHub App
    /// serves it: `create_missing` and `follow_head` go through its API.
    pub downstream_gitlab: Option<Instance>,
    /// Create a missing downstream: a local one with `git init --bare`, a
    /// GitHub one through its app (`POST /orgs/{org}/repos`).
    pub create_missing: bool,
    /// Who may see a GitHub repository `create_missing` creates.
    pub create_visibility: Visibility,
    /// Point downstream's HEAD (a GitHub repository's default branch) at
    /// upstream's after each sync.
    pub follow_head: bool,
    /// How many times a transient failure is retried (`retries`).
    pub retries: u32,
    /// The largest pack one push may carry (`max_pack_bytes`); `None`: no
    /// cap.
    pub max_pack_bytes: Option<u64>,
    /// The most ref updates one push may carry (`max_refs_per_push`,
    /// default 1000); `None`: no cap.
    pub max_refs_per_push: Option<usize>,
    /// Whether LFS objects go along (`lfs`, default `auto`).
    pub lfs: crate::lfs::Mode,
    /// `upstream_lfs_url`, `downstream_lfs_url`.
    pub lfs_urls: crate::lfs::Endpoints,
    /// `kalandra watch`: how often the mirror syncs without a webhook.
    pub interval: Duration,
    /// `kalandra watch`: what authenticates its webhooks.
    pub webhook_secret: Option<SecretRef>,
    /// Where the mirror was defined, for messages.
    pub origin: Origin,
}

impl Mirror {
    /// Upstream as messages and listings show it: `target-prop:NAME` until
    /// the property is read.
    pub fn upstream_shown(&self) -> String {
        match &self.upstream_property {
            Some(name) => format!("{}{name}", crate::forge::target_prop::PREFIX),
            None => self.upstream.to_string(),
        }
    }
}

/// The default of `retries`.
pub const DEFAULT_RETRIES: u32 = 3;

/// The default of `interval`: often enough that a mirror without webhooks
/// lags by minutes, rarely enough that 500 of them do not hammer a forge.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);

/// A secret named by the config, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `*_token_env = "NAME"`.
    Env(String),
    /// `*_token_file = "PATH"`, relative paths from the config file's
    /// directory.
    File(PathBuf),
}

/// Where in the file a mirror came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line of its `[[mirror]]` or `[[template]]` header.
    pub line: usize,
    /// Set when the mirror was expanded from a template: that
    /// `[[template]]`'s 0-based index among the file's templates.
    pub template: Option<usize>,
}

/// Reads and validates `path`, with the process's environment and files.
pub fn load(path: &Path) -> Result<Fleet, Errors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Errors(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    // `upstream` and `downstream` are rewritten by the user's
    // url.*.insteadOf and pushInsteadOf, as git rewrites a remote's URLs.
    let rewrites = GitConfig::read_blocking(crate::git_config::SETTINGS_PATTERN)
        .map(|config| Rewrites::from_config(&config))
        .map_err(|e| {
            Errors(vec![Diagnostic {
                file: path.to_owned(),
                line: 0,
                column: 0,
                message: e.to_string(),
            }])
        })?;
    parse_rewritten(
        &text,
        path,
        &|name| std::env::var(name).ok(),
        &|path| std::fs::read_to_string(path),
        &rewrites,
    )
}

/// Validates `text`, the content of the config file at `path`, and expands
/// its templates. `env` answers for environment variables and `read` for
/// files (token files and `names_file`s); relative paths in the file are
/// taken from `path`'s directory.
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Fleet, Errors> {
    parse_rewritten(text, path, env, read, &Rewrites::default())
}

/// [`parse`], with `upstream` rewritten by `rewrites` as a fetch URL and
/// `downstream` as a push URL before they are checked.
pub fn parse_rewritten(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> io::Result<String>,
    rewrites: &Rewrites,
) -> Result<Fleet, Errors> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut checker = Checker {
        file: path,
        text,
        dir,
        env,
        read,
        rewrites,
        names: HashMap::new(),
        forges: Forges::default(),
        diagnostics: Vec::new(),
    };
    let (mirrors, discovery) = checker.fleet();
    let mut diagnostics = checker.diagnostics;
    if diagnostics.is_empty() {
        return Ok(Fleet {
            path: path.to_owned(),
            mirrors,
            github_apps: checker.forges.apps,
            github_orgs: discovery.github_orgs,
            github_sources: discovery.github_sources,
            gitlab: checker.forges.gitlab,
            gitlab_sources: discovery.gitlab_sources,
        });
    }
    // The config file's own problems first, in file order, then those of
    // the files it names.
    diagnostics.sort_by(|a, b| {
        (a.file != path, &a.file, a.line, a.column).cmp(&(
            b.file != path,
            &b.file,
            b.line,
            b.column,
        ))
    });
    diagnostics.dedup();
    Err(Errors(diagnostics))
}

/// Every problem found in a config file. `Display` writes one line per
/// problem, `FILE:LINE:COL: message`, as compilers do.
#[derive(Debug, Clone)]
pub struct Errors(pub Vec<Diagnostic>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// One problem, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place in the file (it cannot be read).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.line {
            0 => write!(f, "{file}: {}", self.message),
            line => write!(f, "{file}:{line}:{}: {}", self.column, self.message),
        }
    }
}

/// A place in the config file or in a file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    file: PathBuf,
    line: usize,
    column: usize,
}

/// One pass over one config file, gathering every problem.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    /// The config file's directory, for relative paths in it.
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    read: &'a dyn Fn(&Path) -> io::Result<String>,
    rewrites: &'a Rewrites,
    /// Each mirror name taken so far, and where.
    names: HashMap<String, Place>,
    /// The `[[github_app]]`s and `[[gitlab]]`s, once read: what the
    /// mirrors authenticate with, and what `create_missing` may create a
    /// remote downstream with.
    forges: Forges,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn fleet(&mut self) -> (Vec<Mirror>, Discovery) {
        let text = self.text;
        let (document, syntax) = DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            for e in syntax {
                self.error(e.span().map_or(0, |span| span.start), e.message());
            }
            return (Vec::new(), Discovery::default());
        }
        let mut defaults = Settings::default();
        let (mut mirrors, mut templates, mut apps) = (Vec::new(), Vec::new(), Vec::new());
        let (mut org_tables, mut source_tables) = (Vec::new(), Vec::new());
        let (mut gitlab, mut gitlab_source_tables) = (Vec::new(), Vec::new());
        for (key, value) in in_file_order(document.get_ref()) {
            match &**key.get_ref() {
                "defaults" => match value.get_ref() {
                    DeValue::Table(table) => defaults = self.settings(table, Table::Defaults),
                    other => self.error(
                        value.span().start,
                        format!("`defaults` must be a table ([defaults]), not {}", a_type(other)),
                    ),
                },
                "mirror" => mirrors = self.tables(value, Table::Mirror),
                "template" => templates = self.tables(value, Table::Template),
                "github_app" => apps = self.github_apps(value),
                "github_org" => org_tables = self.github_org_tables(value),
                "github_source" => source_tables = self.github_source_tables(value),
                "gitlab" => gitlab = self.gitlabs(value),
                "gitlab_source" => gitlab_source_tables = self.gitlab_source_tables(value),
                other if keys::MIRROR.contains(&other) => self.error(
                    key.span().start,
                    format!("`{other}` is a per-mirror key: set it in [defaults], a [[mirror]] or a [[template]]"),
                ),
                other => self.unknown_key(other, key.span().start, keys::TOP_LEVEL),
            }
        }
        self.forges = Forges { apps, gitlab };
        let mut fleet = Vec::with_capacity(mirrors.len());
        for (header, own) in mirrors {
            let tokens = own_tokens(&own);
            let mirror = self.mirror(header, &own.over(&defaults));
            fleet.extend(mirror.map(|m| self.forges.apply(m, tokens)));
        }
        for (index, (header, own)) in templates.into_iter().enumerate() {
            let tokens = own_tokens(&own);
            let expanded = self.template(index, header, &own.over(&defaults));
            fleet.extend(expanded.into_iter().map(|m| self.forges.apply(m, tokens)));
        }
        let apps = self.forges.apps.clone();
        for mirror in &fleet {
            self.check_target_prop(mirror);
        }
        let orgs = org_tables
            .into_iter()
            .filter_map(|t| {
                let settings = t.settings.over(&defaults);
                self.github_org(t.header, t.org, t.property, &settings, &apps)
            })
            .collect();
        let github_sources = source_tables
            .into_iter()
            .filter_map(|t| self.github_source(t, &defaults, &apps))
            .collect();
        let gitlab_sources = gitlab_source_tables
            .into_iter()
            .filter_map(|t| self.gitlab_source(t, &defaults))
            .collect();
        let discovery = Discovery {
            github_orgs: orgs,
            github_sources,
            gitlab_sources,
        };
        (fleet, discovery)
    }

    /// A `target-prop:` upstream is read through the API with the
    /// downstream's GitHub App, so downstream must be one an app serves.
    fn check_target_prop(&mut self, mirror: &Mirror) {
        let Some(property) = &mirror.upstream_property else {
            return;
        };
        if mirror.downstream_app.is_some() {
            return;
        }
        let place = Place {
            file: self.file.to_owned(),
            line: mirror.origin.line,
            column: 1,
        };
        self.error_at(
            &place,
            format!(
                "mirror {}: `upstream = \"target-prop:{property}\"` reads the property of downstream {} through the GitHub API, so a [[github_app]] must serve downstream (and downstream must not name its own token)",
                mirror.name,
                crate::url::mask_credentials(&mirror.downstream.to_string()),
            ),
        );
    }

    /// The tables of `[[mirror]]` or `[[template]]`, each with the offset
    /// of its header.
    fn tables(&mut self, value: &Spanned<DeValue<'_>>, kind: Table) -> Vec<(usize, Settings)> {
        let name = kind.header().trim_matches(['[', ']']);
        self.array_of_tables(value, name)
            .into_iter()
            .map(|(header, table)| (header, self.settings(table, kind)))
            .collect()
    }

    /// The tables of the array of tables `[[name]]`, each with the offset of
    /// its header; a value of another shape is reported and left out.
    pub(super) fn array_of_tables<'a, 'v>(
        &mut self,
        value: &'a Spanned<DeValue<'v>>,
        name: &str,
    ) -> Vec<(usize, &'a DeTable<'v>)> {
        let DeValue::Array(array) = value.get_ref() else {
            self.error(
                value.span().start,
                format!(
                    "`{name}` must be an array of tables ([[{name}]]), not {}",
                    a_type(value.get_ref())
                ),
            );
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(array.len());
        for item in array.iter() {
            match item.get_ref() {
                DeValue::Table(table) => tables.push((item.span().start, table)),
                other => self.error(
                    item.span().start,
                    format!("each [[{name}]] must be a table, not {}", a_type(other)),
                ),
            }
        }
        tables
    }

    /// The line and column of a byte offset in the config file.
    fn place(&self, offset: usize) -> Place {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Place {
            file: self.file.to_owned(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    fn error(&mut self, offset: usize, message: impl Into<String>) {
        let place = self.place(offset);
        self.error_at(&place, message);
    }

    fn error_at(&mut self, place: &Place, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: place.file.clone(),
            line: place.line,
            column: place.column,
            message: message.into(),
        });
    }

    /// `path` as written in the config file, relative ones taken from the
    /// config file's directory. A result that would begin with `-` gets a
    /// `./`, so that no program reads it as an option.
    fn beside_config(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            return path.to_owned();
        }
        let joined: PathBuf = self
            .dir
            .join(path)
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect();
        if joined.as_os_str().is_empty() {
            PathBuf::from(".")
        } else if joined.as_os_str().as_encoded_bytes().starts_with(b"-") {
            Path::new(".").join(joined)
        } else {
            joined
        }
    }
}

/// The tables of a file that list repositories through an API.
#[derive(Default)]
struct Discovery {
    github_orgs: Vec<GithubOrg>,
    github_sources: Vec<GithubSource>,
    gitlab_sources: Vec<GitlabSource>,
}

/// Whether a table names upstream's and downstream's tokens itself
/// (not through `[defaults]`).
fn own_tokens(own: &Settings) -> [bool; 2] {
    [own.upstream_token.is_some(), own.downstream_token.is_some()]
}

/// The forges of a config file: what each mirror's sides authenticate
/// with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forges {
    /// The `[[github_app]]`s, in file order.
    pub apps: Vec<App>,
    /// The `[[gitlab]]`s, in file order.
    pub gitlab: Vec<Instance>,
}

impl Forges {
    /// `mirror` with the forge of each side. A side gets the first GitHub
    /// App in file order whose git host and owners match its URL, else the
    /// token of the first `[[gitlab]]` whose URL it is under. A token the
    /// mirror names itself wins over both; they win over a `[defaults]`
    /// token, which then does not apply to that side. A downstream on a
    /// `[[gitlab]]` is remembered for `create_missing` and `follow_head`
    /// even when the mirror names its own token.
    pub fn apply(&self, mut mirror: Mirror, own_tokens: [bool; 2]) -> Mirror {
        let app_for = |url: &RepoUrl| match url {
            RepoUrl::Http { url } => self
                .apps
                .iter()
                .find(|app| app.serves(url).is_some())
                .cloned(),
            _ => None,
        };
        let gitlab_for = |url: &RepoUrl| match url {
            RepoUrl::Http { url } => self
                .gitlab
                .iter()
                .find(|gitlab| gitlab.serves(url).is_some())
                .cloned(),
            _ => None,
        };
        let upstream_gitlab = gitlab_for(&mirror.upstream);
        if !own_tokens[0] {
            mirror.upstream_app = app_for(&mirror.upstream);
            if mirror.upstream_app.is_some() {
                mirror.upstream_token = None;
            } else if let Some(gitlab) = &upstream_gitlab {
                mirror.upstream_token.clone_from(&gitlab.token);
            }
        }
        if !own_tokens[1] {
            mirror.downstream_app = app_for(&mirror.downstream);
            if mirror.downstream_app.is_some() {
                mirror.downstream_token = None;
            }
        }
        if mirror.downstream_app.is_none() {
            mirror.downstream_gitlab = gitlab_for(&mirror.downstream);
            if let (false, Some(gitlab)) = (own_tokens[1], &mirror.downstream_gitlab) {
                mirror.downstream_token.clone_from(&gitlab.token);
            }
        }
        mirror
    }
}

#[cfg(test)]
mod tests;
