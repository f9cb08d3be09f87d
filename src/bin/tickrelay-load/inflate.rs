//! `--deflate`: subscribers that offer permessage-deflate and read compressed frames.
//!
//! fastwebsockets (this tool's client) refuses RSV1, so [`Inflating`] sits under it and
//! hands it plain frames: a relay frame that arrives compressed is held until whole,
//! inflated with the relay's own bounded inflater, and passed on with a plain header.
//! Without `--deflate` it passes bytes through untouched.

use crate::conn::Conn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tickrelay::protocol::deflate::{Inflater, RSV1};
use tickrelay::protocol::encode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest message inflated (the relay's own default limit is far below).
const MAX_MESSAGE: usize = 16 << 20;

/// A client socket whose compressed relay frames are inflated on the way in.
pub struct Inflating {
    inner: Conn,
    deflate: bool,
    /// Bytes read and not yet formed into a whole frame.
    raw: Vec<u8>,
    /// Plain bytes ready for fastwebsockets, from `ready_at` on.
    ready: Vec<u8>,
    ready_at: usize,
    /// Reset for every message (the relay sends without context takeover).
    inflater: Inflater,
}

impl Inflating {
    /// Wraps `inner`; `deflate`: the upgrade offered (and the relay may use) compression.
    pub fn new(inner: Conn, deflate: bool) -> Self {
        Inflating {
            inner,
            deflate,
            raw: Vec::new(),
            ready: Vec::new(),
            ready_at: 0,
            inflater: Inflater::default(),
        }
    }

    /// Moves every whole frame of `raw` to `ready`, inflating compressed ones.
    fn frames(&mut self) -> io::Result<()> {
        let mut at = 0;
        while let Some(h) = encode::decode_head(&self.raw[at..]) {
            let end = at + h.head_len + h.len as usize;
            if self.raw.len() < end {
                break;
            }
            let b0 = self.raw[at];
            if b0 & RSV1 == 0 {
                self.ready.extend_from_slice(&self.raw[at..end]);
            } else {
                let mut plain = Vec::new();
                self.inflater.reset();
                self.inflater
                    .inflate(
                        &self.raw[at + h.head_len..end],
                        true,
                        &mut plain,
                        MAX_MESSAGE,
                    )
                    .map_err(|(_, why)| io::Error::new(io::ErrorKind::InvalidData, why))?;
                self.ready
                    .extend_from_slice(&encode::frame(b0 & 0x0f, &plain));
            }
            at = end;
        }
        self.raw.drain(..at);
        Ok(())
    }
}

impl AsyncRead for Inflating {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.deflate {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        loop {
            if this.ready_at < this.ready.len() {
                let n = (this.ready.len() - this.ready_at).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_at..this.ready_at + n]);
                this.ready_at += n;
                if this.ready_at == this.ready.len() {
                    this.ready.clear();
                    this.ready_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.raw.extend_from_slice(rb.filled());
                    this.frames()?;
                }
                other => return other,
            }
        }
    }
}

impl AsyncWrite for Inflating {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
