//! GitHub App authentication, end to end: `kalandra sync --config` (and `watch`) get
//! installation tokens from the contract-test GitHub API (`tests/forge/server.js`, which checks
//! every request against GitHub's OpenAPI description and verifies the app's JWT with node's
//! own crypto) and push through the real nginx + http-backend, whose `/github/OWNER/` location
//! accepts only `x-access-token` with OWNER's installation token.
//!
//! Every mirror that succeeds is checked end to end (refs equal, `git fsck`), every test ends
//! with zero contract violations, and no output holds a token or a key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::github_api::{app_key, github_git, github_repo, AppKey, GithubApi};
use crate::harness::{kalandra_bin, Run, Scope, World};
use crate::nginx::Nginx;

pub(crate) const TOKENS_ROUTE: &str = "/app/installations/{installation_id}/access_tokens";
const INSTALLATION_ROUTE: &str = "/repos/{owner}/{repo}/installation";

/// A TOML basic string.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialize")
}

/// An app on one account, with its tokens (the first is what nginx accepts at first).
pub(crate) fn app(
    id: u64,
    key: &AppKey,
    installation: u64,
    account: &str,
    tokens: &[&str],
) -> Value {
    json!({
        "id": id,
        "public_key_pem": key.public_pem,
        "installations": [{ "id": installation, "account": account, "tokens": tokens }],
    })
}

/// A `[[github_app]]` table for the contract server and nginx's `/github/` location.
pub(crate) fn app_table(
    id: u64,
    key: &str,
    owners: &[&str],
    api: &GithubApi,
    git_base: &str,
) -> String {
    let git_host = git_base
        .strip_prefix("http://")
        .expect("nginx's base is http://");
    format!(
        "[[github_app]]\napp_id = {id}\n{key}\nowners = {}\napi_url = {}\ngit_host = {}\n\n",
        serde_json::to_string(owners).expect("serializes"),
        quoted(&api.url()),
        quoted(git_host),
    )
}

pub(crate) fn mirror(name: &str, upstream: &str, downstream: &str) -> String {
    format!(
        "[[mirror]]\nname = {}\nupstream = {}\ndownstream = {}\nretries = 0\n\n",
        quoted(name),
        quoted(upstream),
        quoted(downstream)
    )
}

pub(crate) fn fixture_upstream(w: &World) -> PathBuf {
    w.fixture("mirror.sh").join("upstream-bare.git")
}

pub(crate) fn write_config(w: &World, text: &str) -> PathBuf {
    let path = w.root().join("mirrors.toml");
    std::fs::write(&path, text).expect("can write the config");
    path
}

pub(crate) fn sync_config(w: &World, config: &Path, env: &[(&str, &str)]) -> Run {
    let mut all: Vec<(&str, Option<std::ffi::OsString>)> = vec![
        ("SSH_AUTH_SOCK", None),
        ("KALANDRA_LOG", None),
        ("KALANDRA_UPSTREAM_TOKEN", None),
        ("KALANDRA_DOWNSTREAM_TOKEN", None),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, Some((*v).into()))));
    w.kalandra_env(
        w.root(),
        &[
            "sync",
            "--config",
            config.to_str().expect("UTF-8"),
            "--json",
            "--jobs",
            "8",
        ],
        &w.global_config(),
        &all,
    )
}

pub(crate) fn report(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"))
}

pub(crate) fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["mirrors"]
        .as_array()
        .expect("mirrors is an array")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no mirror {name}: {report}"))
}

/// No secret in anything Kalandra printed.
#[track_caller]
pub(crate) fn assert_no_secrets(run: &Run, secrets: &[&str]) {
    for secret in secrets.iter().chain(&["BEGIN RSA", "BEGIN PRIVATE", "eyJ"]) {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} was printed: {run}"
        );
    }
}

