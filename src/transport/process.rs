//! A git server running as a child process, talking on stdin/stdout.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{Connection, Error};

/// At most this much of a server's stderr is kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// How long a failing server gets to finish its last words on stderr.
const DYING_GRACE: Duration = Duration::from_secs(2);

/// git's `local_repo_env`: variables that point git at a repository. The
/// caller (a remote helper runs inside `git push`) may have them set, and
/// the server must find its repository from the path alone.
const REPO_ENV: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_COMMON_DIR",
    "GIT_PROTOCOL",
];

/// The server behind a [`Connection`]: a child process (killed when
/// dropped), or a remote session kept alive by `keep`.
pub struct ServerProcess {
    child: Option<Child>,
    keep: Option<Box<dyn std::any::Any + Send>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_task: Option<JoinHandle<()>>,
}

impl ServerProcess {
    /// Spawns `command` with a scrubbed environment and piped stdio.
    pub fn spawn(
        mut command: Command,
        git_protocol: Option<&str>,
        repo: &str,
    ) -> Result<Connection, Error> {
        for name in REPO_ENV {
            command.env_remove(name);
        }
        if let Some(protocol) = git_protocol {
            command.env("GIT_PROTOCOL", protocol);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            program,
            repo: repo.to_owned(),
            source,
        })?;
        let stdin = child.stdin.take().expect("because stdin was piped");
        let stdout = child.stdout.take().expect("because stdout was piped");
        let stderr_pipe = child.stderr.take().expect("because stderr was piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let repo = repo.to_owned();
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).split(b'\n');
            while let Ok(Some(line)) = lines.next_segment().await {
                tracing::debug!(target: "kalandra::server", "{repo}: {}", String::from_utf8_lossy(&line));
                let mut tail = sink.lock().expect("because the lock is never poisoned");
                tail.extend_from_slice(&line);
                tail.push(b'\n');
                if tail.len() > STDERR_TAIL {
                    let cut = tail.len() - STDERR_TAIL;
                    tail.drain(..cut);
                }
            }
        });
        Ok(Connection {
            reader: Box::pin(stdout),
            writer: Box::pin(stdin),
            process: Some(Self {
                child: Some(child),
                keep: None,
                stderr,
                stderr_task: Some(stderr_task),
            }),
        })
    }

    /// A server on the other end of a session: `keep` holds the session
    /// open, `pump` ends when the server is done, `stderr` fills meanwhile.
    pub fn remote(
        keep: Box<dyn std::any::Any + Send>,
        stderr: Arc<Mutex<Vec<u8>>>,
        pump: JoinHandle<()>,
    ) -> Self {
        Self {
            child: None,
            keep: Some(keep),
            stderr,
            stderr_task: Some(pump),
        }
    }

    /// The server's stderr, once it has exited or had time to.
    pub async fn failure_detail(&mut self) -> Option<String> {
        // One deadline for both: a stalled server neither exits nor closes
        // stderr, and its error must not wait on it.
        let task = self.stderr_task.take();
        let child = &mut self.child;
        let _ = tokio::time::timeout(DYING_GRACE, async move {
            if let Some(child) = child {
                let _ = child.wait().await;
            }
            if let Some(task) = task {
                let _ = task.await;
            }
        })
        .await;
        let tail = self
            .stderr
            .lock()
            .expect("because the lock is never poisoned");
        let text = String::from_utf8_lossy(&tail).trim().to_owned();
        (!text.is_empty()).then_some(text)
    }

    /// Waits for a server that has finished its work to exit.
    pub async fn wait(&mut self) {
        match &mut self.child {
            Some(child) => {
                let _ = child.wait().await;
            }
            None => {
                if let Some(pump) = self.stderr_task.take() {
                    let _ = tokio::time::timeout(DYING_GRACE, pump).await;
                }
                self.keep = None;
            }
        }
    }
}
