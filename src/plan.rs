//! Planning: which downstream refs to create, update or delete so that
//! downstream follows upstream inside the scope. Pure: it sees two ref
//! lists and returns updates, or refuses when a guard trips.

use std::collections::BTreeMap;

use crate::oid::ObjectId;

/// Namespaces that forges maintain themselves and refuse pushes to. They
/// are never pushed, whatever the scope says.
pub const READ_ONLY_NAMESPACES: &[&str] = &["refs/pull/", "refs/merge-requests/", "refs/changes/"];

/// Kalandra's own refs on downstream (the checkpoints of a split push,
/// [`crate::batch`]): never mirrored and never pruned, whatever the scope
/// says.
pub const KALANDRA_NAMESPACE: &str = "refs/kalandra/";

/// The default scope: branches and tags.
pub const DEFAULT_INCLUDE: &[&str] = &["refs/heads/*", "refs/tags/*"];

/// A plan was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("upstream lists no refs in scope while downstream has {downstream}; refusing to delete them (a wrong path or credential can look like an empty repository). Pass --allow-mass-delete if this is intended")]
    EmptyUpstream {
        downstream: usize,
        /// The refs the sync would have deleted, for the JSON report.
        would_delete: Vec<String>,
    },
    #[error("the sync would delete {} of downstream's {downstream} refs in scope; refusing (more than half). Pass --allow-mass-delete if this is intended", would_delete.len())]
    MassDelete {
        downstream: usize,
        would_delete: Vec<String>,
    },
    #[error("invalid ref pattern {pattern:?}: {reason}")]
    Pattern {
        pattern: String,
        reason: &'static str,
    },
}

impl Error {
    /// The refs a guard kept from being deleted (empty for other errors).
    pub fn would_delete(&self) -> &[String] {
        match self {
            Self::EmptyUpstream { would_delete, .. } | Self::MassDelete { would_delete, .. } => {
                would_delete
            }
            Self::Pattern { .. } => &[],
        }
    }
}

/// A ref name pattern: `*` matches any run of characters, `/` included,
/// as in git refspecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Result<Self, Error> {
        let refuse = |reason| Error::Pattern {
            pattern: pattern.to_owned(),
            reason,
        };
        if pattern.is_empty() {
            return Err(refuse("it is empty"));
        }
        if !pattern.starts_with("refs/") {
            return Err(refuse("patterns start with refs/, e.g. refs/heads/*"));
        }
        Ok(Self(pattern.to_owned()))
    }

    pub fn matches(&self, name: &str) -> bool {
        wildcard_match(self.0.as_bytes(), name.as_bytes())
    }

    /// The literal text before the first `*`: what `ls-refs ref-prefix`
    /// can ask for.
    pub fn literal_prefix(&self) -> &str {
        match self.0.find('*') {
            Some(i) => &self.0[..i],
            None => &self.0,
        }
    }
}

pub(crate) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with backtracking to the last `*`: linear for the
    // patterns people write, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Which refs a mirror covers. Exclude wins over include.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    include: Vec<Glob>,
    exclude: Vec<Glob>,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            include: DEFAULT_INCLUDE
                .iter()
                .map(|p| Glob((*p).to_owned()))
                .collect(),
            exclude: Vec::new(),
        }
    }
}

impl Scope {
    /// A scope from patterns; an empty `include` means the default.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, Error> {
        let include = if include.is_empty() {
            Self::default().include
        } else {
            include
                .iter()
                .map(|p| Glob::new(p))
                .collect::<Result<_, _>>()?
        };
        let exclude = exclude
            .iter()
            .map(|p| Glob::new(p))
            .collect::<Result<_, _>>()?;
        Ok(Self { include, exclude })
    }

    pub fn contains(&self, name: &str) -> bool {
        !READ_ONLY_NAMESPACES.iter().any(|ns| name.starts_with(ns))
            && !name.starts_with(KALANDRA_NAMESPACE)
            && self.include.iter().any(|g| g.matches(name))
            && !self.exclude.iter().any(|g| g.matches(name))
    }

    /// Prefixes to list upstream, one per include pattern, without
    /// duplicates or prefixes covered by a shorter one.
    pub fn ref_prefixes(&self) -> Vec<String> {
        let mut prefixes: Vec<String> = self
            .include
            .iter()
            .map(|g| g.literal_prefix().to_owned())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        let mut kept: Vec<String> = Vec::new();
        for prefix in prefixes {
            if !kept.iter().any(|k| prefix.starts_with(k.as_str())) {
                kept.push(prefix);
            }
        }
        kept
    }
}

