//! A connection's authentication deadline (token expiry, `auth` op timeout) and the
//! close code it ends the connection with.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Close code for authentication failures on a live connection (token expired, no `auth`
/// in time): "do not reconnect without a new token".
pub const CLOSE_AUTH: u16 = crate::protocol::close::CloseCode::AUTH.0;

/// Why a connection's deadline closes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Why {
    /// The token's `exp` (plus leeway) passed without a refresh.
    Expired = 1,
    /// No credential arrived within `--auth-timeout-ms` where one was needed.
    NoAuth = 2,
}

/// A connection's authentication deadline, shared by its reader (sets it) and writer
/// (closes the connection with 4001 when it passes).
#[derive(Debug)]
pub struct Deadline {
    base: Instant,
    /// Milliseconds after `base`; `u64::MAX`: none.
    at_ms: AtomicU64,
    why: AtomicU8,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline {
            base: Instant::now(),
            at_ms: AtomicU64::new(u64::MAX),
            why: AtomicU8::new(0),
        }
    }
}

impl Deadline {
    /// Sets (or with `None` clears) the deadline.
    pub fn set(&self, at: Option<Instant>, why: Why) {
        let ms = at.map_or(u64::MAX, |t| {
            t.saturating_duration_since(self.base).as_millis() as u64
        });
        self.why.store(why as u8, Ordering::Relaxed);
        self.at_ms.store(ms, Ordering::Release);
    }

    /// When it falls due, if set.
    pub fn due(&self) -> Option<Instant> {
        match self.at_ms.load(Ordering::Acquire) {
            u64::MAX => None,
            ms => Some(self.base + Duration::from_millis(ms)),
        }
    }

    /// If the deadline has passed: clears it and returns the close reason.
    pub fn fire(&self, now: Instant) -> Option<&'static str> {
        let due = self.due()?;
        if now < due {
            return None;
        }
        self.at_ms.store(u64::MAX, Ordering::Release);
        Some(match self.why.load(Ordering::Relaxed) {
            x if x == Why::NoAuth as u8 => crate::protocol::close::AUTH_TIMEOUT,
            _ => "token expired: refresh with an auth op before exp",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_fires_once() {
        let d = Deadline::default();
        let now = Instant::now();
        assert_eq!(d.fire(now), None);
        d.set(Some(now), Why::NoAuth);
        assert!(d.fire(now).unwrap().contains("authentication"));
        assert_eq!(d.fire(now), None);
        d.set(Some(now + Duration::from_secs(5)), Why::Expired);
        assert_eq!(d.fire(now), None);
        assert!(d
            .fire(now + Duration::from_secs(6))
            .unwrap()
            .contains("expired"));
    }
}
