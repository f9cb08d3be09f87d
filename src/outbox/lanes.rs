//! The conflate lane of an [`Outbox`]: while a connection lags, each conflate channel
//! keeps only its newest pending message here, replaced in place; the `lagging` and
//! `caught_up` notices, built by the connection's format.

use bytes::Bytes;
use parking_lot::MutexGuard;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;

use super::{cost, Outbox, Push, State};

/// A conflate channel's newest pending message while the connection lags.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) key: u64,
    pub(super) name: Arc<str>,
    pub(super) frame: Bytes,
    pub(super) skipped: u64,
    pub(super) since: Instant,
    pub(super) notified: bool,
}

impl Outbox {
    /// Queues a conflate-lane frame, or holds it as the channel's newest while lagging.
    pub(super) fn conflate(
        &self,
        mut st: MutexGuard<'_, State>,
        frame: &Bytes,
        key: u64,
        name: &Arc<str>,
    ) -> Push {
        // An empty queue always takes the message: lagging needs something in flight,
        // whose release will flush what is held.
        if st.bytes == 0 || (!st.lagging && st.bytes + cost(frame) <= self.soft) {
            return self.enqueue(st, frame);
        }
        st.lagging = true;
        let now = Instant::now();
        let State {
            held,
            conflated,
            held_bytes,
            ..
        } = &mut *st;
        let (i, result) = match held.iter().position(|h| h.key == key) {
            Some(i) => {
                *held_bytes = *held_bytes + cost(frame) - cost(&held[i].frame);
                held[i].frame = frame.clone();
                held[i].skipped += 1;
                *conflated += 1;
                (i, Push::Conflated)
            }
            None => {
                *held_bytes += cost(frame);
                held.push(Held {
                    key,
                    name: name.clone(),
                    frame: frame.clone(),
                    skipped: 0,
                    since: now,
                    notified: false,
                });
                (held.len() - 1, Push::Queued)
            }
        };
        if st.bytes + st.held_bytes > self.limit {
            return self.overflow(st);
        }
        let h = &mut st.held[i];
        if !h.notified && now.saturating_duration_since(h.since) >= self.notice_after {
            h.notified = true;
            let notice = self.format.lagging(&h.name, h.skipped);
            if self.enqueue(st, &notice) == Push::Overflow {
                return Push::Overflow;
            }
        }
        result
    }

