//! Every message of the config parser, on strings, with its line and column.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const CONFIG: &str = "conf/mirrors.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "UP_TOKEN" => Some("s3cret-up".into()),
        "EMPTY" => Some(String::new()),
        "APP_KEY" => {
            Some(include_str!("../../tests/fixtures/github-app-test-key.pkcs1.pem").into())
        }
        _ => None,
    }
}

fn read(path: &Path) -> io::Result<String> {
    let text = match path.to_str() {
        Some("conf/token") | Some("/run/secrets/down") => "t0ken\n",
        Some("conf/repos.txt") => "# the team's repositories\napi\n\n  web\ntools/cli\n",
        Some("conf/bad-repos.txt") => "api\nnot ok\n  ../etc\n-x\n",
        _ => return Err(io::ErrorKind::NotFound.into()),
    };
    Ok(text.to_owned())
}

fn parsed(text: &str) -> Result<Fleet, Errors> {
    parse(text, Path::new(CONFIG), &env, &read)
}

fn fleet(text: &str) -> Fleet {
    parsed(text).unwrap_or_else(|e| panic!("the config is valid, but:\n{e}"))
}

/// Each diagnostic as the CLI prints it.
fn errors(text: &str) -> Vec<String> {
    match parsed(text) {
        Ok(fleet) => panic!("the config is invalid, but it gave {:?}", fleet.mirrors),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const ONE: &str = r#"
[[mirror]]
name = "git"
upstream = "https://github.com/git/git.git"
downstream = "ssh://git@backup.example/git.git"
"#;

fn local(path: &str) -> RepoUrl {
    RepoUrl::Local {
        path: PathBuf::from(path),
        url: None,
    }
}

#[test]
fn config_mirror_takes_the_documented_defaults() {
    let fleet = fleet(ONE);
    assert_eq!(fleet.path, Path::new(CONFIG));
    let [mirror] = &fleet.mirrors[..] else {
        panic!("one mirror: {:?}", fleet.mirrors)
    };
    assert_eq!(
        *mirror,
        Mirror {
            name: "git".into(),
            upstream: RepoUrl::parse("https://github.com/git/git.git").expect("valid"),
            downstream: RepoUrl::parse("ssh://git@backup.example/git.git").expect("valid"),
            upstream_property: None,
            include: vec![],
            exclude: vec![],
            prune: true,
            divergence: Divergence::Force,
            immutable_tags: false,
            atomic: false,
            allow_mass_delete: false,
            connect_timeout: None,
            idle_timeout: None,
            low_speed_limit: None,
            low_speed_time: None,
            max_duration: None,
            upstream_token: None,
            downstream_token: None,
            upstream_app: None,
            downstream_app: None,
            downstream_gitlab: None,
            create_missing: false,
            create_visibility: Visibility::Private,
            follow_head: false,
            retries: DEFAULT_RETRIES,
            max_pack_bytes: None,
            max_refs_per_push: Some(crate::batch::DEFAULT_MAX_REFS),
            lfs: crate::lfs::Mode::Auto,
            lfs_urls: crate::lfs::Endpoints::default(),
            interval: DEFAULT_INTERVAL,
            webhook_secret: None,
            origin: Origin {
                line: 2,
                template: None
            },
        }
    );
}

#[test]
fn config_mirror_keys_override_defaults() {
    let fleet = fleet(
        r#"
[defaults]
include = ["refs/heads/*"]
prune = false
divergence = "ff-only"
connect_timeout = "10s"
idle_timeout = 120
low_speed_limit = 1000
low_speed_time = "1m"
max_duration = "1h"
upstream_token_env = "UP_TOKEN"
retries = 5
atomic = true

[[mirror]]
name = "a"
upstream = "/srv/a"
downstream = "/srv/a-mirror.git"

[[mirror]]
name = "b"
upstream = "/srv/b"
downstream = "/srv/b-mirror.git"
prune = true
divergence = "keep"
exclude = ["refs/heads/wip/*"]
upstream_token_file = "token"
retries = 0
immutable_tags = true
allow_mass_delete = true
create_missing = true
"#,
    );
    let [a, b] = &fleet.mirrors[..] else {
        panic!("two mirrors: {:?}", fleet.mirrors)
    };
    assert_eq!(a.include, ["refs/heads/*"]);
    assert!(!a.prune && a.atomic);
    assert_eq!(a.divergence, Divergence::FfOnly);
    assert_eq!(a.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(a.idle_timeout, Some(Duration::from_secs(120)));
    assert_eq!(a.low_speed_limit, Some(1000));
    assert_eq!(a.low_speed_time, Some(Duration::from_secs(60)));
    assert_eq!(a.max_duration, Some(Duration::from_secs(3600)));
    assert_eq!(a.upstream_token, Some(SecretRef::Env("UP_TOKEN".into())));
    assert_eq!(a.retries, 5);

    assert_eq!(
        b.include,
        ["refs/heads/*"],
        "untouched defaults still apply"
    );
    assert_eq!(b.exclude, ["refs/heads/wip/*"]);
    assert!(b.prune && b.immutable_tags && b.allow_mass_delete && b.create_missing);
    assert_eq!(b.divergence, Divergence::Keep);
    assert_eq!(
        b.upstream_token,
        Some(SecretRef::File("conf/token".into())),
        "a mirror's token file replaces the default token variable, and is found beside the config"
    );
    assert_eq!(b.retries, 0);
    assert_eq!(b.origin.line, 20);
}

#[test]
fn config_template_expands_each_name_in_order() {
    let fleet = fleet(
        r#"
[[template]]
names = ["api", "web"]
name = "acme-{name}"
upstream = "https://gitlab.example/acme/{name}.git"
downstream = "git@github.com:acme-mirror/{name}.git"
downstream_token_file = "/run/secrets/down"

[[mirror]]
name = "git"
upstream = "https://github.com/git/git.git"
downstream = "ssh://git@backup.example/git.git"

[[template]]
names = ["x"]
upstream = "up/{name}"
downstream = "down/{name}.git"
"#,
    );
    let summary: Vec<_> = fleet
        .mirrors
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.upstream.to_string(),
                m.downstream.to_string(),
                m.origin.clone(),
            )
        })
        .collect();
    let origin = |line, template| Origin { line, template };
    assert_eq!(
        summary,
        [
            (
                "git",
                "https://github.com/git/git.git".into(),
                "ssh://git@backup.example/git.git".into(),
                origin(9, None)
            ),
            (
                "acme-api",
                "https://gitlab.example/acme/api.git".into(),
                "ssh://git@github.com/acme-mirror/api.git".into(),
                origin(2, Some(0))
            ),
            (
                "acme-web",
                "https://gitlab.example/acme/web.git".into(),
                "ssh://git@github.com/acme-mirror/web.git".into(),
                origin(2, Some(0))
            ),
            (
                "x",
                "conf/up/x".into(),
                "conf/down/x.git".into(),
                origin(14, Some(1))
            ),
        ]
    );
    assert_eq!(
        fleet.mirrors[1].downstream_token,
        Some(SecretRef::File("/run/secrets/down".into()))
    );
}

