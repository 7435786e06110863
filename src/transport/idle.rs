//! Idle timeouts, the low-speed limit and the per-connection deadline: a
//! connection on which nothing moves for too long, that only trickles, or
//! that outlives `--max-duration` fails with a clear error instead of
//! holding the sync forever.
//!
//! Only protocol bytes count as progress: what a server writes on stderr
//! never reaches these streams, so stderr noise cannot keep a connection
//! alive.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Longer limits than this are taken as "no limit": adding them to an
/// instant could overflow, and nobody waits thirty years for a server.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `instant + limit`, saturating at [`FOREVER`] from `instant`.
pub fn after(instant: Instant, limit: Duration) -> Instant {
    instant.checked_add(limit.min(FOREVER)).unwrap_or(instant)
}

/// git's `http.lowSpeedLimit` / `http.lowSpeedTime`, for every transport:
/// a connection that moves fewer than `bytes_per_sec` bytes a second,
/// averaged over `time` spent waiting on the server, fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowSpeed {
    pub bytes_per_sec: u64,
    pub time: Duration,
}

/// What an [`Idle`] stream enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub idle: Duration,
    pub low_speed: Option<LowSpeed>,
    /// The instant past which the connection fails, and the duration the
    /// user gave (for the message).
    pub deadline: Option<(Instant, Duration)>,
}

/// What a connection's reader and writer share: when it last moved (while a
/// pack uploads, a quiet server sends nothing back for minutes, and that is
/// not a stall), and the accounting for the low-speed limit.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Mutex<State>>);

#[derive(Debug)]
struct State {
    last: Instant,
    /// The writer was shut down: everything was handed to the server.
    handed_over: bool,
    /// Operations now pending on the server, and since when one has been.
    waiting: u32,
    waiting_since: Instant,
    /// Time spent waiting on the server in the current low-speed window,
    /// the pending stretch aside, and the bytes moved in the window.
    waited: Duration,
    bytes: u64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    pub fn new() -> Self {
        let now = Instant::now();
        Self(Arc::new(Mutex::new(State {
            last: now,
            handed_over: false,
            waiting: 0,
            waiting_since: now,
            waited: Duration::ZERO,
            bytes: 0,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, consistent after any panic.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection last made progress.
    pub fn last(&self) -> Instant {
        self.state().last
    }

    /// Whether the connection's writer has been shut down.
    pub fn handed_over(&self) -> bool {
        self.state().handed_over
    }

    fn progress(&self, now: Instant, bytes: u64) {
        let mut state = self.state();
        state.last = now;
        state.bytes = state.bytes.saturating_add(bytes);
    }

    fn start_waiting(&self, now: Instant) {
        let mut state = self.state();
        if state.waiting == 0 {
            state.waiting_since = now;
        }
        state.waiting += 1;
    }

    fn stop_waiting(&self, now: Instant) {
        let mut state = self.state();
        state.waiting = state.waiting.saturating_sub(1);
        if state.waiting == 0 {
            let stretch = now.saturating_duration_since(state.waiting_since);
            state.waited += stretch;
        }
    }

    fn hand_over(&self) {
        self.state().handed_over = true;
    }

    /// Ends a full low-speed window: `Some((bytes, waited))` if it was too
    /// slow, else starts the next window.
    fn check_speed(&self, now: Instant, limit: LowSpeed) -> Option<(u64, Duration)> {
        let mut state = self.state();
        // Once the pack is handed over the server is checking it, not
        // transferring: only the idle timeout applies.
        if state.handed_over {
            return None;
        }
        let waited = state.waited
            + if state.waiting > 0 {
                now.saturating_duration_since(state.waiting_since)
            } else {
                Duration::ZERO
            };
        if waited < limit.time || waited.is_zero() {
            return None;
        }
        let rate = state.bytes as f64 / waited.as_secs_f64();
        if rate < limit.bytes_per_sec as f64 {
            return Some((state.bytes, waited));
        }
        state.waited = Duration::ZERO;
        state.bytes = 0;
        state.waiting_since = now;
        None
    }

    /// When the current low-speed window fills, if something is waiting.
    fn speed_check_at(&self, now: Instant, limit: LowSpeed) -> Option<Instant> {
        let state = self.state();
        if state.handed_over || state.waiting == 0 {
            return None;
        }
        let waited = state.waited + now.saturating_duration_since(state.waiting_since);
        Some(after(now, limit.time.saturating_sub(waited)))
    }
}

/// Wraps a reader or writer. A pending operation fails with
/// [`io::ErrorKind::TimedOut`] when neither it nor its partner (sharing the
/// same [`Activity`]) nor the `alive` connection (upstream, while it feeds
/// this one) made progress for the idle limit; when the low-speed limit is
/// not met; or past the deadline.
pub struct Idle<T> {
    inner: T,
    limits: Limits,
    timer: Pin<Box<Sleep>>,
    activity: Activity,
    alive: Option<Activity>,
    waiting: bool,
    what: &'static str,
}

impl<T> Idle<T> {
    pub fn new(
        inner: T,
        limits: Limits,
        activity: Activity,
        alive: Option<Activity>,
        what: &'static str,
    ) -> Self {
        let now = Instant::now();
        let mut idle = Self {
            inner,
            limits,
            timer: Box::pin(tokio::time::sleep_until(now)),
            activity,
            alive,
            waiting: false,
            what,
        };
        let wake = idle.next_wake(now);
        idle.timer.as_mut().reset(wake);
        idle
    }

    /// The latest progress of this connection or the one keeping it alive.
    fn last(&self) -> Instant {
        let own = self.activity.last();
        match &self.alive {
            Some(alive) => own.max(alive.last()),
            None => own,
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = after(self.last(), self.limits.idle);
        if let Some(limit) = self.limits.low_speed {
            if let Some(at) = self.activity.speed_check_at(now, limit) {
                wake = wake.min(at);
            }
        }
        if let Some((deadline, _)) = self.limits.deadline {
            wake = wake.min(deadline);
        }
        wake
    }

    fn stop_waiting(&mut self, now: Instant) {
        if self.waiting {
            self.waiting = false;
            self.activity.stop_waiting(now);
        }
    }

    fn idle_timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server stalled: nothing {} for {} s (idle timeout)",
                self.what,
                self.limits.idle.as_secs()
            ),
        )
    }

    fn too_slow(&self, limit: LowSpeed, bytes: u64, waited: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the transfer is too slow: {bytes} bytes in {} s, below the low-speed limit of {} bytes/s over {} s",
                waited.as_secs(),
                limit.bytes_per_sec,
                limit.time.as_secs()
            ),
        )
    }

    fn past_deadline(&self, max: Duration) -> io::Error {
        let outcome = if self.activity.handed_over() {
            "after the whole pack was handed over: whether downstream applied the update is unknown"
        } else {
            "before the transfer completed"
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the maximum duration of {} s (--max-duration) passed {outcome}",
                max.as_secs()
            ),
        )
    }

