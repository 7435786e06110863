//! Which failures are worth another try, and how long to wait first.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use super::Error;

/// Retries after the first attempt, unless `KALANDRA_HTTP_RETRIES` says.
const DEFAULT_RETRIES: u32 = 4;
/// The first backoff; each retry doubles it.
const BASE_DELAY: Duration = Duration::from_millis(500);
/// No wait is longer, whatever the backoff or the server's `Retry-After`.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// How many times, and how patiently, a request is retried.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub retries: u32,
}

impl Policy {
    /// `KALANDRA_HTTP_RETRIES` (a count of retries, 0 for none) or the
    /// default.
    pub fn from_env() -> Self {
        let retries = std::env::var("KALANDRA_HTTP_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_RETRIES);
        Self { retries }
    }

    /// The wait before retry number `attempt` (0 for the first retry): the
    /// server's `Retry-After` when it gave one, else exponential backoff
    /// with jitter so that many mirrors do not retry in step.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(MAX_DELAY);
        }
        let backoff = BASE_DELAY
            .saturating_mul(1u32 << attempt.min(16))
            .min(MAX_DELAY);
        // Between half and all of the backoff.
        let jitter = crate::jitter::random_unit();
        backoff.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// Whether `error` is spurious (worth retrying), and how long the server
/// asked us to wait if it said so.
///
/// Spurious: 429, 502, 503 and 504, a connection reset or closed before the
/// response, and a connect timeout. Not spurious: any other status, a
/// refused connection, TLS failures, and a stall past the idle timeout (the
/// user's limit on waiting; retrying would multiply it).
pub fn spurious(error: &Error) -> Option<Option<Duration>> {
    match error {
        Error::Status {
            status,
            retry_after,
            ..
        } => matches!(status, 429 | 502 | 503 | 504).then_some(*retry_after),
        Error::Request { source, .. } => {
            if source.is_connect() && source.is_timeout() {
                return Some(None);
            }
            is_reset(source).then_some(None)
        }
        _ => None,
    }
}

/// A reset or early close anywhere in the error's chain.
fn is_reset(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        // hyper says "connection closed before message completed" for a
        // keep-alive connection the server dropped as we reused it.
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 10.2.3).
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<Duration>) -> Error {
        Error::Status {
            url: "http://example.invalid/r".into(),
            status: code,
            detail: String::new(),
            retry_after,
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after(b" 7 ", now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_as_a_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past means now.
        assert_eq!(
            parse_retry_after(b"Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_retry_after_is_ignored() {
        assert_eq!(parse_retry_after(b"soon", SystemTime::now()), None);
        assert_eq!(parse_retry_after(b"-3", SystemTime::now()), None);
    }

    #[test]
    fn which_statuses_are_spurious() {
        for code in [429, 502, 503, 504] {
            assert!(spurious(&status(code, None)).is_some(), "{code}");
        }
        for code in [400, 401, 403, 404, 500, 501] {
            assert!(spurious(&status(code, None)).is_none(), "{code}");
        }
        let after = Some(Duration::from_secs(3));
        assert_eq!(spurious(&status(429, after)), Some(after));
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let policy = Policy { retries: 5 };
        for attempt in 0..4 {
            let full = BASE_DELAY * (1 << attempt);
            let delay = policy.delay(attempt, None);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
        assert!(policy.delay(30, None) <= MAX_DELAY);
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(policy.delay(0, Some(Duration::from_secs(3600))), MAX_DELAY);
    }
}
