//! Which mirrors of a fleet one run syncs: `--only` and `--shard I/N`.

use std::fmt;
use std::str::FromStr;

use crate::config::Mirror;

/// `--shard I/N`: this machine's part of a fleet split `N` ways, `I`
/// counted from 0 (as Kubernetes' `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the mirror named `name` belongs to this shard. Every name
    /// belongs to exactly one shard of `count`, and always the same one.
    pub fn contains(&self, name: &str) -> bool {
        (stable_hash(name) % u64::from(self.count)) as u32 == self.index
    }
}

/// FNV-1a, 64 bits. Shards must agree across machines, builds and Rust
/// versions, which std's hashers do not promise; a hash this small is
/// written out rather than pulled in from a crate.
fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `--shard` was not `I/N` with `0 <= I < N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("--shard {0:?} is not valid: expected I/N, two whole numbers with 0 <= I < N (for example 0/4)")]
    Shard(String),
    #[error("no mirror is named {}", .0.join(", "))]
    UnknownNames(Vec<String>),
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::Shard(text.to_owned());
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The mirrors to run, in the file's order: those named by `only` (all
/// when empty) that fall in `shard` (all when none). A name in `only` that
/// no mirror has is an error, so that a typo does not pass as "nothing to
/// do".
pub fn select<'a>(
    mirrors: &'a [Mirror],
    only: &[String],
    shard: Option<Shard>,
) -> Result<Vec<&'a Mirror>, Error> {
    let unknown: Vec<String> = only
        .iter()
        .filter(|name| !mirrors.iter().any(|m| &m.name == *name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::UnknownNames(unknown));
    }
    Ok(mirrors
        .iter()
        .filter(|m| only.is_empty() || only.contains(&m.name))
        .filter(|m| shard.is_none_or(|s| s.contains(&m.name)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_nonsense() {
        assert_eq!("0/4".parse(), Ok(Shard { index: 0, count: 4 }));
        assert_eq!("3/4".parse(), Ok(Shard { index: 3, count: 4 }));
        for bad in ["4/4", "1/0", "0", "a/b", "-1/3", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_are_disjoint_complete_and_fixed() {
        let names: Vec<String> = (0..1000).map(|i| format!("repo-{i}")).collect();
        for count in [1, 2, 3, 7, 16] {
            let mut seen = vec![0; names.len()];
            for index in 0..count {
                let shard = Shard { index, count };
                for (i, name) in names.iter().enumerate() {
                    if shard.contains(name) {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards");
        }
        // Pinned values: a change of hash would move mirrors between
        // machines of a running fleet.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_are_balanced_enough() {
        let count = 4;
        let sizes: Vec<usize> = (0..count)
            .map(|index| {
                (0..4000)
                    .filter(|i| Shard { index, count }.contains(&format!("acme/service-{i}")))
                    .count()
            })
            .collect();
        assert!(sizes.iter().all(|&n| (800..1200).contains(&n)), "{sizes:?}");
    }
}
