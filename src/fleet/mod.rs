//! Many mirrors in one run: bounded concurrency, per-host caps, retries.
//!
//! [`run`] syncs every mirror it is given on the current tokio runtime, at
//! most `jobs` at once and at most `per_host` connections to any one
//! server, and retries the failures that may pass ([`ErrorKind::is_transient`])
//! with exponential backoff. One mirror failing, or even panicking, never
//! stops the others; every mirror gets a [`MirrorRun`] in the end, in the
//! order it was given.

pub mod backoff;
mod forge_downstream;
mod github_downstream;
mod gitlab_downstream;
pub(crate) mod hosts;
pub mod select;

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::task::JoinSet;

use crate::config::{Mirror, SecretRef};
use crate::error_kind::{
    classify, classify_github_app, classify_target_prop, refused_token_source, Classified,
    ErrorKind,
};
use crate::forge::{target_prop, App, AppTokens};
use crate::plan::{PlanOptions, Scope};
use crate::progress::Progress;
use crate::relay::{self, Outcome, PushOptions, RefStatus, SyncOptions, SyncReport};
use crate::transport::{Token, TransportSettings};
use crate::url::{mask_credentials, RepoUrl};

pub use select::{select, Shard};

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Mirrors synced at once; at least 1.
    pub jobs: usize,
    /// Connections open to one server at once; at least 1. A mirror whose
    /// two sides are on one server holds two.
    pub per_host: usize,
    /// Plan only: change nothing.
    pub dry_run: bool,
    pub no_verify: bool,
    /// The settings of mirrors that do not set their own.
    pub transport: TransportSettings,
    /// GitHub Apps' installation tokens, shared by every mirror of the
    /// process (a `watch` keeps them across reloads).
    pub app_tokens: Arc<AppTokens>,
}

/// Why a mirror did not end in sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    pub kind: ErrorKind,
    /// One line, credentials masked.
    pub message: String,
    /// How long the server asked us to wait before the next try.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// `error` as `classified`: its cause chain on one line, credentials
    /// masked, and the wait the server asked for.
    pub(crate) fn from_error(error: &dyn std::error::Error, classified: Classified) -> Self {
        Self {
            kind: classified.kind,
            message: mask_credentials(&relay::chain(error)),
            retry_after: classified.retry_after,
        }
    }
}

/// How one mirror of the fleet ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MirrorRun {
    pub name: String,
    /// Both sides as shown everywhere: credentials masked.
    pub upstream: String,
    pub downstream: String,
    /// Whether downstream now matches upstream in scope (for a plan:
    /// whether the plan was made).
    pub ok: bool,
    /// How many times it was tried; above 1 after retries.
    pub attempts: u32,
    pub elapsed_ms: u64,
    /// Downstream was created (`create_missing`).
    pub created: bool,
    /// The branch downstream's HEAD (a GitHub repository's default
    /// branch) was moved to (`follow_head`), as a full ref name; `None`
    /// when it was not moved.
    pub default_branch_set: Option<String>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    /// The last attempt's report, when it got as far as one.
    pub report: Option<SyncReport>,
}

impl MirrorRun {
    /// Refs that moved downstream (or would, in a plan).
    pub fn refs_changed(&self) -> usize {
        self.report.as_ref().map_or(0, |report| {
            report.result.count(RefStatus::Ok) + report.result.count(RefStatus::Planned)
        })
    }

    /// Pack bytes relayed.
    pub fn bytes_relayed(&self) -> u64 {
        self.report
            .as_ref()
            .map_or(0, |report| report.result.bytes_relayed)
    }
}

/// What a fleet run tells its watcher (a progress display, a log).
pub trait Observer: Send + Sync {
    /// An attempt started; `progress` counts its bytes as it goes.
    fn started(&self, _mirror: &Mirror, _attempt: u32, _progress: &Arc<Progress>) {}
    /// An attempt failed and will be retried after `delay`.
    fn retrying(&self, _mirror: &Mirror, _attempt: u32, _delay: Duration, _failure: &Failure) {}
    /// The mirror is done, for good.
    fn finished(&self, _run: &MirrorRun) {}
}

/// An observer that watches nothing.
pub struct Silent;

impl Observer for Silent {}

