//! The ssh transport against a real OpenSSH server ([`crate::sshd`]): `ssh://` and scp-like
//! URLs on either side, authentication (agent, IdentityFile, default key files), host key
//! checking against known_hosts, `~/.ssh/config`, protocol v2 and v0, `GIT_SSH_COMMAND`, and
//! the failures (wrong key, encrypted key, unknown or changed host key, connection refused,
//! a stalled or killed server).
//!
//! Kalandra's client side lives in the world's private HOME (`~/.ssh/config`, `known_hosts`,
//! keys). `SSH_AUTH_SOCK` is always removed unless a test starts its own agent. Every
//! successful sync is checked by [`World::sync_ok_env`]: downstream refs in scope equal
//! upstream's and `git fsck --connectivity-only` passes downstream.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{
    harness::{assert_refs_eq, path_arg, random_hex_lines, Refs, Run, World},
    sshd::{self, Agent, Protocol, Sshd},
};

/// Bytes of pack data a stalling server lets through before it goes silent.
const CUT_AFTER: usize = 2000;

/// A world with a running sshd that accepts [`SshWorld::key`].
struct SshWorld {
    // Declared first: dropped (sshd and its sessions killed) before the world's files go.
    sshd: Sshd,
    w: World,
    /// The client key sshd accepts; not in a default location, so only named use finds it.
    key: PathBuf,
}

impl SshWorld {
    fn new(protocol: Protocol) -> Self {
        let w = World::new();
        let sshd = Sshd::start(&w.root().join("sshd"), protocol);
        let key = sshd::keygen(
            &w.root().join("keys").join("authorized"),
            "",
            "kalandra-test-client",
        );
        sshd.authorize(&key);
        SshWorld { sshd, w, key }
    }

    /// `~/.ssh` (created, mode 0700).
    fn ssh_dir(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.w.home().join(".ssh");
        std::fs::create_dir_all(&dir).expect("can create ~/.ssh");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("can chmod ~/.ssh");
        dir
    }

    /// Write `~/.ssh/config`.
    fn write_ssh_config(&self, text: &str) {
        std::fs::write(self.ssh_dir().join("config"), text).expect("can write ~/.ssh/config");
    }

    /// `~/.ssh/known_hosts`.
    fn default_known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    /// Trust the server's host key in `~/.ssh/known_hosts`.
    fn trust_host(&self) {
        std::fs::write(self.default_known_hosts(), self.sshd.known_hosts_line())
            .expect("can write known_hosts");
    }

    /// The usual client: the server's key in `~/.ssh/known_hosts`, and `~/.ssh/config` giving
    /// the authorized key as IdentityFile for 127.0.0.1.
    fn standard_client(&self) {
        self.trust_host();
        self.write_ssh_config(&format!(
            "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
            self.key.display()
        ));
    }

    fn url(&self, path: &Path) -> String {
        self.sshd.url(path)
    }

    /// The environment of every kalandra run here: no agent or host-key override from the
    /// outside, then `extra`.
    fn env<'a>(extra: &[(&'a str, Option<OsString>)]) -> Vec<(&'a str, Option<OsString>)> {
        let mut env: Vec<(&'a str, Option<OsString>)> = vec![
            ("SSH_AUTH_SOCK", None),
            ("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", None),
            ("KALANDRA_LOG", None),
        ];
        env.extend(extra.iter().cloned());
        env
    }

    /// Run kalandra with `args` (in the world's root) and `extra` environment.
    fn kalandra(&self, args: &[&str], extra: &[(&str, Option<OsString>)]) -> Run {
        self.w.kalandra_env(
            self.w.root(),
            args,
            &self.w.global_config(),
            &Self::env(extra),
        )
    }

    /// A sync of `up` into `down`, named by `up_arg` and `down_arg`, that must succeed and leave
    /// a complete mirror.
    fn sync_ok(
        &self,
        up: &Path,
        down: &Path,
        up_arg: &str,
        down_arg: &str,
        extra: &[(&str, Option<OsString>)],
    ) -> Run {
        self.w
            .sync_ok_env(up, down, up_arg, down_arg, &[], &Self::env(extra))
            .1
    }

    /// A run that must fail with exit 4 without touching `down` (whose refs were `before`).
    #[track_caller]
    fn fails_with_4(&self, args: &[&str], extra: &[(&str, Option<OsString>)], down: &Path) -> Run {
        let before = self.w.refs(down);
        let run = self.kalandra(args, extra);
        run.assert_code(4);
        assert_refs_eq(&self.w.refs(down), &before, "downstream after a failed run");
        self.w.assert_fsck(down);
        run
    }
}

fn set(value: impl Into<OsString>) -> Option<OsString> {
    Some(value.into())
}

