//! Waking a connection's writer: the outbox's `Notify`, and the wakes held back while
//! the connection's own task runs its reader (see [`Outbox::quiet`]).

use std::sync::atomic::{AtomicBool, Ordering};

use super::Outbox;

pin_project_lite::pin_project! {
    /// [`Outbox::ready`]: a wake held back while the reader ran, or the next one.
    pub struct Ready<'a> {
        missed: &'a AtomicBool,
        #[pin]
        notified: tokio::sync::futures::Notified<'a>,
    }
}

impl std::future::Future for Ready<'_> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let me = self.project();
        if me.missed.swap(false, Ordering::SeqCst) {
            return std::task::Poll::Ready(());
        }
        me.notified.poll(cx)
    }
}

impl Outbox {
    /// Wakes the writer. While the connection's own reader runs (`quiet`), the wake is
    /// left for the writer's next [`Outbox::ready`] poll, which follows in the same turn.
    pub(super) fn notify(&self) {
        if self.quiet.load(Ordering::Relaxed) {
            self.missed.store(true, Ordering::SeqCst);
            // Either this sees `quiet` still set, and the writer's poll after it is
            // cleared sees `missed`, or it sees it cleared and wakes as usual.
            if self.quiet.load(Ordering::SeqCst) {
                return;
            }
        }
        self.wake.notify_one();
    }

    /// Marks the connection's own task as running its reader (`on`), or done with it.
    /// The task polls the writer right after, so a reply or an ack queued meanwhile is
    /// written in the same turn, without a wake. (A wake of the running task requeues it
    /// at the back of the run queue, where a publisher's next burst then waited behind
    /// every subscriber its last one woke: W1 wrote ~26 deliveries per `writev` instead
    /// of ~36.)
    pub fn quiet(&self, on: bool) {
        self.quiet.store(on, Ordering::SeqCst);
    }

    /// Waits until there may be something new to take.
    pub fn ready(&self) -> Ready<'_> {
        Ready {
            missed: &self.missed,
            notified: self.wake.notified(),
        }
    }
}
