//! A real OpenSSH server for the ssh transport tests, and the client-side odds and ends
//! (keys, an agent, known_hosts lines).
//!
//! [`Sshd::start`] runs `/usr/sbin/sshd -D -e` on 127.0.0.1 and a free port with its own host
//! key, `authorized_keys`, pid file and log under a directory of the test's world. The remote
//! `git-upload-pack`/`git-receive-pack` get a clean environment through `SetEnv`: no system
//! config, a global config of the test's choosing ([`Sshd::set_server_git_config`]) and a PATH
//! that finds the `git` the tests use. If sshd does not come up, the test fails with its log;
//! nothing is ever skipped. Dropping the [`Sshd`] kills it and every process it started.

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long sshd (or ssh-agent) may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The current user's name, as sshd will see it (`id -un`).
pub fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("can run id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8(out.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_owned()
}

fn is_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("can run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The sshd binary: /usr/sbin/sshd, /sbin/sshd or `sshd` on PATH.
fn sshd_bin() -> PathBuf {
    for candidate in ["/usr/sbin/sshd", "/sbin/sshd"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    if let Some(found) = which("sshd") {
        return found;
    }
    panic!(
        "sshd not found (looked in /usr/sbin, /sbin and PATH): install openssh-server \
         (tests/run.sh does); the ssh tests need a real OpenSSH server"
    );
}

/// `cmd` as found on PATH.
pub fn which(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(cmd))
        .find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("can bind an ephemeral port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Run a command that must succeed; return its stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run {what}: {err}"));
    assert!(
        out.status.success(),
        "{what} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("output is UTF-8")
}

/// Generate an ed25519 key pair at `path` (and `path.pub`), encrypted with `passphrase` if
/// it is not empty. Returns `path`.
pub fn keygen(path: &Path, passphrase: &str, comment: &str) -> PathBuf {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("can create the key's directory");
    }
    run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
            .arg(path),
        "ssh-keygen",
    );
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("can chmod the private key");
    }
    path.to_path_buf()
}

/// `<path>.pub`.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// The public key `<key>.pub` as `type base64` (no comment).
pub fn public_key(key: &Path) -> String {
    let text = std::fs::read_to_string(pub_path(key)).expect("can read the public key");
    let mut fields = text.split_whitespace();
    let kind = fields.next().expect("public key has a type");
    let blob = fields.next().expect("public key has a base64 blob");
    format!("{kind} {blob}")
}

/// The `SHA256:...` fingerprint of the key whose public half is `<key>.pub`.
pub fn fingerprint(key: &Path) -> String {
    let out = run(
        Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(pub_path(key)),
        "ssh-keygen -l",
    );
    out.split_whitespace()
        .find(|f| f.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no SHA256 fingerprint in {out:?}"))
        .to_owned()
}

/// Hash every host name of the known_hosts file `file` in place (`ssh-keygen -H`).
pub fn hash_known_hosts(file: &Path) {
    run(
        Command::new("ssh-keygen").arg("-H").arg("-f").arg(file),
        "ssh-keygen -H",
    );
    let mut old = file.as_os_str().to_owned();
    old.push(".old");
    let _ = std::fs::remove_file(PathBuf::from(old));
}

/// Starts sshd in `<root>/sshd` and sets the world's ssh client up to use it: a fresh key
/// that sshd accepts, named as IdentityFile for 127.0.0.1 in `~/.ssh/config`, and the
/// server's key in `~/.ssh/known_hosts`.
pub fn start_for(w: &crate::harness::World, protocol: Protocol) -> Sshd {
    let sshd = Sshd::start(&w.root().join("sshd"), protocol);
    sshd.authorize(&client_key(w));
    std::fs::write(w.home().join(".ssh/known_hosts"), sshd.known_hosts_line())
        .expect("can write known_hosts");
    sshd
}

/// The world's ssh client key, `<root>/client-key`: made on first use and named as
/// IdentityFile for 127.0.0.1 in `~/.ssh/config`.
pub fn client_key(w: &crate::harness::World) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let key = w.root().join("client-key");
    if key.exists() {
        return key;
    }
    keygen(&key, "", "kalandra-test-client");
    let ssh_dir = w.home().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).expect("can create ~/.ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700))
        .expect("can chmod ~/.ssh");
    std::fs::write(
        ssh_dir.join("config"),
        format!(
            "Host 127.0.0.1\n    IdentityFile {}\n    IdentitiesOnly yes\n",
            key.display()
        ),
    )
    .expect("can write ~/.ssh/config");
    key
}