/// `mirror.sh`: (upstream, empty.git).
fn mirror_fixture(w: &World) -> (PathBuf, PathBuf) {
    let fx = w.fixture("mirror.sh");
    (fx.join("upstream"), fx.join("empty.git"))
}

/// Change upstream after a first sync: a new commit, a new branch, a deleted branch, a new
/// annotated tag. The next sync has creates, updates and a delete to make.
fn change_upstream(w: &World, up: &Path) {
    w.commit_file(up, "ssh.txt", "over ssh\n", "a commit after the first sync");
    w.git(up, &["branch", "after-first-sync", "main"]);
    w.git(up, &["branch", "-D", "feature/a"]);
    w.git(up, &["tag", "-a", "-m", "after the first sync", "v2.0"]);
}

/// Fail unless `text` contains `needle`, ignoring case.
#[track_caller]
fn assert_mentions(run: &Run, needle: &str) {
    assert!(
        run.stderr.to_lowercase().contains(&needle.to_lowercase()),
        "stderr should mention {needle:?}{run}"
    );
}

/// Make `path` an executable script with `text`.
fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("can write a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("can chmod");
}

// ---------------------------------------------------------------------------------------------
// The harness itself, with plain OpenSSH and git: if these fail, the server is the problem.

/// `ssh` options that make the real client use only what the test gives it.
fn plain_ssh_command(s: &SshWorld, known_hosts: &Path) -> String {
    format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} \
         -o StrictHostKeyChecking=yes -o BatchMode=yes",
        s.key.display(),
        known_hosts.display()
    )
}

#[test]
fn sshd_harness_serves_plain_ssh_and_git() {
    let s = SshWorld::new(Protocol::V2);
    let (up, down) = mirror_fixture(&s.w);
    let known_hosts = s.w.root().join("plain_known_hosts");
    std::fs::write(&known_hosts, s.sshd.known_hosts_line()).expect("can write known_hosts");
    let ssh_command = plain_ssh_command(&s, &known_hosts);

    // A remote command runs, sees the clean server environment and finds git.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{ssh_command} -p {} {}@127.0.0.1 'echo \"$GIT_CONFIG_GLOBAL\"; git --version'",
            s.sshd.port(),
            s.sshd.user()
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("can run ssh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("server.gitconfig") && stdout.contains("git"),
        "ssh to the test server failed ({}):\n{stdout}\n{}\nsshd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );

    // git itself reads and writes over it, with protocol v2.
    let mut cmd = s.w.git_command(s.w.root(), &["ls-remote", &s.url(&up)]);
    cmd.env("GIT_SSH_COMMAND", &ssh_command);
    let out = cmd.output().expect("can run git ls-remote");
    assert!(
        out.status.success(),
        "git ls-remote over ssh failed:\n{}\nsshd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.sshd.log()
    );
    let listed = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    assert_eq!(
        listed,
        s.w.git(s.w.root(), &["ls-remote", path_arg(&up)]),
        "ls-remote over ssh lists what ls-remote of the path lists"
    );

    let mut cmd = s.w.git_command(
        &up,
        &[
            "push",
            "-q",
            &s.url(&down),
            "refs/heads/*:refs/heads/*",
            "refs/tags/*:refs/tags/*",
        ],
    );
    cmd.env("GIT_SSH_COMMAND", &ssh_command);
    let out = cmd.output().expect("can run git push");
    assert!(
        out.status.success(),
        "git push over ssh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: Refs =
        s.w.refs(&up)
            .into_iter()
            .filter(|(n, _)| n.starts_with("refs/heads/") || n.starts_with("refs/tags/"))
            .collect();
    assert_refs_eq(
        &s.w.refs(&down),
        &want,
        "downstream after git push over ssh",
    );
    s.w.assert_fsck(&down);
}

// ---------------------------------------------------------------------------------------------
// Mirroring over ssh.

#[test]
fn ssh_to_ssh_mirror_then_incremental() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
    // Nothing left to do.
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

#[test]
fn ssh_to_file_mirror_then_incremental() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), path_arg(&down), &[]);
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), path_arg(&down), &[]);
}

#[test]
fn file_to_ssh_mirror_then_incremental() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, path_arg(&up), &s.url(&down), &[]);
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, path_arg(&up), &s.url(&down), &[]);
}