    /// Back under half the soft bound: queues the held messages (newest of each channel)
    /// and the `caught_up` notices, and resumes normal flow.
    pub(super) fn flush_held(&self, mut st: MutexGuard<'_, State>) {
        st.lagging = false;
        let mut held = std::mem::take(&mut st.held);
        let notices: SmallVec<[Bytes; 4]> = held
            .iter()
            .filter(|h| h.notified)
            .map(|h| self.format.caught_up(&h.name, h.skipped))
            .collect();
        let moved = held.iter().map(|h| cost(&h.frame)).sum::<usize>();
        let need = moved + notices.iter().map(cost).sum::<usize>();
        // The held frames already count against the limit; only the notices are new.
        if st.bytes + st.held_bytes + (need - moved) > self.limit {
            st.held = held;
            self.overflow(st);
            return;
        }
        st.bytes += need;
        st.held_bytes -= moved;
        for h in held.drain(..) {
            st.queue.push_back(h.frame);
        }
        st.queue.extend(notices);
        st.held = held; // keeps its capacity for the next lag
        drop(st);
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{c, f, lane, take_all};
    use super::super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    #[test]
    fn a_lagging_connection_keeps_the_newest_per_conflate_channel_and_all_reliable() {
        let o = Outbox::with_lanes(2000, c(2, 40) + 10, Duration::from_secs(60));
        let (a, b): (Arc<str>, Arc<str>) = ("ticker:A".into(), "ticker:B".into());
        let tick = |n: u8| Bytes::from(vec![n; 40]);
        assert_eq!(o.push_lane(&tick(1), &lane(1, &a)), Push::Queued);
        assert_eq!(o.push_lane(&tick(2), &lane(1, &a)), Push::Queued);
        assert_eq!(o.queued_bytes(), c(2, 40));
        // A third would pass the soft bound: lagging from here on.
        assert_eq!(o.push_lane(&tick(3), &lane(1, &a)), Push::Queued);
        assert_eq!(o.push_lane(&tick(4), &lane(1, &a)), Push::Conflated);
        assert_eq!(o.push_lane(&tick(5), &lane(2, &b)), Push::Queued);
        let reliable = Lane {
            key: 3,
            name: &a,
            conflate: false,
            ts: 1,
        };
        assert_eq!(
            o.push_lane(&f(500), &reliable),
            Push::Queued,
            "reliable unaffected"
        );
        assert_eq!(
            o.queued_bytes(),
            c(2, 40) + c(1, 500) + c(2, 40),
            "two queued ticks, the reliable frame, and the two held ticks (A's newest, B's)"
        );
        let first = take_all(&o);
        assert_eq!(first.len(), 3);
        assert_eq!(first[2].len(), 500);
        // Released to 0 <= 50: the newest of each channel follows, in channel order.
        let flushed = take_all(&o);
        assert_eq!(flushed, vec![tick(4), tick(5)]);
        assert_eq!(o.conflated(), 1);
        // Back to normal flow.
        assert_eq!(o.push_lane(&tick(6), &lane(1, &a)), Push::Queued);
        assert_eq!(take_all(&o), vec![tick(6)]);
    }

    #[test]
    fn lagging_and_caught_up_notices_name_the_channel_and_count_skips() {
        let o = Outbox::with_lanes(2000, 10, Duration::ZERO);
        let a: Arc<str> = "ticker:A".into();
        assert_eq!(
            o.push_lane(&f(20), &lane(1, &a)),
            Push::Queued,
            "empty: sent"
        );
        o.push_lane(&f(21), &lane(1, &a));
        o.push_lane(&f(22), &lane(1, &a));
        let mut batch = VecDeque::new();
        let t = o.take(&mut batch);
        let texts: Vec<&[u8]> = batch.iter().map(|b| &b[..]).collect();
        assert_eq!(texts.len(), 2, "the first tick, then the notice");
        assert_eq!(
            &texts[1][2..],
            br#"{"type":"lagging","channel":"ticker:A","skipped":0}"#
        );
        o.release(t.bytes);
        let flushed = take_all(&o);
        assert_eq!(flushed.len(), 2);
        assert_eq!(flushed[0].len(), 22, "the newest");
        assert_eq!(
            &flushed[1][2..],
            br#"{"type":"caught_up","channel":"ticker:A","skipped":1}"#
        );
    }

    #[test]
    fn ticks_never_take_the_reliable_budget() {
        let soft = c(2, 50);
        let o = Outbox::with_lanes(soft + c(1, 50) + c(1, 150), soft, Duration::from_secs(60));
        let a: Arc<str> = "ticker:A".into();
        for _ in 0..10_000 {
            assert_ne!(o.push_lane(&f(50), &lane(1, &a)), Push::Overflow);
        }
        assert!(
            o.queued_bytes() <= soft + c(1, 50),
            "the soft bound, and the one newest tick held"
        );
        assert_eq!(o.push(&f(150)), Push::Queued, "room left for reliable");
        assert_eq!(
            o.push(&f(1)),
            Push::Overflow,
            "but the reliable budget is enforced"
        );
    }

    #[test]
    fn held_frames_count_against_the_limit_and_are_released_when_sent_or_forgotten() {
        let o = Outbox::with_lanes(c(1, 100) + c(2, 300), c(1, 100), Duration::from_secs(60));
        let names: Vec<Arc<str>> = (0..3).map(|i| format!("ticker:{i}").into()).collect();
        assert_eq!(o.push_lane(&f(100), &lane(0, &names[0])), Push::Queued);
        // Lagging: each channel holds its newest, and what they hold counts.
        assert_eq!(o.push_lane(&f(300), &lane(1, &names[1])), Push::Queued);
        assert_eq!(o.queued_bytes(), c(1, 100) + c(1, 300));
        assert_eq!(o.push_lane(&f(200), &lane(1, &names[1])), Push::Conflated);
        assert_eq!(
            o.queued_bytes(),
            c(1, 100) + c(1, 200),
            "the replaced one is freed"
        );
        o.forget(1);
        assert_eq!(o.queued_bytes(), c(1, 100), "forgotten: freed");
        assert_eq!(o.push_lane(&f(300), &lane(1, &names[1])), Push::Queued);
        assert_eq!(o.push_lane(&f(300), &lane(2, &names[2])), Push::Queued);
        assert_eq!(o.queued_bytes(), o.limit, "exactly at the limit");
        // One more held byte anywhere passes the limit: a slow consumer, as a queue is.
        assert_eq!(o.push_lane(&f(301), &lane(2, &names[2])), Push::Overflow);
        assert_eq!(o.dropped(), 3);
    }

    #[test]
    fn flushing_moves_held_cost_into_the_queue_without_counting_it_twice() {
        let o = Outbox::with_lanes(c(1, 100) + c(2, 100), c(1, 100), Duration::from_secs(60));
        let (a, b): (Arc<str>, Arc<str>) = ("ticker:A".into(), "ticker:B".into());
        o.push_lane(&f(100), &lane(1, &a));
        o.push_lane(&f(100), &lane(1, &a));
        o.push_lane(&f(100), &lane(2, &b));
        assert_eq!(o.queued_bytes(), o.limit);
        assert_eq!(take_all(&o).len(), 1);
        assert_eq!(o.queued_bytes(), c(2, 100), "flushed: queued now, not held");
        assert_eq!(take_all(&o).len(), 2);
        assert_eq!(o.queued_bytes(), 0);
    }
}
