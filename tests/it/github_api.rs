//! A local GitHub REST API for contract tests: `tests/forge/server.js` (node), started per
//! test on 127.0.0.1 and a free port.
//!
//! The server checks every request against GitHub's own OpenAPI description (npm
//! `@octokit/openapi`): a request the description does not allow is answered 400 and recorded
//! as a contract violation ([`GithubApi::violations`]). It verifies app JWTs with node's own
//! `crypto`, independently of Kalandra's code, and answers with the description's example
//! responses adapted by a *scenario* (apps, installations, tokens, repositories, faults; see
//! `tests/forge/README.md`). Every request lands in a JSON lines log ([`GithubApi::requests`]).
//!
//! What this proves and what only real GitHub could is in `docs/forges.md`.
//!
//! The git data goes through the real nginx + http-backend: [`github_git`] turns on the
//! `/github/OWNER/...` location of [`Nginx`], where only `x-access-token` with the token set
//! for OWNER may fetch or push.
//!
//! If node or the npm packages are missing, or the server cannot start, the test fails with
//! the reason (tests/run.sh installs node and runs `npm ci`). Dropping the [`GithubApi`] ends
//! the server; so does the end of the test process, however it ends, because the server exits
//! when its standard input closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::World;
use crate::nginx::Nginx;
use crate::node_server::NodeServer;

pub struct GithubApi {
    server: NodeServer,
}

/// One request the server received, from its log.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: String,
    /// The path as sent, with the `/api/v3` prefix if any.
    pub path: String,
    /// `/api/v3` or empty.
    pub prefix: String,
    /// The description's path template (`/repos/{owner}/{repo}/installation`), if any matched.
    pub route: Option<String>,
    pub query: Value,
    /// The JSON body, `null` if none.
    pub body: Value,
    /// `none`, `jwt`, `token`, `basic` or `invalid`.
    pub auth: String,
    /// The app the JWT or token belongs to, once verified.
    pub app_id: Option<u64>,
    /// The installation the token belongs to, once verified.
    pub installation_id: Option<u64>,
    pub status: u16,
    /// Why the request (or the server's own answer) broke the contract; empty if it did not.
    pub violations: Vec<String>,
    /// The whole log entry.
    pub raw: Value,
}

/// An answer to [`GithubApi::request`].
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl GithubApi {
    /// Starts the server with `scenario` (see `tests/forge/README.md`).
    pub fn start(w: &World, scenario: &Value) -> Self {
        GithubApi {
            server: NodeServer::start(
                w,
                "server.js",
                "@octokit/openapi/package.json",
                "github-api",
                "the GitHub API server",
                scenario,
            ),
        }
    }

    /// `http://127.0.0.1:PORT`: the API's base URL, as `https://api.github.com`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `http://127.0.0.1:PORT/api/v3`: the same API as GitHub Enterprise Server's `api_url`.
    pub fn enterprise_url(&self) -> String {
        format!("{}/api/v3", self.url())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.server
            .log_entries()
            .into_iter()
            .map(|raw| {
                let s = |k: &str| raw[k].as_str().unwrap_or_default().to_string();
                ApiRequest {
                    method: s("method"),
                    path: s("path"),
                    prefix: s("prefix"),
                    route: raw["route"].as_str().map(str::to_string),
                    query: raw["query"].clone(),
                    body: raw["body"].clone(),
                    auth: raw["auth"]["kind"].as_str().unwrap_or("none").to_string(),
                    app_id: raw["auth"]["app_id"].as_u64(),
                    installation_id: raw["auth"]["installation_id"].as_u64(),
                    status: raw["status"].as_u64().unwrap_or(0) as u16,
                    violations: raw["violations"]
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    raw,
                }
            })
            .collect()
    }

    /// The requests that broke the contract (or whose answer did), with the reasons.
    pub fn violations(&self) -> Vec<ApiRequest> {
        self.requests()
            .into_iter()
            .filter(|r| !r.violations.is_empty())
            .collect()
    }

    /// Fails the test, listing them, if any request broke the contract.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests outside GitHub's API description:\n{}",
            v.iter()
                .map(|r| format!("  {} {}: {}", r.method, r.path, r.violations.join("; ")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// How many requests went to `method` `route` (a path template of the description, e.g.
    /// `/app/installations/{installation_id}/access_tokens`).
    pub fn count(&self, method: &str, route: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.route.as_deref() == Some(route))
            .count()
    }

    /// Replaces the scenario of the running server (tokens already issued stay valid until
    /// they expire, the next token of an installation is the one after the last issued;
    /// fault counters start again).
    pub fn set_scenario(&self, scenario: &Value) {
        self.server.set_scenario(scenario);
    }

    /// Sends one request (HTTP/1.1, `Connection: close`) and reads the whole answer. `headers`
    /// are added as given; a body is sent as `application/json`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> ApiResponse {
        self.server.request(method, path, headers, body)
    }

    /// Revokes the installation token `token` as its holder does on GitHub
    /// (`DELETE /installation/token`); the API refuses it from then on. nginx's
    /// `/github/OWNER/` is the test's to move on ([`Nginx::set_github_token`]).
    pub fn revoke_token(&self, token: &str) {
        let r = self.request(
            "DELETE",
            "/installation/token",
            &[("Authorization", &format!("token {token}"))],
            None,
        );
        assert_eq!(r.status, 204, "revoking a token: {r:?}");
    }

    /// `request` with `Authorization: <authorization>` (e.g. `Bearer JWT`, `token TOKEN`).
    pub fn get(&self, path: &str, authorization: Option<&str>) -> ApiResponse {
        let auth = authorization.map(|a| ("Authorization", a));
        self.request("GET", path, auth.as_slice(), None)
    }

    /// Puts the API behind `nginx` too, at `/api/v3/` on each of its ports, as GitHub
    /// Enterprise Server serves it beside the git data (`https://HOST/api/v3`). Call before
    /// [`Nginx::start`]: nginx reads the proxy configuration when it starts.
    pub fn behind_nginx(&self, w: &World) {
        let dir = w.root().join("nginx");
        assert!(
            !dir.join("nginx.conf").exists(),
            "behind_nginx must come before Nginx::start"
        );
        std::fs::create_dir_all(&dir).expect("can create the nginx directory");
        std::fs::write(
            dir.join("github-api.conf"),
            format!(
                "    location /api/v3/ {{
      proxy_pass http://127.0.0.1:{port};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_http_version 1.1;
    }}
",
                port = self.server.port
            ),
        )
        .expect("can write the nginx proxy configuration");
    }
}

