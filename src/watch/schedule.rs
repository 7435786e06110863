//! The watch service's scheduler: every mirror syncs on its interval, with
//! jitter, or when a webhook asks; within the fleet's `--jobs` and
//! `--per-host` limits; never twice at once. Requests that arrive while a
//! mirror syncs are coalesced into one follow-up sync. Transient failures
//! are retried as in a fleet run. A reload swaps the mirrors without
//! disturbing the syncs in flight; a shutdown stops scheduling and gives the
//! syncs in flight a grace period before they are dropped (a dropped relay
//! never moves a ref without its whole pack: downstream's receive-pack
//! applies nothing from a pack that did not arrive complete).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Control, Triggered, WebhookSecret};
use crate::config::{resolve_secret, Fleet, Mirror};
use crate::fleet::hosts::{Hosts, Need};
use crate::fleet::{self, Failure, MirrorRun, Observer, RunOptions};
use crate::progress::Progress;
use crate::url::RepoUrl;

/// The service's mirrors and what each is doing.
pub struct Scheduler {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
    ready: AtomicBool,
    options: RunOptions,
    observer: Arc<dyn Observer>,
}

struct State {
    entries: Vec<Entry>,
    hosts: Hosts,
    running: usize,
}

/// One mirror's schedule and last result.
struct Entry {
    mirror: Arc<Mirror>,
    running: bool,
    /// A webhook asked for a sync that has not started yet.
    requested: bool,
    /// The next periodic sync.
    due: Instant,
    /// A transient failure's retry: when.
    retry_at: Option<Instant>,
    /// Tries of the current sync so far.
    attempts: u32,
    first_started: Option<Instant>,
    /// An earlier attempt of this round created downstream (a retry that
    /// finds it there creates nothing, and the round reports it).
    created: bool,
    last: Option<MirrorRun>,
    /// Gone from the config; kept only until its sync in flight ends.
    removed: bool,
}

impl Entry {
    /// A mirror due now: a service that starts (or learns of a mirror)
    /// catches up first, in file order, as fast as `--jobs` and
    /// `--per-host` let it; the jitter of later intervals spreads them out.
    fn new(mirror: Mirror, now: Instant) -> Self {
        Self {
            mirror: Arc::new(mirror),
            running: false,
            requested: false,
            due: now,
            retry_at: None,
            attempts: 0,
            first_started: None,
            created: false,
            last: None,
            removed: false,
        }
    }

    /// When this mirror wants to start, if it is not running; `now` when a
    /// webhook asked.
    fn wants_at(&self, now: Instant) -> Option<Instant> {
        if self.running || self.removed {
            return None;
        }
        if self.requested {
            return Some(now);
        }
        Some(self.retry_at.unwrap_or(self.due))
    }
}

/// The next periodic sync after one that ended now: the interval, give or
/// take a tenth, so that mirrors that started together drift apart.
fn next_due(interval: Duration) -> Instant {
    Instant::now() + interval.mul_f64(0.9 + 0.2 * crate::jitter::random_unit())
}

/// What an attempt task hands back.
struct Done {
    name: String,
    need: Need,
    end: fleet::End,
}