/// What happens to one downstream ref.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// One ref update: `old` is downstream's advertised value (so the push is
/// a compare-and-swap), `new` is upstream's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
}

impl RefUpdate {
    pub fn action(&self) -> Action {
        match (&self.old, &self.new) {
            (None, _) => Action::Create,
            (Some(_), None) => Action::Delete,
            (Some(_), Some(_)) => Action::Update,
        }
    }
}

/// The longest ref name Kalandra pushes. A command line
/// (`<old> <new> <name>\0<capabilities>`) must fit in one pkt-line of 65516
/// bytes, with two sha256 ids and the capabilities beside the name.
pub const MAX_REF_NAME_LEN: usize = 64_000;

/// A ref left out of the plan because its name is not one git accepts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedRef {
    pub name: String,
    /// `upstream` or `downstream`: whose advertisement listed it.
    pub side: &'static str,
    pub reason: String,
}

/// Splits `refs` into those with valid names (git's `check-ref-format`
/// rules, through gix-validate, and [`MAX_REF_NAME_LEN`]) and, among the
/// rest, those in scope, which are reported as skipped. A server can list
/// names that receive-pack refuses (`refs/heads/../x`, `x.lock`, control
/// characters); pushing one would fail it, and under `--atomic` every ref.
pub fn valid_refs(
    refs: &[(String, ObjectId)],
    side: &'static str,
    scope: &Scope,
) -> (Vec<(String, ObjectId)>, Vec<SkippedRef>) {
    let mut valid = Vec::with_capacity(refs.len());
    let mut skipped = Vec::new();
    for (name, oid) in refs {
        let problem = if name.len() > MAX_REF_NAME_LEN {
            Some(format!(
                "the name is {} bytes long, more than the {MAX_REF_NAME_LEN} a push can carry",
                name.len()
            ))
        } else {
            gix_validate::reference::name(name.as_bytes().into())
                .err()
                .map(|e| e.to_string())
        };
        match problem {
            None => valid.push((name.clone(), oid.clone())),
            Some(reason) if scope.contains(name) => skipped.push(SkippedRef {
                name: name.clone(),
                side,
                reason,
            }),
            Some(_) => {}
        }
    }
    (valid, skipped)
}

/// How an update is related to what downstream had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateKind {
    /// Downstream's commit is an ancestor of upstream's.
    FastForward,
    /// Not a fast-forward: downstream's commit would be dropped.
    Forced,
    /// A tag (`refs/tags/*`) that points elsewhere upstream.
    TagMoved,
    /// Nothing available tells fast-forward from forced.
    Undecidable,
}

/// What a sync does with an update that is not a fast-forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// Overwrite, as `git push --mirror` does: the mirror follows
    /// upstream's own rewrites. Reported as `forced`.
    #[default]
    Force,
    /// Refuse non-fast-forward updates; each is reported as rejected.
    FfOnly,
    /// Leave divergent downstream refs as they are; each is reported as kept.
    Keep,
}

impl Divergence {
    pub fn name(self) -> &'static str {
        match self {
            Self::Force => "force",
            Self::FfOnly => "ff-only",
            Self::Keep => "keep",
        }
    }
}

/// What the divergence rules decided for one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Push,
    Reject(String),
    Keep(String),
}

/// Whether a ref is a tag, whose moves are judged as tags, not by ancestry.
pub fn is_tag(name: &str) -> bool {
    name.starts_with("refs/tags/")
}

/// Whether an update needs the ancestry check to be classified: updates of
/// anything but tags (creates, deletes and tag moves need none).
pub fn needs_ancestry(update: &RefUpdate) -> bool {
    update.action() == Action::Update && !is_tag(&update.name)
}

