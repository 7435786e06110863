//! The keys each table accepts, and the nearest one to a misspelt key.

/// The keys of a `[[mirror]]`, in the order the docs list them.
pub(super) const MIRROR: &[&str] = &[
    "name",
    "upstream",
    "downstream",
    "include",
    "exclude",
    "prune",
    "divergence",
    "immutable_tags",
    "atomic",
    "allow_mass_delete",
    "connect_timeout",
    "idle_timeout",
    "low_speed_limit",
    "low_speed_time",
    "max_duration",
    "upstream_token_env",
    "upstream_token_file",
    "downstream_token_env",
    "downstream_token_file",
    "create_missing",
    "create_visibility",
    "follow_head",
    "retries",
    "max_pack_bytes",
    "max_refs_per_push",
    "lfs",
    "upstream_lfs_url",
    "downstream_lfs_url",
    "interval",
    "webhook_secret_env",
    "webhook_secret_file",
];

/// The keys each mirror sets for itself; `[defaults]` refuses them.
pub(super) const OWN: &[&str] = &["name", "upstream", "downstream"];

/// The keys only a `[[template]]` has.
pub(super) const TEMPLATE_ONLY: &[&str] = &["names", "names_file"];

/// The tables of the file's top level.
pub(super) const TOP_LEVEL: &[&str] = &[
    "defaults",
    "mirror",
    "template",
    "github_app",
    "github_org",
    "github_source",
    "gitlab",
    "gitlab_source",
];

/// Which table a key stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    Defaults,
    Mirror,
    Template,
}

impl Table {
    pub(super) fn header(self) -> &'static str {
        match self {
            Self::Defaults => "[defaults]",
            Self::Mirror => "[[mirror]]",
            Self::Template => "[[template]]",
        }
    }

    /// Every key this table accepts.
    pub(super) fn keys(self) -> Vec<&'static str> {
        let mirror = MIRROR.iter().copied();
        match self {
            Self::Defaults => mirror.filter(|k| !OWN.contains(k)).collect(),
            Self::Mirror => mirror.collect(),
            Self::Template => mirror.chain(TEMPLATE_ONLY.iter().copied()).collect(),
        }
    }
}

/// The known key closest to `unknown`, when it is close enough to be a
/// slip of the keyboard (a transposition counts as one edit).
pub(super) fn closest<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (distance(unknown, k), *k))
        .filter(|(d, k)| *d <= (k.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The optimal string alignment distance: insertions, deletions,
/// substitutions and transpositions of neighbours, each one edit.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * width + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut best = (d[(i - 1) * width + j] + 1)
                    .min(d[i * width + j - 1] + 1)
                    .min(d[(i - 1) * width + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(d[(i - 2) * width + j - 2] + 1);
                }
                best
            };
        }
    }
    d[a.len() * width + b.len()]
}

/// Why a key looks like it holds a secret, and what to write instead, for
/// a key that is no known key.
pub(super) fn inline_secret_hint(key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    if !["token", "password", "passwd", "secret", "credential"]
        .iter()
        .any(|word| lower.contains(word))
    {
        return None;
    }
    let sides: &[&str] = if lower.starts_with("down") {
        &["downstream"]
    } else if lower.starts_with("up") {
        &["upstream"]
    } else {
        &["upstream", "downstream"]
    };
    let keys: Vec<String> = sides
        .iter()
        .map(|side| format!("`{side}_token_env` or `{side}_token_file`"))
        .collect();
    Some(format!(
        "`{key}` would put a secret in the config file; name it with {} instead (the value is not shown)",
        keys.join(", or ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_key_suggestions_catch_slips_not_strangers() {
        let keys = Table::Mirror.keys();
        assert_eq!(closest("upstraem", &keys), Some("upstream"));
        assert_eq!(closest("divergance", &keys), Some("divergence"));
        assert_eq!(closest("connect-timeout", &keys), Some("connect_timeout"));
        assert_eq!(closest("retires", &keys), Some("retries"));
        assert_eq!(closest("colour", &keys), None);
        assert_eq!(closest("x", &keys), None);
    }

    #[test]
    fn config_secret_looking_keys_are_recognised() {
        assert!(inline_secret_hint("prune").is_none());
        assert_eq!(
            inline_secret_hint("upstream_token").as_deref(),
            Some("`upstream_token` would put a secret in the config file; name it with `upstream_token_env` or `upstream_token_file` instead (the value is not shown)")
        );
        assert!(inline_secret_hint("password").is_some_and(|hint| hint
            .contains("`upstream_token_env` or `upstream_token_file`, or `downstream_token_env`")));
    }
}
