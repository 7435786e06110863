//! How long a mirror waits before retrying a transient failure.

use std::time::Duration;

/// The first retry waits up to this long; each further retry doubles it.
pub const BASE: Duration = Duration::from_secs(1);
/// No backoff is longer than this.
pub const CAP: Duration = Duration::from_secs(60);
/// A server's `Retry-After` is honoured up to this long; past it the
/// server is treated as down and the usual backoff applies.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The wait before retry number `retry` (1 for the first): the server's
/// `Retry-After` when it gave a sane one, else exponential backoff with
/// full jitter (uniform between zero and the backoff), so that mirrors
/// that failed together do not come back together.
pub fn delay(retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after.filter(|after| *after <= MAX_RETRY_AFTER) {
        return after;
    }
    let ceiling = BASE
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(CAP);
    ceiling.mul_f64(crate::jitter::random_unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for retry in 1..40 {
            let ceiling = BASE.saturating_mul(1 << (retry - 1).min(16)).min(CAP);
            for _ in 0..50 {
                assert!(delay(retry, None) <= ceiling);
            }
        }
        // Full jitter spreads retries out: 200 draws are not all equal.
        let draws: std::collections::HashSet<_> = (0..200).map(|_| delay(5, None)).collect();
        assert!(draws.len() > 100);
    }

    #[test]
    fn retry_after_wins_unless_absurd() {
        assert_eq!(
            delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert!(delay(1, Some(Duration::from_secs(86_400))) <= BASE);
    }
}
