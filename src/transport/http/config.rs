//! The `http.*` settings of the user's git configuration that kalandra
//! honours, with git's environment variables taking precedence.

use std::fmt;
use std::path::PathBuf;

use url::Url;

use std::time::Duration;

use super::urlmatch;
use crate::git_config::{self, GitConfig};
use crate::transport::LowSpeed;

/// An `http.*` setting git would refuse too.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing value for '{key}'")]
    MissingValue { key: String },
    #[error(transparent)]
    Unreadable(#[from] git_config::Error),
    #[error("bad numeric config value '{value}' for '{key}'")]
    BadNumber { key: &'static str, value: String },
}

/// Every `http.*` entry, whatever URL it is for; matched in process.
const HTTP_PATTERN: &str = r"^http\.";

/// One `http.extraHeader` line, `Name: value`, sent with every request.
/// The value is a secret (`actions/checkout` hands its token over this
/// way): `Debug` shows only the name.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtraHeader(String);

impl ExtraHeader {
    /// The header's name and value, when the line has the `Name: value`
    /// shape.
    pub fn split(&self) -> Option<(&str, &str)> {
        let (name, value) = self.0.split_once(':')?;
        Some((name.trim(), value.trim()))
    }

    /// The name, for messages.
    pub fn name(&self) -> &str {
        self.split().map_or("(no name)", |(name, _)| name)
    }
}

impl fmt::Debug for ExtraHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExtraHeader({}: ***)", self.name())
    }
}

/// The `http.extraHeader` lines git would send to `url`: the entries
/// that match `url` as git's urlmatch picks them ([`urlmatch::pick`]), in
/// order, an empty value clearing the list.
pub fn extra_headers(config: &GitConfig, url: &Url) -> Result<Vec<ExtraHeader>, Error> {
    let mut headers = Vec::new();
    for (key, value) in urlmatch::pick(config, url).entries() {
        if key != "http.extraheader" {
            continue;
        }
        match value {
            None => {
                return Err(Error::MissingValue {
                    key: key.to_owned(),
                })
            }
            Some("") => headers.clear(),
            Some(line) => headers.push(ExtraHeader(line.to_owned())),
        }
    }
    Ok(headers)
}

/// What git would use for a URL.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// `GIT_SSL_CAINFO` or `http.sslCAInfo`: extra trusted roots.
    pub ca_info: Option<PathBuf>,
    /// `GIT_SSL_NO_VERIFY` or `http.sslVerify=false`.
    pub no_verify: bool,
    /// `http.proxy`.
    pub proxy: Option<String>,
    /// `http.extraHeader` and `http.<url>.extraHeader`.
    pub extra_headers: Vec<ExtraHeader>,
    /// `GIT_SSL_CERT` or `http.sslCert`.
    pub ssl_cert: Option<PathBuf>,
    /// `GIT_SSL_KEY` or `http.sslKey`.
    pub ssl_key: Option<PathBuf>,
    /// `http.cookieFile`.
    pub cookie_file: Option<PathBuf>,
    /// `http.version`, as written.
    pub version: Option<String>,
    /// `http.lowSpeedLimit` and `http.lowSpeedTime`, as written.
    pub low_speed_limit: Option<String>,
    pub low_speed_time: Option<String>,
}

