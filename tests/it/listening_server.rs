//! A server process that says on its output which port it listens on (dulwich, JGit), started
//! in a process group of its own under the world root and ended with that group on drop.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to print its port (a JVM on a busy machine takes seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ListeningServer {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl ListeningServer {
    /// Runs `cmd` with stdout and stderr into `log`, and waits until `port_in` finds the port
    /// in what it printed and that port accepts connections. If the server exits or stays
    /// silent, the test fails with `name` and the log.
    pub fn start(
        mut cmd: Command,
        name: &str,
        log: &Path,
        port_in: impl Fn(&str) -> Option<u16>,
    ) -> Self {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        let child = cmd
            // The server may fork (JGit's launcher, a shell): lead a group, end it whole.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("can clone the log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let mut server = ListeningServer {
            child,
            port: 0,
            log: log.to_path_buf(),
        };
        let started = Instant::now();
        loop {
            if let Some(port) = port_in(&server.log()) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    server.port = port;
                    return server;
                }
            }
            if let Some(status) = server.child.try_wait().expect("can wait for the server") {
                panic!(
                    "{name} exited with {status} before listening; its output:\n{}",
                    server.log()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "{name} did not listen within {START_TIMEOUT:?}; its output:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ListeningServer {
    fn drop(&mut self) {
        end_group(&mut self.child);
    }
}

/// SIGKILL the process group `child` leads (it and whatever it forked), and reap `child`.
pub fn end_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}
