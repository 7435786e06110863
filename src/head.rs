//! Downstream's HEAD: the branch a clone of the mirror checks out.
//!
//! receive-pack does not advertise HEAD and the push protocol cannot move
//! it, so a mirror made by pushing keeps whatever HEAD downstream was
//! created with (`git init --bare` points it at `init.defaultBranch`,
//! often `master`). When upstream's default branch is `main`, clones of
//! the mirror then check out nothing ("remote HEAD refers to nonexistent
//! ref"). Kalandra says so, and for a downstream on this machine
//! `--set-head` fixes it (and a fleet's `follow_head`). A GitHub
//! downstream's default branch is set through its API
//! (`forge::github_repo`).

use std::path::Path;

use tokio::process::Command;

/// Reading or moving a local downstream's HEAD failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot run git in {path}")]
    Spawn {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("git symbolic-ref HEAD {target} failed in {path}: {stderr}")]
    Set {
        path: String,
        target: String,
        stderr: String,
    },
}

/// What was found, as the JSON report's `head` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeadReport {
    /// The branch upstream's HEAD points to, if upstream said.
    pub upstream: Option<String>,
    /// The ref downstream's HEAD points to (None when HEAD is detached or
    /// unreadable).
    pub downstream: Option<String>,
    /// Downstream's HEAD names a ref that downstream does not have.
    pub dangling: bool,
    /// `--set-head` moved downstream's HEAD to upstream's branch.
    pub set: bool,
}

impl HeadReport {
    /// Whether the two sides disagree, or downstream's HEAD leads nowhere.
    pub fn needs_attention(&self) -> bool {
        !self.set && (self.dangling || self.differs())
    }

    fn differs(&self) -> bool {
        matches!((&self.upstream, &self.downstream), (Some(up), Some(down)) if up != down)
    }

    /// The warning for people, with the fix, or None when all is well.
    pub fn advice(&self, downstream_path: &Path) -> Option<String> {
        if !self.needs_attention() {
            return None;
        }
        let down = self.downstream.as_deref().unwrap_or("(detached)");
        let fix = |target: &str| {
            format!(
                "pass --set-head, or run `git -C {} symbolic-ref HEAD {target}`",
                downstream_path.display()
            )
        };
        Some(match (&self.upstream, self.dangling) {
            (Some(up), _) if self.differs() => format!(
                "downstream's HEAD points to {down}{}, upstream's to {up}; {}",
                if self.dangling {
                    ", which downstream does not have"
                } else {
                    ""
                },
                fix(up)
            ),
            (Some(up), true) => format!(
                "downstream's HEAD points to {down}, which downstream does not have; {}",
                fix(up)
            ),
            (None, true) => format!(
                "downstream's HEAD points to {down}, which downstream does not have (upstream \
                 does not say which branch is its default); point it at a branch with \
                 `git -C {} symbolic-ref HEAD refs/heads/BRANCH`",
                downstream_path.display()
            ),
            _ => return None,
        })
    }
}

/// Looks at the HEAD of the repository at `path` (a downstream on this
/// machine) after a sync, and with `set` points it at `upstream_head` when
/// the two differ or HEAD dangles and upstream has that branch downstream.
pub async fn check_local(
    path: &Path,
    upstream_head: Option<&str>,
    set: bool,
) -> Result<HeadReport, Error> {
    let mut report = HeadReport {
        upstream: upstream_head.map(str::to_owned),
        downstream: symbolic_ref(path).await?,
        dangling: false,
        set: false,
    };
    report.dangling = match &report.downstream {
        Some(target) => !ref_exists(path, target).await?,
        None => false,
    };
    if set && (report.dangling || report.differs()) {
        if let Some(up) = upstream_head {
            if ref_exists(path, up).await? {
                set_head(path, up).await?;
                report.downstream = Some(up.to_owned());
                report.dangling = false;
                report.set = true;
            }
        }
    }
    Ok(report)
}

fn git(path: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(path)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(path: &Path, args: &[&str]) -> Result<std::process::Output, Error> {
    git(path)
        .args(args)
        .output()
        .await
        .map_err(|source| Error::Spawn {
            path: path.display().to_string(),
            source,
        })
}

async fn symbolic_ref(path: &Path) -> Result<Option<String>, Error> {
    let output = run(path, &["symbolic-ref", "-q", "HEAD"]).await?;
    let target = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok((output.status.success() && !target.is_empty()).then_some(target))
}

async fn ref_exists(path: &Path, name: &str) -> Result<bool, Error> {
    let output = run(path, &["show-ref", "--verify", "-q", "--", name]).await?;
    Ok(output.status.success())
}

async fn set_head(path: &Path, target: &str) -> Result<(), Error> {
    let output = run(path, &["symbolic-ref", "HEAD", target]).await?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Set {
        path: path.display().to_string(),
        target: target.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(up: Option<&str>, down: Option<&str>, dangling: bool) -> HeadReport {
        HeadReport {
            upstream: up.map(Into::into),
            downstream: down.map(Into::into),
            dangling,
            set: false,
        }
    }

    #[test]
    fn agreeing_heads_need_nothing() {
        let r = report(Some("refs/heads/main"), Some("refs/heads/main"), false);
        assert!(!r.needs_attention());
        assert_eq!(r.advice(Path::new("/m.git")), None);
        assert_eq!(
            report(None, Some("refs/heads/x"), false).advice(Path::new("/m")),
            None
        );
    }

    #[test]
    fn a_different_or_dangling_head_is_explained_with_the_fix() {
        let differs = report(Some("refs/heads/main"), Some("refs/heads/master"), true);
        assert_eq!(
            differs.advice(Path::new("/m.git")).expect("advice"),
            "downstream's HEAD points to refs/heads/master, which downstream does not have, \
             upstream's to refs/heads/main; pass --set-head, or run \
             `git -C /m.git symbolic-ref HEAD refs/heads/main`"
        );
        let dangling = report(None, Some("refs/heads/master"), true);
        assert!(dangling
            .advice(Path::new("/m.git"))
            .expect("advice")
            .contains("upstream does not say"));
        let mut fixed = differs.clone();
        fixed.set = true;
        assert_eq!(fixed.advice(Path::new("/m.git")), None);
    }
}