#[test]
fn config_names_file_skips_blanks_and_comments_beside_the_config() {
    let fleet = fleet(
        r#"
[[template]]
names_file = "repos.txt"
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/mirrors/{name}.git"
"#,
    );
    let names: Vec<_> = fleet.mirrors.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["api", "web", "tools/cli"]);
    assert_eq!(
        fleet.mirrors[2].downstream,
        local("/srv/mirrors/tools/cli.git")
    );
}

#[test]
fn config_bad_names_are_reported_where_they_stand() {
    assert_eq!(
        errors(
            r#"
[[template]]
names_file = "bad-repos.txt"
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/{name}.git"

[[template]]
names = ["ok", "", "a b"]
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/{name}.git"
"#
        ),
        [
            "conf/mirrors.toml:8:16: invalid name \"\" in `names`: it is empty",
            "conf/mirrors.toml:8:20: invalid name \"a b\" in `names`: names hold only letters, digits, '.', '_', '-' and '/'",
            "conf/bad-repos.txt:2:1: invalid name \"not ok\": names hold only letters, digits, '.', '_', '-' and '/'",
            "conf/bad-repos.txt:3:3: invalid name \"../etc\": it contains \"..\"",
            "conf/bad-repos.txt:4:1: invalid name \"-x\": it begins with '-' or '/'",
        ]
    );
}

#[test]
fn config_template_needs_exactly_one_source_of_names() {
    assert_eq!(
        errors(
            r#"
[[template]]
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/{name}.git"

[[template]]
names = ["a"]
names_file = "repos.txt"
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/{name}.git"

[[template]]
names_file = "missing.txt"
upstream = "https://gitlab.example/{name}.git"
downstream = "/srv/{name}.git"
"#
        ),
        [
            "conf/mirrors.toml:2:1: [[template]] has no `names` or `names_file`",
            "conf/mirrors.toml:8:14: a [[template]] takes `names` or `names_file`, not both",
            "conf/mirrors.toml:13:14: `names_file`: cannot read conf/missing.txt: entity not found",
        ]
    );
}

