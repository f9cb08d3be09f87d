//! A connection's task: the session opened, then its reader and writer polled side by
//! side by one hand-written future ([`Both`]) until the connection ends.
//!
//! An idle connection is mostly this task, so its state is kept to what an idle
//! connection needs: the futures are built by plain functions (an `async fn` keeps its
//! arguments beside the locals they move into, rust-lang/rust#62958) and nothing is
//! held twice (the size test below; W3 in `benches/README.md`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{reader, remote, writer, Params, Session};
use crate::dialect::Dialect;
use crate::outbox::Outbox;
use crate::relay::Relay;

/// Unregisters a connection's outbox however its task ends.
pub(super) struct Registered(pub(super) Arc<Relay>, pub(super) u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.unregister(self.1);
    }
}

/// Runs a connection whose handshake is complete, until it is closed. `read` and
/// `write` are the two halves of the upgraded stream; `dialect` is what it speaks.
///
/// The setup is a plain function, so nothing it used (the parameters, the identity)
/// stays in the future an idle connection holds.
pub fn run<R, W, D>(
    read: R,
    write: W,
    relay: Arc<Relay>,
    dialect: D,
    params: Params,
) -> impl std::future::Future<Output = ()> + Send
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    D: Dialect,
{
    let (session, registered) = open(&relay, dialect, params);
    resume(read, write, relay, session, registered)
}

/// A new connection's session, registered, with its welcome and `?channels=` queued.
fn open<D: Dialect>(relay: &Arc<Relay>, dialect: D, params: Params) -> (Session<D>, Registered) {
    let cfg = &relay.config;
    let conn = relay.next_conn_id();
    let limit = if D::RELAY {
        match params.identity.relay() {
            true => cfg.upstream.relay_queue_bytes, // an edge relay: many clients' traffic
            false => cfg.queue_bytes,
        }
    } else {
        // Echo must hold a whole echoed message however small the queue setting is.
        cfg.queue_bytes.max(2 * cfg.max_message_bytes + 1024)
    };
    let outbox = Arc::new(
        Outbox::with_lanes(
            limit,
            cfg.conflate_after_bytes,
            Duration::from_millis(cfg.lagging_notice_ms),
        )
        .for_format(dialect.format())
        .with_deflate(params.deflate),
    );
    relay.register(
        conn,
        crate::relay::Conn {
            outbox: outbox.clone(),
            peer: params.peer,
            since: std::time::Instant::now(),
            dialect: D::NAME,
        },
    );
    let registered = Registered(relay.clone(), conn);
    // Registered before this check, so a shutdown either sees this outbox in its walk
    // or has already raised the flag seen here.
    if relay.is_shutting_down() {
        outbox.close_with(crate::relay::shutdown_close(outbox.format()));
    }
    if let Some(c) = D::counters(&relay.metrics) {
        c.opened.fetch_add(1, Ordering::Relaxed);
    }
    let mut session = Session::new(relay.clone(), outbox.clone(), conn, dialect, &params);
    session.dialect.attach(conn, cfg.heartbeat_ms);
    if D::RELAY {
        if let Some(w) = session.dialect.welcome(conn, cfg.heartbeat_ms) {
            session.reply(w);
        }
        if let Some(o) = session.dialect.opened() {
            session.on_owned(o, false);
        }
        if relay.sequenced_elsewhere() && !params.channels.is_empty() {
            // Loaded from Redis first, by the reader (see `remote`).
            session.defer(remote::Slot::Connect(params.channels));
        } else {
            session.connect(params.channels);
        }
    }
    (session, registered)
}

/// Runs an open session on a WebSocket: a long-polling session upgraded to one keeps
/// its subscriptions and its queue (see [`polling`]).
pub(super) fn resume<R, W, D>(
    read: R,
    write: W,
    relay: Arc<Relay>,
    session: Session<D>,
    registered: Registered,
) -> impl std::future::Future<Output = ()> + Send
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
    D: Dialect,
{
    let heartbeat = session.dialect.heartbeat();
    let outbox = session.outbox.clone();
    let max = relay.config.max_message_bytes;
    let close_timeout = Duration::from_millis(relay.config.close_timeout_ms);
    let writer = writer::write_loop(write, outbox.clone(), relay.clone(), heartbeat);
    Both {
        reader: Some(reader::read_loop(read, session, max)),
        writer: Some(writer),
        grace: None,
        close_timeout,
        outbox,
        registered,
    }
}