/// Let the world's ssh client trust one more sshd: its key goes into `~/.ssh/known_hosts`.
pub fn trust(w: &crate::harness::World, sshd: &Sshd) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(w.home().join(".ssh/known_hosts"))
        .and_then(|mut f| f.write_all(sshd.known_hosts_line().as_bytes()))
        .expect("can append to known_hosts");
}

/// Whether `file` has an entry for `[127.0.0.1]:port` (hashed or not) with exactly `key`
/// (`type base64`), as `ssh-keygen -F` finds it.
pub fn known_hosts_has(file: &Path, port: u16, key: &str) -> bool {
    let out = Command::new("ssh-keygen")
        .arg("-F")
        .arg(format!("[127.0.0.1]:{port}"))
        .arg("-f")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("can run ssh-keygen -F");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(key)
}

/// Whether sshd accepts `GIT_PROTOCOL` from clients (so that git speaks protocol v2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `AcceptEnv GIT_PROTOCOL`: the server side sees `GIT_PROTOCOL=version=2`.
    V2,
    /// No `AcceptEnv`: the env request is refused and the server speaks v0.
    V0,
}

/// A running sshd. Killed, with every process it started, on drop.
pub struct Sshd {
    child: Child,
    dir: PathBuf,
    port: u16,
    user: String,
    host_key: PathBuf,
}

impl Sshd {
    /// Start sshd with its files in `dir` (created), accepting the public keys later given to
    /// [`Sshd::authorize`]. Fails the test, with sshd's log, if it does not start.
    pub fn start(dir: &Path, protocol: Protocol) -> Sshd {
        Self::start_with(dir, protocol, |_| String::new())
    }