/// One HTTP/1.1 request to `127.0.0.1:port` (`Connection: close`), and the whole answer.
/// `headers` are added as given; a body is sent as `application/json`.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> ApiResponse {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("can connect to the server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("can set a timeout");
    stream
        .write_all(&request_bytes(port, method, path, headers, body))
        .expect("can send the request");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("can read the answer");
    parse_response(&answer)
}

fn request_bytes(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: kalandra-it\r\nAccept: application/vnd.github+json\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    bytes
}

/// Like [`http_request`], over TLS (`openssl s_client`, verifying the server against `ca`).
pub fn https_request(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> ApiResponse {
    let mut child = Command::new("openssl")
        // -quiet implies -ign_eof: s_client ends when the server closes, not at our EOF.
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("can run openssl s_client");
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(&request_bytes(port, method, path, headers, None))
        .expect("can send the request");
    drop(stdin);
    let out = child.wait_with_output().expect("openssl s_client finishes");
    assert!(
        !out.stdout.is_empty(),
        "no answer over TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
}

fn parse_response(answer: &[u8]) -> ApiResponse {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]);
    let body = &answer[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
    };
    ApiResponse {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// App keys and JWTs, made with openssl, not with Kalandra's code.

/// An RSA key pair for a GitHub App, as PEM files in the world.
pub struct AppKey {
    /// `-----BEGIN RSA PRIVATE KEY-----` (what GitHub's "Generate a private key" downloads).
    pub pkcs1: PathBuf,
    /// `-----BEGIN PRIVATE KEY-----`.
    pub pkcs8: PathBuf,
    /// The public key (SPKI PEM), for the scenario.
    pub public_pem: String,
}

fn openssl(args: &[&str], what: &str) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({what}): {e}"));
    assert!(
        out.status.success(),
        "openssl {what} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A fresh 2048-bit RSA key pair `<root>/app-keys/<name>.{pkcs1,pkcs8,pub}.pem`.
pub fn app_key(w: &World, name: &str) -> AppKey {
    let dir = w.root().join("app-keys");
    std::fs::create_dir_all(&dir).expect("can create the key directory");
    let p = |kind: &str| dir.join(format!("{name}.{kind}.pem"));
    let s = |p: &Path| p.display().to_string();
    let (pkcs1, pkcs8, public) = (p("pkcs1"), p("pkcs8"), p("pub"));
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &s(&pkcs8),
        ],
        "genpkey",
    );
    openssl(
        &["rsa", "-in", &s(&pkcs8), "-traditional", "-out", &s(&pkcs1)],
        "rsa -traditional",
    );
    openssl(
        &["pkey", "-in", &s(&pkcs8), "-pubout", "-out", &s(&public)],
        "pkey -pubout",
    );
    let public_pem = std::fs::read_to_string(&public).expect("can read the public key");
    AppKey {
        pkcs1,
        pkcs8,
        public_pem,
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An RS256 JWT over `claims`, signed by `openssl dgst -sha256 -sign` with `key` (a private
/// key PEM file).
pub fn jwt(key: &Path, claims: &Value) -> String {
    let header = base64url(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = base64url(claims.to_string().as_bytes());
    let input = format!("{header}.{payload}");
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("can run openssl dgst");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("can feed openssl");
    let out = child.wait_with_output().expect("openssl dgst finishes");
    assert!(
        out.status.success(),
        "openssl dgst -sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", base64url(&out.stdout))
}

/// Seconds since the epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// A JWT for app `app_id` as GitHub documents it: issued 60 s ago, expiring in 9 minutes.
pub fn app_jwt(key: &Path, app_id: u64) -> String {
    let now = unix_now();
    jwt(
        key,
        &json!({ "iss": app_id, "iat": now - 60, "exp": now + 540 }),
    )
}

// ---------------------------------------------------------------------------------------------
// The git side: nginx's `/github/OWNER/...` location.

/// Lets `x-access-token` with each installation's first token (`token`, or the first of
/// `tokens`) fetch and push `/github/<account>/...` on `nginx`; the repositories live at
/// `<world root>/github/<account>/<repo>.git`. Returns the base URL
/// `http://127.0.0.1:PORT/github` (a repository is `<base>/<account>/<repo>.git`).
pub fn github_git(nginx: &Nginx, scenario: &Value) -> String {
    for app in scenario["apps"].as_array().into_iter().flatten() {
        for inst in app["installations"].as_array().into_iter().flatten() {
            let account = inst["account"].as_str().expect("installation account");
            let token = inst["token"]
                .as_str()
                .or_else(|| inst["tokens"][0].as_str())
                .expect("an installation with `token` or `tokens`");
            nginx.set_github_token(account, token);
        }
    }
    format!("http://127.0.0.1:{}/github", nginx.port)
}

/// [`github_git`], and makes the scenario's repositories live on that nginx: `git_root`
/// (where the server creates repositories and moves HEAD), `clone_url_base`, and each
/// repository's `clone_url` unless set. Returns the base URL as [`github_git`] does.
pub fn with_github_git(w: &World, nginx: &Nginx, scenario: &mut Value) -> String {
    let base = github_git(nginx, scenario);
    scenario["git_root"] = json!(w.root().join("github"));
    scenario["clone_url_base"] = json!(base);
    for repo in scenario["repositories"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if repo.get("clone_url").is_none() {
            let full = match (repo["owner"].as_str(), repo["name"].as_str()) {
                (Some(o), Some(n)) => format!("{o}/{n}"),
                _ => repo["full_name"].as_str().unwrap_or_default().to_string(),
            };
            repo["clone_url"] = json!(format!("{base}/{full}.git"));
        }
    }
    base
}

/// A bare repository `<world root>/github/<owner>/<name>.git`, served under `/github/`.
pub fn github_repo(w: &World, owner: &str, name: &str) -> PathBuf {
    let path = w
        .root()
        .join("github")
        .join(owner)
        .join(format!("{name}.git"));
    std::fs::create_dir_all(&path).expect("can create the repository directory");
    w.git(&path, &["init", "--bare", "-q"]);
    path
}

// ---------------------------------------------------------------------------------------------
// Self-tests: the server holds the contract it claims to.

#[cfg(test)]
mod tests {
    use super::*;

    /// One app (id 1001) on `acme` (installation 501) with `repos` repositories, plus one
    /// public repository of `globex`, where nothing is installed.
    fn scenario(key: &AppKey, repos: usize) -> Value {
        let mut repositories: Vec<Value> = (0..repos)
            .map(|i| {
                json!({
                    "owner": "acme",
                    "name": format!("repo-{i}"),
                    "properties": { "mirror-source": format!("https://gitlab.example/acme/repo-{i}.git") },
                })
            })
            .collect();
        repositories.push(json!({ "owner": "globex", "name": "open", "private": false }));
        json!({
            "apps": [{
                "id": 1001,
                "public_key_pem": key.public_pem,
                "installations": [{ "id": 501, "account": "acme", "tokens": ["ghs_acme_first", "ghs_acme_second"] }],
            }],
            "repositories": repositories,
        })
    }

    fn bearer(jwt: &str) -> String {
        format!("Bearer {jwt}")
    }

    #[test]
    fn rejects_what_the_description_does_not_allow() {
        let w = World::new();
        let key = app_key(&w, "app");
        let api = GithubApi::start(&w, &scenario(&key, 1));
        let auth = bearer(&app_jwt(&key.pkcs8, 1001));
        let cases: [(&str, &str, Option<&[u8]>, &str); 5] = [
            (
                "GET",
                "/repos/acme/repo-0/mirror-source",
                None,
                "no path in the GitHub REST API matches",
            ),
            (
                "PUT",
                "/orgs/acme/installation",
                None,
                "PUT is not an operation of /orgs/{org}/installation",
            ),
            (
                "POST",
                "/app/installations/501/access_tokens",
                Some(br#"{"repositories":"repo-0"}"#),
                "request body/repositories must be array",
            ),
            (
                "GET",
                "/orgs/acme/repos?per_page=many",
                None,
                "query parameter per_page must be integer",
            ),
            (
                "GET",
                "/orgs/acme/repos?perpage=10",
                None,
                "query parameter perpage is not declared",
            ),
        ];
        for (method, path, body, reason) in cases {
            let r = api.request(method, path, &[("Authorization", &auth)], body);
            assert_eq!(r.status, 400, "{method} {path}: {r:?}");
            let message = r.body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(reason),
                "{method} {path}: {message:?} lacks {reason:?}"
            );
        }
        let violations = api.violations();
        assert_eq!(violations.len(), cases.len(), "{violations:#?}");
        for ((method, path, _, reason), v) in cases.iter().zip(&violations) {
            assert_eq!(
                (&v.method, v.path.as_str()),
                (
                    &method.to_string(),
                    path.split('?').next().unwrap_or_default()
                )
            );
            assert!(v.violations.iter().any(|s| s.contains(reason)), "{v:?}");
        }
        // And a request the description allows is no violation.
        let r = api.get("/orgs/acme/installation", Some(&auth));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(api.violations().len(), cases.len());
    }

    #[test]
    fn verifies_jwts_made_with_openssl_and_refuses_bad_ones() {
        let w = World::new();
        let key = app_key(&w, "app");
        let stranger = app_key(&w, "stranger");
        let api = GithubApi::start(&w, &scenario(&key, 2));
        let now = unix_now();

        // GitHub's own recipe, signed with either encoding of the key.
        for private in [&key.pkcs1, &key.pkcs8] {
            let pem = std::fs::read_to_string(private).expect("key");
            assert!(pem.starts_with(if private == &key.pkcs1 {
                "-----BEGIN RSA PRIVATE KEY-----"
            } else {
                "-----BEGIN PRIVATE KEY-----"
            }));
            let auth = bearer(&app_jwt(private, 1001));
            let r = api.get("/repos/acme/repo-1/installation", Some(&auth));
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.body["id"], 501);
            assert_eq!(r.body["account"]["login"], "acme");
            assert_eq!(r.body["app_id"], 1001);
        }

        let refused: [(&str, String, &str); 7] = [
            (
                "expired",
                jwt(
                    &key.pkcs8,
                    &json!({ "iss": 1001, "iat": now - 700, "exp": now - 100 }),
                ),
                "'Expiration time' claim ('exp') must be a numeric value representing the future",
            ),
            (
                "valid for more than 10 minutes",
                jwt(
                    &key.pkcs8,
                    &json!({ "iss": 1001, "iat": now - 60, "exp": now + 900 }),
                ),
                "'Expiration time' claim ('exp') is too far in the future",
            ),
            (
                "issued in the future",
                jwt(
                    &key.pkcs8,
                    &json!({ "iss": 1001, "iat": now + 120, "exp": now + 500 }),
                ),
                "'Issued at' claim ('iat') must be an Integer representing a time in the past",
            ),
            (
                "signed by another key",
                jwt(
                    &stranger.pkcs8,
                    &json!({ "iss": 1001, "iat": now - 60, "exp": now + 540 }),
                ),
                "A JSON web token could not be decoded",
            ),
            (
                "of an unknown app",
                jwt(
                    &key.pkcs8,
                    &json!({ "iss": 999, "iat": now - 60, "exp": now + 540 }),
                ),
                "Integration not found",
            ),
            (
                "tampered with",
                {
                    let good = app_jwt(&key.pkcs8, 1001);
                    let parts: Vec<&str> = good.split('.').collect();
                    let claims = base64url(
                        json!({ "iss": 1001, "iat": now - 60, "exp": now + 599 })
                            .to_string()
                            .as_bytes(),
                    );
                    format!("{}.{claims}.{}", parts[0], parts[2])
                },
                "A JSON web token could not be decoded",
            ),
            (
                "unsigned (alg none)",
                format!(
                    "{}.{}.",
                    base64url(br#"{"alg":"none","typ":"JWT"}"#),
                    base64url(
                        json!({ "iss": 1001, "iat": now - 60, "exp": now + 540 })
                            .to_string()
                            .as_bytes()
                    )
                ),
                "A JSON web token could not be decoded",
            ),
        ];
        for (what, token, message) in &refused {
            let r = api.get("/orgs/acme/installation", Some(&bearer(token)));
            assert_eq!(r.status, 401, "a JWT {what}: {r:?}");
            let said = r.body["message"].as_str().unwrap_or_default();
            assert!(said.starts_with(message), "a JWT {what}: {said:?}");
            assert!(
                r.body["documentation_url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("https://docs.github.com/")),
                "{r:?}"
            );
        }
        // The app itself and its installations, with `iss` the client id this time.
        let by_client_id = bearer(&jwt(
            &key.pkcs1,
            &json!({ "iss": "Iv1.0000000000001001", "iat": now - 60, "exp": now + 540 }),
        ));
        let r = api.get("/app", Some(&by_client_id));
        assert_eq!((r.status, &r.body["id"]), (200, &json!(1001)), "{r:?}");
        let r = api.get("/app/installations", Some(&by_client_id));
        assert_eq!((r.status, &r.body[0]["id"]), (200, &json!(501)), "{r:?}");
        assert_eq!(r.body.as_array().map(Vec::len), Some(1));
        assert_eq!(
            api.get("/app/installations/501", Some(&by_client_id))
                .status,
            200
        );
        assert_eq!(
            api.get("/app/installations/777", Some(&by_client_id))
                .status,
            404
        );

        // No JWT at all, or an installation token where a JWT is needed.
        assert_eq!(api.get("/orgs/acme/installation", None).status, 401);
        assert_eq!(
            api.get("/orgs/acme/installation", Some("token ghs_acme_first"))
                .status,
            401
        );

        // The JWT buys an installation token, through the Enterprise prefix too; the token
        // then reads what the installation covers, and nothing once it expired.
        let auth = bearer(&app_jwt(&key.pkcs8, 1001));
        let r = api.request(
            "POST",
            &format!(
                "{}/app/installations/501/access_tokens",
                api.enterprise_url().strip_prefix(&api.url()).expect("a prefix")
            ),
            &[("Authorization", &auth)],
            Some(br#"{"repositories":["repo-1"],"permissions":{"contents":"write","metadata":"read"}}"#),
        );
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["token"], "ghs_acme_first");
        assert_eq!(r.body["repository_selection"], "selected");
        assert_eq!(r.body["repositories"][0]["full_name"], "acme/repo-1");
        let token = "token ghs_acme_first";
        assert_eq!(
            api.get("/api/v3/repos/acme/repo-1", Some(token)).status,
            200
        );
        assert_eq!(
            api.get("/repos/acme/repo-0", Some(token)).status,
            404,
            "outside the token's repositories"
        );
        let props = api.get("/repos/acme/repo-1/properties/values", Some(token));
        assert_eq!(props.status, 200, "{props:?}");
        assert_eq!(
            props.body,
            json!([{ "property_name": "mirror-source", "value": "https://gitlab.example/acme/repo-1.git" }])
        );
        // The next token request gets the next token of the scenario.
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(
            (r.status, r.body["token"].as_str()),
            (201, Some("ghs_acme_second")),
            "{r:?}"
        );
        assert_eq!(
            api.get("/repos/acme/repo-0", Some("Bearer ghs_acme_second"))
                .status,
            200
        );
        assert_eq!(
            api.get("/repos/acme/repo-0", Some("token ghs_unknown"))
                .status,
            401
        );

        let tokens: Vec<_> = api
            .requests()
            .into_iter()
            .filter(|r| {
                r.route.as_deref() == Some("/app/installations/{installation_id}/access_tokens")
            })
            .collect();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].prefix, "/api/v3");
        assert_eq!(tokens[0].auth, "jwt");
        assert_eq!(tokens[0].app_id, Some(1001));
        assert_eq!(tokens[0].body["repositories"], json!(["repo-1"]));
        assert_eq!(tokens[0].raw["body"]["permissions"]["contents"], "write");
        assert_eq!(
            api.count("POST", "/app/installations/{installation_id}/access_tokens"),
            2
        );
        let reads = api
            .requests()
            .into_iter()
            .filter(|r| r.auth == "token" && r.status == 200)
            .collect::<Vec<_>>();
        assert_eq!(reads.len(), 3);
        assert!(
            reads
                .iter()
                .all(|r| r.installation_id == Some(501) && r.app_id == Some(1001)),
            "{reads:#?}"
        );
        api.assert_no_violations();
    }

    #[test]
    fn installation_tokens_expire_when_the_scenario_says() {
        let w = World::new();
        let key = app_key(&w, "app");
        let mut s = scenario(&key, 1);
        s["apps"][0]["installations"][0]["expires_in"] = json!(2);
        let api = GithubApi::start(&w, &s);
        let auth = bearer(&app_jwt(&key.pkcs1, 1001));
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let expires = r.body["expires_at"]
            .as_str()
            .expect("expires_at")
            .to_string();
        assert_eq!(
            api.get("/repos/acme/repo-0", Some("token ghs_acme_first"))
                .status,
            200
        );
        std::thread::sleep(Duration::from_millis(3100));
        let r = api.get("/repos/acme/repo-0", Some("token ghs_acme_first"));
        assert_eq!(
            (r.status, &r.body["message"]),
            (401, &json!("Bad credentials")),
            "after {expires}: {r:?}"
        );
        api.assert_no_violations();
    }

    #[test]
    fn lists_an_org_over_three_pages_with_link_headers() {
        let w = World::new();
        let key = app_key(&w, "app");
        let api = GithubApi::start(&w, &scenario(&key, 7));
        let auth = bearer(&app_jwt(&key.pkcs8, 1001));
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 201, "{r:?}");

        let mut next = Some(format!("{}/orgs/acme/repos?per_page=3", api.url()));
        let mut names = Vec::new();
        let mut links = Vec::new();
        while let Some(url) = next.take() {
            let path = url
                .strip_prefix(&api.url())
                .expect("a link to the same server")
                .to_string();
            let r = api.get(&path, Some("token ghs_acme_first"));
            assert_eq!(r.status, 200, "{path}: {r:?}");
            names.extend(
                r.body
                    .as_array()
                    .expect("an array")
                    .iter()
                    .map(|repo| repo["name"].as_str().unwrap_or_default().to_string()),
            );
            let link = r.header("link").unwrap_or_default().to_string();
            next = link
                .split(", ")
                .find(|l| l.ends_with("rel=\"next\""))
                .map(|l| l[1..l.find('>').expect("<url>")].to_string());
            links.push(link);
            assert!(links.len() <= 3, "more than three pages: {links:#?}");
        }
        assert_eq!(
            names,
            (0..7).map(|i| format!("repo-{i}")).collect::<Vec<_>>()
        );
        let pages: Vec<_> = api
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET")
            .map(|r| r.query)
            .collect();
        assert_eq!(
            pages,
            [
                json!({ "per_page": "3" }),
                json!({ "per_page": "3", "page": "2" }),
                json!({ "per_page": "3", "page": "3" }),
            ]
        );
        let base = format!("{}/orgs/acme/repos?per_page=3", api.url());
        assert_eq!(
            links,
            [
                format!("<{base}&page=2>; rel=\"next\", <{base}&page=3>; rel=\"last\""),
                format!("<{base}&page=1>; rel=\"prev\", <{base}&page=3>; rel=\"next\", <{base}&page=3>; rel=\"last\", <{base}&page=1>; rel=\"first\""),
                format!("<{base}&page=2>; rel=\"prev\", <{base}&page=1>; rel=\"first\""),
            ]
        );
        // The org's custom properties in one listing: it needs the organization permission.
        let r = api.get("/orgs/acme/properties/values", Some("token ghs_acme_first"));
        assert_eq!(r.status, 403, "{r:?}");
        let mut s = scenario(&key, 7);
        s["apps"][0]["installations"][0]["permissions"] = json!({ "metadata": "read", "contents": "write", "organization_custom_properties": "read" });
        s["repositories"][5]["properties"] = json!({});
        api.set_scenario(&s);
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let path = "/orgs/acme/properties/values?per_page=5&repository_query=props.mirror-source:https://gitlab.example/acme/repo-6.git";
        let r = api.get(path, Some("token ghs_acme_second"));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(
            r.body,
            json!([{
                "repository_id": 1006,
                "repository_name": "repo-6",
                "repository_full_name": "acme/repo-6",
                "properties": [{ "property_name": "mirror-source", "value": "https://gitlab.example/acme/repo-6.git" }],
            }])
        );
        let r = api.get(
            "/orgs/acme/properties/values?per_page=5&page=2",
            Some("token ghs_acme_second"),
        );
        let names: Vec<_> = r
            .body
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["repository_name"].clone(),
                    e["properties"].as_array().map(Vec::len),
                )
            })
            .collect();
        assert_eq!(
            names,
            [(json!("repo-5"), Some(0)), (json!("repo-6"), Some(1))]
        );
        assert!(
            r.header("link")
                .is_some_and(|l| l.contains("rel=\"prev\"") && !l.contains("rel=\"next\"")),
            "{r:?}"
        );

        // Without a token only public repositories show.
        let r = api.get("/orgs/globex/repos", None);
        assert_eq!(
            (r.status, r.body[0]["full_name"].as_str()),
            (200, Some("globex/open")),
            "{r:?}"
        );
        assert_eq!(api.get("/orgs/acme/repos", None).body, json!([]));
        assert_eq!(api.get("/orgs/nobody/repos", None).status, 404);
        api.assert_no_violations();
    }

    #[test]
    fn fault_switches_rate_limit_uninstall_and_revoke() {
        let w = World::new();
        let key = app_key(&w, "app");
        let mut s = scenario(&key, 1);
        s["faults"] = json!({ "rate_limit": { "routes": ["/repos/{owner}/{repo}/installation"], "times": 2, "reset_in": 30 } });
        let api = GithubApi::start(&w, &s);
        let auth = bearer(&app_jwt(&key.pkcs8, 1001));

        for _ in 0..2 {
            let r = api.get("/repos/acme/repo-0/installation", Some(&auth));
            assert_eq!(r.status, 403, "{r:?}");
            assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
            let reset: i64 = r
                .header("x-ratelimit-reset")
                .and_then(|v| v.parse().ok())
                .expect("X-RateLimit-Reset");
            assert!(
                (unix_now() + 25..=unix_now() + 31).contains(&reset),
                "reset {reset}"
            );
            assert!(
                r.body["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("API rate limit exceeded")),
                "{r:?}"
            );
        }
        let r = api.get("/repos/acme/repo-0/installation", Some(&auth));
        assert_eq!(r.status, 200, "after `times` the limit is lifted: {r:?}");
        assert_ne!(r.header("x-ratelimit-remaining"), Some("0"));
        // Other routes were never limited.
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 200);

        // Without `times`: limited until the reset, then no more.
        s["faults"] = json!({ "rate_limit": { "reset_in": 1 } });
        api.set_scenario(&s);
        let r = api.get("/orgs/acme/installation", Some(&auth));
        assert_eq!(r.status, 403, "{r:?}");
        let reset: i64 = r
            .header("x-ratelimit-reset")
            .and_then(|v| v.parse().ok())
            .expect("X-RateLimit-Reset");
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 403);
        while unix_now() < reset {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 200);
        // GitHub's secondary limit: Retry-After, the budget untouched.
        s["faults"] = json!({ "rate_limit": { "secondary": true, "reset_in": 20, "times": 1 } });
        api.set_scenario(&s);
        let r = api.get("/orgs/acme/installation", Some(&auth));
        assert_eq!(r.status, 403, "{r:?}");
        assert!(r.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("You have exceeded a secondary rate limit")));
        let retry: u64 = r
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!((19..=20).contains(&retry), "Retry-After: {retry}");
        assert_ne!(r.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 200);

        // Nothing installed on globex.
        let r = api.get("/orgs/globex/installation", Some(&auth));
        assert_eq!(
            (r.status, &r.body["message"]),
            (404, &json!("Not Found")),
            "{r:?}"
        );

        // The app uninstalled everywhere.
        s["apps"][0]["uninstalled"] = json!(true);
        s["faults"] = json!({});
        api.set_scenario(&s);
        assert_eq!(
            api.get("/repos/acme/repo-0/installation", Some(&auth))
                .status,
            404
        );
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &auth)],
            None,
        );
        assert_eq!(r.status, 404, "{r:?}");

        // Its key revoked: a JWT that was good a moment ago is refused.
        s["apps"][0]["uninstalled"] = json!(false);
        s["apps"][0]["revoked"] = json!(true);
        api.set_scenario(&s);
        let r = api.get("/orgs/acme/installation", Some(&auth));
        assert_eq!(
            (r.status, &r.body["message"]),
            (401, &json!("A JSON web token could not be decoded")),
            "{r:?}"
        );

        // An injected server error, once.
        s["apps"][0]["revoked"] = json!(false);
        s["faults"] = json!({ "errors": [{ "route": "GET /orgs/{org}/installation", "status": 502, "times": 1 }] });
        api.set_scenario(&s);
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 502);
        assert_eq!(api.get("/orgs/acme/installation", Some(&auth)).status, 200);
        api.assert_no_violations();
    }

    #[test]
    fn nginx_serves_git_only_to_the_owners_installation_token() {
        let w = World::new();
        let key = app_key(&w, "app");
        let mut s = scenario(&key, 1);
        s["apps"][0]["installations"] = json!([
            { "id": 501, "account": "acme", "token": "ghs_acme_token" },
            { "id": 502, "account": "globex", "token": "ghs_globex_token" },
        ]);
        let nginx = Nginx::start(&w);
        let base = github_git(&nginx, &s);
        let repo = github_repo(&w, "acme", "widget");
        let work = w.fixture("mirror.sh").join("upstream");
        let push = |password: &str| {
            let url = base.replacen("http://", &format!("http://x-access-token:{password}@"), 1);
            w.try_git(
                &work,
                &[
                    "push",
                    "-q",
                    &format!("{url}/acme/widget.git"),
                    "HEAD:refs/heads/main",
                ],
            )
        };
        let out = push("ghs_globex_token");
        assert!(!out.status.success(), "globex's token pushed to acme");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("401")
                || String::from_utf8_lossy(&out.stderr).contains("Authentication failed"),
            "{out:?}"
        );
        assert!(w
            .try_git(&repo, &["rev-parse", "-q", "--verify", "refs/heads/main"])
            .stdout
            .is_empty());
        let out = push("ghs_acme_token");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(w.rev(&repo, "refs/heads/main"), w.rev(&work, "HEAD"));
        w.assert_fsck(&repo);
        // A new token replaces the old one.
        nginx.set_github_token("acme", "ghs_acme_renewed");
        assert!(!push("ghs_acme_token").status.success());
        assert!(push("ghs_acme_renewed").status.success());
    }

    #[test]
    fn a_request_without_user_agent_is_a_violation() {
        let w = World::new();
        let key = app_key(&w, "app");
        let api = GithubApi::start(&w, &scenario(&key, 0));
        let mut stream = TcpStream::connect(("127.0.0.1", api.server.port)).expect("connect");
        stream
            .write_all(b"GET /orgs/globex/repos HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read");
        assert_eq!(parse_response(&answer).status, 400);
        let r = api.get("/orgs/globex/repos", None);
        assert_eq!(r.status, 200, "{r:?}");
        let requests = api.requests();
        assert_eq!(requests[1].raw["headers"]["user_agent"], "kalandra-it");
        let violations = api.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(violations[0].violations[0].starts_with("no User-Agent header"));
    }

    #[test]
    fn creates_repositories_and_moves_head_in_the_real_git_repositories() {
        let w = World::new();
        let key = app_key(&w, "app");
        let mut s = scenario(&key, 1);
        s["apps"][0]["installations"][0]["permissions"] =
            json!({ "metadata": "read", "contents": "write", "administration": "write" });
        let nginx = Nginx::start(&w);
        let base = with_github_git(&w, &nginx, &mut s);
        let api = GithubApi::start(&w, &s);
        let jwt = bearer(&app_jwt(&key.pkcs8, 1001));
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &jwt)],
            None,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let token = "token ghs_acme_first";

        let create = |body: &[u8]| {
            api.request(
                "POST",
                "/orgs/acme/repos",
                &[("Authorization", token)],
                Some(body),
            )
        };
        let r = create(br#"{"name":"fresh","private":true,"description":"a mirror"}"#);
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["full_name"], "acme/fresh");
        assert_eq!(r.body["private"], true);
        let clone_url = r.body["clone_url"].as_str().expect("clone_url").to_string();
        assert_eq!(clone_url, format!("{base}/acme/fresh.git"));
        let bare = w.root().join("github/acme/fresh.git");
        assert_eq!(
            w.git(&bare, &["rev-parse", "--is-bare-repository"]).trim(),
            "true"
        );
        // Taken: 422 as GitHub answers it; a body the description does not allow: 400.
        let r = create(br#"{"name":"fresh"}"#);
        assert_eq!(
            (r.status, &r.body["errors"][0]["field"]),
            (422, &json!("name")),
            "{r:?}"
        );
        let r = create(br#"{"private":"yes"}"#);
        assert_eq!(r.status, 400, "{r:?}");

        // Push two branches through nginx with the token, then make develop the HEAD.
        let work = w.fixture("mirror.sh").join("upstream");
        let url = clone_url.replacen("http://", "http://x-access-token:ghs_acme_first@", 1);
        let out = w.try_git(
            &work,
            &[
                "push",
                "-q",
                &url,
                "refs/heads/main:refs/heads/main",
                "refs/heads/develop:refs/heads/develop",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let patch = |body: &[u8]| {
            api.request(
                "PATCH",
                "/repos/acme/fresh",
                &[("Authorization", token)],
                Some(body),
            )
        };
        let r = patch(br#"{"default_branch":"develop"}"#);
        assert_eq!(
            (r.status, &r.body["default_branch"]),
            (200, &json!("develop")),
            "{r:?}"
        );
        assert_eq!(
            w.git(&bare, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/develop"
        );
        let r = patch(br#"{"default_branch":"no-such-branch"}"#);
        assert_eq!(r.status, 422, "{r:?}");
        assert_eq!(
            w.git(&bare, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/develop"
        );
        let r = api.get("/repos/acme/fresh", Some(token));
        assert_eq!(r.body["default_branch"], "develop");

        // A token without `administration: write` may not.
        let r = api.request(
            "POST",
            "/app/installations/501/access_tokens",
            &[("Authorization", &jwt)],
            Some(br#"{"permissions":{"contents":"write"}}"#),
        );
        assert_eq!(r.status, 201, "{r:?}");
        let weak = "token ghs_acme_second";
        let r = api.request(
            "PATCH",
            "/repos/acme/fresh",
            &[("Authorization", weak)],
            Some(br#"{"default_branch":"main"}"#),
        );
        assert_eq!(
            (r.status, &r.body["message"]),
            (403, &json!("Resource not accessible by integration")),
            "{r:?}"
        );
        let violations = api.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(
            violations[0].violations[0].contains("must have required property 'name'"),
            "{violations:#?}"
        );
    }

    #[test]
    fn serves_the_api_beside_the_git_data_over_tls_like_enterprise_server() {
        let w = World::new();
        let key = app_key(&w, "app");
        let api = GithubApi::start(&w, &scenario(&key, 4));
        api.behind_nginx(&w);
        let nginx = Nginx::start(&w);
        let jwt = bearer(&app_jwt(&key.pkcs8, 1001));
        let r = https_request(
            nginx.tls_port,
            &nginx.ca,
            "GET",
            "/api/v3/orgs/acme/installation",
            &[("Authorization", &jwt)],
        );
        assert_eq!((r.status, &r.body["id"]), (200, &json!(501)), "{r:?}");
        let tokens = format!(
            "https://127.0.0.1:{}/api/v3/app/installations/501/access_tokens",
            nginx.tls_port
        );
        assert_eq!(r.body["access_tokens_url"], json!(tokens));
        let r = http_request(
            nginx.port,
            "POST",
            "/api/v3/app/installations/501/access_tokens",
            &[("Authorization", &jwt)],
            None,
        );
        assert_eq!(r.status, 201, "{r:?}");
        let r = https_request(
            nginx.tls_port,
            &nginx.ca,
            "GET",
            "/api/v3/orgs/acme/repos?per_page=2",
            &[("Authorization", "token ghs_acme_first")],
        );
        assert_eq!(r.status, 200, "{r:?}");
        let base = format!(
            "https://127.0.0.1:{}/api/v3/orgs/acme/repos?per_page=2",
            nginx.tls_port
        );
        assert_eq!(
            r.header("link"),
            Some(format!("<{base}&page=2>; rel=\"next\", <{base}&page=2>; rel=\"last\"").as_str())
        );
        let requests = api.requests();
        assert_eq!(requests.len(), 3);
        assert!(
            requests.iter().all(|r| r.prefix == "/api/v3"),
            "{requests:#?}"
        );
        api.assert_no_violations();
    }

    #[test]
    fn an_answer_outside_the_description_is_a_violation_too() {
        let w = World::new();
        let key = app_key(&w, "app");
        let mut s = scenario(&key, 1);
        // A custom property value is a string, a list of strings or null: not a number.
        s["repositories"][0]["properties"] = json!({ "mirror-source": 42 });
        let api = GithubApi::start(&w, &s);
        let r = api.get("/repos/globex/open/properties/values", None);
        assert_eq!(r.status, 200, "{r:?}");
        api.assert_no_violations();
        s["repositories"][1]["properties"] = json!({ "mirror-source": 42 });
        api.set_scenario(&s);
        api.get("/repos/globex/open/properties/values", None);
        let violations = api.violations();
        assert_eq!(violations.len(), 1, "{violations:#?}");
        assert!(
            violations[0].violations[0]
                .starts_with("the contract server's own answer: response 200 body/0/value"),
            "{violations:#?}"
        );
    }
}
