//! Installation tokens kept for their life, one slot per installation,
//! shared by every mirror of the process. A slot is taken by one caller
//! at a time: when the token must be fetched, the first caller fetches it
//! and the others wait for that one request instead of sending their own.
//!
//! Tokens live only in memory; nothing here is written anywhere.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// How long before `expires_at` a token is replaced: a sync that starts
/// with it has that long to use it (GitHub checks it on every request).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// What time it is; tests drive their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// An installation access token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct InstallationToken {
    pub secret: String,
    pub expires_at: SystemTime,
    /// When it is replaced (see [`refresh_at`]).
    pub refresh_at: SystemTime,
}

impl std::fmt::Debug for InstallationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallationToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl InstallationToken {
    /// A token received at `now` that expires at `expires_at`.
    pub fn new(secret: String, expires_at: SystemTime, now: SystemTime) -> Self {
        Self {
            secret,
            expires_at,
            refresh_at: refresh_at(now, expires_at),
        }
    }
}

/// When a token received at `received` and expiring at `expires_at` is
/// replaced: five minutes before it expires, but not before half its life
/// has passed, so that a token issued for less than ten minutes (GitHub's
/// are issued for an hour) is still shared instead of fetched per use.
pub fn refresh_at(received: SystemTime, expires_at: SystemTime) -> SystemTime {
    let life = expires_at
        .duration_since(received)
        .unwrap_or(Duration::ZERO);
    let early = expires_at
        .checked_sub(REFRESH_BEFORE_EXPIRY)
        .unwrap_or(received);
    early.max(received + life / 2)
}

/// Values under keys, each fetched by one caller at a time.
pub struct Slots<K, V> {
    slots: Mutex<HashMap<K, Arc<tokio::sync::Mutex<Option<V>>>>>,
}

