//! Frame boundaries on the bytes a client sends, so an idle connection holds no read
//! buffer.
//!
//! fastwebsockets gives every reader an 8 KiB buffer for the life of the connection;
//! with 20,000 mostly silent dashboard connections that is most of the relay's memory.
//! [`Tracked`] sits between the socket and fastwebsockets and follows frame headers
//! as bytes pass (a few words of state, no copy). When every byte delivered so far
//! belongs to frames fastwebsockets has already returned, its buffer is empty and the
//! reader can be dropped, and rebuilt when the client sends again ([`Tracked::fill`]).
//!
//! The tracker also enforces RFC 6455 §5.1, which fastwebsockets does not expose: a
//! client frame that is not masked fails the connection (1002).

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The error a [`Tracked`] reader fails with when a client frame is not masked.
pub const UNMASKED: &str = "client frames must be masked";

/// Follows frame headers through a byte stream.
#[derive(Debug, Clone)]
pub struct FrameTracker {
    head: [u8; 14],
    have: usize,
    need: usize,
    payload_left: u64,
    in_payload: bool,
    frames: u64,
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker {
            head: [0; 14],
            have: 0,
            need: 2,
            payload_left: 0,
            in_payload: false,
            frames: 0,
        }
    }
}

impl FrameTracker {
    /// Frames whose last byte has been seen.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The bytes seen so far end exactly at a frame boundary.
    pub fn at_boundary(&self) -> bool {
        !self.in_payload && self.have == 0
    }

    fn frame_done(&mut self) {
        self.frames += 1;
        self.in_payload = false;
        self.have = 0;
        self.need = 2;
    }

    /// Follows `bytes`, the next bytes of the stream. Fails on an unmasked frame.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() {
            if self.in_payload {
                let take = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= take;
                bytes = &bytes[take as usize..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            let take = (self.need - self.have).min(bytes.len());
            self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have < self.need {
                continue;
            }
            let code = self.head[1] & 0x7f;
            let ext = match code {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if self.need == 2 {
                if self.head[1] & 0x80 == 0 {
                    return Err(UNMASKED);
                }
                self.need = 2 + ext + 4;
                continue;
            }
            let len = match ext {
                2 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
                8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&self.head[2..10]);
                    u64::from_be_bytes(b)
                }
                _ => code as u64,
            };
            if len == 0 {
                self.frame_done();
            } else {
                self.in_payload = true;
                self.payload_left = len;
                self.have = 0;
            }
        }
        Ok(())
    }
}

/// What the read loop needs to know of a [`Tracked`] reader while fastwebsockets holds
/// it: complete frames seen, and whether the stream is at rest between frames.
#[derive(Debug, Default)]
pub struct Rest(AtomicU64);

const AT_REST: u64 = 1 << 63;

impl Rest {
    /// True when every byte delivered belongs to the first `returned` frames (so
    /// fastwebsockets, having returned that many, holds nothing).
    pub fn drained(&self, returned: u64) -> bool {
        self.0.load(Ordering::Relaxed) == AT_REST | returned
    }
}

/// A reader that tracks frame boundaries and can wait for data without a buffer.
pub struct Tracked<R> {
    inner: R,
    /// Bytes read by [`Tracked::fill`] and not yet handed on.
    prefix: Bytes,
    tracker: FrameTracker,
    rest: Arc<Rest>,
}

impl<R: AsyncRead + Unpin> Tracked<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Tracked {
            inner,
            prefix: Bytes::new(),
            tracker: FrameTracker::default(),
            rest: Arc::default(),
        }
    }

    /// The shared view for the read loop.
    pub fn rest(&self) -> Arc<Rest> {
        self.rest.clone()
    }

    fn publish(&self) {
        let at_rest = self.prefix.is_empty() && self.tracker.at_boundary();
        let v = self.tracker.frames() | if at_rest { AT_REST } else { 0 };
        self.rest.0.store(v, Ordering::Relaxed);
    }

    fn track(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tracker
            .feed(bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Waits until the client sends something and keeps up to 512 bytes of it, so
    /// that an idle connection waits with no buffer at all. Returns the bytes read
    /// (0: end of stream).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if !self.prefix.is_empty() {
            return Ok(self.prefix.len());
        }
        let n = std::future::poll_fn(|cx| {
            // On the stack only for the duration of one poll.
            let mut buf = [0u8; 512];
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if !got.is_empty() {
                        self.prefix = Bytes::copy_from_slice(got);
                    }
                    Poll::Ready(Ok(got.len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        let prefix = self.prefix.clone();
        self.track(&prefix)?;
        self.publish();
        Ok(n)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.prefix.is_empty() {
            // Already tracked when it was read.
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            this.publish();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if let Err(e) = this.tracker.feed(new) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                }
                this.publish();
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(fin_op: u8, payload_len: usize) -> Vec<u8> {
        let mut f = vec![fin_op];
        match payload_len {
            0..=125 => f.push(0x80 | payload_len as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', payload_len));
        f
    }

    #[test]
    fn boundaries_are_found_for_every_length_form_and_any_split() {
        let mut stream = Vec::new();
        for len in [0, 1, 125, 126, 65535, 65536] {
            stream.extend(masked(0x81, len));
        }
        for chunk in [1, 2, 3, 7, 100, 4096, stream.len()] {
            let mut t = FrameTracker::default();
            let mut boundaries = 0;
            for piece in stream.chunks(chunk) {
                t.feed(piece).unwrap();
                boundaries += t.at_boundary() as u64;
            }
            assert_eq!(t.frames(), 6, "chunk {chunk}");
            assert!(t.at_boundary());
            assert!(boundaries >= 1);
        }
        let mut t = FrameTracker::default();
        t.feed(&stream[..stream.len() - 1]).unwrap();
        assert_eq!(t.frames(), 5);
        assert!(!t.at_boundary(), "one byte of the last payload missing");
    }

    #[test]
    fn an_unmasked_frame_is_refused_at_its_second_byte() {
        let mut t = FrameTracker::default();
        t.feed(&masked(0x81, 3)).unwrap();
        assert_eq!(t.feed(&[0x81]), Ok(()));
        assert_eq!(t.feed(&[0x03, b'a', b'b', b'c']), Err(UNMASKED));
    }

    #[tokio::test]
    async fn fill_waits_without_a_buffer_and_rest_reports_drained() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut t = Tracked::new(server);
        let rest = t.rest();
        let frame = masked(0x81, 5);
        client.write_all(&frame[..3]).await.unwrap();
        assert_eq!(t.fill().await.unwrap(), 3);
        assert!(!rest.drained(0), "a partial frame is waiting");
        client.write_all(&frame[3..]).await.unwrap();
        let mut out = vec![0u8; frame.len()];
        t.read_exact(&mut out).await.unwrap();
        assert_eq!(out, frame);
        assert!(rest.drained(1));
        assert!(!rest.drained(0));
        drop(client);
        assert_eq!(t.fill().await.unwrap(), 0, "end of stream");
    }
}
