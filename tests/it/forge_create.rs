//! `create_missing` and `follow_head` on a GitHub downstream, end to end: `kalandra sync
//! --config` creates the missing repository through the contract-test GitHub API
//! (`tests/forge/server.js`, which checks every request against GitHub's OpenAPI description
//! and `git init --bare`s the repository nginx serves), pushes into it through the real nginx +
//! http-backend, and moves its default branch (the bare repository's HEAD) to upstream's.
//!
//! Every mirror that succeeds is checked end to end (refs equal, `git fsck`), and every test
//! ends with zero contract violations.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::github_api::{app_key, github_repo, with_github_git, AppKey, GithubApi};
use crate::harness::{Run, World};
use crate::nginx::Nginx;

const CREATE_ROUTE: &str = "/orgs/{org}/repos";
const REPO_ROUTE: &str = "/repos/{owner}/{repo}";
const TOKEN: &str = "ghs_create_token_000000000000000000000000";

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// App 1001 on `acme` (installation 501) with `permissions`, and `repositories`.
fn scenario(key: &AppKey, permissions: Value, repositories: Value) -> Value {
    json!({
        "apps": [{
            "id": 1001,
            "public_key_pem": key.public_pem,
            "installations": [{
                "id": 501, "account": "acme", "tokens": [TOKEN], "permissions": permissions,
            }],
        }],
        "orgs": [{ "login": "acme", "id": 4242 }],
        "repositories": repositories,
    })
}

fn admin() -> Value {
    json!({ "metadata": "read", "contents": "write", "administration": "write" })
}

/// The config: the app, then one mirror into `acme/widget` with `extra` keys.
fn config(w: &World, up: &Path, key: &AppKey, api: &GithubApi, base: &str, extra: &str) -> PathBuf {
    let text = format!(
        "[[github_app]]\napp_id = 1001\nkey_file = {}\nowners = [\"acme\"]\napi_url = {}\n\
         git_host = {}\n\n[[mirror]]\nname = \"widget\"\nupstream = {}\n\
         downstream = {}\nretries = 0\n{extra}\n",
        quoted(&key.pkcs8.display().to_string()),
        quoted(&api.url()),
        quoted(
            base.strip_prefix("http://")
                .expect("nginx's base is http://")
        ),
        quoted(&up.display().to_string()),
        quoted(&format!("{base}/acme/widget.git")),
    );
    let path = w.root().join("mirrors.toml");
    std::fs::write(&path, text).expect("can write the config");
    path
}

fn sync(w: &World, config: &Path) -> Run {
    w.kalandra_env(
        w.root(),
        &[
            "sync",
            "--config",
            config.to_str().expect("UTF-8"),
            "--json",
        ],
        &w.global_config(),
        &[
            ("SSH_AUTH_SOCK", None),
            ("KALANDRA_LOG", None),
            ("KALANDRA_UPSTREAM_TOKEN", None),
            ("KALANDRA_DOWNSTREAM_TOKEN", None),
        ],
    )
}

fn widget(run: &Run) -> Value {
    let report: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"));
    report["mirrors"][0].clone()
}

fn head(w: &World, repo: &Path) -> String {
    w.git(repo, &["symbolic-ref", "HEAD"]).trim().to_owned()
}

#[test]
fn a_missing_github_downstream_is_created_private_and_mirrored() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(&key, admin(), json!([]));
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let config = config(&w, &up, &key, &api, &base, "create_missing = true");
    let down = w.root().join("github/acme/widget.git");
    assert!(!down.exists());

    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    let entry = widget(&run);
    assert_eq!(entry["created"], true, "{entry}");
    assert_eq!(entry["default_branch_set"], Value::Null, "{entry}");
    w.assert_in_sync(&up, &down);

    let creates: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(CREATE_ROUTE))
        .collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    let create = &creates[0];
    assert_eq!(
        (create.method.as_str(), create.path.as_str(), create.status),
        ("POST", "/orgs/acme/repos", 201)
    );
    assert_eq!(
        (create.auth.as_str(), create.installation_id),
        ("token", Some(501))
    );
    assert_eq!(create.body["name"], "widget");
    assert_eq!(create.body["visibility"], "private");
    // The server's record of it: private, as the answer said.
    let answer = api.get("/repos/acme/widget", Some(&format!("token {TOKEN}")));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        (&answer.body["private"], &answer.body["visibility"]),
        (&json!(true), &json!("private"))
    );

    // The next sync finds it and creates nothing.
    let again = sync(&w, &config);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(widget(&again)["created"], false);
    assert_eq!(api.count("POST", CREATE_ROUTE), 1);
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));
    api.assert_no_violations();
}

