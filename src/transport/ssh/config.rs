//! ssh_config(5): the settings that decide how to reach a host, read as
//! OpenSSH reads them. Pure: the files come through [`Files`], so every
//! rule here is unit-tested on strings.
//!
//! OpenSSH reads the user's file (`~/.ssh/config`) and then the system one
//! (`/etc/ssh/ssh_config`) in one pass, and the first value obtained for an
//! option wins (so specific `Host` blocks go first), except `IdentityFile`
//! and `CertificateFile`, whose values accumulate. `Include` splices files
//! in where it stands (globs, relative names resolved against `~/.ssh` for
//! the user's file and `/etc/ssh` for the system one, 16 levels at most).
//! `Match` takes the conditions that need nothing but names (`all`, `host`,
//! `originalhost`, `user`, `localuser`, each negatable with `!`); a block
//! with any other condition (`exec`, `canonical`, `final`, ...) is skipped
//! with a warning, as is every directive the built-in client recognises
//! but does not implement ([`IGNORED`] lists those that are ignored
//! silently because they cannot matter to a git fetch or push).
//!
//! Hand-written rather than a crate: `russh-config` reads only `Host`
//! blocks (no `Include`, no `Match`), and `ssh2-config` reads the files
//! itself and finds `~` through `$HOME`, while OpenSSH (and so Kalandra)
//! takes `~/.ssh` from the passwd entry; neither reports the directives it
//! skips, which Kalandra must warn about.

use std::path::{Path, PathBuf};

/// How deep `Include` may nest (OpenSSH's `READCONF_MAX_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 16;

/// `StrictHostKeyChecking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown and changed keys (also `ask`: nobody can be asked).
    Yes,
    /// Trust and record an unknown key; refuse a changed one.
    AcceptNew,
    /// As `AcceptNew` (OpenSSH records the key too). Unlike OpenSSH, a
    /// changed key is still refused: a mirror has no password to protect
    /// by degrading, only data to protect.
    No,
}

impl StrictHostKeyChecking {
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "yes" | "ask" | "true" => Some(Self::Yes),
            "accept-new" => Some(Self::AcceptNew),
            "no" | "off" | "false" => Some(Self::No),
            _ => None,
        }
    }
}

/// How the connection reaches the host (`ProxyCommand`, `ProxyJump`). The
/// two share one slot: whichever comes first wins, and `none` in either
/// turns proxying off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    None,
    /// The command line, tokens not yet expanded.
    Command(String),
    /// The hops, first one first.
    Jump(Vec<JumpHost>),
}

/// One `ProxyJump` hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHost {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// The settings that apply to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    pub identities_only: Option<bool>,
    pub user_known_hosts_files: Option<Vec<String>>,
    pub global_known_hosts_files: Option<Vec<String>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub connect_timeout: Option<u64>,
    pub proxy: Option<Proxy>,
    pub host_key_alias: Option<String>,
    /// `IdentityAgent` as written: `none`, `SSH_AUTH_SOCK`, `$VAR` or a path.
    pub identity_agent: Option<String>,
    /// What applied to this host but is not honoured, for the user to see.
    pub warnings: Vec<Warning>,
}

/// Something in the configuration that the built-in client does not honour.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Warning {
    /// A directive that applies to the host, by its name as written.
    Unsupported { directive: String },
    /// A `Match` condition that cannot be evaluated; the block was skipped.
    MatchCondition { condition: String },
    /// An option whose value cannot be parsed.
    BadValue { directive: String, value: String },
    /// `Include` nested deeper than OpenSSH allows.
    IncludeTooDeep { file: String },
}

impl Warning {
    /// What to say, once per run.
    pub fn message(&self) -> String {
        const FALLBACK: &str =
            "set GIT_SSH_COMMAND=ssh to have OpenSSH make the connection instead";
        match self {
            Self::Unsupported { directive } => format!(
                "ssh config: {directive} is not supported by the built-in ssh client and is ignored; {FALLBACK}"
            ),
            Self::MatchCondition { condition } => format!(
                "ssh config: `Match {condition}` is not supported by the built-in ssh client; the block is skipped; {FALLBACK}"
            ),
            Self::BadValue { directive, value } => {
                format!("ssh config: ignoring {directive} {value:?}: not a valid value")
            }
            Self::IncludeTooDeep { file } => format!(
                "ssh config: Include nested more than {MAX_INCLUDE_DEPTH} deep at {file}; not read"
            ),
        }
    }
}

