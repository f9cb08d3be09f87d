//! Abuse limits that are not about bytes: commands per second per connection (a token
//! bucket) and open connections per client address.
//!
//! The per-address table holds an entry only while an address has a connection open, so
//! it shrinks back to nothing when abusive clients leave.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` 0 means unlimited.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Run,
    /// Refuse it with `rate_limited`.
    Refuse,
    /// Refused too often: close the connection with 1008.
    Close,
}

/// A connection's command limit: a [`TokenBucket`] and a count of strikes: each refusal
/// adds one and each command run takes one away, so a client that keeps sending at more
/// than twice the rate is closed however the bucket's refills interleave (counting
/// refusals *in a row* let a flooder at ten times the rate go on for ever: every tenth
/// command ran and reset the count).
#[derive(Debug, Clone)]
pub struct CommandLimit {
    bucket: TokenBucket,
    strikes: u32,
    close_after: u32,
}

impl CommandLimit {
    /// `rate` commands per second with `burst`; `close_after` strikes (0: never) end the
    /// connection.
    pub fn new(rate: u32, burst: u32, close_after: u32) -> Self {
        CommandLimit {
            bucket: TokenBucket::new(rate, burst, Instant::now()),
            strikes: 0,
            close_after,
        }
    }

    /// Judges one command arriving `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now) {
            self.strikes = self.strikes.saturating_sub(1);
            return Verdict::Run;
        }
        self.strikes = self.strikes.saturating_add(1);
        if self.close_after > 0 && self.strikes >= self.close_after {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

/// The unit an address limit counts: an IPv4 address, or the /64 network of an IPv6 one
/// (one host usually holds a whole /64). IPv4-mapped IPv6 counts as IPv4.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open WebSocket connections per client address.
#[derive(Debug, Default)]
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one of an address's places until dropped.
#[derive(Debug)]
pub struct IpSlot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl PerIp {
    /// At most `max` connections per address (0: no limit).
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a place for `ip`, or `None` when it has `max` open already.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = ip_key(ip);
        let mut open = self.open.lock();
        let n = open.entry(key).or_insert(0);
        if self.max > 0 && *n >= self.max {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            key,
        })
    }

    /// Addresses with a connection open (for `/stats`).
    pub fn addresses(&self) -> usize {
        self.open.lock().len()
    }
}

/// A retry hint for a refusal caused by load: `Retry-After` seconds.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(50)), "half a token");
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token per 100ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Saved tokens never pass the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.take(later) && b.take(later) && b.take(later));
        assert!(!b.take(later));
        let mut free = TokenBucket::new(0, 1, t0);
        assert!((0..1000).all(|_| free.take(t0)));
    }

    #[test]
    fn strikes_close_and_runs_pay_them_back() {
        let mut l = CommandLimit::new(1, 2, 3);
        let now = Instant::now();
        assert_eq!(l.check(now), Verdict::Run);
        assert_eq!(l.check(now), Verdict::Run);
        assert_eq!(l.check(now), Verdict::Refuse);
        assert_eq!(l.check(now), Verdict::Refuse);
        assert_eq!(l.check(now), Verdict::Close);
        // A command that runs takes a strike back.
        let mut l = CommandLimit::new(1, 1, 2);
        assert_eq!(l.check(now), Verdict::Run);
        assert_eq!(l.check(now), Verdict::Refuse);
        assert_eq!(l.check(now + Duration::from_secs(1)), Verdict::Run);
        assert_eq!(l.check(now + Duration::from_secs(1)), Verdict::Refuse);
        assert_eq!(l.check(now + Duration::from_secs(2)), Verdict::Run);
    }

    #[test]
    fn a_flood_at_ten_times_the_rate_is_closed_though_some_commands_run() {
        // 10 commands/s allowed, 100/s sent: every tenth runs, the others are refused.
        let mut l = CommandLimit::new(10, 10, 50);
        let t0 = Instant::now();
        let mut ran = 0;
        let closed_at = (0..10_000u64).find(|i| {
            match l.check(t0 + Duration::from_millis(10 * i)) {
                Verdict::Run => ran += 1,
                Verdict::Refuse => {}
                Verdict::Close => return true,
            }
            false
        });
        let at = closed_at.expect("the flood is closed");
        assert!(at < 200, "closed after {at} commands");
        assert!(ran > 10, "some commands ran meanwhile: {ran}");
        // A client at the rate is never closed.
        let mut fine = CommandLimit::new(10, 10, 50);
        for i in 0..10_000u64 {
            assert_ne!(
                fine.check(t0 + Duration::from_millis(100 * i)),
                Verdict::Close
            );
        }
    }

    #[test]
    fn per_ip_counts_and_forgets() {
        let t = PerIp::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let s1 = t.acquire(a).unwrap();
        let s2 = t.acquire(b).expect("mapped v6 is the same address");
        assert!(t.acquire(a).is_none());
        assert!(t.acquire("10.0.0.2".parse().unwrap()).is_some());
        drop(s1);
        let s3 = t.acquire(a).unwrap();
        drop((s2, s3));
        assert_eq!(t.addresses(), 0, "entries go when the last place is freed");
        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(ip_key(v6a), ip_key(v6b), "one /64");
        let unlimited = PerIp::new(0);
        let held: Vec<_> = (0..100).map(|_| unlimited.acquire(a).unwrap()).collect();
        assert_eq!(held.len(), 100);
    }
}