impl HttpConfig {
    /// Reads the `http.*` settings git would apply to `url` (so
    /// `http.<url>.*` sections apply as they do for git), then the
    /// environment, then the multi-valued `http.extraHeader`.
    pub async fn load(url: &Url) -> Result<Self, Error> {
        let all = GitConfig::read(HTTP_PATTERN).await?;
        let mut config = Self::from_config(&urlmatch::pick(&all, url));
        config.extra_headers = extra_headers(&all, url)?;
        if let Some(path) = std::env::var_os("GIT_SSL_CAINFO").filter(|p| !p.is_empty()) {
            config.ca_info = Some(PathBuf::from(path));
        }
        for (variable, setting) in [
            ("GIT_SSL_CERT", &mut config.ssl_cert),
            ("GIT_SSL_KEY", &mut config.ssl_key),
        ] {
            if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
                *setting = Some(PathBuf::from(path));
            }
        }
        // git turns verification off when the variable is set at all.
        if std::env::var_os("GIT_SSL_NO_VERIFY").is_some_and(|v| !v.is_empty()) {
            config.no_verify = true;
        }
        Ok(config)
    }

    #[cfg(test)]
    fn parse(listed: &str) -> Self {
        Self::from_config(&GitConfig::from_listing(listed))
    }

    /// The `http.*` values git picked for a URL.
    fn from_config(listed: &GitConfig) -> Self {
        let mut config = Self::default();
        for (key, value) in listed.entries() {
            // A key without `=` reads as empty, which `parse_bool` takes
            // as git's implicit true.
            let value = value.unwrap_or_default();
            match key.to_ascii_lowercase().as_str() {
                "http.sslcainfo" => config.ca_info = Some(expand_home(value)),
                "http.sslcert" if !value.is_empty() => config.ssl_cert = Some(expand_home(value)),
                "http.sslkey" if !value.is_empty() => config.ssl_key = Some(expand_home(value)),
                "http.sslverify" => config.no_verify = !parse_bool(value),
                "http.proxy" if !value.is_empty() => config.proxy = Some(value.to_owned()),
                "http.version" => config.version = Some(value.to_owned()),
                "http.cookiefile" if !value.is_empty() => {
                    config.cookie_file = Some(expand_home(value));
                }
                "http.lowspeedlimit" => config.low_speed_limit = Some(value.to_owned()),
                "http.lowspeedtime" => config.low_speed_time = Some(value.to_owned()),
                _ => {}
            }
        }
        config
    }
}

impl HttpConfig {
    /// The client certificate to present, when `http.sslCert` is set (a
    /// key alone is ignored, as curl ignores it).
    pub fn client_cert(&self) -> Option<super::tls::ClientCert> {
        self.ssl_cert.as_ref().map(|cert| super::tls::ClientCert {
            cert: cert.clone(),
            key: self.ssl_key.clone(),
        })
    }

    /// Whether HTTP/2 is offered (`http.version=HTTP/2`), over TLS through
    /// ALPN; the server may still pick HTTP/1.1. Unset or `HTTP/1.1`:
    /// HTTP/1.1 only. Another value is warned about and ignored, as git
    /// does.
    pub fn http2(&self) -> bool {
        match self.version.as_deref() {
            None | Some("HTTP/1.1") => false,
            Some("HTTP/2") => true,
            Some(other) => {
                tracing::warn!("unknown value given to http.version: '{other}'");
                false
            }
        }
    }

    /// git's low-speed limit for this URL: `GIT_HTTP_LOW_SPEED_LIMIT` and
    /// `GIT_HTTP_LOW_SPEED_TIME` over `http.lowSpeedLimit` and
    /// `http.lowSpeedTime`; on only when both are above 0, as for git
    /// (http.c hands curl neither otherwise).
    pub fn low_speed(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<LowSpeed>, Error> {
        let setting = |variable: &str, raw: &Option<String>, key: &'static str| {
            match env(variable) {
                // git reads the variables with strtol: leading digits, else 0.
                Some(text) => Ok(leading_number(&text)),
                None => raw
                    .as_deref()
                    .map(|value| {
                        config_int(value).ok_or_else(|| Error::BadNumber {
                            key,
                            value: value.to_owned(),
                        })
                    })
                    .transpose()
                    .map(Option::unwrap_or_default),
            }
        };
        let limit = setting(
            "GIT_HTTP_LOW_SPEED_LIMIT",
            &self.low_speed_limit,
            "http.lowspeedlimit",
        )?;
        let time = setting(
            "GIT_HTTP_LOW_SPEED_TIME",
            &self.low_speed_time,
            "http.lowspeedtime",
        )?;
        Ok((limit > 0 && time > 0).then(|| LowSpeed {
            bytes_per_sec: limit as u64,
            time: Duration::from_secs(time as u64),
        }))
    }
}

/// `strtol(text, NULL, 10)`: optional sign and leading digits.
fn leading_number(text: &str) -> i64 {
    let text = text.trim_start();
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().map_or(0, |n| sign * n)
}

