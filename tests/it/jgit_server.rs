//! JGit's git daemon (`jgit daemon` of Debian's `jgit-cli`, 4.11), serving every repository
//! under the world root over git://, receive-pack enabled, on 127.0.0.1 and a free port.
//!
//! Debian's `/usr/bin/jgit` starts only once `JGIT_CLASSPATH` lists the jars its commands
//! load; they come with `jgit-cli`'s dependencies. If one is missing or the daemon does not
//! start, the test fails saying so.

use std::path::Path;
use std::process::Command;

use crate::harness::World;
use crate::listening_server::ListeningServer;

/// The jars under /usr/share/java that `/usr/bin/jgit` needs on `JGIT_CLASSPATH`.
const JARS: &[&str] = &[
    "commons-compress",
    "gson",
    "httpclient",
    "httpcore",
    "javaewah",
    "jetty9-http",
    "jetty9-io",
    "jetty9-security",
    "jetty9-server",
    "jetty9-servlet",
    "jetty9-util",
    "jsch",
    "org.eclipse.jgit.http.apache",
    "org.eclipse.jgit.http.server",
    "org.eclipse.jgit.lfs",
    "org.eclipse.jgit.lfs.server",
    "servlet-api",
    "slf4j-api",
    "slf4j-nop",
];

const JGIT: &str = "/usr/bin/jgit";

fn jgit_command() -> Command {
    assert!(
        Path::new(JGIT).is_file(),
        "{JGIT} is missing: tests/run.sh installs Debian's jgit-cli"
    );
    let jars: Vec<String> = JARS
        .iter()
        .map(|jar| format!("/usr/share/java/{jar}.jar"))
        .collect();
    if let Some(missing) = jars.iter().find(|jar| !Path::new(jar).is_file()) {
        panic!("{missing} is missing: JGit needs it (it comes with jgit-cli's dependencies)");
    }
    let mut cmd = Command::new(JGIT);
    cmd.env("JGIT_CLASSPATH", jars.join(":"));
    cmd
}

pub struct JgitDaemon {
    server: ListeningServer,
    version: String,
}

impl JgitDaemon {
    pub fn start(w: &World) -> Self {
        let out = jgit_command()
            .arg("version")
            .output()
            .unwrap_or_else(|err| panic!("cannot run {JGIT} version: {err}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        // `jgit version 4.11.9.201909030838-r`
        let version = stdout
            .trim()
            .strip_prefix("jgit version ")
            .unwrap_or_else(|| {
                panic!(
                    "{JGIT} version printed no version: {stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_owned();
        let dir = (1..)
            .map(|n| w.root().join(format!("jgit-daemon-{n}")))
            .find(|d| !d.exists())
            .expect("an endless iterator");
        std::fs::create_dir_all(&dir).expect("can create the JGit daemon's directory");
        let mut cmd = jgit_command();
        cmd.args([
            "daemon",
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
            "--export-all",
            "--enable",
            "receive-pack",
        ])
        .arg(w.root())
        .env("HOME", w.home())
        .current_dir(&dir);
        let server = ListeningServer::start(cmd, "jgit daemon", &dir.join("daemon.log"), |log| {
            // `Listening on /127.0.0.1:PORT`
            log.lines()
                .find_map(|line| line.strip_prefix("Listening on /127.0.0.1:")?.parse().ok())
        });
        JgitDaemon { server, version }
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// `git://127.0.0.1:<port>/`, to which a repository's path relative to the world root is
    /// appended.
    pub fn base_url(&self) -> String {
        format!("git://127.0.0.1:{}/", self.server.port())
    }
}