/// Applies the divergence policy to one classified update. `detail` says
/// why an update is forced or undecidable.
pub fn judge(
    update: &RefUpdate,
    kind: Option<UpdateKind>,
    detail: Option<&str>,
    divergence: Divergence,
    immutable_tags: bool,
) -> Verdict {
    let because = |what: &str| match detail {
        Some(detail) => format!("{what}: {detail}"),
        None => what.to_owned(),
    };
    if immutable_tags && is_tag(&update.name) && update.old.is_some() {
        return Verdict::Reject(match update.action() {
            Action::Delete => "tag would be deleted; --immutable-tags keeps existing tags".into(),
            _ => "tag moved upstream; --immutable-tags keeps existing tags".into(),
        });
    }
    match (kind, divergence) {
        (Some(UpdateKind::Forced), Divergence::FfOnly) => {
            Verdict::Reject(because("non-fast-forward (--divergence=ff-only)"))
        }
        (Some(UpdateKind::Forced), Divergence::Keep) => {
            Verdict::Keep(because("diverged downstream (--divergence=keep)"))
        }
        (Some(UpdateKind::Undecidable), Divergence::FfOnly | Divergence::Keep) => {
            Verdict::Reject(because("undecidable"))
        }
        _ => Verdict::Push,
    }
}

/// Splits off the deletes that free a name a create needs: deleting
/// `refs/heads/a` before creating `refs/heads/a/b`, or `refs/heads/a/b`
/// before `refs/heads/a` (git stores refs as paths, so both cannot exist).
/// Returns `(those deletes, everything else)`, each in the original order.
pub fn split_freeing_deletes(updates: &[RefUpdate]) -> (Vec<RefUpdate>, Vec<RefUpdate>) {
    let creates: Vec<&str> = updates
        .iter()
        .filter(|u| u.action() == Action::Create)
        .map(|u| u.name.as_str())
        .collect();
    let nested =
        |a: &str, b: &str| a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'/';
    updates.iter().cloned().partition(|u| {
        u.action() == Action::Delete
            && creates
                .iter()
                .any(|c| nested(c, &u.name) || nested(&u.name, c))
    })
}

/// Knobs for [`plan`].
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub scope: Scope,
    pub prune: bool,
    pub allow_mass_delete: bool,
    /// What to do with updates that are not fast-forwards.
    pub divergence: Divergence,
    /// Never move or delete a tag that downstream has.
    pub immutable_tags: bool,
}

