//! The watch service's Prometheus metrics ([`Metrics`]), served by
//! `GET /metrics` in the OpenMetrics text format.
//!
//! The scheduler reports each sync (`sync_started`, `sync_finished`) and
//! each retry; a mirror removed by a reload is `forget`-ten, so its series
//! go away instead of freezing at their last values. Labels are bounded:
//! `mirror` is a configured name, `result` and `kind` come from fixed sets.
//! The duration histogram has no `mirror` label, so its size does not grow
//! with the fleet.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use crate::fleet::MirrorRun;
use crate::plan::{Action, UpdateKind};
use crate::relay::RefStatus;

/// `GET /metrics`'s content type: what `prometheus-client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the sync duration buckets, in seconds: from a no-op
/// sync on loopback to an hour-long first mirror of a large repository.
const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabel {
    mirror: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    mirror: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    mirror: String,
    kind: &'static str,
}

/// Which `result` and `kind` values a mirror has series for, so that
/// `forget` can remove them all (a `Family` can only remove one known label
/// set at a time).
#[derive(Default)]
struct Seen {
    results: BTreeSet<&'static str>,
    kinds: BTreeSet<&'static str>,
}

/// The service's metrics. Shared (`Arc`) by the scheduler, which updates
/// them, and the HTTP listener, which encodes them.
pub struct Metrics {
    registry: Registry,
    syncs: Family<ResultLabels, Counter>,
    retries: Family<MirrorLabel, Counter>,
    bytes_relayed: Family<MirrorLabel, Counter>,
    lfs_objects: Family<MirrorLabel, Counter>,
    lfs_bytes: Family<MirrorLabel, Counter>,
    refs_updated: Family<KindLabels, Counter>,
    duration: Histogram,
    last_success: Family<MirrorLabel, Gauge<f64, AtomicU64>>,
    up: Family<MirrorLabel, Gauge>,
    in_flight: Gauge,
    seen: Mutex<HashMap<String, Seen>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every metric registered, none with a series yet except
    /// `kalandra_in_flight` and the histogram.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kalandra");
        let syncs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "syncs",
            "Syncs finished, by mirror and result (ok, or the failure's error kind)",
            syncs.clone(),
        );
        let retries = Family::<MirrorLabel, Counter>::default();
        registry.register(
            "retries",
            "Attempts retried after a transient failure",
            retries.clone(),
        );
        let bytes_relayed = Family::<MirrorLabel, Counter>::default();
        // Named as the issue spells it; OpenMetrics' unit suffix would make
        // it `kalandra_relayed_bytes_total`.
        registry.register(
            "bytes_relayed",
            "Pack bytes relayed from upstream to downstream",
            bytes_relayed.clone(),
        );
        let lfs_objects = Family::<MirrorLabel, Counter>::default();
        registry.register(
            "lfs_objects",
            "LFS objects copied from upstream's LFS server to downstream's",
            lfs_objects.clone(),
        );
        let lfs_bytes = Family::<MirrorLabel, Counter>::default();
        registry.register(
            "lfs_bytes",
            "Bytes of the LFS objects copied",
            lfs_bytes.clone(),
        );
        let refs_updated = Family::<KindLabels, Counter>::default();
        registry.register(
            "refs_updated",
            "Downstream refs that moved, by kind of update",
            refs_updated.clone(),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "sync_duration",
            "How long each sync took, retries included",
            Unit::Seconds,
            duration.clone(),
        );
        let last_success = Family::<MirrorLabel, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "last_success_timestamp",
            "When the mirror's last successful sync ended (Unix time)",
            Unit::Seconds,
            last_success.clone(),
        );
        let up = Family::<MirrorLabel, Gauge>::default();
        registry.register(
            "mirror_up",
            "1 when the mirror's last sync succeeded, 0 when it failed",
            up.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight", "Syncs running now", in_flight.clone());
        Self {
            registry,
            syncs,
            retries,
            bytes_relayed,
            lfs_objects,
            lfs_bytes,
            refs_updated,
            duration,
            last_success,
            up,
            in_flight,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A sync of a mirror started. Pair each with one
    /// [`sync_finished`](Self::sync_finished). `kalandra_in_flight` has no
    /// `mirror` label: a mirror never runs twice at once.
    pub fn sync_started(&self, _mirror: &str) {
        self.in_flight.inc();
    }

    /// A sync ended, after `duration` (retries and their waits included):
    /// counts its result, bytes and moved refs, and sets the mirror's
    /// `up` and, on success, its last success time.
    pub fn sync_finished(&self, run: &MirrorRun, duration: Duration) {
        self.in_flight.dec();
        let mirror = label_value(&run.name);
        let result = result_label(run);
        self.syncs
            .get_or_create(&ResultLabels {
                mirror: mirror.clone(),
                result,
            })
            .inc();
        self.duration.observe(duration.as_secs_f64());
        let label = MirrorLabel {
            mirror: mirror.clone(),
        };
        self.bytes_relayed
            .get_or_create(&label)
            .inc_by(run.bytes_relayed());
        if let Some(lfs) = run.report.as_ref().and_then(|r| r.lfs.as_ref()) {
            self.lfs_objects
                .get_or_create(&label)
                .inc_by(lfs.objects as u64);
            self.lfs_bytes.get_or_create(&label).inc_by(lfs.bytes);
        }
        self.up.get_or_create(&label).set(i64::from(run.ok));
        if run.ok {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success
                .get_or_create(&label)
                .set(now.as_secs_f64());
        }
        let mut kinds = BTreeSet::new();
        let refs = run.report.iter().flat_map(|report| &report.result.refs);
        for outcome in refs.filter(|outcome| outcome.status == RefStatus::Ok) {
            let kind = kind_label(outcome.action, outcome.kind);
            kinds.insert(kind);
            self.refs_updated
                .get_or_create(&KindLabels {
                    mirror: mirror.clone(),
                    kind,
                })
                .inc();
        }
        let mut seen = self.seen.lock().expect("no panic while holding the lock");
        let seen = seen.entry(run.name.clone()).or_default();
        seen.results.insert(result);
        seen.kinds.append(&mut kinds);
    }

    /// An attempt of `mirror` failed and will be retried.
    pub fn retried(&self, mirror: &str) {
        self.retries
            .get_or_create(&MirrorLabel {
                mirror: label_value(mirror),
            })
            .inc();
    }

    /// Removes every series of `mirror`, which a reload removed. The
    /// histogram has no `mirror` label and keeps its observations.
    pub fn forget(&self, mirror: &str) {
        let seen = self
            .seen
            .lock()
            .expect("no panic while holding the lock")
            .remove(mirror)
            .unwrap_or_default();
        let mirror = label_value(mirror);
        for result in seen.results {
            self.syncs.remove(&ResultLabels {
                mirror: mirror.clone(),
                result,
            });
        }
        for kind in seen.kinds {
            self.refs_updated.remove(&KindLabels {
                mirror: mirror.clone(),
                kind,
            });
        }
        let label = MirrorLabel { mirror };
        self.retries.remove(&label);
        self.bytes_relayed.remove(&label);
        self.lfs_objects.remove(&label);
        self.lfs_bytes.remove(&label);
        self.last_success.remove(&label);
        self.up.remove(&label);
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }
}

/// `mirror` as a label value. prometheus-client writes label values as
/// they are, and a mirror's name may hold `"` or `\`, which would end the
/// value early and let the rest of the name pose as more labels; the
/// OpenMetrics escapes are applied here instead.
fn label_value(mirror: &str) -> String {
    let mut out = String::with_capacity(mirror.len());
    for c in mirror.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `ok`, or the failure's error kind (`timeout`, `auth`, …), or `failed`
/// when the failure was not classified.
fn result_label(run: &MirrorRun) -> &'static str {
    if run.ok {
        "ok"
    } else {
        run.error_kind.map_or("failed", |kind| kind.as_str())
    }
}

/// How a ref that moved downstream moved: `create`, `delete`, or for an
/// update `fast-forward`, `forced`, `tag-moved`, or `update` when its kind
/// is not known.
fn kind_label(action: Action, kind: Option<UpdateKind>) -> &'static str {
    match (action, kind) {
        (Action::Create, _) => "create",
        (Action::Delete, _) => "delete",
        (Action::Update, Some(UpdateKind::FastForward)) => "fast-forward",
        (Action::Update, Some(UpdateKind::Forced)) => "forced",
        (Action::Update, Some(UpdateKind::TagMoved)) => "tag-moved",
        (Action::Update, Some(UpdateKind::Undecidable) | None) => "update",
    }
}
