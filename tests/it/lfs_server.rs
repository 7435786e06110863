//! A real Git LFS server for the LFS tests: giftless (PyPI, `tests/lfs/requirements.txt`,
//! installed by tests/run.sh into `tests/lfs/.venv`), with its objects on the local disk,
//! behind the test nginx next to the git data; and helpers that fill and check repositories
//! with the real `git-lfs` client. See `tests/lfs/README.md`.
//!
//! Each [`LfsServer`] has a name and an nginx location `/lfs-<name>/`: under it,
//! `<repo>.git/...` is the repository `<world root>/<repo>.git` served by git http-backend as
//! on `/v2/` (open, pushes allowed), and `<repo>.git/info/lfs/...` goes to this server's
//! giftless, which git-lfs finds there by itself. So two servers (upstream's and downstream's)
//! serve the same repositories' LFS objects apart, each from its own store. giftless needs
//! the repository in a directory (`<org>/<repo>.git`, say `acme/up.git`); its objects are
//! `<storage>/<org>/<repo without .git>/<oid>`.
//!
//! The LFS API wants the server's token ([`LfsServer::token`]) as the basic-auth password
//! (any user name) or as a Bearer token, for reading and writing alike
//! (`tests/lfs/auth.py`). Its upload, verify and download actions carry a short-lived JWT of
//! their own (a header, or `?jwt=` in download hrefs), so a client follows them without the
//! token. The git data asks for nothing.
//!
//! Every request to the server's location lands in its own access log
//! ([`LfsServer::requests`], [`LfsServer::uploads`], [`LfsServer::downloads`]). If the venv
//! is missing or giftless does not start, the test fails with the reason. Dropping the
//! [`LfsServer`] ends giftless; [`LfsServer::stop`] ends it early (nginx then answers 502 for
//! it) and [`LfsServer::restart`] brings it back with the same store.
//!
//! Over ssh, [`ssh_lfs_authenticate`] puts a `git-lfs-authenticate` on the test sshd that
//! answers as GitLab and GitHub do, for the repositories [`LfsServer::serve_over_ssh`] names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::github_api::http_request;
use crate::harness::World;
use crate::nginx::Nginx;
use crate::sshd::Sshd;

/// How long giftless may take to import and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The global git config lines `git lfs install --skip-repo` would write: the clean and
/// smudge filters (required), and no lock checks (giftless has no locks API). Append to a
/// config of `World::global_config_with`, or let [`enable_lfs`] add them to the default one.
pub const LFS_GIT_CONFIG: &str = "[filter \"lfs\"]
\tclean = git-lfs clean -- %f
\tsmudge = git-lfs smudge -- %f
\tprocess = git-lfs filter-process
\trequired = true
[lfs]
\tlocksverify = false
";

fn lfs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lfs")
}

/// The venv's python, or the test fails saying how to make it.
fn python() -> PathBuf {
    let python = lfs_dir().join(".venv/bin/python");
    let marker = lfs_dir().join(".venv/.kalandra-installed-requirements");
    assert!(
        python.is_file() && marker.is_file(),
        "{} is missing or incomplete: the LFS tests need giftless from tests/lfs/requirements.txt \
         (tests/run.sh makes the venv: python3 -m venv tests/lfs/.venv && \
         tests/lfs/.venv/bin/pip install -r tests/lfs/requirements.txt)",
        lfs_dir().join(".venv").display()
    );
    python
}

/// Fails the test unless the real git-lfs client is installed.
pub fn require_git_lfs() {
    let ok = Command::new("git-lfs")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "git-lfs is not installed: the LFS tests need the real client (tests/run.sh installs \
         the Debian package git-lfs)"
    );
}

/// Adds [`LFS_GIT_CONFIG`] to the world's default global git config (once), after checking
/// that git-lfs is there: what `git lfs install --skip-repo` does for a real user.
pub fn enable_lfs(w: &World) {
    require_git_lfs();
    let path = w.global_config();
    let text = std::fs::read_to_string(&path).expect("can read the global git config");
    if !text.contains("[filter \"lfs\"]") {
        std::fs::write(&path, format!("{text}{LFS_GIT_CONFIG}"))
            .expect("can write the global git config");
    }
}

/// One request to an LFS server's location, from its access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsRequest {
    pub method: String,
    /// The path as sent, without the query.
    pub path: String,
    pub status: u16,
}

impl LfsRequest {
    /// The object a storage request (`.../info/lfs/objects/storage/<oid>`) was for.
    pub fn storage_oid(&self) -> Option<&str> {
        let oid = self.path.split("/info/lfs/objects/storage/").nth(1)?;
        (oid.len() == 64 && oid.bytes().all(|b| b.is_ascii_hexdigit())).then_some(oid)
    }
}