impl Scheduler {
    /// A scheduler for `fleet`'s mirrors; nothing runs before [`Scheduler::run`].
    pub fn new(fleet: Fleet, options: RunOptions, observer: Arc<dyn Observer>) -> Self {
        let now = Instant::now();
        let state = State {
            entries: fleet
                .mirrors
                .into_iter()
                .map(|m| Entry::new(m, now))
                .collect(),
            hosts: Hosts::new(options.per_host.max(1)),
            running: 0,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                wake: Notify::new(),
                ready: AtomicBool::new(false),
                options,
                observer,
            }),
        }
    }

    /// The handle the HTTP listener drives.
    pub fn control(&self) -> Arc<dyn Control> {
        Arc::clone(&self.shared) as Arc<dyn Control>
    }

    /// Replaces the mirrors with `fleet`'s: added ones are scheduled, removed
    /// ones stop (a sync in flight finishes first), changed ones take their
    /// new settings from their next sync on, keeping their schedule.
    /// Returns the names of the mirrors removed.
    pub fn reload(&self, fleet: Fleet) -> Vec<String> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let mut old: Vec<Entry> = std::mem::take(&mut state.entries);
        let mut entries = Vec::with_capacity(fleet.mirrors.len());
        for mirror in fleet.mirrors {
            match old.iter().position(|e| e.mirror.name == mirror.name) {
                Some(at) => {
                    let mut entry = old.swap_remove(at);
                    if entry.mirror.interval != mirror.interval {
                        entry.due = entry.due.min(next_due(mirror.interval));
                    }
                    entry.removed = false;
                    entry.mirror = Arc::new(mirror);
                    entries.push(entry);
                }
                None => entries.push(Entry::new(mirror, now)),
            }
        }
        let removed = old
            .iter()
            .filter(|e| !e.removed)
            .map(|e| e.mirror.name.clone())
            .collect();
        for mut gone in old {
            if gone.running {
                gone.removed = true;
                entries.push(gone);
            }
        }
        state.entries = entries;
        drop(state);
        self.shared.wake.notify_one();
        removed
    }

    /// Runs the schedule until `shutdown` completes, then waits up to
    /// `grace` for the syncs in flight and drops the rest.
    pub async fn run(&self, shutdown: impl Future<Output = ()>, grace: Duration) {
        let shared = &self.shared;
        shared.ready.store(true, Ordering::Release);
        let mut tasks: JoinSet<Done> = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let wake_at = self.start_due(&mut tasks);
            tokio::select! {
                joined = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(Ok(done)) = joined {
                        self.finished(done);
                    }
                }
                () = shared.wake.notified() => {}
                () = sleep_until(wake_at) => {}
                () = &mut shutdown => break,
            }
        }
        shared.ready.store(false, Ordering::Release);
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(
                "stopping: waiting up to {} s for {in_flight} sync(s) in flight",
                grace.as_secs()
            );
        }
        let drained = tokio::time::timeout(grace, async {
            while let Some(joined) = tasks.join_next().await {
                if let Ok(done) = joined {
                    self.finished(done);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "{} sync(s) did not finish within the grace period and were stopped; \
                 their downstreams kept every ref whose pack had not fully arrived",
                tasks.len()
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }

    /// Starts every mirror that is due and fits; returns when the next one
    /// not started will be due.
    fn start_due(&self, tasks: &mut JoinSet<Done>) -> Option<Instant> {
        let shared = &self.shared;
        let jobs = shared.options.jobs.max(1);
        let now = Instant::now();
        let mut state = shared.lock();
        let mut wake_at: Option<Instant> = None;
        // Webhooks first, then the mirror that has waited longest, then file
        // order: a hook is not stuck behind a backlog of periodic syncs, and
        // an overloaded service shares its syncs out evenly instead of
        // favouring the top of the file.
        let mut order: Vec<(bool, Instant, usize)> = state
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.wants_at(now).map(|at| (!e.requested, at, i)))
            .collect();
        order.sort_unstable();
        for (_, at, i) in order {
            if at > now {
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
                continue;
            }
            // A mirror that is due but has no room is woken by the
            // completion that makes room.
            if state.running >= jobs {
                continue;
            }
            let need = Need::of(
                &state.entries[i].mirror.upstream,
                &state.entries[i].mirror.downstream,
            );
            if !state.hosts.fits(&need) {
                continue;
            }
            state.hosts.take(&need);
            state.running += 1;
            let entry = &mut state.entries[i];
            entry.running = true;
            entry.requested = false;
            if entry.retry_at.take().is_none() {
                entry.attempts = 0;
                entry.first_started = Some(now);
                entry.created = false;
            }
            entry.attempts += 1;
            let mirror = Arc::clone(&entry.mirror);
            let attempt = entry.attempts;
            let shared = Arc::clone(shared);
            tasks.spawn(async move {
                let progress = Arc::new(Progress::hidden());
                shared.observer.started(&mirror, attempt, &progress);
                let end = fleet::attempt(&mirror, &shared.options, &progress).await;
                Done {
                    name: mirror.name.clone(),
                    need,
                    end,
                }
            });
        }
        wake_at
    }

    /// Books a finished attempt: a retry, or the mirror's new last result.
    fn finished(&self, mut done: Done) {
        let shared = &self.shared;
        let mut state = shared.lock();
        state.hosts.give_back(&done.need);
        state.running = state.running.saturating_sub(1);
        let Some(at) = state
            .entries
            .iter()
            .position(|e| e.mirror.name == done.name && e.running)
        else {
            return;
        };
        let entry = &mut state.entries[at];
        entry.running = false;
        if entry.removed {
            state.entries.remove(at);
            drop(state);
            shared.wake.notify_one();
            return;
        }
        let mirror = Arc::clone(&entry.mirror);
        done.end.created |= entry.created;
        entry.created = done.end.created;
        if let Some(failure) = &done.end.failure {
            if let Some(delay) = fleet::retry_delay(&mirror, entry.attempts, failure) {
                entry.retry_at = Some(Instant::now() + delay);
                let attempts = entry.attempts;
                let failure: Failure = failure.clone();
                drop(state);
                shared.observer.retrying(&mirror, attempts, delay, &failure);
                shared.wake.notify_one();
                return;
            }
        }
        let elapsed = entry.first_started.map_or(Duration::ZERO, |t| t.elapsed());
        let run = fleet::finish(&mirror, entry.attempts, elapsed, done.end);
        entry.due = next_due(mirror.interval);
        entry.last = Some(run.clone());
        drop(state);
        shared.observer.finished(&run);
        shared.wake.notify_one();
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when.into()).await,
        None => std::future::pending().await,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("because no scheduler code panics while holding the lock")
    }

    fn entry<T>(&self, name: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let mut state = self.lock();
        state
            .entries
            .iter_mut()
            .find(|e| e.mirror.name == name && !e.removed)
            .map(f)
    }
}

