//! A mirror's steps on a downstream GitHub repository, through the API
//! with the installation token the sync pushes with: create it when the
//! sync found it missing (`create_missing`), and point its default branch
//! at upstream's HEAD after the sync (`follow_head`).

use super::Failure;
use crate::config::Mirror;
use crate::error_kind::{classify_github_repo, ErrorKind};
use crate::forge::github_repo::{self, default_branch_change, RepoApi};
use crate::forge::{App, AppTokens};
use crate::transport::{Token, TransportSettings};
use crate::url::RepoUrl;

/// The app, owner and repository of a mirror's downstream on a GitHub
/// App's host, with the side's token; `None` when downstream is not one.
pub(super) struct Downstream<'a> {
    app: &'a App,
    token: &'a Token,
    owner: String,
    repo: String,
    connect_timeout: std::time::Duration,
    tokens: &'a AppTokens,
}

impl<'a> Downstream<'a> {
    pub(super) fn of(
        mirror: &'a Mirror,
        settings: &'a TransportSettings,
        tokens: &'a AppTokens,
    ) -> Option<Self> {
        let app = mirror.downstream_app.as_ref()?;
        let RepoUrl::Http { url } = &mirror.downstream else {
            return None;
        };
        let (owner, repo) = app.serves(url)?;
        Some(Self {
            app,
            token: settings.downstream_token.as_ref()?,
            owner,
            repo,
            connect_timeout: settings.connect_timeout,
            tokens,
        })
    }

    fn api(&self) -> RepoApi<'_> {
        RepoApi {
            app: self.app,
            token: self.token,
            owner: &self.owner,
            repo: &self.repo,
            connect_timeout: self.connect_timeout,
        }
    }

    /// After the sync failed as not-found: creates the repository when
    /// the API says it does not exist (true), or leaves it (false: the
    /// not-found was upstream's, or something else).
    pub(super) async fn create_if_missing(&self, mirror: &Mirror) -> Result<bool, Failure> {
        let api = self.api();
        if self.checked(api.get().await).await?.is_some() {
            return Ok(false);
        }
        let created = self
            .checked(api.create(mirror.create_visibility).await)
            .await?;
        tracing::info!(
            "created {}/{} on GitHub ({}, create_missing)",
            self.owner,
            self.repo,
            created
                .visibility
                .as_deref()
                .unwrap_or(mirror.create_visibility.as_str())
        );
        Ok(true)
    }

    /// Points the default branch at `upstream_head` when it is a branch
    /// and differs; the branch set, if any.
    pub(super) async fn follow_head(
        &self,
        upstream_head: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let api = self.api();
        let Some(current) = self.checked(api.get().await).await? else {
            return Err(Failure {
                kind: ErrorKind::NotFound,
                message: format!(
                    "follow_head: GitHub does not show {}/{} to the app after the sync",
                    self.owner, self.repo
                ),
                retry_after: None,
            });
        };
        let Some(branch) = default_branch_change(upstream_head, &current.default_branch) else {
            return Ok(None);
        };
        self.checked(api.set_default_branch(&branch).await).await?;
        tracing::info!(
            "{}/{}: default branch {} -> {branch} (follow_head)",
            self.owner,
            self.repo,
            current.default_branch
        );
        Ok(Some(branch))
    }
}

impl Downstream<'_> {
    /// An API call's result, its error as a failure. A 401 refuses the
    /// installation token: it leaves the cache, so that the next attempt
    /// gets a new one.
    async fn checked<T>(&self, result: Result<T, github_repo::Error>) -> Result<T, Failure> {
        match result {
            Ok(value) => Ok(value),
            Err(error) => {
                if matches!(error, github_repo::Error::Status { status: 401, .. }) {
                    self.tokens.forget_refused(&self.token.secret).await;
                }
                Err(failure(error))
            }
        }
    }
}

fn failure(error: github_repo::Error) -> Failure {
    Failure::from_error(&error, classify_github_repo(&error))
}
