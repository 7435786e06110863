//! Questions about the local repository that `git push` runs in.
//!
//! The helper runs with git's environment: `GIT_DIR` (possibly relative,
//! and unset outside a repository) and the same working directory, so a
//! plain `git` child finds the same repository.
//!
//! Every question is asked with `GIT_NO_LAZY_FETCH=1`: in a partial clone a
//! missing object is an answer ("not here"), never a fetch from the
//! promisor remote behind the user's back.

use std::collections::BTreeSet;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::oid::ObjectId;

/// The repository git is pushing from.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRepo;

impl LocalRepo {
    async fn git(&self, args: &[&str]) -> Option<(i32, String)> {
        self.git_with_input(args, None).await
    }

    async fn git_with_input(&self, args: &[&str], input: Option<String>) -> Option<(i32, String)> {
        let mut child = Command::new("git")
            .args(args)
            .env("GIT_NO_LAZY_FETCH", "1")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A write error means git exited early; its status says so.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        let output = child.wait_with_output().await.ok()?;
        let code = output.status.code()?;
        Some((
            code,
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        ))
    }

    /// The object `src` names (`main`, `HEAD~1`, a tag, an oid), as the user
    /// typed it in the push refspec. A full object id is taken as it is even
    /// outside a repository.
    pub async fn resolve(&self, src: &str) -> Option<ObjectId> {
        if let Some((0, out)) = self
            .git(&["rev-parse", "--verify", "--quiet", "--end-of-options", src])
            .await
        {
            if let Ok(oid) = ObjectId::from_hex(out.as_bytes()) {
                return Some(oid);
            }
        }
        ObjectId::from_hex(src.as_bytes()).ok()
    }

    /// `commit`, `tag`, `tree` or `blob`, if the object is here.
    pub async fn object_type(&self, oid: &ObjectId) -> Option<String> {
        match self.git(&["cat-file", "-t", oid.as_str()]).await {
            Some((0, kind)) => Some(kind),
            _ => None,
        }
    }

    /// Whether the history of `new` as this repository has it (up to any
    /// shallow cut) contains `old`; `None` when git cannot walk it.
    pub async fn history_here_contains(&self, new: &ObjectId, old: &ObjectId) -> Option<bool> {
        match self
            .git(&["merge-base", "--is-ancestor", old.as_str(), new.as_str()])
            .await
        {
            Some((0, _)) => Some(true),
            Some((1, _)) => Some(false),
            _ => None,
        }
    }

    /// Whether `old` is an ancestor of `new`; `None` when this repository
    /// cannot tell (an object is missing, or history is cut by a shallow
    /// clone).
    pub async fn is_ancestor(&self, old: &ObjectId, new: &ObjectId) -> Option<bool> {
        match self
            .git(&["merge-base", "--is-ancestor", old.as_str(), new.as_str()])
            .await
        {
            Some((0, _)) => Some(true),
            Some((1, _)) if !self.is_shallow().await => Some(false),
            _ => None,
        }
    }

    /// Whether the object peels to a commit here (a commit, or a tag of one).
    pub async fn is_commitish(&self, oid: &ObjectId) -> bool {
        let peeled = format!("{oid}^{{commit}}");
        matches!(self.git(&["cat-file", "-e", &peeled]).await, Some((0, _)))
    }

    /// Which of `oids` are here (`git cat-file --batch-check`, one process).
    pub async fn present(&self, oids: &[ObjectId]) -> BTreeSet<ObjectId> {
        if oids.is_empty() {
            return BTreeSet::new();
        }
        let input: String = oids.iter().map(|o| format!("{o}\n")).collect();
        let Some((0, out)) = self
            .git_with_input(&["cat-file", "--batch-check=%(objectname)"], Some(input))
            .await
        else {
            return BTreeSet::new();
        };
        // A missing object prints `<oid> missing`, a present one its name alone.
        out.lines()
            .filter_map(|l| ObjectId::from_hex(l.trim().as_bytes()).ok())
            .collect()
    }

    /// The values of the local refs whose history contains `commit`.
    pub async fn refs_containing(&self, commit: &ObjectId) -> BTreeSet<ObjectId> {
        match self
            .git(&[
                "for-each-ref",
                "--format=%(objectname)",
                "--contains",
                commit.as_str(),
            ])
            .await
        {
            Some((0, out)) => out
                .lines()
                .filter_map(|l| ObjectId::from_hex(l.as_bytes()).ok())
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// The commits in `commit`'s history here whose parents a shallow clone
    /// cut off (listed in `$GIT_DIR/shallow`); empty when that history is
    /// whole. `None` when this repository cannot say.
    pub async fn shallow_cuts_of(&self, commit: &ObjectId) -> Option<Vec<ObjectId>> {
        let (0, path) = self
            .git(&[
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "shallow",
            ])
            .await?
        else {
            return None;
        };
        let shallow: BTreeSet<ObjectId> = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text
                .lines()
                .filter_map(|l| ObjectId::from_hex(l.trim().as_bytes()).ok())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
            Err(_) => return None,
        };
        let (0, history) = self.git(&["rev-list", commit.as_str()]).await? else {
            return None;
        };
        Some(
            history
                .lines()
                .filter_map(|l| ObjectId::from_hex(l.as_bytes()).ok())
                .filter(|c| shallow.contains(c))
                .collect(),
        )
    }

    /// Whether history here is cut by a shallow clone.
    pub async fn is_shallow(&self) -> bool {
        matches!(
            self.git(&["rev-parse", "--is-shallow-repository"]).await,
            Some((0, out)) if out == "true"
        )
    }

    /// The object directory (honouring `GIT_OBJECT_DIRECTORY`), absolute.
    pub async fn object_directory(&self) -> Option<std::path::PathBuf> {
        match self
            .git(&[
                "rev-parse",
                "--path-format=absolute",
                "--git-path",
                "objects",
            ])
            .await
        {
            Some((0, path)) if !path.is_empty() => Some(path.into()),
            _ => None,
        }
    }

    /// The tips of every local ref, as haves for a fetch.
    pub async fn ref_tips(&self) -> Vec<ObjectId> {
        match self.git(&["for-each-ref", "--format=%(objectname)"]).await {
            Some((0, out)) => {
                let mut tips: Vec<ObjectId> = out
                    .lines()
                    .filter_map(|l| ObjectId::from_hex(l.as_bytes()).ok())
                    .collect();
                tips.sort();
                tips.dedup();
                tips
            }
            _ => Vec::new(),
        }
    }
}
