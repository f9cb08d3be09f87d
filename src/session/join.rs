//! The commands some dialects have and protocol v1 does not: a handshake
//! ([`Command::Connect`]), a one-channel subscribe whose reply carries its recovery
//! ([`Command::Join`]) and history reads ([`Command::History`]).
//!
//! [`Command::Connect`]: crate::protocol::command::Command::Connect
//! [`Command::Join`]: crate::protocol::command::Command::Join
//! [`Command::History`]: crate::protocol::command::Command::History

use std::sync::atomic::Ordering;

use super::Session;
use crate::auth::Why;
use crate::dialect::{Dialect, JoinedChannel};
use crate::error::{ErrorCode, UNRECOVERABLE};
use crate::hub::{Joined, Recover, Replay};
use crate::outbox::Push;
use crate::protocol::command::{Id, RecoverFrom};
use crate::protocol::format::Message;

impl<D: Dialect> Session<D> {
    /// The handshake: a token (checked like the `auth` op) or none. Without one, the
    /// connection stays anonymous, which is refused when no namespace allows it.
    pub(super) fn handshake(&mut self, id: Option<&Id>, token: Option<&str>) {
        let exp = match token {
            Some(t) => match self.credential(id, t) {
                Some(exp) => exp,
                None => return,
            },
            None if !self.access.who.authenticated()
                && !self.relay.config.namespaces.any_anonymous() =>
            {
                return self.error(
                    id,
                    ErrorCode::Unauthorized,
                    "this relay needs a token: connect with one",
                );
            }
            None => {
                // A credential shown at the upgrade keeps its expiry.
                let expires = self.token_expiry();
                self.outbox
                    .deadline()
                    .set(expires.map(|e| e.0), Why::Expired);
                expires.map(|e| e.1)
            }
        };
        self.reply(self.dialect.connected(id, self.access.who.sub(), exp));
        let channels = self.dialect.channels_at_connect();
        if !channels.is_empty() {
            self.subscribe(None, &channels, &[], None);
        }
    }

    /// Subscribes to one channel. The reply, queued ahead of every live message of the
    /// channel, says where the channel stands and carries a recovery's messages; with
    /// `strict`, an unrecoverable position is refused and nothing is subscribed.
    pub(super) fn join(
        &mut self,
        id: Option<&Id>,
        channel: &str,
        recover: Option<RecoverFrom<'_>>,
        strict: bool,
    ) {
        if !self.may_add(id, &[channel], None) {
            return;
        }
        let Some(slot) = self.outbox.reserve() else {
            return; // closing
        };
        let me = self.as_subscriber();
        let from = recover.map(|r| Recover {
            epoch: r.epoch,
            offset: r.offset,
        });
        let mode = match D::JOIN_REPLAY {
            0 => Replay::HandBack { refuse_gap: strict },
            n => Replay::Newest(n),
        };
        let frame = match self.relay.hub.join(channel, &me, from, mode) {
            Ok(Joined::In { sub, replay }) => {
                if !self.subs.iter().any(|(s, _)| &**s == channel) {
                    self.keep_sub(channel.into(), sub.key);
                }
                if sub.conflate_lane {
                    let interval = D::JOIN_MAX_RATE.map(|r| std::time::Duration::from_secs(1) / r);
                    self.outbox.set_rate(sub.key, &sub.name, interval);
                }
                let j = JoinedChannel {
                    channel,
                    recoverable: self.relay.config.namespaces.of(channel).history > 0,
                    epoch: sub.position.epoch.as_str(),
                    offset: sub.position.offset,
                    recovered: sub.recovered,
                    replay: &replay,
                };
                self.dialect.joined(id, &j)
            }
            Ok(Joined::Unrecoverable) => {
                self.relay.metrics.error(ErrorCode::BadRequest);
                self.dialect.error(id, ErrorCode::BadRequest, UNRECOVERABLE)
            }
            Err(code) => {
                self.relay.metrics.error(code);
                let why = "the relay holds its maximum number of channels";
                self.dialect.error(id, code, why)
            }
        };
        if self.outbox.fill(slot, frame) == Push::Overflow {
            self.relay
                .metrics
                .slow_consumer_closes
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads a channel's history ring, for whoever may subscribe to the channel: oldest
    /// first (with `since`, the messages after it), or newest first with `reverse` (with
    /// `since`, the messages before it). A `since` whose epoch is not the channel's, or
    /// whose next message is gone, is refused as unrecoverable.
    pub(super) fn history(
        &mut self,
        id: Option<&Id>,
        channel: &str,
        since: Option<RecoverFrom<'_>>,
        limit: Option<usize>,
        reverse: bool,
    ) {
        if !self.may_subscribe(id, &[channel]) {
            return;
        }
        let Some(page) = self.relay.hub.history(channel, None, usize::MAX) else {
            return self.reply(self.dialect.history(id, "", 0, &[]));
        };
        let (epoch, top) = (page.position.epoch, page.position.offset);
        if let Some(s) = since {
            let gone =
                !reverse && s.offset < top && (page.oldest == 0 || s.offset + 1 < page.oldest);
            if s.epoch != epoch.as_str() || gone {
                return self.error(id, ErrorCode::BadRequest, UNRECOVERABLE);
            }
        }
        let keep = |offset: u64| match since {
            None => true,
            Some(s) if reverse => offset < s.offset,
            Some(s) => offset > s.offset,
        };
        let limit = limit.unwrap_or(usize::MAX);
        let picked: Vec<Message<'_>> = if reverse {
            let all = page.messages.iter().rev().filter(|e| keep(e.offset));
            all.take(limit)
                .map(|e| e.message(channel, epoch.as_str()))
                .collect()
        } else {
            let all = page.messages.iter().filter(|e| keep(e.offset));
            all.take(limit)
                .map(|e| e.message(channel, epoch.as_str()))
                .collect()
        };
        self.reply(self.dialect.history(id, epoch.as_str(), top, &picked));
    }
}
