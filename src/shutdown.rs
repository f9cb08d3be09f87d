//! The graceful drain: the shutdown flag every task can wait on, and the count of live
//! connections that shutdown waits to reach zero (mini-redis's `shutdown.rs` split).
//!
//! The accept loop raises the flag; plain HTTP connections finish their request, each
//! WebSocket is sent its format's `1001` close behind what it already has queued
//! ([`crate::relay::Relay::close_all`]), and the loop returns once every connection is
//! gone or the grace has passed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Shutdown flag and live-connection count.
#[derive(Debug)]
pub struct Drain {
    flag: watch::Sender<bool>,
    /// Open TCP connections (HTTP and WebSocket).
    live: AtomicUsize,
    all_gone: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            flag: watch::Sender::new(false),
            live: AtomicUsize::new(0),
            all_gone: Notify::new(),
        }
    }
}

/// Counts a connection as live until dropped.
#[derive(Debug)]
pub struct LiveGuard(Arc<Drain>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_gone.notify_waiters();
        }
    }
}

impl Drain {
    /// Counts one more live connection, until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> LiveGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        LiveGuard(self.clone())
    }

    /// Raises the shutdown flag.
    pub fn begin(&self) {
        self.flag.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn started(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn wait_started(&self) {
        let mut rx = self.flag.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Live connections now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Waits until no connection is live, for at most `grace`. Returns whether they all
    /// went.
    pub async fn wait_all_gone(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, async {
            loop {
                let notified = self.all_gone.notified();
                if self.live() == 0 {
                    break;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_ends_when_the_last_guard_goes() {
        let d = Arc::new(Drain::default());
        assert!(!d.started());
        let a = d.track();
        let b = d.track();
        d.begin();
        assert!(d.started());
        d.wait_started().await;
        assert!(!d.wait_all_gone(Duration::from_millis(20)).await);
        drop(a);
        let waiter = tokio::spawn({
            let d = d.clone();
            async move { d.wait_all_gone(Duration::from_secs(5)).await }
        });
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(d.live(), 0);
    }
}