/// git's integer config values: a number with an optional `k`, `m` or `g`
/// (binary units).
fn config_int(value: &str) -> Option<i64> {
    let value = value.trim();
    let (number, factor) = match value.char_indices().last() {
        Some((i, 'k' | 'K')) => (&value[..i], 1 << 10),
        Some((i, 'm' | 'M')) => (&value[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&value[..i], 1 << 30),
        _ => (value, 1),
    };
    number.parse::<i64>().ok()?.checked_mul(factor)
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
                extra_headers: Vec::new(),
                ssl_cert: None,
                ssl_key: None,
                cookie_file: None,
                version: None,
                low_speed_limit: None,
                low_speed_time: None,
            }
        );
    }

    #[test]
    fn low_speed_needs_both_settings_and_the_environment_wins() {
        let config = HttpConfig::parse("http.lowspeedlimit\n1k\0http.lowspeedtime\n5\0");
        let none = |_: &str| None;
        assert_eq!(
            config.low_speed(&none).expect("valid"),
            Some(LowSpeed {
                bytes_per_sec: 1024,
                time: Duration::from_secs(5)
            })
        );
        let env = |name: &str| (name == "GIT_HTTP_LOW_SPEED_LIMIT").then(|| "300abc".to_owned());
        assert_eq!(
            config
                .low_speed(&env)
                .expect("valid")
                .map(|l| l.bytes_per_sec),
            Some(300)
        );
        let off = |name: &str| (name == "GIT_HTTP_LOW_SPEED_TIME").then(|| "0".to_owned());
        assert_eq!(config.low_speed(&off).expect("valid"), None);
        let only_limit = HttpConfig::parse("http.lowspeedlimit\n1000\0");
        assert_eq!(only_limit.low_speed(&none).expect("valid"), None);
        let bad = HttpConfig::parse("http.lowspeedlimit\nfast\0http.lowspeedtime\n5\0");
        assert_eq!(
            bad.low_speed(&none).expect_err("not a number").to_string(),
            "bad numeric config value 'fast' for 'http.lowspeedlimit'"
        );
    }

    fn headers(listing: &str, url: &str) -> Vec<String> {
        let url = Url::parse(url).expect("a valid URL");
        extra_headers(&GitConfig::from_listing(listing), &url)
            .expect("valid")
            .into_iter()
            .map(|h| h.0)
            .collect()
    }

    #[test]
    fn extra_headers_accumulate_and_an_empty_value_resets() {
        let listing = "http.extraheader\nA: 1\0http.extraheader\nB: 2\0\
                       http.https://example.com/.extraheader\nC: 3\0\
                       http.https://example.com/.extraheader\n\0\
                       http.https://example.com/.extraheader\nD: 4\0\
                       http.extraheader\nE: 5\0";
        // Checked against `git -c http.extraHeader=...` with GIT_TRACE_CURL.
        assert_eq!(headers(listing, "https://example.com/x.git"), ["D: 4"]);
        assert_eq!(
            headers(listing, "https://other.com/x.git"),
            ["A: 1", "B: 2", "E: 5"]
        );
    }

    #[test]
    fn the_actions_checkout_header_applies_to_its_host_only() {
        let listing = "http.https://github.com/.extraheader\nAUTHORIZATION: basic eC1hY2Nlc3M=\0";
        assert_eq!(
            headers(listing, "https://github.com/o/r"),
            ["AUTHORIZATION: basic eC1hY2Nlc3M="]
        );
        assert!(headers(listing, "https://gitlab.com/o/r").is_empty());
        assert!(headers(listing, "http://github.com/o/r").is_empty());
    }

    #[test]
    fn a_header_without_value_is_refused_and_debug_hides_values() {
        let url = Url::parse("https://h.example/r").expect("url");
        let err = extra_headers(&GitConfig::from_listing("http.extraheader\0"), &url)
            .expect_err("no value");
        assert_eq!(err.to_string(), "missing value for 'http.extraheader'");
        let header = ExtraHeader("Authorization: basic c2VjcmV0".into());
        assert_eq!(format!("{header:?}"), "ExtraHeader(Authorization: ***)");
        assert_eq!(header.split(), Some(("Authorization", "basic c2VjcmV0")));
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
