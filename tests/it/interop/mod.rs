//! The interoperability matrix (issue 16): `kalandra sync UP DOWN` between real servers of
//! several makes, versions, transports and protocol versions, for sha1 and sha256.
//!
//! Each cell mirrors a fresh copy of a fixture from UP into an empty DOWN, changes upstream
//! (a fast-forward, a forced update, a moved annotated tag, a deleted branch), syncs again,
//! then syncs once more, which must change nothing. Every sync is checked by
//! [`World::sync_ok_env`]: the report, downstream's refs against upstream's, and
//! `git fsck --connectivity-only` downstream.
//!
//! A cell records its outcome. If `KALANDRA_INTEROP_RESULTS` names a directory, each test
//! writes its cells there as JSON lines (`<test>.jsonl`), from which
//! `tests/interop/gen_compat.py` generates `docs/compatibility.md`
//! (`tests/interop/matrix.sh` runs the whole matrix and the generator). A cell that fails
//! fails its test, after every other cell of the test has run.
//!
//! The normal run takes a slice in which each server is upstream and downstream at least
//! once, in v0 and v2, sha1 and (where the server has it) sha256; `full_matrix` (ignored
//! unless asked for, as `tests/interop/matrix.sh` does) runs every pair. The remote helper's
//! cells are in [`helper`]; the servers and how a cell reaches them in [`endpoint`]; running
//! and recording cells in [`matrix`].

mod endpoint;
mod helper;
mod matrix;

pub use endpoint::{assert_speaks, AllServers, Endpoint, GitServers, Hash, OtherServers, Wire};
pub use matrix::{merge, run_step, Matrix, Outcome, BEHIND_THE_SERVER};

use crate::dulwich_server::{Dulwich, DulwichPair};
use crate::git_daemon::ForcedV0;
use crate::gitolite::Gitolite;
use crate::harness::World;
use crate::jgit_server::JgitDaemon;

/// `endpoints[i]` -> `endpoints[(i + 1) % n]`: each is upstream once and downstream once.
fn ring(m: &mut Matrix, endpoints: &[&Endpoint], hash: Hash) {
    for (i, up) in endpoints.iter().enumerate() {
        m.sync(up, endpoints[(i + 1) % endpoints.len()], hash);
    }
}

#[test]
fn git_servers_in_v0_and_v2() {
    let w = World::new();
    let mut m = Matrix::new(&w, "git_servers_in_v0_and_v2");
    let git = GitServers::start(&w);
    for endpoint in &git.endpoints {
        assert_speaks(&w, endpoint, "mirror/upstream");
    }
    let all: Vec<&Endpoint> = git.endpoints.iter().collect();
    ring(&mut m, &all, Hash::Sha1);
    ring(
        &mut m,
        &[
            git.get("file", Wire::V0),
            git.get("git", Wire::V2),
            git.get("http", Wire::V0),
            git.get("ssh", Wire::V2),
        ],
        Hash::Sha256,
    );
    m.finish();
}

#[test]
fn dulwich_from_pypi() {
    let w = World::new();
    let mut m = Matrix::new(&w, "dulwich_from_pypi");
    let v0 = ForcedV0::new(w.root());
    let (file, file_v0) = (Endpoint::file(&w), Endpoint::file_v0(&w, &v0));
    let dulwich = DulwichPair::start(&w, Dulwich::Pypi);
    let (git, http) = (&dulwich.git, &dulwich.http);
    assert!(
        git.version.starts_with("1.2."),
        "tests/interop/requirements.txt pins dulwich 1.2, the venv has {}",
        git.version
    );
    assert_speaks(&w, git, "mirror/upstream");
    ring(&mut m, &[git, &file, http, &file_v0], Hash::Sha1);
    m.sync(git, http, Hash::Sha1);
    m.sync(&file, git, Hash::Sha256);
    m.sync(http, &file, Hash::Sha256);
    m.finish();
}

#[test]
fn dulwich_from_debian() {
    let w = World::new();
    let mut m = Matrix::new(&w, "dulwich_from_debian");
    let file = Endpoint::file(&w);
    let dulwich = DulwichPair::start(&w, Dulwich::Debian);
    let (git, http) = (&dulwich.git, &dulwich.http);
    assert_speaks(&w, http, "mirror/upstream");
    ring(&mut m, &[git, &file, http], Hash::Sha1);
    m.sync(&file, git, Hash::Sha256);
    m.finish();
}

#[test]
fn jgit_daemon() {
    let w = World::new();
    let mut m = Matrix::new(&w, "jgit_daemon");
    let v0 = ForcedV0::new(w.root());
    let (file, file_v0) = (Endpoint::file(&w), Endpoint::file_v0(&w, &v0));
    let jgit = JgitDaemon::start(&w);
    let jgit = Endpoint::jgit(&jgit);
    assert_speaks(&w, &jgit, "mirror/upstream");
    m.sync(&jgit, &file, Hash::Sha1);
    m.sync(&file_v0, &jgit, Hash::Sha1);
    m.sync(&jgit, &file, Hash::Sha256);
    m.finish();
}

#[test]
#[ignore = "the full matrix takes minutes: tests/interop/matrix.sh runs it"]
fn full_matrix() {
    let w = World::new();
    let mut m = Matrix::new(&w, "full_matrix");
    let servers = AllServers::start(&w);
    let endpoints = servers.endpoints();
    for endpoint in &endpoints {
        assert_speaks(&w, endpoint, "mirror/upstream-bare.git");
    }
    for hash in [Hash::Sha1, Hash::Sha256] {
        for up in &endpoints {
            for down in &endpoints {
                m.sync(up, servers.downstream_for(up, down), hash);
            }
        }
    }
    m.finish();
}

#[test]
fn gitolite_behind_sshd() {
    let w = World::new();
    let mut m = Matrix::new(&w, "gitolite_behind_sshd");
    let gitolite = Gitolite::start(&w);
    let (v2, v0) = (
        Endpoint::gitolite(&gitolite, Wire::V2),
        Endpoint::gitolite(&gitolite, Wire::V0),
    );
    let file = Endpoint::file(&w);
    for endpoint in [&v2, &v0] {
        assert_speaks(&w, endpoint, "mirror/upstream-bare.git");
    }
    ring(&mut m, &[&v2, &file, &v0], Hash::Sha1);
    m.sync(&file, &v2, Hash::Sha256);
    m.sync(&v0, &file, Hash::Sha256);
    m.finish();
}