/// A mirror waiting for its (next) attempt.
struct Pending {
    index: usize,
    /// Attempts made so far.
    attempts: u32,
    first_started: Option<Instant>,
    not_before: Option<Instant>,
    /// An earlier attempt created downstream: the run reports it even
    /// when a later attempt, finding it there, creates nothing.
    created: bool,
}

/// One attempt's end, as the attempt task hands it back.
struct Attempt {
    pending: Pending,
    end: End,
}

/// How an attempt ended: a failure may come with a report (refs refused).
pub(crate) struct End {
    pub(crate) report: Option<SyncReport>,
    pub(crate) created: bool,
    pub(crate) default_branch_set: Option<String>,
    pub(crate) failure: Option<Failure>,
}

impl From<Failure> for End {
    fn from(failure: Failure) -> Self {
        Self {
            report: None,
            created: false,
            default_branch_set: None,
            failure: Some(failure),
        }
    }
}

/// Syncs `mirrors`, returning one [`MirrorRun`] per mirror in their order.
pub async fn run(
    mirrors: Vec<Mirror>,
    options: RunOptions,
    observer: Arc<dyn Observer>,
) -> Vec<MirrorRun> {
    let mirrors: Arc<[Mirror]> = mirrors.into();
    let options = Arc::new(options);
    let jobs = options.jobs.max(1);
    let mut hosts = hosts::Hosts::new(options.per_host.max(1));
    let needs: Vec<hosts::Need> = mirrors
        .iter()
        .map(|m| hosts::Need::of(&m.upstream, &m.downstream))
        .collect();
    let mut queue: VecDeque<Pending> = (0..mirrors.len())
        .map(|index| Pending {
            index,
            attempts: 0,
            first_started: None,
            not_before: None,
            created: false,
        })
        .collect();
    let mut results: Vec<Option<MirrorRun>> = vec![None; mirrors.len()];
    let mut running = JoinSet::new();
    loop {
        // Start, in order, every waiting mirror that is due and fits.
        let now = Instant::now();
        let mut i = 0;
        while running.len() < jobs && i < queue.len() {
            let candidate = &queue[i];
            if candidate.not_before.is_some_and(|t| t > now) || !hosts.fits(&needs[candidate.index])
            {
                i += 1;
                continue;
            }
            let Some(mut pending) = queue.remove(i) else {
                break;
            };
            hosts.take(&needs[pending.index]);
            pending.attempts += 1;
            pending.first_started.get_or_insert(now);
            let mirrors = Arc::clone(&mirrors);
            let options = Arc::clone(&options);
            let observer = Arc::clone(&observer);
            running.spawn(async move {
                let mirror = &mirrors[pending.index];
                let progress = Arc::new(Progress::hidden());
                observer.started(mirror, pending.attempts, &progress);
                let end = attempt(mirror, &options, &progress).await;
                Attempt { pending, end }
            });
        }
        if running.is_empty() && queue.is_empty() {
            break;
        }
        let wake = queue.iter().filter_map(|p| p.not_before).min();
        let finished = tokio::select! {
            joined = running.join_next(), if !running.is_empty() => joined,
            () = sleep_until(wake), if wake.is_some() => None,
            else => None,
        };
        let Some(joined) = finished else {
            continue;
        };
        let Attempt { pending, mut end } = match joined {
            Ok(attempt) => attempt,
            // Panics are caught inside the task; only a cancelled runtime
            // gets here, and then nothing is left to report to.
            Err(error) => {
                tracing::error!("a mirror's task ended abnormally: {error}");
                continue;
            }
        };
        let mirror = &mirrors[pending.index];
        hosts.give_back(&needs[pending.index]);
        end.created |= pending.created;
        if let Some(failure) = &end.failure {
            if let Some(delay) = retry_delay(mirror, pending.attempts, failure) {
                observer.retrying(mirror, pending.attempts, delay, failure);
                queue.push_back(Pending {
                    not_before: Some(Instant::now() + delay),
                    created: end.created,
                    ..pending
                });
                continue;
            }
        }
        let elapsed = pending
            .first_started
            .map_or(Duration::ZERO, |t| t.elapsed());
        let run = finish(mirror, pending.attempts, elapsed, end);
        observer.finished(&run);
        results[pending.index] = Some(run);
    }
    results
        .into_iter()
        .zip(mirrors.iter())
        .map(|(run, mirror)| {
            run.unwrap_or_else(|| {
                finish(
                    mirror,
                    0,
                    Duration::ZERO,
                    End::from(Failure {
                        kind: ErrorKind::Other,
                        message: "the sync did not run to its end".into(),
                        retry_after: None,
                    }),
                )
            })
        })
        .collect()
}