/// Directives that cannot change how a git fetch or push over one session
/// channel goes (forwardings, terminals, agent forwarding, local UI, algorithm
/// lists that russh negotiates itself, keep-alives Kalandra sets itself):
/// ignored without a word.
pub const IGNORED: &[&str] = &[
    "addkeystoagent",
    "addressfamily",
    "batchmode",
    "casignaturealgorithms",
    "challengeresponseauthentication",
    "checkhostip",
    "ciphers",
    "clearallforwardings",
    "compression",
    "connectionattempts",
    "dynamicforward",
    "enableescapecommandline",
    "escapechar",
    "exitonforwardfailure",
    "fingerprinthash",
    "forkafterauthentication",
    "forwardagent",
    "forwardx11",
    "forwardx11timeout",
    "forwardx11trusted",
    "gatewayports",
    "gssapiauthentication",
    "gssapidelegatecredentials",
    "hashknownhosts",
    "hostbasedauthentication",
    "hostbasedacceptedalgorithms",
    "hostkeyalgorithms",
    "ignoreunknown",
    "ipqos",
    "kbdinteractiveauthentication",
    "kbdinteractivedevices",
    "kexalgorithms",
    "localforward",
    "loglevel",
    "logverbose",
    "macs",
    "nohostauthenticationforlocalhost",
    "numberofpasswordprompts",
    "obscurekeystroketiming",
    "passwordauthentication",
    "permitlocalcommand",
    "localcommand",
    "permitremoteopen",
    "preferredauthentications",
    "protocol",
    "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes",
    "pubkeyauthentication",
    "remoteforward",
    "requesttty",
    "requiredrsasize",
    "sendenv",
    "serveralivecountmax",
    "serveraliveinterval",
    "sessiontype",
    "setenv",
    "stdinnull",
    "streamlocalbindmask",
    "streamlocalbindunlink",
    "syslogfacility",
    "tcpkeepalive",
    "updatehostkeys",
    "usekeychain",
    "userroaming",
    "visualhostkey",
    "warnweakcrypto",
    "xauthlocation",
    "channeltimeout",
];

/// Directives that would change the connection and that the built-in client
/// does not implement: each gets a warning naming it, unless its value turns
/// it off.
const UNSUPPORTED: &[&str] = &[
    "bindaddress",
    "bindinterface",
    "canonicaldomains",
    "canonicalizefallbacklocal",
    "canonicalizehostname",
    "canonicalizemaxdots",
    "canonicalizepermittedcnames",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "knownhostscommand",
    "pkcs11provider",
    "proxyusefdpass",
    "remotecommand",
    "revokedhostkeys",
    "securitykeyprovider",
    "tag",
    "tunnel",
    "tunneldevice",
    "verifyhostkeydns",
];

/// Reads files for the parser: the real file system, or a map in tests.
pub trait Files {
    /// The text of `path`, or `None` if it cannot be read.
    fn read(&self, path: &Path) -> Option<String>;
    /// The files matching `pattern` (`*`, `?` in any component), sorted as
    /// glob(3) sorts them; a pattern without wildcards yields itself.
    fn glob(&self, pattern: &Path) -> Vec<PathBuf>;
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The user's home, as OpenSSH finds it (the passwd entry).
    pub home: PathBuf,
    /// `~/.ssh/config`.
    pub user_file: PathBuf,
    /// `/etc/ssh/ssh_config`.
    pub system_file: PathBuf,
}

impl Sources {
    pub fn standard(home: &Path) -> Self {
        Sources {
            home: home.to_path_buf(),
            user_file: home.join(".ssh/config"),
            system_file: PathBuf::from("/etc/ssh/ssh_config"),
        }
    }
}

/// Who is connecting where: what `Host` and `Match` are evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The host as given (the URL's host, or a `ProxyJump` hop's).
    pub host: &'a str,
    /// The user given with it, which wins over `User`.
    pub user: Option<&'a str>,
    pub local_user: &'a str,
}

