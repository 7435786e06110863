//! Where credentials come from, in order: the URL, the side's token from
//! the settings (a fleet config's), the side's token variable, `~/.netrc`,
//! and git's own credential helpers.

use std::fmt;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use url::Url;

use super::netrc;
use crate::transport::{Service, Token};

/// Where a username and password came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Url,
    /// A token given in the settings; the text names where it came from
    /// ([`Token::source`]).
    Configured(String),
    Token(&'static str),
    Netrc,
    Helper,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url => f.write_str("the URL"),
            Self::Configured(source) => f.write_str(source),
            Self::Token(var) => write!(f, "${var}"),
            Self::Netrc => f.write_str("the netrc file"),
            Self::Helper => f.write_str("git's credential helper"),
        }
    }
}

/// A username and password (or token). `Debug` never shows the secret.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub source: Source,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The token variable for a side. Kalandra only ever reads upstream through
/// upload-pack and writes downstream through receive-pack, so the service
/// names the side.
pub fn token_variable(service: Service) -> &'static str {
    match service {
        Service::UploadPack => "KALANDRA_UPSTREAM_TOKEN",
        Service::ReceivePack => "KALANDRA_DOWNSTREAM_TOKEN",
    }
}

/// The username a token is sent with when the URL names none. GitHub,
/// GitLab and Gitea accept any username with a token as the password.
const TOKEN_USER: &str = "x-access-token";

/// Credentials to send with the very first request: a password in the URL,
/// else the side's token from the settings (`configured`), else the side's
/// token variable.
pub fn explicit(url: &Url, service: Service, configured: Option<&Token>) -> Option<Credentials> {
    explicit_with(url, service, configured, |var| std::env::var(var).ok())
}

fn explicit_with(
    url: &Url,
    service: Service,
    configured: Option<&Token>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Credentials> {
    let username = percent_decode(url.username());
    if let Some(password) = url.password() {
        return Some(Credentials {
            username,
            password: percent_decode(password),
            source: Source::Url,
        });
    }
    let usable = |secret: &str| Some(secret.trim().to_owned()).filter(|t| !t.is_empty());
    let var = token_variable(service);
    let (password, source) = match configured.and_then(|t| Some((usable(&t.secret)?, t))) {
        Some((secret, token)) => (secret, Source::Configured(token.source.clone())),
        None => (usable(&env(var)?)?, Source::Token(var)),
    };
    Some(Credentials {
        username: if username.is_empty() {
            TOKEN_USER.to_owned()
        } else {
            username
        },
        password,
        source,
    })
}

/// Credentials after a 401: the netrc entry for the host, else whatever
/// `git credential fill` finds (helpers, or a prompt where git would give
/// one).
pub async fn lookup(url: &Url) -> Option<Credentials> {
    let host = url.host_str()?;
    let user = Some(percent_decode(url.username())).filter(|u| !u.is_empty());
    if let Some(path) = netrc::path() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Some(entry) = netrc::lookup(&text, host, user.as_deref()) {
                tracing::debug!(
                    "using {} credentials for {host} from {}",
                    entry.login,
                    path.display()
                );
                return Some(Credentials {
                    username: entry.login,
                    password: entry.password,
                    source: Source::Netrc,
                });
            }
        }
    }
    let output = run_git_credential("fill", &describe(url, user.as_deref(), None)).await?;
    let mut username = None;
    let mut password = None;
    for line in output.lines() {
        if let Some(value) = line.strip_prefix("username=") {
            username = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("password=") {
            password = Some(value.to_owned());
        }
    }
    Some(Credentials {
        username: username.or(user).unwrap_or_default(),
        password: password?,
        source: Source::Helper,
    })
}

/// Tells git's helpers that credentials worked (`approve`) or did not
/// (`reject`), as git itself does after a request. Only for credentials
/// that came from them.
pub async fn report(url: &Url, credentials: &Credentials, worked: bool) {
    if credentials.source != Source::Helper {
        return;
    }
    let action = if worked { "approve" } else { "reject" };
    let input = describe(
        url,
        Some(&credentials.username),
        Some(&credentials.password),
    );
    let _ = run_git_credential(action, &input).await;
}

