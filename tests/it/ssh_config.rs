//! The OpenSSH and git ssh settings a user already has, honoured by the built-in client as
//! OpenSSH and git honour them: `Include` and `Match`, `ProxyJump` through a real bastion
//! sshd, `ProxyCommand`, host certificates from an `@cert-authority`, `@revoked` keys,
//! `GlobalKnownHostsFile`, user certificates (`TrustedUserCAKeys`), `core.sshCommand`, the
//! passwd home, and the warnings for what is not supported.
//!
//! Each setting is tried with real OpenSSH in the same test, with the same config file: the
//! reference run is `git ls-remote` through `GIT_SSH_COMMAND="ssh -F <config>"` (OpenSSH reads
//! `~/.ssh` from the passwd entry, not `$HOME`, so the file is named explicitly). Kalandra's
//! runs see the test's `~/.ssh` through `KALANDRA_SSH_HOME` (the harness sets it).

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    harness::{path_arg, Run, World},
    sshd::{self, Protocol, Sshd},
};

/// A world, a target sshd accepting [`Setup::key`], and the client's `~/.ssh`.
struct Setup {
    target: Sshd,
    w: World,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Setup {
    fn new() -> Self {
        Self::with_target(|_| String::new())
    }

    fn with_target(extra: impl FnOnce(&Path) -> String) -> Self {
        let w = World::new();
        let target = Sshd::start_with(&w.root().join("target"), Protocol::V2, extra);
        let key = sshd::keygen(&w.root().join("keys/client"), "", "kalandra-test-client");
        target.authorize(&key);
        let known_hosts = ssh_dir(&w).join("known_hosts");
        Setup {
            target,
            w,
            key,
            known_hosts,
        }
    }

    /// The mirror fixture (copied on first use): (upstream, empty.git).
    fn fixture(&self) -> (PathBuf, PathBuf) {
        let fx = self.w.root().join("mirror");
        if !fx.exists() {
            self.w.fixture("mirror.sh");
        }
        (fx.join("upstream"), fx.join("empty.git"))
    }

    /// `<alias>:<upstream path>`, the fixture copied if need be.
    fn scp_url(&self, alias: &str) -> String {
        format!("{alias}:{}", path_arg(&self.fixture().0))
    }

    /// Write `~/.ssh/config`, returning its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = ssh_dir(&self.w).join("config");
        std::fs::write(&path, text).expect("can write ~/.ssh/config");
        path
    }

    fn kalandra(&self, args: &[&str], extra: &[(&str, Option<OsString>)]) -> Run {
        self.w
            .kalandra_env(self.w.root(), args, &self.w.global_config(), &env(extra))
    }

    /// A first sync of the mirror fixture from `up_arg` into a local downstream, which must
    /// succeed and mirror; then the refs real OpenSSH + git list through `config` must be the
    /// same. Returns Kalandra's run.
    fn sync_and_compare(&self, up_arg: &str, config: &Path) -> Run {
        let (up, down) = self.fixture();
        let up_arg = up_arg.replace("{up}", path_arg(&up));
        let (_, run) = self
            .w
            .sync_ok_env(&up, &down, &up_arg, path_arg(&down), &[], &env(&[]));
        let listed = openssh_ls_remote(&self.w, &up_arg, config);
        let mut expected: Vec<String> = self
            .w
            .refs(&up)
            .into_iter()
            .map(|(name, oid)| format!("{oid}\t{name}"))
            .collect();
        expected.sort();
        let mut listed: Vec<String> = listed
            .lines()
            .filter(|l| !l.ends_with("\tHEAD") && !l.ends_with("^{}"))
            .map(str::to_owned)
            .collect();
        listed.sort();
        assert_eq!(listed, expected, "OpenSSH's view of {up_arg}");
        run
    }
}

/// `~/.ssh` of the world (mode 0700).
fn ssh_dir(w: &World) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = w.home().join(".ssh");
    std::fs::create_dir_all(&dir).expect("can create ~/.ssh");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// No agent, no host-key override, default logging; then `extra`.
fn env<'a>(extra: &[(&'a str, Option<OsString>)]) -> Vec<(&'a str, Option<OsString>)> {
    let mut env: Vec<(&'a str, Option<OsString>)> = vec![
        ("SSH_AUTH_SOCK", None),
        ("KALANDRA_SSH_STRICT_HOST_KEY_CHECKING", None),
        ("KALANDRA_LOG", None),
    ];
    env.extend(extra.iter().cloned());
    env
}

