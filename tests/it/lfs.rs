//! Git LFS objects mirrored with the refs (`--lfs`), end to end: real git-lfs populates an
//! upstream whose LFS server is a real giftless behind the test nginx, Kalandra syncs into a
//! downstream with its own giftless, and real git-lfs clones downstream and checks every
//! object (`git lfs fsck`). Each server's own access log counts what crossed it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::{Run, World};
use crate::lfs_server::{
    assert_lfs_complete, bare_repo, clone_with_lfs, enable_lfs, lfs_commit, lfs_history, oids,
    push_with_lfs, LfsServer,
};
use crate::nginx::Nginx;

const UP_TOKEN: &str = "lfs-up-token-5d1a";
const DOWN_TOKEN: &str = "lfs-down-token-8b2c";
const UP: &str = "acme/up.git";
const DOWN: &str = "acme/down.git";
const MIB: usize = 1 << 20;

/// Upstream (with its LFS server `up`) holding `objects` LFS objects of `size` bytes in a
/// history, an empty downstream (LFS server `down`), and the oids.
struct Fx {
    w: World,
    nginx: Nginx,
    up: LfsServer,
    down: LfsServer,
    work: std::path::PathBuf,
    oids: BTreeSet<String>,
}

impl Fx {
    fn new(objects: u64, size: usize) -> Self {
        let w = World::new();
        enable_lfs(&w);
        let nginx = Nginx::start(&w);
        // As GitHub's and GitLab's: the pointers are found with `filter`.
        nginx.set_server_config("[uploadpack]\n\tallowFilter = true\n");
        let up = LfsServer::start(&w, &nginx, "up", UP_TOKEN);
        let down = LfsServer::start(&w, &nginx, "down", DOWN_TOKEN);
        bare_repo(&w, UP);
        bare_repo(&w, DOWN);
        // giftless' local storage creates a repository's directory on its first upload with
        // a check-then-mkdir that two concurrent uploads race on (one gets a 500); made here.
        let store = down.object_path(DOWN, "x");
        std::fs::create_dir_all(store.parent().expect("a directory"))
            .expect("can create downstream's LFS store");
        let work = w.root().join("work");
        let files = lfs_history(&w, &work, objects, size);
        push_with_lfs(&w, &work, &up.url_with_token(UP));
        let oids = oids(&files);
        assert_eq!(
            up.objects(UP),
            oids,
            "upstream's LFS server has the history's objects"
        );
        Fx {
            w,
            nginx,
            up,
            down,
            work,
            oids,
        }
    }

    fn sync(&self, extra: &[&str]) -> Run {
        let (up, down) = (self.up.url(UP), self.down.url(DOWN));
        let mut args = vec!["sync", up.as_str(), down.as_str(), "--json"];
        args.extend_from_slice(extra);
        self.w.kalandra_env(
            self.w.root(),
            &args,
            &self.w.global_config(),
            &[
                ("KALANDRA_UPSTREAM_TOKEN", Some(UP_TOKEN.into())),
                ("KALANDRA_DOWNSTREAM_TOKEN", Some(DOWN_TOKEN.into())),
            ],
        )
    }

    fn down_repo(&self) -> std::path::PathBuf {
        self.w.root().join(DOWN)
    }

    fn up_repo(&self) -> std::path::PathBuf {
        self.w.root().join(UP)
    }

    /// A fresh clone of downstream with every LFS object of its history.
    fn check_downstream(&self, name: &str, oids: &BTreeSet<String>) {
        let clone = self.w.root().join(name);
        clone_with_lfs(&self.w, &self.down.url_with_token(DOWN), &clone);
        assert_lfs_complete(&self.w, &clone, oids);
    }
}