#[test]
fn two_apps_for_two_orgs_each_use_their_own_installation_token() {
    let w = World::new();
    let (acme_key, globex_key) = (app_key(&w, "acme"), app_key(&w, "globex"));
    let scenario = json!({
        "apps": [
            app(1001, &acme_key, 501, "acme", &["ghs_acme_token_0000000000000000000000000"]),
            app(2002, &globex_key, 602, "globex", &["ghs_globex_token_000000000000000000000000"]),
        ],
    });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let up = fixture_upstream(&w);
    let acme_down = github_repo(&w, "acme", "widget");
    let globex_down = github_repo(&w, "globex", "gadget");
    // acme's repository, read back through the app as an upstream.
    let back = w.root().join("back.git");
    w.git(w.root(), &["init", "-q", "--bare", "back.git"]);
    let pem = std::fs::read_to_string(&globex_key.pkcs8).expect("the key");
    let config = format!(
        "{}{}{}{}{}",
        app_table(
            1001,
            &format!(
                "key_file = {}",
                quoted(&acme_key.pkcs1.display().to_string())
            ),
            &["acme"],
            &api,
            &base
        ),
        app_table(2002, "key_env = \"GLOBEX_KEY\"", &["globex"], &api, &base),
        mirror(
            "to-acme",
            &up.display().to_string(),
            &format!("{base}/acme/widget.git")
        ),
        mirror(
            "to-globex",
            &up.display().to_string(),
            &format!("{base}/globex/gadget.git")
        ),
        "",
    );
    let run = sync_config(&w, &write_config(&w, &config), &[("GLOBEX_KEY", &pem)]);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &acme_down);
    w.assert_in_sync(&up, &globex_down);
    // Then acme's repository as an upstream (read with acme's token, cached in a new
    // process), into a local downstream.
    let back_config = format!(
        "{config}{}",
        mirror(
            "from-acme",
            &format!("{base}/acme/widget.git"),
            &back.display().to_string()
        )
    );
    let again = sync_config(&w, &write_config(&w, &back_config), &[("GLOBEX_KEY", &pem)]);
    assert_eq!(again.code, 0, "{again}");
    w.assert_in_sync(&acme_down, &back);

    let tokens: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.route.as_deref() == Some(TOKENS_ROUTE))
        .collect();
    // One per app per process: two in the first run, two in the second.
    let ids: Vec<(Option<u64>, String)> =
        tokens.iter().map(|r| (r.app_id, r.path.clone())).collect();
    assert_eq!(tokens.len(), 4, "{ids:?}");
    for r in &tokens {
        assert_eq!((r.auth.as_str(), r.status), ("jwt", 201), "{:?}", r.raw);
        let expected = match r.app_id {
            Some(1001) => "/app/installations/501/access_tokens",
            Some(2002) => "/app/installations/602/access_tokens",
            other => panic!("a token request by {other:?}"),
        };
        assert_eq!(r.path, expected);
    }
    for run in [&run, &again] {
        assert_no_secrets(
            run,
            &[
                "ghs_acme_token",
                "ghs_globex_token",
                pem.lines().nth(1).unwrap_or("x"),
            ],
        );
    }
    api.assert_no_violations();
}

#[test]
fn twenty_mirrors_of_one_org_make_one_token_request() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let scenario = json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_acme_only_one"])] });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let up = fixture_upstream(&w);
    let mut config = app_table(
        1001,
        &format!("key_file = {}", quoted(&key.pkcs8.display().to_string())),
        &["acme"],
        &api,
        &base,
    );
    let downs: Vec<PathBuf> = (0..20)
        .map(|i| {
            config.push_str(&mirror(
                &format!("m{i}"),
                &up.display().to_string(),
                &format!("{base}/acme/r{i}.git"),
            ));
            github_repo(&w, "acme", &format!("r{i}"))
        })
        .collect();
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_eq!(run.code, 0, "{run}");
    for down in &downs {
        w.assert_in_sync(&up, down);
    }
    assert_eq!(api.count("POST", TOKENS_ROUTE), 1, "{:#?}", api.requests());
    // The owner's installation is looked up once too.
    assert_eq!(api.count("GET", INSTALLATION_ROUTE), 1);
    assert_no_secrets(&run, &["ghs_acme_only_one"]);
    api.assert_no_violations();
}