/// scp-like `alias:path` and `user@alias:path`, the aliases resolved through `~/.ssh/config`
/// Host patterns: `?`, `*` and `!` each decide something (a wrong reading gives a host that
/// does not resolve, or port 1), and the known_hosts entry is the one for HostName and Port.
#[test]
fn scp_like_urls_through_config_host_patterns() {
    let s = SshWorld::new(Protocol::V2);
    let known_hosts = s.w.root().join("client").join("known_hosts_for_aliases");
    std::fs::create_dir_all(known_hosts.parent().expect("has a parent")).expect("can mkdir");
    std::fs::write(&known_hosts, s.sshd.known_hosts_line()).expect("can write known_hosts");
    s.write_ssh_config(&format!(
        "# Nothing of this block applies to the two aliases.\n\
         Host * !kalandra-up !kalandra-down\n\
         \x20   Port 1\n\
         \x20   User nobody-at-all\n\
         \n\
         Host kalandra-?p\n\
         \x20   HostName 127.0.0.1\n\
         Host kalandra-down\n\
         \x20   HostName 127.0.0.1\n\
         Host kalandra-*\n\
         \x20   Port {port}\n\
         \x20   User {user}\n\
         Host *\n\
         \x20   IdentityFile {key}\n\
         \x20   IdentitiesOnly yes\n\
         \x20   UserKnownHostsFile {known_hosts}\n",
        port = s.sshd.port(),
        user = s.sshd.user(),
        key = s.key.display(),
        known_hosts = known_hosts.display(),
    ));
    let (up, down) = mirror_fixture(&s.w);
    let up_arg = format!("kalandra-up:{}", path_arg(&up));
    let down_arg = format!("{}@kalandra-down:{}", s.sshd.user(), path_arg(&down));
    s.sync_ok(&up, &down, &up_arg, &down_arg, &[]);
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &up_arg, &down_arg, &[]);
}

// ---------------------------------------------------------------------------------------------
// Protocol versions.

#[test]
fn protocol_v2_when_sshd_accepts_git_protocol() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    let run = s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        path_arg(&down),
        &[("KALANDRA_LOG", set("kalandra=debug"))],
    );
    assert!(
        run.stderr.contains("speaks protocol v2"),
        "upstream over ssh with AcceptEnv GIT_PROTOCOL must speak v2{run}"
    );
}

#[test]
fn protocol_v0_when_sshd_refuses_git_protocol_and_the_sync_still_works() {
    let s = SshWorld::new(Protocol::V0);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    let run = s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("KALANDRA_LOG", set("kalandra=debug"))],
    );
    assert!(
        run.stderr.contains("speaks protocol v0"),
        "upstream over ssh without AcceptEnv GIT_PROTOCOL must speak v0{run}"
    );
    assert!(
        !run.stderr.contains("speaks protocol v2"),
        "nothing can speak v2 without GIT_PROTOCOL reaching the server{run}"
    );
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

// ---------------------------------------------------------------------------------------------
// Authentication.

#[test]
fn agent_key_without_identity_file() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    // No config at all, no default key files: the agent is the only way in.
    let agent = Agent::start(&s.w.root().join("agent.sock"));
    agent.add(&s.key);
    assert!(
        agent.list().contains(&sshd::fingerprint(&s.key)),
        "precondition: the agent holds the key"
    );
    let (up, down) = mirror_fixture(&s.w);
    let sock = set(agent.sock());
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("SSH_AUTH_SOCK", sock.clone())],
    );

    // Without the agent the same sync cannot log in.
    change_upstream(&s.w, &up);
    let run = s.fails_with_4(&["sync", &s.url(&up), &s.url(&down)], &[], &down.clone());
    assert_mentions(&run, "publickey");
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("SSH_AUTH_SOCK", sock)],
    );
}

/// OpenSSH's order: the agent's keys first, then IdentityFile; an agent key the server
/// refuses does not stop the IdentityFile from being tried.
#[test]
fn agent_with_a_refused_key_falls_back_to_identity_file() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let stranger = sshd::keygen(&s.w.root().join("keys").join("stranger"), "", "stranger");
    let agent = Agent::start(&s.w.root().join("agent.sock"));
    agent.add(&stranger);
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n",
        s.key.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("SSH_AUTH_SOCK", set(agent.sock()))],
    );
}