/// How long to wait before trying `mirror` again after `failure` ended try
/// number `attempts`; `None` when the failure is permanent or the retries
/// are used up.
pub(crate) fn retry_delay(mirror: &Mirror, attempts: u32, failure: &Failure) -> Option<Duration> {
    (failure.kind.is_transient() && attempts <= mirror.retries)
        .then(|| backoff::delay(attempts, failure.retry_after))
}

async fn sleep_until(when: Option<Instant>) {
    if let Some(when) = when {
        tokio::time::sleep_until(when.into()).await;
    }
}

pub(crate) fn finish(mirror: &Mirror, attempts: u32, elapsed: Duration, end: End) -> MirrorRun {
    MirrorRun {
        name: mirror.name.clone(),
        upstream: mirror.upstream_shown(),
        downstream: mirror.downstream.to_string(),
        ok: end.failure.is_none(),
        attempts,
        elapsed_ms: elapsed.as_millis() as u64,
        created: end.created,
        default_branch_set: end.default_branch_set,
        error_kind: end.failure.as_ref().map(|f| f.kind),
        error: end.failure.map(|f| f.message),
        report: end.report,
    }
}

/// One try at one mirror: the report and whether downstream was created.
/// One try at one mirror, whatever happens: failures, and panics, come back as an [`End`].
pub(crate) async fn attempt(mirror: &Mirror, options: &RunOptions, progress: &Progress) -> End {
    let tried = AssertUnwindSafe(try_attempt(mirror, options, progress))
        .catch_unwind()
        .await;
    match tried {
        Ok(Ok(end)) => end,
        Ok(Err(failure)) => failure.into(),
        Err(_) => End::from(Failure {
            kind: ErrorKind::Other,
            message: "the sync panicked (a bug in Kalandra; please report it)".into(),
            retry_after: None,
        }),
    }
}

async fn try_attempt(
    mirror: &Mirror,
    options: &RunOptions,
    progress: &Progress,
) -> Result<End, Failure> {
    let mut settings = settings_for(mirror, &options.transport)?;
    // Taken from the cache (or fetched) right before connecting, so that a
    // sync never starts with a token about to expire.
    if let Some(app) = &mirror.downstream_app {
        settings.downstream_token = Some(
            downstream_app_token(app, mirror, options.dry_run, &options.app_tokens, &settings)
                .await?,
        );
    }
    // Read before each attempt, so that a changed property takes effect.
    let resolved;
    let mirror = match &mirror.upstream_property {
        Some(property) => {
            resolved =
                with_property_upstream(mirror, property, &settings, &options.app_tokens).await?;
            &resolved
        }
        None => mirror,
    };
    if let Some(app) = &mirror.upstream_app {
        settings.upstream_token =
            Some(app_token(app, &mirror.upstream, &options.app_tokens, &settings).await?);
    }
    let created = if mirror.create_missing && !options.dry_run {
        create_missing(&mirror.upstream, &mirror.downstream, &settings).await?
    } else {
        false
    };
    let scope = Scope::new(&mirror.include, &mirror.exclude).map_err(|e| Failure {
        kind: ErrorKind::Usage,
        message: e.to_string(),
        retry_after: None,
    })?;
    let sync_options = SyncOptions {
        plan: PlanOptions {
            scope,
            prune: mirror.prune,
            allow_mass_delete: mirror.allow_mass_delete,
            divergence: mirror.divergence,
            immutable_tags: mirror.immutable_tags,
        },
        push: PushOptions {
            atomic: mirror.atomic,
            progress: false,
            push_options: Vec::new(),
            max_pack_bytes: mirror.max_pack_bytes,
            max_refs_per_push: mirror.max_refs_per_push,
        },
        dry_run: options.dry_run,
        no_verify: options.no_verify,
        transport: settings,
        lfs: mirror.lfs,
        lfs_urls: mirror.lfs_urls.clone(),
    };
    let tokens = &*options.app_tokens;
    let mut result = sync_once(mirror, &sync_options, progress, tokens).await;
    // A forge's downstream is created when the sync finds it missing: the
    // API then says whether it was downstream (or upstream) that is not
    // there. Asking before every sync would spend a request per mirror
    // and run for nothing.
    let forge = forge_downstream::Downstream::of(mirror, &sync_options.transport, tokens);
    let mut created = created;
    if let (Err(failure), Some(forge)) = (&result, &forge) {
        if failure.kind == ErrorKind::NotFound
            && mirror.create_missing
            && !options.dry_run
            && forge.create_if_missing(mirror).await?
        {
            created = true;
            result = sync_once(mirror, &sync_options, progress, tokens).await;
        }
    }
    let report = match result {
        Ok(report) => report,
        // A repository created in this attempt stays created; say so.
        Err(failure) => {
            return Ok(End {
                report: None,
                created,
                default_branch_set: None,
                failure: Some(failure),
            })
        }
    };
    let mut failure = report_failure(&report);
    let mut default_branch_set = None;
    let head = report.upstream_head.as_deref();
    // Only after a sync that landed everything, and only to a branch in
    // scope: then downstream has it.
    let follow = mirror.follow_head
        && !report.dry_run
        && failure.is_none()
        && head.is_some_and(|h| sync_options.plan.scope.contains(h));
    if follow {
        let moved = match (&forge, mirror.downstream.local_path()) {
            (Some(forge), _) => forge
                .follow_head(head)
                .await
                .map(|b| b.map(|b| format!("refs/heads/{b}"))),
            (None, Some(path)) => follow_local_head(path, head).await,
            (None, None) => Ok(None),
        };
        match moved {
            Ok(moved) => default_branch_set = moved,
            Err(error) => failure = Some(error),
        }
    }
    Ok(End {
        report: Some(report),
        created,
        default_branch_set,
        failure,
    })
}