/// Reads the settings for `query` from the user's file, then the system's.
pub fn resolve(sources: &Sources, query: Query<'_>, files: &dyn Files) -> HostConfig {
    let mut parser = Parser {
        query,
        files,
        home: &sources.home,
        config: HostConfig::default(),
    };
    let user_dir = sources.home.join(".ssh");
    parser.file(&sources.user_file, &user_dir, 0);
    let system_dir = sources
        .system_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/etc/ssh"));
    parser.file(&sources.system_file, &system_dir, 0);
    let mut config = parser.config;
    config.warnings.sort();
    config.warnings.dedup();
    config
}

/// Reads the settings for `host` from the text of one ssh_config file, with
/// no `Include` (kept for callers that have only the text).
pub fn for_host(text: &str, host: &str) -> HostConfig {
    struct NoFiles;
    impl Files for NoFiles {
        fn read(&self, _: &Path) -> Option<String> {
            None
        }
        fn glob(&self, _: &Path) -> Vec<PathBuf> {
            Vec::new()
        }
    }
    let mut parser = Parser {
        query: Query {
            host,
            user: None,
            local_user: "",
        },
        files: &NoFiles,
        home: Path::new("/"),
        config: HostConfig::default(),
    };
    let mut active = true;
    parser.text(text, Path::new("/"), 0, &mut active);
    parser.config
}

struct Parser<'a> {
    query: Query<'a>,
    files: &'a dyn Files,
    home: &'a Path,
    config: HostConfig,
}

