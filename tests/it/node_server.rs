//! A contract server of `tests/forge` (node: `server.js` for GitHub, `gitlab.js` for GitLab),
//! started per test on 127.0.0.1 and a free port, in a directory of its own under the world
//! root with its scenario, request log and stderr.
//!
//! If node or the npm packages are missing, or the server cannot start, the test fails with
//! the reason (tests/run.sh installs node and runs `npm ci`). Dropping the [`NodeServer`] ends
//! the server; so does the end of the test process, however it ends, because the server exits
//! when its standard input closes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::github_api::{http_request, ApiResponse};
use crate::harness::World;

/// How long the server may take to load its description and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct NodeServer {
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
    /// Held open: the server exits when it closes.
    stdin: Option<ChildStdin>,
}

pub fn forge_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/forge")
}

fn node() -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("node is not installed: the forge contract tests need it (tests/run.sh installs nodejs)")
        })
}

impl NodeServer {
    /// Starts `tests/forge/<script>` with `scenario`, once `npm ci` has installed `marker`
    /// (a path under `node_modules`); `name` says which server in messages ("the GitHub API
    /// server"), `prefix` names its directory (`<prefix>-N` under the world root).
    pub fn start(
        w: &World,
        script: &str,
        marker: &str,
        prefix: &str,
        name: &str,
        scenario: &Value,
    ) -> Self {
        let forge = forge_dir();
        let marker = forge.join("node_modules").join(marker);
        assert!(
            marker.is_file(),
            "{} is missing: run `npm ci` in {} (tests/run.sh does it before the suite)",
            marker.display(),
            forge.display()
        );
        let dir = (1..)
            .map(|n| w.root().join(format!("{prefix}-{n}")))
            .find(|d| !d.exists())
            .expect("an endless iterator");
        std::fs::create_dir_all(&dir).expect("can create the API server's directory");
        let scenario_path = dir.join("scenario.json");
        std::fs::write(&scenario_path, scenario.to_string()).expect("can write the scenario");
        let log = dir.join("requests.jsonl");
        std::fs::write(&log, "").expect("can create the request log");
        let stderr_path = dir.join("server.stderr");
        let mut cmd = Command::new(node());
        // The server runs git for repositories it creates: the test's git environment.
        w.isolate(&mut cmd, &w.global_config());
        let mut child = cmd
            .arg(forge.join(script))
            .arg("--scenario")
            .arg(&scenario_path)
            .arg("--log")
            .arg(&log)
            .args(["--port", "0"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("can create the stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (node): {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            tx.send(lines.next()).ok();
            // Keep draining, so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = NodeServer {
            dir,
            port: 0,
            child,
            stdin,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            other => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "{name} did not start ({}): {other:?}\n--- its stderr:\n{}",
                    status.map_or("still running".to_string(), |s| s.to_string()),
                    server.stderr()
                );
            }
        };
        server.port = line
            .strip_prefix("listening http://127.0.0.1:")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from {name}: {line:?}"));
        server
    }

    /// Every entry of the request log so far, in order.
    pub fn log_entries(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .expect("can read the request log");
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("bad request log line {line:?}: {e}"))
            })
            .collect()
    }

    /// Sends one request (HTTP/1.1, `Connection: close`) and reads the whole answer.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> ApiResponse {
        http_request(self.port, method, path, headers, body)
    }

    /// Replaces the scenario of the running server (`PUT /_kalandra/scenario`, the harness's
    /// door, never logged).
    pub fn set_scenario(&self, scenario: &Value) {
        let r = self.request(
            "PUT",
            "/_kalandra/scenario",
            &[],
            Some(scenario.to_string().as_bytes()),
        );
        assert_eq!(
            r.status, 204,
            "the server refused the scenario: {:?}",
            r.body
        );
    }

    /// What the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.stderr")).unwrap_or_default()
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(w: &World) -> NodeServer {
        NodeServer::start(
            w,
            "gitlab.js",
            "ajv/package.json",
            "node-server",
            "the test server",
            &serde_json::json!({}),
        )
    }

    #[test]
    fn the_server_ends_when_its_test_process_does() {
        let w = World::new();
        let mut server = start(&w);
        // Its stdin closes whenever the test process ends, SIGKILL included.
        drop(server.stdin.take());
        let start = std::time::Instant::now();
        while server.child.try_wait().expect("can wait").is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server outlived its stdin"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_server_ends_with_its_handle() {
        let w = World::new();
        let server = start(&w);
        let pid = server.child.id();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(server);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "the server outlived its handle"
        );
    }
}