    /// What failed, if anything, at `now`.
    fn limit_hit(&self, now: Instant) -> Option<io::Error> {
        if let Some((deadline, max)) = self.limits.deadline {
            if now >= deadline {
                return Some(self.past_deadline(max));
            }
        }
        if let Some(limit) = self.limits.low_speed {
            if let Some((bytes, waited)) = self.activity.check_speed(now, limit) {
                return Some(self.too_slow(limit, bytes, waited));
            }
        }
        None
    }

    /// Ready: record progress, check the limits. Pending: fail if a limit
    /// passed meanwhile, else wait until the next one could.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
        moved: u64,
    ) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                let now = Instant::now();
                self.activity.progress(now, moved);
                self.stop_waiting(now);
                if let Some(error) = self.limit_hit(now) {
                    return Poll::Ready(Err(error));
                }
                let wake = self.next_wake(now);
                self.timer.as_mut().reset(wake);
                Poll::Ready(result)
            }
            Poll::Pending => {
                if !self.waiting {
                    self.waiting = true;
                    self.activity.start_waiting(Instant::now());
                }
                loop {
                    match self.timer.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(()) => {
                            let now = Instant::now();
                            if let Some(error) = self.limit_hit(now) {
                                self.stop_waiting(now);
                                return Poll::Ready(Err(error));
                            }
                            if after(self.last(), self.limits.idle) <= now {
                                self.stop_waiting(now);
                                return Poll::Ready(Err(self.idle_timed_out()));
                            }
                            // Progress meanwhile (the partner's, or the
                            // connection keeping this one alive): wait on.
                            let wake = self.next_wake(now);
                            self.timer.as_mut().reset(wake);
                        }
                    }
                }
            }
        }
    }
}