#[test]
fn identity_file_from_config() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    // A pattern entry, and a decoy key the server refuses listed first.
    let stranger = sshd::keygen(&s.w.root().join("keys").join("stranger"), "", "stranger");
    s.write_ssh_config(&format!(
        "Host 127.0.0.*\n    IdentityFile {}\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        stranger.display(),
        s.key.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

#[test]
fn default_key_file_without_config() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let dst = s.ssh_dir().join("id_ed25519");
    std::fs::copy(&s.key, &dst).expect("can copy the key");
    std::fs::copy(sshd::pub_path(&s.key), sshd::pub_path(&dst)).expect("can copy the key");
    assert!(
        !s.ssh_dir().join("config").exists(),
        "precondition: no config"
    );
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

#[test]
fn wrong_key_is_refused_naming_user_host_and_publickey() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let stranger = sshd::keygen(&s.w.root().join("keys").join("stranger"), "", "stranger");
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        stranger.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    let run = s.fails_with_4(&["sync", &s.url(&up), path_arg(&down)], &[], &down);
    for needle in [s.sshd.user(), "127.0.0.1", "publickey"] {
        assert!(
            run.stderr.contains(needle),
            "stderr should name {needle:?}{run}"
        );
    }
    let private = std::fs::read_to_string(&stranger).expect("can read the key");
    for line in private.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !run.stderr.contains(line) && !run.stdout.contains(line),
            "the private key must never be printed{run}"
        );
    }

    // The same failure in the JSON report, and downstream as it was.
    let run = s.fails_with_4(
        &["sync", "--json", &s.url(&up), path_arg(&down)],
        &[],
        &down,
    );
    run.failure_report();
}

#[test]
fn encrypted_key_without_agent_says_to_use_ssh_add() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let locked = sshd::keygen(
        &s.w.root().join("keys").join("locked"),
        "correct horse battery staple",
        "locked",
    );
    s.sshd.authorize(&locked);
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        locked.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    let run = s.fails_with_4(&["sync", &s.url(&up), &s.url(&down)], &[], &down);
    assert_mentions(&run, "encrypted");
    assert!(
        run.stderr.contains("ssh-add"),
        "stderr should suggest ssh-add{run}"
    );
}

/// The usual deploy-key setup: an encrypted IdentityFile with `IdentitiesOnly yes`, unlocked
/// in an agent. As with OpenSSH, the agent signs for the configured key (IdentitiesOnly only
/// keeps the agent's *other* keys out).
#[test]
fn encrypted_identity_file_is_used_through_the_agent_even_with_identities_only() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let locked = sshd::keygen(
        &s.w.root().join("keys").join("locked"),
        "correct horse battery staple",
        "locked",
    );
    s.sshd.authorize(&locked);
    // The agent also holds a key the server refuses, which IdentitiesOnly keeps out.
    let stranger = sshd::keygen(&s.w.root().join("keys").join("stranger"), "", "stranger");
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        locked.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    let agent = Agent::start(&s.w.root().join("agent.sock"));
    agent.add(&stranger);
    let askpass = s.w.root().join("askpass.sh");
    write_script(&askpass, "#!/bin/sh\necho 'correct horse battery staple'\n");
    let out = std::process::Command::new("ssh-add")
        .arg(&locked)
        .env("SSH_AUTH_SOCK", agent.sock())
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("can run ssh-add");
    assert!(
        out.status.success(),
        "ssh-add of the encrypted key failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("SSH_AUTH_SOCK", set(agent.sock()))],
    );
}

// ---------------------------------------------------------------------------------------------
// Host keys.

/// An unknown host is refused (strict by default), with its fingerprint and how to trust it;
/// `KALANDRA_SSH_STRICT_HOST_KEY_CHECKING=accept-new` accepts it and appends it to
/// `~/.ssh/known_hosts`, after which the default strict checking accepts it.
#[test]
fn unknown_host_key_is_refused_then_accepted_with_accept_new_env() {
    let s = SshWorld::new(Protocol::V2);
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        s.key.display()
    ));
    // known_hosts knows another host only; that entry must survive the append.
    let other = sshd::keygen(&s.w.root().join("keys").join("other-host"), "", "other");
    let other_line = format!("other.example.invalid {}\n", sshd::public_key(&other));
    let known_hosts = s.default_known_hosts();
    std::fs::write(&known_hosts, &other_line).expect("can write known_hosts");
    let (up, down) = mirror_fixture(&s.w);

    let run = s.fails_with_4(&["sync", &s.url(&up), &s.url(&down)], &[], &down);
    assert!(
        run.stderr.contains(&s.sshd.host_fingerprint()),
        "stderr should show the host key's fingerprint {}{run}",
        s.sshd.host_fingerprint()
    );
    assert!(
        run.stderr.contains("known_hosts"),
        "stderr should say how to trust it{run}"
    );
    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("known_hosts"),
        other_line,
        "a refused host must not be added to known_hosts"
    );

    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", set("accept-new"))],
    );
    let text = std::fs::read_to_string(&known_hosts).expect("known_hosts");
    assert!(
        text.starts_with(&other_line),
        "known_hosts lost its entry:\n{text}"
    );
    assert!(
        sshd::known_hosts_has(&known_hosts, s.sshd.port(), &s.sshd.host_public_key()),
        "accept-new must append the server's key for [127.0.0.1]:{} to known_hosts:\n{text}",
        s.sshd.port()
    );

    // Now known: strict checking lets it through.
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