#[test]
fn config_unknown_keys_are_reported_with_a_suggestion_when_close() {
    assert_eq!(
        errors(
            r#"
[defualts]
prune = false

[defaults]
divergance = "keep"
name = "x"

[[mirror]]
name = "git"
upstream = "/srv/git"
downstream = "/srv/git.git"
colour = "blue"
names = ["a"]

prune = true
"#
        ),
        [
            "conf/mirrors.toml:2:2: unknown key `defualts`: did you mean `defaults`?",
            "conf/mirrors.toml:6:1: unknown key `divergance`: did you mean `divergence`?",
            "conf/mirrors.toml:7:1: `name` cannot be a default: set it in each [[mirror]] or [[template]]",
            "conf/mirrors.toml:13:1: unknown key `colour`",
            "conf/mirrors.toml:14:1: `names` belongs in a [[template]], not in [[mirror]]",
        ],
        "`prune` after a [[mirror]] belongs to that mirror, and is valid there"
    );
    assert_eq!(
        errors("prune = true\nmirrors = []\n"),
        [
            "conf/mirrors.toml:1:1: `prune` is a per-mirror key: set it in [defaults], a [[mirror]] or a [[template]]",
            "conf/mirrors.toml:2:1: unknown key `mirrors`: did you mean `mirror`?",
        ]
    );
}

#[test]
fn config_wrong_types_name_the_expected_one() {
    assert_eq!(
        errors(
            r#"
defaults = 3
[[mirror]]
name = 1
upstream = "/srv/git"
downstream = "/srv/git.git"
prune = "no"
include = "refs/heads/*"
exclude = ["refs/tags/*", 2]
retries = -1
low_speed_limit = "1k"
"#
        ),
        [
            "conf/mirrors.toml:2:12: `defaults` must be a table ([defaults]), not an integer",
            "conf/mirrors.toml:4:8: `name` must be a string, not an integer",
            "conf/mirrors.toml:7:9: `prune` must be true or false, not a string",
            "conf/mirrors.toml:8:11: `include` must be an array of strings, not a string",
            "conf/mirrors.toml:9:27: `exclude` holds strings, not an integer",
            "conf/mirrors.toml:10:11: `retries` must be 0 or more, not -1",
            "conf/mirrors.toml:11:19: `low_speed_limit` must be an integer, not a string",
        ],
        "a key of the wrong type is not reported missing as well"
    );
}

#[test]
fn config_mirror_and_template_tables_must_be_arrays_of_tables() {
    assert_eq!(
        errors("[mirror]\nname = \"x\"\n\n[[template]]\n\ntemplate2 = 1\n"),
        [
            "conf/mirrors.toml:1:1: `mirror` must be an array of tables ([[mirror]]), not a table",
            "conf/mirrors.toml:4:1: [[template]] has no `names` or `names_file`",
            "conf/mirrors.toml:4:1: [[template]] has no `upstream`",
            "conf/mirrors.toml:4:1: [[template]] has no `downstream`",
            "conf/mirrors.toml:6:1: unknown key `template2`",
        ]
    );
    assert_eq!(
        errors("mirror = [1]\n"),
        ["conf/mirrors.toml:1:11: each [[mirror]] must be a table, not an integer"]
    );
}

#[test]
fn config_missing_keys_are_reported_at_the_header() {
    assert_eq!(
        errors("\n\n[[mirror]]\nprune = true\n"),
        [
            "conf/mirrors.toml:3:1: [[mirror]] has no `name`",
            "conf/mirrors.toml:3:1: [[mirror]] has no `upstream`",
            "conf/mirrors.toml:3:1: [[mirror]] has no `downstream`",
        ]
    );
}

#[test]
fn config_bad_urls_quote_the_url_parser() {
    assert_eq!(
        errors(
            r#"
[[mirror]]
name = "a"
upstream = "nosuch://host/repo.git"
downstream = "ext::sh -c evil"

[[template]]
names = ["a1", "a2"]
upstream = "-{name}"
downstream = "/srv/{name}.git"
"#
        ),
        [
            "conf/mirrors.toml:4:12: invalid `upstream`: unsupported URL scheme \"nosuch\" in \"nosuch://host/repo.git\": expected file://, ssh://, git://, http:// or https://",
            "conf/mirrors.toml:5:14: invalid `downstream`: unsupported transport \"ext\" in \"ext::sh -c evil\": kalandra speaks file, ssh, git and http(s) itself and runs no remote helper (<transport>::<address>)",
            "conf/mirrors.toml:9:12: invalid `upstream`: refusing path \"-a1\": it begins with '-' and would be read as an option",
        ],
        "a template's broken side is reported once, not once per name"
    );
}

