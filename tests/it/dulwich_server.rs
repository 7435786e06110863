//! dulwich's git servers (`tests/interop/dulwich_server.py`): git:// (`TCPGitServer`) or
//! smart HTTP (`dulwich.web`), serving every repository under the world root, read and write,
//! on 127.0.0.1 and a free port.
//!
//! Two dulwich versions: 1.2 from PyPI, in `tests/interop/.venv` (tests/run.sh installs
//! `tests/interop/requirements.txt` there), and 0.21 from Debian (`python3-dulwich`, run by
//! `/usr/bin/python3`). If one is missing or its server does not start, the test fails saying
//! so.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::World;
use crate::listening_server::ListeningServer;

/// Which dulwich.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dulwich {
    /// 1.2.x from PyPI, pinned by `tests/interop/requirements.txt`.
    Pypi,
    /// 0.21 from Debian 12's `python3-dulwich`.
    Debian,
}

/// Which of dulwich's servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DulwichService {
    /// `git://`, `dulwich.server.TCPGitServer`: one connection at a time.
    Git,
    /// Smart HTTP, `dulwich.web.make_wsgi_chain` behind `make_server`.
    Http,
}

pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

impl Dulwich {
    fn python(self) -> PathBuf {
        match self {
            Dulwich::Pypi => {
                let python = interop_dir().join(".venv/bin/python");
                assert!(
                    python.is_file(),
                    "{} is missing: tests/run.sh installs dulwich from \
                     tests/interop/requirements.txt into tests/interop/.venv",
                    python.display()
                );
                python
            }
            Dulwich::Debian => PathBuf::from("/usr/bin/python3"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Dulwich::Pypi => "dulwich from PyPI (tests/interop/.venv; tests/run.sh installs it)",
            Dulwich::Debian => {
                "dulwich from Debian (python3-dulwich under /usr/bin/python3; tests/run.sh \
                 installs it)"
            }
        }
    }
}

pub struct DulwichServer {
    server: ListeningServer,
    scheme: &'static str,
    version: String,
}

impl DulwichServer {
    pub fn start(w: &World, dulwich: Dulwich, service: DulwichService) -> Self {
        let (kind, scheme) = match service {
            DulwichService::Git => ("git", "git"),
            DulwichService::Http => ("http", "http"),
        };
        let dir = (1..)
            .map(|n| w.root().join(format!("dulwich-{kind}-{n}")))
            .find(|d| !d.exists())
            .expect("an endless iterator");
        std::fs::create_dir_all(&dir).expect("can create the dulwich server's directory");
        let mut cmd = Command::new(dulwich.python());
        cmd.arg(interop_dir().join("dulwich_server.py"))
            .arg(kind)
            .arg(w.root())
            // No __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&dir);
        let name = format!("the {kind} server of {}", dulwich.describe());
        let server = ListeningServer::start(cmd, &name, &dir.join("server.log"), |log| {
            listening_line(log).map(|(port, _)| port)
        });
        let version = listening_line(&server.log())
            .map(|(_, version)| version)
            .expect("the server printed its listening line");
        DulwichServer {
            server,
            scheme,
            version,
        }
    }

    /// dulwich's version, as the server reported it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `git://` or `http://127.0.0.1:<port>/` (the root), to which a repository's path relative
    /// to the world root is appended.
    pub fn base_url(&self) -> String {
        format!("{}://127.0.0.1:{}/", self.scheme, self.server.port())
    }
}

/// `listening PORT dulwich VERSION`.
fn listening_line(log: &str) -> Option<(u16, String)> {
    log.lines().find_map(|line| {
        let mut words = line.strip_prefix("listening ")?.split(' ');
        let port = words.next()?.parse().ok()?;
        (words.next()? == "dulwich").then_some(())?;
        Some((port, words.next()?.to_owned()))
    })
}