pub struct LfsServer {
    name: String,
    token: String,
    /// `<world root>/lfs-<name>`: config, log, store.
    dir: PathBuf,
    nginx_port: u16,
    nginx_tls_port: u16,
    nginx_conf: PathBuf,
    nginx_access_log: PathBuf,
    /// giftless' own port (0 while stopped).
    port: u16,
    child: Option<Child>,
}

impl LfsServer {
    /// Starts giftless for `/lfs-<name>/` of `nginx`, accepting `token`, and routes nginx to
    /// it. `name`: letters, digits, `-` and `_`, unique in the world.
    pub fn start(w: &World, nginx: &Nginx, name: &str, token: &str) -> Self {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "not an LFS server name: {name:?}"
        );
        assert!(
            !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic() && b != b'"'),
            "the test token must be printable ASCII without quotes: {token:?}"
        );
        let dir = w.root().join(format!("lfs-{name}"));
        assert!(!dir.exists(), "an LFS server named {name} already started");
        std::fs::create_dir_all(dir.join("storage")).expect("can create the LFS server's store");
        // A key per server, for the actions' JWTs: no secret, but no two servers alike.
        let key = format!(
            "kalandra-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let template = std::fs::read_to_string(lfs_dir().join("giftless.yaml.in"))
            .expect("can read tests/lfs/giftless.yaml.in");
        let storage = dir.join("storage");
        std::fs::write(
            dir.join("giftless.yaml"),
            template
                .replace("@STORAGE@", storage.to_str().expect("test paths are UTF-8"))
                .replace("@JWT_KEY@", &key),
        )
        .expect("can write the giftless configuration");
        let mut server = LfsServer {
            name: name.to_owned(),
            token: token.to_owned(),
            dir,
            nginx_port: nginx.port,
            nginx_tls_port: nginx.tls_port,
            nginx_conf: nginx.conf_dir().join(format!("lfs-{name}.conf")),
            nginx_access_log: nginx.conf_dir().join("logs/access.log"),
            port: 0,
            child: None,
        };
        server.spawn();
        server.route(nginx);
        server
    }

    /// Runs giftless on a port of its choosing and waits until it says which.
    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log_path = self.dir.join("giftless.log");
        let log = std::fs::File::create(&log_path).expect("can create the giftless log");
        let mut cmd = Command::new(python());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIFTLESS_") {
                cmd.env_remove(&name);
            }
        }
        let child = cmd
            .process_group(0)
            // The world's path on the command line, so that tests/run.sh's check for
            // servers left running sees this one too.
            .arg("-X")
            .arg(format!(
                "pycache_prefix={}",
                self.dir.join("pycache").display()
            ))
            .args(["-m", "flask", "--app", "giftless.wsgi_entrypoint", "run"])
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--no-reload", "--no-debugger", "--with-threads"])
            .env("GIFTLESS_CONFIG_FILE", self.dir.join("giftless.yaml"))
            .env("KALANDRA_LFS_TOKEN", &self.token)
            .env("PYTHONPATH", lfs_dir())
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("FLASK_APP")
            .env_remove("FLASK_DEBUG")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("can clone the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start giftless (LFS server {}): {e}", self.name));
        self.child = Some(child);
        let start = Instant::now();
        loop {
            let log = self.log();
            if let Some(port) = log
                .split("Running on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u16>().ok()
                })
            {
                self.port = port;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "giftless (LFS server {}) exited at startup ({status}):\n{log}",
                    self.name
                );
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "giftless (LFS server {}) did not listen within {START_TIMEOUT:?}:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes this server's nginx location for the current port, reloads nginx and waits
    /// until the new configuration answers.
    fn route(&self, nginx: &Nginx) {
        let name = &self.name;
        let probe = format!("/_kalandra/lfs-{name}-{}", self.port);
        let access_log = self.dir.join("access.log");
        let conf = format!(
            "    location ~ ^/lfs-{name}/(.+\\.git/info/lfs/.*)$ {{
      access_log {access_log};
      access_log {main_log};
      proxy_pass http://127.0.0.1:{port}/$1$is_args$args;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Prefix /lfs-{name};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
    location = {probe} {{ return 204; }}
    location ~ ^/lfs-{name}(/.*)$ {{
      access_log {access_log};
      access_log {main_log};
{git}    }}
",
            access_log = access_log.display(),
            main_log = self.nginx_access_log.display(),
            port = self.port,
            git = nginx.git_backend(),
        );
        std::fs::write(&self.nginx_conf, conf).expect("can write the LFS server's nginx location");
        nginx.reload();
        // The old workers may answer a little longer: wait for a few answers in a row from
        // the new configuration.
        let start = Instant::now();
        let mut in_a_row = 0;
        while in_a_row < 3 {
            if http_request(nginx.port, "GET", &probe, &[], None).status == 204 {
                in_a_row += 1;
            } else {
                in_a_row = 0;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "nginx did not take LFS server {name}'s location within 15 s:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's name (its location is `/lfs-<name>/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token the LFS API wants.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://127.0.0.1:PORT/lfs-<name>/<repo>`: the repository's git URL (`repo` relative
    /// to the world root, e.g. `acme/up.git`); git-lfs finds the LFS API under it.
    pub fn url(&self, repo: &str) -> String {
        format!(
            "http://127.0.0.1:{}/lfs-{}/{repo}",
            self.nginx_port, self.name
        )
    }

    /// Like [`LfsServer::url`], over TLS on nginx's `tls_port` (its certificate is signed by
    /// `Nginx::ca`, for `http.sslCAInfo`); giftless' hrefs are https then too.
    pub fn https_url(&self, repo: &str) -> String {
        format!(
            "https://127.0.0.1:{}/lfs-{}/{repo}",
            self.nginx_tls_port, self.name
        )
    }

    /// [`LfsServer::url`] with `user:<token>@`, so that git-lfs sends the token.
    pub fn url_with_token(&self, repo: &str) -> String {
        format!(
            "http://lfs-user:{}@127.0.0.1:{}/lfs-{}/{repo}",
            self.token, self.nginx_port, self.name
        )
    }

    /// The repository's LFS API: `<url>/info/lfs` (`repo` ends in `.git`).
    pub fn lfs_url(&self, repo: &str) -> String {
        assert!(repo.ends_with(".git"), "giftless serves <repo>.git: {repo}");
        format!("{}/info/lfs", self.url(repo))
    }

    /// Where the server keeps every repository's objects.
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// Where the server keeps `oid` of `repo` (`acme/up.git`), whether it has it or not.
    pub fn object_path(&self, repo: &str, oid: &str) -> PathBuf {
        let prefix = repo.strip_suffix(".git").unwrap_or(repo);
        self.storage().join(prefix).join(oid)
    }

    /// The objects the server holds for `repo`.
    pub fn objects(&self, repo: &str) -> BTreeSet<String> {
        let dir = self.object_path(repo, "");
        match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Overwrites the stored `oid` of `repo` with other bytes of the same size, so that the
    /// server still offers it but its content no longer hashes to `oid`.
    pub fn corrupt(&self, repo: &str, oid: &str) {
        let path = self.object_path(repo, oid);
        let mut bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("LFS server {} has no {oid} to corrupt: {e}", self.name));
        assert!(!bytes.is_empty(), "cannot corrupt an empty object");
        for b in bytes.iter_mut().take(4096) {
            *b ^= 0x5a;
        }
        std::fs::write(&path, bytes).expect("can overwrite the stored object");
    }

    /// Every request to this server's location so far (git data too), in order.
    pub fn requests(&self) -> Vec<LfsRequest> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// The objects uploaded (`PUT`, answered 200) so far, one entry per upload.
    pub fn uploads(&self) -> Vec<String> {
        self.storage_requests("PUT")
    }

    /// The objects downloaded (`GET`, answered 200) so far, one entry per download.
    pub fn downloads(&self) -> Vec<String> {
        self.storage_requests("GET")
    }

    fn storage_requests(&self, method: &str) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.status == 200)
            .filter_map(|r| r.storage_oid().map(str::to_owned))
            .collect()
    }

    /// How many batch API requests (`POST .../info/lfs/objects/batch`) came so far.
    pub fn batch_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/info/lfs/objects/batch"))
            .count()
    }

    /// What giftless wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("giftless.log")).unwrap_or_default()
    }

    /// Ends giftless (the store stays): nginx answers 502 for the LFS API until
    /// [`LfsServer::restart`]. The git data is still served.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
        self.port = 0;
    }

    /// Starts giftless again after [`LfsServer::stop`], with the same store and token.
    pub fn restart(&mut self, nginx: &Nginx) {
        assert!(self.child.is_none(), "LFS server {} is running", self.name);
        self.spawn();
        self.route(nginx);
    }

    /// Lets `git-lfs-authenticate` on the sshd [`ssh_lfs_authenticate`] set up answer for
    /// `repo` (relative to the world root, e.g. `acme/up.git`) with this server's LFS API and
    /// token.
    pub fn serve_over_ssh(&self, ssh: &SshLfs, repo: &str) {
        use std::io::Write;
        assert!(
            !repo.contains(char::is_whitespace),
            "repository paths here have no spaces: {repo}"
        );
        let mut table = std::fs::OpenOptions::new()
            .append(true)
            .open(&ssh.table)
            .expect("can open the git-lfs-authenticate table");
        writeln!(table, "{repo} {} {}", self.lfs_url(repo), self.token)
            .expect("can append to the git-lfs-authenticate table");
    }
}

