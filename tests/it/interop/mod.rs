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
//! `full_matrix` runs every pair of servers, for sha1 and sha256 (about five minutes of one
//! thread, run beside the rest of the suite). The remote helper's cells are in [`helper`];
//! the servers and how a cell reaches them in [`endpoint`]; running and recording cells in
//! [`matrix`].

mod endpoint;
mod helper;
mod matrix;

pub use endpoint::{assert_speaks, AllServers, Endpoint, Hash, Wire};
pub use matrix::{merge, run_step, Matrix, Outcome, BEHIND_THE_SERVER};

use crate::harness::World;

#[test]
fn full_matrix() {
    let w = World::new();
    let mut m = Matrix::new(&w, "full_matrix");
    let servers = AllServers::start(&w);
    let endpoints = servers.endpoints();
    for endpoint in &endpoints {
        assert_speaks(&w, endpoint, "mirror/upstream-bare.git");
    }
    assert!(
        endpoints
            .iter()
            .any(|e| e.server == "dulwich" && e.version.starts_with("1.2.")),
        "tests/interop/requirements.txt pins dulwich 1.2; the venv has none"
    );
    for hash in [Hash::Sha1, Hash::Sha256] {
        for up in &endpoints {
            for down in &endpoints {
                m.sync(up, servers.downstream_for(up, down), hash);
            }
        }
    }
    m.finish();
}
