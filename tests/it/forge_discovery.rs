//! Sync targets from GitHub: `upstream = "target-prop:NAME"` (the upstream URL read from a
//! custom property of the downstream GitHub repository) and `[[github_org]]` discovery,
//! end to end against the contract-test GitHub API (`tests/forge/server.js`, every request
//! checked against GitHub's OpenAPI description) and the real nginx + http-backend, whose
//! `/github/OWNER/` location takes only OWNER's installation token. Upstreams are served
//! anonymously by nginx's `/v2/` location.
//!
//! Every mirror that succeeds is checked end to end (refs equal, `git fsck`), and every test
//! ends with zero contract violations.

use std::path::Path;

use serde_json::{json, Value};

use crate::forge_github_app::{
    app, app_table, assert_no_secrets, entry, fixture_upstream, mirror, quoted, report,
    sync_config, write_config,
};
use crate::github_api::{app_key, github_repo, with_github_git, GithubApi};
use crate::harness::World;
use crate::nginx::Nginx;

const PROPERTIES_ROUTE: &str = "/repos/{owner}/{repo}/properties/values";
const TOKEN: &str = "ghs_acme_mirror_token_00000000000000000000";

/// `http://127.0.0.1:PORT`, nginx's origin.
fn origin(nginx: &Nginx) -> String {
    format!("http://127.0.0.1:{}", nginx.port)
}

/// The path of `repo` under nginx's anonymous `/v2/` location.
fn v2_path(w: &World, repo: &Path) -> String {
    let relative = repo
        .strip_prefix(w.root())
        .expect("the repository is in the world");
    format!("v2/{}", relative.display())
}

/// A private repository of `acme-mirror` with `properties`.
fn repository(name: &str, properties: Value) -> Value {
    json!({ "owner": "acme-mirror", "name": name, "private": true, "properties": properties })
}

#[test]
fn target_prop_whole_and_split_forms_sync_end_to_end() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let up = fixture_upstream(&w);
    let nginx = Nginx::start(&w);
    let whole = format!("{}/{}", origin(&nginx), v2_path(&w, &up));
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN])],
        "repositories": [
            repository("widget", json!({ "mirror-source": whole })),
            repository("gadget", json!({
                "mirror-source-host": origin(&nginx),
                "mirror-source": format!("/{}", v2_path(&w, &up)),
            })),
        ],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let widget = github_repo(&w, "acme-mirror", "widget");
    let gadget = github_repo(&w, "acme-mirror", "gadget");
    let config = format!(
        "{}{}{}",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme-mirror"],
            &api,
            &base
        ),
        mirror(
            "widget",
            "target-prop:mirror-source",
            &format!("{base}/acme-mirror/widget.git")
        ),
        mirror(
            "gadget",
            "target-prop:mirror-source",
            &format!("{base}/acme-mirror/gadget.git")
        ),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &widget);
    w.assert_in_sync(&up, &gadget);
    assert_eq!(
        entry(&report(&run), "widget")["upstream"],
        "target-prop:mirror-source"
    );
    // Each repository's properties were read with the installation token.
    let reads: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(PROPERTIES_ROUTE))
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(
        reads.iter().all(|r| r.installation_id == Some(501)),
        "{reads:?}"
    );
    assert_no_secrets(&run, &[TOKEN]);
    api.assert_no_violations();
}

