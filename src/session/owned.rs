//! Commands a dialect made from a seed platform's own vocabulary ([`Owned`]): run as the
//! neutral commands they stand for, plus namespace-wide subscriptions (`<ns>:*`, see
//! `hub/wild.rs`), which only dialects make and private namespaces refuse.

use smallvec::SmallVec;
use std::sync::atomic::Ordering;

use super::Session;
use crate::dialect::{Dialect, Owned};
use crate::error::ErrorCode;
use crate::namespace::Delivery;
use crate::protocol::command::{Channels, Command};

/// The namespace of a namespace-wide subscription name (`ticker:*` → `ticker`).
pub fn wildcard(name: &str) -> Option<&str> {
    name.strip_suffix(":*")
}

impl<D: Dialect> Session<D> {
    /// Runs `o`; `ack`: answer a subscribe made only of namespaces (false at connect).
    pub(super) fn on_owned(&mut self, o: Owned, ack: bool) {
        match o {
            Owned::Subscribe { channels, max_rate } => {
                let (wild, plain): (Vec<_>, Vec<_>) =
                    channels.iter().partition(|c| wildcard(c).is_some());
                for w in wild {
                    if !self.subscribe_namespace(w) {
                        return;
                    }
                }
                if plain.is_empty() {
                    if ack {
                        self.reply(self.dialect.subscribed(None, &[]));
                    }
                    return;
                }
                let ns = &self.relay.config.namespaces;
                let all_conflate = plain
                    .iter()
                    .all(|c| ns.of(c).delivery == Delivery::Conflate);
                let channels: Channels<'_> = plain.iter().map(|c| c.as_str()).collect();
                self.on_command(
                    None,
                    Command::Subscribe {
                        channels,
                        recover: SmallVec::new(),
                        max_rate: max_rate.filter(|_| all_conflate),
                    },
                )
            }
            Owned::Unsubscribe { channels } => {
                for ns in channels.iter().filter_map(|c| wildcard(c)) {
                    self.unsubscribe_namespace(ns);
                }
                let channels: Channels<'_> = channels
                    .iter()
                    .filter(|c| wildcard(c).is_none())
                    .map(String::as_str)
                    .collect();
                self.on_command(None, Command::Unsubscribe { channels })
            }
            Owned::Join { channel } => self.on_command(
                None,
                Command::Join {
                    channel: &channel,
                    recover: None,
                    strict: false,
                },
            ),
            Owned::Last { channel, empty } => {
                if !self.may_subscribe(None, &[&channel]) {
                    return;
                }
                let page = self.relay.hub.history(&channel, None, 1);
                let newest =
                    page.and_then(|p| Some((p.position.epoch, p.messages.last()?.clone())));
                match newest {
                    Some((epoch, e)) => {
                        let m = e.message(&channel, epoch.as_str());
                        self.reply(self.dialect.format().message(&m));
                    }
                    None => {
                        if let Some(frame) = empty {
                            self.reply(frame);
                        }
                    }
                }
            }
            Owned::Ping => self.on_command(None, Command::Ping),
            Owned::Trust { sub } => {
                // No expiry and no channel patterns: the namespace rules alone, for `sub`.
                self.access.who.claims = Some(Box::new(crate::auth::Claims {
                    sub: Some(sub.into()),
                    exp: u64::MAX,
                    sub_channels: None,
                    pub_channels: None,
                    admin: false,
                }));
            }
            Owned::Many(all) => {
                for o in all {
                    self.on_owned(o, ack);
                }
            }
            Owned::Reply(frame) => {
                // A dialect's parser answers only refusals this way.
                if let Some(c) = D::counters(&self.relay.metrics) {
                    c.errors.fetch_add(1, Ordering::Relaxed);
                }
                self.reply(frame)
            }
            Owned::Ignore => {}
        }
    }

    /// Subscribes to every channel of a public namespace (`name` is `<ns>:*`). Answers a
    /// refusal and returns false.
    fn subscribe_namespace(&mut self, name: &str) -> bool {
        let Some(ns) = wildcard(name) else {
            return false;
        };
        if self.subs.iter().any(|(s, _)| &**s == name) {
            return true;
        }
        if self.relay.config.namespaces.of(ns).private {
            self.error(
                None,
                ErrorCode::Forbidden,
                "a private namespace cannot be subscribed to as a whole",
            );
            return false;
        }
        if self.subs.len() >= self.relay.config.max_subscriptions {
            self.error(
                None,
                ErrorCode::TooManySubscriptions,
                "this subscribe would exceed the subscription limit per connection",
            );
            return false;
        }
        if !self.may_subscribe(None, &[name]) {
            return false;
        }
        let me = self.as_subscriber();
        self.relay.hub.subscribe_namespace(ns, &me);
        self.keep_sub(name.into(), 0);
        true
    }

    fn unsubscribe_namespace(&mut self, ns: &str) {
        let name = format!("{ns}:*");
        if let Some(i) = self.subs.iter().position(|(s, _)| **s == *name) {
            self.subs.swap_remove(i);
            for key in self.relay.hub.unsubscribe_namespace(ns, self.conn) {
                self.outbox.forget(key);
            }
        }
    }
}
