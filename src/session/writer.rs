//! The writer side of a connection: the loop that drains the outbox, sends the
//! heartbeat and enforces the auth deadline and idle timeout; and its I/O, everything
//! queued going out in as few syscalls as possible.

use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::outbox::{LastSeen, Outbox};
use crate::protocol::close::CloseCode;
use crate::relay::Relay;

/// Drains the outbox into `w` until the connection ends. Owns what it uses, so the
/// reader and writer of a connection can be polled side by side in one task
/// (`session::Both`) without a borrow between them. A plain function around an `async`
/// block: an `async fn` would keep its arguments twice (rust-lang/rust#62958).
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
pub(super) fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    outbox: Arc<Outbox>,
    relay: Arc<Relay>,
    heartbeat: &'static [u8],
) -> impl Future<Output = ()> {
    async move {
        let (outbox, relay) = (&*outbox, &*relay);
        let deadline = outbox.deadline();
        let last_seen = outbox.seen();
        let cfg = &relay.config;
        let format = outbox.format();
        let beat = cfg.heartbeat();
        let mut next_beat = Instant::now() + beat;
        let mut batch = VecDeque::new();
        // Give the queues' buffers back when the writer next sleeps: after the welcome, and
        // after a heartbeat interval in which nothing but the heartbeat went out (a replay's
        // thousand-frame buffer is not kept for the life of a connection that went quiet).
        let mut release = true;
        let mut sent_since_beat = 0usize;
        let grace = Duration::from_millis(cfg.slow_close_grace_ms);
        // Shutdown reaches the writer through the outbox (see `Relay::close_all`), not through
        // a watch each wait would have to register with. The timer is made per wait: one kept
        // for the life of the connection saved ~15% of the instructions per delivery but cost
        // ~380 B of RSS per idle connection (W3 5.65 -> 6.05 KiB), and W2 did not move.
        loop {
            let now = Instant::now();
            if let Some(reason) = deadline.fire(now) {
                outbox.close_with(format.close(CloseCode::AUTH, reason));
            }
            if now >= next_beat {
                next_beat += beat;
                release |= sent_since_beat <= 1;
                sent_since_beat = 0;
                if last_seen.silent_for() >= cfg.idle_timeout() {
                    let reason = crate::protocol::close::HEARTBEAT_TIMEOUT;
                    outbox.close_with(format.close(CloseCode::GOING_AWAY, reason));
                } else {
                    outbox.push(&Bytes::from_static(heartbeat));
                }
            }
            let taken = outbox.take(&mut batch);
            if batch.is_empty() {
                if taken.last {
                    break;
                }
                if release {
                    release = false;
                    batch = VecDeque::new();
                    outbox.trim();
                }
                let mut wake_at = taken
                    .next_due
                    .map_or(next_beat, |due| next_beat.min(due.into()));
                if let Some(d) = deadline.due() {
                    wake_at = wake_at.min(d);
                }
                tokio::select! {
                    biased;
                    _ = outbox.ready() => {}
                    _ = tokio::time::sleep_until(wake_at) => {}
                }
                continue;
            }
            // Most writes complete at once; only a write that has to wait for the socket is
            // raced against the slow-consumer grace.
            let res = {
                let write = write_batch(&mut w, &batch);
                tokio::pin!(write);
                match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                    Poll::Ready(r) => r,
                    // The socket is full. Boxed: this state exists only while a write waits,
                    // and an idle connection's future stays as small as it was.
                    Poll::Pending => {
                        let timers = Timers {
                            outbox,
                            last_seen,
                            deadline,
                            idle: cfg.idle_timeout(),
                            grace,
                            close_after: Duration::from_millis(cfg.close_timeout_ms),
                        };
                        Box::pin(timers.race(write.as_mut())).await
                    }
                }
            };
            if outbox.format() == crate::protocol::format::Format::LEGEND {
                let frames = batch.iter().filter(|f| !f.is_empty()).count() as u64;
                relay
                    .metrics
                    .legend
                    .sent
                    .fetch_add(frames, Ordering::Relaxed);
            }
            sent_since_beat += batch.len();
            batch.clear();
            outbox.release(taken.bytes);
            match res {
                Ok(n) => {
                    relay
                        .metrics
                        .bytes_out
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(_) => {
                    outbox.abort();
                    break;
                }
            }
            if taken.last {
                break;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
        // Counted once nothing more can be discarded: the queue is closed.
        relay
            .metrics
            .dropped
            .fetch_add(outbox.dropped(), Ordering::Relaxed);
    }
}

/// What a write blocked on a full socket still answers to: a slow-consumer doom, the
/// peer's silence past the idle timeout, the auth deadline, and a close that cannot get
/// through. Any of them abandons the write (the socket is dropped: nothing more can be
/// sent to a peer that does not read).
struct Timers<'a> {
    outbox: &'a Outbox,
    last_seen: &'a LastSeen,
    deadline: &'a crate::auth::Deadline,
    idle: Duration,
    grace: Duration,
    close_after: Duration,
}

impl Timers<'_> {
    async fn race<F>(self, mut write: std::pin::Pin<&mut F>) -> io::Result<usize>
    where
        F: Future<Output = io::Result<usize>>,
    {
        let blocked_since = Instant::now();
        let timed_out = || Err(io::ErrorKind::TimedOut.into());
        loop {
            let now = Instant::now();
            if self.deadline.fire(now).is_some()
                || self.last_seen.silent_for() >= self.idle
                || (self.outbox.is_closing() && now >= blocked_since + self.close_after)
            {
                return timed_out();
            }
            let mut check_at = now + (self.idle / 4).max(Duration::from_millis(10));
            if let Some(d) = self.deadline.due() {
                check_at = check_at.min(d);
            }
            tokio::select! {
                r = write.as_mut() => return r,
                _ = self.outbox.doomed(self.grace) => return timed_out(),
                _ = tokio::time::sleep_until(check_at) => {}
            }
        }
    }
}

