//! Idle timeouts: a connection on which nothing moves for too long fails
//! with a clear error instead of hanging the sync.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When a connection last moved, shared by its reader and writer: while a
/// pack uploads, a quiet server sends nothing back for minutes, and that is
/// not a stall.
#[derive(Clone, Debug)]
pub struct Activity(Arc<Mutex<Instant>>);

impl Activity {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().expect("because the lock is never poisoned") = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.0.lock().expect("because the lock is never poisoned")
    }
}

/// Wraps a reader or writer; when neither it nor its partner (sharing the
/// same [`Activity`]) makes progress for `limit`, a pending operation fails
/// with [`io::ErrorKind::TimedOut`].
pub struct Idle<T> {
    inner: T,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
    activity: Activity,
    what: &'static str,
}

impl<T> Idle<T> {
    pub fn new(inner: T, limit: Duration, activity: Activity, what: &'static str) -> Self {
        Self {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            activity,
            what,
        }
    }

    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the server stalled: nothing {} for {} s (idle timeout)",
                self.what,
                self.limit.as_secs()
            ),
        )
    }

    /// Pending: fail if the deadline passed. Progress: push the deadline out.
    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match poll {
            Poll::Ready(result) => {
                self.activity.touch();
                self.deadline.as_mut().reset(Instant::now() + self.limit);
                Poll::Ready(result)
            }
            Poll::Pending => loop {
                match self.deadline.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        let deadline = self.activity.last() + self.limit;
                        if deadline <= Instant::now() {
                            return Poll::Ready(Err(self.timed_out()));
                        }
                        // The partner moved meanwhile: wait from there.
                        self.deadline.as_mut().reset(deadline);
                    }
                }
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.check(cx, poll)
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
        this.check(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test(start_paused = true)]
    async fn a_silent_reader_times_out() {
        let (_keep_open, silent) = tokio::io::duplex(64);
        let mut reader = Idle::new(silent, Duration::from_secs(5), Activity::new(), "received");
        let mut buf = [0u8; 8];
        let err = reader.read(&mut buf).await.expect_err("stalls");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("5 s"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_writer_keeps_a_silent_reader_alive() {
        let activity = Activity::new();
        let (_keep_open, silent) = tokio::io::duplex(64);
        let mut reader = Idle::new(silent, Duration::from_secs(5), activity.clone(), "received");
        let (sink, mut drain) = tokio::io::duplex(64);
        let mut writer = Idle::new(sink, Duration::from_secs(5), activity, "accepted");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
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
    async fn data_keeps_it_alive() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = Idle::new(rx, Duration::from_secs(5), Activity::new(), "received");
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
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
}
