//! `kalandra config check|list`: exit codes and output, nothing connected.

use std::ffi::OsString;

use crate::harness::World;

const VALID: &str = r#"
[defaults]
connect_timeout = "30s"

[[mirror]]
name = "git"
upstream = "https://github.com/git/git.git"
downstream = "mirrors/git.git"
upstream_token_env = "KALANDRA_TEST_UP_TOKEN"
divergence = "ff-only"

[[template]]
names_file = "repos.txt"
name = "acme-{name}"
upstream = "https://gitlab.example/acme/{name}.git"
downstream = "git@github.com:acme-mirror/{name}.git"
downstream_token_file = "down-token"
retries = 1
"#;

/// `conf/mirrors.toml` with its names file and token file, in `w`.
fn write_config(w: &World, config: &str) {
    let conf = w.root().join("conf");
    std::fs::create_dir_all(&conf).expect("can create conf/");
    std::fs::write(conf.join("mirrors.toml"), config).expect("can write the config");
    std::fs::write(conf.join("repos.txt"), "# repositories\napi\n\nweb\n")
        .expect("can write the names file");
    std::fs::write(conf.join("down-token"), "d0wn-secret\n").expect("can write the token");
}

/// `kalandra ARGS` in `w`'s root, with the upstream token variable set.
fn kalandra(w: &World, args: &[&str]) -> crate::harness::Run {
    w.kalandra_with_env(
        w.root(),
        args,
        &w.global_config(),
        &[("KALANDRA_TEST_UP_TOKEN", OsString::from("up-secret"))],
    )
}

#[test]
fn config_check_counts_the_expanded_mirrors() {
    let w = World::new();
    write_config(&w, VALID);
    let run = kalandra(&w, &["config", "check", "conf/mirrors.toml"]);
    run.assert_code(0);
    assert_eq!(run.stdout, "conf/mirrors.toml: 3 mirrors, OK\n", "{run}");
    assert_eq!(run.stderr, "", "{run}");
}

#[test]
fn config_check_reports_every_problem_and_exits_2() {
    let w = World::new();
    write_config(
        &w,
        "[[mirror]]\nname = \"a\"\nupstreem = \"/srv/a\"\ndownstream = \"nosuch://x/a\"\n\n\
         [[mirror]]\nname = \"a\"\nupstream = \"/srv/a\"\ndownstream = \"/srv/b\"\n\
         upstream_token = \"hunter2\"\n",
    );
    for command in ["check", "list"] {
        let run = kalandra(&w, &["config", command, "conf/mirrors.toml"]);
        run.assert_code(2);
        assert_eq!(run.stdout, "", "{run}");
        assert_eq!(
            run.stderr,
            "conf/mirrors.toml:1:1: [[mirror]] has no `upstream`\n\
             conf/mirrors.toml:3:1: unknown key `upstreem`: did you mean `upstream`?\n\
             conf/mirrors.toml:4:14: invalid `downstream`: unsupported URL scheme \"nosuch\" in \"nosuch://x/a\": expected file://, ssh://, git://, http:// or https://\n\
             conf/mirrors.toml:7:8: duplicate mirror name \"a\": first defined at line 2\n\
             conf/mirrors.toml:10:1: `upstream_token` would put a secret in the config file; name it with `upstream_token_env` or `upstream_token_file` instead (the value is not shown)\n",
            "{run}"
        );
    }
}

#[test]
fn config_check_of_a_missing_file_exits_2() {
    let w = World::new();
    let run = kalandra(&w, &["config", "check", "nowhere.toml"]);
    run.assert_code(2);
    assert!(
        run.stderr
            .starts_with("nowhere.toml: cannot read the config file: "),
        "{run}"
    );
}

#[test]
fn config_list_json_shows_every_resolved_key_and_no_secret() {
    let w = World::new();
    write_config(&w, VALID);
    let run = kalandra(&w, &["config", "list", "--json", "conf/mirrors.toml"]);
    run.assert_code(0);
    assert!(
        !run.stdout.contains("up-secret") && !run.stdout.contains("d0wn-secret"),
        "token values are never shown{run}"
    );
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["config"], "conf/mirrors.toml");
    let mirrors = doc["mirrors"].as_array().expect("a mirrors array");
    let names: Vec<_> = mirrors.iter().map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        [Some("git"), Some("acme-api"), Some("acme-web")],
        "{run}"
    );
    assert_eq!(
        mirrors[0],
        serde_json::json!({
            "name": "git",
            "upstream": "https://github.com/git/git.git",
            "downstream": "conf/mirrors/git.git",
            "include": ["refs/heads/*", "refs/tags/*"],
            "exclude": [],
            "prune": true,
            "divergence": "ff-only",
            "immutable_tags": false,
            "atomic": false,
            "allow_mass_delete": false,
            "connect_timeout": "30s",
            "idle_timeout": null,
            "low_speed_limit": null,
            "low_speed_time": null,
            "max_duration": null,
            "upstream_token": {"env": "KALANDRA_TEST_UP_TOKEN"},
            "downstream_token": null,
            "upstream_github_app": null,
            "downstream_github_app": null,
            "create_missing": false,
            "create_visibility": "private",
            "follow_head": false,
            "retries": 3,
            "interval": "5m",
            "webhook_secret": null,
            "origin": {"line": 5, "template": null},
        })
    );
    assert_eq!(
        mirrors[2]["downstream_token"],
        serde_json::json!({"file": "conf/down-token"})
    );
    assert_eq!(mirrors[2]["retries"], 1);
    assert_eq!(
        mirrors[2]["origin"],
        serde_json::json!({"line": 12, "template": 0})
    );
}

#[test]
fn config_list_prints_a_table_of_what_differs_from_the_defaults() {
    let w = World::new();
    write_config(&w, VALID);
    let run = kalandra(&w, &["config", "list", "conf/mirrors.toml"]);
    run.assert_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and one line per mirror{run}");
    assert!(lines[0].starts_with("NAME "), "{run}");
    assert!(
        lines[1].starts_with("git ")
            && lines[1].ends_with(
                "divergence=ff-only connect_timeout=30s upstream_token_env=KALANDRA_TEST_UP_TOKEN"
            ),
        "{run}"
    );
    assert!(
        lines[2].contains("ssh://git@github.com/acme-mirror/api.git")
            && lines[2].ends_with("downstream_token_file=conf/down-token retries=1"),
        "{run}"
    );
}
