//! receive-pack as one POST: the commands and the pack go into its body as
//! the session writes them (chunked, never buffered whole), and the answer
//! (the report) is what the reader yields after the advertisement.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

use super::{Error, Remote};
use crate::transport::{BoxReader, Connection};

/// Chunks in flight between the session and the HTTP body: memory stays at
/// a few pkt-lines whatever the pack size.
const IN_FLIGHT: usize = 8;

type Post = JoinHandle<Result<BoxReader, Error>>;

pub(super) fn connection(remote: Arc<Remote>, advertisement: Bytes) -> Connection {
    let (post_tx, post_rx) = oneshot::channel();
    Connection {
        reader: Box::pin(Reader {
            current: Box::pin(io::Cursor::new(advertisement)),
            post: Some(post_rx),
            running: None,
            done: false,
        }),
        writer: Box::pin(Writer {
            remote,
            state: State::Buffering(Vec::new()),
            post: Some(post_tx),
            complete: Arc::new(AtomicBool::new(false)),
        }),
        process: None,
    }
}

impl Remote {
    /// The one POST, its body fed by `chunks`. Not retried: its body cannot
    /// be replayed, so credentials are settled first by a probe, as git
    /// does before a large push (remote-curl's probe_rpc): a 401 must come
    /// before any pack byte is sent. The probe waits until there is
    /// something to push, so that a session that pushes nothing (a no-op
    /// sync, the fresh look after a push) makes no POST at all.
    async fn stream_post(
        self: Arc<Self>,
        chunks: mpsc::Receiver<Bytes>,
        complete: Arc<AtomicBool>,
    ) -> Result<BoxReader, Error> {
        self.probe().await?;
        let url = self.endpoint(self.service.name());
        let credentials = self.auth().current.clone();
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::unfold(Some(chunks), move |chunks| {
                let complete = Arc::clone(&complete);
                async move {
                    let mut chunks = chunks?;
                    match chunks.recv().await {
                        Some(chunk) => Some((Ok(chunk), Some(chunks))),
                        None if complete.load(Ordering::Acquire) => None,
                        // The writer went away without shutting down: the
                        // transfer was aborted. Failing the body makes the
                        // request end without its last chunk, so the server
                        // sees a broken upload rather than a short one.
                        None => Some((
                            Err(io::Error::new(
                                io::ErrorKind::ConnectionAborted,
                                "the push was abandoned",
                            )),
                            None,
                        )),
                    }
                }
            }));
        let request = self.rpc_request(&url).body(body);
        let response = match self
            .attempt("POST", &url, request, credentials.as_ref(), false)
            .await
        {
            Err(Error::Status { status: 401, .. }) => {
                return Err(match credentials {
                    Some(c) => Error::AuthRejected {
                        host: self.host(),
                        from: c.source,
                    },
                    None => Error::AuthRequired {
                        host: self.host(),
                        token: super::credential::token_variable(self.service),
                    },
                })
            }
            other => other?,
        };
        self.check_result(&response, &url)?;
        let stream = response.bytes_stream().map_err(io::Error::other);
        Ok(Box::pin(StreamReader::new(stream)))
    }
}

enum State {
    /// Nothing sent yet: a session that pushes nothing writes a lone flush,
    /// which over HTTP means no request at all.
    Buffering(Vec<u8>),
    Streaming(PollSender<Bytes>),
    Closed,
}

struct Writer {
    remote: Arc<Remote>,
    state: State,
    post: Option<oneshot::Sender<Post>>,
    complete: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the POST with what was buffered.
    fn start(&mut self, first: Vec<u8>) {
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        if !first.is_empty() {
            // The channel is new and empty: there is room.
            let _ = tx.try_send(Bytes::from(first));
        }
        let remote = Arc::clone(&self.remote);
        let task = tokio::spawn(remote.stream_post(rx, Arc::clone(&self.complete)));
        if let Some(post) = self.post.take() {
            let _ = post.send(task);
        }
        self.state = State::Streaming(PollSender::new(tx));
    }
}

fn body_closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the server stopped reading the push before its end",
    )
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Buffering(pending) => {
                pending.extend_from_slice(buf);
                if !b"0000".starts_with(pending) {
                    let first = std::mem::take(pending);
                    this.start(first);
                }
                Poll::Ready(Ok(buf.len()))
            }
            State::Streaming(sender) => {
                ready!(sender.poll_reserve(cx)).map_err(|_| body_closed())?;
                sender
                    .send_item(Bytes::copy_from_slice(buf))
                    .map_err(|_| body_closed())?;
                Poll::Ready(Ok(buf.len()))
            }
            State::Closed => Poll::Ready(Err(body_closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends the body: the pack is complete.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let State::Buffering(pending) = &mut this.state {
            if pending.is_empty() || pending.as_slice() == b"0000" {
                this.state = State::Closed;
                this.post = None;
                return Poll::Ready(Ok(()));
            }
            let first = std::mem::take(pending);
            this.start(first);
        }
        this.complete.store(true, Ordering::Release);
        this.state = State::Closed;
        Poll::Ready(Ok(()))
    }
}

struct Reader {
    current: BoxReader,
    post: Option<oneshot::Receiver<Post>>,
    running: Option<Post>,
    done: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(task) = &self.running {
            task.abort();
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            let before = buf.filled().len();
            ready!(this.current.as_mut().poll_read(cx, buf))?;
            if buf.filled().len() > before || this.done {
                return Poll::Ready(Ok(()));
            }
            // The advertisement is over: the answer to the POST comes next.
            if let Some(post) = this.post.as_mut() {
                match ready!(Pin::new(post).poll(cx)) {
                    Ok(task) => this.running = Some(task),
                    // No POST was made: nothing more to read.
                    Err(_) => this.done = true,
                }
                this.post = None;
                continue;
            }
            let Some(task) = this.running.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            let result = ready!(Pin::new(task).poll(cx));
            this.running = None;
            this.done = true;
            this.current = result
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
        }
    }
}