impl Drop for LfsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `127.0.0.1 - - [date] "PUT /path?q HTTP/1.1" 200 0 "-" "agent"`.
fn parse_access_line(line: &str) -> Option<LfsRequest> {
    let mut quoted = line.split('"');
    let request = quoted.nth(1)?;
    let status = quoted.next()?.split_whitespace().next()?.parse().ok()?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let path = target.split('?').next()?.to_owned();
    Some(LfsRequest {
        method,
        path,
        status,
    })
}

/// `git-lfs-authenticate` on a test sshd, from [`ssh_lfs_authenticate`].
pub struct SshLfs {
    dir: PathBuf,
    /// Lines `<repo> <href> <token>`.
    table: PathBuf,
}

impl SshLfs {
    /// The calls so far: `<path as the client sent it> <operation>` per line.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The script itself, to run by hand.
    pub fn script(&self) -> PathBuf {
        self.dir.join("git-lfs-authenticate")
    }
}

/// The forced command every key on the sshd runs: `git-lfs-authenticate` goes to ours,
/// `git-lfs-transfer` (git-lfs' pure-ssh protocol, which the forges this imitates lacked) is
/// refused as an unknown command, anything else runs as asked.
const SSH_DISPATCH: &str = r#"#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  "git-lfs-authenticate "*)
    eval "set -- $SSH_ORIGINAL_COMMAND"
    shift
    exec 'SCRIPT' "$@" ;;
  "git-lfs-transfer "*)
    echo "git-lfs-transfer: command not found" >&2
    exit 127 ;;
  "")
    echo "no interactive logins here" >&2
    exit 1 ;;
  *)
    exec /bin/sh -c "$SSH_ORIGINAL_COMMAND" ;;