#[test]
fn config_duplicate_names_point_at_the_second_and_name_the_first() {
    assert_eq!(
        errors(
            r#"
[[mirror]]
name = "api"
upstream = "/srv/api"
downstream = "/srv/api.git"

[[mirror]]
name = "api"
upstream = "/srv/api2"
downstream = "/srv/api2.git"

[[template]]
names = ["web", "api", "web"]
upstream = "/srv/{name}"
downstream = "/srv/{name}.git"

[[template]]
names_file = "repos.txt"
upstream = "/srv/{name}"
downstream = "/srv/{name}.git"
"#
        ),
        [
            "conf/mirrors.toml:8:8: duplicate mirror name \"api\": first defined at line 3",
            "conf/mirrors.toml:13:17: duplicate mirror name \"api\": first defined at line 3",
            "conf/mirrors.toml:13:24: duplicate mirror name \"web\": first defined at line 13",
            "conf/repos.txt:2:1: duplicate mirror name \"api\": first defined at conf/mirrors.toml:3",
            "conf/repos.txt:4:3: duplicate mirror name \"web\": first defined at conf/mirrors.toml:13",
        ]
    );
}

#[test]
fn config_token_references_are_checked_before_anything_connects() {
    assert_eq!(
        errors(
            r#"
[defaults]
upstream_token_env = "NOT_SET"

[[mirror]]
name = "a"
upstream = "https://up.example/a.git"
downstream = "https://down.example/a.git"
upstream_token_env = "EMPTY"
downstream_token_file = "missing-token"

[[mirror]]
name = "b"
upstream = "https://up.example/b.git"
downstream = "https://down.example/b.git"
downstream_token_env = "UP_TOKEN"
downstream_token_file = "token"
upstream_token_env = ""
"#
        ),
        [
            "conf/mirrors.toml:3:22: `upstream_token_env`: environment variable NOT_SET is not set",
            "conf/mirrors.toml:9:22: `upstream_token_env`: environment variable EMPTY is empty",
            "conf/mirrors.toml:10:25: `downstream_token_file`: cannot read token file conf/missing-token: entity not found",
            "conf/mirrors.toml:17:25: both `downstream_token_env` and `downstream_token_file` are set: keep one",
            "conf/mirrors.toml:18:22: `upstream_token_env` is empty",
        ]
    );
}

#[test]
fn config_inline_secrets_are_refused_and_never_echoed() {
    let found = errors(
        r#"
[[mirror]]
name = "a"
upstream = "https://alice:hunter2@up.example/a.git"
downstream = "ssh://bob:hunter3@down.example/a.git"
upstream_token = "hunter4"
password = "hunter5"

[[mirror]]
name = "b"
upstream = "https://ghp_hunter6@github.com/a/b.git"
downstream = "/srv/b.git"
"#,
    );
    assert_eq!(
        found,
        [
            "conf/mirrors.toml:4:12: `upstream` has a password in its URL (https://alice:***@up.example/a.git): name the token with `upstream_token_env` or `upstream_token_file` instead",
            "conf/mirrors.toml:5:14: `downstream` has a password in its URL (ssh://bob:***@down.example/a.git): name the token with `downstream_token_env` or `downstream_token_file` instead",
            "conf/mirrors.toml:6:1: `upstream_token` would put a secret in the config file; name it with `upstream_token_env` or `upstream_token_file` instead (the value is not shown)",
            "conf/mirrors.toml:7:1: `password` would put a secret in the config file; name it with `upstream_token_env` or `upstream_token_file`, or `downstream_token_env` or `downstream_token_file` instead (the value is not shown)",
            "conf/mirrors.toml:11:12: `upstream` has a token as its user name (https://***@github.com/a/b.git): name the token with `upstream_token_env` or `upstream_token_file` instead",
        ]
    );
    assert!(!found.join("\n").contains("hunter"), "{found:?}");
}