/// `StrictHostKeyChecking accept-new` in `~/.ssh/config`, with a UserKnownHostsFile that does
/// not exist yet.
#[test]
fn unknown_host_key_is_accepted_with_accept_new_in_config() {
    let s = SshWorld::new(Protocol::V2);
    let known_hosts = s.w.root().join("client").join("known_hosts");
    std::fs::create_dir_all(known_hosts.parent().expect("has a parent")).expect("can mkdir");
    let config = |strict: &str| {
        format!(
            "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n    \
             UserKnownHostsFile {}\n{strict}",
            s.key.display(),
            known_hosts.display()
        )
    };
    s.write_ssh_config(&config(""));
    let (up, down) = mirror_fixture(&s.w);
    let run = s.fails_with_4(&["sync", &s.url(&up), &s.url(&down)], &[], &down);
    assert!(
        run.stderr.contains(&s.sshd.host_fingerprint()),
        "fingerprint shown{run}"
    );

    s.write_ssh_config(&config("    StrictHostKeyChecking accept-new\n"));
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
    assert!(
        sshd::known_hosts_has(&known_hosts, s.sshd.port(), &s.sshd.host_public_key()),
        "accept-new must record the key in the UserKnownHostsFile {}",
        known_hosts.display()
    );
    assert!(
        !s.default_known_hosts().exists(),
        "~/.ssh/known_hosts must not be written when UserKnownHostsFile names another file"
    );

    s.write_ssh_config(&config("    StrictHostKeyChecking yes\n"));
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

#[test]
fn changed_host_key_is_refused_even_with_accept_new() {
    let s = SshWorld::new(Protocol::V2);
    let impostor = sshd::keygen(&s.w.root().join("keys").join("old-host-key"), "", "old");
    let known_hosts = s.default_known_hosts();
    let line = format!(
        "[127.0.0.1]:{} {}\n",
        s.sshd.port(),
        sshd::public_key(&impostor)
    );
    std::fs::write(&known_hosts, &line).expect("can write known_hosts");
    let config = |strict: &str| {
        format!(
            "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n{strict}",
            s.key.display()
        )
    };
    s.write_ssh_config(&config(""));
    let (up, down) = mirror_fixture(&s.w);

    let run = s.fails_with_4(&["sync", &s.url(&up), &s.url(&down)], &[], &down);
    assert_mentions(&run, "changed");

    let run = s.fails_with_4(
        &["sync", &s.url(&up), &s.url(&down)],
        &[("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", set("accept-new"))],
        &down,
    );
    assert_mentions(&run, "changed");

    s.write_ssh_config(&config("    StrictHostKeyChecking accept-new\n"));
    let run = s.fails_with_4(&["sync", "--json", &s.url(&up), &s.url(&down)], &[], &down);
    run.failure_report();
    assert_mentions(&run, "changed");

    assert_eq!(
        std::fs::read_to_string(&known_hosts).expect("known_hosts"),
        line,
        "known_hosts must be left alone when the key changed"
    );
}

#[test]
fn hashed_known_hosts_entry_is_accepted() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let known_hosts = s.default_known_hosts();
    sshd::hash_known_hosts(&known_hosts);
    let text = std::fs::read_to_string(&known_hosts).expect("known_hosts");
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "precondition: the entry is hashed: {text}"
    );
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

/// `StrictHostKeyChecking no`: an unknown host is let in.
#[test]
fn strict_host_key_checking_no_lets_an_unknown_host_in() {
    let s = SshWorld::new(Protocol::V2);
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n    \
         StrictHostKeyChecking no\n",
        s.key.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

/// known_hosts as people have them: comments, blank lines, other hosts, several names on
/// one line, and a marker line (`@cert-authority`) that is not a plain entry.
#[test]
fn known_hosts_with_comments_and_name_lists() {
    let s = SshWorld::new(Protocol::V2);
    let other = sshd::keygen(&s.w.root().join("keys").join("other-host"), "", "other");
    std::fs::write(
        s.default_known_hosts(),
        format!(
            "# hosts we trust\n\n\
             @cert-authority *.example.invalid {other}\n\
             other.example.invalid,192.0.2.1 {other}\n\
             mirror.example.invalid,[127.0.0.1]:{port} {key} the test server\n",
            other = sshd::public_key(&other),
            port = s.sshd.port(),
            key = s.sshd.host_public_key(),
        ),
    )
    .expect("can write known_hosts");
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        s.key.display()
    ));
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(&up, &down, &s.url(&up), &s.url(&down), &[]);
}