/// A running `kalandra watch`, killed on drop.
pub(crate) struct Watching(pub(crate) Child);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// `kalandra watch --config <config>` on a free port, isolated as the other runs are; its
/// stderr goes to the returned log file.
pub(crate) fn start_watch(w: &World, config: &Path) -> (Watching, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = w.root().join("watch.log");
    let mut cmd = Command::new(kalandra_bin());
    cmd.args(["watch", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(w.root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("can create the log"));
    w.isolate(&mut cmd, &w.global_config());
    (
        Watching(cmd.spawn().expect("can start kalandra watch")),
        log,
    )
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_watch_requests_a_new_token_when_the_old_one_is_due() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let mut scenario =
        json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_acme_first", "ghs_acme_second"])] });
    // Twenty seconds of life: Kalandra replaces it at half life, ten seconds on.
    scenario["apps"][0]["installations"][0]["expires_in"] = json!(20);
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let work = w.root().join("work");
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
    let up = w.root().join("up.git");
    let down = github_repo(&w, "acme", "watched");
    let config = format!(
        "{}{}interval = \"1s\"\n",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme"],
            &api,
            &base
        ),
        mirror(
            "watched",
            &up.display().to_string(),
            &format!("{base}/acme/watched.git")
        ),
    );
    let config = write_config(&w, &config);
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
    let _watch = Watching(cmd.spawn().expect("can start kalandra watch"));
    let in_sync = || {
        let scope = Scope::new(&[], &[]);
        scope.filter(&w.refs(&down)) == scope.filter(&w.refs(&up))
    };
    wait_for("the first sync", Duration::from_secs(60), in_sync);
    w.assert_fsck(&down);
    assert_eq!(api.count("POST", TOKENS_ROUTE), 1);
    // Syncs every second meanwhile reuse the token: still one request two seconds on.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api.count("POST", TOKENS_ROUTE), 1);

    // From now on nginx takes only the second token; upstream moves on.
    nginx.set_github_token("acme", "ghs_acme_second");
    std::fs::create_dir_all(&work).expect("mkdir");
    w.git(
        w.root(),
        &["clone", "-q", up.to_str().expect("UTF-8"), "work"],
    );
    w.commit_file(
        &work,
        "after-expiry.txt",
        "new\n",
        "after the token's refresh",
    );
    w.git(&work, &["push", "-q", "origin", "HEAD"]);
    wait_for(
        "a sync with the second token",
        Duration::from_secs(60),
        in_sync,
    );
    w.assert_fsck(&down);
    let tokens = api.count("POST", TOKENS_ROUTE);
    assert!(tokens >= 2, "{tokens} token request(s)");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !text.contains("ghs_acme") && !text.contains("BEGIN"),
        "a secret in the log:\n{text}"
    );
    api.assert_no_violations();
}

#[test]
fn a_watch_asks_for_a_new_token_once_git_refuses_a_revoked_one() {
    let w = World::new();
    let key = app_key(&w, "acme");
    // Tokens live an hour: only the revocation can make Kalandra ask again.
    let scenario =
        json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_acme_first", "ghs_acme_second"])] });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
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
    let up = w.root().join("up.git");
    let down = github_repo(&w, "acme", "watched");
    let config = format!(
        "{}{}interval = \"1s\"\n",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme"],
            &api,
            &base
        ),
        mirror(
            "watched",
            &up.display().to_string(),
            &format!("{base}/acme/watched.git")
        ),
    );
    let (_watch, log) = start_watch(&w, &write_config(&w, &config));
    let in_sync = || {
        let scope = Scope::new(&[], &[]);
        scope.filter(&w.refs(&down)) == scope.filter(&w.refs(&up))
    };
    wait_for("the first sync", Duration::from_secs(60), in_sync);
    assert_eq!(api.count("POST", TOKENS_ROUTE), 1);

    // The first token is revoked long before it expires; git takes only the second now.
    api.revoke_token("ghs_acme_first");
    assert_eq!(
        api.get("/orgs/acme/repos", Some("token ghs_acme_first"))
            .status,
        401
    );
    nginx.set_github_token("acme", "ghs_acme_second");
    w.git(
        w.root(),
        &["clone", "-q", up.to_str().expect("UTF-8"), "work"],
    );
    let work = w.root().join("work");
    w.commit_file(&work, "revoked.txt", "new\n", "after the revocation");
    w.git(&work, &["push", "-q", "origin", "HEAD"]);
    wait_for("a sync with a new token", Duration::from_secs(60), in_sync);
    w.assert_fsck(&down);
    // One more token request, and the new token is kept: syncs every second meanwhile.
    assert_eq!(api.count("POST", TOKENS_ROUTE), 2);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(api.count("POST", TOKENS_ROUTE), 2);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(
        !text.contains("ghs_acme") && !text.contains("BEGIN"),
        "a secret in the log:\n{text}"
    );
    api.assert_no_violations();
}

