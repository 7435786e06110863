//! GitLab, end to end: `[[gitlab_source]]` discovery, and `create_missing` / `follow_head` on a
//! GitLab downstream, against the contract-test GitLab API (`tests/forge/gitlab.js`, which checks
//! every request against `tests/forge/gitlab-api.json`, creates the bare repositories nginx
//! serves and moves their HEAD) and the real nginx + http-backend under `/gitlab/`, which takes
//! only the scenario's tokens.
//!
//! Every mirror that succeeds is checked end to end (refs equal, `git fsck`), and every test
//! ends with zero contract violations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::gitlab_api::{gitlab_repo, with_gitlab_git, GitlabApi};
use crate::harness::{Run, World};
use crate::nginx::Nginx;

const TOKEN: &str = "glpat-mirror-bot-0000000000";
const LIST_ROUTE: &str = "/api/v4/groups/{id}/projects";
const CREATE_ROUTE: &str = "/api/v4/projects";
const PROJECT_ROUTE: &str = "/api/v4/projects/{id}";

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

fn write_config(w: &World, text: &str) -> PathBuf {
    let path = w.root().join("mirrors.toml");
    std::fs::write(&path, text).expect("can write the config");
    path
}

fn kalandra(w: &World, args: &[&str]) -> Run {
    w.kalandra_env(
        w.root(),
        args,
        &w.global_config(),
        &[
            ("SSH_AUTH_SOCK", None),
            ("KALANDRA_LOG", None),
            ("KALANDRA_UPSTREAM_TOKEN", None),
            ("KALANDRA_DOWNSTREAM_TOKEN", None),
            ("GITLAB_TOKEN", Some(TOKEN.into())),
        ],
    )
}

fn sync(w: &World, config: &Path) -> Run {
    kalandra(
        w,
        &[
            "sync",
            "--config",
            config.to_str().expect("UTF-8"),
            "--json",
        ],
    )
}

fn report(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"))
}

/// The refs of `fixture`, pushed into `repo`.
fn populate(w: &World, fixture: &Path, repo: &Path) {
    w.git(
        fixture,
        &[
            "push",
            "-q",
            repo.to_str().expect("UTF-8"),
            "refs/heads/*:refs/heads/*",
            "refs/tags/*:refs/tags/*",
        ],
    );
    w.git(repo, &["symbolic-ref", "HEAD", "refs/heads/develop"]);
}