#[test]
fn create_visibility_public_asks_github_for_a_public_repository() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(&key, admin(), json!([]));
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let extra = "create_missing = true\ncreate_visibility = \"public\"";
    let run = sync(&w, &config(&w, &up, &key, &api, &base, extra));
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &w.root().join("github/acme/widget.git"));
    let answer = api.get("/repos/acme/widget", None);
    assert_eq!(answer.body["visibility"], "public", "{answer:?}");
    api.assert_no_violations();
}

#[test]
fn the_default_branch_follows_upstreams_head_and_is_left_when_it_matches() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let repo =
        json!([{ "owner": "acme", "name": "widget", "private": true, "default_branch": "main" }]);
    let mut scenario = scenario(&key, admin(), repo);
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let down = github_repo(&w, "acme", "widget");
    w.git(&down, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let config = config(&w, &up, &key, &api, &base, "follow_head = true");

    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &down);
    // The fixture's upstream HEAD is develop.
    assert_eq!(widget(&run)["default_branch_set"], "refs/heads/develop");
    assert_eq!(head(&w, &down), "refs/heads/develop");
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    assert_eq!(patches[0].route.as_deref(), Some(REPO_ROUTE));
    assert_eq!(patches[0].body, json!({ "default_branch": "develop" }));
    assert_eq!(patches[0].status, 200);

    // Already right: read, not written.
    let again = sync(&w, &config);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(widget(&again)["default_branch_set"], Value::Null);
    assert_eq!(api.count("PATCH", REPO_ROUTE), 1);
    assert_eq!(api.count("GET", REPO_ROUTE), 2);
    assert_eq!(head(&w, &down), "refs/heads/develop");
    api.assert_no_violations();
}

#[test]
fn a_created_repository_gets_upstreams_default_branch_in_the_same_run() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(&key, admin(), json!([]));
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let extra = "create_missing = true\nfollow_head = true";
    let run = sync(&w, &config(&w, &up, &key, &api, &base, extra));
    assert_eq!(run.code, 0, "{run}");
    let entry = widget(&run);
    assert_eq!(
        (&entry["created"], &entry["default_branch_set"]),
        (&json!(true), &json!("refs/heads/develop")),
        "{entry}"
    );
    let down = w.root().join("github/acme/widget.git");
    w.assert_in_sync(&up, &down);
    assert_eq!(head(&w, &down), "refs/heads/develop");
    api.assert_no_violations();
}

#[test]
fn a_retry_after_the_attempt_that_created_downstream_still_reports_created() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(&key, admin(), json!([]));
    let base = with_github_git(&w, &nginx, &mut scenario);
    // The first attempt creates the repository and pushes, then fails to move its default
    // branch; the retry finds the repository there and creates nothing.
    scenario["faults"] = json!({
        "errors": [{ "route": "PATCH /repos/{owner}/{repo}", "status": 502, "times": 1 }],
    });
    let api = GithubApi::start(&w, &scenario);
    let extra = "create_missing = true\nfollow_head = true";
    let config = config(&w, &up, &key, &api, &base, extra);
    let text = std::fs::read_to_string(&config).expect("can read the config");
    std::fs::write(&config, text.replace("retries = 0", "retries = 1"))
        .expect("can write the config");
    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    let entry = widget(&run);
    assert_eq!(
        (
            &entry["attempts"],
            &entry["created"],
            &entry["default_branch_set"]
        ),
        (&json!(2), &json!(true), &json!("refs/heads/develop")),
        "{entry}"
    );
    assert_eq!(api.count("POST", CREATE_ROUTE), 1);
    let down = w.root().join("github/acme/widget.git");
    w.assert_in_sync(&up, &down);
    assert_eq!(head(&w, &down), "refs/heads/develop");
    api.assert_no_violations();
}

