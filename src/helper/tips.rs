//! What to ask a protocol v0 upstream for.
//!
//! v0 upload-pack serves only the tips it advertised (gitprotocol-pack.txt,
//! "Packfile Negotiation"), unless its configuration allows more
//! (`uploadpack.allowReachableSHA1InWant` and friends, which the helper
//! cannot see). Servers refuse other wants in their own ways: git with `not
//! our ref`, JGit by dropping the connection, dulwich by waiting until the
//! idle timeout. So the helper wants only advertised tips: an object that a
//! tip reaches is served by wanting that tip (the pack then also carries the
//! tip's other new objects, which downstream stores and does not mind).
//!
//! Which tip reaches an object is decided without a copy of upstream, from
//! the local repository that `git push` runs in: it resolved the object, so
//! it usually also has the tips it came from (a clone or fetch of upstream
//! leaves them as remote-tracking refs). Only a proof counts: a tip the
//! local repository does not have, or whose history it cannot walk to the
//! object (a shallow clone), is never guessed at. When no tip is found, the
//! push of that ref is refused before anything is sent to downstream.

use std::collections::{BTreeMap, BTreeSet};

use crate::helper::local::LocalRepo;
use crate::oid::ObjectId;

/// How many tips the local repository is asked about one by one (a
/// `merge-base --is-ancestor` each) when no local ref settles it; a
/// repository with thousands of tags would otherwise take minutes to say no.
pub const MAX_TIPS_TRIED: usize = 256;

/// Upstream's advertised refs.
#[derive(Debug, Clone, Default)]
pub struct AdvertisedTips {
    /// `(name, oid)` in advertisement order, `HEAD` included.
    refs: Vec<(String, ObjectId)>,
    /// What an advertised annotated tag peels to (`^{}`), and the tag.
    peeled_to_tag: BTreeMap<ObjectId, ObjectId>,
}

impl AdvertisedTips {
    /// `refs` as advertised, and the `^{}` lines of annotated tags.
    pub fn new(refs: Vec<(String, ObjectId)>, peeled: Vec<(String, ObjectId)>) -> Self {
        let tags: BTreeMap<&str, &ObjectId> = refs.iter().map(|(n, o)| (n.as_str(), o)).collect();
        let peeled_to_tag = peeled
            .iter()
            .filter_map(|(name, target)| {
                Some((target.clone(), (*tags.get(name.as_str())?).clone()))
            })
            .collect();
        Self {
            refs,
            peeled_to_tag,
        }
    }

    /// The tip to want for `object` with no question asked: the object
    /// itself when it is a tip, or the annotated tag advertised as peeling to
    /// it (upload-pack marks the tag, not its target, as wantable).
    pub fn direct(&self, object: &ObjectId) -> Option<ObjectId> {
        if self.refs.iter().any(|(_, oid)| oid == object) {
            return Some(object.clone());
        }
        self.peeled_to_tag.get(object).cloned()
    }

    /// Every distinct tip, most likely first to reach an object pushed to
    /// `dst`: upstream's own `dst`, then HEAD, the branches, and the rest in
    /// advertisement order.
    pub fn candidates(&self, dst: &str) -> Vec<ObjectId> {
        let rank = |name: &str| {
            if name == dst {
                0
            } else if name == "HEAD" {
                1
            } else if name.starts_with("refs/heads/") {
                2
            } else {
                3
            }
        };
        let mut ranked: Vec<(usize, usize, &ObjectId)> = self
            .refs
            .iter()
            .enumerate()
            .map(|(i, (name, oid))| (rank(name), i, oid))
            .collect();
        ranked.sort();
        let mut seen = BTreeSet::new();
        ranked
            .into_iter()
            .filter(|(_, _, oid)| seen.insert(*oid))
            .map(|(_, _, oid)| oid.clone())
            .collect()
    }
}

/// The advertised tip to want for `object`, pushed to `dst`, if one is
/// proven to reach it: the object itself or its tag ([`AdvertisedTips::direct`]);
/// else, for a commit, a tip that a local ref holds and whose local history
/// contains it (one `for-each-ref --contains`); else the first of
/// [`MAX_TIPS_TRIED`] tips present locally that `merge-base --is-ancestor`
/// shows to contain it.
///
/// A tag, tree or blob that is not itself advertised is not looked for: a
/// tip whose history holds it cannot be told without walking every tree.
pub async fn tip_reaching(
    tips: &AdvertisedTips,
    local: &LocalRepo,
    object: &ObjectId,
    dst: &str,
) -> Option<ObjectId> {
    if let Some(tip) = tips.direct(object) {
        return Some(tip);
    }
    if local.object_type(object).await.as_deref() != Some("commit") {
        return None;
    }
    let candidates = tips.candidates(dst);
    let containing = local.refs_containing(object).await;
    if let Some(tip) = candidates.iter().find(|t| containing.contains(*t)) {
        return Some(tip.clone());
    }
    let present = local.present(&candidates).await;
    for tip in candidates
        .iter()
        .filter(|t| present.contains(*t))
        .take(MAX_TIPS_TRIED)
    {
        if local.is_ancestor(object, tip).await == Some(true) {
            return Some(tip.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> ObjectId {
        ObjectId::from_hex(c.to_string().repeat(40).as_bytes()).expect("valid")
    }

    fn tips() -> AdvertisedTips {
        // As a v0 advertisement lists them: HEAD first, refs sorted, `^{}`
        // after an annotated tag.
        AdvertisedTips::new(
            vec![
                ("HEAD".into(), oid('1')),
                ("refs/heads/main".into(), oid('1')),
                ("refs/heads/topic".into(), oid('2')),
                ("refs/tags/v1".into(), oid('3')),
                ("refs/tags/v2".into(), oid('4')),
            ],
            vec![("refs/tags/v1".into(), oid('5'))],
        )
    }

    #[test]
    fn a_tip_or_a_tags_target_needs_no_question() {
        let tips = tips();
        assert_eq!(tips.direct(&oid('2')), Some(oid('2')));
        assert_eq!(
            tips.direct(&oid('5')),
            Some(oid('3')),
            "the tag, not its commit"
        );
        assert_eq!(tips.direct(&oid('9')), None);
    }

    #[test]
    fn candidates_start_with_the_pushed_ref_then_head_and_branches() {
        let tips = tips();
        assert_eq!(
            tips.candidates("refs/tags/v2"),
            vec![oid('4'), oid('1'), oid('2'), oid('3')]
        );
        assert_eq!(
            tips.candidates("refs/heads/new"),
            vec![oid('1'), oid('2'), oid('3'), oid('4')],
            "each tip once"
        );
    }
}