/// A repository's identity for matching a push event to mirrors: its host
/// and path, without scheme, user, port, `.git` or slashes at the ends, so
/// that `https://github.com/acme/api`, `git@github.com:acme/api.git` and
/// `ssh://git@github.com/acme/api.git` are one repository.
fn repository_key(url: &RepoUrl) -> Option<String> {
    let (host, path) = match url {
        RepoUrl::Local { .. } => return None,
        RepoUrl::Ssh { host, path, .. } | RepoUrl::Git { host, path, .. } => {
            (host.clone(), path.clone())
        }
        RepoUrl::Http { url } => (url.host_str()?.to_owned(), url.path().to_owned()),
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    Some(format!(
        "{}/{}",
        host.to_ascii_lowercase(),
        path.trim_end_matches('/')
    ))
}

impl Control for Shared {
    fn webhook_secret(&self, mirror: &str) -> Option<WebhookSecret> {
        let secret = self.entry(mirror, |e| e.mirror.webhook_secret.clone())??;
        match resolve_secret(&secret) {
            Ok(token) => Some(WebhookSecret(token.secret)),
            Err(error) => {
                tracing::warn!(
                    "the webhook secret of mirror {} cannot be read: {}",
                    crate::terminal::escape(mirror),
                    crate::relay::chain(&error)
                );
                None
            }
        }
    }

    fn has_mirror(&self, mirror: &str) -> bool {
        self.entry(mirror, |_| ()).is_some()
    }

    fn mirrors_for_repository(&self, urls: &[String]) -> Vec<String> {
        let keys: Vec<String> = urls
            .iter()
            .filter_map(|u| RepoUrl::parse(u).ok())
            .filter_map(|u| repository_key(&u))
            .collect();
        let state = self.lock();
        state
            .entries
            .iter()
            .filter(|e| !e.removed)
            // A target-prop upstream is unknown until a sync reads it.
            .filter(|e| e.mirror.upstream_property.is_none())
            .filter(|e| repository_key(&e.mirror.upstream).is_some_and(|k| keys.contains(&k)))
            .map(|e| e.mirror.name.clone())
            .collect()
    }

    fn trigger(&self, mirror: &str) -> Triggered {
        match self.entry(mirror, |e| e.requested = true) {
            Some(()) => {
                self.wake.notify_one();
                Triggered::Queued
            }
            None => Triggered::Unknown,
        }
    }

    fn status(&self) -> serde_json::Value {
        let now = Instant::now();
        let state = self.lock();
        let mirrors: Vec<serde_json::Value> = state
            .entries
            .iter()
            .filter(|e| !e.removed)
            .map(|e| {
                serde_json::json!({
                    "name": e.mirror.name,
                    "upstream": e.mirror.upstream.to_string(),
                    "downstream": e.mirror.downstream.to_string(),
                    "running": e.running,
                    "queued": e.requested,
                    "next_sync_in_ms": e
                        .wants_at(now)
                        .map(|at| at.saturating_duration_since(now).as_millis() as u64),
                    "last": e.last,
                })
            })
            .collect();
        serde_json::json!({
            "schema_version": 1,
            "ready": self.ready(),
            "running": state.running,
            "mirrors": mirrors,
        })
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<String> {
        repository_key(&RepoUrl::parse(text).expect("valid URL"))
    }

    #[test]
    fn one_repository_has_one_key_however_it_is_spelt() {
        let expected = Some("github.com/acme/api".to_owned());
        for spelling in [
            "https://github.com/acme/api",
            "https://github.com/acme/api.git",
            "https://user@GitHub.com/acme/api.git/",
            "git@github.com:acme/api.git",
            "ssh://git@github.com:22/acme/api.git",
            "git://github.com/acme/api.git",
        ] {
            assert_eq!(key(spelling), expected, "{spelling}");
        }
        assert_ne!(key("https://github.com/acme/api2"), expected);
        assert_eq!(key("/srv/git/api.git"), None);
    }
}
