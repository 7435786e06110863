//! `kalandra::error_kind::classify` on real failures: `relay::sync` against servers that
//! refuse, lack the repository, refuse the credentials or decline the push.

use std::net::TcpListener;

use kalandra::error_kind::{classify, ErrorKind};
use kalandra::relay::{self, chain, Outcome, RefStatus};
use kalandra::transport::{Token, TransportSettings};

use crate::flaky::sync;
use crate::git_daemon::Daemon;
use crate::harness::{path_arg, World};
use crate::nginx::{Nginx, PASSWORD};

/// A port on 127.0.0.1 nobody listens on (just freed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The kind of a sync that must fail.
async fn failed_kind(up: &str, down: &str, settings: TransportSettings) -> ErrorKind {
    let error = sync(up, down, settings)
        .await
        .expect_err("the sync must fail");
    classify(&error).kind
}

#[tokio::test]
async fn error_kind_of_a_port_nobody_listens_on_is_connection() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    for url in [
        format!("git://127.0.0.1:{}/x.git", closed_port()),
        format!("http://127.0.0.1:{}/x.git", closed_port()),
        format!("ssh://git@127.0.0.1:{}/x.git", closed_port()),
    ] {
        let kind = failed_kind(&url, path_arg(&down), Default::default()).await;
        assert_eq!(kind, ErrorKind::Connection, "{url}");
        assert!(kind.is_transient());
    }
}

#[tokio::test]
async fn error_kind_of_a_missing_repository_is_not_found_on_every_transport() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let nginx = Nginx::start(&w);
    let daemon = Daemon::start(w.root());
    let missing = fx.join("no-such.git");
    for (up_url, down_url) in [
        (path_arg(&missing).to_owned(), path_arg(&down).to_owned()),
        (
            format!("file://{}", missing.display()),
            path_arg(&down).to_owned(),
        ),
        (
            nginx.url("v2", "mirror/no-such.git"),
            path_arg(&down).to_owned(),
        ),
        (daemon.url("mirror/no-such.git"), path_arg(&down).to_owned()),
        // Downstream missing, too.
        (
            path_arg(&up).to_owned(),
            nginx.url("v2", "mirror/no-such.git"),
        ),
        (path_arg(&up).to_owned(), daemon.url("mirror/no-such.git")),
    ] {
        let error = sync(&up_url, &down_url, Default::default())
            .await
            .expect_err("a repository is missing");
        let kind = classify(&error).kind;
        assert_eq!(
            kind,
            ErrorKind::NotFound,
            "{up_url} -> {down_url}: {}",
            chain(&error)
        );
        assert!(!kind.is_transient());
    }
    assert!(w.refs(&down).is_empty());
}

#[tokio::test]
async fn error_kind_of_wrong_http_credentials_is_auth() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let nginx = Nginx::start(&w);
    let up_url = nginx.url_as("auth", "mirror/upstream", "alice", "wrong-password");
    let kind = failed_kind(&up_url, path_arg(&down), Default::default()).await;
    assert_eq!(kind, ErrorKind::Auth);
    assert!(w.refs(&down).is_empty());
}

#[tokio::test]
async fn a_configured_token_authenticates_each_side_without_any_variable() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let nginx = Nginx::start(&w);
    for var in ["KALANDRA_UPSTREAM_TOKEN", "KALANDRA_DOWNSTREAM_TOKEN"] {
        assert!(std::env::var_os(var).is_none(), "{var} must not be set");
    }
    let token = |source: &str| {
        Some(Token {
            secret: PASSWORD.into(),
            source: source.into(),
        })
    };
    // The username comes from the URL; the password from the settings only.
    let up_url = format!("http://alice@127.0.0.1:{}/auth/mirror/upstream", nginx.port);
    let down_url = format!(
        "http://alice@127.0.0.1:{}/auth/mirror/empty.git",
        nginx.port
    );
    let settings = TransportSettings {
        upstream_token: token("$UP_TOKEN"),
        downstream_token: token("/run/secrets/down"),
        ..Default::default()
    };
    let report = sync(&up_url, &down_url, settings)
        .await
        .expect("both sides accept the configured tokens");
    assert_eq!(report.result.outcome(), Outcome::Complete);
    w.assert_in_sync(&up, &down);
}

#[tokio::test]
async fn a_wrong_configured_token_is_auth_and_named_by_its_source_not_its_secret() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let nginx = Nginx::start(&w);
    let secret = "wrong-secret-5f3a";
    let token = Some(Token {
        secret: secret.into(),
        source: "/run/secrets/fleet-token".into(),
    });
    for (up_url, down_url, settings) in [
        (
            format!("http://alice@127.0.0.1:{}/auth/mirror/upstream", nginx.port),
            path_arg(&down).to_owned(),
            TransportSettings {
                upstream_token: token.clone(),
                ..Default::default()
            },
        ),
        (
            path_arg(&up).to_owned(),
            format!(
                "http://alice@127.0.0.1:{}/auth/mirror/empty.git",
                nginx.port
            ),
            TransportSettings {
                downstream_token: token.clone(),
                ..Default::default()
            },
        ),
    ] {
        let shown_settings = format!("{settings:?}");
        assert!(!shown_settings.contains(secret), "{shown_settings}");
        let error = sync(&up_url, &down_url, settings)
            .await
            .expect_err("the token is refused");
        assert_eq!(classify(&error).kind, ErrorKind::Auth, "{error:?}");
        let text = format!("{} {error:?}", chain(&error));
        assert!(text.contains("/run/secrets/fleet-token"), "{text}");
        assert!(!text.contains(secret), "{text}");
    }
    assert!(w.refs(&down).is_empty());
}

