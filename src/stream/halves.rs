//! An upgraded connection's socket, taken back out of hyper's wrappers: its two halves
//! (plain TCP: the socket's own owned halves; TLS: one stream split in two), the read
//! half first yielding the bytes hyper read past the request head. One concrete pair of
//! types for both, so each dialect's session is compiled once, and the HTTP write
//! timeout stays behind with plain HTTP (WebSocket writers have their own limits).

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What `server` wraps an accepted stream in before hyper serves it.
type Served<S> = TokioIo<super::write_timeout::WriteTimeout<S>>;

/// The read half of an upgraded connection.
pub enum ReadSide {
    /// Plain TCP.
    Tcp(Prefixed<OwnedReadHalf>),
    /// TLS.
    Tls(Prefixed<ReadHalf<TlsStream<TcpStream>>>),
}

/// The write half of an upgraded connection.
pub enum WriteSide {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// TLS.
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// The two halves of what hyper upgraded; `None` for a stream type `server` never
/// serves.
pub fn halves(upgraded: hyper::upgrade::Upgraded) -> Option<(ReadSide, WriteSide)> {
    match upgraded.downcast::<Served<TcpStream>>() {
        Ok(parts) => {
            let (r, w) = parts.io.into_inner().into_inner().into_split();
            Some((
                ReadSide::Tcp(Prefixed::new(parts.read_buf, r)),
                WriteSide::Tcp(w),
            ))
        }
        Err(upgraded) => {
            let parts = upgraded.downcast::<Served<TlsStream<TcpStream>>>().ok()?;
            let (r, w) = tokio::io::split(parts.io.into_inner().into_inner());
            Some((
                ReadSide::Tls(Prefixed::new(parts.read_buf, r)),
                WriteSide::Tls(w),
            ))
        }
    }
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadSide::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadSide::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteSide::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteSide::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteSide::Tcp(w) => w.is_write_vectored(),
            WriteSide::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteSide::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteSide::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// A read half that first yields bytes hyper had already read past the request head
/// (a client may send its first frame right behind the handshake).
pub struct Prefixed<R> {
    prefix: Bytes,
    inner: R,
}

impl<R> Prefixed<R> {
    /// `prefix` is read before `inner`. It is copied out (or dropped when empty): a
    /// slice of hyper's read buffer would keep that whole buffer alive for the life of the
    /// connection.
    pub fn new(prefix: Bytes, inner: R) -> Self {
        let prefix = if prefix.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&prefix)
        };
        Prefixed { prefix, inner }
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}
