//! A mirror's steps on a downstream GitLab project, through the API of
//! its `[[gitlab]]` with the token the sync pushes with: create it when
//! the sync found it missing (`create_missing`), and point its default
//! branch at upstream's HEAD after the sync (`follow_head`).

use super::Failure;
use crate::config::Mirror;
use crate::error_kind::{classify_gitlab, ErrorKind};
use crate::forge::github_repo::default_branch_change;
use crate::forge::gitlab::{self, Api, Instance};
use crate::transport::{Token, TransportSettings};
use crate::url::RepoUrl;

/// The instance and project path of a mirror's downstream on a
/// `[[gitlab]]`, with the side's token; `None` when downstream is not one.
pub(super) struct Downstream<'a> {
    instance: &'a Instance,
    token: &'a Token,
    path: String,
    connect_timeout: std::time::Duration,
}

impl<'a> Downstream<'a> {
    pub(super) fn of(mirror: &'a Mirror, settings: &'a TransportSettings) -> Option<Self> {
        let instance = mirror.downstream_gitlab.as_ref()?;
        let RepoUrl::Http { url } = &mirror.downstream else {
            return None;
        };
        Some(Self {
            instance,
            token: settings.downstream_token.as_ref()?,
            path: instance.serves(url)?,
            connect_timeout: settings.connect_timeout,
        })
    }

    fn api(&self) -> Api<'_> {
        Api {
            api_url: &self.instance.api_url,
            token: Some(self.token),
            connect_timeout: self.connect_timeout,
        }
    }

    /// After the sync failed as not-found: creates the project when the
    /// API says it does not exist (true), or leaves it (false: the
    /// not-found was upstream's, or something else).
    pub(super) async fn create_if_missing(&self, mirror: &Mirror) -> Result<bool, Failure> {
        let api = self.api();
        if api.project(&self.path).await.map_err(failure)?.is_some() {
            return Ok(false);
        }
        let created = api
            .create(&self.path, mirror.create_visibility)
            .await
            .map_err(failure)?;
        tracing::info!(
            "created {} on {} ({}, create_missing)",
            created.path_with_namespace,
            self.instance.name(),
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
        let Some(project) = api.project(&self.path).await.map_err(failure)? else {
            return Err(Failure {
                kind: ErrorKind::NotFound,
                message: format!(
                    "follow_head: {} does not show {} to {} after the sync",
                    self.instance.name(),
                    self.path,
                    self.token.source
                ),
                retry_after: None,
            });
        };
        let current = project.default_branch.clone().unwrap_or_default();
        let Some(branch) = default_branch_change(upstream_head, &current) else {
            return Ok(None);
        };
        api.set_default_branch(project.id, &branch)
            .await
            .map_err(failure)?;
        tracing::info!(
            "{}: default branch {} -> {branch} (follow_head)",
            self.path,
            if current.is_empty() {
                "(none)"
            } else {
                &current
            }
        );
        Ok(Some(branch))
    }
}

fn failure(error: gitlab::Error) -> Failure {
    Failure::from_error(&error, classify_gitlab(&error))
}
