//! The pack relayed is thin: a small change to a big file costs a small delta.

use crate::harness::World;

/// The upstream of `bigfile.sh` holds this many bytes of random hex in big.txt.
const BIG_FILE_BYTES: usize = 16384 * 65;

#[test]
fn one_line_change_in_a_big_file_is_sent_as_a_thin_delta() {
    let w = World::new();
    let fx = w.fixture("bigfile.sh");
    let (up, down) = (fx.join("upstream"), fx.join("empty.git"));
    let big = std::fs::read_to_string(up.join("big.txt")).expect("fixture has big.txt");
    assert_eq!(
        big.len(),
        BIG_FILE_BYTES,
        "precondition: big.txt is 1 MiB + 16 KiB"
    );

    let report = w.sync_ok(&up, &down, &[]);
    let (objects, bytes) = report.pack().expect("the initial mirror fetches a pack");
    assert_eq!(objects, 4, "commit, tree, README, big.txt");
    assert!(
        bytes > 400 * 1024,
        "precondition: random hex must not compress much (pack of {bytes} bytes)"
    );

    // Change one line in the middle of the file.
    let mut lines: Vec<&str> = big.lines().collect();
    let replacement = "0123456789abcdef".repeat(4);
    lines[8000] = &replacement;
    let mut changed = lines.join("\n");
    changed.push('\n');
    assert_eq!(changed.len(), big.len());
    w.checkout(&up, "main", None);
    let commit = w.commit_file(&up, "big.txt", &changed, "change one line of big.txt");

    let report = w.sync_ok(&up, &down, &[]);
    let (objects, bytes) = report.pack().expect("a new commit needs a pack");
    assert_eq!(
        objects, 3,
        "commit, tree and big.txt as a delta against a base downstream already has"
    );
    assert!(
        bytes < 64 * 1024,
        "a one-line change must travel as a thin delta, but the pack has {bytes} bytes"
    );
    assert_eq!(w.rev(&down, "refs/heads/main"), commit);
    // Downstream resolved the delta against its own base: every object reads back.
    w.assert_full_fsck(&down);
    assert_eq!(
        w.git(&down, &["cat-file", "-p", "main:big.txt"]).len() + 1,
        changed.len()
    );
}