/// One mirror into acme through app 1001, with `scenario` changed by `change`; the run's
/// report entry for it.
fn one_failing_mirror(change: impl FnOnce(&mut Value)) -> (Value, Run, GithubApi, World) {
    let w = World::new();
    let key = app_key(&w, "acme");
    let mut scenario = json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_acme_token"])] });
    change(&mut scenario);
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    github_repo(&w, "acme", "widget");
    let config = format!(
        "{}{}",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme"],
            &api,
            &base
        ),
        mirror(
            "to-acme",
            &fixture_upstream(&w).display().to_string(),
            &format!("{base}/acme/widget.git")
        ),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    let entry = entry(&report(&run), "to-acme").clone();
    assert_no_secrets(&run, &["ghs_acme_token"]);
    api.assert_no_violations();
    drop(nginx);
    (entry, run, api, w)
}

#[test]
fn an_uninstalled_app_is_a_permanent_auth_error_naming_the_org() {
    let (entry, run, api, _w) = one_failing_mirror(|s| s["apps"][0]["uninstalled"] = json!(true));
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(entry["error_kind"], "auth", "{entry}");
    assert_eq!(entry["attempts"], 1, "{entry}");
    let error = entry["error"].as_str().expect("an error");
    assert!(
        error.contains("the GitHub App 1001 is not installed on acme"),
        "{error}"
    );
    assert_eq!(api.count("POST", TOKENS_ROUTE), 0);
}

#[test]
fn a_revoked_key_is_an_auth_error_naming_the_app_and_key_file() {
    let (entry, run, _api, w) = one_failing_mirror(|s| s["apps"][0]["revoked"] = json!(true));
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(entry["error_kind"], "auth", "{entry}");
    let error = entry["error"].as_str().expect("an error");
    let key_file = w.root().join("app-keys/acme.pkcs1.pem");
    assert!(error.contains("GitHub App 1001"), "{error}");
    assert!(error.contains(&key_file.display().to_string()), "{error}");
    assert!(error.contains("HTTP 401"), "{error}");
}

#[test]
fn a_rate_limit_past_a_minute_is_unavailable_with_the_reset() {
    let (entry, run, api, _w) = one_failing_mirror(|s| {
        s["faults"] = json!({ "rate_limit": { "routes": [INSTALLATION_ROUTE], "reset_in": 3600 } })
    });
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(entry["error_kind"], "unavailable", "{entry}");
    let error = entry["error"].as_str().expect("an error");
    assert!(error.contains("rate limit"), "{error}");
    // Not waited for: one request, no retry (retries = 0).
    assert_eq!(api.count("GET", INSTALLATION_ROUTE), 1);
}

#[test]
fn a_rate_limit_that_resets_within_a_minute_is_waited_out() {
    let (entry, run, api, w) = one_failing_mirror(|s| {
        s["faults"] =
            json!({ "rate_limit": { "routes": [INSTALLATION_ROUTE], "reset_in": 2, "times": 1 } })
    });
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(
        &w.root().join("mirror/upstream-bare.git"),
        &w.root().join("github/acme/widget.git"),
    );
    assert_eq!(entry["ok"], true, "{entry}");
    assert_eq!(entry["attempts"], 1, "waited inside the attempt: {entry}");
    let lookups: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.route.as_deref() == Some(INSTALLATION_ROUTE))
        .map(|r| r.status)
        .collect();
    assert_eq!(lookups, [403, 200]);
}

#[test]
fn config_list_names_the_app_of_each_side_and_checks_the_key() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let text = format!(
        "[defaults]\ndownstream_token_env = \"SOME_TOKEN\"\n\n\
         [[github_app]]\napp_id = 1001\nkey_file = {}\nowners = [\"acme\"]\n\n\
         [[github_app]]\nclient_id = \"Iv1.partner\"\nkey_env = \"PARTNER_KEY\"\nowners = [\"partner/*\"]\n\n{}{}",
        quoted(&key.pkcs8.display().to_string()),
        mirror("in", "https://github.com/partner/lib.git", "https://github.com/acme/lib.git"),
        mirror("own", "https://github.com/acme/x.git", "https://gitlab.example/x.git"),
    );
    let config = write_config(&w, &text);
    let pem = std::fs::read_to_string(&key.pkcs1).expect("the key");
    let env = [
        ("SOME_TOKEN", Some("t".into())),
        ("PARTNER_KEY", Some(pem.clone().into())),
    ];
    let run = w.kalandra_env(
        w.root(),
        &["config", "list", "--json", config.to_str().expect("UTF-8")],
        &w.global_config(),
        &env,
    );
    assert_eq!(run.code, 0, "{run}");
    let doc = report(&run);
    let (inside, own) = (entry(&doc, "in"), entry(&doc, "own"));
    assert_eq!(inside["upstream_github_app"], "Iv1.partner", "{doc}");
    assert_eq!(inside["downstream_github_app"], "1001", "{doc}");
    // The app replaces the [defaults] token on its side only.
    assert_eq!(inside["downstream_token"], Value::Null, "{doc}");
    assert_eq!(own["upstream_github_app"], "1001", "{doc}");
    assert_eq!(own["downstream_github_app"], Value::Null, "{doc}");
    assert_eq!(
        own["downstream_token"],
        json!({ "env": "SOME_TOKEN" }),
        "{doc}"
    );
    assert!(!run.stdout.contains("BEGIN"), "{run}");

    // A variable that holds no key is refused where it is named, before anything connects.
    let env = [
        ("SOME_TOKEN", Some("t".into())),
        ("PARTNER_KEY", Some("not a key".into())),
    ];
    let run = w.kalandra_env(
        w.root(),
        &["config", "check", config.to_str().expect("UTF-8")],
        &w.global_config(),
        &env,
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "{}:11:11: `key_env`: $PARTNER_KEY holds no RSA private key",
            config.display()
        )),
        "{run}"
    );
}