esac
"#;

/// `git-lfs-authenticate <path> <download|upload>` as GitLab's and GitHub's shells answer
/// it: the LFS API's href, an Authorization header to use there, and how long it lasts.
/// `ROOT`, `TABLE` and `LOG` are replaced.
const LFS_AUTHENTICATE: &str = r#"#!/bin/sh
set -eu
printf '%s %s\n' "${1-}" "${2-}" >>'LOG'
if [ $# -ne 2 ]; then
  echo "usage: git-lfs-authenticate <path> <download|upload>" >&2
  exit 1
fi
case "$2" in
  download|upload) ;;
  *) echo "git-lfs-authenticate: unknown operation: $2" >&2; exit 1 ;;
esac
path=${1#'ROOT'}
path=${path#/}
case "$path" in *.git) ;; *) path=$path.git ;; esac
line=$(awk -v p="$path" '$1 == p { print; exit }' 'TABLE')
if [ -z "$line" ]; then
  echo "git-lfs-authenticate: $1: repository not found" >&2
  exit 1
fi
set -- $line
printf '{"href":"%s","header":{"Authorization":"Bearer %s"},"expires_in":3600}\n' "$2" "$3"
"#;

/// Puts `git-lfs-authenticate` on `sshd`: every key it lets in so far runs a forced command
/// (as a forge's shell) that answers `git-lfs-authenticate` for the repositories that
/// [`LfsServer::serve_over_ssh`] names and runs any other command as asked.
pub fn ssh_lfs_authenticate(w: &World, sshd: &Sshd) -> SshLfs {
    use std::os::unix::fs::PermissionsExt;
    let dir = w.root().join("lfs-ssh");
    assert!(!dir.exists(), "ssh_lfs_authenticate was called already");
    std::fs::create_dir_all(&dir).expect("can create the git-lfs-authenticate directory");
    let table = dir.join("table");
    std::fs::write(&table, "").expect("can create the git-lfs-authenticate table");
    let s = |p: &Path| p.to_str().expect("test paths are UTF-8").to_owned();
    for p in [w.root(), dir.as_path()] {
        assert!(
            !s(p).contains(['\'', '"', ' ']),
            "test paths here have no quotes or spaces: {}",
            p.display()
        );
    }
    let script = dir.join("git-lfs-authenticate");
    std::fs::write(
        &script,
        LFS_AUTHENTICATE
            .replace("ROOT", &s(w.root()))
            .replace("TABLE", &s(&table))
            .replace("LOG", &s(&dir.join("calls.log"))),
    )
    .expect("can write git-lfs-authenticate");
    let dispatch = dir.join("ssh-dispatch");
    std::fs::write(&dispatch, SSH_DISPATCH.replace("SCRIPT", &s(&script)))
        .expect("can write the ssh forced command");
    for p in [&script, &dispatch] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
            .expect("can make the scripts executable");
    }
    sshd.force_command_for_all(&s(&dispatch));
    SshLfs { dir, table }
}

