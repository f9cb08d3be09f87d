//! Interest: telling sources which channels this node wants.
//!
//! A source that brings messages from elsewhere (the backplane, an upstream relay) should
//! take only the channels that have local subscribers. It registers an [`Interest`] with
//! [`super::Hub::watch`] and is told, per channel and in order, when the channel gets its
//! first subscriber on this node, loses its last one, and is reclaimed while idle.
//!
//! Calls happen under the channel's lock, which is what keeps them in order per
//! channel: an implementation must be quick, must not block and must not call back into
//! the hub (record the change and wake a task of its own, e.g. mark the channel in a set
//! of wanted names and notify; a level-triggered set needs no queue and cannot grow past
//! the number of channels).

use parking_lot::RwLock;
use std::sync::Arc;

/// What changed for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterestEvent {
    /// The channel got its first subscriber on this node.
    First,
    /// Its last subscriber on this node left.
    LastGone,
    /// The channel was reclaimed (no subscriber, no publish for `--channel-idle-secs`):
    /// a later use starts a new epoch.
    Reclaimed,
}

/// Whoever wants to know of interest changes (see the module docs).
pub trait Interest: Send + Sync + std::fmt::Debug {
    /// `channel`'s interest changed. Quick, non-blocking, no call into the hub.
    fn changed(&self, channel: &str, event: InterestEvent);
}

/// The registered [`Interest`]s.
#[derive(Debug, Default)]
pub(crate) struct Watchers(RwLock<Vec<Arc<dyn Interest>>>);

impl Watchers {
    pub(crate) fn add(&self, who: Arc<dyn Interest>) {
        self.0.write().push(who);
    }

    /// Tells every watcher; called only on transitions, never per message.
    pub(crate) fn tell(&self, channel: &str, event: InterestEvent) {
        for w in self.0.read().iter() {
            w.changed(channel, event);
        }
    }
}
