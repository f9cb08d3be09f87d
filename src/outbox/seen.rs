//! A connection's liveness clock: touched by its reader on every frame, read by its
//! writer at each heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// One base for every clock: a connection's clock is then one word.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    base().elapsed().as_millis() as u64
}

/// When the peer last sent a frame, in milliseconds after a process-wide base.
#[derive(Debug)]
pub struct LastSeen {
    ms: AtomicU64,
}

impl Default for LastSeen {
    fn default() -> Self {
        LastSeen::new()
    }
}

impl LastSeen {
    /// A clock that saw the peer now.
    pub fn new() -> Self {
        LastSeen {
            ms: AtomicU64::new(now_ms()),
        }
    }
    /// The peer sent something.
    pub fn touch(&self) {
        self.ms.store(now_ms(), Ordering::Relaxed);
    }
    /// How long the peer has been silent.
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.ms.load(Ordering::Relaxed)))
    }
}