/// ssh_config(5) syntax: keywords in any case, `keyword=value`, `~/` paths, and the user
/// from `User` when the URL names none.
#[test]
fn config_syntax_tilde_paths_and_user_from_config() {
    let s = SshWorld::new(Protocol::V2);
    let ssh_dir = s.ssh_dir();
    std::fs::copy(&s.key, ssh_dir.join("deploy")).expect("can copy the key");
    std::fs::copy(sshd::pub_path(&s.key), ssh_dir.join("deploy.pub")).expect("can copy");
    std::fs::write(ssh_dir.join("hosts_custom"), s.sshd.known_hosts_line())
        .expect("can write known_hosts");
    s.write_ssh_config(&format!(
        "HOST mirror-host\n\
         \x20   hostname=127.0.0.1\n\
         \x20   PORT {port}\n\
         \x20   user = {user}\n\
         \x20   identityFile ~/.ssh/deploy\n\
         \x20   IdentitiesOnly=yes\n\
         \x20   userknownhostsfile ~/.ssh/hosts_custom\n",
        port = s.sshd.port(),
        user = s.sshd.user(),
    ));
    let (up, down) = mirror_fixture(&s.w);
    let up_arg = format!("ssh://mirror-host{}", path_arg(&up));
    let down_arg = format!("mirror-host:{}", path_arg(&down));
    s.sync_ok(&up, &down, &up_arg, &down_arg, &[]);
}

/// Paths with a space and a single quote reach the server intact (the remote command quotes
/// them as git does: `git-upload-pack '/a/it'\''s here/up stream'`).
#[test]
fn paths_with_space_and_quote() {
    let s = SshWorld::new(Protocol::V2);
    s.trust_host();
    let (up, down) = mirror_fixture(&s.w);
    let odd_dir = s.w.root().join("it's here");
    std::fs::create_dir_all(&odd_dir).expect("can mkdir");
    let (odd_up, odd_down) = (odd_dir.join("up stream"), odd_dir.join("down's.git"));
    std::fs::rename(&up, &odd_up).expect("can move upstream");
    std::fs::rename(&down, &odd_down).expect("can move downstream");
    // scp-like form (no port): reach the server through a Host entry for 127.0.0.1.
    s.write_ssh_config(&format!(
        "Host 127.0.0.1\n    Port {}\n    IdentityFile {}\n    IdentitiesOnly yes\n",
        s.sshd.port(),
        s.key.display()
    ));
    let up_arg = format!("{}@127.0.0.1:{}", s.sshd.user(), path_arg(&odd_up));
    let down_arg = format!("{}@127.0.0.1:{}", s.sshd.user(), path_arg(&odd_down));
    s.sync_ok(&odd_up, &odd_down, &up_arg, &down_arg, &[]);
}

// ---------------------------------------------------------------------------------------------
// Connection failures.

#[test]
fn connection_refused_names_host_and_port() {
    let w = World::new();
    let (up, down) = mirror_fixture(&w);
    let port = sshd::free_port();
    let url = format!(
        "ssh://{}@127.0.0.1:{port}{}",
        sshd::current_user(),
        path_arg(&up)
    );
    let before = w.refs(&down);
    let started = Instant::now();
    let run = w.kalandra_env(
        w.root(),
        &["sync", "--connect-timeout", "10", &url, path_arg(&down)],
        &w.global_config(),
        &SshWorld::env(&[]),
    );
    run.assert_code(4);
    assert_mentions(&run, "refused");
    assert!(
        run.stderr.contains(&format!("127.0.0.1:{port}")),
        "stderr should name 127.0.0.1:{port}{run}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "a refused connection fails at once, not after a timeout{run}"
    );
    assert_eq!(w.refs(&down), before);

    let run = w.kalandra_env(
        w.root(),
        &[
            "sync",
            "--json",
            path_arg(&up),
            &url.replace(path_arg(&up), path_arg(&down)),
        ],
        &w.global_config(),
        &SshWorld::env(&[]),
    );
    run.assert_code(4);
    run.failure_report();
    assert_eq!(w.refs(&down), before);
}

// ---------------------------------------------------------------------------------------------
// GIT_SSH_COMMAND and GIT_SSH.

/// A wrapper around the real `ssh` that records each invocation's arguments, one a line,
/// after a `--- call` line.
fn recording_ssh_wrapper(s: &SshWorld, log: &Path) -> PathBuf {
    let known_hosts = s.w.root().join("wrapper_known_hosts");
    std::fs::write(&known_hosts, s.sshd.known_hosts_line()).expect("can write known_hosts");
    let wrapper = s.w.root().join("ssh-wrapper.sh");
    write_script(
        &wrapper,
        &format!(
            // Both sides connect at once: each record goes out in one write, so that two
            // wrappers appending to the log cannot interleave their lines.
            "#!/bin/sh\n\
             record=$(printf '%s\\n' '--- call' \"$@\")\n\
             printf '%s\\n' \"$record\" >> '{log}'\n\
             exec {ssh} \"$@\"\n",
            log = log.display(),
            ssh = plain_ssh_command(s, &known_hosts),
        ),
    );
    wrapper
}