impl<T> Drop for Idle<T> {
    fn drop(&mut self) {
        self.stop_waiting(Instant::now());
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        let moved = buf.filled().len().saturating_sub(before) as u64;
        this.check(cx, poll, moved)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        let moved = match &poll {
            Poll::Ready(Ok(n)) => *n as u64,
            _ => 0,
        };
        this.check(cx, poll, moved)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, poll, 0)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = poll {
            this.activity.hand_over();
        }
        this.check(cx, poll, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(secs: u64) -> Limits {
        Limits {
            idle: Duration::from_secs(secs),
            low_speed: None,
            deadline: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_reader_times_out() {
        let (_keep_open, silent) = tokio::io::duplex(64);
        let mut reader = Idle::new(silent, limits(5), Activity::new(), None, "received");
        let mut buf = [0u8; 8];
        let err = reader.read(&mut buf).await.expect_err("stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("5 s"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_writer_keeps_a_silent_reader_alive() {
        let activity = Activity::new();
        let (_keep_open, silent) = tokio::io::duplex(64);
        let mut reader = Idle::new(silent, limits(5), activity.clone(), None, "received");
        let (sink, mut drain) = tokio::io::duplex(64);
        let mut writer = Idle::new(sink, limits(5), activity, None, "accepted");
        tokio::spawn(async move {
            let mut buf = [0u8; 8];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                writer.write_all(b"pack").await.expect("open");
                let _ = drain.read(&mut buf).await;
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = reader
            .read(&mut buf)
            .await
            .expect_err("stalls once the writer stops");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_secs(12 + 5),
            "the writer's progress kept the reader alive"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn another_connections_progress_keeps_a_silent_reader_alive() {
        let upstream = Activity::new();
        let (_keep_open, silent) = tokio::io::duplex(64);
        let mut reader = Idle::new(
            silent,
            limits(5),
            Activity::new(),
            Some(upstream.clone()),
            "received",
        );
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut up_reader = Idle::new(rx, limits(5), upstream, None, "received");
        tokio::spawn(async move {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                tx.write_all(b"k").await.expect("open");
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        tokio::spawn(async move {
            let mut buf = [0u8; 1];
            while up_reader.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = reader.read(&mut buf).await.expect_err("stalls in the end");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            started.elapsed() >= Duration::from_secs(12 + 5),
            "upstream's progress kept downstream alive ({:?})",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn data_keeps_it_alive() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Idle::new(rx, limits(5), Activity::new(), None, "received");
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.write_all(b"x").await.expect("open");
            }
        });
        let mut buf = [0u8; 1];
        for _ in 0..3 {
            reader
                .read_exact(&mut buf)
                .await
                .expect("data within the limit");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_idle_limit_does_not_overflow() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Idle::new(rx, limits(u64::MAX), Activity::new(), None, "received");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1000)).await;
            tx.write_all(b"x").await.expect("open");
        });
        let mut buf = [0u8; 1];
        reader.read_exact(&mut buf).await.expect("no timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_the_low_speed_limit() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let low_speed = LowSpeed {
            bytes_per_sec: 100,
            time: Duration::from_secs(10),
        };
        let mut reader = Idle::new(
            rx,
            Limits {
                low_speed: Some(low_speed),
                ..limits(5)
            },
            Activity::new(),
            None,
            "received",
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let mut buf = [0u8; 1];
        let err = loop {
            if let Err(err) = reader.read_exact(&mut buf).await {
                break err;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "never failed");
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("low-speed limit"), "{err}");
        assert!(started.elapsed() <= Duration::from_secs(12), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_stream_passes_the_low_speed_limit_and_time_away_is_not_counted() {
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let low_speed = LowSpeed {
            bytes_per_sec: 100,
            time: Duration::from_secs(2),
        };
        let mut reader = Idle::new(
            rx,
            Limits {
                low_speed: Some(low_speed),
                ..limits(30)
            },
            Activity::new(),
            None,
            "received",
        );
        tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.write_all(&[b'x'; 1000]).await.expect("open");
            }
        });
        let mut buf = [0u8; 1000];
        for round in 0..20 {
            reader.read_exact(&mut buf).await.expect("fast enough");
            if round == 5 {
                // Busy elsewhere: no operation pending, nothing counted.
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_fails_a_busy_connection_and_says_what_is_known() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let max = Duration::from_secs(10);
        let mut reader = Idle::new(
            rx,
            Limits {
                deadline: Some((Instant::now() + max, max)),
                ..limits(5)
            },
            Activity::new(),
            None,
            "received",
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 1];
        let err = loop {
            if let Err(err) = reader.read_exact(&mut buf).await {
                break err;
            }
        };
        assert!(
            err.to_string().contains("before the transfer completed"),
            "{err}"
        );

        let activity = Activity::new();
        let (sink, _drain) = tokio::io::duplex(64);
        let (_keep_open, silent) = tokio::io::duplex(64);
        let limits = Limits {
            deadline: Some((Instant::now() + max, max)),
            ..limits(300)
        };
        let mut writer = Idle::new(sink, limits, activity.clone(), None, "accepted");
        let mut reader = Idle::new(silent, limits, activity, None, "received");
        writer.shutdown().await.expect("shuts down");
        let err = reader.read(&mut buf).await.expect_err("deadline");
        assert!(err.to_string().contains("unknown"), "{err}");
    }
}