/// `git ls-remote <url>` with real OpenSSH reading `config` (and nothing of the passwd
/// home's `~/.ssh`). `Err` with git's stderr if it fails.
fn try_openssh_ls_remote(w: &World, url: &str, config: &Path) -> Result<String, String> {
    try_openssh_ls_remote_agent(w, url, config, None)
}

/// As [`try_openssh_ls_remote`], with the ssh-agent at `agent` if given.
fn try_openssh_ls_remote_agent(
    w: &World,
    url: &str,
    config: &Path,
    agent: Option<&Path>,
) -> Result<String, String> {
    let mut cmd = Command::new("git");
    w.isolate(&mut cmd, &w.global_config());
    cmd.env_remove("SSH_AUTH_SOCK");
    if let Some(sock) = agent {
        cmd.env("SSH_AUTH_SOCK", sock);
    }
    let out = cmd
        .args(["ls-remote", url])
        .env(
            "GIT_SSH_COMMAND",
            format!("ssh -F {} -o BatchMode=yes", config.display()),
        )
        .current_dir(w.root())
        .output()
        .expect("can run git ls-remote");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).expect("ls-remote output is UTF-8"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn openssh_ls_remote(w: &World, url: &str, config: &Path) -> String {
    try_openssh_ls_remote(w, url, config)
        .unwrap_or_else(|err| panic!("OpenSSH's git ls-remote {url} failed:\n{err}"))
}

/// A run of `kalandra plan <url> <url>`: reads `url` twice over ssh and changes nothing.
fn plan(s: &Setup, url: &str) -> Run {
    s.kalandra(&["plan", url, url], &[])
}

#[track_caller]
fn assert_mentions(run: &Run, needle: &str) {
    assert!(
        run.stderr.contains(needle),
        "stderr should mention {needle:?}{run}"
    );
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("can write a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `ssh-keygen -s <ca> <args> <pub>`: signs `<key>.pub` into `<key>-cert.pub`.
fn sign(ca: &Path, key: &Path, args: &[&str]) -> PathBuf {
    let out = Command::new("ssh-keygen")
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(args)
        .arg(sshd::pub_path(key))
        .output()
        .expect("can run ssh-keygen -s");
    assert!(
        out.status.success(),
        "ssh-keygen -s failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cert = key.as_os_str().to_owned();
    cert.push("-cert.pub");
    PathBuf::from(cert)
}

// ---------------------------------------------------------------------------------------------
// ssh_config: Include, Match, first match wins, warnings.

/// The way to the server is spread over an `Include`d glob and `Match` blocks; the blocks
/// that a wrong reading would apply send the connection to port 1 or a user that does not
/// exist. A `Match exec` block is skipped with a warning (OpenSSH runs `false` and skips it
/// too), `ControlPath` is warned about once, `ControlMaster no` and `ForwardAgent` not at all.
#[test]
fn include_and_match_choose_the_way_as_openssh_does() {
    let s = Setup::new();
    let dir = ssh_dir(&s.w);
    std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir conf.d");
    std::fs::write(
        dir.join("conf.d/10-alias.conf"),
        format!(
            "Host mirror-alias\n  HostName 127.0.0.1\n  Port {port}\n",
            port = s.target.port()
        ),
    )
    .expect("write include");
    std::fs::write(
        dir.join("conf.d/20-late.conf"),
        "Host mirror-alias\n  Port 1\n",
    )
    .expect("write include");
    std::fs::write(dir.join("conf.d/not-included.txt"), "Host *\n  Port 1\n")
        .expect("write a file the glob must not take");
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    let config = s.config(&format!(
        "Include {dir}/conf.d/*.conf\n\
         Match exec \"false\"\n  Port 1\n\
         Match originalhost mirror-alias host 127.0.0.1 localuser {user}\n  User {user}\n\
         Host mirror-alias\n  User nobody-at-all\n\
         Match !originalhost mirror-alias\n  Port 1\n\
         Match all\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n\
         \x20 ControlMaster no\n\
         Host *\n  ControlPath /nonexistent/%C\n  ForwardAgent no\n",
        dir = dir.display(),
        user = s.target.user(),
        key = s.key.display(),
        kh = s.known_hosts.display(),
    ));
    let run = s.sync_and_compare("mirror-alias:{up}", &config);
    assert_mentions(&run, "`Match exec`");
    assert_mentions(&run, "GIT_SSH_COMMAND=ssh");
    assert_eq!(
        run.stderr.matches("ControlPath is not supported").count(),
        1,
        "one warning per run for ControlPath{run}"
    );
    assert!(
        !run.stderr.contains("ControlMaster") && !run.stderr.contains("ForwardAgent"),
        "ControlMaster no and ForwardAgent are nothing to warn about{run}"
    );
}

/// A relative `Include` in the user's file is read from `~/.ssh` of the ssh home, with a
/// glob. (No OpenSSH comparison here: OpenSSH resolves it against the passwd home's `~/.ssh`,
/// which a test must not write; the absolute form is compared above.)
#[test]
fn relative_include_is_read_from_the_ssh_home() {
    let s = Setup::new();
    let dir = ssh_dir(&s.w);
    std::fs::create_dir_all(dir.join("config.d")).expect("mkdir config.d");
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    std::fs::write(
        dir.join("config.d/mirror"),
        format!(
            "Host mirror-alias\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n\
             \x20 IdentityFile {key}\n",
            port = s.target.port(),
            user = s.target.user(),
            key = s.key.display(),
        ),
    )
    .expect("write the included file");
    s.config("Include config.d/*\n");
    let url = s.scp_url("mirror-alias");
    let run = plan(&s, &url);
    assert!(run.code == 0, "the included file decides the way{run}");
}

/// `/etc/ssh/ssh_config` cannot be written by a test; what reading it after the user's file
/// means (first value wins, the system file fills gaps) is unit-tested in
/// `transport::ssh::config`. Here: the user's file wins over a later `Host *` in itself, and
/// a recognised but unsupported keyword is named in a warning rather than ignored.
#[test]
fn unsupported_keywords_are_warned_about_not_ignored() {
    let s = Setup::new();
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    let config = s.config(&format!(
        "Host 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  UserKnownHostsFile {kh}\n\
         \x20 User {user}\n\
         Host *\n  Port 1\n  CanonicalizeHostname yes\n  IgnoreUnknown Bogus*\n",
        port = s.target.port(),
        key = s.key.display(),
        kh = s.known_hosts.display(),
        user = s.target.user(),
    ));
    let run = s.sync_and_compare("127.0.0.1:{up}", &config);
    assert_mentions(&run, "CanonicalizeHostname is not supported");
    // Two connections (up and down), one warning.
    let url = s.scp_url("127.0.0.1");
    let run = plan(&s, &url);
    assert!(run.code == 0, "{run}");
    assert_eq!(
        run.stderr
            .matches("CanonicalizeHostname is not supported")
            .count(),
        1,
        "once per run{run}"
    );
}

// ---------------------------------------------------------------------------------------------
// ProxyJump and ProxyCommand.

/// A bastion sshd with TCP forwarding on and debug logging (it logs each direct-tcpip
/// request), accepting the client's key.
fn bastion(s: &Setup, name: &str) -> Sshd {
    let bastion = Sshd::start_with(&s.w.root().join(name), Protocol::V2, |_| {
        "LogLevel DEBUG1\nAllowTcpForwarding yes\n".to_owned()
    });
    bastion.authorize(&s.key);
    bastion
}

fn forwarded_to(bastion: &Sshd, port: u16) -> usize {
    bastion
        .log()
        .matches(&format!("target 127.0.0.1 port {port}"))
        .count()
}

/// `ProxyJump` to a bastion named by its own `Host` block: Kalandra's session goes through a
/// `direct-tcpip` channel that the bastion logs; both hosts' keys are checked. Then a two-hop
/// chain (`ssh://` form, then an alias): through the first bastion to the second, then to
/// the target.
#[test]
fn proxy_jump_through_a_bastion_like_openssh() {
    let s = Setup::new();
    let first = bastion(&s, "bastion1");
    let second = bastion(&s, "bastion2");
    let all_keys = format!(
        "{}{}{}",
        s.target.known_hosts_line(),
        first.known_hosts_line(),
        second.known_hosts_line()
    );
    std::fs::write(&s.known_hosts, &all_keys).expect("write known_hosts");
    let common = format!(
        "  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  User {user}\n",
        key = s.key.display(),
        kh = s.known_hosts.display(),
        user = s.target.user(),
    );
    let config_text = |jump: &str| {
        format!(
            "Host target\n  HostName 127.0.0.1\n  Port {tport}\n  ProxyJump {jump}\n\
             Host bastion\n  HostName 127.0.0.1\n  Port {b1}\n\
             Host bastion2\n  HostName 127.0.0.1\n  Port {b2}\n\
             Host *\n{common}",
            tport = s.target.port(),
            b1 = first.port(),
            b2 = second.port(),
        )
    };
    let config = s.config(&config_text("bastion"));
    let before = forwarded_to(&first, s.target.port());
    s.sync_and_compare("target:{up}", &config);
    // Kalandra's upload-pack session and OpenSSH's ls-remote each went through the bastion.
    assert!(
        forwarded_to(&first, s.target.port()) >= before + 2,
        "the bastion should have forwarded both sessions to the target:\n{}",
        first.log()
    );

    let chain = format!(
        "ssh://{}@127.0.0.1:{},bastion2",
        s.target.user(),
        first.port()
    );
    let config = s.config(&config_text(&chain));
    let url = s.scp_url("target");
    let run = plan(&s, &url);
    assert!(run.code == 0, "plan through the two-hop chain{run}");
    assert!(
        forwarded_to(&first, second.port()) >= 1 && forwarded_to(&second, s.target.port()) >= 1,
        "first bastion -> second bastion -> target:\n{}\n{}",
        first.log(),
        second.log()
    );
    openssh_ls_remote(&s.w, &url, &config);

    // Every hop's key is checked: forget the first bastion's and the jump is refused,
    // naming it.
    std::fs::write(
        &s.known_hosts,
        all_keys.replace(&first.known_hosts_line(), ""),
    )
    .expect("write known_hosts");
    let run = plan(&s, &url);
    assert!(
        run.code != 0,
        "an unknown bastion key must stop the jump{run}"
    );
    assert_mentions(
        &run,
        &format!("host key of 127.0.0.1:{} is not known", first.port()),
    );
    assert!(
        try_openssh_ls_remote(&s.w, &url, &config).is_err(),
        "OpenSSH refuses the unknown bastion too"
    );
}

/// `ProxyCommand` runs through `sh -c` with `%h %p %r %n` expanded, and the session runs over
/// its stdin/stdout: here `ssh -W %h:%p bastion`, as users write it. The command records its
/// arguments; `ProxyCommand none` in an earlier block turns it off for one alias.
#[test]
fn proxy_command_with_tokens_like_openssh() {
    let s = Setup::new();
    let bastion = bastion(&s, "bastion");
    std::fs::write(
        &s.known_hosts,
        format!(
            "{}{}",
            s.target.known_hosts_line(),
            bastion.known_hosts_line()
        ),
    )
    .expect("write known_hosts");
    let log = s.w.root().join("proxy.log");
    let script = s.w.root().join("proxy.sh");
    let config_path = ssh_dir(&s.w).join("config");
    write_script(
        &script,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{log}'\nexec ssh -F '{config}' -W \"$1:$2\" bastion\n",
            log = log.display(),
            config = config_path.display(),
        ),
    );
    let config = s.config(&format!(
        "Host direct\n  HostName 127.0.0.1\n  ProxyCommand none\n\
         Host target direct\n  HostName 127.0.0.1\n  Port {tport}\n\
         \x20 ProxyCommand {script} %h %p %r %n 100%%\n\
         Host bastion\n  HostName 127.0.0.1\n  Port {bport}\n\
         Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n\
         \x20 User {user}\n  BatchMode yes\n",
        script = script.display(),
        tport = s.target.port(),
        bport = bastion.port(),
        key = s.key.display(),
        kh = s.known_hosts.display(),
        user = s.target.user(),
    ));
    let before = forwarded_to(&bastion, s.target.port());
    s.sync_and_compare("target:{up}", &config);
    let text = std::fs::read_to_string(&log).expect("the ProxyCommand ran");
    let expected = format!(
        "127.0.0.1 {} {} target 100%",
        s.target.port(),
        s.target.user()
    );
    assert_eq!(
        text.lines().filter(|l| *l == expected).count(),
        2,
        "Kalandra and OpenSSH both ran it with the same tokens:\n{text}"
    );
    assert!(forwarded_to(&bastion, s.target.port()) >= before + 2);

    // A URL's user is never shell syntax for the ProxyCommand (OpenSSH 9.6 refuses it too).
    let marker = s.w.root().join("injected");
    // (Relative: a `/` before the `:` would make it a local path. Kalandra runs in root.)
    let hostile = format!("x$(touch${{IFS}}injected)@{}", s.scp_url("target"));
    let run = plan(&s, &hostile);
    assert!(run.code != 0, "{run}");
    assert_mentions(&run, "contains shell syntax");
    assert!(
        !marker.exists(),
        "the ProxyCommand ran the URL's user as shell"
    );

    let run = plan(&s, &s.scp_url("direct"));
    assert!(run.code == 0, "ProxyCommand none connects directly{run}");
    let text = std::fs::read_to_string(&log).expect("the ProxyCommand log");
    assert_eq!(
        text.lines().count(),
        2,
        "none means no ProxyCommand:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// known_hosts: host certificates, @revoked, GlobalKnownHostsFile.

/// A target sshd whose host key is signed by a CA made here, for `principal`.
fn certified_target(principal: &str) -> (Setup, PathBuf) {
    let ca_dir = tempfile::tempdir().expect("tempdir for the CA");
    let ca = sshd::keygen(&ca_dir.path().join("host_ca"), "", "kalandra-test-host-ca");
    let ca_keep = ca.clone();
    let principal = principal.to_owned();
    let s = Setup::with_target(move |host_key| {
        let cert = sign(
            &ca_keep,
            host_key,
            &["-h", "-I", "kalandra-test-host", "-n", &principal],
        );
        format!("HostCertificate {}\n", cert.display())
    });
    // The CA outlives the temporary directory: keep a copy in the world.
    let kept = s.w.root().join("host_ca");
    std::fs::copy(&ca, &kept).expect("copy the CA key");
    std::fs::copy(sshd::pub_path(&ca), sshd::pub_path(&kept)).expect("copy the CA key");
    (s, kept)
}

fn cert_config(s: &Setup, global: &Path) -> PathBuf {
    s.config(&format!(
        "Host 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  IdentitiesOnly yes\n\
         \x20 User {user}\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile {global}\n\
         \x20 StrictHostKeyChecking yes\n",
        port = s.target.port(),
        key = s.key.display(),
        user = s.target.user(),
        kh = s.known_hosts.display(),
        global = global.display(),
    ))
}

/// Trusted through a CA in `GlobalKnownHostsFile` (`@cert-authority` with a wildcard
/// pattern), with no plain key anywhere; then the same server's key `@revoked` in the user's
/// file is refused with a clear error, by Kalandra and OpenSSH alike.
#[test]
fn host_certificate_from_a_cert_authority_and_revoked_key() {
    let (s, ca) = certified_target("127.0.0.1");
    let global = s.w.root().join("global_known_hosts");
    std::fs::write(
        &global,
        format!("@cert-authority [127.0.0.*]:* {}\n", sshd::public_key(&ca)),
    )
    .expect("write the global known hosts");
    std::fs::write(&s.known_hosts, "").expect("empty user known_hosts");
    let config = cert_config(&s, &global);
    s.sync_and_compare("127.0.0.1:{up}", &config);
    assert_eq!(
        std::fs::read_to_string(&s.known_hosts).expect("known_hosts"),
        "",
        "nothing was learnt: the certificate was trusted"
    );

    std::fs::write(
        &s.known_hosts,
        format!("@revoked * {}\n", s.target.host_public_key()),
    )
    .expect("write @revoked");
    let url = s.scp_url("127.0.0.1");
    let run = plan(&s, &url);
    assert!(run.code != 0, "a revoked host key must be refused{run}");
    assert_mentions(&run, "@revoked");
    assert_mentions(&run, &s.target.host_fingerprint());
    let err = try_openssh_ls_remote(&s.w, &url, &config).expect_err("OpenSSH refuses it too");
    assert!(err.contains("REVOKED"), "OpenSSH's reason: {err}");
}

/// A certificate from the trusted CA but for another host name is refused (OpenSSH too),
/// and says why; with the CA not listed for this host, the plain key decides as before.
#[test]
fn host_certificate_for_another_principal_is_refused() {
    let (s, ca) = certified_target("other.example");
    let global = s.w.root().join("global_known_hosts");
    std::fs::write(
        &global,
        format!("@cert-authority * {}\n", sshd::public_key(&ca)),
    )
    .expect("write the global known hosts");
    std::fs::write(&s.known_hosts, "").expect("empty user known_hosts");
    let config = cert_config(&s, &global);
    let url = s.scp_url("127.0.0.1");
    let run = plan(&s, &url);
    assert!(run.code != 0, "wrong principal must be refused{run}");
    assert_mentions(&run, "not valid for \"127.0.0.1\"");
    assert!(
        try_openssh_ls_remote(&s.w, &url, &config).is_err(),
        "OpenSSH refuses the certificate too"
    );

    // The CA listed for other hosts only; the plain key in known_hosts: trusted.
    std::fs::write(
        &global,
        format!("@cert-authority *.example {}\n", sshd::public_key(&ca)),
    )
    .expect("rewrite the global known hosts");
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    s.sync_and_compare("127.0.0.1:{up}", &config);
}

/// `HostKeyAlias` names the known_hosts entry (no port), and `IdentityAgent` names the agent
/// socket (no `SSH_AUTH_SOCK` in the environment); `IdentityAgent none` turns an agent in
/// the environment off. OpenSSH with the same file agrees each time.
#[test]
fn host_key_alias_and_identity_agent_like_openssh() {
    let s = Setup::new();
    std::fs::write(
        &s.known_hosts,
        format!("shared-alias {}\n", s.target.host_public_key()),
    )
    .expect("write known_hosts");
    let agent = sshd::Agent::start(&s.w.root().join("agent.sock"));
    agent.add(&s.key);
    let config_with = |identity_agent: &str| {
        s.config(&format!(
            "Host 127.0.0.1\n  Port {port}\n  User {user}\n  UserKnownHostsFile {kh}\n\
             \x20 HostKeyAlias shared-alias\n  IdentityAgent {identity_agent}\n",
            port = s.target.port(),
            user = s.target.user(),
            kh = s.known_hosts.display(),
        ))
    };
    let config = config_with(&agent.sock().display().to_string());
    s.sync_and_compare("127.0.0.1:{up}", &config);

    let config = config_with("none");
    let url = s.scp_url("127.0.0.1");
    let run = s.kalandra(
        &["plan", &url, &url],
        &[("SSH_AUTH_SOCK", Some(agent.sock().into()))],
    );
    assert!(
        run.code != 0,
        "IdentityAgent none: the agent is not used{run}"
    );
    assert_mentions(&run, "publickey authentication failed");
    assert!(
        try_openssh_ls_remote_agent(&s.w, &url, &config, Some(agent.sock())).is_err(),
        "OpenSSH does not use the agent either"
    );
}

// ---------------------------------------------------------------------------------------------
// User certificates.

/// sshd trusts a user CA and has no authorized key: only a certificate logs in. Found as
/// `<IdentityFile>-cert.pub` beside the key (as OpenSSH loads it), then as `CertificateFile`.
#[test]
fn user_certificate_signed_by_a_trusted_user_ca() {
    let w_ca = tempfile::tempdir().expect("tempdir");
    let user_ca = sshd::keygen(&w_ca.path().join("user_ca"), "", "kalandra-test-user-ca");
    let user_ca_pub = sshd::pub_path(&user_ca);
    let w = World::new();
    let target = Sshd::start_with(&w.root().join("target"), Protocol::V2, |_| {
        format!("TrustedUserCAKeys {}\n", user_ca_pub.display())
    });
    let key = sshd::keygen(&w.root().join("keys/client"), "", "kalandra-test-client");
    let known_hosts = ssh_dir(&w).join("known_hosts");
    std::fs::write(&known_hosts, target.known_hosts_line()).expect("write known_hosts");
    let s = Setup {
        target,
        w,
        key,
        known_hosts,
    };
    let config = s.config(&format!(
        "Host 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  IdentitiesOnly yes\n\
         \x20 User {user}\n  UserKnownHostsFile {kh}\n",
        port = s.target.port(),
        key = s.key.display(),
        user = s.target.user(),
        kh = s.known_hosts.display(),
    ));
    let url = s.scp_url("127.0.0.1");
    let run = plan(&s, &url);
    assert!(
        run.code != 0,
        "without a certificate the key is refused{run}"
    );
    assert_mentions(&run, "publickey authentication failed");

    let cert = sign(
        &user_ca,
        &s.key,
        &["-I", "kalandra-test-user", "-n", s.target.user()],
    );
    s.sync_and_compare("127.0.0.1:{up}", &config);

    // Elsewhere, named by CertificateFile.
    let moved = s.w.root().join("vault-issued-cert.pub");
    std::fs::rename(&cert, &moved).expect("move the certificate");
    let config = s.config(&format!(
        "{}  CertificateFile {}\n",
        std::fs::read_to_string(&config).expect("config"),
        moved.display()
    ));
    let run = plan(&s, &url);
    assert!(run.code == 0, "CertificateFile is used{run}");
    openssh_ls_remote(&s.w, &url, &config);
}

/// The key lives only in an ssh-agent: a certificate the agent holds too (`ssh-add` of a
/// key with its `-cert.pub` beside, as Teleport and Vault users do) logs in; so does a
/// `CertificateFile` on disk for a key that only the agent has.
#[test]
fn user_certificate_with_the_key_in_the_agent() {
    let w_ca = tempfile::tempdir().expect("tempdir");
    let user_ca = sshd::keygen(&w_ca.path().join("user_ca"), "", "kalandra-test-user-ca");
    let user_ca_pub = sshd::pub_path(&user_ca);
    let w = World::new();
    let target = Sshd::start_with(&w.root().join("target"), Protocol::V2, |_| {
        format!("TrustedUserCAKeys {}\n", user_ca_pub.display())
    });
    let key = sshd::keygen(
        &w.root().join("keys/agent-only"),
        "",
        "kalandra-test-client",
    );
    let known_hosts = ssh_dir(&w).join("known_hosts");
    std::fs::write(&known_hosts, target.known_hosts_line()).expect("write known_hosts");
    let s = Setup {
        target,
        w,
        key,
        known_hosts,
    };
    let base = format!(
        "Host 127.0.0.1\n  Port {port}\n  User {user}\n  UserKnownHostsFile {kh}\n",
        port = s.target.port(),
        user = s.target.user(),
        kh = s.known_hosts.display(),
    );
    let config = s.config(&base);
    let url = s.scp_url("127.0.0.1");
    let cert = sign(
        &user_ca,
        &s.key,
        &["-I", "kalandra-test-user", "-n", s.target.user()],
    );

    let agent = sshd::Agent::start(&s.w.root().join("agent1.sock"));
    agent.add(&s.key);
    assert!(
        agent.list().contains("CERT"),
        "ssh-add took the certificate too: {}",
        agent.list()
    );
    let with_agent = |agent: &sshd::Agent| {
        s.kalandra(
            &["plan", &url, &url],
            &[("SSH_AUTH_SOCK", Some(agent.sock().into()))],
        )
    };
    let run = with_agent(&agent);
    assert!(run.code == 0, "the agent's certificate logs in{run}");
    try_openssh_ls_remote_agent(&s.w, &url, &config, Some(agent.sock()))
        .expect("OpenSSH logs in with the agent's certificate");
    drop(agent);

    // A plain key in the agent, its certificate on disk elsewhere.
    let moved = s.w.root().join("issued-cert.pub");
    std::fs::rename(&cert, &moved).expect("move the certificate");
    let agent = sshd::Agent::start(&s.w.root().join("agent2.sock"));
    agent.add(&s.key);
    let run = with_agent(&agent);
    assert!(run.code != 0, "the plain key alone is refused{run}");
    let config = s.config(&format!("{base}  CertificateFile {}\n", moved.display()));
    let run = with_agent(&agent);
    assert!(run.code == 0, "CertificateFile with the agent's key{run}");
    try_openssh_ls_remote_agent(&s.w, &url, &config, Some(agent.sock()))
        .expect("OpenSSH logs in with CertificateFile and the agent's key");
}

// ---------------------------------------------------------------------------------------------
// The passwd home, and git's side.

/// OpenSSH reads `~/.ssh` from the passwd entry, not `$HOME`; so does Kalandra unless
/// `KALANDRA_SSH_HOME` says otherwise. With it unset, the test's `$HOME/.ssh` (which would
/// work) is not read: the refusal names the passwd home's known_hosts.
#[test]
fn ssh_files_come_from_the_passwd_home_not_home() {
    let s = Setup::new();
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    s.config(&format!(
        "Host 127.0.0.1\n  Port {port}\n  IdentityFile {key}\n  User {user}\n",
        port = s.target.port(),
        key = s.key.display(),
        user = s.target.user(),
    ));
    let url = s.scp_url("127.0.0.1");
    let ssh_url = s.target.url(&s.fixture().0);
    let run = plan(&s, &url);
    assert!(
        run.code == 0,
        "KALANDRA_SSH_HOME (the harness's) is read{run}"
    );

    let out = Command::new("getent")
        .args(["passwd", s.target.user()])
        .output()
        .expect("getent passwd");
    let entry = String::from_utf8_lossy(&out.stdout).into_owned();
    let passwd_home = entry
        .trim()
        .split(':')
        .nth(5)
        .expect("a passwd home")
        .to_owned();
    assert_ne!(Path::new(&passwd_home), s.w.home());
    let run = s.kalandra(
        &["plan", &ssh_url, &ssh_url],
        &[("KALANDRA_SSH_HOME", None)],
    );
    assert!(
        run.code != 0,
        "the passwd home does not know this server{run}"
    );
    assert_mentions(&run, &format!("{passwd_home}/.ssh/known_hosts"));
    assert!(
        !run.stderr.contains(path_arg(s.w.home())),
        "$HOME/.ssh must not be read{run}"
    );
}

/// `core.sshCommand` from git config is used as git uses it, and sits between
/// `GIT_SSH_COMMAND` (which wins) and `GIT_SSH` (which loses); `ssh.variant` is read too.
/// Real `git ls-remote` with the same config runs the same command.
#[test]
fn core_ssh_command_between_git_ssh_command_and_git_ssh() {
    let s = Setup::new();
    std::fs::write(&s.known_hosts, s.target.known_hosts_line()).expect("write known_hosts");
    let log = s.w.root().join("ssh-command.log");
    let make = |name: &str| {
        let path = s.w.root().join(name);
        write_script(
            &path,
            &format!(
                "#!/bin/sh\necho '{name}' \"$@\" >> '{log}'\n\
                 exec ssh -F /dev/null -i '{key}' -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile='{kh}' -o BatchMode=yes \"$@\"\n",
                log = log.display(),
                key = s.key.display(),
                kh = s.known_hosts.display(),
            ),
        );
        path
    };
    let from_config = make("from-config");
    let from_env = make("from-env");
    let from_git_ssh = make("from-git-ssh");
    let global = s.w.global_config_with(
        "ssh-command.gitconfig",
        &format!(
            "[core]\n\tsshCommand = {}\n[ssh]\n\tvariant = ssh\n",
            from_config.display()
        ),
    );
    let url = s.target.url(&s.fixture().0);
    let run_with = |extra: &[(&str, Option<OsString>)]| {
        let run =
            s.w.kalandra_env(s.w.root(), &["plan", &url, &url], &global, &env(extra));
        assert!(run.code == 0, "plan with a configured ssh command{run}");
        let text = std::fs::read_to_string(&log).expect("a command ran");
        std::fs::remove_file(&log).expect("reset the log");
        text
    };
    let text = run_with(&[("GIT_SSH", Some(from_git_ssh.clone().into()))]);
    assert!(
        text.lines().all(|l| l.starts_with("from-config ")) && text.contains(" -p "),
        "core.sshCommand beats GIT_SSH, with OpenSSH's -p:\n{text}"
    );
    let text = run_with(&[("GIT_SSH_COMMAND", Some(from_env.clone().into()))]);
    assert!(
        text.lines().all(|l| l.starts_with("from-env ")),
        "GIT_SSH_COMMAND beats core.sshCommand:\n{text}"
    );

    // git itself, with the same global config, runs the core.sshCommand.
    let mut cmd = Command::new("git");
    s.w.isolate(&mut cmd, &global);
    let out = cmd
        .args(["ls-remote", &url])
        .current_dir(s.w.root())
        .output()
        .expect("git ls-remote");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).expect("git ran the command");
    assert!(text.starts_with("from-config "), "{text}");

    // `ssh.variant simple` cannot take a port: Kalandra and git both refuse the URL's port.
    let simple = s.w.global_config_with(
        "ssh-simple.gitconfig",
        &format!(
            "[core]\n\tsshCommand = {}\n[ssh]\n\tvariant = simple\n",
            from_config.display()
        ),
    );
    let run =
        s.w.kalandra_env(s.w.root(), &["plan", &url, &url], &simple, &env(&[]));
    assert!(run.code != 0, "{run}");
    assert_mentions(&run, "\"simple\" ssh variant");
    let mut cmd = Command::new("git");
    s.w.isolate(&mut cmd, &simple);
    let out = cmd
        .args(["ls-remote", &url])
        .current_dir(s.w.root())
        .output()
        .expect("git ls-remote");
    assert!(
        !out.status.success(),
        "git refuses a port with the simple variant too"
    );
}