#[test]
fn target_prop_is_read_again_before_each_sync() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let up = fixture_upstream(&w);
    // A second upstream: the first's history and one more branch.
    let other = w.root().join("other.git");
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "--bare",
            up.to_str().expect("UTF-8"),
            "other.git",
        ],
    );
    let head = w.git(&other, &["rev-parse", "HEAD"]);
    w.git(
        &other,
        &["update-ref", "refs/heads/moved-source", head.trim()],
    );
    let nginx = Nginx::start(&w);
    let source = |repo: &Path| format!("{}/{}", origin(&nginx), v2_path(&w, repo));
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN])],
        "repositories": [repository("widget", json!({ "mirror-source": source(&up) }))],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let widget = github_repo(&w, "acme-mirror", "widget");
    let config = write_config(
        &w,
        &format!(
            "{}{}",
            app_table(
                1001,
                &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
                &["acme-mirror"],
                &api,
                &base
            ),
            mirror(
                "widget",
                "target-prop:mirror-source",
                &format!("{base}/acme-mirror/widget.git")
            ),
        ),
    );
    let run = sync_config(&w, &config, &[]);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &widget);
    scenario["repositories"][0]["properties"]["mirror-source"] = json!(source(&other));
    api.set_scenario(&scenario);
    let again = sync_config(&w, &config, &[]);
    assert_eq!(again.code, 0, "{again}");
    w.assert_in_sync(&other, &widget);
    api.assert_no_violations();
}

#[test]
fn target_prop_missing_property_is_not_found_and_a_bad_url_is_usage() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let nginx = Nginx::start(&w);
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN])],
        "repositories": [
            repository("unset", json!({ "team": "platform" })),
            repository("local", json!({ "mirror-source": "/etc/shadow" })),
            repository("secret", json!({ "mirror-source": "https://me:hunter2@gitlab.example/x.git" })),
        ],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let mut config = app_table(
        1001,
        &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
        &["acme-mirror"],
        &api,
        &base,
    );
    for name in ["unset", "local", "secret"] {
        github_repo(&w, "acme-mirror", name);
        config.push_str(&mirror(
            name,
            "target-prop:mirror-source",
            &format!("{base}/acme-mirror/{name}.git"),
        ));
    }
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_ne!(run.code, 0, "{run}");
    let report = report(&run);
    let unset = entry(&report, "unset");
    assert_eq!(unset["error_kind"], "not-found", "{unset}");
    let message = unset["error"].as_str().expect("a message");
    assert!(
        message.contains("acme-mirror/unset has no custom property `mirror-source`"),
        "{message}"
    );
    for name in ["local", "secret"] {
        let e = entry(&report, name);
        assert_eq!(e["error_kind"], "usage", "{e}");
        let message = e["error"].as_str().expect("a message");
        assert!(
            message.contains(&format!("`mirror-source` of acme-mirror/{name}")),
            "{message}"
        );
    }
    assert_no_secrets(&run, &[TOKEN, "hunter2"]);
    api.assert_no_violations();
}

#[test]
fn target_prop_without_an_app_for_downstream_is_a_config_error() {
    let w = World::new();
    let config = write_config(
        &w,
        &mirror(
            "widget",
            "target-prop:mirror-source",
            "https://github.com/acme-mirror/widget.git",
        ),
    );
    let run = sync_config(&w, &config, &[]);
    assert_ne!(run.code, 0, "{run}");
    assert!(
        run.stderr
            .contains("a [[github_app]] must serve downstream"),
        "{run}"
    );
}

const ORG_PROPERTIES_ROUTE: &str = "/orgs/{org}/properties/values";

/// An app installed on `acme-mirror` that may read the org's custom properties.
fn org_app(key: &crate::github_api::AppKey) -> Value {
    json!({
        "id": 1001,
        "public_key_pem": key.public_pem,
        "installations": [{
            "id": 501, "account": "acme-mirror", "tokens": [TOKEN],
            "permissions": {
                "metadata": "read", "contents": "write",
                "organization_custom_properties": "read",
            },
        }],
    })
}