/// A hook's refusal is not an error: `relay::sync` returns `Ok` with every declined ref
/// `rejected` and the reason downstream gave; the outcome says how much landed. A caller
/// that wants a kind for it uses `ErrorKind::Rejected`.
#[tokio::test]
async fn a_pre_receive_refusal_is_an_ok_report_with_rejected_refs() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.install_hook(
        &down,
        "pre-receive",
        "#!/bin/sh\necho 'kalandra-test: frozen' >&2\nexit 1\n",
    );
    let report = sync(path_arg(&up), path_arg(&down), Default::default())
        .await
        .expect("a refusal is reported, not raised");
    assert_eq!(report.result.outcome(), Outcome::NothingLanded);
    assert!(!report.result.refs.is_empty());
    for outcome in &report.result.refs {
        assert_eq!(outcome.status, RefStatus::Rejected, "{outcome:?}");
        assert!(
            outcome
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("pre-receive hook declined")),
            "{outcome:?}"
        );
    }
    assert!(
        report
            .result
            .downstream_messages
            .iter()
            .any(|m| m.contains("kalandra-test: frozen")),
        "{:?}",
        report.result.downstream_messages
    );
    assert!(w.refs(&down).is_empty());
}

#[tokio::test]
async fn error_kind_of_an_empty_upstream_over_a_full_downstream_is_guard() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    let empty = w.root().join("empty-upstream.git");
    w.git(w.root(), &["init", "-q", "--bare", path_arg(&empty)]);
    let options = relay::SyncOptions {
        plan: kalandra::plan::PlanOptions {
            prune: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let parse = |p: &std::path::Path| kalandra::url::RepoUrl::parse(path_arg(p)).expect("a path");
    let error = relay::sync(
        &parse(&empty),
        &parse(&down),
        &options,
        &kalandra::progress::Progress::hidden(),
    )
    .await
    .expect_err("the guard refuses");
    assert_eq!(classify(&error).kind, ErrorKind::Guard, "{error:?}");
}

#[test]
fn json_failure_report_names_the_kind_next_to_the_error_kind() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let nginx = Nginx::start(&w);
    let run = w.kalandra(&[
        "sync",
        "--json",
        &nginx.url("v2", "mirror/no-such.git"),
        path_arg(&down),
    ]);
    run.assert_code(4);
    let report = run.failure_report();
    assert_eq!(report.0["error_kind"], "connection", "{run}");
    assert_eq!(report.0["kind"], "not-found", "{run}");

    let report = w.sync_ok(&fx.join("upstream"), &down, &[]);
    assert!(report.0["kind"].is_null(), "{:?}", report.0);
}

/// The command line's `kind` for ssh failures against a real sshd: a missing repository (the
/// server's git says so on stderr), an unknown host key, a key the server does not accept.
#[test]
fn error_kind_over_ssh_is_not_found_host_key_or_auth() {
    use crate::sshd::{self, Protocol, Sshd};
    use std::os::unix::fs::PermissionsExt;

    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let sshd = Sshd::start(&w.root().join("sshd"), Protocol::V2);
    let keys = w.root().join("keys");
    let key = sshd::keygen(&keys.join("authorized"), "", "kalandra-test-client");
    let stranger = sshd::keygen(&keys.join("stranger"), "", "kalandra-test-stranger");
    sshd.authorize(&key);
    let ssh_dir = w.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect("can create ~/.ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))
        .expect("can chmod ~/.ssh");
    let known_hosts = ssh_dir.join("known_hosts");
    let client = |identity: &std::path::Path, trusted: bool| {
        let config = format!(
            "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
            identity.display()
        );
        std::fs::write(ssh_dir.join("config"), config).expect("can write ~/.ssh/config");
        let hosts = if trusted {
            sshd.known_hosts_line()
        } else {
            String::new()
        };
        std::fs::write(&known_hosts, hosts).expect("can write known_hosts");
    };
    let kind_of = |up_url: &str| {
        let run = w.kalandra_env(
            w.root(),
            &["sync", "--json", up_url, path_arg(&down)],
            &w.global_config(),
            &[
                ("SSH_AUTH_SOCK", None),
                ("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", None),
                ("GIT_SSH_COMMAND", None),
                ("GIT_SSH", None),
            ],
        );
        run.assert_code(4);
        let kind = run.failure_report().0["kind"].clone();
        (kind, run)
    };

    client(&key, true);
    let (kind, run) = kind_of(&sshd.url(&fx.join("no-such.git")));
    assert_eq!(kind, "not-found", "{run}");

    client(&key, false);
    let (kind, run) = kind_of(&sshd.url(&up));
    assert_eq!(kind, "host-key", "{run}");

    client(&stranger, true);
    let (kind, run) = kind_of(&sshd.url(&up));
    assert_eq!(kind, "auth", "{run}");
    assert!(w.refs(&down).is_empty());
}

#[tokio::test]
async fn error_kind_of_an_untrusted_tls_certificate_is_host_key() {
    let w = World::new();
    let fx = w.fixture("mirror.sh");
    let down = fx.join("empty.git");
    let nginx = Nginx::start(&w);
    // The harness's CA is nobody's trust anchor unless a test names it.
    let error = sync(
        &nginx.https_url("v2", "mirror/upstream"),
        path_arg(&down),
        Default::default(),
    )
    .await
    .expect_err("the certificate is not trusted");
    let kind = classify(&error).kind;
    assert_eq!(kind, ErrorKind::HostKey, "{}", chain(&error));
    assert!(!kind.is_transient());
}
