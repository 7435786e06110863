//! Kalandra mirrors git repositories from upstream to downstream servers
//! without keeping a copy of either.
//!
//! A sync follows the data, in this order:
//!
//! 1. [`location`] rewrites each side's location with the user's
//!    `url.*.insteadOf` rules ([`url_rewrite`]) and [`url`] parses it into
//!    a [`url::RepoUrl`].
//! 2. [`transport`] connects to upstream's `git-upload-pack` and
//!    downstream's `git-receive-pack`; each connection is only a
//!    reader/writer pair.
//! 3. [`session::upload_pack`] and [`session::receive_pack`] read both
//!    advertisements (protocol v2 `ls-refs` upstream, v0 downstream), using
//!    the pure parsers of [`wire`] over [`pkt_io`].
//! 4. [`plan`] decides which refs to create, update and delete inside the
//!    scope, and refuses plans that look like a mistake.
//! 5. [`ancestry`] classifies branch updates as fast-forward or forced from
//!    a commits-only fetch that [`commit_graph`] parses in memory, and the
//!    divergence policy in [`plan`] decides which of them are pushed.
//! 6. [`relay`] asks upstream for exactly the objects downstream lacks
//!    (downstream's tips are the `have`s), sends the ref-update commands to
//!    downstream, and streams the pack from upstream's side-band into
//!    receive-pack as it arrives, holding back only the pack's checksum
//!    until upstream has finished cleanly.
//! 7. Downstream's report says which refs moved; [`relay::PushResult`]
//!    carries it back with the bytes relayed.
//!
//! Nothing is written to local disk, and memory is bounded by a pkt-line
//! buffer per side whatever the pack size; the lists read whole
//! (advertisements, acknowledgments, reports) are capped by [`limits`].
#![forbid(unsafe_code)]

pub mod ancestry;
pub mod batch;
pub mod commit_graph;
pub mod config;
pub mod error_kind;
pub mod fleet;
pub mod forge;
pub mod git_config;
pub mod head;
pub mod helper;
mod jitter;
pub mod lfs;
pub mod limits;
pub mod location;
pub mod oid;
pub mod pkt_io;
pub mod plan;
pub mod progress;
pub mod protocol_settings;
pub mod relay;
pub mod session;
pub mod summary;
pub mod terminal;
pub mod trace;
pub mod transport;
pub mod url;
pub mod url_rewrite;
pub mod watch;
pub mod wire;
