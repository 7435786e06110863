//! One table's keys (`[defaults]`, a `[[mirror]]` or a `[[template]]`),
//! read and checked one by one, and merged over the defaults.

use std::path::Path;
use std::time::Duration;

use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

use super::keys::{self, Table};
use super::secret::resolve_secret_with;
use super::{Checker, Mirror, Origin, SecretRef, DEFAULT_INTERVAL, DEFAULT_RETRIES};
use crate::forge::github_repo::Visibility;
use crate::plan::{Divergence, Glob};

/// A value and the byte offset where it stands in the config file.
#[derive(Debug, Clone)]
pub(super) struct At<T> {
    pub value: T,
    pub at: usize,
}

/// What one table sets; `None` where it is silent.
#[derive(Debug, Clone, Default)]
pub(super) struct Settings {
    pub name: Option<At<String>>,
    pub upstream: Option<At<String>>,
    pub downstream: Option<At<String>>,
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub prune: Option<bool>,
    pub divergence: Option<Divergence>,
    pub immutable_tags: Option<bool>,
    pub atomic: Option<bool>,
    pub allow_mass_delete: Option<bool>,
    pub connect_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub low_speed_limit: Option<u64>,
    pub low_speed_time: Option<Duration>,
    pub max_duration: Option<Duration>,
    pub upstream_token: Option<SecretRef>,
    pub downstream_token: Option<SecretRef>,
    pub create_missing: Option<bool>,
    pub create_visibility: Option<Visibility>,
    pub follow_head: Option<bool>,
    pub retries: Option<u32>,
    pub max_pack_bytes: Option<u64>,
    pub lfs: Option<crate::lfs::Mode>,
    pub upstream_lfs_url: Option<url::Url>,
    pub downstream_lfs_url: Option<url::Url>,
    /// `Some(None)`: `max_refs_per_push = 0`, no cap.
    pub max_refs_per_push: Option<Option<usize>>,
    pub interval: Option<Duration>,
    pub webhook_secret: Option<SecretRef>,
    /// `[[template]]` only.
    pub names: Option<At<Vec<At<String>>>>,
    pub names_file: Option<At<String>>,
    /// Which of `name`, `upstream` and `downstream` the table writes, even
    /// with a value of the wrong type (it is then not reported missing).
    pub written: Vec<&'static str>,
}

impl Settings {
    /// These settings where they speak, `defaults` elsewhere. A side's
    /// token is one setting: a mirror's `*_token_file` replaces a default
    /// `*_token_env`.
    pub(super) fn over(mut self, defaults: &Settings) -> Settings {
        let written = std::mem::take(&mut self.written);
        macro_rules! merged {
            ($($field:ident),* $(,)?) => {
                Settings { $($field: self.$field.or_else(|| defaults.$field.clone()),)* written }
            };
        }
        merged!(
            name,
            upstream,
            downstream,
            include,
            exclude,
            prune,
            divergence,
            immutable_tags,
            atomic,
            allow_mass_delete,
            connect_timeout,
            idle_timeout,
            low_speed_limit,
            low_speed_time,
            max_duration,
            upstream_token,
            downstream_token,
            create_missing,
            create_visibility,
            follow_head,
            retries,
            max_pack_bytes,
            max_refs_per_push,
            lfs,
            upstream_lfs_url,
            downstream_lfs_url,
            interval,
            webhook_secret,
            names,
            names_file,
        )
    }