impl Parser<'_> {
    fn file(&mut self, path: &Path, dir: &Path, depth: usize) {
        if let Some(text) = self.files.read(path) {
            let mut active = true;
            self.text(&text, dir, depth, &mut active);
        }
    }

    /// One file's lines. `active` is whether the current block applies;
    /// an included file starts in the including block's state, and that
    /// state comes back after it (OpenSSH's `read_config_file_depth`).
    fn text(&mut self, text: &str, dir: &Path, depth: usize, active: &mut bool) {
        for line in text.lines() {
            let Some((written, value)) = split_line(line) else {
                continue;
            };
            let key = written.to_ascii_lowercase();
            match key.as_str() {
                "host" => {
                    *active = host_matches(&value, self.query.host);
                    continue;
                }
                "match" => {
                    *active = self.match_line(&value);
                    continue;
                }
                _ if !*active => continue,
                // Only reached in an active block; the included file keeps
                // its own block state, so this one is still active after.
                "include" => {
                    self.include(&value, dir, depth);
                    continue;
                }
                _ => {}
            }
            self.option(&key, &written, &value);
        }
    }

    fn include(&mut self, value: &str, dir: &Path, depth: usize) {
        for word in words(value) {
            let expanded = match word.strip_prefix("~/") {
                Some(rest) => self.home.join(rest),
                None => PathBuf::from(&word),
            };
            let pattern = if expanded.is_absolute() {
                expanded
            } else {
                dir.join(expanded)
            };
            for path in self.files.glob(&pattern) {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    self.config.warnings.push(Warning::IncludeTooDeep {
                        file: path.display().to_string(),
                    });
                    continue;
                }
                if let Some(text) = self.files.read(&path) {
                    let mut active = true;
                    self.text(&text, dir, depth + 1, &mut active);
                }
            }
        }
    }

    /// Whether a `Match` line's conditions all hold. Unknown or unsupported
    /// conditions make the block not apply, with a warning.
    fn match_line(&mut self, value: &str) -> bool {
        let mut tokens = words(value).into_iter();
        let mut result = true;
        while let Some(token) = tokens.next() {
            let lower = token.to_ascii_lowercase();
            let (negated, criterion) = match lower.strip_prefix('!') {
                Some(rest) => (true, rest.to_owned()),
                None => (false, lower.clone()),
            };
            let holds = match criterion.as_str() {
                "all" => true,
                "host" | "originalhost" | "user" | "localuser" => {
                    let Some(patterns) = tokens.next() else {
                        self.config.warnings.push(Warning::MatchCondition {
                            condition: format!("{token} (without an argument)"),
                        });
                        return false;
                    };
                    let subject = match criterion.as_str() {
                        "host" => self.current_host(),
                        "originalhost" => self.query.host.to_owned(),
                        "user" => self
                            .query
                            .user
                            .or(self.config.user.as_deref())
                            .unwrap_or(self.query.local_user)
                            .to_owned(),
                        _ => self.query.local_user.to_owned(),
                    };
                    pattern_list_matches(&patterns, &subject)
                }
                _ => {
                    self.config.warnings.push(Warning::MatchCondition {
                        condition: criterion.clone(),
                    });
                    return false;
                }
            };
            result &= holds != negated;
        }
        result
    }

    /// `Match host` sees `HostName` if one was set already, else the name
    /// as given.
    fn current_host(&self) -> String {
        match &self.config.host_name {
            Some(name) => name.replace("%h", self.query.host),
            None => self.query.host.to_owned(),
        }
    }

    /// One option line: `key` lowercased, `written` as in the file.
    fn option(&mut self, key: &str, written: &str, value: &str) {
        let args = words(value);
        let first = args.first().cloned().unwrap_or_default();
        let config = &mut self.config;
        let bad = |config: &mut HostConfig| {
            config.warnings.push(Warning::BadValue {
                directive: written.to_owned(),
                value: value.to_owned(),
            })
        };
        match key {
            "hostname" => set_once(&mut config.host_name, first),
            "user" => set_once(&mut config.user, first),
            "port" => match first.parse() {
                Ok(port) => set_once(&mut config.port, port),
                Err(_) => bad(config),
            },
            "identityfile" => config.identity_files.push(first),
            "certificatefile" => config.certificate_files.push(first),
            "identitiesonly" => set_once(&mut config.identities_only, yes_no(&first)),
            "userknownhostsfile" => set_once(&mut config.user_known_hosts_files, args),
            "globalknownhostsfile" => set_once(&mut config.global_known_hosts_files, args),
            "stricthostkeychecking" => match StrictHostKeyChecking::parse(&first) {
                Some(mode) => set_once(&mut config.strict_host_key_checking, mode),
                None => bad(config),
            },
            "hostkeyalias" => set_once(&mut config.host_key_alias, first),
            "identityagent" => set_once(&mut config.identity_agent, first),
            "connecttimeout" => match first.parse() {
                Ok(secs) => set_once(&mut config.connect_timeout, secs),
                Err(_) => bad(config),
            },
            "proxycommand" => {
                let proxy = if value.trim().eq_ignore_ascii_case("none") {
                    Proxy::None
                } else {
                    Proxy::Command(value.to_owned())
                };
                set_once(&mut config.proxy, proxy);
            }
            "proxyjump" => {
                if first.eq_ignore_ascii_case("none") {
                    set_once(&mut config.proxy, Proxy::None);
                } else {
                    match parse_jumps(&first) {
                        Some(hops) => set_once(&mut config.proxy, Proxy::Jump(hops)),
                        None => bad(config),
                    }
                }
            }
            _ if IGNORED.contains(&key) => {}
            _ if UNSUPPORTED.contains(&key) => {
                let off = matches!(
                    first.to_ascii_lowercase().as_str(),
                    "no" | "none" | "false" | "off"
                );
                if !off {
                    config.warnings.push(Warning::Unsupported {
                        directive: written.to_owned(),
                    });
                }
            }
            // OpenSSH refuses a file with an unknown keyword; ignoring it
            // quietly would hide a typo that changes where a mirror goes.
            _ => config.warnings.push(Warning::Unsupported {
                directive: written.to_owned(),
            }),
        }
    }
}

/// `ProxyJump`'s value: comma-separated hops.
pub fn parse_jumps(value: &str) -> Option<Vec<JumpHost>> {
    value.split(',').map(parse_jump).collect()
}

fn parse_jump(hop: &str) -> Option<JumpHost> {
    let hop = hop.trim();
    let rest = hop.strip_prefix("ssh://").unwrap_or(hop);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (user, host_port) = match rest.rsplit_once('@') {
        Some((user, host_port)) => (Some(user.to_owned()), host_port),
        None => (None, rest),
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        (host.to_owned(), port)
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port.parse().ok()?)),
            None => (host_port.to_owned(), None),
        }
    };
    if host.is_empty() || host.starts_with('-') || user.as_deref().is_some_and(|u| u.is_empty()) {
        return None;
    }
    Some(JumpHost { user, host, port })
}

fn set_once<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn yes_no(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "yes" | "true")
}

/// `Key value`, `Key=value` or `Key = value`, with comments and blank lines
/// skipped; the key as written.
fn split_line(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let split = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let key = line[..split].to_owned();
    let value = line[split..]
        .trim_start_matches(|c: char| c.is_whitespace())
        .trim_start_matches('=')
        .trim();
    Some((key, value.to_owned()))
}