    /// Like [`Sshd::start`], with sshd_config lines from `extra`, which gets the host key's
    /// path (to sign it, say) before sshd starts. Its lines come first, so they win over the
    /// defaults (sshd takes the first value of an option).
    pub fn start_with(dir: &Path, protocol: Protocol, extra: impl FnOnce(&Path) -> String) -> Sshd {
        std::fs::create_dir_all(dir).expect("can create the sshd directory");
        if is_root() && !Path::new("/run/sshd").is_dir() {
            // The privilege separation directory sshd insists on when run as root.
            std::fs::create_dir_all("/run/sshd").expect("can create /run/sshd");
        }
        let host_key = keygen(&dir.join("ssh_host_ed25519_key"), "", "kalandra-test-host");
        let extra = extra(&host_key);
        std::fs::write(dir.join("authorized_keys"), "").expect("can write authorized_keys");
        let server_config = dir.join("server.gitconfig");
        std::fs::write(&server_config, SERVER_GIT_CONFIG).expect("can write the server config");

        let user = current_user();
        // The remote command runs through the user's shell: make sure it finds our git.
        let git = which("git").expect("git is on PATH");
        let git_dir = git.parent().expect("git lives in a directory");
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            git_dir.display()
        );
        assert!(
            !path.contains(char::is_whitespace),
            "PATH for sshd's SetEnv must not contain spaces: {path}"
        );

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            let mut text = extra.clone();
            text += &format!(
                "ListenAddress 127.0.0.1\n\
                 Port {port}\n\
                 HostKey {host_key}\n\
                 AuthorizedKeysFile {authorized}\n\
                 StrictModes no\n\
                 PermitRootLogin prohibit-password\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 UsePAM no\n\
                 PidFile {pid}\n\
                 LogLevel VERBOSE\n\
                 MaxStartups 100\n\
                 SetEnv GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL={server_config} PATH={path}\n",
                host_key = host_key.display(),
                authorized = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
                server_config = server_config.display(),
            );
            if protocol == Protocol::V2 {
                text.push_str("AcceptEnv GIT_PROTOCOL\n");
            }
            std::fs::write(&config, text).expect("can write sshd_config");
            let log_path = dir.join("sshd.log");
            let log = std::fs::File::create(&log_path).expect("can create the sshd log");
            let mut child = Command::new(sshd_bin())
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("can clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start sshd: {err}"));
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().expect("can wait for sshd") {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    if last_log.contains("Bind to port") || last_log.contains("Cannot bind") {
                        // Someone took the port meanwhile: try another one.
                        break;
                    }
                    panic!("sshd exited with {status} before listening; its log:\n{last_log}");
                }
                let log_now = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log_now.contains("Server listening on")
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    return Sshd {
                        child,
                        dir: dir.to_path_buf(),
                        port,
                        user,
                        host_key,
                    };
                }
                if start.elapsed() > START_TIMEOUT {
                    child.kill().ok();
                    child.wait().ok();
                    panic!(
                        "sshd did not accept connections on 127.0.0.1:{port} within \
                         {START_TIMEOUT:?}; its log:\n{log_now}"
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("sshd could not bind a free port in 5 attempts; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the tests log in as (the current one).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host key as `type base64`.
    pub fn host_public_key(&self) -> String {
        public_key(&self.host_key)
    }

    /// The host key's `SHA256:...` fingerprint.
    pub fn host_fingerprint(&self) -> String {
        fingerprint(&self.host_key)
    }

    /// The known_hosts line for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}\n", self.port, self.host_public_key())
    }

    /// `ssh://USER@127.0.0.1:PORT<path>` (`path` absolute).
    pub fn url(&self, path: &Path) -> String {
        assert!(path.is_absolute(), "ssh URLs here name absolute paths");
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.to_str().expect("test paths are UTF-8")
        )
    }

    /// Let the key whose public half is `<key>.pub` log in.
    pub fn authorize(&self, key: &Path) {
        use std::io::Write;
        let line = std::fs::read_to_string(pub_path(key)).expect("can read the public key");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("can open authorized_keys");
        f.write_all(line.as_bytes())
            .expect("can append to authorized_keys");
    }

    /// Let the key whose public half is `<key>.pub` log in, but run `command` (an
    /// authorized_keys forced command) whatever the client asks for: a hostile server.
    pub fn authorize_forced(&self, key: &Path, command: &str) {
        use std::io::Write;
        assert!(
            !command.contains('"'),
            "a forced command here cannot contain a double quote: {command}"
        );
        let line = std::fs::read_to_string(pub_path(key)).expect("can read the public key");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("can open authorized_keys");
        f.write_all(format!("command=\"{command}\" {line}").as_bytes())
            .expect("can append to authorized_keys");
    }

    /// Make every key already let in run `command` (a forced command) instead of what the
    /// client asks for; the command finds the request in `SSH_ORIGINAL_COMMAND`, as a forge's
    /// shell (gitlab-shell) does. Keys forced before keep their command.
    pub fn force_command_for_all(&self, command: &str) {
        assert!(
            !command.contains('"'),
            "a forced command here cannot contain a double quote: {command}"
        );
        let path = self.dir.join("authorized_keys");
        let text = std::fs::read_to_string(&path).expect("can read authorized_keys");
        let forced: String = text
            .lines()
            .map(|line| {
                if line.trim().is_empty() || line.starts_with("command=") {
                    format!("{line}\n")
                } else {
                    format!("command=\"{command}\" {line}\n")
                }
            })
            .collect();
        std::fs::write(&path, forced).expect("can write authorized_keys");
    }

    /// Replace the server side's global git config by the default one plus `extra`.
    pub fn set_server_git_config(&self, extra: &str) {
        std::fs::write(
            self.dir.join("server.gitconfig"),
            format!("{SERVER_GIT_CONFIG}{extra}"),
        )
        .expect("can write the server config");
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// A handle that can kill this sshd from another thread.
    pub fn killer(&self) -> Killer {
        Killer {
            pid: self.child.id(),
            marker: format!(
                "GIT_CONFIG_GLOBAL={}",
                self.dir.join("server.gitconfig").display()
            ),
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.killer().kill();
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Kills an sshd and every process below it (its connection handlers, their shells, the git
/// processes they run, hooks of those): sshd puts each in a session of its own, so a process
/// group kill would miss them; the parent links in /proc do not. Processes orphaned when a
/// session ended (a hook still sleeping after its upload-pack died) are found by the
/// `GIT_CONFIG_GLOBAL=<this server's config>` that sshd's `SetEnv` put in their environment.
#[derive(Clone, Debug)]
pub struct Killer {
    pid: u32,
    marker: String,
}

impl Killer {
    /// SIGKILL the server and everything it started, until nothing is left.
    pub fn kill(&self) {
        for _round in 0..20 {
            let mut pids = descendants(self.pid);
            for pid in with_environment(&self.marker) {
                if !pids.contains(&pid) {
                    pids.push(pid);
                }
            }
            if Path::new(&format!("/proc/{}", self.pid)).exists() {
                pids.push(self.pid);
            }
            if pids.is_empty() {
                return;
            }
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(pids.iter().map(u32::to_string))
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
            // Our own child stays as a zombie until waited for; do not count it again.
            if descendants(self.pid).is_empty() && with_environment(&self.marker).is_empty() {
                return;
            }
        }
    }
}

/// Every process whose environment holds the entry `entry` (`NAME=value`).
fn with_environment(entry: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == entry.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// Every live process below `root`, by the parent links in /proc (zombies excluded).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("?");
            let Some(ppid) = fields.next().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if state != "Z" {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// The server side's global git config (the test may add to it).
const SERVER_GIT_CONFIG: &str = "\
[user]
\tname = Kalandra Test Server
\temail = server@kalandra.invalid
[init]
\tdefaultBranch = main
[gc]
\tauto = 0
[maintenance]
\tauto = false
[receive]
\tfsckObjects = true
";

/// A running `ssh-agent -D -a <socket>`, killed on drop.
pub struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    /// Start an agent listening on `sock`.
    pub fn start(sock: &Path) -> Agent {
        let mut child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start ssh-agent: {err}"));
        let start = Instant::now();
        // The socket file appears at bind(), a moment before the agent listens: wait until
        // `ssh-add -l` reaches it (exit 0: keys, 1: no keys; 2: cannot connect).
        let reachable = || {
            Command::new("ssh-add")
                .arg("-l")
                .env("SSH_AUTH_SOCK", sock)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|st| matches!(st.code(), Some(0 | 1)))
        };
        while !(sock.exists() && reachable()) {
            if let Some(status) = child.try_wait().expect("can wait for ssh-agent") {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("ssh-agent exited with {status}: {err}");
            }
            if start.elapsed() > START_TIMEOUT {
                child.kill().ok();
                child.wait().ok();
                panic!("ssh-agent did not create {} in time", sock.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent {
            child,
            sock: sock.to_path_buf(),
        }
    }

    pub fn sock(&self) -> &Path {
        &self.sock
    }

    /// `ssh-add <key>` (an unencrypted one).
    pub fn add(&self, key: &Path) {
        run(
            Command::new("ssh-add")
                .arg(key)
                .env("SSH_AUTH_SOCK", &self.sock)
                .env_remove("SSH_ASKPASS")
                .env_remove("DISPLAY"),
            "ssh-add",
        );
    }

    /// The fingerprints of the keys the agent holds (`ssh-add -l`).
    pub fn list(&self) -> String {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .output()
            .expect("can run ssh-add -l");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