#[test]
fn github_org_discovers_repositories_with_the_property_over_three_pages() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let up = fixture_upstream(&w);
    let nginx = Nginx::start(&w);
    let source = format!("{}/{}", origin(&nginx), v2_path(&w, &up));
    // 250 repositories: three pages of 100; one with the property on each page, one with it
    // empty, the rest without.
    let with_property = ["r005", "r150", "r240"];
    let repositories: Vec<Value> = (0..250)
        .map(|i| {
            let name = format!("r{i:03}");
            let properties = if with_property.contains(&name.as_str()) {
                json!({ "mirror-source": source })
            } else if i == 7 {
                json!({ "mirror-source": "" })
            } else {
                json!({ "team": "platform" })
            };
            repository(&name, properties)
        })
        .collect();
    let mut scenario = json!({
        "apps": [org_app(&key)],
        "orgs": [{ "login": "acme-mirror", "id": 4242 }],
        "repositories": repositories,
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let downs: Vec<_> = with_property
        .iter()
        .map(|name| github_repo(&w, "acme-mirror", name))
        .collect();
    let config = format!(
        "{}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"mirror-source\"\nname = \"mirror-{{name}}\"\nretries = 0\n",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme-mirror"],
            &api,
            &base
        ),
    );
    let config = write_config(&w, &config);
    let run = sync_config(&w, &config, &[]);
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    let names: Vec<&str> = report["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .map(|m| m["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names.len(), 3, "{report}");
    for (name, down) in with_property.iter().zip(&downs) {
        let e = entry(&report, &format!("mirror-{name}"));
        assert_eq!(
            e["downstream"],
            format!("{base}/acme-mirror/{name}.git"),
            "{e}"
        );
        w.assert_in_sync(&up, down);
    }
    // Every page once, with the installation's token, following `next`.
    let pages: Vec<Value> = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(ORG_PROPERTIES_ROUTE))
        .map(|r| {
            assert_eq!(r.installation_id, Some(501), "{r:?}");
            r.query
        })
        .collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    let page = |q: &Value| q["page"].as_str().map(str::to_owned);
    assert_eq!(
        pages.iter().map(page).collect::<Vec<_>>(),
        [None, Some("2".into()), Some("3".into())],
        "{pages:?}"
    );
    assert!(pages.iter().all(|q| q["per_page"] == "100"), "{pages:?}");
    assert_eq!(api.count("GET", "/orgs/{org}/installation"), 1);
    assert_no_secrets(&run, &[TOKEN]);
    api.assert_no_violations();
}

#[test]
fn github_org_without_the_org_permission_fails_discovery_with_a_hint() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let nginx = Nginx::start(&w);
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN])],
        "orgs": [{ "login": "acme-mirror", "id": 4242 }],
        "repositories": [repository("widget", json!({ "mirror-source": "https://x.example/a.git" }))],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let config = format!(
        "{}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"mirror-source\"\n",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme-mirror"],
            &api,
            &base
        ),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_ne!(run.code, 0, "{run}");
    assert!(run.stderr.contains("HTTP 403"), "{run}");
    assert!(run.stderr.contains("Custom properties: read"), "{run}");
    assert_no_secrets(&run, &[TOKEN]);
    api.assert_no_violations();
}

/// `acme`'s repositories for `[[github_source]]`: name, private, archived, fork.
const SOURCES: &[(&str, bool, bool, bool)] = &[
    ("api", false, false, false),
    ("web", true, false, false),
    ("old", false, true, false),
    ("copy", false, false, true),
    ("api-tools", true, false, false),
];

const ACME_TOKEN: &str = "ghs_acme_source_token_000000000000000000";

/// An app on `acme`, a scenario with [`SOURCES`] (each a copy of the fixture upstream,
/// served by nginx), and the `[[github_app]]` table.
fn source_world(w: &World) -> (Nginx, GithubApi, String) {
    source_world_with_faults(w, json!({}))
}