/// `follow_head` for a downstream on this machine: what `--set-head` does.
async fn follow_local_head(path: &Path, head: Option<&str>) -> Result<Option<String>, Failure> {
    let report = crate::head::check_local(path, head, true)
        .await
        .map_err(|error| Failure {
            kind: ErrorKind::Other,
            message: format!("follow_head: {}", relay::chain(&error)),
            retry_after: None,
        })?;
    Ok(if report.set { report.downstream } else { None })
}

/// One run of the relay, cut off past `max_duration`.
async fn sync_once(
    mirror: &Mirror,
    sync_options: &SyncOptions,
    progress: &Progress,
    tokens: &AppTokens,
) -> Result<SyncReport, Failure> {
    let sync = relay::sync(&mirror.upstream, &mirror.downstream, sync_options, progress);
    let result = match sync_options.transport.max_duration {
        // Each connection gives up at the deadline itself; this catches a
        // sync stuck outside them (a credential helper, say).
        Some(max) => match tokio::time::timeout(max.saturating_add(MAX_DURATION_GRACE), sync).await
        {
            Ok(result) => result,
            Err(_) => {
                return Err(Failure {
                    kind: ErrorKind::Timeout,
                    message: format!(
                        "the sync did not finish within max_duration ({} s) and was cut off; \
                         whether downstream applied the update is unknown",
                        max.as_secs()
                    ),
                    retry_after: None,
                })
            }
        },
        None => sync.await,
    };
    let error = match result {
        Ok(report) => return Ok(report),
        Err(error) => error,
    };
    forget_refused_token(&error, &sync_options.transport, tokens).await;
    let mut failure = Failure::from_error(&error, classify(&error));
    if let Some(hint) = error.hint() {
        failure.message.push_str(&format!(" (hint: {hint})"));
    }
    Err(failure)
}

/// A GitHub App's installation token that git's server refused (HTTP 401)
/// leaves the cache, so that the next attempt gets a new one instead of
/// using a revoked token until it expires. Other tokens are not cached,
/// and are left alone.
async fn forget_refused_token(
    error: &relay::Error,
    settings: &TransportSettings,
    tokens: &AppTokens,
) {
    let Some(source) = refused_token_source(error) else {
        return;
    };
    for token in [&settings.upstream_token, &settings.downstream_token]
        .into_iter()
        .flatten()
    {
        if token.source == source {
            tokens.forget_refused(&token.secret).await;
        }
    }
}