/// The built-in client could not log in: no keys, no known_hosts, no config.
fn assert_builtin_client_cannot_work(s: &SshWorld) {
    let dir = s.w.home().join(".ssh");
    assert!(
        !dir.exists()
            || std::fs::read_dir(&dir)
                .expect("can list ~/.ssh")
                .next()
                .is_none(),
        "precondition: ~/.ssh is empty"
    );
}

fn assert_wrapper_log(s: &SshWorld, log: &Path, commands: &[String]) {
    let text = std::fs::read_to_string(log)
        .unwrap_or_else(|err| panic!("the GIT_SSH(_COMMAND) wrapper never ran ({err})"));
    let calls: Vec<Vec<&str>> = text
        .split("--- call\n")
        .filter(|c| !c.is_empty())
        .map(|c| c.lines().collect())
        .collect();
    for command in commands {
        let call = calls
            .iter()
            .find(|args| args.last() == Some(&command.as_str()))
            .unwrap_or_else(|| {
                panic!("no wrapper call ends with the remote command {command:?}:\n{text}")
            });
        let port = s.sshd.port().to_string();
        assert!(
            call.windows(2).any(|w| w[0] == "-p" && w[1] == port),
            "the call for {command:?} must pass -p {port}:\n{text}"
        );
        let host = format!("{}@127.0.0.1", s.sshd.user());
        assert!(
            call.contains(&host.as_str()),
            "the call for {command:?} must name {host}:\n{text}"
        );
    }
}

#[test]
fn git_ssh_command_replaces_the_builtin_client() {
    let s = SshWorld::new(Protocol::V2);
    let log = s.w.root().join("wrapper.log");
    let wrapper = recording_ssh_wrapper(&s, &log);
    assert_builtin_client_cannot_work(&s);
    let (up, down) = mirror_fixture(&s.w);
    // A command line, as git runs it through the shell: an argument that needs the shell.
    let command = format!("{} -o ServerAliveInterval=30", wrapper.display());
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        &s.url(&down),
        &[("GIT_SSH_COMMAND", set(&command))],
    );
    assert_wrapper_log(
        &s,
        &log,
        &[
            format!("git-upload-pack '{}'", path_arg(&up)),
            format!("git-receive-pack '{}'", path_arg(&down)),
        ],
    );
    let text = std::fs::read_to_string(&log).expect("wrapper log");
    assert!(
        text.contains("ServerAliveInterval=30"),
        "GIT_SSH_COMMAND's own arguments reach the program:\n{text}"
    );
}

#[test]
fn git_ssh_program_replaces_the_builtin_client() {
    let s = SshWorld::new(Protocol::V2);
    let log = s.w.root().join("wrapper.log");
    let wrapper = recording_ssh_wrapper(&s, &log);
    assert_builtin_client_cannot_work(&s);
    let (up, down) = mirror_fixture(&s.w);
    s.sync_ok(
        &up,
        &down,
        &s.url(&up),
        path_arg(&down),
        &[("GIT_SSH", set(&wrapper))],
    );
    assert_wrapper_log(&s, &log, &[format!("git-upload-pack '{}'", path_arg(&up))]);
}

// ---------------------------------------------------------------------------------------------
// A stalled or killed server.

/// Mirror `bigfile.sh` (locally), then add upstream a commit whose pack is far bigger than
/// [`CUT_AFTER`]. Returns (upstream, downstream).
fn big_change_pending(w: &World) -> (PathBuf, PathBuf) {
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    w.sync_ok(&up, &down, &[]);
    w.commit_file(&up, "more.txt", &random_hex_lines(7, 4096), "256 KiB more");
    w.git(&up, &["branch", "second", "main"]);
    (up, down)
}

/// Server-side packObjectsHook: let [`CUT_AFTER`] bytes of the pack through, touch `marker`,
/// then stay silent (without closing) for a minute.
fn stall_server(s: &SshWorld, marker: &Path) {
    let hook = s.w.root().join("stall-pack.sh");
    write_script(
        &hook,
        &format!(
            "#!/bin/sh\n\"$@\" | head -c {CUT_AFTER}\ntouch '{}'\nsleep 60\n",
            marker.display()
        ),
    );
    s.sshd.set_server_git_config(&format!(
        "[uploadpack]\n\tpackObjectsHook = {}\n\tkeepAlive = 0\n",
        hook.display()
    ));
}