    /// The mirror these (merged) settings describe, defaults filled in.
    pub(super) fn mirror(
        &self,
        name: String,
        upstream: crate::url::RepoUrl,
        downstream: crate::url::RepoUrl,
        origin: Origin,
    ) -> Mirror {
        Mirror {
            name,
            upstream,
            downstream,
            upstream_property: None,
            include: self.include.clone().unwrap_or_default(),
            exclude: self.exclude.clone().unwrap_or_default(),
            prune: self.prune.unwrap_or(true),
            divergence: self.divergence.unwrap_or_default(),
            immutable_tags: self.immutable_tags.unwrap_or(false),
            atomic: self.atomic.unwrap_or(false),
            allow_mass_delete: self.allow_mass_delete.unwrap_or(false),
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            low_speed_limit: self.low_speed_limit,
            low_speed_time: self.low_speed_time,
            max_duration: self.max_duration,
            upstream_token: self.upstream_token.clone(),
            downstream_token: self.downstream_token.clone(),
            upstream_app: None,
            downstream_app: None,
            downstream_gitlab: None,
            create_missing: self.create_missing.unwrap_or(false),
            create_visibility: self.create_visibility.unwrap_or_default(),
            follow_head: self.follow_head.unwrap_or(false),
            retries: self.retries.unwrap_or(DEFAULT_RETRIES),
            max_pack_bytes: self.max_pack_bytes,
            lfs: self.lfs.unwrap_or_default(),
            lfs_urls: crate::lfs::Endpoints {
                upstream: self.upstream_lfs_url.clone(),
                downstream: self.downstream_lfs_url.clone(),
            },
            // `atomic` asks for one all-or-nothing push: only a cap set
            // outright splits it.
            max_refs_per_push: self.max_refs_per_push.unwrap_or(
                (!self.atomic.unwrap_or(false)).then_some(crate::batch::DEFAULT_MAX_REFS),
            ),
            interval: self.interval.unwrap_or(DEFAULT_INTERVAL),
            webhook_secret: self.webhook_secret.clone(),
            origin,
        }
    }
}

type Entry<'t, 'i> = (&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>);

/// A table's entries in the order the file writes them (the parser keeps
/// them sorted by name), so that messages come in file order.
pub(super) fn in_file_order<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

