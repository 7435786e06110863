//! A local GitLab REST API (v4) for contract tests: `tests/forge/gitlab.js` (node), started per
//! test on 127.0.0.1 and a free port.
//!
//! GitLab publishes no OpenAPI description that a package registry serves, so the server checks
//! every request against `tests/forge/gitlab-api.json`, a description written by hand from
//! GitLab's documentation of the operations Kalandra uses (see `tests/forge/README.md`): a
//! request it does not allow is answered 400 and recorded as a contract violation
//! ([`GitlabApi::violations`]); so is an answer of the server's own that breaks it. The answers
//! come from a *scenario* (groups, projects, tokens, memberships, faults). Every request lands
//! in a JSON lines log ([`GitlabApi::requests`]).
//!
//! The git data goes through the real nginx + http-backend: [`with_gitlab_git`] points the
//! scenario at the `/gitlab/...` location of [`Nginx`] (basic auth with one of the scenario's
//! tokens as the password), and [`GitlabApi::behind_nginx`] serves the API beside it at
//! `/api/v4/`, as a GitLab instance does.
//!
//! If node or the npm packages are missing, or the server cannot start, the test fails with
//! the reason (tests/run.sh installs node and runs `npm ci`). Dropping the [`GitlabApi`] ends
//! the server; so does the end of the test process, because the server exits when its
//! standard input closes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::github_api::{http_request, ApiResponse};
use crate::harness::World;
use crate::nginx::Nginx;
use crate::node_server::NodeServer;

pub struct GitlabApi {
    server: NodeServer,
}

/// One request the server received, from its log.
#[derive(Debug, Clone)]
pub struct GitlabRequest {
    pub method: String,
    /// The path as sent (still percent-encoded: `/api/v4/groups/platform%2Ftools/projects`).
    pub path: String,
    /// The description's path template (`/api/v4/groups/{id}/projects`), if any matched.
    pub route: Option<String>,
    pub query: Value,
    /// The JSON body, `null` if none.
    pub body: Value,
    /// `none`, `private-token`, `bearer`, `basic` or `invalid`: how the request authenticated.
    pub auth: String,
    /// `personal`, `project` or `group`, once the token is verified.
    pub token_kind: Option<String>,
    /// The token's user (a bot's for project and group tokens), once verified.
    pub user: Option<String>,
    pub status: u16,
    /// Why the request (or the server's own answer) broke the contract; empty if it did not.
    pub violations: Vec<String>,
    /// A request to an operation the description does not have (answered 404).
    pub unimplemented: bool,
    /// The whole log entry.
    pub raw: Value,
}

impl GitlabApi {
    /// Starts the server with `scenario` (see `tests/forge/README.md`).
    pub fn start(w: &World, scenario: &Value) -> Self {
        GitlabApi {
            server: NodeServer::start(
                w,
                "gitlab.js",
                "ajv/package.json",
                "gitlab-api",
                "the GitLab API server",
                scenario,
            ),
        }
    }