/// [`source_world`] with the scenario's `faults`.
fn source_world_with_faults(w: &World, faults: Value) -> (Nginx, GithubApi, String) {
    let key = app_key(w, "acme");
    let up = fixture_upstream(w);
    let nginx = Nginx::start(w);
    let repositories: Vec<Value> = SOURCES
        .iter()
        .map(|(name, private, archived, fork)| {
            json!({ "owner": "acme", "name": name, "private": private, "archived": archived, "fork": fork })
        })
        .collect();
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme", &[ACME_TOKEN])],
        "orgs": [{ "login": "acme", "id": 4243 }],
        "repositories": repositories,
        "faults": faults,
    });
    let base = with_github_git(w, &nginx, &mut scenario);
    let api = GithubApi::start(w, &scenario);
    for (name, ..) in SOURCES {
        let path = github_repo(w, "acme", name);
        std::fs::remove_dir_all(&path).expect("can replace the empty repository");
        w.git(
            w.root(),
            &[
                "clone",
                "-q",
                "--bare",
                up.to_str().expect("UTF-8"),
                path.to_str().expect("UTF-8"),
            ],
        );
    }
    let table = app_table(
        1001,
        &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
        &["acme"],
        &api,
        &base,
    );
    (nginx, api, table)
}

/// A `[[github_source]]` of acme into `<root>/backup/{name}.git`, with `extra` keys.
fn source_table(w: &World, extra: &str) -> String {
    format!(
        "[[github_source]]\norg = \"acme\"\ndownstream = {}\ncreate_missing = true\nretries = 0\n{extra}\n",
        quoted(&format!("{}/backup/{{name}}.git", w.root().display()))
    )
}