#[test]
fn config_bad_values_say_what_is_expected() {
    assert_eq!(
        errors(
            r#"
[defaults]
divergence = "ff_only"
connect_timeout = "5 fortnights"
idle_timeout = 0
max_duration = 2.5

[[template]]
names = ["a"]
upstream = "/srv/{name}"
downstream = "/srv/{name}.git"
include = ["refs/heads/*", "heads/main"]
divergence = "merge"
"#
        ),
        [
            "conf/mirrors.toml:3:14: unknown divergence \"ff_only\": expected \"force\", \"ff-only\" or \"keep\" (did you mean \"ff-only\"?)",
            "conf/mirrors.toml:4:19: `connect_timeout` invalid duration \"5 fortnights\" (unknown time unit \"fortnights\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write e.g. \"30s\", \"5m\", \"1h\"",
            "conf/mirrors.toml:5:16: `idle_timeout` must be longer than zero",
            "conf/mirrors.toml:6:16: `max_duration` must be a duration such as \"30s\" or a number of seconds, not a float",
            "conf/mirrors.toml:12:28: `include`: invalid ref pattern \"heads/main\": patterns start with refs/, e.g. refs/heads/*",
            "conf/mirrors.toml:13:14: unknown divergence \"merge\": expected \"force\", \"ff-only\" or \"keep\"",
        ]
    );
}

#[test]
fn config_relative_local_paths_are_taken_from_the_config_directory() {
    let fleet = fleet(
        r#"
[[mirror]]
name = "a"
upstream = "../repos/a"
downstream = "./a.git"

[[mirror]]
name = "b"
upstream = "/abs/b"
downstream = "file:///abs/b.git"
"#,
    );
    assert_eq!(fleet.mirrors[0].upstream, local("conf/../repos/a"));
    assert_eq!(fleet.mirrors[0].downstream, local("conf/a.git"));
    assert_eq!(fleet.mirrors[1].upstream, local("/abs/b"));
    assert_eq!(
        fleet.mirrors[1].downstream,
        RepoUrl::Local {
            path: "/abs/b.git".into(),
            url: Some("file:///abs/b.git".into()),
        }
    );

    let beside = parse(
        "[[mirror]]\nname = \"a\"\nupstream = \"-a\"\ndownstream = \"./-a.git\"\n",
        Path::new("mirrors.toml"),
        &env,
        &read,
    )
    .map_err(|e| e.to_string());
    assert_eq!(
        beside.as_ref().map(|f| &f.mirrors[..]).err(),
        Some(&"mirrors.toml:3:12: invalid `upstream`: refusing path \"-a\": it begins with '-' and would be read as an option".to_owned())
    );
    let fleet = parse(
        "[[mirror]]\nname = \"a\"\nupstream = \"a\"\ndownstream = \"./-a.git\"\n",
        Path::new("mirrors.toml"),
        &env,
        &read,
    )
    .expect("valid");
    assert_eq!(fleet.mirrors[0].upstream, local("a"));
    assert_eq!(
        fleet.mirrors[0].downstream,
        local("./-a.git"),
        "a path that would begin with '-' keeps its ./"
    );
}

#[test]
fn config_syntax_errors_have_a_place_too() {
    assert_eq!(
        errors("[[mirror]]\nname = \"a\"\nname = \"b\"\n"),
        ["conf/mirrors.toml:3:1: duplicate key"]
    );
    assert_eq!(
        errors("[[mirror]\n"),
        ["conf/mirrors.toml:1:10: unclosed array table, expected `]`"]
    );
}

#[test]
fn config_every_problem_is_reported_not_just_the_first() {
    let found = errors(
        r#"
[defaults]
prun = false

[[mirror]]
name = "a"
upstream = "nosuch://x/a"

[[template]]
names = ["b"]
upstream = "/srv/{name}"
downstream = "/srv/{name}.git"
retries = "3"
"#,
    );
    assert_eq!(
        found,
        [
            "conf/mirrors.toml:3:1: unknown key `prun`: did you mean `prune`?",
            "conf/mirrors.toml:5:1: [[mirror]] has no `downstream`",
            "conf/mirrors.toml:7:12: invalid `upstream`: unsupported URL scheme \"nosuch\" in \"nosuch://x/a\": expected file://, ssh://, git://, http:// or https://",
            "conf/mirrors.toml:13:11: `retries` must be an integer, not a string",
        ]
    );
}

#[test]
fn config_errors_display_one_line_each_like_a_compiler() {
    let errors = Errors(vec![
        Diagnostic {
            file: "m.toml".into(),
            line: 3,
            column: 7,
            message: "first".into(),
        },
        Diagnostic {
            file: "m.toml".into(),
            line: 0,
            column: 0,
            message: "cannot read the config file: gone".into(),
        },
    ]);
    assert_eq!(
        errors.to_string(),
        "m.toml:3:7: first\nm.toml: cannot read the config file: gone"
    );
}