#[test]
fn creating_without_administration_write_is_an_auth_error_and_creates_nothing() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(
        &key,
        json!({ "metadata": "read", "contents": "write" }),
        json!([]),
    );
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let run = sync(
        &w,
        &config(&w, &up, &key, &api, &base, "create_missing = true"),
    );
    assert_ne!(run.code, 0, "{run}");
    let entry = widget(&run);
    assert_eq!(entry["error_kind"], "auth", "{entry}");
    assert_eq!(entry["created"], false);
    let error = entry["error"].as_str().expect("an error");
    assert!(
        error.contains("Administration (read and write) permission")
            && error.contains("POST")
            && error.contains("403"),
        "{error}"
    );
    assert!(!error.contains(TOKEN), "{error}");
    assert!(!w.root().join("github/acme/widget.git").exists());
    assert_eq!(
        api.get("/repos/acme/widget", Some(&format!("token {TOKEN}")))
            .status,
        404
    );
    assert_eq!(api.count("POST", CREATE_ROUTE), 1);
    assert_eq!(api.count("PATCH", REPO_ROUTE), 0);
    assert!(!run.stdout.contains(TOKEN) && !run.stderr.contains(TOKEN));
    api.assert_no_violations();
}

#[test]
fn an_installation_on_chosen_repositories_finds_its_token_through_the_org_and_creates() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = scenario(&key, admin(), json!([]));
    scenario["apps"][0]["installations"][0]["repositories"] = json!(["other"]);
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let run = sync(
        &w,
        &config(&w, &up, &key, &api, &base, "create_missing = true"),
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(widget(&run)["created"], true);
    w.assert_in_sync(&up, &w.root().join("github/acme/widget.git"));
    // GitHub answers 404 for the installation of a repository that does not exist; the
    // organisation's installation is asked for instead.
    assert_eq!(api.count("GET", "/repos/{owner}/{repo}/installation"), 1);
    assert_eq!(api.count("GET", "/orgs/{org}/installation"), 1);
    assert_eq!(api.count("POST", CREATE_ROUTE), 1);
    api.assert_no_violations();
}

#[test]
fn a_name_taken_by_a_repository_the_installation_cannot_see_is_refused_with_the_reason() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    // widget exists, private, but the installation covers only `other`.
    let mut scenario = scenario(
        &key,
        admin(),
        json!([{ "owner": "acme", "name": "widget", "private": true }]),
    );
    scenario["apps"][0]["installations"][0]["repositories"] = json!(["other"]);
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let run = sync(
        &w,
        &config(&w, &up, &key, &api, &base, "create_missing = true"),
    );
    assert_ne!(run.code, 0, "{run}");
    let entry = widget(&run);
    assert_eq!(
        (&entry["error_kind"], &entry["created"]),
        (&json!("rejected"), &json!(false)),
        "{entry}"
    );
    let error = entry["error"].as_str().expect("an error");
    assert!(
        error.contains("name already exists") && error.contains("cannot see it"),
        "{error}"
    );
    let creates: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.route.as_deref() == Some(CREATE_ROUTE))
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [422]);
    api.assert_no_violations();
}

#[test]
fn follow_head_on_a_local_downstream_does_what_set_head_does() {
    let w = World::new();
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let down = w.root().join("down.git");
    w.git(w.root(), &["init", "-q", "--bare", "down.git"]);
    w.git(&down, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let path = w.root().join("mirrors.toml");
    std::fs::write(
        &path,
        format!(
            "[[mirror]]\nname = \"widget\"\nupstream = {}\ndownstream = {}\nfollow_head = true\n",
            quoted(&up.display().to_string()),
            quoted(&down.display().to_string())
        ),
    )
    .expect("can write the config");
    let run = sync(&w, &path);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &down);
    assert_eq!(widget(&run)["default_branch_set"], "refs/heads/develop");
    assert_eq!(head(&w, &down), "refs/heads/develop");
    let again = sync(&w, &path);
    assert_eq!(widget(&again)["default_branch_set"], Value::Null);
}
