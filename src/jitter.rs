//! Randomness for spreading retries out.

use std::hash::{BuildHasher, Hasher};

/// A number in [0, 1) from std's per-process random hasher keys: jitter
/// needs no better randomness than that, nor a crate.
pub(crate) fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}