/// The mirror names `config list --json` gives for `config`.
fn listed_names(w: &World, config: &Path) -> Vec<String> {
    let run = w.kalandra_env(
        w.root(),
        &["config", "list", config.to_str().expect("UTF-8"), "--json"],
        &w.global_config(),
        &[("KALANDRA_LOG", None)],
    );
    assert_eq!(run.code, 0, "{run}");
    let mut names: Vec<String> = report(&run)["mirrors"]
        .as_array()
        .expect("mirrors")
        .iter()
        .map(|m| m["name"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn github_source_mirrors_every_kept_repository_end_to_end() {
    let w = World::new();
    let (_nginx, api, app) = source_world(&w);
    std::fs::create_dir_all(w.root().join("backup")).expect("can create backup/");
    let config = write_config(&w, &format!("{app}{}", source_table(&w, "")));
    let run = sync_config(&w, &config, &[]);
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    // Archived and forked repositories are left out by default.
    for name in ["api", "web", "api-tools"] {
        let e = entry(&report, name);
        assert_eq!(e["created"], true, "{e}");
        w.assert_in_sync(
            &w.root().join(format!("github/acme/{name}.git")),
            &w.root().join(format!("backup/{name}.git")),
        );
    }
    assert_eq!(
        report["mirrors"].as_array().expect("mirrors").len(),
        3,
        "{report}"
    );
    assert!(api.count("GET", "/orgs/{org}/repos") >= 1);
    assert_no_secrets(&run, &[ACME_TOKEN]);
    api.assert_no_violations();
}

#[test]
fn github_source_filters_archived_forks_visibility_and_name() {
    let w = World::new();
    let (_nginx, api, app) = source_world(&w);
    let names = |extra: &str| {
        let config = write_config(&w, &format!("{app}{}", source_table(&w, extra)));
        listed_names(&w, &config)
    };
    assert_eq!(names(""), ["api", "api-tools", "web"]);
    assert_eq!(names("archived = true"), ["api", "api-tools", "old", "web"]);
    assert_eq!(names("forks = true"), ["api", "api-tools", "copy", "web"]);
    assert_eq!(names("visibility = \"public\""), ["api"]);
    assert_eq!(names("visibility = \"private\""), ["api-tools", "web"]);
    assert_eq!(names("match = \"API*\""), ["api", "api-tools"]);
    assert_eq!(
        names("archived = true\nforks = true\nname = \"acme-{name}\""),
        [
            "acme-api",
            "acme-api-tools",
            "acme-copy",
            "acme-old",
            "acme-web"
        ]
    );
    api.assert_no_violations();
}

#[test]
fn a_watch_syncs_discovered_mirrors_and_finds_new_ones_at_a_reload() {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use crate::forge_github_app::{wait_for, Watching};
    use crate::harness::{kalandra_bin, Scope};

    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let up = fixture_upstream(&w);
    let nginx = Nginx::start(&w);
    let source = format!("{}/{}", origin(&nginx), v2_path(&w, &up));
    let mut scenario = json!({
        "apps": [org_app(&key)],
        "orgs": [{ "login": "acme-mirror", "id": 4242 }],
        "repositories": [
            repository("first", json!({ "mirror-source": source })),
            repository("second", json!({})),
        ],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let first = github_repo(&w, "acme-mirror", "first");
    let second = github_repo(&w, "acme-mirror", "second");
    let config = write_config(
        &w,
        &format!(
            "{}[[github_org]]\norg = \"acme-mirror\"\nproperty = \"mirror-source\"\ninterval = \"1s\"\n",
            app_table(
                1001,
                &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
                &["acme-mirror"],
                &api,
                &base
            ),
        ),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = w.root().join("watch.log");
    let mut cmd = Command::new(kalandra_bin());
    cmd.args(["watch", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(w.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("can create the log"));
    w.isolate(&mut cmd, &w.global_config());
    let watch = Watching(cmd.spawn().expect("can start kalandra watch"));
    let in_sync = |down: &Path| {
        let scope = Scope::new(&[], &[]);
        scope.filter(&w.refs(down)) == scope.filter(&w.refs(&up))
    };
    wait_for("the first sync", Duration::from_secs(60), || {
        in_sync(&first)
    });
    w.assert_fsck(&first);
    assert!(w.refs(&second).is_empty(), "second has no property yet");

    // The property is set on `second`; a reload lists the org again.
    scenario["repositories"][1]["properties"]["mirror-source"] = json!(source);
    api.set_scenario(&scenario);
    let hup = Command::new("kill")
        .args(["-HUP", &watch.0.id().to_string()])
        .status()
        .expect("can run kill");
    assert!(hup.success());
    wait_for(
        "the discovered mirror's sync",
        Duration::from_secs(60),
        || in_sync(&second),
    );
    w.assert_fsck(&second);
    assert!(api.count("GET", ORG_PROPERTIES_ROUTE) >= 2);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(TOKEN), "a token in the log:\n{text}");
    api.assert_no_violations();
}

#[test]
fn target_prop_read_under_a_rate_limit_is_unavailable() {
    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let nginx = Nginx::start(&w);
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN])],
        "repositories": [repository("widget", json!({ "mirror-source": "https://x.example/a.git" }))],
        "faults": { "rate_limit": { "routes": [PROPERTIES_ROUTE], "reset_in": 3600 } },
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    github_repo(&w, "acme-mirror", "widget");
    let config = format!(
        "{}{}",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme-mirror"],
            &api,
            &base
        ),
        mirror(
            "widget",
            "target-prop:mirror-source",
            &format!("{base}/acme-mirror/widget.git")
        ),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_ne!(run.code, 0, "{run}");
    let e = entry(&report(&run), "widget").clone();
    assert_eq!(e["error_kind"], "unavailable", "{e}");
    assert!(
        e["error"]
            .as_str()
            .expect("a message")
            .contains("rate limit"),
        "{e}"
    );
    api.assert_no_violations();
}

/// `acme`'s listing under GitHub's rate limit for `reset_in` seconds from the first refused
/// request; the scenario of [`source_world`] otherwise.
fn source_world_rate_limited(w: &World, reset_in: u64) -> (Nginx, GithubApi, String) {
    source_world_with_faults(
        w,
        json!({
            "rate_limit": { "routes": ["GET /orgs/{org}/repos"], "times": 1, "reset_in": reset_in },
        }),
    )
}

#[test]
fn github_source_listing_waits_out_a_rate_limit_that_resets_within_a_minute() {
    let w = World::new();
    let (_nginx, api, app) = source_world_rate_limited(&w, 2);
    let config = write_config(&w, &format!("{app}{}", source_table(&w, "")));
    let started = std::time::Instant::now();
    assert_eq!(listed_names(&w, &config), ["api", "api-tools", "web"]);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "the listing did not wait for the reset"
    );
    let listings: Vec<i64> = api
        .requests()
        .iter()
        .filter(|r| r.raw["route"] == "/orgs/{org}/repos")
        .map(|r| r.raw["status"].as_i64().expect("a status"))
        .collect();
    assert_eq!(listings, [403, 200]);
    api.assert_no_violations();
}

#[test]
fn github_source_listing_under_a_long_rate_limit_is_unavailable_with_the_reset() {
    let w = World::new();
    let (_nginx, api, app) = source_world_rate_limited(&w, 3600);
    std::fs::create_dir_all(w.root().join("backup")).expect("can create backup/");
    let config = write_config(&w, &format!("{app}{}", source_table(&w, "")));
    let run = sync_config(&w, &config, &[]);
    assert_ne!(run.code, 0, "{run}");
    let report = report(&run);
    assert_eq!(report["kind"], "unavailable", "{report}");
    let error = report["error"].as_str().expect("an error");
    // The reset GitHub gave, as a date: `... used up until 2026-11-30T21:00:00Z, 3600 s ...`.
    let until = error
        .split_once("used up until ")
        .map(|(_, rest)| rest.split(',').next().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(until).is_ok(),
        "no reset time in {error:?}"
    );
    assert!(
        run.stderr.contains("discovery failed (unavailable)"),
        "{run}"
    );
    assert_eq!(api.count("GET", "/orgs/{org}/repos"), 1);
    assert_no_secrets(&run, &[ACME_TOKEN]);
    api.assert_no_violations();
}

#[test]
fn github_source_without_an_app_lists_public_repositories_unauthenticated() {
    let w = World::new();
    let repositories: Vec<Value> = SOURCES
        .iter()
        .map(|(name, private, archived, fork)| {
            json!({ "owner": "acme", "name": name, "private": private, "archived": archived, "fork": fork })
        })
        .collect();
    // An app on another org only: nothing serves acme.
    let key = app_key(&w, "globex");
    let api = GithubApi::start(
        &w,
        &json!({
            "apps": [app(1001, &key, 502, "globex", &[TOKEN])],
            "orgs": [{ "login": "acme", "id": 4243 }, { "login": "globex", "id": 4244 }],
            "repositories": repositories,
        }),
    );
    let config = write_config(
        &w,
        &source_table(&w, &format!("api_url = {}", quoted(&api.url()))),
    );
    // Private `web` and `api-tools` are not visible without a token; archived `old` and the
    // fork `copy` are filtered out as always.
    assert_eq!(listed_names(&w, &config), ["api"]);
    let requests = api.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            (&r.raw["route"], &r.raw["auth"]["kind"]),
            (&json!("/orgs/{org}/repos"), &json!("none")),
            "{:?}",
            r.raw
        );
    }
    api.assert_no_violations();
}

#[test]
fn github_source_mirrors_get_gits_insteadof_and_pushinsteadof() {
    let w = World::new();
    let nginx = Nginx::start(&w);
    // No app: the listing is anonymous and `api` is public, but nginx's `/github/` takes
    // only an installation token. Its clone_url fetches only once `url.*.insteadOf` turns
    // it into the anonymous `/v2/github/` location.
    let mut scenario = json!({
        "orgs": [{ "login": "acme", "id": 4243 }],
        "repositories": [{ "owner": "acme", "name": "api", "private": false }],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let up = github_repo(&w, "acme", "api");
    std::fs::remove_dir_all(&up).expect("can replace the empty repository");
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "--bare",
            fixture_upstream(&w).to_str().expect("UTF-8"),
            up.to_str().expect("UTF-8"),
        ],
    );
    let backup = w.root().join("backup");
    std::fs::create_dir_all(&backup).expect("can create backup/");
    let anonymous = format!("{}/v2/github/", origin(&nginx));
    let global = w.global_config_with(
        "rewrites.gitconfig",
        &format!(
            "[url \"{anonymous}\"]\n\tinsteadOf = {base}/\n\
             [url \"{}/\"]\n\tpushInsteadOf = backup:\n",
            backup.display()
        ),
    );
    let config = write_config(
        &w,
        &format!(
            "[[github_source]]\norg = \"acme\"\ndownstream = \"backup:{{name}}.git\"\n\
             create_missing = true\nretries = 0\napi_url = {}\n",
            quoted(&api.url())
        ),
    );
    let run = w.kalandra_env(
        w.root(),
        &[
            "sync",
            "--config",
            config.to_str().expect("UTF-8"),
            "--json",
        ],
        &global,
        &[("KALANDRA_LOG", None), ("SSH_AUTH_SOCK", None)],
    );
    assert_eq!(run.code, 0, "{run}");
    let report = report(&run);
    let e = entry(&report, "api");
    assert_eq!(
        (&e["upstream"], &e["downstream"], &e["created"]),
        (
            &json!(format!("{anonymous}acme/api.git")),
            &json!(backup.join("api.git").display().to_string()),
            &json!(true)
        ),
        "{e}"
    );
    w.assert_in_sync(&up, &backup.join("api.git"));
    api.assert_no_violations();
}

#[test]
fn a_watch_asks_for_a_new_token_once_the_api_refuses_a_revoked_one() {
    use std::time::Duration;

    use crate::forge_github_app::{start_watch, wait_for, TOKENS_ROUTE};
    use crate::harness::Scope;

    let w = World::new();
    let key = app_key(&w, "acme-mirror");
    let up = w.root().join("up.git");
    w.git(
        w.root(),
        &[
            "clone",
            "-q",
            "--bare",
            fixture_upstream(&w).to_str().expect("UTF-8"),
            "up.git",
        ],
    );
    let nginx = Nginx::start(&w);
    let second = "ghs_acme_mirror_second_0000000000000000000";
    let mut scenario = json!({
        "apps": [app(1001, &key, 501, "acme-mirror", &[TOKEN, second])],
        "repositories": [repository("widget", json!({
            "mirror-source": format!("{}/{}", origin(&nginx), v2_path(&w, &up)),
        }))],
    });
    let base = with_github_git(&w, &nginx, &mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let widget = github_repo(&w, "acme-mirror", "widget");
    let config = format!(
        "{}{}interval = \"1s\"\n",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme-mirror"],
            &api,
            &base
        ),
        mirror(
            "widget",
            "target-prop:mirror-source",
            &format!("{base}/acme-mirror/widget.git")
        ),
    );
    let (_watch, log) = start_watch(&w, &write_config(&w, &config));
    let in_sync = || {
        let scope = Scope::new(&[], &[]);
        scope.filter(&w.refs(&widget)) == scope.filter(&w.refs(&up))
    };
    wait_for("the first sync", Duration::from_secs(60), in_sync);
    assert_eq!(api.count("POST", TOKENS_ROUTE), 1);

    // Revoked: the next property read is refused (401) before git is reached.
    api.revoke_token(TOKEN);
    nginx.set_github_token("acme-mirror", second);
    w.git(
        w.root(),
        &["clone", "-q", up.to_str().expect("UTF-8"), "work"],
    );
    let work = w.root().join("work");
    w.commit_file(&work, "revoked.txt", "new\n", "after the revocation");
    w.git(&work, &["push", "-q", "origin", "HEAD"]);
    wait_for("a sync with a new token", Duration::from_secs(60), in_sync);
    w.assert_fsck(&widget);
    let refused = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(PROPERTIES_ROUTE) && r.status == 401)
        .count();
    assert_eq!(refused, 1, "one property read refused, then a new token");
    assert_eq!(api.count("POST", TOKENS_ROUTE), 2);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("ghs_acme") && !text.contains("BEGIN"),
        "a secret in the log:\n{text}"
    );
    api.assert_no_violations();
}