    /// `http://127.0.0.1:PORT`: the instance's base URL; the API is at `/api/v4`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port)
    }

    /// `http://127.0.0.1:PORT/api/v4`.
    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.url())
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<GitlabRequest> {
        self.server
            .log_entries()
            .into_iter()
            .map(|raw| {
                let s = |k: &str| raw[k].as_str().unwrap_or_default().to_string();
                let opt = |v: &Value| v.as_str().map(str::to_string);
                GitlabRequest {
                    method: s("method"),
                    path: s("path"),
                    route: opt(&raw["route"]),
                    query: raw["query"].clone(),
                    body: raw["body"].clone(),
                    auth: raw["auth"]["kind"].as_str().unwrap_or("none").to_string(),
                    token_kind: opt(&raw["auth"]["token_kind"]),
                    user: opt(&raw["auth"]["user"]),
                    status: raw["status"].as_u64().unwrap_or(0) as u16,
                    violations: raw["violations"]
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                    unimplemented: raw["unimplemented"].as_bool().unwrap_or(false),
                    raw,
                }
            })
            .collect()
    }

    /// The requests that broke the contract (or whose answer did), with the reasons.
    pub fn violations(&self) -> Vec<GitlabRequest> {
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
            "requests outside the GitLab API description (tests/forge/gitlab-api.json):\n{}",
            v.iter()
                .map(|r| format!("  {} {}: {}", r.method, r.path, r.violations.join("; ")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// How many requests went to `method` `route` (a path template of the description, e.g.
    /// `/api/v4/groups/{id}/projects`).
    pub fn count(&self, method: &str, route: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.route.as_deref() == Some(route))
            .count()
    }

    /// Replaces the scenario of the running server (projects created through the API are
    /// forgotten, fault counters start again).
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

    /// `GET path` with `PRIVATE-TOKEN: token`, or anonymous.
    pub fn get(&self, path: &str, token: Option<&str>) -> ApiResponse {
        let auth = token.map(|t| ("PRIVATE-TOKEN", t));
        self.request("GET", path, auth.as_slice(), None)
    }

    /// Puts the API behind `nginx` too, at `/api/v4/` on each of its ports, beside the git data
    /// as a GitLab instance serves it (`X-Forwarded-Proto` makes the URLs in answers https
    /// over TLS). nginx reloads its configuration; this returns once the new one serves.
    pub fn behind_nginx(&self, nginx: &Nginx) {
        let probe = format!("/_kalandra/gitlab-api-{}", self.server.port);
        std::fs::write(
            nginx.conf_dir().join("gitlab-api.conf"),
            format!(
                "    location ^~ /api/v4/ {{
      proxy_pass http://127.0.0.1:{port};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_http_version 1.1;
    }}
    location = {probe} {{ return 204; }}
",
                port = self.server.port
            ),
        )
        .expect("can write the nginx proxy configuration");
        nginx.reload();
        // The old workers may answer a little longer: wait until a few answers in a row come
        // from the new configuration.
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
                "nginx did not take the GitLab API proxy within 15 s:\n{}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Makes the scenario's projects live on `nginx`: `git_root` (`<world root>/gitlab`, where the
/// server creates bare repositories and moves HEAD) and `clone_url_base` (its `/gitlab/`
/// location), and lets the scenario's tokens that GitLab would let use git over HTTP (scope
/// `api`, `read_repository` or `write_repository`, not revoked) fetch and push there. Returns
/// the base URL, `http://127.0.0.1:PORT/gitlab`.
pub fn with_gitlab_git(w: &World, nginx: &Nginx, scenario: &mut Value) -> String {
    let base = format!("http://127.0.0.1:{}/gitlab", nginx.port);
    scenario["git_root"] = json!(w.root().join("gitlab"));
    scenario["clone_url_base"] = json!(base);
    let git_scopes = ["api", "read_repository", "write_repository"];
    let tokens: Vec<&str> = scenario["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| !t["revoked"].as_bool().unwrap_or(false))
        .filter(|t| match t["scopes"].as_array() {
            None => true, // the server's default: ["api"]
            Some(s) => s
                .iter()
                .any(|s| git_scopes.contains(&s.as_str().unwrap_or(""))),
        })
        .filter_map(|t| t["token"].as_str())
        .collect();
    nginx.set_gitlab_tokens(&tokens);
    base
}

/// A bare repository `<world root>/gitlab/<namespace>/<path>.git`, served under `/gitlab/`.
pub fn gitlab_repo(w: &World, namespace: &str, path: &str) -> PathBuf {
    let dir = w
        .root()
        .join("gitlab")
        .join(namespace)
        .join(format!("{path}.git"));
    std::fs::create_dir_all(&dir).expect("can create the repository directory");
    w.git(&dir, &["init", "--bare", "-q"]);
    dir
}

// ---------------------------------------------------------------------------------------------
// Self-tests: the server holds the contract it claims to.

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "glpat-mirror-bot-api";
    const READ_TOKEN: &str = "glpat-mirror-bot-read";

    /// `platform` (private) with `platform/tools`; `projects` private projects in `platform`,
    /// one in `platform/tools`, one public in `platform`, one of `other` shared into
    /// `platform`; `mirror-bot` (a member of `platform`) with an `api` and a `read_api` token.
    fn scenario(projects: usize) -> Value {
        let mut list: Vec<Value> = (0..projects)
            .map(|i| json!({ "id": 200 + i, "namespace": "platform", "path": format!("repo-{i}") }))
            .collect();
        list.push(
            json!({ "id": 300, "namespace": "platform/tools", "path": "cli", "name": "CLI" }),
        );
        list.push(
            json!({ "id": 301, "namespace": "platform", "path": "site", "visibility": "public" }),
        );
        list.push(
            json!({ "id": 302, "namespace": "other", "path": "lib", "shared_into": ["platform"] }),
        );
        json!({
            "groups": [
                { "id": 10, "full_path": "platform", "visibility": "private" },
                { "id": 11, "full_path": "platform/tools", "visibility": "private" },
                { "id": 12, "full_path": "other", "visibility": "private" },
            ],
            "projects": list,
            "tokens": [
                { "token": TOKEN, "kind": "personal", "user": "mirror-bot", "scopes": ["api"] },
                { "token": READ_TOKEN, "kind": "personal", "user": "mirror-bot", "scopes": ["read_api"] },
                { "token": "glpat-revoked", "kind": "personal", "user": "mirror-bot", "revoked": true },
                { "token": "glpat-group-tools", "kind": "group", "group": "platform/tools", "scopes": ["api"] },
                { "token": "glpat-project-site", "kind": "project", "project": "platform/site", "scopes": ["read_api"] },
            ],
            "members": { "mirror-bot": ["platform"] },
        })
    }

    fn paths(r: &ApiResponse) -> Vec<String> {
        r.body
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {r:?}"))
            .iter()
            .map(|p| {
                p["path_with_namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn lists_a_group_in_pages_with_gitlabs_headers() {
        let w = World::new();
        // platform: repo-0..repo-3, site, and lib shared in: 6 projects, 3 pages of 2.
        let api = GitlabApi::start(&w, &scenario(4));
        let first = "/api/v4/groups/platform/projects?per_page=2";
        let base = format!("{}/groups/platform/projects", api.api_url());
        // Sorted by name, as GitLab writes them.
        let link = |page: u32| format!("<{base}?page={page}&per_page=2>");
        let mut seen = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            pages += 1;
            let r = api.get(&path, Some(TOKEN));
            assert_eq!(r.status, 200, "{r:?}");
            let h = |n: &str| {
                r.header(n)
                    .unwrap_or_else(|| panic!("no {n}: {r:?}"))
                    .to_string()
            };
            assert_eq!(h("x-page"), pages.to_string());
            assert_eq!(h("x-per-page"), "2");
            assert_eq!(h("x-total"), "6");
            assert_eq!(h("x-total-pages"), "3");
            assert_eq!(
                h("x-prev-page"),
                if pages == 1 {
                    String::new()
                } else {
                    (pages - 1).to_string()
                }
            );
            let mut rels = Vec::new();
            if pages > 1 {
                rels.push(format!("{}; rel=\"prev\"", link(pages - 1)));
            }
            if pages < 3 {
                rels.push(format!("{}; rel=\"next\"", link(pages + 1)));
            }
            rels.push(format!("{}; rel=\"first\"", link(1)));
            rels.push(format!("{}; rel=\"last\"", link(3)));
            assert_eq!(h("link"), rels.join(", "));
            seen.extend(paths(&r));
            let n = h("x-next-page");
            if !n.is_empty() {
                next = Some(format!("{first}&page={n}"));
            }
        }
        assert_eq!(pages, 3);
        // GitLab's default order: created_at, newest first (here: the scenario's order).
        assert_eq!(
            seen,
            [
                "other/lib",
                "platform/site",
                "platform/repo-3",
                "platform/repo-2",
                "platform/repo-1",
                "platform/repo-0"
            ]
        );
        // Subgroups only when asked; shared projects unless with_shared=false; order and sort.
        let r = api.get(
            "/api/v4/groups/10/projects?include_subgroups=true&with_shared=false&order_by=path&sort=asc&per_page=100",
            Some(TOKEN),
        );
        assert_eq!(
            paths(&r),
            [
                "platform/tools/cli",
                "platform/repo-0",
                "platform/repo-1",
                "platform/repo-2",
                "platform/repo-3",
                "platform/site"
            ]
        );
        let r = api.get("/api/v4/groups/platform%2Ftools/projects", Some(TOKEN));
        assert_eq!(paths(&r), ["platform/tools/cli"]);
        assert_eq!(r.body[0]["namespace"]["full_path"], "platform/tools");
        assert_eq!(r.body[0]["visibility"], "private");
        // simple=true: the limited fields, no visibility or archived.
        let r = api.get(
            "/api/v4/groups/platform%2Ftools/projects?simple=true",
            Some(TOKEN),
        );
        assert!(r.body[0].get("archived").is_none(), "{r:?}");
        api.assert_no_violations();
        assert_eq!(api.count("GET", "/api/v4/groups/{id}/projects"), 6);
        let logged = &api.requests()[0];
        assert_eq!(
            (logged.status, &logged.query, logged.token_kind.as_deref()),
            (200, &json!({ "per_page": "2" }), Some("personal"))
        );
        assert!(api
            .requests()
            .iter()
            .all(|r| r.auth == "private-token" && r.user.as_deref() == Some("mirror-bot")));
    }

    #[test]
    fn a_request_outside_the_description_is_a_violation() {
        let w = World::new();
        let api = GitlabApi::start(&w, &scenario(1));
        // GitHub's parameter, not GitLab's: undeclared.
        let r = api.get("/api/v4/groups/platform/projects?type=all", Some(TOKEN));
        assert_eq!(r.status, 400, "{r:?}");
        // Beyond the declared maximum; a boolean that is none; a full path not encoded.
        assert_eq!(
            api.get("/api/v4/groups/platform/projects?per_page=500", Some(TOKEN))
                .status,
            400
        );
        assert_eq!(
            api.get(
                "/api/v4/groups/platform/projects?archived=maybe",
                Some(TOKEN)
            )
            .status,
            400
        );
        assert_eq!(
            api.get("/api/v4/groups/platform/tools/projects", Some(TOKEN))
                .status,
            400
        );
        assert_eq!(
            api.get("/api/v4/projects/platform/repo-0", Some(TOKEN))
                .status,
            400
        );
        // A body the description does not allow: neither name nor path; a string id.
        let post = |body: &str| {
            api.request(
                "POST",
                "/api/v4/projects",
                &[("PRIVATE-TOKEN", TOKEN)],
                Some(body.as_bytes()),
            )
        };
        assert_eq!(post(r#"{"namespace_id":10}"#).status, 400);
        assert_eq!(
            post(r#"{"name":"x","namespace_id":"platform"}"#).status,
            400
        );
        let violations = api.violations();
        assert_eq!(violations.len(), 7, "{violations:#?}");
        assert!(
            violations[0].violations[0].contains("query parameter type is not declared"),
            "{violations:#?}"
        );
        assert!(
            violations[3].violations[0].contains("URL-encoded"),
            "{violations:#?}"
        );
        assert!(
            violations[4].violations[0].contains("URL-encoded"),
            "{violations:#?}"
        );
        // An operation GitLab has but the description does not: 404, not a violation.
        let r = api.get("/api/v4/version", Some(TOKEN));
        assert_eq!(r.status, 404);
        let last = api.requests().pop().expect("logged");
        assert!(last.unimplemented && last.violations.is_empty(), "{last:?}");
        // Nor is a sub-resource of a described path (an id, then more than the description has).
        for path in [
            "/api/v4/projects/200/repository/branches",
            "/api/v4/projects/platform%2Frepo-0/hooks",
        ] {
            assert_eq!(api.get(path, Some(TOKEN)).status, 404, "{path}");
            let last = api.requests().pop().expect("logged");
            assert!(last.unimplemented && last.violations.is_empty(), "{last:?}");
        }
        // The User-Agent is recorded (GitLab requires none, so its absence is no violation).
        assert_eq!(
            api.requests()[0].raw["headers"]["user_agent"],
            "kalandra-it"
        );
    }

    #[test]
    fn tokens_are_checked_and_see_what_gitlab_lets_them() {
        let w = World::new();
        let api = GitlabApi::start(&w, &scenario(1));
        let project = "/api/v4/projects/platform%2Frepo-0";
        for bad in ["glpat-unknown", "glpat-revoked"] {
            let r = api.get(project, Some(bad));
            assert_eq!(
                (r.status, &r.body),
                (401, &json!({ "message": "401 Unauthorized" })),
                "{bad}"
            );
        }
        let r = api.request(
            "GET",
            project,
            &[("Authorization", "Bearer glpat-unknown")],
            None,
        );
        assert_eq!(r.status, 401);
        let r = api.request(
            "GET",
            project,
            &[("Authorization", &format!("Bearer {TOKEN}"))],
            None,
        );
        assert_eq!((r.status, &r.body["id"]), (200, &json!(200)), "{r:?}");
        // Anonymous: public projects only; the private group is not found.
        let r = api.get(project, None);
        assert_eq!(
            (r.status, &r.body),
            (404, &json!({ "message": "404 Project Not Found" }))
        );
        assert_eq!(api.get("/api/v4/projects/301", None).status, 200);
        let r = api.get("/api/v4/groups/platform/projects", None);
        assert_eq!(
            (r.status, &r.body),
            (404, &json!({ "message": "404 Group Not Found" }))
        );
        // A group token sees its group's tree; a project token its project (and public ones).
        let r = api.get(
            "/api/v4/groups/platform%2Ftools/projects",
            Some("glpat-group-tools"),
        );
        assert_eq!(paths(&r), ["platform/tools/cli"]);
        assert_eq!(api.get(project, Some("glpat-group-tools")).status, 404);
        assert_eq!(api.get(project, Some("glpat-project-site")).status, 404);
        assert_eq!(
            api.get(
                "/api/v4/projects/platform%2Fsite",
                Some("glpat-project-site")
            )
            .status,
            200
        );
        // Namespaces by full path or id, for members.
        let r = api.get("/api/v4/namespaces/platform%2Ftools", Some(TOKEN));
        assert_eq!(
            r.body,
            json!({
                "id": 11, "name": "tools", "path": "tools", "kind": "group",
                "full_path": "platform/tools", "parent_id": 10,
                "web_url": format!("{}/groups/platform/tools", api.url()),
            })
        );
        let r = api.get("/api/v4/namespaces/12", Some(TOKEN));
        assert_eq!(
            (r.status, &r.body),
            (404, &json!({ "message": "404 Namespace Not Found" }))
        );
        assert_eq!(api.get("/api/v4/namespaces/10", None).status, 401);
        // A read_api token may read, not write.
        assert_eq!(api.get(project, Some(READ_TOKEN)).status, 200);
        let r = api.request(
            "PUT",
            project,
            &[("PRIVATE-TOKEN", READ_TOKEN)],
            Some(br#"{"description":"x"}"#),
        );
        assert_eq!(
            (r.status, &r.body["error"]),
            (403, &json!("insufficient_scope")),
            "{r:?}"
        );
        let kinds: Vec<_> = api.requests().iter().map(|r| r.auth.clone()).collect();
        assert!(kinds.contains(&"bearer".to_string()) && kinds.contains(&"none".to_string()));
        api.assert_no_violations();
    }

    #[test]
    fn creates_projects_and_moves_head_in_the_real_git_repositories() {
        let w = World::new();
        let mut s = scenario(1);
        let nginx = Nginx::start(&w);
        let base = with_gitlab_git(&w, &nginx, &mut s);
        // A scenario project whose repository is there but empty.
        gitlab_repo(&w, "platform", "repo-0");
        let api = GitlabApi::start(&w, &s);
        api.behind_nginx(&nginx);
        // Through nginx, as a client of a GitLab instance talks to it.
        let call = |method: &str, path: &str, token: &str, body: &str| {
            let body = (!body.is_empty()).then_some(body.as_bytes());
            http_request(nginx.port, method, path, &[("PRIVATE-TOKEN", token)], body)
        };
        let r = call(
            "POST",
            "/api/v4/projects",
            TOKEN,
            r#"{"path":"fresh","namespace_id":10,"description":"a mirror"}"#,
        );
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["path_with_namespace"], "platform/fresh");
        assert_eq!(
            (&r.body["empty_repo"], &r.body["default_branch"]),
            (&json!(true), &json!(null))
        );
        let clone_url = r.body["http_url_to_repo"]
            .as_str()
            .expect("http_url_to_repo")
            .to_string();
        assert_eq!(clone_url, format!("{base}/platform/fresh.git"));
        assert_eq!(
            r.body["web_url"],
            json!(format!("http://127.0.0.1:{}/platform/fresh", nginx.port))
        );
        let bare = w.root().join("gitlab/platform/fresh.git");
        assert_eq!(
            w.git(&bare, &["rev-parse", "--is-bare-repository"]).trim(),
            "true"
        );
        // Taken: 400 naming path and name, as GitLab does.
        let r = call(
            "POST",
            "/api/v4/projects",
            TOKEN,
            r#"{"path":"fresh","namespace_id":10}"#,
        );
        assert_eq!(
            (r.status, &r.body),
            (
                400,
                &json!({ "message": { "path": ["has already been taken"], "name": ["has already been taken"] } })
            )
        );
        // Not a member of `other`: not found; a read_api token may not create.
        assert_eq!(
            call(
                "POST",
                "/api/v4/projects",
                TOKEN,
                r#"{"path":"x","namespace_id":12}"#
            )
            .status,
            404
        );
        assert_eq!(
            call(
                "POST",
                "/api/v4/projects",
                READ_TOKEN,
                r#"{"path":"x","namespace_id":10}"#
            )
            .status,
            403
        );

        // git through nginx with the token as password: empty, then two branches pushed.
        let with = |user: &str, token: &str| {
            clone_url.replacen("http://", &format!("http://{user}:{token}@"), 1)
        };
        let out = w.try_git(w.root(), &["ls-remote", &with("oauth2", TOKEN)]);
        assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
        let out = w.try_git(w.root(), &["ls-remote", &with("oauth2", "glpat-unknown")]);
        assert!(!out.status.success(), "an unknown token fetched: {out:?}");
        let work = w.fixture("mirror.sh").join("upstream");
        let out = w.try_git(
            &work,
            &[
                "push",
                "-q",
                &with("x-access-token", TOKEN),
                "refs/heads/main:refs/heads/main",
                "refs/heads/develop:refs/heads/develop",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let heads = w.git(w.root(), &["ls-remote", "--heads", &with("oauth2", TOKEN)]);
        assert_eq!(heads.lines().count(), 2, "{heads}");
        // The first push made main the default branch, as on GitLab.
        let r = call("GET", "/api/v4/projects/platform%2Ffresh", TOKEN, "");
        assert_eq!(
            (&r.body["empty_repo"], &r.body["default_branch"]),
            (&json!(false), &json!("main")),
            "{r:?}"
        );

        let put =
            |token: &str, body: &str| call("PUT", "/api/v4/projects/platform%2Ffresh", token, body);
        let r = put(TOKEN, r#"{"default_branch":"develop"}"#);
        assert_eq!(
            (r.status, &r.body["default_branch"]),
            (200, &json!("develop")),
            "{r:?}"
        );
        assert_eq!(
            w.git(&bare, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/develop"
        );
        let r = put(TOKEN, r#"{"default_branch":"no-such-branch"}"#);
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body["message"].is_string(), "{r:?}");
        assert_eq!(
            w.git(&bare, &["symbolic-ref", "HEAD"]).trim(),
            "refs/heads/develop"
        );
        let r = put(READ_TOKEN, r#"{"default_branch":"main"}"#);
        assert_eq!(
            (r.status, &r.body["error"]),
            (403, &json!("insufficient_scope")),
            "{r:?}"
        );

        // initialize_with_readme: a first commit on main, visible through nginx.
        let r = call(
            "POST",
            "/api/v4/projects",
            TOKEN,
            r#"{"name":"With Readme","namespace_id":11,"initialize_with_readme":true}"#,
        );
        assert_eq!(
            (r.status, &r.body["path"], &r.body["default_branch"]),
            (201, &json!("with-readme"), &json!("main")),
            "{r:?}"
        );
        let url = r.body["http_url_to_repo"].as_str().expect("url").replacen(
            "http://",
            &format!("http://oauth2:{TOKEN}@"),
            1,
        );
        let heads = w.git(w.root(), &["ls-remote", &url]);
        assert!(heads.contains("refs/heads/main"), "{heads}");
        let r = call("GET", "/api/v4/projects/200", TOKEN, "");
        assert_eq!(
            (&r.body["empty_repo"], &r.body["default_branch"]),
            (&json!(true), &json!(null)),
            "{r:?}"
        );
        let created = api
            .requests()
            .into_iter()
            .find(|r| r.status == 201)
            .expect("logged");
        assert_eq!(created.body["path"], "fresh");
        api.assert_no_violations();
        assert!(api
            .requests()
            .iter()
            .all(|r| r.raw["path"].as_str().unwrap_or("").starts_with("/api/v4/")));
    }

    #[test]
    fn faults_answer_as_gitlab_does() {
        let w = World::new();
        let mut s = scenario(1);
        s["faults"] = json!({
            "rate_limit": { "routes": ["GET /groups/{id}/projects"], "after": 1, "times": 1, "reset_in": 30 },
            "errors": [{ "route": "/projects/{id}", "status": 502, "times": 1 }],
        });
        let api = GitlabApi::start(&w, &s);
        let list = "/api/v4/groups/platform/projects";
        assert_eq!(api.get(list, Some(TOKEN)).status, 200);
        let r = api.get(list, Some(TOKEN));
        assert_eq!(r.status, 429, "{r:?}");
        let retry: u64 = r
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((29..=30).contains(&retry), "{r:?}");
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
        assert!(r.header("ratelimit-reset").is_some() && r.header("ratelimit-resettime").is_some());
        assert_eq!(api.get(list, Some(TOKEN)).status, 200);
        assert_eq!(api.get("/api/v4/projects/200", Some(TOKEN)).status, 502);
        assert_eq!(api.get("/api/v4/projects/200", Some(TOKEN)).status, 200);
        api.assert_no_violations();
        // A new scenario starts the counters again.
        api.set_scenario(&s);
        assert_eq!(api.get("/api/v4/projects/200", Some(TOKEN)).status, 502);
    }

    #[test]
    fn nginx_serves_gitlab_git_only_to_the_tokens_set() {
        let w = World::new();
        let nginx = Nginx::start(&w);
        gitlab_repo(&w, "platform", "api");
        let url = |user: &str, token: &str| {
            nginx.url("gitlab", "platform/api.git").replacen(
                "http://",
                &format!("http://{user}:{token}@"),
                1,
            )
        };
        let fetch = |user: &str, token: &str| {
            w.try_git(w.root(), &["ls-remote", &url(user, token)])
                .status
                .success()
        };
        // Nothing set yet: refused.
        assert!(!fetch("oauth2", TOKEN));
        let mut s = scenario(0);
        with_gitlab_git(&w, &nginx, &mut s);
        // Any user name, as GitLab takes with an access token.
        for user in ["oauth2", "x-access-token", "mirror-bot", "anything"] {
            assert!(fetch(user, TOKEN), "{user}");
        }
        // A group token (scope api) too; read_api and revoked tokens are no git credentials.
        assert!(fetch("oauth2", "glpat-group-tools"));
        for token in [READ_TOKEN, "glpat-revoked", "glpat-project-site"] {
            assert!(!fetch("oauth2", token), "{token}");
        }
        assert!(!fetch("oauth2", ""));
        // GitHub's location is untouched.
        nginx.set_github_token("acme", "ghs_acme");
        crate::github_api::github_repo(&w, "acme", "widget");
        let github = nginx.url("github", "acme/widget.git").replacen(
            "http://",
            "http://x-access-token:ghs_acme@",
            1,
        );
        assert!(w
            .try_git(w.root(), &["ls-remote", &github])
            .status
            .success());
    }

    #[test]
    fn serves_the_api_beside_the_git_data_over_tls() {
        let w = World::new();
        let mut s = scenario(0);
        let nginx = Nginx::start(&w);
        with_gitlab_git(&w, &nginx, &mut s);
        let api = GitlabApi::start(&w, &s);
        api.behind_nginx(&nginx);
        let r = crate::github_api::https_request(
            nginx.tls_port,
            &nginx.ca,
            "GET",
            "/api/v4/groups/platform/projects?per_page=1",
            &[("PRIVATE-TOKEN", TOKEN)],
        );
        assert_eq!(r.status, 200, "{r:?}");
        let host = format!("https://127.0.0.1:{}", nginx.tls_port);
        assert_eq!(r.body[0]["web_url"], json!(format!("{host}/other/lib")));
        assert!(
            r.header("link").expect("Link").starts_with(&format!(
                "<{host}/api/v4/groups/platform/projects?page=2&per_page=1>; rel=\"next\""
            )),
            "{r:?}"
        );
        api.assert_no_violations();
    }

    #[test]
    fn scenario_details_forks_filters_and_visibility_rules() {
        let w = World::new();
        let mut s = scenario(2);
        s["projects"][0]["fork_of"] = json!("platform/site");
        s["projects"][1]["archived"] = json!(true);
        s["projects"][1]["fork_of"] = json!("upstream/elsewhere");
        let api = GitlabApi::start(&w, &s);
        let r = api.get("/api/v4/projects/200", Some(TOKEN));
        assert_eq!(
            (
                &r.body["forked_from_project"]["id"],
                &r.body["forked_from_project"]["path_with_namespace"]
            ),
            (&json!(301), &json!("platform/site"))
        );
        let r = api.get("/api/v4/projects/201", Some(TOKEN));
        assert_eq!(
            r.body["forked_from_project"]["path_with_namespace"],
            "upstream/elsewhere"
        );
        assert!(api
            .get("/api/v4/projects/301", Some(TOKEN))
            .body
            .get("forked_from_project")
            .is_none());
        let list = |q: &str| {
            paths(&api.get(
                &format!("/api/v4/groups/platform/projects?{q}"),
                Some(TOKEN),
            ))
        };
        assert_eq!(list("archived=true"), ["platform/repo-1"]);
        assert_eq!(list("visibility=public"), ["platform/site"]);
        assert_eq!(
            list("with_shared=false&archived=false&order_by=id&sort=asc"),
            ["platform/repo-0", "platform/site"]
        );
        // A project may not be more visible than its group.
        let r = api.request(
            "POST",
            "/api/v4/projects",
            &[("PRIVATE-TOKEN", TOKEN)],
            Some(br#"{"path":"open","namespace_id":10,"visibility":"public"}"#),
        );
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body["message"]["visibility_level"].is_array(), "{r:?}");
        // A personal project without namespace_id; a group token may not make one.
        let r = api.request(
            "POST",
            "/api/v4/projects",
            &[("PRIVATE-TOKEN", TOKEN)],
            Some(br#"{"name":"Scratch"}"#),
        );
        assert_eq!(
            (r.status, &r.body["path_with_namespace"]),
            (201, &json!("mirror-bot/scratch")),
            "{r:?}"
        );
        assert_eq!(r.body["namespace"]["kind"], "user");
        let r = api.request(
            "POST",
            "/api/v4/projects",
            &[("PRIVATE-TOKEN", "glpat-group-tools")],
            Some(br#"{"name":"x"}"#),
        );
        assert_eq!(
            (r.status, &r.body),
            (403, &json!({ "message": "403 Forbidden" }))
        );
        // ... but may in its group, and not outside it.
        let r = api.request(
            "POST",
            "/api/v4/projects",
            &[("PRIVATE-TOKEN", "glpat-group-tools")],
            Some(br#"{"name":"x","namespace_id":11}"#),
        );
        assert_eq!(r.status, 201, "{r:?}");
        let r = api.request(
            "POST",
            "/api/v4/projects",
            &[("PRIVATE-TOKEN", "glpat-group-tools")],
            Some(br#"{"name":"x","namespace_id":10}"#),
        );
        assert_eq!(r.status, 404, "{r:?}");
        api.assert_no_violations();
        // A scenario the server cannot make sense of is refused, and the old one stays.
        let r = api.request(
            "PUT",
            "/_kalandra/scenario",
            &[],
            Some(br#"{"projects":[{"namespace":"nowhere","path":"x"}]}"#),
        );
        assert_eq!(r.status, 400, "{r:?}");
        let mut twice = s.clone();
        twice["projects"][1]["id"] = json!(200);
        let r = api.request(
            "PUT",
            "/_kalandra/scenario",
            &[],
            Some(twice.to_string().as_bytes()),
        );
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(api.get("/api/v4/projects/200", Some(TOKEN)).status, 200);
    }
}
