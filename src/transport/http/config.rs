//! The `http.*` settings of the user's git configuration that kalandra
//! honours, with git's environment variables taking precedence.

use std::path::PathBuf;

use tokio::process::Command;
use url::Url;

/// What git would use for a URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `GIT_SSL_CAINFO` or `http.sslCAInfo`: extra trusted roots.
    pub ca_info: Option<PathBuf>,
    /// `GIT_SSL_NO_VERIFY` or `http.sslVerify=false`.
    pub no_verify: bool,
    /// `http.proxy`.
    pub proxy: Option<String>,
}

impl HttpConfig {
    /// Reads `git config --get-urlmatch http <url>` (so `http.<url>.*`
    /// sections apply as they do for git), then the environment.
    pub async fn load(url: &Url) -> Self {
        let output = Command::new("git")
            .args(["config", "-z", "--get-urlmatch", "http"])
            .arg(url.as_str())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let listed = match output {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(e) => {
                tracing::debug!("cannot read git's http configuration: {e}");
                String::new()
            }
        };
        let mut config = Self::parse(&listed);
        if let Some(path) = std::env::var_os("GIT_SSL_CAINFO").filter(|p| !p.is_empty()) {
            config.ca_info = Some(PathBuf::from(path));
        }
        // git turns verification off when the variable is set at all.
        if std::env::var_os("GIT_SSL_NO_VERIFY").is_some_and(|v| !v.is_empty()) {
            config.no_verify = true;
        }
        config
    }

    /// Parses `git config -z` output: `key\nvalue\0` per entry.
    fn parse(listed: &str) -> Self {
        let mut config = Self::default();
        for entry in listed.split('\0') {
            let (key, value) = entry.split_once('\n').unwrap_or((entry, ""));
            match key.to_ascii_lowercase().as_str() {
                "http.sslcainfo" => config.ca_info = Some(expand_home(value)),
                "http.sslverify" => config.no_verify = !parse_bool(value),
                "http.proxy" if !value.is_empty() => config.proxy = Some(value.to_owned()),
                _ => {}
            }
        }
        config
    }
}

/// git's boolean spellings; a key without value is true.
fn parse_bool(value: &str) -> bool {
    !matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "false" | "no" | "off" | "0"
    )
}

fn expand_home(value: &str) -> PathBuf {
    match (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_null_separated_listing() {
        let listed = "http.sslverify\nfalse\0http.sslcainfo\n/etc/ca.pem\0http.proxy\nhttp://proxy:3128\0http.extraheader\nX: y\0";
        assert_eq!(
            HttpConfig::parse(listed),
            HttpConfig {
                ca_info: Some(PathBuf::from("/etc/ca.pem")),
                no_verify: true,
                proxy: Some("http://proxy:3128".into()),
            }
        );
    }

    #[test]
    fn bools_as_git_spells_them() {
        assert!(parse_bool("true"));
        assert!(parse_bool(""));
        assert!(parse_bool("yes"));
        assert!(!parse_bool("Off"));
        assert!(!parse_bool("0"));
        assert_eq!(HttpConfig::parse(""), HttpConfig::default());
    }
}
