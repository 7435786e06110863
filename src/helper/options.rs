//! `option <name> <value>` commands: the settings git passes to a helper.

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
    pub leases: Vec<(String, Option<String>)>,
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
            "push-option" => {
                self.push_options.push(value.to_owned());
                Ok(())
            }
            "cas" => match value.split_once(':') {
                Some((name, expected)) => {
                    let expected = Some(expected.to_owned()).filter(|e| !e.is_empty());
                    self.leases.push((name.to_owned(), expected));
                    Ok(())
                }
                None => Err(OptionReply::Error(format!(
                    "expected <ref>:<oid> for cas, got {value:?}"
                ))),
            },
            _ => return OptionReply::Unsupported,
        };
        match result {
            Ok(()) => OptionReply::Ok,
            Err(reply) => reply,
        }
    }

    /// The lease on `dst`, if `--force-with-lease` named it.
    pub fn lease(&self, dst: &str) -> Option<&Option<String>> {
        self.leases
            .iter()
            .rev()
            .find(|(name, _)| name == dst)
            .map(|(_, expected)| expected)
    }
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
        options.apply("cas", &format!("refs/heads/main:{oid}"));
        options.apply("cas", "refs/heads/new:");
        assert_eq!(options.lease("refs/heads/main"), Some(&Some(oid)));
        assert_eq!(options.lease("refs/heads/new"), Some(&None));
        assert_eq!(options.lease("refs/heads/other"), None);
    }
}
