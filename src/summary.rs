//! The one-line summary of a sync, counted per kind of change.
//!
//! "51 refs updated" when all 51 were created says less than git's own
//! output does; a person reading a cron mail wants to see at a glance
//! whether anything was forced, deleted or refused.

use crate::plan::{Action, UpdateKind};
use crate::relay::{RefOutcome, RefStatus};

/// How many refs ended up each way. A ref counts once, under the first
/// of: rejected, kept, unknown, then what it did (created, deleted, tag
/// moved, forced, fast-forward, or updated when that cannot be told).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub created: usize,
    pub fast_forward: usize,
    pub forced: usize,
    /// An update whose kind could not be told (no ancestry available).
    pub updated: usize,
    pub tag_moved: usize,
    pub deleted: usize,
    pub kept: usize,
    pub rejected: usize,
    pub unknown: usize,
}

impl Tally {
    pub fn of(refs: &[RefOutcome]) -> Self {
        let mut tally = Self::default();
        for outcome in refs {
            let slot = match outcome.status {
                RefStatus::Rejected => &mut tally.rejected,
                RefStatus::Kept => &mut tally.kept,
                RefStatus::Unknown => &mut tally.unknown,
                RefStatus::Ok | RefStatus::Planned => match (outcome.action, outcome.kind) {
                    (Action::Create, _) => &mut tally.created,
                    (Action::Delete, _) => &mut tally.deleted,
                    (Action::Update, Some(UpdateKind::TagMoved)) => &mut tally.tag_moved,
                    (Action::Update, Some(UpdateKind::Forced)) => &mut tally.forced,
                    (Action::Update, Some(UpdateKind::FastForward)) => &mut tally.fast_forward,
                    (Action::Update, _) => &mut tally.updated,
                },
            };
            *slot += 1;
        }
        tally
    }

    /// The refs that changed, or would change in a plan.
    pub fn changed(&self) -> usize {
        self.created
            + self.fast_forward
            + self.forced
            + self.updated
            + self.tag_moved
            + self.deleted
    }

    /// `2 created, 1 updated (forced), 1 rejected`: only the kinds that
    /// occur, in a fixed order. In a plan the verbs say what would happen.
    pub fn describe(&self, dry_run: bool) -> String {
        let parts: [(usize, &str, &str); 9] = [
            (self.created, "created", "to create"),
            (
                self.fast_forward,
                "updated (fast-forward)",
                "to update (fast-forward)",
            ),
            (self.forced, "updated (forced)", "to update (forced)"),
            (self.updated, "updated", "to update"),
            (self.tag_moved, "tag moved", "tags to move"),
            (self.deleted, "deleted", "to delete"),
            (self.kept, "kept", "to keep"),
            (self.rejected, "rejected", "refused"),
            (
                self.unknown,
                "unknown (downstream's report was lost)",
                "unknown",
            ),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, done, planned)| format!("{n} {}", if dry_run { planned } else { done }))
            .collect();
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oid::ObjectId;

    fn outcome(action: Action, kind: Option<UpdateKind>, status: RefStatus) -> RefOutcome {
        let oid = ObjectId::from_hex(b"1111111111111111111111111111111111111111").expect("hex");
        RefOutcome {
            name: "refs/heads/x".into(),
            action,
            old: (action != Action::Create).then(|| oid.clone()),
            new: (action != Action::Delete).then(|| oid.clone()),
            kind,
            status,
            reason: None,
        }
    }

    #[test]
    fn all_created_is_not_called_updated() {
        let refs: Vec<_> = (0..51)
            .map(|_| outcome(Action::Create, None, RefStatus::Ok))
            .collect();
        let tally = Tally::of(&refs);
        assert_eq!(tally.created, 51);
        assert_eq!(tally.changed(), 51);
        assert_eq!(tally.describe(false), "51 created");
        assert_eq!(tally.describe(true), "51 to create");
    }

    #[test]
    fn each_kind_counts_once_in_a_fixed_order() {
        let refs = vec![
            outcome(Action::Update, Some(UpdateKind::Forced), RefStatus::Ok),
            outcome(Action::Update, Some(UpdateKind::FastForward), RefStatus::Ok),
            outcome(Action::Update, Some(UpdateKind::FastForward), RefStatus::Ok),
            outcome(Action::Update, Some(UpdateKind::TagMoved), RefStatus::Ok),
            outcome(Action::Update, Some(UpdateKind::Undecidable), RefStatus::Ok),
            outcome(Action::Delete, None, RefStatus::Ok),
            outcome(Action::Create, None, RefStatus::Ok),
            outcome(
                Action::Update,
                Some(UpdateKind::Forced),
                RefStatus::Rejected,
            ),
            outcome(Action::Update, Some(UpdateKind::Forced), RefStatus::Kept),
            outcome(Action::Create, None, RefStatus::Unknown),
        ];
        let tally = Tally::of(&refs);
        assert_eq!(
            tally.describe(false),
            "1 created, 2 updated (fast-forward), 1 updated (forced), 1 updated, 1 tag moved, \
             1 deleted, 1 kept, 1 rejected, 1 unknown (downstream's report was lost)"
        );
        assert_eq!(tally.changed(), 7);
    }
}