/// The arguments of a line: split on whitespace, double quotes grouping.
fn words(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(current);
    }
    out
}

/// A `Host` line's patterns: any positive match and no negated match.
fn host_matches(patterns: &str, host: &str) -> bool {
    let mut matched = false;
    for pattern in words(patterns) {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, host) => return false,
            Some(_) => {}
            None => matched |= glob(&pattern, host),
        }
    }
    matched
}

/// A `Match` argument: comma-separated patterns, any positive match and no
/// negated one (OpenSSH's `match_pattern_list`).
pub fn pattern_list_matches(list: &str, subject: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated, subject) => return false,
            Some(_) => {}
            None => matched |= glob(pattern, subject),
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive as host names are.
pub fn glob(pattern: &str, text: &str) -> bool {
    wildcard(&pattern.to_ascii_lowercase(), &text.to_ascii_lowercase())
}

/// `*` and `?` wildcards, case-sensitive (file names).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Expands `~` and the tokens of a file name for `host` on port 22
/// (`%d`, `%h`, `%n`, `%p`, `%r`, `%u`, `%%`).
pub fn expand_path(
    raw: &str,
    home: &str,
    host: &str,
    remote_user: &str,
    local_user: &str,
) -> String {
    Tokens {
        home,
        host,
        original_host: host,
        port: 22,
        remote_user,
        local_user,
    }
    .expand_path(raw)
}

/// The values ssh_config's `%` tokens stand for.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// `%d`.
    pub home: &'a str,
    /// `%h`: the host name after `HostName`.
    pub host: &'a str,
    /// `%n`: the host as given.
    pub original_host: &'a str,
    /// `%p`.
    pub port: u16,
    /// `%r`.
    pub remote_user: &'a str,
    /// `%u`.
    pub local_user: &'a str,
}