/// The `key=value` description git credential reads. git drops the path
/// itself unless `credential.useHttpPath` is set.
fn describe(url: &Url, username: Option<&str>, password: Option<&str>) -> String {
    let mut host = url.host_str().unwrap_or_default().to_owned();
    if let Some(port) = url.port() {
        host.push_str(&format!(":{port}"));
    }
    let mut text = format!(
        "protocol={}\nhost={host}\npath={}\n",
        url.scheme(),
        url.path().trim_start_matches('/')
    );
    if let Some(user) = username {
        text.push_str(&format!("username={user}\n"));
    }
    if let Some(password) = password {
        text.push_str(&format!("password={password}\n"));
    }
    text.push('\n');
    text
}

/// Runs `git credential <action>` in the caller's environment, so that the
/// user's git configuration applies. Its stderr (a prompt, a helper's
/// complaint) goes to ours.
async fn run_git_credential(action: &str, input: &str) -> Option<String> {
    let mut child = Command::new("git")
        .args(["credential", action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| tracing::debug!("cannot run git credential {action}: {e}"))
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let output = child.wait_with_output().await.ok()?;
    if !output.status.success() {
        tracing::debug!("git credential {action} failed: {}", output.status);
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_decoded_and_hidden_from_debug() {
        let url = Url::parse("https://al%40ice:p%2Bss+w@git.example/r.git").expect("url");
        let creds = explicit_with(&url, Service::UploadPack, None, |_| None).expect("from the URL");
        assert_eq!(creds.username, "al@ice");
        assert_eq!(creds.password, "p+ss+w");
        assert_eq!(creds.source, Source::Url);
        let shown = format!("{creds:?}");
        assert!(!shown.contains("p+ss"), "{shown}");
    }

    #[test]
    fn describe_names_host_port_and_path() {
        let url = Url::parse("http://git.example:8080/team/r.git").expect("url");
        assert_eq!(
            describe(&url, Some("bob"), None),
            "protocol=http\nhost=git.example:8080\npath=team/r.git\nusername=bob\n\n"
        );
    }

    fn token(secret: &str) -> Token {
        Token {
            secret: secret.into(),
            source: "/run/secrets/up".into(),
        }
    }

    #[test]
    fn a_configured_token_wins_over_the_variable_and_names_its_source() {
        let url = Url::parse("https://git.example/r.git").expect("url");
        let env = |var: &str| (var == "KALANDRA_UPSTREAM_TOKEN").then(|| "from-env".to_owned());
        let configured = token(" from-file\n");
        let creds = explicit_with(&url, Service::UploadPack, Some(&configured), env)
            .expect("the configured token");
        assert_eq!(creds.password, "from-file");
        assert_eq!(creds.username, TOKEN_USER);
        assert_eq!(creds.source.to_string(), "/run/secrets/up");
        let shown = format!("{creds:?} {configured:?}");
        assert!(!shown.contains("from-file"), "{shown}");

        let creds = explicit_with(&url, Service::UploadPack, None, env).expect("the variable");
        assert_eq!(creds.password, "from-env");
        assert_eq!(creds.source, Source::Token("KALANDRA_UPSTREAM_TOKEN"));
        // A blank configured token counts as none.
        let creds =
            explicit_with(&url, Service::UploadPack, Some(&token(" ")), env).expect("the variable");
        assert_eq!(creds.source, Source::Token("KALANDRA_UPSTREAM_TOKEN"));
        // A password in the URL comes first.
        let url = Url::parse("https://bob:pw@git.example/r.git").expect("url");
        let creds =
            explicit_with(&url, Service::UploadPack, Some(&configured), env).expect("the URL");
        assert_eq!(creds.source, Source::Url);
    }

    #[test]
    fn sources_name_where_the_secret_came_from() {
        assert_eq!(
            Source::Token("KALANDRA_UPSTREAM_TOKEN").to_string(),
            "$KALANDRA_UPSTREAM_TOKEN"
        );
        assert_eq!(
            token_variable(Service::ReceivePack),
            "KALANDRA_DOWNSTREAM_TOKEN"
        );
    }
}
