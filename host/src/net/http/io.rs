//! Driving one HTTP/1.1 exchange: the connection polled while the response
//! head is awaited (within the first-byte wait), then handed to
//! `wasi:http` to drive while the guest reads the body; the body counted,
//! capped and bounded in time.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::super::connect::Stream;
use super::super::log::Attempt;
use super::Failed;

type Connection = hyper::client::conn::http1::Connection<TokioIo<Box<dyn Stream>>, WasiBody>;

/// Awaits the response head of `request` while driving `conn`; gives back
/// the response and what keeps driving the connection.
pub(super) async fn respond(
    request: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
    conn: Connection,
    first_byte: Duration,
) -> Result<(http::Response<hyper::body::Incoming>, IoFuture), Failed> {
    let mut request = pin!(request);
    let mut conn = Some(conn);
    let head = poll_fn(|cx| match request.as_mut().poll(cx) {
        Poll::Ready(r) => Poll::Ready(r.map_err(Error::from)),
        Poll::Pending => {
            let Some(c) = conn.as_mut() else {
                return Poll::Pending;
            };
            let ended = ready!(Pin::new(c).poll(cx));
            conn = None;
            match ended {
                Ok(()) => request.as_mut().poll(cx).map_err(Error::from),
                Err(e) => Poll::Ready(Err(Error::from(e))),
            }
        }
    });
    let response = tokio::time::timeout(first_byte, head)
        .await
        .map_err(|_| {
            (
                Error::ConnectionReadTimeout,
                "no answer within the wait".to_string(),
            )
        })?
        .map_err(|e| {
            let detail = format!("the exchange failed: {e}");
            (e, detail)
        })?;
    let io: IoFuture = Box::new(async move {
        match conn {
            Some(c) => c.await.map_err(Error::from),
            None => Ok(()),
        }
    });
    Ok((response, io))
}

/// What `wasi:http` drives after the head: the rest of the connection.
pub(super) type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;

/// A response body counted into its attempt, refused past `cap` bytes,
/// and ended when no bytes come for `between` or the run's deadline passes.
pub(super) struct Capped {
    inner: hyper::body::Incoming,
    attempt: Arc<Attempt>,
    cap: u64,
    seen: u64,
    between: Duration,
    deadline: tokio::time::Instant,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Capped {
    pub(super) fn new(
        inner: hyper::body::Incoming,
        attempt: Arc<Attempt>,
        cap: u64,
        between: Duration,
        deadline: Instant,
    ) -> Capped {
        let deadline = tokio::time::Instant::from_std(deadline);
        let first = (tokio::time::Instant::now() + between).min(deadline);
        Capped {
            inner,
            attempt,
            cap,
            seen: 0,
            between,
            deadline,
            idle: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    fn end(&self, why: Option<String>) {
        if let Some(why) = why {
            self.attempt.set_status(why);
        }
        self.attempt.finish();
    }
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.end(None);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(Some(format!("the body broke off: {e}")));
                Poll::Ready(Some(Err(Error::HttpResponseIncomplete)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                this.seen += n;
                this.attempt.add_in(n);
                if this.seen > this.cap {
                    this.end(Some(format!("body cut off past {} bytes", this.cap)));
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.seen)))));
                }
                let next = (tokio::time::Instant::now() + this.between).min(this.deadline);
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                this.end(Some("the body stalled and was cut off".to_string()));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body the guest drops unread still ends its attempt.
impl Drop for Capped {
    fn drop(&mut self) {
        self.attempt.finish();
    }
}
