//! gitolite3 (Debian's `gitolite3`) behind the test sshd: every ssh login runs
//! `gitolite-shell`, which checks gitolite's access rules before it runs git's server.
//!
//! gitolite keeps its admin files under `<root>/gitolite/home` and serves the repositories
//! under the world root itself (`GL_REPO_BASE`), so that `<root>/cells/1/up.git` is the
//! gitolite repository `cells/1/up`. One user, `admin`, may read, write and create every
//! repository. If gitolite is missing or its setup fails, the test fails saying so.

use std::path::Path;
use std::process::Command;

use crate::harness::World;
use crate::sshd::{self, Protocol, Sshd};

const GITOLITE: &str = "/usr/bin/gitolite";
const GITOLITE_SHELL: &str = "/usr/share/gitolite3/gitolite-shell";
const VERSION_FILE: &str = "/usr/share/gitolite3/VERSION";

/// Every repository under the base: admin reads, writes and creates.
const CONF: &str = "repo gitolite-admin\n    RW+ = admin\n\n\
                    repo [a-zA-Z0-9].*\n    C   = admin\n    RW+ = admin\n";

pub struct Gitolite {
    /// Accepting `GIT_PROTOCOL` (v2), and not (v0).
    sshd: (Sshd, Sshd),
    home: std::path::PathBuf,
    version: String,
}

impl Gitolite {
    /// Sets gitolite up for the world (in `<root>/gitolite`) and starts two sshd's whose
    /// logins all go through `gitolite-shell`, one accepting `GIT_PROTOCOL` (v2), one not
    /// (v0). The world's ssh client key is the admin's. One gitolite serves both: each
    /// links its own `update` hook into every repository under its base, and takes a
    /// repository whose hook is another's for none of its own.
    pub fn start(w: &World) -> Self {
        assert!(
            Path::new(GITOLITE).is_file() && Path::new(GITOLITE_SHELL).is_file(),
            "gitolite is missing: tests/run.sh installs Debian's gitolite3"
        );
        let dir = w.root().join("gitolite");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("can create gitolite's home");
        // The admin is the world's ssh client.
        let key = sshd::client_key(w);
        let gitolite = |args: &[&str]| {
            let out = Command::new(GITOLITE)
                .args(args)
                .env("HOME", &home)
                .env("USER", sshd::current_user())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap_or_else(|err| panic!("cannot run gitolite: {err}"));
            assert!(
                out.status.success(),
                "gitolite {args:?} failed with {}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let admin_pub = sshd::pub_path(&key);
        gitolite(&["setup", "-pk", admin_pub.to_str().expect("UTF-8 path")]);
        // Serve the world's repositories: the base moves to the root, the rules to CONF.
        let rc = home.join(".gitolite.rc");
        let text = std::fs::read_to_string(&rc).expect("gitolite setup wrote its rc");
        assert!(
            text.contains("%RC = ("),
            "gitolite's rc has no %RC:\n{text}"
        );
        let base = format!("%RC = (\n    GL_REPO_BASE => '{}',", w.root().display());
        std::fs::write(&rc, text.replacen("%RC = (", &base, 1)).expect("can write the rc");
        std::fs::write(home.join(".gitolite/conf/gitolite.conf"), CONF)
            .expect("can write gitolite.conf");
        gitolite(&["setup"]);
        gitolite(&["compile"]);
        gitolite(&["trigger", "POST_COMPILE"]);
        // `3.6.12-1 (Debian)`
        let version = std::fs::read_to_string(VERSION_FILE)
            .unwrap_or_else(|err| panic!("cannot read {VERSION_FILE}: {err}"));
        let version = version
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("{VERSION_FILE} is empty"))
            .to_owned();

        let command = format!(
            "env HOME={} USER={} {GITOLITE_SHELL} admin",
            home.display(),
            sshd::current_user()
        );
        let start_sshd = |name: &str, protocol: Protocol| {
            let sshd = Sshd::start(&dir.join(name), protocol);
            sshd.authorize_forced(&key, &command);
            sshd::trust(w, &sshd);
            sshd
        };
        let sshd = (
            start_sshd("sshd-v2", Protocol::V2),
            start_sshd("sshd-v0", Protocol::V0),
        );
        Gitolite {
            sshd,
            home,
            version,
        }
    }

    /// gitolite's `update` hook: a repository that has it is one gitolite serves (it checks
    /// each pushed ref against the rules). `gitolite setup --hooks-only` links it into every
    /// repository; the matrix links it into the repositories it makes.
    pub fn update_hook(&self) -> std::path::PathBuf {
        self.home.join(".gitolite/hooks/common/update")
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// `ssh://USER@127.0.0.1:PORT/` of the sshd speaking `protocol`, to which a repository's
    /// path relative to the world root is appended (gitolite drops the `.git`).
    pub fn base_url(&self, protocol: Protocol) -> String {
        let sshd = match protocol {
            Protocol::V2 => &self.sshd.0,
            Protocol::V0 => &self.sshd.1,
        };
        format!("ssh://{}@127.0.0.1:{}/", sshd.user(), sshd.port())
    }
}
