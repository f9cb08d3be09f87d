//! A write timeout for plain HTTP connections: a client that stops reading a response
//! (a zero TCP window) is dropped once a write has made no progress for the timeout,
//! like nginx's `send_timeout`. The timer runs only while a write waits; every write
//! that goes through restarts it, so a slow but reading client is never cut off.
//!
//! hyper has no write timeout of its own. The wrapper sits between the socket and
//! hyper's `TokioIo`; an upgrade takes the socket back out of it ([`WriteTimeout::into_inner`]),
//! and WebSocket writers run their own timers.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An I/O object whose writes fail with `TimedOut` after waiting `timeout` without progress.
#[derive(Debug)]
pub struct WriteTimeout<T> {
    inner: T,
    timeout: Duration,
    /// Armed while a write is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteTimeout<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// The wrapped I/O object.
    pub fn into_inner(self) -> T {
        self.inner
    }

    /// A pending write: arms the timer, or fails once it has run out.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP response write timed out (see --http-write-timeout-ms)",
        ))
    }
}

use std::future::Future as _;

impl<T: AsyncRead + Unpin> AsyncRead for WriteTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.wait(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.wait(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.wait(cx).map(Err),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_without_progress_fails_after_the_timeout_and_progress_restarts_it() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = WriteTimeout::new(a, Duration::from_millis(300));
        w.write_all(&[0; 16]).await.unwrap();
        // Full: the next write waits; the peer reads within the timeout, so it goes on.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut buf = [0u8; 16];
            tokio::io::AsyncReadExt::read_exact(&mut b, &mut buf)
                .await
                .unwrap();
            b
        });
        w.write_all(&[1; 16]).await.unwrap();
        let _b = reader.await.unwrap();
        // Now nobody reads: the write fails after the timeout, not before.
        let start = tokio::time::Instant::now();
        let e = w.write_all(&[2; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