/// How long past `max_duration` a sync stuck outside its connections may
/// take before it is cut off.
const MAX_DURATION_GRACE: Duration = Duration::from_secs(10);

/// A report that came back but is not a success: refs refused (kind
/// `rejected`), or a lost report (`connection`: trying again reads
/// downstream afresh and settles it). None when every ref landed.
pub fn report_failure(report: &SyncReport) -> Option<Failure> {
    match report.result.outcome() {
        Outcome::Complete => None,
        Outcome::Unknown => Some(Failure {
            kind: ErrorKind::Connection,
            message: format!(
                "downstream's report was lost, so whether {} ref(s) moved is unknown",
                report.result.count(RefStatus::Unknown)
            ),
            retry_after: None,
        }),
        Outcome::Partial | Outcome::NothingLanded => Some(Failure {
            kind: ErrorKind::Rejected,
            message: rejected_message(report),
            retry_after: None,
        }),
    }
}

fn rejected_message(report: &SyncReport) -> String {
    let rejected: Vec<String> = report
        .result
        .refs
        .iter()
        .filter(|r| r.status == RefStatus::Rejected)
        .map(|r| match &r.reason {
            Some(reason) => format!("{} ({reason})", r.name),
            None => r.name.clone(),
        })
        .collect();
    let shown: Vec<&str> = rejected.iter().take(5).map(String::as_str).collect();
    let more = rejected.len().saturating_sub(shown.len());
    let mut message = format!(
        "downstream refused {} ref{}: {}",
        rejected.len(),
        if rejected.len() == 1 { "" } else { "s" },
        crate::terminal::escape(&shown.join(", "))
    );
    if more > 0 {
        message.push_str(&format!(" and {more} more"));
    }
    let hint = report
        .result
        .refs
        .iter()
        .filter_map(|r| r.reason.as_deref())
        .find_map(crate::forge::github_app::workflow_refusal_hint);
    if let Some(hint) = hint {
        message.push_str(&format!(" (hint: {hint})"));
    }
    message
}

/// The fleet's settings with the mirror's own on top, tokens read now.
fn settings_for(mirror: &Mirror, base: &TransportSettings) -> Result<TransportSettings, Failure> {
    let mut settings = base.clone();
    if let Some(t) = mirror.connect_timeout {
        settings.connect_timeout = t;
    }
    if let Some(t) = mirror.idle_timeout {
        settings.idle_timeout = t;
    }
    if let Some(limit) = mirror.low_speed_limit {
        settings.low_speed_limit = limit;
    }
    if let Some(t) = mirror.low_speed_time {
        settings.low_speed_time = t;
    }
    if mirror.max_duration.is_some() {
        settings.max_duration = mirror.max_duration;
    }
    if let Some(secret) = &mirror.upstream_token {
        settings.upstream_token = Some(read_secret(secret)?);
    }
    if let Some(secret) = &mirror.downstream_token {
        settings.downstream_token = Some(read_secret(secret)?);
    }
    Ok(settings)
}

/// The installation token of `app` for the repository at `url`, as the
/// side's http password (user `x-access-token`).
async fn app_token(
    app: &App,
    url: &RepoUrl,
    tokens: &AppTokens,
    settings: &TransportSettings,
) -> Result<Token, Failure> {
    let served = match url {
        RepoUrl::Http { url } => app.serves(url),
        _ => None,
    };
    // The config gives a side only an app that serves it; a library
    // caller may not have.
    let Some((owner, repo)) = served else {
        return Err(Failure {
            kind: ErrorKind::Usage,
            message: format!("GitHub App {} does not serve {url}", app.issuer),
            retry_after: None,
        });
    };
    tokens
        .token(app, &owner, &repo, settings.connect_timeout)
        .await
        .map_err(|error| Failure::from_error(&error, classify_github_app(&error)))
}