/// An `ssh` command line that uses the world's `~/.ssh/config` and `known_hosts` (OpenSSH
/// reads them from the passwd entry's home, not `$HOME`), in batch mode.
pub fn world_ssh_command(w: &World) -> String {
    let ssh = w.home().join(".ssh");
    format!(
        "ssh -F {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes",
        ssh.join("config").display(),
        ssh.join("known_hosts").display()
    )
}

/// Makes git and git-lfs of the world's default global config reach the test sshd
/// (`core.sshCommand` = [`world_ssh_command`]).
pub fn git_uses_world_ssh(w: &World) {
    let path = w.global_config();
    let text = std::fs::read_to_string(&path).expect("can read the global git config");
    std::fs::write(
        &path,
        format!("{text}[core]\n\tsshCommand = {}\n", world_ssh_command(w)),
    )
    .expect("can write the global git config");
}

/// `size` bytes determined by `seed` alone (xorshift64*): LFS content that no two seeds
/// share and that git cannot compress away.
pub fn lfs_content(seed: u64, size: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The SHA-256 of a file (the LFS oid of its content), by `sha256sum`.
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("can run sha256sum");
    assert!(out.status.success(), "sha256sum {} failed", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints the hash")
        .to_owned()
}

/// One LFS-tracked file of a generated history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LfsFile {
    /// Its path in the work tree.
    pub path: String,
    pub oid: String,
    pub size: u64,
}

/// A work tree (`git init -b main`) whose `*.bin` files git-lfs tracks, with the
/// `.gitattributes` committed. [`enable_lfs`] first.
pub fn lfs_work_repo(w: &World, dir: &Path) {
    std::fs::create_dir_all(dir).expect("can create the work tree");
    w.git(dir, &["init", "-q", "-b", "main"]);
    w.git(dir, &["lfs", "track", "*.bin"]);
    w.git(dir, &["add", ".gitattributes"]);
    w.git(dir, &["commit", "-q", "-m", "track *.bin with git-lfs"]);
}

/// Writes `data/obj-<seed>.bin` for each seed (content [`lfs_content`]`(seed, size + seed)`,
/// so that sizes differ too) and commits them with `message`. Returns the files.
pub fn lfs_commit(
    w: &World,
    work: &Path,
    seeds: std::ops::Range<u64>,
    size: usize,
    message: &str,
) -> Vec<LfsFile> {
    let mut files = Vec::new();
    for seed in seeds {
        let path = format!("data/obj-{seed:04}.bin");
        let content = lfs_content(seed, size + seed as usize);
        w.write(work, &path, &content);
        files.push(LfsFile {
            oid: sha256_file(&work.join(&path)),
            size: content.len() as u64,
            path,
        });
    }
    w.git(work, &["add", "--all"]);
    w.git(work, &["commit", "-q", "-m", message]);
    files
}

/// A history of `objects` distinct LFS objects of about `size` bytes each: commits of up to
/// 5 new objects; every 10th object is copied to `copies/` in a later commit (the same
/// object at two paths and in two commits); the first copy is deleted again in the last
/// commit, so that it lives in history only. Returns every file committed (copies too).
pub fn lfs_history(w: &World, work: &Path, objects: u64, size: usize) -> Vec<LfsFile> {
    lfs_work_repo(w, work);
    let mut all: Vec<LfsFile> = Vec::new();
    let mut start = 0;
    while start < objects {
        let end = (start + 5).min(objects);
        let mut copies = Vec::new();
        for f in all.iter().filter(|f| f.path.starts_with("data/")) {
            let seed: u64 = f.path[9..13].parse().expect("data/obj-NNNN.bin");
            if seed % 10 == 0 && !work.join("copies").join(&f.path[5..]).exists() {
                let copy = format!("copies/{}", &f.path[5..]);
                std::fs::create_dir_all(work.join("copies")).expect("can create copies/");
                std::fs::copy(work.join(&f.path), work.join(&copy)).expect("can copy");
                copies.push(LfsFile {
                    path: copy,
                    ..f.clone()
                });
            }
        }
        let added = lfs_commit(
            w,
            work,
            start..end,
            size,
            &format!("objects {start} to {}", end - 1),
        );
        all.extend(added);
        all.extend(copies);
        start = end;
    }
    if let Some(first) = all.iter().find(|f| f.path.starts_with("copies/")) {
        w.git(work, &["rm", "-q", &first.path]);
        w.git(work, &["commit", "-q", "-m", "drop a copy"]);
    }
    all
}