#[test]
fn config_load_reports_an_unreadable_file() {
    let missing = Path::new("/nonexistent/kalandra/mirrors.toml");
    let errors = load(missing).expect_err("no such file");
    assert_eq!(errors.0.len(), 1);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/kalandra/mirrors.toml: cannot read the config file: "),
        "{errors}"
    );
}

#[test]
fn config_columns_count_characters_not_bytes() {
    assert_eq!(
        errors("# é\n[[mirror]]\nname = \"é\" ; x = 1\n"),
        ["conf/mirrors.toml:3:12: unexpected key or value, expected newline, `#`"]
    );
}

#[test]
fn config_create_missing_is_refused_for_a_remote_downstream() {
    let text = r#"
[[mirror]]
name = "remote"
upstream = "/srv/a.git"
downstream = "ssh://git@backup.example/a.git"
create_missing = true

[[template]]
names = ["x", "y"]
upstream = "/srv/{name}.git"
downstream = "https://forge.example/{name}.git"
create_missing = true

[[mirror]]
name = "local"
upstream = "/srv/a.git"
downstream = "/srv/new/a.git"
create_missing = true
"#;
    assert_eq!(
        errors(text),
        [
            "conf/mirrors.toml:2:1: `create_missing = true` creates local repositories, GitHub \
             repositories through a [[github_app]] that serves them and GitLab projects \
             through a [[gitlab]]; downstream ssh://git@backup.example/a.git is none of these: create it \
             on its server first (or drop create_missing)",
            "conf/mirrors.toml:8:1: `create_missing = true` creates local repositories, GitHub \
             repositories through a [[github_app]] that serves them and GitLab projects \
             through a [[gitlab]]; downstream https://forge.example/x.git is none of these: create it \
             on its server first (or drop create_missing)",
        ]
    );
}

#[test]
fn config_watch_keys_interval_and_webhook_secret() {
    let text = r#"
[defaults]
interval = "30s"
webhook_secret_env = "UP_TOKEN"

[[mirror]]
name = "a"
upstream = "/srv/a.git"
downstream = "/srv/b.git"

[[mirror]]
name = "b"
upstream = "/srv/a.git"
downstream = "/srv/c.git"
interval = "1h"
webhook_secret_file = "token"

[[mirror]]
name = "c"
upstream = "/srv/a.git"
downstream = "/srv/d.git"
webhook_secret_env = "NOPE"
"#;
    assert_eq!(
        errors(text),
        ["conf/mirrors.toml:22:22: `webhook_secret_env`: environment variable NOPE is not set"]
    );
    let fleet = fleet(&text.replace("\"NOPE\"", "\"UP_TOKEN\""));
    let [a, b, _] = &fleet.mirrors[..] else {
        panic!("three mirrors")
    };
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.webhook_secret, Some(SecretRef::Env("UP_TOKEN".into())));
    assert_eq!(b.interval, Duration::from_secs(3600));
    assert_eq!(
        b.webhook_secret,
        Some(SecretRef::File(PathBuf::from("conf/token")))
    );
}

#[test]
fn config_create_missing_on_a_github_app_host_with_visibility_and_follow_head() {
    let text = r#"
[[github_app]]
app_id = 7
key_env = "APP_KEY"
owners = ["acme-mirror"]

[defaults]
follow_head = true

[[mirror]]
name = "api"
upstream = "/srv/api.git"
downstream = "https://github.com/acme-mirror/api.git"
create_missing = true
create_visibility = "internal"

[[mirror]]
name = "web"
upstream = "/srv/web.git"
downstream = "https://github.com/acme-mirror/web.git"
create_missing = true

[[mirror]]
name = "other"
upstream = "/srv/a.git"
downstream = "https://github.com/someone-else/a.git"
create_missing = true
"#;
    assert_eq!(
        errors(text),
        [
            "conf/mirrors.toml:23:1: `create_missing = true` creates local repositories, GitHub \
             repositories through a [[github_app]] that serves them and GitLab projects \
             through a [[gitlab]]; downstream https://github.com/someone-else/a.git is none of \
             these: create it on its server first (or drop create_missing)"
        ]
    );
    let fleet = fleet(&text.replace("someone-else", "acme-mirror"));
    let [api, web, other] = &fleet.mirrors[..] else {
        panic!("three mirrors")
    };
    assert!(api.create_missing && api.follow_head && web.follow_head && other.follow_head);
    assert_eq!(api.create_visibility, Visibility::Internal);
    assert_eq!(web.create_visibility, Visibility::Private);
    assert!(api.downstream_app.is_some());
    assert_eq!(
        errors("[defaults]\ncreate_visibility = \"secret\"\n"),
        [
            "conf/mirrors.toml:2:21: `create_visibility` must be \"private\", \"internal\" or \
          \"public\", not \"secret\""
        ]
    );
}

