//! `option <name> <value>` commands: the settings git passes to a helper.

use crate::helper::quote;
use crate::oid::ObjectId;

/// The settings that shape what the helper does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub progress: bool,
    pub verbosity: u32,
    /// git asked for `:object-format` in `list` output.
    pub object_format: bool,
    pub dry_run: bool,
    pub atomic: bool,
    pub push_options: Vec<String>,
    /// `--force-with-lease`: ref name and the value DOWN must still have
    /// (`None`: the ref must not exist).
    pub leases: Vec<(String, Option<ObjectId>)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            progress: false,
            verbosity: 1,
            object_format: false,
            dry_run: false,
            atomic: false,
            push_options: Vec::new(),
            leases: Vec::new(),
        }
    }
}

/// The answer to one `option` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionReply {
    Ok,
    Unsupported,
    Error(String),
}

impl OptionReply {
    pub fn line(&self) -> String {
        match self {
            Self::Ok => "ok".to_owned(),
            Self::Unsupported => "unsupported".to_owned(),
            Self::Error(message) => format!("error {message}"),
        }
    }
}

impl Options {
    /// Applies one option. Anything not listed is `unsupported`, which git
    /// accepts for optional settings (it aborts only for the push options
    /// it cannot do without: dry-run, atomic, push-option).
    pub fn apply(&mut self, name: &str, value: &str) -> OptionReply {
        let flag = |value: &str| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(OptionReply::Error(format!(
                "expected true or false for {name}, got {other:?}"
            ))),
        };
        let result = match name {
            "progress" => flag(value).map(|v| self.progress = v),
            "verbosity" => value
                .parse()
                .map(|v| self.verbosity = v)
                .map_err(|_| OptionReply::Error(format!("expected a number, got {value:?}"))),
            "object-format" => flag(value).map(|v| self.object_format = v),
            "dry-run" => flag(value).map(|v| self.dry_run = v),
            "atomic" => flag(value).map(|v| self.atomic = v),
            "push-option" => push_option(value).map(|v| self.push_options.push(v)),
            "cas" => lease(value).map(|l| self.leases.push(l)),
            _ => return OptionReply::Unsupported,
        };
        match result {
            Ok(()) => OptionReply::Ok,
            Err(reply) => reply,
        }
    }

    /// The lease on `dst`, if `--force-with-lease` named it.
    pub fn lease(&self, dst: &str) -> Option<&Option<ObjectId>> {
        self.leases
            .iter()
            .rev()
            .find(|(name, _)| name == dst)
            .map(|(_, expected)| expected)
    }
}

/// A `push-option` value, C-quoted by git when it needs to be. It goes to
/// DOWN as text, so it must be UTF-8 once unquoted.
fn push_option(value: &str) -> Result<String, OptionReply> {
    let bytes = quote::option_value(value)
        .map_err(|e| OptionReply::Error(format!("invalid push-option: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        OptionReply::Error(format!(
            "push option {:?} is not UTF-8",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

/// A `cas` value, `<ref>:<expected oid>`, C-quoted as a whole when it needs
/// to be. git 2.47 sends the null id for `--force-with-lease=<ref>:` (the
/// ref must not exist, transport-helper.c `push_refs_with_push`); an empty
/// expected value means the same to git's own `--force-with-lease` parser.
fn lease(value: &str) -> Result<(String, Option<ObjectId>), OptionReply> {
    let malformed = || OptionReply::Error(format!("expected <ref>:<oid> for cas, got {value:?}"));
    let bytes =
        quote::option_value(value).map_err(|e| OptionReply::Error(format!("invalid cas: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let (name, expected) = text.split_once(':').ok_or_else(malformed)?;
    let expected = match expected {
        "" => None,
        hex => Some(ObjectId::from_hex(hex.as_bytes()).map_err(|_| malformed())?)
            .filter(|oid| !oid.is_null()),
    };
    Ok((name.to_owned(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_options_apply_and_others_are_unsupported() {
        let mut options = Options::default();
        assert_eq!(options.apply("progress", "true"), OptionReply::Ok);
        assert_eq!(options.apply("verbosity", "2"), OptionReply::Ok);
        assert_eq!(options.apply("dry-run", "true"), OptionReply::Ok);
        assert_eq!(options.apply("atomic", "true"), OptionReply::Ok);
        assert_eq!(options.apply("push-option", "a b"), OptionReply::Ok);
        assert_eq!(
            options.apply("followtags", "true"),
            OptionReply::Unsupported
        );
        assert!(options.progress && options.dry_run && options.atomic);
        assert_eq!(options.verbosity, 2);
        assert_eq!(options.push_options, vec!["a b".to_owned()]);
        assert!(matches!(
            options.apply("atomic", "maybe"),
            OptionReply::Error(_)
        ));
    }

    #[test]
    fn leases_keep_the_expected_value() {
        let mut options = Options::default();
        let oid = "1".repeat(40);
        let null = "0".repeat(40);
        for value in [
            format!("refs/heads/main:{oid}"),
            format!("refs/heads/new:{null}"),
            "refs/heads/empty:".to_owned(),
            format!(r#""refs/heads/\303\274:{oid}""#),
        ] {
            assert_eq!(options.apply("cas", &value), OptionReply::Ok, "{value}");
        }
        let oid = ObjectId::from_hex(oid.as_bytes()).expect("valid");
        assert_eq!(options.lease("refs/heads/main"), Some(&Some(oid.clone())));
        assert_eq!(options.lease("refs/heads/new"), Some(&None));
        assert_eq!(options.lease("refs/heads/empty"), Some(&None));
        assert_eq!(options.lease("refs/heads/ü"), Some(&Some(oid)));
        assert_eq!(options.lease("refs/heads/other"), None);
        for bad in ["refs/heads/x", "refs/heads/x:123", r#""refs/heads/x:\q""#] {
            assert!(
                matches!(options.apply("cas", bad), OptionReply::Error(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn push_options_are_unquoted() {
        let mut options = Options::default();
        // As git 2.47.3 sent `-o 'a "b" ü<TAB>t\z'` and `-o '"q'`.
        for value in [r#""a \"b\" \303\274\tt\\z""#, r#""\"q""#, "plain"] {
            assert_eq!(options.apply("push-option", value), OptionReply::Ok);
        }
        assert_eq!(options.push_options, ["a \"b\" ü\tt\\z", "\"q", "plain"]);
        for bad in [r#""\377""#, r#""open"#] {
            assert!(
                matches!(options.apply("push-option", bad), OptionReply::Error(_)),
                "{bad}"
            );
        }
    }
}