/// A TOML type with its article, as messages say it: "a string".
pub(super) fn a_type(value: &DeValue<'_>) -> String {
    let name = value.type_str();
    let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// The `*_token_env` and `*_token_file` keys of one side, before they are
/// checked against each other.
#[derive(Default)]
pub(super) struct TokenKeys {
    pub env: Option<At<String>>,
    pub file: Option<At<String>>,
}

impl Checker<'_> {
    /// Reads the keys of one table, reporting each problem.
    pub(super) fn settings(&mut self, table: &DeTable<'_>, kind: Table) -> Settings {
        let mut s = Settings::default();
        let (mut upstream_token, mut downstream_token, mut webhook_secret) = (
            TokenKeys::default(),
            TokenKeys::default(),
            TokenKeys::default(),
        );
        for (key, value) in in_file_order(table) {
            let name: &str = key.get_ref();
            let at = value.span().start;
            let string = |this: &mut Self| this.string(name, value).map(|v| At { value: v, at });
            match name {
                _ if kind == Table::Defaults && keys::OWN.contains(&name) => self.error(
                    key.span().start,
                    format!(
                        "`{name}` cannot be a default: set it in each [[mirror]] or [[template]]"
                    ),
                ),
                _ if kind != Table::Template && keys::TEMPLATE_ONLY.contains(&name) => self.error(
                    key.span().start,
                    format!(
                        "`{name}` belongs in a [[template]], not in {}",
                        kind.header()
                    ),
                ),
                "name" => {
                    s.written.push("name");
                    s.name = string(self);
                }
                "upstream" => {
                    s.written.push("upstream");
                    s.upstream = string(self);
                }
                "downstream" => {
                    s.written.push("downstream");
                    s.downstream = string(self);
                }
                "include" => s.include = self.globs(name, value),
                "exclude" => s.exclude = self.globs(name, value),
                "prune" => s.prune = self.boolean(name, value),
                "divergence" => s.divergence = self.divergence(value),
                "immutable_tags" => s.immutable_tags = self.boolean(name, value),
                "atomic" => s.atomic = self.boolean(name, value),
                "allow_mass_delete" => s.allow_mass_delete = self.boolean(name, value),
                "connect_timeout" => s.connect_timeout = self.duration(name, value),
                "idle_timeout" => s.idle_timeout = self.duration(name, value),
                "low_speed_limit" => s.low_speed_limit = self.integer(name, value),
                "low_speed_time" => s.low_speed_time = self.duration(name, value),
                "max_duration" => s.max_duration = self.duration(name, value),
                "upstream_token_env" => upstream_token.env = string(self),
                "upstream_token_file" => upstream_token.file = string(self),
                "downstream_token_env" => downstream_token.env = string(self),
                "downstream_token_file" => downstream_token.file = string(self),
                "create_missing" => s.create_missing = self.boolean(name, value),
                "create_visibility" => s.create_visibility = self.visibility(name, value),
                "follow_head" => s.follow_head = self.boolean(name, value),
                "interval" => s.interval = self.duration(name, value),
                "webhook_secret_env" => webhook_secret.env = string(self),
                "webhook_secret_file" => webhook_secret.file = string(self),
                "retries" => {
                    s.retries = self.integer(name, value).and_then(|n| {
                        u32::try_from(n)
                            .map_err(|_| self.error(at, format!("`{name}` is too large")))
                            .ok()
                    })
                }
                "max_pack_bytes" => s.max_pack_bytes = self.size(name, value),
                "lfs" => {
                    s.lfs = self.string(name, value).and_then(|text| {
                        crate::lfs::Mode::parse(&text).or_else(|| {
                            self.error(
                                at,
                                format!("`lfs` is \"auto\", \"on\" or \"off\", not {text:?}"),
                            );
                            None
                        })
                    })
                }
                "upstream_lfs_url" | "downstream_lfs_url" => {
                    let parsed = self.string(name, value).and_then(|text| {
                        crate::lfs::parse_endpoint(&text)
                            .map_err(|e| self.error(at, format!("`{name}`: {e}")))
                            .ok()
                    });
                    if name == "upstream_lfs_url" {
                        s.upstream_lfs_url = parsed;
                    } else {
                        s.downstream_lfs_url = parsed;
                    }
                }
                "max_refs_per_push" => {
                    s.max_refs_per_push = self.integer(name, value).and_then(|n| {
                        usize::try_from(n)
                            .map(|n| (n > 0).then_some(n))
                            .map_err(|_| self.error(at, format!("`{name}` is too large")))
                            .ok()
                    })
                }
                "names" => s.names = self.names(value),
                "names_file" => s.names_file = string(self),
                _ => self.unknown_key(name, key.span().start, &kind.keys()),
            }
        }
        s.upstream_token = self.token("upstream_token", upstream_token);
        s.downstream_token = self.token("downstream_token", downstream_token);
        s.webhook_secret = self.token("webhook_secret", webhook_secret);
        s
    }

    /// A size: bytes as an integer, or a string `crate::batch::parse_size`
    /// reads (`"256m"`, `"2GiB"`, `"github"`).
    fn size(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<u64> {
        let parsed = match value.get_ref() {
            DeValue::Integer(_) => {
                let n = self.integer(key, value)?;
                crate::batch::parse_size(&n.to_string())
            }
            DeValue::String(text) => crate::batch::parse_size(text),
            _ => {
                self.wrong_type(
                    key,
                    value,
                    "a size (an integer of bytes, or a string like \"256m\")",
                );
                return None;
            }
        };
        parsed
            .map_err(|e| self.error(value.span().start, format!("`{key}`: {e}")))
            .ok()
    }

    /// An unknown key: a slip of the keyboard gets its correction, and a
    /// key that looks like it holds a secret is refused as such.
    pub(super) fn unknown_key(&mut self, key: &str, at: usize, known: &[&str]) {
        let message = match (keys::closest(key, known), keys::inline_secret_hint(key)) {
            (Some(near), _) => format!("unknown key `{key}`: did you mean `{near}`?"),
            (None, Some(hint)) => hint,
            (None, None) => format!("unknown key `{key}`"),
        };
        self.error(at, message);
    }

    fn wrong_type(&mut self, key: &str, value: &Spanned<DeValue<'_>>, expected: &str) {
        self.error(
            value.span().start,
            format!(
                "`{key}` must be {expected}, not {}",
                a_type(value.get_ref())
            ),
        );
    }

    pub(super) fn string(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<String> {
        match value.get_ref() {
            DeValue::String(text) => Some(text.to_string()),
            _ => {
                self.wrong_type(key, value, "a string");
                None
            }
        }
    }

    fn visibility(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Visibility> {
        let text = self.string(key, value)?;
        let parsed = Visibility::parse(&text);
        if parsed.is_none() {
            self.error(
                value.span().start,
                format!(
                    "`{key}` must be \"private\", \"internal\" or \"public\", not {:?}",
                    crate::terminal::escape(&text)
                ),
            );
        }
        parsed
    }

    pub(super) fn boolean(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(key, value, "true or false");
                None
            }
        }
    }

    pub(super) fn integer(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<u64> {
        let DeValue::Integer(integer) = value.get_ref() else {
            self.wrong_type(key, value, "an integer");
            return None;
        };
        if integer.as_str().starts_with('-') {
            self.error(
                value.span().start,
                format!("`{key}` must be 0 or more, not {integer}"),
            );
            return None;
        }
        u64::from_str_radix(integer.as_str(), integer.radix())
            .map_err(|_| self.error(value.span().start, format!("`{key}` is too large")))
            .ok()
    }

    fn duration(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Duration> {
        super::duration::parse(value.get_ref())
            .map_err(|why| self.error(value.span().start, format!("`{key}` {why}")))
            .ok()
    }

    fn divergence(&mut self, value: &Spanned<DeValue<'_>>) -> Option<Divergence> {
        let policies = [Divergence::Force, Divergence::FfOnly, Divergence::Keep];
        let text = self.string("divergence", value)?;
        if let Some(policy) = policies.into_iter().find(|p| p.name() == text) {
            return Some(policy);
        }
        let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
        let mut message =
            format!("unknown divergence {text:?}: expected \"force\", \"ff-only\" or \"keep\"");
        if let Some(near) = keys::closest(&text, &names) {
            message.push_str(&format!(" (did you mean {near:?}?)"));
        }
        self.error(value.span().start, message);
        None
    }

    /// An array of strings, each reported where it stands.
    pub(super) fn strings(
        &mut self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Option<Vec<At<String>>> {
        let DeValue::Array(array) = value.get_ref() else {
            self.wrong_type(key, value, "an array of strings");
            return None;
        };
        let mut strings = Vec::with_capacity(array.len());
        for item in array.iter() {
            match item.get_ref() {
                DeValue::String(text) => strings.push(At {
                    value: text.to_string(),
                    at: item.span().start,
                }),
                other => self.error(
                    item.span().start,
                    format!("`{key}` holds strings, not {}", a_type(other)),
                ),
            }
        }
        (strings.len() == array.len()).then_some(strings)
    }

    /// Ref patterns, each checked as `sync --include` checks it.
    fn globs(&mut self, key: &str, value: &Spanned<DeValue<'_>>) -> Option<Vec<String>> {
        let patterns = self.strings(key, value)?;
        let mut valid = true;
        for pattern in &patterns {
            if let Err(e) = Glob::new(&pattern.value) {
                self.error(pattern.at, format!("`{key}`: {e}"));
                valid = false;
            }
        }
        valid.then(|| patterns.into_iter().map(|p| p.value).collect())
    }

    fn names(&mut self, value: &Spanned<DeValue<'_>>) -> Option<At<Vec<At<String>>>> {
        Some(At {
            value: self.strings("names", value)?,
            at: value.span().start,
        })
    }

    /// One side's token reference, checked now so that a missing secret
    /// stops the run before anything connects.
    /// A secret named by `{prefix}_env` or `{prefix}_file` (`upstream_token`,
    /// `downstream_token`, `webhook_secret`).
    pub(super) fn token(&mut self, prefix: &str, keys: TokenKeys) -> Option<SecretRef> {
        let (key, raw) = match (keys.env, keys.file) {
            (Some(env), Some(file)) => {
                self.error(
                    env.at.max(file.at),
                    format!("both `{prefix}_env` and `{prefix}_file` are set: keep one"),
                );
                return None;
            }
            (Some(env), None) => ("env", env),
            (None, Some(file)) => ("file", file),
            (None, None) => return None,
        };
        if raw.value.is_empty() {
            self.error(raw.at, format!("`{prefix}_{key}` is empty"));
            return None;
        }
        let secret = match key {
            "env" => SecretRef::Env(raw.value),
            _ => SecretRef::File(self.beside_config(Path::new(&raw.value))),
        };
        if let Err(e) = resolve_secret_with(&secret, self.env, self.read) {
            let cause = std::error::Error::source(&e)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default();
            self.error(raw.at, format!("`{prefix}_{key}`: {e}{cause}"));
        }
        Some(secret)
    }
}