fn mirror_names(report: &Value) -> BTreeSet<String> {
    report["mirrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no mirrors in {report}"))
        .iter()
        .map(|m| m["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[test]
fn a_gitlab_group_is_discovered_over_pages_with_subgroups_and_filters() {
    let w = World::new();
    let nginx = Nginx::start(&w);
    // 210 projects that `match` leaves out, so that the listing takes three pages of 100, and
    // one of each kind the filters decide on.
    let mut projects: Vec<Value> = (0..210)
        .map(|i| json!({ "id": 1000 + i, "namespace": "platform", "path": format!("filler-{i}") }))
        .collect();
    projects.extend([
        json!({ "id": 1, "namespace": "platform", "path": "m-api" }),
        json!({ "id": 2, "namespace": "platform/tools", "path": "m-cli", "visibility": "internal" }),
        json!({ "id": 3, "namespace": "platform", "path": "m-pub", "visibility": "public" }),
        json!({ "id": 4, "namespace": "platform", "path": "m-old", "archived": true }),
        json!({ "id": 5, "namespace": "platform", "path": "m-fork", "fork_of": "other/m-fork" }),
        json!({ "id": 6, "namespace": "other", "path": "m-shared", "shared_into": ["platform"] }),
        json!({ "id": 7, "namespace": "other", "path": "m-fork" }),
    ]);
    let mut scenario = json!({
        "groups": [
            { "id": 10, "full_path": "platform" },
            { "id": 11, "full_path": "platform/tools" },
            { "id": 12, "full_path": "other" },
        ],
        "projects": projects,
        "tokens": [{ "token": TOKEN, "kind": "personal", "user": "mirror-bot", "scopes": ["read_api", "read_repository"] }],
        "members": { "mirror-bot": ["platform", "other"] },
    });
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let kept = [
        ("platform", "m-api"),
        ("platform/tools", "m-cli"),
        ("platform", "m-pub"),
    ];
    let fixture = w.fixture("mirror.sh").join("upstream-bare.git");
    for (namespace, path) in kept {
        populate(&w, &fixture, &gitlab_repo(&w, namespace, path));
    }
    let config = write_config(
        &w,
        &format!(
            "[[gitlab]]\nurl = {}\napi_url = {}\ntoken_env = \"GITLAB_TOKEN\"\n\n\
             [[gitlab_source]]\nurl = {}\ngroup = \"platform\"\nsubgroups = true\n\
             match = \"*m-*\"\ndownstream = {}\ncreate_missing = true\nretries = 0\n",
            quoted(&base),
            quoted(&api.api_url()),
            quoted(&base),
            quoted(&format!(
                "{}/backup/{{path_dashed}}.git",
                w.root().display()
            )),
        ),
    );

    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    assert_eq!(
        mirror_names(&report),
        BTreeSet::from(["m-api".into(), "tools/m-cli".into(), "m-pub".into()]),
        "{report:#}"
    );
    for (namespace, path) in kept {
        let up = w.root().join(format!("gitlab/{namespace}/{path}.git"));
        let below = format!("{namespace}/{path}")
            .strip_prefix("platform/")
            .expect("under platform")
            .replace('/', "-");
        w.assert_in_sync(&up, &w.root().join(format!("backup/{below}.git")));
    }

    let pages: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(LIST_ROUTE))
        .collect();
    assert_eq!(pages.len(), 3, "{pages:#?}");
    for page in &pages {
        assert_eq!(page.path, "/api/v4/groups/platform/projects");
        assert_eq!((page.auth.as_str(), page.status), ("private-token", 200));
        assert_eq!(page.query["include_subgroups"], "true", "{page:?}");
        assert_eq!(page.query["with_shared"], "false", "{page:?}");
        assert_eq!(page.query["archived"], "false", "{page:?}");
    }
    api.assert_no_violations();
}

#[test]
fn an_anonymous_gitlab_source_lists_public_projects_only() {
    let w = World::new();
    let api = GitlabApi::start(
        &w,
        &json!({
            "groups": [{ "id": 10, "full_path": "oss", "visibility": "public" },
                       { "id": 11, "full_path": "secret" }],
            "projects": [
                { "namespace": "oss", "path": "lib", "visibility": "public" },
                { "namespace": "oss", "path": "inner", "visibility": "internal" },
                { "namespace": "oss", "path": "hidden", "visibility": "private" },
            ],
            "clone_url_base": "https://gitlab.example",
        }),
    );
    let config = |group: &str| {
        write_config(
            &w,
            &format!(
                "[[gitlab_source]]\nurl = {}\ngroup = {}\ndownstream = \"/srv/backup/{{name}}.git\"\n",
                quoted(&api.url()),
                quoted(group),
            ),
        )
    };
    let list = |group: &str| {
        let path = config(group);
        kalandra(
            &w,
            &["config", "list", path.to_str().expect("UTF-8"), "--json"],
        )
    };

    let run = list("oss");
    assert_eq!(run.code, 0, "{run}");
    let listed: Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"));
    let names: Vec<&str> = listed["mirrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no mirrors: {listed}"))
        .iter()
        .map(|m| m["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["lib"], "{listed:#}");
    assert!(
        listed
            .to_string()
            .contains("https://gitlab.example/oss/lib.git"),
        "{listed:#}"
    );

    // A group the anonymous listing cannot see: GitLab answers 404, and nothing is synced.
    let run = list("secret");
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("discovery of GitLab group secret: ")
            && run
                .stderr
                .contains("group secret does not exist on GitLab, or the token cannot see it"),
        "{run}"
    );
    let requests = api.requests();
    assert!(requests.iter().all(|r| r.auth == "none"), "{requests:#?}");
    api.assert_no_violations();
}

/// The GitLab downstream scenario: group `backup/acme`, `mirror-bot` a member of `backup`, its
/// token with `scopes`, and `extra` scenario keys.
fn downstream_scenario(scopes: &[&str], extra: Value) -> Value {
    let mut scenario = json!({
        "groups": [
            { "id": 20, "full_path": "backup", "visibility": "internal" },
            { "id": 21, "full_path": "backup/acme", "visibility": "internal" },
        ],
        "projects": [],
        "tokens": [{ "token": TOKEN, "kind": "personal", "user": "mirror-bot", "scopes": scopes }],
        "members": { "mirror-bot": ["backup"] },
    });
    if let (Some(scenario), Value::Object(extra)) = (scenario.as_object_mut(), extra) {
        scenario.extend(extra);
    }
    scenario
}

/// A config with the `[[gitlab]]` at `base` (API: `api`) and one mirror from `up` into
/// `{base}/{path}.git`, with `extra` keys.
fn downstream_config(
    w: &World,
    up: &Path,
    base: &str,
    api: &GitlabApi,
    path: &str,
    extra: &str,
) -> PathBuf {
    write_config(
        w,
        &format!(
            "[[gitlab]]\nurl = {}\napi_url = {}\ntoken_env = \"GITLAB_TOKEN\"\n\n\
             [[mirror]]\nname = \"widget\"\nupstream = {}\ndownstream = {}\nretries = 0\n\
             create_missing = true\n{extra}\n",
            quoted(base),
            quoted(&api.api_url()),
            quoted(&up.display().to_string()),
            quoted(&format!("{base}/{path}.git")),
        ),
    )
}

#[test]
fn a_missing_gitlab_downstream_is_created_and_follows_upstreams_head() {
    let w = World::new();
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);
    let mut scenario = downstream_scenario(&["api"], json!({}));
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let config = downstream_config(
        &w,
        &up,
        &base,
        &api,
        "backup/acme/widget",
        "create_visibility = \"internal\"\nfollow_head = true",
    );
    let down = w.root().join("gitlab/backup/acme/widget.git");
    assert!(!down.exists());

    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    let entry = report(&run)["mirrors"][0].clone();
    assert_eq!(entry["created"], true, "{entry}");
    assert_eq!(entry["default_branch_set"], "refs/heads/develop", "{entry}");
    w.assert_in_sync(&up, &down);
    assert_eq!(
        w.git(&down, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/develop"
    );

    let requests = api.requests();
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r.route.as_deref() == Some(CREATE_ROUTE))
        .collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    let create = creates[0];
    assert_eq!((create.method.as_str(), create.status), ("POST", 201));
    assert_eq!(create.auth, "private-token");
    assert_eq!(create.body["namespace_id"], 21, "{:?}", create.body);
    assert_eq!(create.body["path"], "widget", "{:?}", create.body);
    assert_eq!(create.body["visibility"], "internal", "{:?}", create.body);
    let puts: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.route.as_deref() == Some(PROJECT_ROUTE))
        .collect();
    assert_eq!(puts.len(), 1, "{puts:#?}");
    assert_eq!(puts[0].body, json!({ "default_branch": "develop" }));
    assert_eq!(puts[0].status, 200);

    // The next sync has nothing to create or move.
    let before = api.requests().len();
    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    let entry = report(&run)["mirrors"][0].clone();
    assert_eq!(
        (&entry["created"], &entry["default_branch_set"]),
        (&json!(false), &Value::Null),
        "{entry}"
    );
    let after = api.requests();
    assert!(
        after[before..]
            .iter()
            .all(|r| r.method == "GET" && r.route.as_deref() == Some(PROJECT_ROUTE)),
        "{:#?}",
        &after[before..]
    );
    api.assert_no_violations();
}

