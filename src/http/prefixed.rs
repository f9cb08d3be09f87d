//! The read half of an upgraded connection, with the bytes hyper read past the head.

use bytes::Bytes;

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