/// The updates that make downstream follow upstream inside the scope.
///
/// The branch upstream's HEAD names comes first, because some forges make
/// the first branch pushed to an empty repository its default branch; the
/// rest follow in name order.
pub fn plan(
    upstream: &[(String, ObjectId)],
    head_target: Option<&str>,
    downstream: &[(String, ObjectId)],
    options: &PlanOptions,
) -> Result<Vec<RefUpdate>, Error> {
    let in_scope = |refs: &[(String, ObjectId)]| -> BTreeMap<String, ObjectId> {
        refs.iter()
            .filter(|(name, _)| options.scope.contains(name))
            .map(|(name, oid)| (name.clone(), oid.clone()))
            .collect()
    };
    let up = in_scope(upstream);
    let down = in_scope(downstream);

    let mut updates = Vec::new();
    for (name, new) in &up {
        match down.get(name) {
            Some(old) if old == new => {}
            old => updates.push(RefUpdate {
                name: name.clone(),
                old: old.cloned(),
                new: Some(new.clone()),
            }),
        }
    }
    if options.prune {
        let deletes: Vec<RefUpdate> = down
            .iter()
            .filter(|(name, _)| !up.contains_key(*name))
            .map(|(name, old)| RefUpdate {
                name: name.clone(),
                old: Some(old.clone()),
                new: None,
            })
            .collect();
        if !deletes.is_empty() && !options.allow_mass_delete {
            let would_delete = || deletes.iter().map(|d| d.name.clone()).collect();
            if up.is_empty() {
                return Err(Error::EmptyUpstream {
                    downstream: down.len(),
                    would_delete: would_delete(),
                });
            }
            if deletes.len() * 2 > down.len() {
                return Err(Error::MassDelete {
                    downstream: down.len(),
                    would_delete: would_delete(),
                });
            }
        }
        updates.extend(deletes);
        updates.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if let Some(head) = head_target {
        if let Some(i) = updates
            .iter()
            .position(|u| u.name == head && u.new.is_some())
        {
            let first = updates.remove(i);
            updates.insert(0, first);
        }
    }
    Ok(updates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> ObjectId {
        ObjectId::from_hex(c.to_string().repeat(40).as_bytes()).expect("valid")
    }

    fn refs(list: &[(&str, char)]) -> Vec<(String, ObjectId)> {
        list.iter()
            .map(|(n, c)| ((*n).to_owned(), oid(*c)))
            .collect()
    }

    fn opts() -> PlanOptions {
        PlanOptions {
            prune: true,
            ..Default::default()
        }
    }

    #[test]
    fn globs_match_across_slashes() {
        let g = Glob::new("refs/heads/*").expect("valid");
        assert!(g.matches("refs/heads/main"));
        assert!(g.matches("refs/heads/feature/x"));
        assert!(!g.matches("refs/tags/v1"));
        let g = Glob::new("refs/tags/v*.0").expect("valid");
        assert!(g.matches("refs/tags/v1.0"));
        assert!(g.matches("refs/tags/v1.0.0"));
        assert!(!g.matches("refs/tags/v1.1"));
        assert_eq!(g.literal_prefix(), "refs/tags/v");
        assert!(Glob::new("heads/*").is_err());
    }

    #[test]
    fn scope_excludes_win_and_forge_namespaces_never_match() {
        let scope =
            Scope::new(&["refs/*".to_owned()], &["refs/heads/wip/*".to_owned()]).expect("valid");
        assert!(scope.contains("refs/heads/main"));
        assert!(!scope.contains("refs/heads/wip/x"));
        assert!(!scope.contains("refs/pull/1/head"));
        assert!(!scope.contains("refs/merge-requests/1/head"));
        assert!(!scope.contains("refs/changes/01/1/1"));
        assert_eq!(scope.ref_prefixes(), vec!["refs/".to_owned()]);
        assert_eq!(
            Scope::default().ref_prefixes(),
            vec!["refs/heads/".to_owned(), "refs/tags/".to_owned()]
        );
    }

    #[test]
    fn creates_updates_deletes_with_head_first() {
        let up = refs(&[
            ("refs/heads/a", '1'),
            ("refs/heads/main", '2'),
            ("refs/heads/same", '3'),
            ("refs/tags/t", '4'),
        ]);
        let down = refs(&[
            ("refs/heads/a", '9'),
            ("refs/heads/same", '3'),
            ("refs/heads/old", '5'),
            ("refs/heads/old2", '5'),
            ("refs/notes/x", '6'),
        ]);
        let updates = plan(&up, Some("refs/heads/main"), &down, &opts()).expect("plan");
        let summary: Vec<(&str, Action)> = updates
            .iter()
            .map(|u| (u.name.as_str(), u.action()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("refs/heads/main", Action::Create),
                ("refs/heads/a", Action::Update),
                ("refs/heads/old", Action::Delete),
                ("refs/heads/old2", Action::Delete),
                ("refs/tags/t", Action::Create),
            ]
        );
        assert_eq!(updates[1].old, Some(oid('9')));
    }

    #[test]
    fn no_prune_keeps_extra_refs() {
        let up = refs(&[("refs/heads/a", '1')]);
        let down = refs(&[("refs/heads/a", '1'), ("refs/heads/b", '2')]);
        let options = PlanOptions::default();
        assert!(plan(&up, None, &down, &options).expect("plan").is_empty());
    }

    #[test]
    fn guards_refuse_empty_upstream_and_mass_delete() {
        let down = refs(&[
            ("refs/heads/a", '1'),
            ("refs/heads/b", '2'),
            ("refs/heads/c", '3'),
        ]);
        assert_eq!(
            plan(&[], None, &down, &opts()),
            Err(Error::EmptyUpstream {
                downstream: 3,
                would_delete: vec![
                    "refs/heads/a".into(),
                    "refs/heads/b".into(),
                    "refs/heads/c".into()
                ],
            })
        );
        let up = refs(&[("refs/heads/a", '1')]);
        assert_eq!(
            plan(&up, None, &down, &opts()),
            Err(Error::MassDelete {
                downstream: 3,
                would_delete: vec!["refs/heads/b".into(), "refs/heads/c".into()],
            })
        );
        let allowed = PlanOptions {
            allow_mass_delete: true,
            ..opts()
        };
        assert_eq!(plan(&up, None, &down, &allowed).expect("allowed").len(), 2);
        let up = refs(&[("refs/heads/a", '1'), ("refs/heads/b", '2')]);
        assert_eq!(
            plan(&up, None, &down, &opts()).expect("one of three").len(),
            1
        );
    }

    #[test]
    fn divergence_policies_judge_forced_and_undecidable_updates() {
        let branch = RefUpdate {
            name: "refs/heads/main".into(),
            old: Some(oid('1')),
            new: Some(oid('2')),
        };
        let forced = Some(UpdateKind::Forced);
        let undecidable = Some(UpdateKind::Undecidable);
        let ff = Some(UpdateKind::FastForward);
        for policy in [Divergence::Force, Divergence::FfOnly, Divergence::Keep] {
            assert_eq!(judge(&branch, ff, None, policy, false), Verdict::Push);
        }
        assert_eq!(
            judge(&branch, forced, None, Divergence::Force, false),
            Verdict::Push
        );
        assert_eq!(
            judge(&branch, forced, Some("x"), Divergence::FfOnly, false),
            Verdict::Reject("non-fast-forward (--divergence=ff-only): x".into())
        );
        assert!(matches!(
            judge(&branch, forced, None, Divergence::Keep, false),
            Verdict::Keep(_)
        ));
        assert_eq!(
            judge(&branch, undecidable, None, Divergence::Force, false),
            Verdict::Push
        );
        for policy in [Divergence::FfOnly, Divergence::Keep] {
            assert_eq!(
                judge(&branch, undecidable, Some("no filter"), policy, false),
                Verdict::Reject("undecidable: no filter".into())
            );
        }
        assert!(needs_ancestry(&branch));
    }

    #[test]
    fn immutable_tags_refuse_moves_and_deletes_but_not_creates() {
        let moved = RefUpdate {
            name: "refs/tags/v1".into(),
            old: Some(oid('1')),
            new: Some(oid('2')),
        };
        assert!(!needs_ancestry(&moved));
        let tag_moved = Some(UpdateKind::TagMoved);
        assert_eq!(
            judge(&moved, tag_moved, None, Divergence::FfOnly, false),
            Verdict::Push
        );
        assert!(matches!(
            judge(&moved, tag_moved, None, Divergence::Force, true),
            Verdict::Reject(_)
        ));
        let deleted = RefUpdate {
            new: None,
            ..moved.clone()
        };
        assert!(matches!(
            judge(&deleted, None, None, Divergence::Force, true),
            Verdict::Reject(_)
        ));
        let created = RefUpdate { old: None, ..moved };
        assert_eq!(
            judge(&created, None, None, Divergence::Force, true),
            Verdict::Push
        );
    }

    #[test]
    fn invalid_ref_names_in_scope_are_skipped_with_a_reason() {
        let long = format!("refs/heads/{}", "x".repeat(MAX_REF_NAME_LEN));
        let refs = refs(&[
            ("refs/heads/ok", '1'),
            ("refs/heads/../../x", '2'),
            ("refs/heads/foo.lock", '3'),
            ("refs/heads/a\nb", '4'),
            ("refs/heads/sp ace", '5'),
            (&long, '6'),
            ("refs/other/bad..name", '7'),
        ]);
        let (valid, skipped) = valid_refs(&refs, "upstream", &Scope::default());
        assert_eq!(valid, refs[..1].to_vec());
        let names: Vec<&str> = skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "refs/heads/../../x",
                "refs/heads/foo.lock",
                "refs/heads/a\nb",
                "refs/heads/sp ace",
                long.as_str()
            ],
            "out-of-scope names are dropped silently"
        );
        assert!(skipped
            .iter()
            .all(|s| s.side == "upstream" && !s.reason.is_empty()));
        assert!(skipped[4].reason.contains("bytes long"));
    }

    #[test]
    fn deletes_that_free_a_path_for_a_create_go_first() {
        let update = |name: &str, old: Option<char>, new: Option<char>| RefUpdate {
            name: name.into(),
            old: old.map(oid),
            new: new.map(oid),
        };
        let updates = vec![
            update("refs/heads/a/b", None, Some('1')),
            update("refs/heads/x", None, Some('2')),
            update("refs/heads/a", Some('3'), None),
            update("refs/heads/c/d", Some('4'), None),
            update("refs/heads/c", None, Some('5')),
            update("refs/heads/ab", Some('6'), None),
            update("refs/heads/y", Some('7'), Some('8')),
        ];
        let (first, rest) = split_freeing_deletes(&updates);
        let names = |v: &[RefUpdate]| v.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&first), vec!["refs/heads/a", "refs/heads/c/d"]);
        assert_eq!(
            names(&rest),
            vec![
                "refs/heads/a/b",
                "refs/heads/x",
                "refs/heads/c",
                "refs/heads/ab",
                "refs/heads/y"
            ]
        );
        let (first, rest) = split_freeing_deletes(&updates[1..2]);
        assert!(first.is_empty() && rest.len() == 1);
    }

    #[test]
    fn empty_both_sides_is_nothing_to_do() {
        assert!(plan(&[], None, &[], &opts()).expect("plan").is_empty());
    }
}
