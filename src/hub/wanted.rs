//! What a node wants from the source that sequences its channels (the Redis backplane, an
//! upstream relay): the channels with local subscribers, the ones lingering after the
//! last left, which are loaded ("warm"), and who waits for one to be.
//!
//! The hub's [`Interest`](super::Interest) events feed it ([`Wanted::changed`]); the
//! source's task asks it what to subscribe to and drop ([`Wanted::diff`]), marks channels
//! loaded ([`Wanted::loaded`]), and wakes on every change ([`Wanted::notified`]). A
//! subscribe to a channel the node has not loaded waits for it ([`Wanted::warm`]), so
//! last value, recovery and history work on a node that never saw the channel.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::InterestEvent;

/// Interest in one channel: wanted (`None`) or lingering since.
type Want = Option<Instant>;

/// The table (see the module docs).
#[derive(Debug)]
pub struct Wanted {
    inner: Mutex<Inner>,
    wake: tokio::sync::Notify,
    linger: Duration,
}

#[derive(Debug, Default)]
struct Inner {
    /// What this node wants from its source.
    want: HashMap<String, Want>,
    /// Subscribed at the source and loaded into the hub.
    warm: HashSet<String>,
    /// Waiting for a channel to be warm.
    waiters: HashMap<String, Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl Wanted {
    /// A table whose channels stay wanted `linger` after their last subscriber left.
    pub fn new(linger: Duration) -> Wanted {
        Wanted {
            inner: Default::default(),
            wake: Default::default(),
            linger,
        }
    }

    /// A hub interest event (see [`super::Interest`]).
    pub fn changed(&self, channel: &str, event: InterestEvent) {
        let mut i = self.inner.lock();
        match event {
            InterestEvent::First => {
                i.want.insert(channel.to_string(), None);
            }
            InterestEvent::LastGone => {
                i.want.insert(channel.to_string(), Some(Instant::now()));
            }
            InterestEvent::Reclaimed => {
                // The hub forgot the channel: it must be loaded again before it is served.
                i.warm.remove(channel);
                if let Some(w) = i.want.get_mut(channel) {
                    w.get_or_insert(Instant::now());
                }
            }
        }
        drop(i);
        self.wake.notify_one();
    }

    /// Whether `channel` is loaded.
    pub fn is_warm(&self, channel: &str) -> bool {
        self.inner.lock().warm.contains(channel)
    }

    /// Waits (at most `timeout`) until every channel of `channels` is loaded; a channel
    /// asked for without a subscriber (a history read) lingers.
    pub async fn warm<S: AsRef<str>>(&self, channels: &[S], timeout: Duration) {
        let mut waits = Vec::new();
        {
            let mut i = self.inner.lock();
            let now = Instant::now();
            for c in channels {
                let c = c.as_ref();
                if i.warm.contains(c) {
                    continue;
                }
                i.want.entry(c.to_string()).or_insert(Some(now));
                let (tx, rx) = tokio::sync::oneshot::channel();
                i.waiters.entry(c.to_string()).or_default().push(tx);
                waits.push(rx);
            }
        }
        if waits.is_empty() {
            return;
        }
        self.wake.notify_one();
        let all = async {
            for w in waits {
                let _ = w.await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// `channel` is subscribed at the source and loaded: its waiters go on. False if it
    /// is no longer wanted.
    pub fn loaded(&self, channel: &str) -> bool {
        let mut i = self.inner.lock();
        if !i.want.contains_key(channel) {
            return false;
        }
        i.warm.insert(channel.to_string());
        for w in i.waiters.remove(channel).unwrap_or_default() {
            let _ = w.send(());
        }
        true
    }

    /// The connection to the source is gone: nothing is loaded any more.
    pub fn lost(&self) {
        self.inner.lock().warm.clear();
    }

    /// Forgets channels lingered out, then says what to subscribe to (wanted, not in
    /// `subscribed`) and what to drop (in `subscribed`, no longer wanted).
    pub fn diff(&self, subscribed: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        let now = Instant::now();
        let mut i = self.inner.lock();
        let expired: Vec<String> = i
            .want
            .iter()
            .filter(|(_, w)| w.is_some_and(|t| now.duration_since(t) >= self.linger))
            .map(|(c, _)| c.clone())
            .collect();
        for c in &expired {
            i.want.remove(c);
            i.warm.remove(c);
            i.waiters.remove(c);
        }
        let add = i
            .want
            .keys()
            .filter(|c| !subscribed.contains(*c))
            .cloned()
            .collect();
        let drop = subscribed
            .iter()
            .filter(|c| !i.want.contains_key(*c))
            .cloned()
            .collect();
        (add, drop)
    }

    /// Resolves at the next change.
    pub async fn notified(&self) {
        self.wake.notified().await
    }

    /// Wakes the source's task.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