pin_project_lite::pin_project! {
    /// A connection's reader and writer, polled side by side in its one task (an idle
    /// connection pays for one task, not two, and no `JoinHandle`). `read_frame` is not
    /// cancellation-safe, so the reader is never raced: both run until the writer ends
    /// (close sent, peer gone, shutdown); then the reader has `close_timeout` to see the
    /// peer's close before it is dropped, which, as an abort did, releases the
    /// subscriptions through [`Session`]'s `Drop`. A hand-written future: an `async fn`
    /// keeps its arguments beside the locals they move into, and this state is most of
    /// what an idle connection holds.
    struct Both<R, W> {
        #[pin]
        reader: Option<R>,
        #[pin]
        writer: Option<W>,
        // Made once, when the writer ends: an idle connection holds no timer.
        grace: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
        close_timeout: Duration,
        // The outbox the reader queues to and the writer drains (see `Outbox::quiet`).
        outbox: Arc<Outbox>,
        registered: Registered,
    }
}

impl<R, W> std::future::Future for Both<R, W>
where
    R: std::future::Future<Output = ()>,
    W: std::future::Future<Output = ()>,
{
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        use std::task::Poll;
        let mut me = self.project();
        // The reader first: what it queues (a publisher's acks, replies) is written by the
        // writer in the same poll. Writer first, a publisher's ack waited for the task's
        // next turn, behind every subscriber its publish woke: its pipeline stalled and
        // W1 wrote ~20 deliveries per `writev` instead of ~36 (relay CPU per delivery
        // 1.45x; benches/README.md).
        if let Some(r) = me.reader.as_mut().as_pin_mut() {
            me.outbox.quiet(true);
            let done = r.poll(cx).is_ready();
            me.outbox.quiet(false);
            if done {
                me.reader.set(None);
            }
        }
        if let Some(w) = me.writer.as_mut().as_pin_mut() {
            if w.poll(cx).is_ready() {
                me.writer.set(None);
                *me.grace = Some(Box::pin(tokio::time::sleep(*me.close_timeout)));
            }
        }
        if me.reader.is_some() {
            match me.grace.as_mut().map(|g| g.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => me.reader.set(None), // the peer never closed
                _ => return Poll::Pending,
            }
        }
        match me.writer.is_some() {
            true => Poll::Pending,
            false => Poll::Ready(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's task is mostly its future's state: keep it small. (The
    /// writer once held its 64-entry `IoSlice` array across the await: +1 KB a connection.)
    #[test]
    fn session_futures_stay_small() {
        let relay = Relay::new(crate::Config::default());
        let (a, b) = tokio::io::duplex(64);
        let (r, w) = tokio::io::split(a);
        let params = Params {
            identity: Default::default(),
            channels: vec![],
            peer: ([127, 0, 0, 1], 9).into(),
            deflate: Default::default(),
        };
        let dialect = crate::dialect::V1::new(crate::protocol::format::Format::ENVELOPE);
        let run_size = std::mem::size_of_val(&run(r, w, relay.clone(), dialect, params));
        let (r, w) = tokio::io::split(b);
        let ping = &crate::protocol::encode::PING_FRAME;
        let write_size = std::mem::size_of_val(&writer::write_loop(
            w,
            Arc::new(Outbox::new(10)),
            relay.clone(),
            ping,
        ));
        let dialect = crate::dialect::V1::new(crate::protocol::format::Format::ENVELOPE);
        let session = Session::new(
            relay.clone(),
            Arc::new(Outbox::new(10)),
            1,
            dialect,
            &Params {
                identity: Default::default(),
                channels: vec![],
                peer: ([127, 0, 0, 1], 9).into(),
                deflate: Default::default(),
            },
        );
        let session_size = std::mem::size_of_val(&session);
        let read_size = std::mem::size_of_val(&reader::read_loop(r, session, 10));
        let (batch, mut sink) = (std::collections::VecDeque::new(), tokio::io::sink());
        let batch_size = std::mem::size_of_val(&writer::write_batch(&mut sink, &batch));
        eprintln!(
            "session {session_size}, read_loop {read_size}, write_loop {write_size}, run {run_size}, write_batch {batch_size}"
        );
        assert!(batch_size <= 128, "write_batch future: {batch_size} bytes");
        assert!(session_size <= 192, "Session<V1>: {session_size} bytes");
        assert!(read_size <= 480, "read_loop future: {read_size} bytes");
        assert!(write_size <= 576, "write_loop future: {write_size} bytes");
        // The connection's whole task: reader and writer side by side, each once (it
        // was 2.2 KB while an `async fn` kept both futures twice, and ~3.6 KB in two
        // tasks before that; W3 in benches/README.md).
        assert!(run_size <= 1088, "run future: {run_size} bytes");
    }
}
