//! Questions about the local repository that `git push` runs in.
//!
//! The helper runs with git's environment: `GIT_DIR` (possibly relative,
//! and unset outside a repository) and the same working directory, so a
//! plain `git` child finds the same repository.

use tokio::process::Command;

use crate::oid::ObjectId;

/// The repository git is pushing from.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalRepo;

impl LocalRepo {
    async fn git(&self, args: &[&str]) -> Option<(i32, String)> {
        let output = Command::new("git")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
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

    async fn is_shallow(&self) -> bool {
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