#[test]
fn config_gitlab_token_goes_to_each_side_on_the_instance() {
    let fleet = fleet(
        r#"
[defaults]
downstream_token_env = "UP_TOKEN"

[[gitlab]]
url = "https://example.com/gitlab/"
token_file = "token"

[[mirror]]
name = "from-gitlab"
upstream = "https://example.com/gitlab/platform/api.git"
downstream = "https://example.com/gitlab/backup/api.git"
create_missing = true
create_visibility = "internal"

[[mirror]]
name = "own-token"
upstream = "https://example.com/gitlab/platform/web.git"
downstream = "https://example.com/gitlab/backup/web.git"
upstream_token_env = "UP_TOKEN"
downstream_token_env = "UP_TOKEN"

[[mirror]]
name = "elsewhere"
upstream = "https://example.com/other/a.git"
downstream = "https://gitlab.com/backup/a.git"
"#,
    );
    let [instance] = &fleet.gitlab[..] else {
        panic!("one [[gitlab]]: {:?}", fleet.gitlab)
    };
    assert_eq!(instance.url.as_str(), "https://example.com/gitlab");
    assert_eq!(
        instance.api_url.as_str(),
        "https://example.com/gitlab/api/v4"
    );
    let file = Some(SecretRef::File(PathBuf::from("conf/token")));
    let env = Some(SecretRef::Env("UP_TOKEN".into()));
    let [from, own, elsewhere] = &fleet.mirrors[..] else {
        panic!("three mirrors: {:?}", fleet.mirrors)
    };
    // The instance's token wins over a [defaults] token on its sides.
    assert_eq!(
        (&from.upstream_token, &from.downstream_token),
        (&file, &file)
    );
    assert_eq!(from.downstream_gitlab.as_ref(), Some(instance));
    // A mirror's own token wins over the instance's, and the API is still
    // the instance's.
    assert_eq!((&own.upstream_token, &own.downstream_token), (&env, &env));
    assert_eq!(own.downstream_gitlab.as_ref(), Some(instance));
    // Another host (or path) is not the instance's.
    assert_eq!(
        (&elsewhere.upstream_token, &elsewhere.downstream_token),
        (&None, &env)
    );
    assert_eq!(elsewhere.downstream_gitlab, None);
}

#[test]
fn config_gitlab_tables_report_their_problems() {
    let text = r#"
[[gitlab]]
token_env = "UP_TOKEN"

[[gitlab]]
url = "ftp://gitlab.example"
token_env = "UP_TOKEN"

[[gitlab]]
url = "https://gitlab.example"
token = "glpat-xxxx"

[[gitlab]]
url = "https://gitlab.example"

[[gitlab]]
url = "https://gitlab.example"
token_env = "NOT_SET"

[[mirror]]
name = "a"
upstream = "/srv/a.git"
downstream = "https://gitlab.other/g/a.git"
create_missing = true
"#;
    assert_eq!(
        errors(text),
        [
            "conf/mirrors.toml:2:1: [[gitlab]] has no `url`: where GitLab is, e.g. \"https://gitlab.example\"",
            "conf/mirrors.toml:6:7: `url` \"ftp://gitlab.example\" is not an http(s) URL",
            "conf/mirrors.toml:11:1: `token` would put a secret in the config file; name the token with `token_env` or `token_file` instead (the value is not shown)",
            "conf/mirrors.toml:13:1: [[gitlab]] has no `token_env` or `token_file` (a personal, project or group access token)",
            "conf/mirrors.toml:18:13: `token_env`: environment variable NOT_SET is not set",
            "conf/mirrors.toml:20:1: `create_missing = true` creates local repositories, GitHub \
             repositories through a [[github_app]] that serves them and GitLab projects \
             through a [[gitlab]]; downstream https://gitlab.other/g/a.git is none of these: \
             create it on its server first (or drop create_missing)",
        ]
    );
}

