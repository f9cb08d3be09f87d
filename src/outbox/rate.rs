//! The `max_rate` cap of an [`Outbox`]: a capped conflate subscription sends at once if
//! its last send was an interval ago, else holds its newest message until the interval
//! ends; the writer is told when the next held message is due.

use bytes::Bytes;
use parking_lot::MutexGuard;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{cost, Outbox, Push, State};

/// A subscription's `max_rate` state.
#[derive(Debug)]
pub(super) struct Rate {
    pub(super) key: u64,
    pub(super) name: Arc<str>,
    pub(super) interval: Duration,
    pub(super) next_at: Instant,
    pub(super) held: Option<Bytes>,
}

impl Outbox {
    /// Applies channel `key`'s rate cap to a conflate-lane push. `Ok`: send it on (the
    /// interval restarts); `Err`: it was held for later, with this result.
    pub(super) fn rate_cap<'a>(
        &self,
        mut st: MutexGuard<'a, State>,
        frame: &Bytes,
        key: u64,
    ) -> Result<MutexGuard<'a, State>, Push> {
        let Some(r) = st.rates.iter_mut().find(|r| r.key == key) else {
            return Ok(st);
        };
        let now = Instant::now();
        if r.held.is_some() || now < r.next_at {
            let old = r.held.replace(frame.clone());
            let replaced = old.is_some();
            // The held frame counts against the limit like a queued one.
            st.held_bytes = st.held_bytes + cost(frame) - old.as_ref().map_or(0, cost);
            if st.bytes + st.held_bytes > self.limit {
                return Err(self.overflow(st));
            }
            if replaced {
                st.conflated += 1;
                return Err(Push::Conflated);
            }
            drop(st);
            self.notify(); // the writer has a new due time to wait for
            return Err(Push::Queued);
        }
        r.next_at = now + r.interval;
        Ok(st)
    }

    /// Queues the held messages whose interval has ended. Returns the lock and when the
    /// next held message is due, or `None` if queueing overflowed the connection.
    pub(super) fn release_due<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> Option<(MutexGuard<'a, State>, Option<Instant>)> {
        let now = Instant::now();
        let mut due: SmallVec<[(Bytes, u64, Arc<str>); 4]> = SmallVec::new();
        let State {
            rates, held_bytes, ..
        } = &mut *st;
        for r in rates.iter_mut() {
            if r.held.is_some() && now >= r.next_at {
                if let Some(f) = r.held.take() {
                    *held_bytes -= cost(&f);
                    due.push((f, r.key, r.name.clone()));
                }
                r.next_at = now + r.interval;
            }
        }
        for (frame, key, name) in due {
            // Every push but an overflow leaves the lock to be taken again.
            if self.conflate(st, &frame, key, &name) == Push::Overflow {
                return None;
            }
            st = self.state.lock();
        }
        let next_due = st
            .rates
            .iter()
            .filter(|r| r.held.is_some())
            .map(|r| r.next_at)
            .min();
        Some((st, next_due))
    }

    /// Caps channel `key`'s messages at one per `interval` (`None`: uncapped).
    pub fn set_rate(&self, key: u64, name: &Arc<str>, interval: Option<Duration>) {
        let mut st = self.state.lock();
        // A newest value held back by the old cap is not dropped: it stays held under
        // the new cap (due when the old one said), or goes out now when uncapped.
        let (held, next_at) = match st.rates.iter().position(|r| r.key == key) {
            Some(i) => {
                let old = st.rates.swap_remove(i);
                (old.held, old.next_at)
            }
            None => (None, Instant::now()),
        };
        match (interval, held) {
            (Some(interval), held) => st.rates.push(Rate {
                key,
                name: name.clone(),
                interval,
                next_at,
                held,
            }),
            (None, Some(frame)) => {
                st.held_bytes -= cost(&frame);
                // Every result but an overflow is fine here; an overflow closes the
                // connection as any push past the limit does.
                let _ = self.conflate(st, &frame, key, name);
                return;
            }
            (None, None) => {}
        }
        drop(st);
        self.notify(); // the next due time may have changed
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{c, f, lane, take_all};
    use super::super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    #[test]
    fn max_rate_sends_at_once_then_holds_the_newest_until_due() {
        let o = Outbox::with_lanes(10_000, 10_000, Duration::from_secs(60));
        let a: Arc<str> = "ticker:A".into();
        o.set_rate(1, &a, Some(Duration::from_millis(50)));
        assert_eq!(o.push_lane(&f(1), &lane(1, &a)), Push::Queued);
        assert_eq!(o.push_lane(&f(2), &lane(1, &a)), Push::Queued);
        assert_eq!(o.push_lane(&f(3), &lane(1, &a)), Push::Conflated);
        let mut batch = VecDeque::new();
        let t = o.take(&mut batch);
        assert_eq!(batch.len(), 1, "only the first is sent at once");
        let due = t.next_due.expect("a held message is due later");
        assert!(due > Instant::now());
        o.release(t.bytes);
        std::thread::sleep(Duration::from_millis(60));
        let later = take_all(&o);
        assert_eq!(later, vec![f(3)], "the newest, within one interval");
        o.forget(1);
        assert_eq!(o.push_lane(&f(4), &lane(1, &a)), Push::Queued);
        assert_eq!(
            o.push_lane(&f(5), &lane(1, &a)),
            Push::Queued,
            "uncapped again"
        );
    }

    #[test]
    fn changing_the_cap_keeps_the_newest_held_value() {
        let o = Outbox::with_lanes(10_000, 10_000, Duration::from_secs(60));
        let a: Arc<str> = "ticker:A".into();
        o.set_rate(1, &a, Some(Duration::from_secs(60)));
        assert_eq!(o.push_lane(&f(1), &lane(1, &a)), Push::Queued);
        assert_eq!(o.push_lane(&f(2), &lane(1, &a)), Push::Queued, "held");
        assert_eq!(take_all(&o), vec![f(1)]);
        // Re-subscribing with another max_rate: still held, not lost.
        o.set_rate(1, &a, Some(Duration::from_secs(30)));
        assert!(take_all(&o).is_empty(), "still within the interval");
        // Re-subscribing without max_rate: the held newest value goes out now.
        o.set_rate(1, &a, None);
        assert_eq!(take_all(&o), vec![f(2)]);
        assert_eq!(o.push_lane(&f(3), &lane(1, &a)), Push::Queued);
        assert_eq!(take_all(&o), vec![f(3)], "uncapped");
    }

    #[test]
    fn a_value_held_by_max_rate_counts_until_it_is_sent() {
        let o = Outbox::with_lanes(10_000, 10_000, Duration::from_secs(60));
        let a: Arc<str> = "ticker:A".into();
        o.set_rate(1, &a, Some(Duration::from_secs(60)));
        o.push_lane(&f(10), &lane(1, &a));
        assert_eq!(take_all(&o), vec![f(10)]);
        assert_eq!(o.push_lane(&f(500), &lane(1, &a)), Push::Queued, "held");
        assert_eq!(o.queued_bytes(), c(1, 500));
        assert_eq!(o.push_lane(&f(50), &lane(1, &a)), Push::Conflated);
        assert_eq!(o.queued_bytes(), c(1, 50), "the replaced one is freed");
        o.set_rate(1, &a, None);
        assert_eq!(
            o.queued_bytes(),
            c(1, 50),
            "uncapped: queued now, counted once"
        );
        assert_eq!(take_all(&o), vec![f(50)]);
        assert_eq!(o.queued_bytes(), 0);
    }
}
