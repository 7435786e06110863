//! A real smart-HTTP server for the http tests: nginx in front of fcgiwrap running
//! `git http-backend`, on 127.0.0.1 and free ports, configured in a temporary directory.
//!
//! Locations, each serving every repository under the project root (the test's world):
//! - `/v2/...`: open, `Git-Protocol` passed on (protocol v2), pushes allowed;
//! - `/v0/...`: open, `Git-Protocol` dropped, so http-backend speaks v0;
//! - `/auth/...`: basic auth (`alice` / [`PASSWORD`]), pushes as the authenticated user;
//! - `/dumb/...`: the repositories as plain files (dumb HTTP);
//! - `/header/...`: like `/v2/`, but 403 unless the request has `X-Kalandra-Test:`
//!   [`HEADER_VALUE`] (for `http.extraHeader`);
//! - `/cookie/...`: like `/v2/`, but 403 unless the cookie `kalandra_session` is
//!   [`COOKIE_VALUE`] (for `http.cookieFile`).
//! - `/github/OWNER/...`: the repositories under `<root>/github/`, as GitHub serves them to a
//!   GitHub App: basic auth as `x-access-token` with the token [`Nginx::set_github_token`] set
//!   for OWNER (refused while none is set), pushes allowed.
//! - whatever `<root>/nginx/github-api*.conf` holds when nginx starts (the forge tests put a
//!   proxy to their GitHub API server there: `crate::github_api::GithubApi::behind_nginx`).
//! - `/gitlab/...`: the repositories under `<root>/gitlab/`, as GitLab serves them to a
//!   personal, project or group access token: basic auth with any user name (as GitLab) and
//!   one of the tokens [`Nginx::set_gitlab_tokens`] set as the password (refused while none
//!   is set), pushes allowed. nginx asks a small CGI script through fcgiwrap
//!   (`auth_request`), because `auth_basic` knows one password per user name.
//! - whatever `<root>/nginx/gitlab-api*.conf` holds when nginx starts or [`Nginx::reload`]s
//!   (`crate::gitlab_api::GitlabApi::behind_nginx` puts its proxy there).
//! - whatever `<root>/nginx/lfs-*.conf` holds when nginx starts or reloads: each
//!   `crate::lfs_server::LfsServer` puts its `/lfs-<name>/...` location there (git data as on
//!   `/v2/`, [`Nginx::git_backend`], and `.git/info/lfs/` to its giftless).
//!
//! The same locations are served over TLS on [`Nginx::tls_port`], with a certificate from a
//! CA the harness generates ([`Nginx::ca`]), and on [`Nginx::mtls_port`], which also requires
//! a client certificate signed by that CA ([`Nginx::client_certificate`] makes one), and on
//! [`Nginx::h2_port`], which offers HTTP/2. If nginx or fcgiwrap cannot start, the test
//! fails with the reason.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::World;

/// The password of `alice` on `/auth/`.
pub const PASSWORD: &str = "open-sesame-42";

/// The `X-Kalandra-Test` header `/header/` requires.
pub const HEADER_VALUE: &str = "header-secret-7f3a";

/// The value of the cookie `kalandra_session` that `/cookie/` requires.
pub const COOKIE_VALUE: &str = "cookie-secret-91c2";