#[test]
fn gitlab_api_failures_have_their_kinds_and_leave_nothing_half_done() {
    let w = World::new();
    let up = w.fixture("mirror.sh").join("upstream-bare.git");
    let nginx = Nginx::start(&w);

    // A token that may push but not use the API for writes: `auth`, with the scope to grant.
    let mut scenario = downstream_scenario(&["read_api", "write_repository"], json!({}));
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let config = downstream_config(&w, &up, &base, &api, "backup/acme/widget", "");
    let run = sync(&w, &config);
    assert_eq!(run.code, 9, "{run}");
    let entry = report(&run)["mirrors"][0].clone();
    assert_eq!(entry["error_kind"], "auth", "{entry}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("POST") && error.contains("the token needs the `api` scope"),
        "{entry}"
    );
    assert!(
        !error.contains(TOKEN) && !run.stderr.contains(TOKEN),
        "{run}"
    );
    assert!(!w.root().join("gitlab/backup/acme/widget.git").exists());
    api.assert_no_violations();
    drop(api);

    // A namespace that does not exist: `not-found`, naming it; nothing is created.
    let mut scenario = downstream_scenario(&["api"], json!({}));
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let config = downstream_config(&w, &up, &base, &api, "backup/nobody/widget", "");
    let run = sync(&w, &config);
    assert_eq!(run.code, 9, "{run}");
    let entry = report(&run)["mirrors"][0].clone();
    assert_eq!(entry["error_kind"], "not-found", "{entry}");
    assert!(
        entry["error"]
            .as_str()
            .unwrap_or_default()
            .contains("namespace backup/nobody does not exist on GitLab"),
        "{entry}"
    );
    assert_eq!(api.count("POST", CREATE_ROUTE), 0);
    api.assert_no_violations();
    drop(api);

    // A rate limit that resets within seconds is waited out.
    let mut scenario = downstream_scenario(
        &["api"],
        json!({ "faults": { "rate_limit": { "routes": ["POST /projects"], "times": 1, "reset_in": 2 } } }),
    );
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let config = downstream_config(&w, &up, &base, &api, "backup/acme/waited", "");
    let run = sync(&w, &config);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report(&run)["mirrors"][0]["created"], true, "{run}");
    let posts: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.route.as_deref() == Some(CREATE_ROUTE))
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [429, 201]);
    w.assert_in_sync(&up, &w.root().join("gitlab/backup/acme/waited.git"));
    api.assert_no_violations();
    drop(api);

    // One that resets in ten minutes is `unavailable`, with the wait.
    let mut scenario = downstream_scenario(
        &["api"],
        json!({ "faults": { "rate_limit": { "routes": ["POST /projects"], "reset_in": 600 } } }),
    );
    let base = with_gitlab_git(&w, &nginx, &mut scenario);
    let api = GitlabApi::start(&w, &scenario);
    let config = downstream_config(&w, &up, &base, &api, "backup/acme/limited", "");
    let run = sync(&w, &config);
    assert_eq!(run.code, 9, "{run}");
    let entry = report(&run)["mirrors"][0].clone();
    assert_eq!(entry["error_kind"], "unavailable", "{entry}");
    assert!(
        entry["error"]
            .as_str()
            .unwrap_or_default()
            .contains("GitLab's rate limit is used up for"),
        "{entry}"
    );
    assert!(!w.root().join("gitlab/backup/acme/limited.git").exists());
    api.assert_no_violations();
}