/// A `proc-receive` hook (githooks(5)) that refuses every ref with GitHub's words for a
/// workflow change pushed by an app without the Workflows permission: receive-pack sends
/// the hook's reason to the client as the ref's `ng` reason, as GitHub does.
const REFUSE_WORKFLOWS: &str = r#"#!/bin/bash
reason='refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` without `workflows` permission'
readpkt() {
  local len
  len=$(dd bs=1 count=4 2>/dev/null)
  [ "$len" = "0000" ] && return 1
  dd bs=1 count=$((16#$len - 4)) 2>/dev/null | tr -d '\000\n'
}
pkt() { printf '%04x%s' $((${#1} + 4)) "$1"; }
while readpkt >/dev/null; do :; done
printf '000eversion=1'
printf '\0'
printf '0000'
refs=()
while line=$(readpkt); do refs+=("${line##* }"); done
for ref in "${refs[@]}"; do pkt "ng $ref $reason"; done
printf '0000'
"#;

#[test]
fn a_refused_workflow_change_is_explained() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let scenario = json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_acme_token"])] });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let down = github_repo(&w, "acme", "widget");
    w.git(&down, &["config", "receive.procReceiveRefs", "refs/"]);
    w.install_hook(&down, "proc-receive", REFUSE_WORKFLOWS);
    let config = format!(
        "{}{}",
        app_table(
            1001,
            &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
            &["acme"],
            &api,
            &base
        ),
        mirror(
            "to-acme",
            &fixture_upstream(&w).display().to_string(),
            &format!("{base}/acme/widget.git")
        ),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_ne!(run.code, 0, "{run}");
    let doc = report(&run);
    let entry = entry(&doc, "to-acme");
    assert_eq!(entry["error_kind"], "rejected", "{entry}");
    let error = entry["error"].as_str().expect("an error");
    assert!(error.contains("without `workflows` permission"), "{error}");
    assert!(
        error.contains("hint: GitHub lets a GitHub App push changes under .github/workflows/ only with the Workflows (read and write) permission"),
        "{error}"
    );
    assert!(w.refs(&down).is_empty(), "nothing landed");
    api.assert_no_violations();
}

#[test]
fn a_secondary_rate_limit_on_the_token_request_is_waited_out() {
    let (entry, run, api, _w) = one_failing_mirror(|s| {
        s["faults"] = json!({ "rate_limit": {
            "routes": [format!("POST {TOKENS_ROUTE}")], "reset_in": 2, "times": 1, "secondary": true,
        } })
    });
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        (&entry["ok"], &entry["attempts"]),
        (&json!(true), &json!(1)),
        "{entry}"
    );
    let tokens: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.route.as_deref() == Some(TOKENS_ROUTE))
        .map(|r| r.status)
        .collect();
    assert_eq!(tokens, [403, 201]);
}

#[test]
fn a_server_error_on_the_token_request_is_unavailable() {
    let (entry, run, _api, _w) = one_failing_mirror(
        |s| s["faults"] = json!({ "errors": [{ "route": format!("POST {TOKENS_ROUTE}"), "status": 502, "times": 1 }] }),
    );
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(entry["error_kind"], "unavailable", "{entry}");
    let error = entry["error"].as_str().expect("an error");
    assert!(error.contains("answered HTTP 502"), "{error}");
}

#[test]
fn mirrors_after_the_first_to_hit_a_rate_limit_fail_without_asking_again() {
    let w = World::new();
    let key = app_key(&w, "acme");
    let scenario = json!({
        "apps": [app(1001, &key, 501, "acme", &["ghs_acme_token"])],
        "faults": { "rate_limit": { "routes": [INSTALLATION_ROUTE], "reset_in": 3600 } },
    });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let up = fixture_upstream(&w);
    let mut config = app_table(
        1001,
        &format!("key_file = {}", quoted(&key.pkcs1.display().to_string())),
        &["acme"],
        &api,
        &base,
    );
    for name in ["a", "b", "c"] {
        github_repo(&w, "acme", name);
        config.push_str(&mirror(
            name,
            &up.display().to_string(),
            &format!("{base}/acme/{name}.git"),
        ));
    }
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_ne!(run.code, 0, "{run}");
    let doc = report(&run);
    for name in ["a", "b", "c"] {
        assert_eq!(entry(&doc, name)["error_kind"], "unavailable", "{doc}");
    }
    assert_eq!(
        api.count("GET", INSTALLATION_ROUTE),
        1,
        "{:#?}",
        api.requests()
    );
    api.assert_no_violations();
}

#[test]
fn an_enterprise_server_app_by_client_id_uses_its_api_url() {
    let w = World::new();
    let key = app_key(&w, "ghes");
    let scenario = json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_ghes_token"])] });
    let api = GithubApi::start(&w, &scenario);
    let nginx = Nginx::start(&w);
    let base = github_git(&nginx, &scenario);
    let up = fixture_upstream(&w);
    let down = github_repo(&w, "acme", "widget");
    let config = format!(
        "[[github_app]]\nclient_id = \"Iv1.0000000000001001\"\nkey_file = {}\nowners = [\"acme/widget\"]\napi_url = {}\ngit_host = {}\n\n{}",
        quoted(&key.pkcs1.display().to_string()),
        quoted(&api.enterprise_url()),
        quoted(base.strip_prefix("http://").expect("http")),
        mirror("ghes", &up.display().to_string(), &format!("{base}/acme/widget.git")),
    );
    let run = sync_config(&w, &write_config(&w, &config), &[]);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &down);
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for r in &requests {
        assert_eq!(
            (r.prefix.as_str(), r.auth.as_str(), r.app_id),
            ("/api/v3", "jwt", Some(1001)),
            "{:?}",
            r.raw
        );
    }
    api.assert_no_violations();
}

/// GitHub Enterprise Server's shape: the API at `https://HOST/api/v3` beside the git data,
/// both behind nginx's TLS with a private CA that only git's `GIT_SSL_CAINFO` trusts. The
/// API client takes git's TLS settings for `api_url`, so the one setting serves both.
#[test]
fn an_enterprise_server_over_tls_is_trusted_through_gits_ca_setting() {
    let w = World::new();
    let key = app_key(&w, "ghes");
    let scenario = json!({ "apps": [app(1001, &key, 501, "acme", &["ghs_ghes_tls_token"])] });
    let api = GithubApi::start(&w, &scenario);
    api.behind_nginx(&w);
    let nginx = Nginx::start(&w);
    github_git(&nginx, &scenario);
    let host = format!("127.0.0.1:{}", nginx.tls_port);
    let up = fixture_upstream(&w);
    let down = github_repo(&w, "acme", "widget");
    let config = format!(
        "[[github_app]]\napp_id = 1001\nkey_file = {}\nowners = [\"acme\"]\napi_url = \"https://{host}/api/v3\"\ngit_host = \"{host}/github\"\n\n{}",
        quoted(&key.pkcs8.display().to_string()),
        mirror("ghes", &up.display().to_string(), &format!("https://{host}/github/acme/widget.git")),
    );
    let config = write_config(&w, &config);
    // Without the CA the API's certificate is not trusted: no request reaches the API.
    let untrusted = sync_config(&w, &config, &[]);
    assert_ne!(untrusted.code, 0, "{untrusted}");
    let doc = report(&untrusted);
    assert_eq!(entry(&doc, "ghes")["error_kind"], "host-key", "{doc}");
    assert!(api.requests().is_empty());

    let ca = nginx.ca.display().to_string();
    let run = sync_config(&w, &config, &[("GIT_SSL_CAINFO", &ca)]);
    assert_eq!(run.code, 0, "{run}");
    w.assert_in_sync(&up, &down);
    let requests = api.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(requests
        .iter()
        .all(|r| r.prefix == "/api/v3" && r.auth == "jwt"));
    api.assert_no_violations();
}