impl<K, V> Default for Slots<K, V> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Slots<K, V> {
    /// The value under `key` if `usable` says it still is, else the one
    /// `fetch` returns, which is kept. A failed fetch keeps nothing, and
    /// the next caller in line tries again.
    pub async fn get<E, F, Fut>(
        &self,
        key: &K,
        usable: impl Fn(&V) -> bool,
        fetch: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(key.clone()).or_default())
        };
        let mut held = slot.lock().await;
        if let Some(value) = held.as_ref().filter(|v| usable(v)) {
            return Ok(value.clone());
        }
        *held = None;
        let value = fetch().await?;
        *held = Some(value.clone());
        Ok(value)
    }

    /// Forgets every value `is` picks (a token a server refused), under
    /// whatever key: a value fetched meanwhile to replace it stays.
    pub async fn forget_where(&self, is: impl Fn(&V) -> bool) -> usize {
        let slots: Vec<_> = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut forgotten = 0;
        for slot in slots {
            let mut held = slot.lock().await;
            if held.as_ref().is_some_and(&is) {
                *held = None;
                forgotten += 1;
            }
        }
        forgotten
    }

    /// Forgets the value under `key` (an installation that is gone).
    pub async fn forget(&self, key: &K) {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots.get(key).cloned()
        };
        if let Some(slot) = slot {
            *slot.lock().await = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    /// A clock the test moves.
    struct Driven(AtomicU64);

    impl Clock for Driven {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn token_refresh_is_five_minutes_early_or_at_half_life() {
        // GitHub's hour-long tokens: at 55 minutes.
        assert_eq!(refresh_at(at(0), at(3600)), at(3300));
        // A ten-second token: at five seconds, not at once.
        assert_eq!(refresh_at(at(100), at(110)), at(105));
        // Already expired: at once.
        assert_eq!(refresh_at(at(100), at(90)), at(100));
    }

    #[test]
    fn token_debug_never_shows_the_secret() {
        let token = InstallationToken::new("ghs_secret".into(), at(3600), at(0));
        assert!(!format!("{token:?}").contains("ghs_secret"));
    }

    /// The cache as the GitHub App code uses it: a token per installation,
    /// fetched when missing or due for refresh on the driven clock.
    async fn token(
        slots: &Slots<u64, InstallationToken>,
        clock: &Driven,
        fetches: &AtomicU32,
        life: u64,
    ) -> Result<InstallationToken, String> {
        slots
            .get(
                &7,
                |t: &InstallationToken| clock.now() < t.refresh_at,
                || async {
                    let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
                    // Long enough that every waiter queues behind it.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let now = clock.now();
                    Ok(InstallationToken::new(
                        format!("ghs_{n}"),
                        now + Duration::from_secs(life),
                        now,
                    ))
                },
            )
            .await
    }

    #[tokio::test]
    async fn token_cache_fetches_once_for_concurrent_mirrors_and_again_when_due() {
        let slots = Arc::new(Slots::default());
        let clock = Arc::new(Driven(AtomicU64::new(1_000)));
        let fetches = Arc::new(AtomicU32::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (slots, clock, fetches) = (slots.clone(), clock.clone(), fetches.clone());
            tasks.spawn(async move { token(&slots, &clock, &fetches, 3600).await });
        }
        while let Some(joined) = tasks.join_next().await {
            let token = joined.expect("task").expect("token");
            assert_eq!(token.secret, "ghs_1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // 54 minutes on: still the same token.
        clock.0.store(1_000 + 54 * 60, Ordering::SeqCst);
        let same = token(&slots, &clock, &fetches, 3600).await.expect("token");
        assert_eq!(
            (same.secret.as_str(), fetches.load(Ordering::SeqCst)),
            ("ghs_1", 1)
        );
        // 55 minutes on, five before expiry: a new one.
        clock.0.store(1_000 + 55 * 60, Ordering::SeqCst);
        let fresh = token(&slots, &clock, &fetches, 3600).await.expect("token");
        assert_eq!(
            (fresh.secret.as_str(), fetches.load(Ordering::SeqCst)),
            ("ghs_2", 2)
        );
    }

    #[tokio::test]
    async fn token_cache_keeps_no_failure() {
        let slots: Slots<u64, u32> = Slots::default();
        let failed: Result<u32, &str> = slots.get(&1, |_| true, || async { Err("503") }).await;
        assert_eq!(failed, Err("503"));
        let ok: Result<u32, &str> = slots.get(&1, |_| true, || async { Ok(5) }).await;
        assert_eq!(ok, Ok(5));
        let cached: Result<u32, &str> = slots.get(&1, |_| true, || async { Ok(6) }).await;
        assert_eq!(cached, Ok(5));
        slots.forget(&1).await;
        let refetched: Result<u32, &str> = slots.get(&1, |_| true, || async { Ok(7) }).await;
        assert_eq!(refetched, Ok(7));
    }

    #[tokio::test]
    async fn token_cache_forgets_a_refused_token_but_not_its_replacement() {
        let slots: Slots<u64, &str> = Slots::default();
        let first: Result<&str, ()> = slots.get(&1, |_| true, || async { Ok("ghs_a") }).await;
        let other: Result<&str, ()> = slots.get(&2, |_| true, || async { Ok("ghs_b") }).await;
        assert_eq!((first, other), (Ok("ghs_a"), Ok("ghs_b")));
        // ghs_a is refused: the next caller fetches a new one.
        assert_eq!(slots.forget_where(|t| *t == "ghs_a").await, 1);
        let fresh: Result<&str, ()> = slots.get(&1, |_| true, || async { Ok("ghs_c") }).await;
        assert_eq!(fresh, Ok("ghs_c"));
        // A second mirror that used ghs_a too reports it late: ghs_c stays.
        assert_eq!(slots.forget_where(|t| *t == "ghs_a").await, 0);
        let kept: Result<&str, ()> = slots.get(&1, |_| true, || async { Ok("ghs_d") }).await;
        let untouched: Result<&str, ()> = slots.get(&2, |_| true, || async { Ok("ghs_e") }).await;
        assert_eq!((kept, untouched), (Ok("ghs_c"), Ok("ghs_b")));
    }
}