/// Frames per `writev` call (well under the kernel's IOV_MAX of 1024). At ~150-byte ticks
/// that is ~10 KB per syscall; larger batches gain little and hold the slice array on
/// the stack.
const MAX_IOV: usize = 64;

/// Writes every frame of `batch`, gathering up to [`MAX_IOV`] frames per vectored write.
/// Returns the bytes written. Cancel-safe in the sense that matters here: when the future
/// is dropped the connection is being abandoned.
///
/// The slice array lives only inside each poll, not in the future: an idle connection's
/// writer keeps a few words of state here instead of a kilobyte.
pub async fn write_batch<W: AsyncWrite + Unpin>(
    w: &mut W,
    batch: &VecDeque<Bytes>,
) -> io::Result<usize> {
    let (mut idx, mut off, mut total) = (0usize, 0usize, 0usize);
    std::future::poll_fn(|cx| loop {
        while idx < batch.len() && off == batch[idx].len() {
            idx += 1;
            off = 0;
        }
        if idx == batch.len() {
            return Poll::Ready(Ok(total));
        }
        // Uninitialised inline storage: a batch of one frame (the usual case for a
        // connection that keeps up) does not pay for clearing 64 slices.
        let mut slices: SmallVec<[IoSlice<'_>; MAX_IOV]> = SmallVec::new();
        for (k, frame) in batch.iter().enumerate().skip(idx) {
            if slices.len() == MAX_IOV {
                break;
            }
            let part = if k == idx { &frame[off..] } else { &frame[..] };
            if !part.is_empty() {
                slices.push(IoSlice::new(part));
            }
        }
        let mut written = match Pin::new(&mut *w).poll_write_vectored(cx, &slices) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(k)) => k,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        total += written;
        while written > 0 {
            let left = batch[idx].len() - off;
            if written >= left {
                written -= left;
                idx += 1;
                off = 0;
            } else {
                off += written;
                written = 0;
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Accepts at most `step` bytes per call, to exercise partial writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.step - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.step {
                    break;
                }
            }
            self.calls += 1;
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_mid_frame_and_keep_order() {
        let frames: VecDeque<Bytes> = (0..200u32)
            .map(|i| Bytes::from(format!("frame-{i};")))
            .chain([Bytes::new()])
            .collect();
        let want: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        for step in [1, 7, 64, 100_000] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
                calls: 0,
            };
            let n = write_batch(&mut w, &frames).await.unwrap();
            assert_eq!((n, &w.out), (want.len(), &want), "step {step}");
            if step == 100_000 {
                assert_eq!(
                    w.calls,
                    200_usize.div_ceil(MAX_IOV),
                    "one syscall per {MAX_IOV} frames"
                );
            }
        }
    }
}