/// Downstream's installation token. With `create_missing`, a repository
/// GitHub does not know (yet) has no installation of its own: the
/// organisation's is asked for instead, and the sync then finds the
/// repository missing and creates it.
async fn downstream_app_token(
    app: &App,
    mirror: &Mirror,
    dry_run: bool,
    tokens: &AppTokens,
    settings: &TransportSettings,
) -> Result<Token, Failure> {
    let token = app_token(app, &mirror.downstream, tokens, settings).await;
    let repository_unknown = matches!(&token, Err(f) if f.kind == ErrorKind::Auth);
    if !(mirror.create_missing && !dry_run && repository_unknown) {
        return token;
    }
    let RepoUrl::Http { url } = &mirror.downstream else {
        return token;
    };
    let Some((owner, repo)) = app.serves(url) else {
        return token;
    };
    match tokens
        .org_token(app, &owner, &repo, settings.connect_timeout)
        .await
    {
        Ok(org_token) => Ok(org_token),
        // The repository lookup's error says more (uninstalled, refused key).
        Err(_) => token,
    }
}

/// `mirror` with its upstream read from the custom property `property` of
/// its downstream GitHub repository, with downstream's installation token
/// (in `settings`). The upstream gets the mirror's own upstream token, if
/// it names one; a GitHub App is not looked up for it.
async fn with_property_upstream(
    mirror: &Mirror,
    property: &str,
    settings: &TransportSettings,
    tokens: &AppTokens,
) -> Result<Mirror, Failure> {
    let usage = |message: String| Failure {
        kind: ErrorKind::Usage,
        message,
        retry_after: None,
    };
    let served = match (&mirror.downstream_app, &mirror.downstream) {
        (Some(app), RepoUrl::Http { url }) => app.serves(url).map(|repo| (app, repo)),
        _ => None,
    };
    let (Some((app, (owner, repo))), Some(token)) = (served, &settings.downstream_token) else {
        return Err(usage(format!(
            "upstream target-prop:{property} needs a GitHub App that serves downstream {}",
            mask_credentials(&mirror.downstream.to_string())
        )));
    };
    let read = target_prop::read(
        &app.api_url,
        &owner,
        &repo,
        property,
        &token.secret,
        settings.connect_timeout,
    )
    .await;
    let upstream = match read {
        Ok(upstream) => upstream,
        Err(error) => {
            if matches!(error, target_prop::Error::Status { status: 401, .. }) {
                tokens.forget_refused(&token.secret).await;
            }
            return Err(Failure::from_error(&error, classify_target_prop(&error)));
        }
    };
    tracing::info!(
        "{}: upstream {} (from the custom property {property} of {owner}/{repo})",
        mirror.name,
        mask_credentials(&upstream.to_string())
    );
    let mut resolved = mirror.clone();
    resolved.upstream = upstream;
    resolved.upstream_property = None;
    resolved.upstream_app = None;
    Ok(resolved)
}

fn read_secret(secret: &SecretRef) -> Result<Token, Failure> {
    crate::config::resolve_secret(secret).map_err(|error| Failure {
        kind: ErrorKind::Usage,
        message: relay::chain(&error),
        retry_after: None,
    })
}

/// `create_missing`: a local downstream that does not exist yet is
/// created bare, in upstream's object format (asked of upstream first).
async fn create_missing(
    upstream: &RepoUrl,
    downstream: &RepoUrl,
    settings: &TransportSettings,
) -> Result<bool, Failure> {
    let Some(path) = downstream.local_path() else {
        // Remote repositories are created by their forge, not by git.
        return Ok(false);
    };
    if path.exists() {
        return Ok(false);
    }
    let format = match relay::connect_upstream(upstream, settings).await {
        Ok(upload_pack) => {
            let format = upload_pack.object_format();
            upload_pack.close().await;
            format
        }
        Err(error) => return Err(Failure::from_error(&error, classify(&error))),
    };
    init_bare(path, &format.to_string()).await?;
    tracing::info!("created {} ({format})", path.display());
    Ok(true)
}

async fn init_bare(path: &Path, object_format: &str) -> Result<(), Failure> {
    let failed = |detail: String| Failure {
        kind: ErrorKind::Other,
        message: format!(
            "cannot create downstream {} (create_missing): {detail}",
            path.display()
        ),
        retry_after: None,
    };
    let output = tokio::process::Command::new("git")
        .arg("init")
        .arg("--bare")
        .arg("--quiet")
        .arg(format!("--object-format={object_format}"))
        .arg("--")
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| failed(format!("cannot run git: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}
