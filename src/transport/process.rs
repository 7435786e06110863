//! A git server running as a child process, talking on stdin/stdout.

use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{Connection, Error};

/// At most this much of a server's stderr is kept for error messages.
const STDERR_TAIL: usize = 8 * 1024;

/// Longer stderr lines are cut here, in the tail and in the log.
const STDERR_LINE: usize = 1024;

/// What a server said on stderr: the last [`STDERR_TAIL`] bytes, each line
/// cut at [`STDERR_LINE`]. A server that writes stderr without end costs
/// this much memory and no more.
#[derive(Clone, Debug, Default)]
pub struct StderrTail(Arc<Mutex<TailState>>);

#[derive(Debug, Default)]
struct TailState {
    kept: Vec<u8>,
    /// Length of the line being received, cut or not.
    line_len: usize,
    /// The line being received, up to [`STDERR_LINE`], for the log.
    line: Vec<u8>,
}

impl StderrTail {
    /// Takes in a chunk of stderr from the server behind `repo`.
    pub fn push(&self, repo: &str, data: &[u8]) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for &byte in data {
            if byte == b'\n' {
                tracing::debug!(target: "kalandra::server", "{repo}: {}", String::from_utf8_lossy(&state.line));
                state.line.clear();
                state.line_len = 0;
                state.kept.push(b'\n');
                continue;
            }
            state.line_len += 1;
            if state.line_len <= STDERR_LINE {
                state.line.push(byte);
                state.kept.push(byte);
            } else if state.line_len == STDERR_LINE + 1 {
                state.kept.extend_from_slice(" [line cut]".as_bytes());
            }
            if state.kept.len() >= 2 * STDERR_TAIL {
                let cut = state.kept.len() - STDERR_TAIL;
                state.kept.drain(..cut);
            }
        }
    }

    /// The tail as text, trimmed; `None` when the server said nothing.
    pub fn text(&self) -> Option<String> {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let start = state.kept.len().saturating_sub(STDERR_TAIL);
        let text = String::from_utf8_lossy(&state.kept[start..])
            .trim()
            .to_owned();
        (!text.is_empty()).then_some(text)
    }
}

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
    stderr: StderrTail,
    stderr_task: Option<JoinHandle<()>>,
}

impl Drop for ServerProcess {
    /// The task copying stderr (or a remote session's pump) must not
    /// outlive the server: one that floods stderr would keep it busy.
    fn drop(&mut self) {
        if let Some(task) = &self.stderr_task {
            task.abort();
        }
    }
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
            program: program.clone(),
            repo: repo.to_owned(),
            source,
        })?;
        let (Some(stdin), Some(stdout), Some(mut stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::Spawn {
                program,
                repo: repo.to_owned(),
                source: std::io::Error::other("its standard streams were not piped"),
            });
        };
        let stderr = StderrTail::default();
        let sink = stderr.clone();
        let repo = repo.to_owned();
        let stderr_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 8 * 1024];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut buf).await {
                sink.push(&repo, &buf[..n]);
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
        stderr: StderrTail,
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
        let task = &mut self.stderr_task;
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
        // A server still writing stderr after the grace has said enough.
        if let Some(task) = self.stderr_task.take() {
            task.abort();
        }
        self.stderr.text()
    }

    /// Waits for a server that has finished its work to exit.
    pub async fn wait(&mut self) {
        match &mut self.child {
            Some(child) => {
                let _ = child.wait().await;
            }
            None => {
                if let Some(mut pump) = self.stderr_task.take() {
                    if tokio::time::timeout(DYING_GRACE, &mut pump).await.is_err() {
                        pump.abort();
                    }
                }
                self.keep = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_stderr_keeps_a_bounded_tail_of_cut_lines() {
        let tail = StderrTail::default();
        let noise = vec![b'x'; 100_000];
        for _ in 0..100 {
            tail.push("repo", &noise);
        }
        tail.push("repo", b"\nfatal: the last words\n");
        let text = tail.text().expect("something was said");
        assert!(text.len() <= STDERR_TAIL, "{}", text.len());
        assert!(text.ends_with("fatal: the last words"), "{text}");
        assert!(text.contains("[line cut]"), "{text}");
        assert!(tail.0.lock().expect("not poisoned").kept.capacity() <= 4 * STDERR_TAIL);

        let lines = StderrTail::default();
        for i in 0..10_000 {
            lines.push("repo", format!("line {i}\n").as_bytes());
        }
        let text = lines.text().expect("said");
        assert!(
            text.len() <= STDERR_TAIL && text.ends_with("line 9999"),
            "{text}"
        );
    }
}
