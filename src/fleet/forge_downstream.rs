//! A mirror's downstream on a forge whose API Kalandra uses: a GitHub
//! repository its app serves, or a project of a `[[gitlab]]`.

use super::{github_downstream, gitlab_downstream, Failure};
use crate::config::Mirror;
use crate::forge::AppTokens;
use crate::transport::TransportSettings;

pub(super) enum Downstream<'a> {
    Github(github_downstream::Downstream<'a>),
    Gitlab(gitlab_downstream::Downstream<'a>),
}

impl<'a> Downstream<'a> {
    pub(super) fn of(
        mirror: &'a Mirror,
        settings: &'a TransportSettings,
        tokens: &'a AppTokens,
    ) -> Option<Self> {
        github_downstream::Downstream::of(mirror, settings, tokens)
            .map(Self::Github)
            .or_else(|| gitlab_downstream::Downstream::of(mirror, settings).map(Self::Gitlab))
    }

    /// After the sync failed as not-found: creates the repository when the
    /// forge says it does not exist (true), or leaves it (false).
    pub(super) async fn create_if_missing(&self, mirror: &Mirror) -> Result<bool, Failure> {
        match self {
            Self::Github(github) => github.create_if_missing(mirror).await,
            Self::Gitlab(gitlab) => gitlab.create_if_missing(mirror).await,
        }
    }

    /// Points the default branch at `upstream_head`; the branch set, if
    /// any.
    pub(super) async fn follow_head(
        &self,
        upstream_head: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        match self {
            Self::Github(github) => github.follow_head(upstream_head).await,
            Self::Gitlab(gitlab) => gitlab.follow_head(upstream_head).await,
        }
    }
}