/// The distinct oids of `files`.
pub fn oids(files: &[LfsFile]) -> BTreeSet<String> {
    files.iter().map(|f| f.oid.clone()).collect()
}

/// `git init --bare <world root>/<repo>` (e.g. `acme/up.git`), served by every
/// [`LfsServer`]'s location.
pub fn bare_repo(w: &World, repo: &str) -> PathBuf {
    let path = w.root().join(repo);
    std::fs::create_dir_all(&path).expect("can create the bare repository's directory");
    w.git(&path, &["init", "-q", "--bare", "-b", "main"]);
    path
}

/// Pushes every branch and tag of `work`, LFS objects first (`git lfs push --all`, as the
/// pre-push hook would), to `url` (with credentials: [`LfsServer::url_with_token`]).
pub fn push_with_lfs(w: &World, work: &Path, url: &str) {
    w.git(work, &["lfs", "push", "--all", url]);
    w.git(work, &["push", "-q", url, "--all"]);
    w.git(work, &["push", "-q", url, "--tags"]);
}

/// `git clone url dest` (which fetches the checked-out LFS content through the smudge
/// filter), then `git lfs fetch --all` for every object of the history; returns `dest`.
pub fn clone_with_lfs(w: &World, url: &str, dest: &Path) -> PathBuf {
    let parent = dest.parent().expect("a destination with a parent");
    w.git(
        parent,
        &[
            "clone",
            "-q",
            url,
            dest.to_str().expect("test paths are UTF-8"),
        ],
    );
    w.git(dest, &["lfs", "fetch", "--all", "origin"]);
    dest.to_path_buf()
}

/// Where a clone keeps the LFS object `oid`.
pub fn local_object(clone: &Path, oid: &str) -> PathBuf {
    clone
        .join(".git/lfs/objects")
        .join(&oid[0..2])
        .join(&oid[2..4])
        .join(oid)
}

