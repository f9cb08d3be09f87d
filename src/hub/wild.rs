//! Namespace-wide subscriptions (`<ns>:*`), for dialects whose platform broadcasts to
//! every client without a subscription (ARIA PRO). Never offered by protocol v1, and
//! refused for private namespaces by the session.
//!
//! A namespace subscriber is kept in a table beside the shards and added to every
//! channel of the namespace: those that exist when it subscribes, and those created
//! later (at creation, before the creator can publish). Either the creator sees the
//! table entry or the subscriber sees the channel in its shard (both are written before
//! the other side reads), so no channel is missed; adding twice is harmless (adds are
//! idempotent). Each channel keeps its own lane, so conflation stays per channel. A
//! namespace subscription gets live messages only: no last value per channel.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::shard::Channel;
use super::{Hub, InterestEvent, Subscriber};
use crate::namespace::Namespaces;

impl Hub {
    /// Adds `sub` to every channel of namespace `ns`, now and later, until
    /// [`Hub::unsubscribe_namespace`]. Returns whether it was new.
    pub fn subscribe_namespace(&self, ns: &str, sub: &Subscriber) -> bool {
        {
            let mut wild = self.wild.write();
            let subs = wild.entry(ns.into()).or_default();
            if subs.iter().any(|s| s.conn == sub.conn) {
                return false;
            }
            subs.push(sub.clone());
        }
        self.metrics.subscriptions.fetch_add(1, Ordering::Relaxed);
        for ch in self.channels_of(ns) {
            self.add_to(&ch, std::slice::from_ref(sub));
        }
        true
    }

    /// Ends a namespace subscription of connection `conn`; returns the ids of the channels
    /// it was taken out of (for [`crate::outbox::Outbox::forget`]).
    pub fn unsubscribe_namespace(&self, ns: &str, conn: u64) -> Vec<u64> {
        {
            let mut wild = self.wild.write();
            let Some(subs) = wild.get_mut(ns) else {
                return Vec::new();
            };
            let before = subs.len();
            subs.retain(|s| s.conn != conn);
            if subs.len() == before {
                return Vec::new();
            }
            if subs.is_empty() {
                wild.remove(ns);
            }
        }
        self.metrics.subscriptions.fetch_sub(1, Ordering::Relaxed);
        let mut keys = Vec::new();
        for ch in self.channels_of(ns) {
            let mut st = ch.state.lock();
            if st.remove(conn) {
                keys.push(ch.id);
                if st.subscriber_count() == 0 {
                    self.watchers.tell(&ch.name, InterestEvent::LastGone);
                }
                drop(st);
                // As in `unsubscribe`: an in-flight fan-out to it has finished.
                drop(ch.fanout.lock());
            }
        }
        keys
    }

    /// Adds the namespace subscribers of `ch`'s namespace to a channel just created.
    pub(super) fn add_namespace_subscribers(&self, ch: &Channel) {
        let wild = self.wild.read();
        if let Some(subs) = wild.get(Namespaces::name_of(&ch.name)) {
            self.add_to(ch, subs);
        }
    }

    fn add_to(&self, ch: &Channel, subs: &[Subscriber]) {
        let mut st = ch.state.lock();
        if st.removed {
            return; // reclaimed: its successor gets them at creation
        }
        for s in subs {
            if st.add(s) && st.subscriber_count() == 1 {
                self.watchers.tell(&ch.name, InterestEvent::First);
            }
        }
    }

    fn channels_of(&self, ns: &str) -> Vec<Arc<Channel>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.channels.read();
            out.extend(
                map.values()
                    .filter(|ch| Namespaces::name_of(&ch.name) == ns)
                    .cloned(),
            );
        }
        out
    }
}
