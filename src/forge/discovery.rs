//! Discovery: the mirrors a config file's forge tables list, added to its
//! own. GitHub's (`[[github_org]]`, `[[github_source]]`) are listed by
//! [`super::github_org`], GitLab's (`[[gitlab_source]]`) here. Run after
//! the config is loaded (`sync --config`, `plan --config`, `config list`)
//! and by `watch` at each reload and every
//! [`super::github_org::REDISCOVER_EVERY`].

use std::collections::HashSet;
use std::time::Duration;

use super::github_app::AppTokens;
use super::{github_org, gitlab};
use crate::config::{resolve_secret, Fleet, GitlabSource, SecretError};

/// Listing a forge failed. No variant holds a token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Github(#[from] github_org::Error),
    #[error("discovery of GitLab group {group}: cannot read the token of [[gitlab]] {url}")]
    GitlabToken {
        group: String,
        url: String,
        #[source]
        source: SecretError,
    },
    #[error("discovery of GitLab group {group}")]
    Gitlab {
        group: String,
        #[source]
        source: gitlab::Error,
    },
}

/// Adds the mirrors of every forge table of `fleet` to its mirrors. A
/// discovered name already taken (by a `[[mirror]]`, a template or an
/// earlier table) is skipped with a warning: the first one wins. So is a
/// repository whose downstream cannot be made.
pub async fn discover(
    fleet: &mut Fleet,
    tokens: &AppTokens,
    connect_timeout: Duration,
) -> Result<(), Error> {
    github_org::discover(fleet, tokens, connect_timeout).await?;
    let mut taken: HashSet<String> = fleet.mirrors.iter().map(|m| m.name.clone()).collect();
    for source in fleet.gitlab_sources.clone() {
        let projects = list(&source, connect_timeout).await?;
        tracing::info!(
            "[[gitlab_source]] {}: {} projects kept by the filters",
            source.group,
            projects.len()
        );
        for project in projects {
            match source.mirror_for(&project) {
                Ok(mirror) if taken.insert(mirror.name.clone()) => fleet.mirrors.push(mirror),
                Ok(mirror) => tracing::warn!(
                    "[[gitlab_source]] {}: mirror name {} is taken; {} is left out (use {{path}} or {{path_dashed}} in `name` for subgroups)",
                    source.group,
                    mirror.name,
                    project.path_with_namespace
                ),
                Err(reason) => tracing::warn!(
                    "[[gitlab_source]] {}: {} left out: {reason}",
                    source.group,
                    project.path_with_namespace
                ),
            }
        }
    }
    Ok(())
}

/// The projects of a `[[gitlab_source]]`'s group that its filters keep.
async fn list(
    source: &GitlabSource,
    connect_timeout: Duration,
) -> Result<Vec<gitlab::Project>, Error> {
    let token = match source.instance.as_ref().and_then(|i| i.token.as_ref()) {
        Some(secret) => Some(resolve_secret(secret).map_err(|e| Error::GitlabToken {
            group: source.group.clone(),
            url: source.url.to_string(),
            source: e,
        })?),
        None => None,
    };
    let api = gitlab::Api {
        api_url: &source.api_url,
        token: token.as_ref(),
        connect_timeout,
    };
    let mut projects = api
        .group_projects(&source.group, source.subgroups, source.filters.archived)
        .await
        .map_err(|e| Error::Gitlab {
            group: source.group.clone(),
            source: e,
        })?;
    projects.retain(|p| {
        source
            .path_below(p)
            .is_some_and(|path| source.filters.keep(p, &path))
    });
    Ok(projects)
}