/// Fails the test unless `clone` holds every one of `oids` with the right content and
/// `git lfs fsck` passes.
pub fn assert_lfs_complete(w: &World, clone: &Path, oids: &BTreeSet<String>) {
    let mut missing = Vec::new();
    for oid in oids {
        let path = local_object(clone, oid);
        if !path.is_file() {
            missing.push(format!("{oid}: missing"));
        } else if sha256_file(&path) != *oid {
            missing.push(format!("{oid}: content does not match"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} lacks LFS objects:\n{}",
        clone.display(),
        missing.join("\n")
    );
    w.git(clone, &["lfs", "fsck"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "lfs-test-token-3c9e";
    const REPO: &str = "acme/up.git";

    /// Real git-lfs against real giftless through nginx: push 3 objects, clone them back.
    #[test]
    fn lfs_server_push_and_clone_round_trip() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let lfs = LfsServer::start(&w, &nginx, "up", TOKEN);
        bare_repo(&w, REPO);
        let work = w.root().join("work");
        lfs_work_repo(&w, &work);
        let files = lfs_commit(&w, &work, 0..3, 100_000, "three objects");
        push_with_lfs(&w, &work, &lfs.url_with_token(REPO));
        let expected = oids(&files);
        assert_eq!(lfs.objects(REPO), expected, "{}", lfs.log());
        let mut uploads = lfs.uploads();
        uploads.sort();
        assert_eq!(
            uploads,
            expected.iter().cloned().collect::<Vec<_>>(),
            "{:?}",
            lfs.requests()
        );
        // The stored bytes are the content.
        for f in &files {
            assert_eq!(sha256_file(&lfs.object_path(REPO, &f.oid)), f.oid);
        }

        let clone = clone_with_lfs(&w, &lfs.url_with_token(REPO), &w.root().join("clone"));
        assert_lfs_complete(&w, &clone, &expected);
        for f in &files {
            let content = std::fs::read(clone.join(&f.path)).expect("checked out");
            assert_eq!(content.len() as u64, f.size, "{} is its content", f.path);
        }
        assert_eq!(lfs.downloads().len(), 3, "{:?}", lfs.requests());
        assert!(lfs.batch_requests() >= 2, "{:?}", lfs.requests());
        assert_eq!((lfs.name(), lfs.token()), ("up", TOKEN));
        // The second push sends nothing.
        push_with_lfs(&w, &work, &lfs.url_with_token(REPO));
        assert_eq!(lfs.uploads().len(), 3);
    }

    /// Over TLS the API's hrefs are https too, and git-lfs follows them.
    #[test]
    fn lfs_server_over_https() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let lfs = LfsServer::start(&w, &nginx, "up", TOKEN);
        bare_repo(&w, REPO);
        let work = w.root().join("work");
        lfs_work_repo(&w, &work);
        let files = lfs_commit(&w, &work, 0..2, 30_000, "two objects");
        let url = lfs
            .https_url(REPO)
            .replace("https://", &format!("https://lfs-user:{TOKEN}@"));
        let ca = format!("http.sslCAInfo={}", nginx.ca.display());
        w.git(&work, &["-c", &ca, "lfs", "push", "--all", &url]);
        w.git(&work, &["-c", &ca, "push", "-q", &url, "main"]);
        assert_eq!(lfs.objects(REPO), oids(&files));
        let clone = w.root().join("clone");
        w.git(
            w.root(),
            &[
                "-c",
                &ca,
                "clone",
                "-q",
                &url,
                clone.to_str().expect("UTF-8"),
            ],
        );
        assert_lfs_complete(&w, &clone, &oids(&files));
        let batch = lfs
            .requests()
            .into_iter()
            .filter(|r| r.path.ends_with("/objects/batch"))
            .count();
        assert!(batch >= 2, "{:?}", lfs.requests());
    }

    /// Two servers at once serve the same repository path from separate stores.
    #[test]
    fn lfs_server_two_servers_apart() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let up = LfsServer::start(&w, &nginx, "up", TOKEN);
        let down = LfsServer::start(&w, &nginx, "down", "other-token-81b0");
        bare_repo(&w, REPO);
        bare_repo(&w, "acme/down.git");
        let work = w.root().join("work");
        let files = lfs_history(&w, &work, 12, 2_000);
        let expected = oids(&files);
        assert_eq!(expected.len(), 12);
        assert!(files.len() > 12, "some objects are at two paths");
        push_with_lfs(&w, &work, &up.url_with_token(REPO));
        assert_eq!(up.objects(REPO), expected);
        assert_eq!(up.uploads().len(), 12, "each object once");
        assert!(down.objects(REPO).is_empty() && down.requests().is_empty());
        // The token of one is no good at the other.
        let out = w.try_git(
            &work,
            &[
                "lfs",
                "push",
                "--all",
                &up.url_with_token(REPO).replace(TOKEN, "other-token-81b0"),
            ],
        );
        assert!(!out.status.success(), "a wrong token must be refused");
        push_with_lfs(&w, &work, &down.url_with_token("acme/down.git"));
        assert_eq!(down.objects("acme/down.git"), expected);
        assert_eq!(up.uploads().len(), 12);
    }

    /// Without the token, or with a wrong one, the API answers 401; the storage of a corrupt
    /// object is caught by the client.
    #[test]
    fn lfs_server_refuses_wrong_token_and_serves_corruption() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let lfs = LfsServer::start(&w, &nginx, "up", TOKEN);
        bare_repo(&w, REPO);
        let work = w.root().join("work");
        lfs_work_repo(&w, &work);
        let files = lfs_commit(&w, &work, 0..3, 50_000, "three objects");

        let batch = format!("/lfs-up/{REPO}/info/lfs/objects/batch");
        let body = format!(
            r#"{{"operation":"download","transfers":["basic"],"objects":[{{"oid":"{}","size":{}}}]}}"#,
            files[0].oid, files[0].size
        );
        let ask = |auth: Option<&str>| {
            let mut headers = vec![("Accept", "application/vnd.git-lfs+json")];
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            http_request(nginx.port, "POST", &batch, &headers, Some(body.as_bytes())).status
        };
        assert_eq!(ask(None), 401);
        assert_eq!(ask(Some("Bearer not-the-token")), 401);
        // `lfs-user:wrong`
        assert_eq!(ask(Some("Basic bGZzLXVzZXI6d3Jvbmc=")), 401);
        let wrong = lfs.url_with_token(REPO).replace(TOKEN, "wrong");
        let out = w.try_git(&work, &["lfs", "push", "--all", &wrong]);
        assert!(!out.status.success(), "git lfs push with a wrong token");
        assert!(lfs.uploads().is_empty());

        push_with_lfs(&w, &work, &lfs.url_with_token(REPO));
        assert_eq!(ask(Some(&format!("Bearer {TOKEN}"))), 200);
        lfs.corrupt(REPO, &files[1].oid);
        assert_ne!(
            sha256_file(&lfs.object_path(REPO, &files[1].oid)),
            files[1].oid
        );
        let clone = w.root().join("clone");
        w.git(
            w.root(),
            &[
                "-c",
                "lfs.fetchexclude=*",
                "clone",
                "-q",
                &lfs.url_with_token(REPO),
                clone.to_str().expect("UTF-8"),
            ],
        );
        let out = w.try_git(&clone, &["lfs", "fetch", "--all", "origin"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && !local_object(&clone, &files[1].oid).exists(),
            "git lfs fetch took a corrupt object: {stderr}"
        );
        assert!(
            local_object(&clone, &files[0].oid).exists(),
            "the good objects arrive: {stderr}"
        );
        assert!(
            stderr.contains(&format!("expected OID {}", files[1].oid)),
            "git-lfs names the hash mismatch: {stderr}"
        );
    }

    /// Stopped, the API fails (502 through nginx) and the git data is still served; after a
    /// restart the store is as before.
    #[test]
    fn lfs_server_stop_and_restart() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let mut lfs = LfsServer::start(&w, &nginx, "up", TOKEN);
        bare_repo(&w, REPO);
        let work = w.root().join("work");
        lfs_work_repo(&w, &work);
        let files = lfs_commit(&w, &work, 0..2, 10_000, "two objects");
        push_with_lfs(&w, &work, &lfs.url_with_token(REPO));
        lfs.stop();
        // The git data without the LFS content, then the content: refused.
        let clone = w.root().join("clone");
        w.git(
            w.root(),
            &[
                "-c",
                "lfs.fetchexclude=*",
                "clone",
                "-q",
                &lfs.url_with_token(REPO),
                clone.to_str().expect("UTF-8"),
            ],
        );
        let out = w.try_git(&clone, &["lfs", "fetch", "--all", "origin"]);
        assert!(
            !out.status.success(),
            "git lfs fetch from a stopped server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = http_request(
            nginx.port,
            "POST",
            &format!("/lfs-up/{REPO}/info/lfs/objects/batch"),
            &[],
            Some(b"{}"),
        )
        .status;
        assert_eq!(status, 502);
        w.git(&work, &["ls-remote", &lfs.url(REPO)]);
        lfs.restart(&nginx);
        w.git(&clone, &["lfs", "fetch", "--all", "origin"]);
        assert_lfs_complete(&w, &clone, &oids(&files));
    }

    /// `git-lfs-authenticate` over the test sshd answers as GitLab and GitHub do, and git-lfs
    /// uses it for an ssh remote.
    #[test]
    fn lfs_server_git_lfs_authenticate_over_ssh() {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        let lfs = LfsServer::start(&w, &nginx, "up", TOKEN);
        let sshd = crate::sshd::start_for(&w, crate::sshd::Protocol::V2);
        let ssh = ssh_lfs_authenticate(&w, &sshd);
        lfs.serve_over_ssh(&ssh, REPO);
        let bare = bare_repo(&w, REPO);

        git_uses_world_ssh(&w);
        let mut cmd = Command::new("sh");
        w.isolate(&mut cmd, &w.global_config());
        let out = cmd
            .arg("-c")
            .arg(format!("{} \"$@\"", world_ssh_command(&w)))
            .arg("ssh")
            .args(["-p", &sshd.port().to_string()])
            .arg(format!("{}@127.0.0.1", sshd.user()))
            .arg("git-lfs-authenticate")
            .arg(&bare)
            .arg("download")
            .stdin(Stdio::null())
            .output()
            .expect("can run ssh");
        assert!(
            out.status.success(),
            "ssh git-lfs-authenticate failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        let answer: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("git-lfs-authenticate answers JSON");
        assert_eq!(
            answer,
            serde_json::json!({
                "href": lfs.lfs_url(REPO),
                "header": {"Authorization": format!("Bearer {TOKEN}")},
                "expires_in": 3600,
            })
        );

        // git over ssh, LFS over the href it was given.
        let work = w.root().join("work");
        lfs_work_repo(&w, &work);
        let files = lfs_commit(&w, &work, 0..2, 20_000, "two objects");
        let url = sshd.url(&bare);
        push_with_lfs(&w, &work, &url);
        assert_eq!(lfs.objects(REPO), oids(&files));
        let clone = clone_with_lfs(&w, &url, &w.root().join("clone"));
        assert_lfs_complete(&w, &clone, &oids(&files));
        assert!(ssh.script().is_file());
        let calls = ssh.calls();
        assert!(
            calls.iter().any(|c| c.ends_with(" upload"))
                && calls.iter().any(|c| c.ends_with(" download")),
            "{calls:?}"
        );
    }
}