/// The CGI script `/gitlab/`'s `auth_request` runs (through fcgiwrap): 204 if the basic-auth
/// password is a line of the token file, else 401 with a challenge (so that git sends its
/// credentials). `TOKENS` is replaced by the file's path.
const GITLAB_AUTH_SCRIPT: &str = r#"#!/bin/sh
deny() {
  printf 'Status: 401 Unauthorized\r\nWWW-Authenticate: Basic realm="kalandra test gitlab"\r\n\r\n'
  exit 0
}
case "$HTTP_AUTHORIZATION" in "Basic "*) ;; *) deny ;; esac
pair=$(printf '%s' "${HTTP_AUTHORIZATION#Basic }" | base64 -d 2>/dev/null) || deny
password=${pair#*:}
[ "$pair" != "$password" ] && [ -n "$password" ] || deny
grep -qxF -e "$password" 'TOKENS' || deny
printf 'Status: 204 No Content\r\n\r\n'
"#;

pub struct Nginx {
    dir: PathBuf,
    pub port: u16,
    pub tls_port: u16,
    /// TLS with `ssl_verify_client on`.
    pub mtls_port: u16,
    /// TLS that also offers HTTP/2 (ALPN `h2`).
    pub h2_port: u16,
    /// The CA that signed the TLS certificate (PEM).
    pub ca: PathBuf,
    /// The global git config http-backend runs with (see [`Nginx::set_server_config`]).
    server_config: PathBuf,
    /// The body of `/v2/`'s location: http-backend with PATH_INFO `$1`.
    git_backend: String,
    nginx: Child,
    fcgiwrap: Child,
}

/// A command from PATH or the sbin directories Debian installs daemons into.
fn program(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: the http tests need nginx, fcgiwrap and openssl (tests/run.sh installs them)")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("can bind a free port on 127.0.0.1")
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 and localhost signed by it.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = program("openssl");
    let p = |name: &str| dir.join(name);
    run(
        Command::new(&openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=kalandra test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")),
        "openssl req (CA)",
    );
    run(
        Command::new(&openssl)
            .args([
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")),
        "openssl req (server)",
    );
    std::fs::write(
        p("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("can write the extensions file");
    run(
        Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.pem"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("server.ext"))
            .arg("-out")
            .arg(p("server.pem")),
        "openssl x509 (sign)",
    );
    p("ca.pem")
}

fn htpasswd(dir: &Path) -> PathBuf {
    let out = Command::new(program("openssl"))
        .args(["passwd", "-apr1", PASSWORD])
        .output()
        .expect("can run openssl passwd");
    assert!(out.status.success(), "openssl passwd failed");
    let hash = String::from_utf8(out.stdout).expect("ascii");
    let path = dir.join("htpasswd");
    std::fs::write(&path, format!("alice:{}\n", hash.trim())).expect("can write htpasswd");
    path
}

impl Nginx {
    /// Starts nginx and fcgiwrap serving the repositories under `w.root()`.
    pub fn start(w: &World) -> Self {
        let dir = w.root().join("nginx");
        for sub in ["", "logs", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).expect("can create the nginx directory");
        }
        let ca = make_certificates(&dir);
        let htpasswd = htpasswd(&dir);
        // No token yet: every request to /gitlab/ is refused (401) until set_gitlab_tokens.
        let gitlab_tokens = dir.join("gitlab-tokens");
        std::fs::write(&gitlab_tokens, "").expect("can write the gitlab token file");
        let gitlab_auth = dir.join("gitlab-auth.sh");
        std::fs::write(
            &gitlab_auth,
            GITLAB_AUTH_SCRIPT.replace("TOKENS", &gitlab_tokens.display().to_string()),
        )
        .expect("can write the gitlab auth script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&gitlab_auth, std::fs::Permissions::from_mode(0o755))
                .expect("can make the gitlab auth script executable");
        }
        let server_config = dir.join("server.gitconfig");
        std::fs::write(&server_config, "").expect("can write the server's git config");
        let socket = dir.join("fcgi.sock");
        let port = free_port();
        // Each probe frees its port at once, so the second can return the first's again;
        // nginx then refuses the plain and the TLS server on one port.
        let tls_port = std::iter::repeat_with(free_port)
            .find(|&p| p != port)
            .expect("an endless iterator");
        let mtls_port = std::iter::repeat_with(free_port)
            .find(|&p| p != port && p != tls_port)
            .expect("an endless iterator");
        let h2_port = std::iter::repeat_with(free_port)
            .find(|&p| p != port && p != tls_port && p != mtls_port)
            .expect("an endless iterator");

        let backend = git_exec_path().join("git-http-backend");
        let root = w.root().display().to_string();
        let d = dir.display();
        let fastcgi = |extra: &str| {
            format!(
                "      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param REMOTE_ADDR $remote_addr;
      fastcgi_param SERVER_PROTOCOL $server_protocol;
      fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param GIT_CONFIG_NOSYSTEM 1;
      fastcgi_param GIT_CONFIG_GLOBAL {config};
      fastcgi_param HOME {d};
      fastcgi_param PATH_INFO $1;
{extra}      fastcgi_pass unix:{sock};
",
                backend = backend.display(),
                config = server_config.display(),
                sock = socket.display(),
            )
        };
        let v2 = fastcgi(
            "      fastcgi_param GIT_PROTOCOL $http_git_protocol;\n      fastcgi_param REMOTE_USER anonymous;\n",
        );
        // http-backend takes GIT_PROTOCOL from the Git-Protocol header itself too.
        let v0 = fastcgi(
            "      fastcgi_pass_request_headers off;\n      fastcgi_param REMOTE_USER anonymous;\n",
        );
        let auth = fastcgi(
            "      fastcgi_param GIT_PROTOCOL $http_git_protocol;\n      fastcgi_param REMOTE_USER $remote_user;\n",
        );
        let locations = format!(
            "    location ~ ^/v2(/.*)$ {{\n{v2}    }}
    location ~ ^/v0(/.*)$ {{\n{v0}    }}
    location ~ ^/auth(/.*)$ {{
      auth_basic \"kalandra test\";
      auth_basic_user_file {htpasswd};
{auth}    }}
    location /dumb/ {{ alias {root}/; default_type text/plain; }}
    location ~ ^/header(/.*)$ {{
      if ($http_x_kalandra_test != \"{HEADER_VALUE}\") {{ return 403; }}
{v2}    }}
    location ~ ^/cookie(/.*)$ {{
      if ($cookie_kalandra_session != \"{COOKIE_VALUE}\") {{ return 403; }}
{v2}    }}
    location ~ ^(/github/(?<github_owner>[^/]+)/.*)$ {{
      auth_basic \"kalandra test github\";
      auth_basic_user_file {d}/github-tokens/$github_owner.htpasswd;
{auth}    }}
    include {d}/github-api*.conf;
    location = /_kalandra/gitlab-auth {{
      internal;
      fastcgi_pass_request_body off;
      fastcgi_param REQUEST_METHOD GET;
      fastcgi_param CONTENT_LENGTH \"\";
      fastcgi_param SCRIPT_FILENAME {gitlab_auth};
      fastcgi_pass unix:{sock};
    }}
    location ~ ^(/gitlab/.*)$ {{
      auth_request /_kalandra/gitlab-auth;
{auth}    }}
    include {d}/gitlab-api*.conf;
    include {d}/lfs-*.conf;
",
            htpasswd = htpasswd.display(),
            gitlab_auth = gitlab_auth.display(),
            sock = socket.display(),
        );
        let user = if is_root() { "user root;\n" } else { "" };
        let conf = format!(
            "{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {d}/logs/access.log;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
  fastcgi_read_timeout 300s;
  server {{
    listen 127.0.0.1:{port};
{locations}  }}
  server {{
    listen 127.0.0.1:{tls_port} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
{locations}  }}
  server {{
    listen 127.0.0.1:{mtls_port} ssl;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
    ssl_client_certificate {d}/ca.pem;
    ssl_verify_client on;
{locations}  }}
  server {{
    listen 127.0.0.1:{h2_port} ssl http2;
    ssl_certificate {d}/server.pem;
    ssl_certificate_key {d}/server.key;
{locations}  }}
}}
"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("can write nginx.conf");

        use std::os::unix::process::CommandExt;
        let fcgiwrap = Command::new(program("fcgiwrap"))
            .process_group(0)
            .arg("-c")
            .arg("4")
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", &server_config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("logs/fcgiwrap.log")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start fcgiwrap: {e}"));
        let nginx = Command::new(program("nginx"))
            .process_group(0)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("logs/nginx.stderr")).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nginx: {e}"));
        let mut server = Nginx {
            dir,
            port,
            tls_port,
            mtls_port,
            h2_port,
            ca,
            server_config,
            git_backend: v2.clone(),
            nginx,
            fcgiwrap,
        };
        server.wait_until_ready(&socket);
        server
    }

    fn wait_until_ready(&mut self, socket: &Path) {
        let start = Instant::now();
        loop {
            let logs = || {
                ["logs/nginx.stderr", "logs/error.log", "logs/fcgiwrap.log"]
                    .iter()
                    .map(|f| {
                        format!(
                            "--- {f}:\n{}",
                            std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if let Ok(Some(status)) = self.nginx.try_wait() {
                panic!("nginx exited at startup ({status}):\n{}", logs());
            }
            if let Ok(Some(status)) = self.fcgiwrap.try_wait() {
                panic!("fcgiwrap exited at startup ({status}):\n{}", logs());
            }
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if socket.exists()
                && up(self.port)
                && up(self.tls_port)
                && up(self.mtls_port)
                && up(self.h2_port)
            {
                return;
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "nginx and fcgiwrap did not come up within 15 s:\n{}",
                    logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>/<location>/<repo relative to the world root>`.
    pub fn url(&self, location: &str, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{location}/{repo}", self.port)
    }

    /// Like [`Nginx::url`], with `user:password@`.
    pub fn url_as(&self, location: &str, repo: &str, user: &str, password: &str) -> String {
        format!(
            "http://{user}:{password}@127.0.0.1:{}/{location}/{repo}",
            self.port
        )
    }

    /// `https://127.0.0.1:<tls_port>/<location>/<repo>`.
    pub fn https_url(&self, location: &str, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{location}/{repo}", self.tls_port)
    }

    /// `https://127.0.0.1:<mtls_port>/<location>/<repo>`: needs a client certificate.
    pub fn mtls_url(&self, location: &str, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{location}/{repo}", self.mtls_port)
    }

    /// `https://127.0.0.1:<h2_port>/<location>/<repo>`: offers HTTP/2.
    pub fn h2_url(&self, location: &str, repo: &str) -> String {
        format!("https://127.0.0.1:{}/{location}/{repo}", self.h2_port)
    }

    /// nginx's access log so far (`combined` format: request line with the HTTP version,
    /// then the User-Agent).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/access.log")).unwrap_or_default()
    }

    /// A client certificate signed by the harness CA, and its key: PEM files
    /// `<name>.pem` and `<name>.key` in the nginx directory.
    pub fn client_certificate(&self, name: &str) -> (PathBuf, PathBuf) {
        let openssl = program("openssl");
        let p = |file: String| self.dir.join(file);
        let (cert, key, csr, ext) = (
            p(format!("{name}.pem")),
            p(format!("{name}.key")),
            p(format!("{name}.csr")),
            p(format!("{name}.ext")),
        );
        run(
            Command::new(&openssl)
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-subj", &format!("/CN={name}")])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
            "openssl req (client)",
        );
        std::fs::write(
            &ext,
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        )
        .expect("can write the extensions file");
        run(
            Command::new(&openssl)
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca)
                .arg("-CAkey")
                .arg(self.dir.join("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
            "openssl x509 (client)",
        );
        (cert, key)
    }

    /// Lets `x-access-token` with `token` (and no other password) fetch and push
    /// `/github/<owner>/...`, as a GitHub App's installation token for `owner` may; replaces
    /// the token set before. nginx reads the file on each request: no reload needed.
    pub fn set_github_token(&self, owner: &str, token: &str) {
        assert!(
            !owner.is_empty() && !owner.contains(['/', '.']),
            "not an owner name: {owner:?}"
        );
        let dir = self.dir.join("github-tokens");
        std::fs::create_dir_all(&dir).expect("can create the github token directory");
        // nginx's own `{PLAIN}` scheme: the test's tokens are no secret, and no hash to make.
        std::fs::write(
            dir.join(format!("{owner}.htpasswd")),
            format!("x-access-token:{{PLAIN}}{token}\n"),
        )
        .expect("can write the github token file");
    }

    /// Lets each of `tokens`, as the basic-auth password with any user name, fetch and push
    /// `/gitlab/...`, as GitLab lets a personal, project or group access token; replaces the
    /// tokens set before (none: everything refused). Read on each request: no reload needed.
    pub fn set_gitlab_tokens(&self, tokens: &[&str]) {
        let mut text = String::new();
        for token in tokens {
            assert!(
                !token.is_empty() && !token.contains(['\n', '\r']),
                "not a token the check can compare: {token:?}"
            );
            text.push_str(token);
            text.push('\n');
        }
        std::fs::write(self.dir.join("gitlab-tokens"), text)
            .expect("can write the gitlab token file");
    }

    /// The directory of nginx's configuration (`nginx.conf`, the included `*-api*.conf`).
    pub fn conf_dir(&self) -> &Path {
        &self.dir
    }

    /// Makes nginx read its configuration again (SIGHUP to the master). Returns at once: new
    /// workers take over shortly after; wait for something the new configuration serves.
    pub fn reload(&self) {
        let master = self.nginx.id();
        // The old worker keeps accepting connections until it has handled the master's
        // QUIT, which on a busy machine can come after the new worker answers: wait until
        // it is gone, so that every request after a reload sees the new configuration.
        let children = || {
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let old = children();
        let status = Command::new("kill")
            .args(["-HUP", &master.to_string()])
            .status()
            .expect("can run kill");
        assert!(status.success(), "kill -HUP nginx failed: {status}");
        let start = std::time::Instant::now();
        while old
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "nginx's old workers {old:?} were still running 30 s after the reload"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The directives of `/v2/`'s location (git http-backend, protocol v2, pushes allowed,
    /// every repository under the world root), for a location whose regex captures the
    /// repository path and what follows as `$1`.
    pub fn git_backend(&self) -> &str {
        &self.git_backend
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    /// Replaces the global git config http-backend's git processes read (hooks such as
    /// `uploadpack.packObjectsHook` are only honoured there).
    pub fn set_server_config(&self, text: &str) {
        std::fs::write(&self.server_config, text).expect("can write the server's git config");
    }
}

impl Drop for Nginx {
    /// Each daemon leads its own process group (nginx's workers, fcgiwrap's children):
    /// end the groups, not only the leaders, or workers would outlive the test.
    fn drop(&mut self) {
        for child in [&mut self.nginx, &mut self.fcgiwrap] {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }
}

fn git_exec_path() -> PathBuf {
    let out = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("can run git --exec-path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}
