//! The relay-wide history bound (`--history-max-bytes`), across channels.
//!
//! A publish first trims its own channel (see [`History::push`](super::history::History)),
//! which is enough while one channel holds most of the history. When every other ring
//! is what holds the bytes (many quiet channels, each with a ring of old messages), the
//! publish that finds the budget still over its cap trims the whole table, in two passes,
//! down to an eighth under the cap (so that trims stay rare):
//!
//! 1. channels with the oldest history first, each down to its newest message;
//! 2. if that is not enough (the cap is smaller than every channel's last value), the
//!    stalest last values, oldest first: such a channel then sends no last value to a new
//!    subscriber, and `recover` from before its newest offset answers `recovered: false`,
//!    as for any message no longer held.
//!
//! One thread trims at a time (others publish on); a trim takes the channel locks one by
//! one, in the documented order (shard map, then channel), never two channels at once.

use std::sync::Arc;
use std::time::Instant;

use super::shard::Channel;
use super::Hub;

impl Hub {
    /// Brings all history back under the budget's target if it is over its cap.
    pub(crate) fn trim_history(&self) {
        if !self.budget.over() {
            return;
        }
        let Some(_one) = self.budget.sweeping.try_lock() else {
            return; // another thread is trimming
        };
        let target = self.budget.target();
        for keep in [1, 0] {
            let mut channels: Vec<(Instant, Arc<Channel>)> = Vec::new();
            for shard in self.shards.iter() {
                for ch in shard.channels.read().values() {
                    let st = ch.state.lock();
                    if st.history.len() > keep {
                        if let Some(at) = st.history.oldest_at() {
                            channels.push((at, ch.clone()));
                        }
                    }
                }
            }
            channels.sort_unstable_by_key(|(at, _)| *at);
            for (_, ch) in channels {
                if self.budget.bytes.load(std::sync::atomic::Ordering::Relaxed) <= target {
                    return;
                }
                ch.state.lock().history.evict_to(keep, target, &self.budget);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hub::{Hub, Recover};
    use std::sync::Arc;

    fn hub(max_bytes: usize) -> Hub {
        Hub::new(4, 10_000, Arc::default()).with_history(Arc::default(), max_bytes)
    }

    fn data(i: usize) -> Vec<u8> {
        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(200)).into_bytes()
    }

    /// What one kept message of [`data`] costs, measured on a hub with room.
    fn one_message() -> u64 {
        let h = hub(usize::MAX);
        h.publish("signals:a", &data(1)).unwrap();
        h.history_bytes()
    }

    #[test]
    fn many_quiet_channels_cannot_hold_more_than_the_cap() {
        let one = one_message();
        let cap = (one * 300) as usize;
        let h = hub(cap);
        // 100 channels x 10 messages, one channel after another: 1,000 messages of
        // room for 300. Before, a publish only trimmed its own channel, whose ring was
        // then its one newest message: the 30 full rings behind it kept the cap passed.
        for c in 0..100 {
            for round in 0..10 {
                h.publish(&format!("signals:{c}"), &data(round)).unwrap();
                assert!(h.history_bytes() <= cap as u64, "over the cap");
            }
        }
        assert!(h.history_evictions() > 0);
        // Every channel still has its last value: the cap is larger than 100 of them.
        for c in 0..100 {
            let page = h.history(&format!("signals:{c}"), None, 100).unwrap();
            assert!(!page.messages.is_empty(), "signals:{c} lost its last value");
            assert_eq!(page.messages.last().unwrap().offset, 10);
        }
    }

    #[test]
    fn past_every_last_value_the_stalest_last_values_go_first() {
        let one = one_message();
        let cap = (one * 10) as usize;
        let h = hub(cap);
        for c in 0..50 {
            h.publish(&format!("signals:{c}"), &data(c)).unwrap();
            assert!(h.history_bytes() <= cap as u64, "over the cap");
        }
        let newest = h.history("signals:49", None, 1).unwrap();
        assert_eq!(
            newest.messages.len(),
            1,
            "the newest channel keeps its value"
        );
        let stalest = h.history("signals:0", None, 1).unwrap();
        assert!(stalest.messages.is_empty(), "the stalest last value went");
        assert_eq!(
            stalest.position.offset, 1,
            "the channel and its offset stay"
        );
        // Recovering from before that lost message is honest: not recovered.
        let s = crate::hub::shard::Subscriber {
            conn: 1,
            outbox: Arc::new(crate::outbox::Outbox::new(1 << 20)),
            format: crate::protocol::format::Format::ENVELOPE,
            deflate: Default::default(),
        };
        let epoch = stalest.position.epoch;
        let r = h
            .subscribe(
                "signals:0",
                &s,
                Some(Recover {
                    epoch: epoch.as_str(),
                    offset: 0,
                }),
            )
            .unwrap();
        assert_eq!(r.recovered, Some(false));
        assert_eq!(s.outbox.queued_bytes(), 0, "no last value to send");
    }
}