#[test]
fn config_gitlab_source_takes_its_instance_and_patterns() {
    let fleet = fleet(
        r#"
[[gitlab]]
url = "https://gitlab.example"
api_url = "https://api.gitlab.example/v4"
token_env = "UP_TOKEN"

[[gitlab_source]]
url = "https://gitlab.example"
group = "/platform/"
subgroups = true
visibility = "internal"
match = "tools/*"
downstream = "https://github.com/acme-mirror/{path_dashed}.git"

[[gitlab_source]]
group = "public-stuff"
name = "gl-{name}"
downstream = "/srv/backup/{group}/{path}.git"
"#,
    );
    let [platform, public] = &fleet.gitlab_sources[..] else {
        panic!("two sources: {:?}", fleet.gitlab_sources)
    };
    assert!(fleet.discovers());
    assert_eq!(platform.group, "platform");
    assert!(platform.subgroups);
    assert_eq!(platform.api_url.as_str(), "https://api.gitlab.example/v4");
    assert!(platform.instance.is_some());
    assert_eq!(platform.filters.visibility, GitlabVisibility::Internal);
    assert_eq!(platform.name, "{path}");
    // Without a [[gitlab]] of its URL (GitLab.com by default), the group is
    // listed without a token.
    assert_eq!(public.url.as_str(), "https://gitlab.com/");
    assert_eq!(public.api_url.as_str(), "https://gitlab.com/api/v4");
    assert!(public.instance.is_none());
    let project = crate::forge::gitlab::Project {
        id: 3,
        path: "cli".into(),
        path_with_namespace: "platform/tools/cli".into(),
        default_branch: Some("main".into()),
        visibility: Some("internal".into()),
        archived: false,
        http_url_to_repo: "https://gitlab.example/platform/tools/cli.git".into(),
        forked_from_project: None,
    };
    let mirror = platform.mirror_for(&project).expect("a mirror");
    assert_eq!(mirror.name, "tools/cli");
    assert_eq!(
        mirror.downstream.to_string(),
        "https://github.com/acme-mirror/tools-cli.git"
    );
    // The listing's URL is the instance's: its token reads upstream.
    assert_eq!(
        mirror.upstream_token,
        Some(SecretRef::Env("UP_TOKEN".into()))
    );
    assert_eq!(
        errors("[[gitlab_source]]\ngroup = \"a b\"\ndownstream = \"/srv/{name}.git\"\n"),
        ["conf/mirrors.toml:2:9: `group` must be a group's full path (`platform` or `platform/tools`)"]
    );
    assert_eq!(
        errors("[[gitlab_source]]\ngroup = \"g\"\nupstream = \"x\"\ndownstream = \"/srv/{name}.git\"\nvisibility = \"secret\"\n"),
        [
            "conf/mirrors.toml:3:1: [[gitlab_source]] takes each upstream from the group's listing; drop `upstream`",
            "conf/mirrors.toml:5:14: `visibility` is \"all\", \"public\", \"internal\" or \"private\", not \"secret\"",
        ]
    );
}

#[test]
fn config_push_caps_take_sizes_and_counts() {
    let fleet = fleet(
        r#"
[defaults]
max_pack_bytes = "github"

[[mirror]]
name = "a"
upstream = "/srv/a.git"
downstream = "/srv/b.git"
max_pack_bytes = 268435456
max_refs_per_push = 0

[[mirror]]
name = "b"
upstream = "/srv/a.git"
downstream = "/srv/c.git"
atomic = true

[[mirror]]
name = "c"
upstream = "/srv/a.git"
downstream = "/srv/d.git"
max_pack_bytes = "256m"
max_refs_per_push = 50
"#,
    );
    let caps: Vec<(Option<u64>, Option<usize>)> = fleet
        .mirrors
        .iter()
        .map(|m| (m.max_pack_bytes, m.max_refs_per_push))
        .collect();
    assert_eq!(
        caps,
        [
            (Some(256 << 20), None),
            (Some(crate::batch::GITHUB_PRESET), None),
            (Some(256 << 20), Some(50)),
        ]
    );
    assert_eq!(
        errors("[[mirror]]\nname = \"a\"\nupstream = \"/a\"\ndownstream = \"/b\"\nmax_pack_bytes = \"5 MB\"\nmax_refs_per_push = -1\n"),
        [
            "conf/mirrors.toml:5:18: `max_pack_bytes`: \"5 MB\" is not a size: bytes, or a number with k, m, g (KiB, MiB, GiB), or `github`",
            "conf/mirrors.toml:6:21: `max_refs_per_push` must be 0 or more, not -1",
        ]
    );
}
