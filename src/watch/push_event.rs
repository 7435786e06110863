//! Forge push events, over bytes: which repository was pushed to.
//!
//! GitHub names the event in `X-GitHub-Event` and GitLab in
//! `X-Gitlab-Event`. A push event's body carries the repository's URLs in
//! several spellings (https, ssh, web), any of which a mirror's upstream
//! may use.

/// GitHub's event header.
pub const GITHUB_EVENT: &str = "x-github-event";
/// GitLab's event header.
pub const GITLAB_EVENT: &str = "x-gitlab-event";

/// What kind of event a request says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A GitHub `push` (branches and tags alike).
    GithubPush,
    /// A GitLab `Push Hook` or `Tag Push Hook`.
    GitlabPush,
    /// GitHub's `ping`, sent when a hook is created.
    Ping,
    /// Any other forge event: nothing to sync.
    Other,
}

impl Event {
    /// The event named by a request's headers; `None` when neither forge's
    /// event header is there. `header` looks a header up by its lower-case
    /// name.
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h [u8]>) -> Option<Self> {
        if let Some(name) = header(GITHUB_EVENT) {
            return Some(match name {
                b"push" => Self::GithubPush,
                b"ping" => Self::Ping,
                _ => Self::Other,
            });
        }
        header(GITLAB_EVENT).map(|name| match name {
            b"Push Hook" | b"Tag Push Hook" => Self::GitlabPush,
            _ => Self::Other,
        })
    }
}

/// A push event's body could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a {forge} push event: expected a JSON object with {expected}")]
pub struct Error {
    forge: &'static str,
    expected: &'static str,
    #[source]
    source: serde_json::Error,
}

#[derive(serde::Deserialize)]
struct GithubPush {
    repository: GithubRepository,
}

/// <https://docs.github.com/en/webhooks/webhook-events-and-payloads#push>
#[derive(serde::Deserialize)]
struct GithubRepository {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    html_url: Option<String>,
    git_url: Option<String>,
}

#[derive(serde::Deserialize)]
struct GitlabPush {
    project: GitlabProject,
}

/// <https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events>
#[derive(serde::Deserialize)]
struct GitlabProject {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
}

/// The URLs of the repository a push event (`GithubPush` or `GitlabPush`)
/// names, in the order the forge lists them; empty for other events.
pub fn repository_urls(event: Event, body: &[u8]) -> Result<Vec<String>, Error> {
    let urls = match event {
        Event::GithubPush => {
            let push: GithubPush = serde_json::from_slice(body).map_err(|source| Error {
                forge: "GitHub",
                expected: "repository.clone_url",
                source,
            })?;
            let repository = push.repository;
            vec![
                repository.clone_url,
                repository.ssh_url,
                repository.html_url,
                repository.git_url,
            ]
        }
        Event::GitlabPush => {
            let push: GitlabPush = serde_json::from_slice(body).map_err(|source| Error {
                forge: "GitLab",
                expected: "project.git_http_url",
                source,
            })?;
            let project = push.project;
            vec![project.git_http_url, project.git_ssh_url, project.web_url]
        }
        Event::Ping | Event::Other => Vec::new(),
    };
    Ok(urls
        .into_iter()
        .flatten()
        .filter(|url| !url.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &'static str, value: &'static str) -> Option<Event> {
        Event::from_headers(move |header| (header == name).then_some(value.as_bytes()))
    }

    #[test]
    fn events_are_named_by_either_forge_header() {
        assert_eq!(event(GITHUB_EVENT, "push"), Some(Event::GithubPush));
        assert_eq!(event(GITHUB_EVENT, "ping"), Some(Event::Ping));
        assert_eq!(event(GITHUB_EVENT, "issues"), Some(Event::Other));
        assert_eq!(event(GITLAB_EVENT, "Push Hook"), Some(Event::GitlabPush));
        assert_eq!(
            event(GITLAB_EVENT, "Tag Push Hook"),
            Some(Event::GitlabPush)
        );
        assert_eq!(event(GITLAB_EVENT, "Issue Hook"), Some(Event::Other));
        assert_eq!(event("x-other-event", "push"), None);
    }

    #[test]
    fn github_push_gives_every_spelling_of_the_repository() {
        let body = br#"{"ref":"refs/heads/main","repository":{
            "clone_url":"https://github.com/o/r.git","ssh_url":"git@github.com:o/r.git",
            "html_url":"https://github.com/o/r","git_url":"git://github.com/o/r.git",
            "name":"r"}}"#;
        assert_eq!(
            repository_urls(Event::GithubPush, body).expect("a push event"),
            [
                "https://github.com/o/r.git",
                "git@github.com:o/r.git",
                "https://github.com/o/r",
                "git://github.com/o/r.git"
            ]
        );
    }

    #[test]
    fn gitlab_push_gives_every_spelling_of_the_project() {
        let body = br#"{"object_kind":"push","project":{
            "git_http_url":"https://gitlab.example/g/p.git",
            "git_ssh_url":"git@gitlab.example:g/p.git","web_url":"https://gitlab.example/g/p",
            "git_url":null}}"#;
        assert_eq!(
            repository_urls(Event::GitlabPush, body).expect("a push event"),
            [
                "https://gitlab.example/g/p.git",
                "git@gitlab.example:g/p.git",
                "https://gitlab.example/g/p"
            ]
        );
    }

    #[test]
    fn a_push_without_its_repository_is_an_error_that_says_what_was_expected() {
        let error =
            repository_urls(Event::GithubPush, br#"{"ref":"x"}"#).expect_err("no repository");
        assert_eq!(
            error.to_string(),
            "not a GitHub push event: expected a JSON object with repository.clone_url"
        );
        assert!(repository_urls(Event::GitlabPush, b"not json").is_err());
    }

    #[test]
    fn other_events_name_no_repository() {
        assert!(repository_urls(Event::Ping, b"anything")
            .expect("ignored")
            .is_empty());
    }
}