impl Tokens<'_> {
    /// Expands `~` (file names only) and the tokens; `%%` is a `%`.
    pub fn expand_path(&self, raw: &str) -> String {
        let raw = match raw.strip_prefix("~/") {
            Some(rest) => format!("{}/{rest}", self.home),
            None if raw == "~" => self.home.to_owned(),
            None => raw.to_owned(),
        };
        self.expand(&raw)
    }

    pub fn expand(&self, raw: &str) -> String {
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('d') => out.push_str(self.home),
                Some('h') => out.push_str(self.host),
                Some('n') => out.push_str(self.original_host),
                Some('p') => out.push_str(&self.port.to_string()),
                Some('r') => out.push_str(self.remote_user),
                Some('u') => out.push_str(self.local_user),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const CONFIG: &str = "\
# a comment
Host mirror mirror.example
    HostName 10.0.0.7
    User git
    Port 2222
    IdentityFile ~/.ssh/mirror_key
    IdentitiesOnly yes
    UserKnownHostsFile /etc/mirror_known_hosts ~/.ssh/known_hosts2
    StrictHostKeyChecking accept-new

Host *.example !secret.example
    User=other
    IdentityFile \"~/.ssh/id with space\"

Match host never-this-one
    User never-used

Host *
    User fallback
    Port 22
    IdentityFile ~/.ssh/id_default
";

    /// Files in memory; `glob` matches each whole path with [`glob`].
    #[derive(Default)]
    struct Mem(BTreeMap<PathBuf, String>);

    impl Mem {
        fn with(mut self, path: &str, text: &str) -> Self {
            self.0.insert(PathBuf::from(path), text.to_owned());
            self
        }
    }

    impl Files for Mem {
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn glob(&self, pattern: &Path) -> Vec<PathBuf> {
            let pattern = pattern.to_string_lossy();
            self.0
                .keys()
                .filter(|p| glob(&pattern, &p.to_string_lossy()))
                .cloned()
                .collect()
        }
    }

    fn sources() -> Sources {
        Sources::standard(Path::new("/home/me"))
    }

    fn query(host: &str) -> Query<'_> {
        Query {
            host,
            user: None,
            local_user: "me",
        }
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = for_host(CONFIG, "mirror");
        assert_eq!(c.host_name.as_deref(), Some("10.0.0.7"));
        assert_eq!(c.user.as_deref(), Some("git"));
        assert_eq!(c.port, Some(2222));
        assert_eq!(
            c.identity_files,
            vec!["~/.ssh/mirror_key", "~/.ssh/id_default"]
        );
        assert_eq!(c.identities_only, Some(true));
        assert_eq!(
            c.user_known_hosts_files,
            Some(vec![
                "/etc/mirror_known_hosts".to_owned(),
                "~/.ssh/known_hosts2".to_owned()
            ])
        );
        assert_eq!(
            c.strict_host_key_checking,
            Some(StrictHostKeyChecking::AcceptNew)
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn patterns_and_negation() {
        let c = for_host(CONFIG, "a.example");
        assert_eq!(c.user.as_deref(), Some("other"));
        assert_eq!(c.identity_files[0], "~/.ssh/id with space");
        let c = for_host(CONFIG, "secret.example");
        assert_eq!(
            c.user.as_deref(),
            Some("fallback"),
            "negated pattern skips the block"
        );
        let c = for_host(CONFIG, "MIRROR");
        assert_eq!(c.port, Some(2222), "host names compare case-insensitively");
        assert!(glob("h?st-*", "host-1"));
        assert!(!glob("h?st", "hoost"));
    }

    #[test]
    fn user_file_then_system_file_first_value_wins() {
        let files = Mem::default()
            .with("/home/me/.ssh/config", "Host a\n  User mine\n")
            .with(
                "/etc/ssh/ssh_config",
                "Host *\n  User system\n  Port 2200\n  IdentityFile /etc/key\n",
            );
        let c = resolve(&sources(), query("a"), &files);
        assert_eq!(c.user.as_deref(), Some("mine"));
        assert_eq!(c.port, Some(2200), "the system file fills the gaps");
        assert_eq!(c.identity_files, vec!["/etc/key"]);
    }

    #[test]
    fn include_relative_to_dot_ssh_and_etc_ssh_with_globs_in_order() {
        let files = Mem::default()
            .with(
                "/home/me/.ssh/config",
                "Include conf.d/*.conf\nHost *\n  User after-include\n",
            )
            .with(
                "/home/me/.ssh/conf.d/20-b.conf",
                "Host a\n  Port 2020\n  User b\n",
            )
            .with("/home/me/.ssh/conf.d/10-a.conf", "Host a\n  Port 1010\n")
            .with("/home/me/.ssh/conf.d/ignored.txt", "Host a\n  Port 1\n")
            .with("/etc/ssh/ssh_config", "Include ssh_config.d/*\n")
            .with("/etc/ssh/ssh_config.d/x", "Host *\n  ConnectTimeout 7\n");
        let c = resolve(&sources(), query("a"), &files);
        assert_eq!(c.port, Some(1010), "globbed files in sorted order");
        assert_eq!(c.user.as_deref(), Some("b"));
        assert_eq!(c.connect_timeout, Some(7), "system include from /etc/ssh");
    }

    #[test]
    fn include_in_a_host_block_is_conditional_and_state_comes_back() {
        let files = Mem::default()
            .with(
                "/home/me/.ssh/config",
                "Host other\n  Include ~/.ssh/other.conf\n  Port 1\nHost a\n  Include /abs/a.conf\n  Port 3\n",
            )
            .with("/home/me/.ssh/other.conf", "User wrong\n")
            // The included file switches blocks; after it the `Host a`
            // block is active again, so `Port 3` applies.
            .with("/abs/a.conf", "User right\nHost nothing\n  Port 2\n");
        let c = resolve(&sources(), query("a"), &files);
        assert_eq!(c.user.as_deref(), Some("right"));
        assert_eq!(c.port, Some(3));
    }

    #[test]
    fn include_recursion_stops_with_a_warning() {
        let files = Mem::default().with("/home/me/.ssh/config", "Include config\nUser u\n");
        let c = resolve(&sources(), query("a"), &files);
        assert_eq!(c.user.as_deref(), Some("u"));
        assert!(matches!(
            c.warnings.as_slice(),
            [Warning::IncludeTooDeep { .. }]
        ));
    }

    #[test]
    fn match_conditions() {
        let text = "\
Match originalhost alias user git
  Port 1
Match host 10.0.0.*,!10.0.0.9
  Port 2
Match !localuser me
  User not-me
Match all
  ConnectTimeout 5
";
        let files = Mem::default().with(
            "/home/me/.ssh/config",
            &format!("Host alias\n  HostName 10.0.0.7\n{text}"),
        );
        let mut q = query("alias");
        q.user = Some("git");
        let c = resolve(&sources(), q, &files);
        assert_eq!(c.port, Some(1), "originalhost and the URL's user");
        let c = resolve(&sources(), query("alias"), &files);
        assert_eq!(
            c.port,
            Some(2),
            "user is the local one, host is the HostName"
        );
        assert_eq!(c.user, None, "negated localuser");
        assert_eq!(c.connect_timeout, Some(5));
        let c = resolve(&sources(), query("10.0.0.9"), &files);
        assert_eq!(c.port, None, "negated pattern in the list");
    }

    #[test]
    fn unsupported_match_and_directives_warn_and_are_skipped() {
        let files = Mem::default().with(
            "/home/me/.ssh/config",
            "\
Match exec \"true\"
  User from-exec
Match canonical all
  User from-canonical
Host *
  ControlMaster auto
  ControlPath ~/.ssh/cm-%r@%h:%p
  CanonicalizeHostname no
  ForwardAgent yes
  Bogus 1
Host elsewhere
  PKCS11Provider /lib/p11.so
",
        );
        let c = resolve(&sources(), query("a"), &files);
        assert_eq!(c.user, None);
        let names: Vec<String> = c.warnings.iter().map(Warning::message).collect();
        let expected = [
            "`Match exec`",
            "`Match canonical`",
            "ControlMaster",
            "ControlPath",
            "Bogus",
        ];
        for needle in expected {
            assert!(
                names.iter().any(|m| m.contains(needle)),
                "{needle} in {names:?}"
            );
        }
        assert_eq!(names.len(), expected.len(), "{names:?}");
        assert!(names.iter().all(|m| !m.contains("ForwardAgent")));
        assert!(names.iter().all(|m| !m.contains("PKCS11")), "not this host");
        assert!(names[0].contains("GIT_SSH_COMMAND=ssh"));
    }

    #[test]
    fn proxy_settings_share_one_slot() {
        let c = for_host(
            "Host a\n ProxyJump ssh://u@bastion:2222,[::1]:22,plain\n ProxyCommand nc %h %p\n",
            "a",
        );
        assert_eq!(
            c.proxy,
            Some(Proxy::Jump(vec![
                JumpHost {
                    user: Some("u".into()),
                    host: "bastion".into(),
                    port: Some(2222)
                },
                JumpHost {
                    user: None,
                    host: "::1".into(),
                    port: Some(22)
                },
                JumpHost {
                    user: None,
                    host: "plain".into(),
                    port: None
                },
            ]))
        );
        let c = for_host("Host a\n ProxyCommand none\nHost *\n ProxyJump b\n", "a");
        assert_eq!(c.proxy, Some(Proxy::None));
        let c = for_host("Host *\n ProxyCommand ssh -W %h:%p gw\n", "a");
        assert_eq!(c.proxy, Some(Proxy::Command("ssh -W %h:%p gw".into())));
        assert_eq!(parse_jumps("-oProxyCommand=x"), None);
        assert_eq!(parse_jumps("host:notaport"), None);
    }

    #[test]
    fn expands_tokens() {
        let t = Tokens {
            home: "/home/me",
            host: "h",
            original_host: "alias",
            port: 2222,
            remote_user: "git",
            local_user: "me",
        };
        assert_eq!(
            t.expand_path("~/.ssh/%h_%r_%u%%"),
            "/home/me/.ssh/h_git_me%"
        );
        assert_eq!(t.expand_path("%d/k"), "/home/me/k");
        assert_eq!(t.expand("nc %h %p # %n %x"), "nc h 2222 # alias %x");
    }

    #[test]
    fn host_key_alias_and_identity_agent() {
        let c = for_host(
            "Host a\n HostKeyAlias shared\n IdentityAgent ~/agent.sock\nHost *\n IdentityAgent none\n",
            "a",
        );
        assert_eq!(c.host_key_alias.as_deref(), Some("shared"));
        assert_eq!(c.identity_agent.as_deref(), Some("~/agent.sock"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn quoted_words() {
        assert_eq!(words("a \"b c\" d"), vec!["a", "b c", "d"]);
        assert_eq!(words("  "), Vec::<String>::new());
    }
}
