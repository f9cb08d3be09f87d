//! Subscribing: a subscriber joins a channel, and gets what it missed or the last value.
//!
//! Replay happens under the channel lock, so a publish racing with a subscribe lands
//! either in the replay or in the live stream, never both or neither. Protocol v1 has the
//! replay pushed to the subscriber's outbox ([`Replay::Push`]); a dialect whose subscribe
//! reply carries the recovered messages (Centrifuge) has them handed back
//! ([`Replay::HandBack`]) and puts them in the reply, which its outbox slot holds ahead of
//! every live message.

use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::history::Coverage;
use super::{Hub, InterestEvent, Position, Recover, Subscribed, Subscriber};
use crate::error::ErrorCode;
use crate::outbox::Push;

/// What a subscribe does with the messages a recovery replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Push them to the subscriber's outbox, like the last value (protocol v1).
    Push,
    /// Hand a recovery's messages back to the caller. With `refuse_gap`, a position that
    /// cannot be recovered subscribes nothing ([`Joined::Unrecoverable`]).
    HandBack {
        /// Refuse an unrecoverable position instead of sending the newest message.
        refuse_gap: bool,
    },
    /// No recovery: hand back the channel's newest `n` messages instead of pushing the
    /// last value (Legend AI's history frame).
    Newest(usize),
}

/// The result of [`Hub::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// Subscribed.
    In {
        /// Where the channel stands, and whether the recovery succeeded.
        sub: Subscribed,
        /// With [`Replay::HandBack`] and a successful recovery: the missed messages'
        /// frames in the subscriber's format, oldest first (pushed otherwise).
        replay: Vec<Bytes>,
    },
    /// The position cannot be recovered and the caller asked for a refusal: nothing was
    /// subscribed or sent.
    Unrecoverable,
}

impl Hub {
    /// Adds `sub` to channel `name` (idempotent) and says where the channel stands:
    /// every message after `position.offset` will be pushed to `sub`.
    ///
    /// A new subscriber also gets, pushed to its outbox before any live message: with
    /// `recover`, the messages it missed when the history still holds them all
    /// (`recovered: true`), else the newest message as a snapshot; without, the newest
    /// message (last value). Replay happens under the channel lock, so a publish racing
    /// with this subscribe lands either in the replay or in the live stream, never both
    /// or neither. A subscriber that was already subscribed gets nothing extra.
    pub fn subscribe(
        &self,
        name: &str,
        sub: &Subscriber,
        recover: Option<Recover<'_>>,
    ) -> Result<Subscribed, ErrorCode> {
        match self.join(name, sub, recover, Replay::Push)? {
            Joined::In { sub, .. } => Ok(sub),
            // Only a `refuse_gap` join refuses.
            Joined::Unrecoverable => Err(ErrorCode::BadRequest),
        }
    }

    /// [`Hub::subscribe`], with the choice of what happens to a recovery's messages.
    pub fn join(
        &self,
        name: &str,
        sub: &Subscriber,
        recover: Option<Recover<'_>>,
        mode: Replay,
    ) -> Result<Joined, ErrorCode> {
        let joined = self.join_locked(name, sub, recover, mode);
        // A replay may have built (and kept) frames of another format.
        self.trim_history();
        joined
    }

    fn join_locked(
        &self,
        name: &str,
        sub: &Subscriber,
        recover: Option<Recover<'_>>,
        mode: Replay,
    ) -> Result<Joined, ErrorCode> {
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            st.history.expire(Instant::now(), &self.budget);
            let position = Position {
                epoch: st.epoch,
                offset: st.offset,
            };
            let already = st.has(sub.conn);
            let mut recovered = None;
            let mut frames = Vec::new();
            if !already {
                let mut coverage = match recover {
                    Some(r) if r.epoch == st.epoch.as_str() => {
                        st.history.coverage(r.offset, st.offset)
                    }
                    _ => Coverage::Gap,
                };
                let n = match mode {
                    Replay::Newest(n) => n,
                    _ => 1,
                };
                let newest = st.history.len().saturating_sub(n)..st.history.len();
                if matches!(mode, Replay::Newest(_)) {
                    coverage = Coverage::Gap;
                }
                let replay = match coverage {
                    Coverage::UpToDate => 0..0,
                    Coverage::From(i) => i..st.history.len(),
                    Coverage::Gap => newest.clone(),
                };
                frames.reserve(replay.len());
                let epoch = st.epoch;
                // Handed-back frames go inside a dialect's reply: never compressed.
                let deflate = match (mode, st.deflate) {
                    (Replay::Push, Some(t)) if sub.deflate.on() => Some((sub.deflate, t)),
                    _ => None,
                };
                for i in replay {
                    let at = (name, epoch.as_str());
                    let Some((frame, built)) =
                        st.history
                            .frame_at(i, sub.format, deflate, at, &self.budget)
                    else {
                        break;
                    };
                    if built.0 {
                        self.metrics.frame_built(sub.format);
                    }
                    if built.1 {
                        self.metrics.deflated(sub.format);
                    }
                    frames.push(frame);
                }
                // A replay may take at most half of the connection's free queue: more
                // would only close it as a slow consumer, and it would ask again for
                // ever. Past that the answer is honest: not recovered, the newest only.
                let bytes: usize = frames.iter().map(crate::outbox::cost).sum();
                if matches!(coverage, Coverage::From(_)) && bytes > sub.outbox.room() / 2 {
                    coverage = Coverage::Gap;
                    frames.drain(..frames.len().saturating_sub(1));
                }
                if recover.is_some() {
                    recovered = Some(coverage != Coverage::Gap);
                }
                if recovered == Some(false) && mode == (Replay::HandBack { refuse_gap: true }) {
                    return Ok(Joined::Unrecoverable);
                }
            }
            let new = st.add(sub);
            if new {
                self.metrics.subscriptions.fetch_add(1, Ordering::Relaxed);
                if st.subscriber_count() == 1 {
                    self.watchers.tell(&ch.name, InterestEvent::First);
                }
            }
            let hand_back = (matches!(mode, Replay::HandBack { .. }) && recovered == Some(true))
                || matches!(mode, Replay::Newest(_));
            if hand_back {
                // Handed back: the caller's reply carries them.
            } else {
                let mut overflowed = false;
                for frame in frames.drain(..) {
                    overflowed |= sub.outbox.push(&frame) == Push::Overflow;
                }
                if overflowed {
                    self.metrics
                        .slow_consumer_closes
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            let sub = Subscribed {
                key: ch.id,
                name: ch.name.clone(),
                conflate_lane: ch.conflate,
                position,
                new,
                recovered,
            };
            return Ok(Joined::In {
                sub,
                replay: frames,
            });
        }
    }
}
