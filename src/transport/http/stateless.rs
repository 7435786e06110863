//! upload-pack as stateless RPC: each request the session flushes is one
//! POST, and its response body is what the reader yields next.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::StreamReader;

use super::{Error, Remote};
use crate::transport::{BoxReader, Connection};

type Response = Pin<Box<dyn Future<Output = io::Result<BoxReader>> + Send>>;
type Queue = Arc<Mutex<VecDeque<Response>>>;

/// The reader starts with the advertisement; the writer queues one POST per
/// flushed request.
pub(super) fn connection(remote: Arc<Remote>, advertisement: Bytes, v2: bool) -> Connection {
    let queue: Queue = Arc::default();
    Connection {
        reader: Box::pin(Reader {
            current: Box::pin(io::Cursor::new(advertisement)),
            pending: None,
            queue: Arc::clone(&queue),
        }),
        writer: Box::pin(Writer {
            remote,
            request: Vec::new(),
            queue,
            v2,
        }),
        process: None,
    }
}

impl Remote {
    /// POSTs one request to upload-pack; the body of the answer.
    async fn rpc(self: Arc<Self>, body: Bytes, v2: bool) -> Result<BoxReader, Error> {
        let url = self.endpoint(self.service.name());
        let response = self
            .send("POST", &url, || {
                let request = self.rpc_request(&url).body(body.clone());
                if v2 {
                    request.header("Git-Protocol", "version=2")
                } else {
                    request
                }
            })
            .await?;
        self.check_result(&response, &url)?;
        let stream = response.bytes_stream().map_err(io::Error::other);
        Ok(Box::pin(StreamReader::new(stream)))
    }
}

struct Writer {
    remote: Arc<Remote>,
    request: Vec<u8>,
    queue: Queue,
    v2: bool,
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().request.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// The sessions flush after each whole request: send it.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let request = std::mem::take(&mut this.request);
        // A lone flush ends a v2 session on a direct connection; over HTTP
        // there is nothing to end.
        if request.is_empty() || request == b"0000" {
            return Poll::Ready(Ok(()));
        }
        let remote = Arc::clone(&this.remote);
        let v2 = this.v2;
        let response: Response = Box::pin(async move {
            remote
                .rpc(Bytes::from(request), v2)
                .await
                .map_err(io::Error::other)
        });
        this.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(response);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}

struct Reader {
    current: BoxReader,
    pending: Option<Response>,
    queue: Queue,
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
            if let Some(pending) = this.pending.as_mut() {
                let result = ready!(pending.as_mut().poll(cx));
                this.pending = None;
                this.current = result?;
            }
            let before = buf.filled().len();
            ready!(this.current.as_mut().poll_read(cx, buf))?;
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            // This answer is over; the next one, if a request went out.
            let next = this
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            match next {
                Some(response) => this.pending = Some(response),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}