#[test]
fn stalled_ssh_upstream_hits_the_idle_timeout() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = big_change_pending(&s.w);
    let marker = s.w.root().join("stalled");
    stall_server(&s, &marker);
    let started = Instant::now();
    let run = s.fails_with_4(
        &["sync", "--idle-timeout", "2", &s.url(&up), path_arg(&down)],
        &[],
        &down,
    );
    assert_mentions(&run, "idle timeout");
    assert!(marker.exists(), "the server really stalled mid-pack{run}");
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "kalandra must give up long before the stalled server wakes up{run}"
    );

    // A healthy server again: the same sync goes through.
    s.sshd.set_server_git_config("");
    s.sync_ok(&up, &down, &s.url(&up), path_arg(&down), &[]);
}

#[test]
fn sshd_killed_mid_pack_leaves_downstream_unchanged() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = big_change_pending(&s.w);
    let before = s.w.refs(&down);
    let marker = s.w.root().join("stalled");
    stall_server(&s, &marker);

    let killer = s.sshd.killer();
    let watched = marker.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kalandra_done = done.clone();
    let assassin = std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        while !watched.exists() {
            if kalandra_done.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let the first bytes of the pack reach kalandra, then kill sshd and its sessions.
        std::thread::sleep(Duration::from_millis(300));
        killer.kill();
        true
    });
    let started = Instant::now();
    // The idle timeout is only a safety net: a closed connection must be noticed at once.
    let run = s.kalandra(
        &["sync", "--idle-timeout", "60", &s.url(&up), path_arg(&down)],
        &[],
    );
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let killed = assassin.join().expect("killer thread");
    run.assert_code(4);
    assert!(
        killed,
        "the server never reached the middle of the pack{run}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "kalandra must notice the dead connection without waiting for the idle timeout \
         ({elapsed:?}){run}"
    );
    assert!(
        run.stderr.contains("error"),
        "stderr must say what went wrong{run}"
    );
    assert_mentions(&run, "upstream");
    assert_refs_eq(&s.w.refs(&down), &before, "downstream after sshd died");
    s.w.assert_fsck(&down);
}

// ---------------------------------------------------------------------------------------------
// The remote helper over ssh.

#[test]
fn git_push_through_the_helper_with_ssh_urls() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let (up, down) = mirror_fixture(&s.w);
    let local = s.w.root().join("local");
    s.w.git(
        s.w.root(),
        &["clone", "-q", path_arg(&up), path_arg(&local)],
    );
    let pair = format!("kalandra::{}=>{}", s.url(&up), s.url(&down));
    let env = SshWorld::env(&[]);

    // Reads go to UP.
    let run =
        s.w.try_helper_git_env_opt(&local, &["ls-remote", &pair], &env);
    run.assert_ok();
    assert_eq!(
        run.stdout.trim_end(),
        s.w.git(s.w.root(), &["ls-remote", path_arg(&up)]),
        "ls-remote through the pair lists UP{run}"
    );

    // A push lands in DOWN, with UP's objects.
    let run =
        s.w.try_helper_git_env_opt(&local, &["push", &pair, "origin/main:refs/heads/x"], &env);
    run.assert_ok();
    let want: Refs = [("refs/heads/x".to_owned(), s.w.rev(&up, "main"))]
        .into_iter()
        .collect();
    assert_refs_eq(&s.w.refs(&down), &want, "DOWN after the push over ssh");
    s.w.assert_fsck(&down);
    assert_eq!(
        s.w.git(&down, &["rev-list", "--count", "refs/heads/x"]),
        s.w.git(&up, &["rev-list", "--count", "main"]),
        "the whole history arrived"
    );
}

/// ssh on one side and smart HTTP on the other: each side's transport is its own.
#[test]
fn ssh_to_http_and_http_to_ssh() {
    let s = SshWorld::new(Protocol::V2);
    s.standard_client();
    let server = crate::nginx::Nginx::start(&s.w);
    let (up, down) = mirror_fixture(&s.w);
    let down_url = server.url("v2", "mirror/empty.git");
    s.sync_ok(&up, &down, &s.url(&up), &down_url, &[]);
    change_upstream(&s.w, &up);
    s.sync_ok(&up, &down, &s.url(&up), &down_url, &[]);

    let other = s.w.root().join("other.git");
    s.w.git(s.w.root(), &["init", "-q", "--bare", path_arg(&other)]);
    s.sync_ok(
        &up,
        &other,
        &server.url("v2", "mirror/upstream"),
        &s.url(&other),
        &[],
    );
}