fn report(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {run}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn an_initial_mirror_copies_every_lfs_object_then_an_incremental_only_the_new_ones() {
    let fx = Fx::new(50, 2 * MIB);
    let run = fx.sync(&[]);
    assert_eq!(run.code, 0, "{run}");
    let lfs = report(&run)["lfs"].clone();
    assert_eq!(lfs["objects"], 50, "{lfs}");
    assert_eq!(lfs["pointers"], 50, "{lfs}");
    assert_eq!(lfs["skipped"], Value::Null, "{lfs}");
    fx.w.assert_in_sync(&fx.up_repo(), &fx.down_repo());
    // Each object crossed downstream's server once, and came from upstream's.
    assert_eq!(
        sorted(fx.down.uploads()),
        fx.oids.iter().cloned().collect::<Vec<_>>()
    );
    assert_eq!(fx.down.objects(DOWN), fx.oids);
    fx.check_downstream("clone-1", &fx.oids);

    // Three new objects upstream: only they cross.
    let new = lfs_commit(&fx.w, &fx.work, 1000..1003, MIB, "three more");
    push_with_lfs(&fx.w, &fx.work, &fx.up.url_with_token(UP));
    let before = fx.down.uploads().len();
    let run = fx.sync(&[]);
    assert_eq!(run.code, 0, "{run}");
    let lfs = report(&run)["lfs"].clone();
    assert_eq!(
        (lfs["objects"].clone(), lfs["pointers"].clone()),
        (3.into(), 3.into()),
        "{lfs}"
    );
    let uploaded: BTreeSet<String> = fx.down.uploads()[before..].iter().cloned().collect();
    assert_eq!(uploaded, oids(&new));
    let mut all = fx.oids.clone();
    all.extend(oids(&new));
    fx.check_downstream("clone-2", &all);
    assert!(
        run.stderr.is_empty() || !run.stderr.contains("warning"),
        "{run}"
    );
}

#[test]
fn a_corrupt_upstream_object_fails_the_sync_naming_it_and_no_ref_moves() {
    let fx = Fx::new(5, 256 * 1024);
    let bad = fx.oids.iter().next().expect("an object").clone();
    fx.up.corrupt(UP, &bad);
    let run = fx.sync(&[]);
    assert_ne!(run.code, 0, "{run}");
    let report = report(&run);
    assert_eq!(report["kind"], "protocol", "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("LFS object {bad} from upstream is corrupt")),
        "{error}"
    );
    assert!(
        fx.w.git(&fx.down_repo(), &["for-each-ref"])
            .trim()
            .is_empty(),
        "a downstream ref moved"
    );
    // The corrupt object's upload was cut before its last chunk. (giftless keeps what it
    // got under the id; a server that checks what it stores, as forges do, keeps nothing.)
    let good: BTreeSet<String> = fx.oids.iter().filter(|o| **o != bad).cloned().collect();
    for oid in fx.down.objects(DOWN) {
        if oid == bad {
            let stored = crate::lfs_server::sha256_file(&fx.down.object_path(DOWN, &bad));
            assert_ne!(stored, bad, "the corrupt object was stored whole");
        } else {
            assert!(good.contains(&oid), "{oid}");
        }
    }
}

#[test]
fn a_downstream_lfs_server_that_is_down_fails_the_sync_before_any_ref_moves() {
    let mut fx = Fx::new(3, 64 * 1024);
    fx.down.stop();
    for mode in ["--lfs=on", "--lfs=auto"] {
        let run = fx.sync(&[mode]);
        assert_ne!(run.code, 0, "{mode}: {run}");
        let report = report(&run);
        assert_eq!(report["kind"], "unavailable", "{mode}: {report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap_or_default()
                .contains("downstream's batch API"),
            "{mode}: {report}"
        );
        assert!(
            fx.w.git(&fx.down_repo(), &["for-each-ref"])
                .trim()
                .is_empty(),
            "{mode}: a downstream ref moved"
        );
    }
    // Back up, the next sync copies the objects, then moves the refs.
    fx.down.restart(&fx.nginx);
    let run = fx.sync(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report(&run)["lfs"]["objects"], 3, "{run}");
    fx.check_downstream("clone", &fx.oids);
    // With --lfs=off the git objects go alone: nothing is asked of either LFS server.
    let before = (fx.up.batch_requests(), fx.down.batch_requests());
    fx.w.git(&fx.down_repo(), &["update-ref", "-d", "refs/heads/main"]);
    let run = fx.sync(&["--lfs=off"]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report(&run)["lfs"], Value::Null);
    assert_eq!((fx.up.batch_requests(), fx.down.batch_requests()), before);
}

#[test]
fn an_upstream_without_an_lfs_server_costs_nothing_under_auto_and_fails_under_on() {
    let w = World::new();
    enable_lfs(&w);
    let nginx = Nginx::start(&w);
    let fx = w.fixture("mirror.sh");
    let up = nginx.url("v2", "mirror/upstream-bare.git");
    let down = fx.join("empty.git");
    let down_arg = down.to_str().expect("UTF-8");
    let run = w.kalandra_env(
        w.root(),
        &["sync", &up, down_arg, "--json"],
        &w.global_config(),
        &[],
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(!run.stderr.contains("LFS"), "{run}");
    w.assert_in_sync(&fx.join("upstream-bare.git"), &down);
    let lfs = report(&run)["lfs"].clone();
    assert!(
        lfs["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("downstream")
            || lfs["skipped"]
                .as_str()
                .unwrap_or_default()
                .contains("no LFS server"),
        "{lfs}"
    );

    let empty = w.root().join("empty2.git");
    w.git(
        w.root(),
        &["init", "-q", "--bare", empty.to_str().expect("UTF-8")],
    );
    let run = w.kalandra_env(
        w.root(),
        &[
            "sync",
            &up,
            empty.to_str().expect("UTF-8"),
            "--json",
            "--lfs=on",
        ],
        &w.global_config(),
        &[],
    );
    assert_ne!(run.code, 0, "{run}");
    assert_eq!(report(&run)["kind"], "unsupported", "{run}");
    assert!(w.git(&empty, &["for-each-ref"]).trim().is_empty());
}

#[test]
fn a_push_through_the_remote_helper_copies_the_lfs_objects_too() {
    let fx = Fx::new(4, 128 * 1024);
    let local = fx.w.root().join("local");
    let up_url = fx.up.url_with_token(UP);
    fx.w.git(
        fx.w.root(),
        &[
            "clone",
            "-q",
            up_url.as_str(),
            local.to_str().expect("UTF-8"),
        ],
    );
    let url = format!("kalandra::{}=>{}", fx.up.url(UP), fx.down.url(DOWN));
    let run = fx.w.try_helper_git_env(
        &local,
        &["push", &url, "main"],
        &[
            ("GIT_LFS_SKIP_PUSH", "1".into()),
            ("KALANDRA_UPSTREAM_TOKEN", UP_TOKEN.into()),
            ("KALANDRA_DOWNSTREAM_TOKEN", DOWN_TOKEN.into()),
        ],
    );
    assert_eq!(run.code, 0, "{run}\n{}", fx.down.log());
    assert_eq!(fx.down.objects(DOWN), fx.oids);
    fx.check_downstream("clone", &fx.oids);
}

/// An LFS endpoint given outright (`--upstream-lfs-url`, as git's `lfs.url`) is used where
/// the one derived from the git URL would not be an LFS server: here upstream's git data is
/// read from another location than its LFS server's.
#[test]
fn an_lfs_endpoint_given_outright_is_used() {
    let fx = Fx::new(3, 64 * 1024);
    let up_git = fx.nginx.url("v2", UP);
    let down = fx.down.url(DOWN);
    let given = fx.up.lfs_url(UP);
    let run = fx.w.kalandra_env(
        fx.w.root(),
        &["sync", &up_git, &down, "--json", "--lfs=on"],
        &fx.w.global_config(),
        &[
            ("KALANDRA_UPSTREAM_TOKEN", Some(UP_TOKEN.into())),
            ("KALANDRA_DOWNSTREAM_TOKEN", Some(DOWN_TOKEN.into())),
        ],
    );
    assert_ne!(run.code, 0, "the derived endpoint is no LFS server{run}");
    let run = fx.w.kalandra_env(
        fx.w.root(),
        &[
            "sync",
            &up_git,
            &down,
            "--json",
            "--lfs=on",
            "--upstream-lfs-url",
            &given,
        ],
        &fx.w.global_config(),
        &[
            ("KALANDRA_UPSTREAM_TOKEN", Some(UP_TOKEN.into())),
            ("KALANDRA_DOWNSTREAM_TOKEN", Some(DOWN_TOKEN.into())),
        ],
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report(&run)["lfs"]["objects"], 3, "{run}");
    fx.check_downstream("clone", &fx.oids);
}

/// An ssh upstream's LFS endpoint comes from `git-lfs-authenticate` over ssh (answered here
/// as GitLab and GitHub answer it: an href and an Authorization header), asked only once the
/// relayed commits turn out to hold pointers.
#[test]
fn an_ssh_upstreams_lfs_endpoint_comes_from_git_lfs_authenticate() {
    let w = World::new();
    enable_lfs(&w);
    let nginx = Nginx::start(&w);
    let up = LfsServer::start(&w, &nginx, "up", UP_TOKEN);
    let down = LfsServer::start(&w, &nginx, "down", DOWN_TOKEN);
    let sshd = crate::sshd::start_for(&w, crate::sshd::Protocol::V2);
    let ssh = crate::lfs_server::ssh_lfs_authenticate(&w, &sshd);
    up.serve_over_ssh(&ssh, UP);
    let up_bare = bare_repo(&w, UP);
    w.git(&up_bare, &["config", "uploadpack.allowFilter", "true"]);
    bare_repo(&w, DOWN);
    let store = down.object_path(DOWN, "x");
    std::fs::create_dir_all(store.parent().expect("a directory")).expect("the store");
    let work = w.root().join("work");
    let files = lfs_history(&w, &work, 4, 64 * 1024);
    push_with_lfs(&w, &work, &up.url_with_token(UP));

    let up_url = sshd.url(&up_bare);
    let down_url = down.url(DOWN);
    let run = w.kalandra_env(
        w.root(),
        &["sync", &up_url, &down_url, "--json"],
        &w.global_config(),
        &[("KALANDRA_DOWNSTREAM_TOKEN", Some(DOWN_TOKEN.into()))],
    );
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(report(&run)["lfs"]["objects"], 4, "{run}");
    assert!(
        ssh.calls().iter().any(|c| c.ends_with(" download")),
        "{:?}",
        ssh.calls()
    );
    let clone = w.root().join("clone");
    clone_with_lfs(&w, &down.url_with_token(DOWN), &clone);
    assert_lfs_complete(&w, &clone, &oids(&files));
}

/// `.lfsconfig` at upstream's HEAD names upstream's LFS server (`lfs.url`), as git-lfs reads
/// it: here upstream's git data is read from a location whose derived endpoint is no LFS
/// server, and the file is what finds the objects.
#[test]
fn lfsconfig_at_upstreams_head_names_its_lfs_server() {
    let fx = Fx::new(3, 64 * 1024);
    fx.w.write(
        &fx.work,
        ".lfsconfig",
        format!("[lfs]\n\turl = {}\n", fx.up.lfs_url(UP)).as_bytes(),
    );
    fx.w.git(&fx.work, &["add", ".lfsconfig"]);
    fx.w.git(&fx.work, &["commit", "-q", "-m", "name the LFS server"]);
    push_with_lfs(&fx.w, &fx.work, &fx.up.url_with_token(UP));
    let up_git = fx.nginx.url("v2", UP);
    let down = fx.down.url(DOWN);
    let run = fx.w.kalandra_env(
        fx.w.root(),
        &["sync", &up_git, &down, "--json", "--lfs=on", "-v"],
        &fx.w.global_config(),
        &[
            ("KALANDRA_UPSTREAM_TOKEN", Some(UP_TOKEN.into())),
            ("KALANDRA_DOWNSTREAM_TOKEN", Some(DOWN_TOKEN.into())),
        ],
    );
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stderr.contains("upstream's .lfsconfig names"), "{run}");
    assert_eq!(report(&run)["lfs"]["objects"], 3, "{run}");
    // A clone of downstream would follow the mirrored .lfsconfig to upstream's server, so
    // downstream's store is checked itself.
    assert_eq!(fx.down.objects(DOWN), fx.oids);
    for oid in &fx.oids {
        let stored = crate::lfs_server::sha256_file(&fx.down.object_path(DOWN, oid));
        assert_eq!(&stored, oid);
    }
}
