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
//!
//! With permessage-deflate negotiated it is also where a compressed message's first
//! frame is recognised, in the one place that already follows every header:
//! fastwebsockets refuses RSV1, so the tracker clears it as the byte passes (a text
//! frame also becomes binary, or fastwebsockets would check the compressed bytes as
//! UTF-8) and notes the frame's number and opcode in [`Rest`]; the reader then inflates
//! that frame's message ([`super::reassembly`]). RSV1 on a control or continuation
//! frame, or without the extension, is left for fastwebsockets to refuse (1002).

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
    /// permessage-deflate was negotiated: RSV1 data frames are taken (see the module docs).
    deflate: bool,
    /// Compressed frames seen and not yet handed to [`Rest`]: number << 1 | text.
    compressed: Vec<u64>,
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
            deflate: false,
            compressed: Vec::new(),
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

    /// A tracker that takes compressed (RSV1) data frames.
    pub fn with_deflate() -> Self {
        FrameTracker {
            deflate: true,
            ..FrameTracker::default()
        }
    }

    /// Follows `bytes`, the next bytes of the stream, clearing RSV1 on the first byte of
    /// a compressed data frame. Fails on an unmasked frame.
    pub fn feed(&mut self, mut bytes: &mut [u8]) -> Result<(), &'static str> {
        while !bytes.is_empty() {
            if self.deflate && !self.in_payload && self.have == 0 {
                self.take_compressed(&mut bytes[0]);
            }
            if self.in_payload {
                let take = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= take;
                bytes = &mut std::mem::take(&mut bytes)[take as usize..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
                continue;
            }
            let take = (self.need - self.have).min(bytes.len());
            self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &mut std::mem::take(&mut bytes)[take..];
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

impl FrameTracker {
    /// `b0`, a frame's first byte: a text or binary frame with RSV1 (and neither RSV2
    /// nor RSV3) is a compressed message's first frame.
    fn take_compressed(&mut self, b0: &mut u8) {
        let op = *b0 & 0x0f;
        if *b0 & 0x70 != 0x40 || !(op == 0x1 || op == 0x2) {
            return;
        }
        *b0 = (*b0 & 0x80) | 0x2;
        self.compressed
            .push((self.frames + 1) << 1 | (op == 0x1) as u64);
    }

    /// The compressed frames seen since the last call (number << 1 | text).
    pub fn drain_compressed(&mut self) -> std::vec::Drain<'_, u64> {
        self.compressed.drain(..)
    }
}

/// What the read loop needs to know of a [`Tracked`] reader while fastwebsockets holds
/// it: complete frames seen, and whether the stream is at rest between frames.
#[derive(Debug, Default)]
pub struct Rest(
    AtomicU64,
    parking_lot::Mutex<std::collections::VecDeque<u64>>,
);

const AT_REST: u64 = 1 << 63;

impl Rest {
    /// True when every byte delivered belongs to the first `returned` frames (so
    /// fastwebsockets, having returned that many, holds nothing).
    pub fn drained(&self, returned: u64) -> bool {
        self.0.load(Ordering::Relaxed) == AT_REST | returned
    }

    /// Whether frame number `n` (counted from 1) came compressed, and if so whether it
    /// was text (its opcode now says binary). Asked in frame order, each frame once.
    pub fn compressed(&self, n: u64) -> Option<bool> {
        let mut q = self.1.lock();
        let first = *q.front()?;
        if first >> 1 != n {
            return None;
        }
        q.pop_front();
        Some(first & 1 == 1)
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

    /// Takes compressed data frames (permessage-deflate was negotiated).
    pub fn with_deflate(mut self) -> Self {
        self.tracker = FrameTracker::with_deflate();
        self
    }

    /// The shared view for the read loop.
    pub fn rest(&self) -> Arc<Rest> {
        self.rest.clone()
    }

    fn publish(&mut self) {
        let mut taken = self.tracker.drain_compressed().peekable();
        if taken.peek().is_some() {
            self.rest.1.lock().extend(taken);
        } else {
            drop(taken);
        }
        let at_rest = self.prefix.is_empty() && self.tracker.at_boundary();
        let v = self.tracker.frames() | if at_rest { AT_REST } else { 0 };
        self.rest.0.store(v, Ordering::Relaxed);
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
                    let n = rb.filled().len();
                    let got = &mut buf[..n];
                    if let Err(e) = self.tracker.feed(got) {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                    if n > 0 {
                        self.prefix = Bytes::copy_from_slice(got);
                    }
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
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
                let new = &mut buf.filled_mut()[before..];
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
                t.feed(&mut piece.to_vec()).unwrap();
                boundaries += t.at_boundary() as u64;
            }
            assert_eq!(t.frames(), 6, "chunk {chunk}");
            assert!(t.at_boundary());
            assert!(boundaries >= 1);
        }
        let mut t = FrameTracker::default();
        let n = stream.len() - 1;
        t.feed(&mut stream[..n]).unwrap();
        assert_eq!(t.frames(), 5);
        assert!(!t.at_boundary(), "one byte of the last payload missing");
    }

    #[test]
    fn an_unmasked_frame_is_refused_at_its_second_byte() {
        let mut t = FrameTracker::default();
        t.feed(&mut masked(0x81, 3)).unwrap();
        assert_eq!(t.feed(&mut [0x81]), Ok(()));
        assert_eq!(t.feed(&mut [0x03, b'a', b'b', b'c']), Err(UNMASKED));
    }

    #[test]
    fn compressed_data_frames_lose_rsv1_and_are_noted() {
        let mut stream = Vec::new();
        stream.extend(masked(0xc1, 3)); // 1: compressed text
        stream.extend(masked(0x81, 3)); // 2: plain text
        stream.extend(masked(0x42, 3)); // 3: compressed binary, not FIN
        stream.extend(masked(0xc0, 3)); // 4: RSV1 on a continuation: left alone
        stream.extend(masked(0xc9, 0)); // 5: RSV1 on a ping: left alone
        stream.extend(masked(0xe1, 1)); // 6: RSV1 and RSV2: left alone
        let mut plain = stream.clone();
        FrameTracker::default().feed(&mut plain).unwrap();
        assert_eq!(plain, stream, "without the extension nothing changes");
        for chunk in [1, 5, stream.len()] {
            let mut s = stream.clone();
            let mut t = FrameTracker::with_deflate();
            for piece in s.chunks_mut(chunk) {
                t.feed(piece).unwrap();
            }
            assert_eq!(t.frames(), 6);
            assert_eq!(
                t.drain_compressed().collect::<Vec<_>>(),
                [1 << 1 | 1, 3 << 1]
            );
            let firsts: Vec<u8> = [0, 9, 18, 27, 36, 42].iter().map(|&i| s[i]).collect();
            assert_eq!(
                firsts,
                [0x82, 0x81, 0x02, 0xc0, 0xc9, 0xe1],
                "chunk {chunk}"
            );
        }
        let rest = Rest::default();
        rest.1.lock().extend([1 << 1 | 1, 3 << 1]);
        assert_eq!(rest.compressed(1), Some(true));
        assert_eq!(rest.compressed(2), None);
        assert_eq!(rest.compressed(3), Some(false));
        assert_eq!(rest.compressed(4), None);
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
