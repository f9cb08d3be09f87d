//! Positions assigned elsewhere (an upstream relay, the backplane): the channel takes
//! epoch and offset as given, drops duplicates, and tells subscribers of a reliable
//! channel with a `reset` notice when the position they held is gone (a new epoch, or
//! a gap the source could not fill).

use std::sync::atomic::Ordering;

use super::{Hub, Published, Sequenced};
use crate::error::ErrorCode;
use crate::hub::Epoch;

impl Hub {
    /// Publishes a message whose epoch and offset were assigned elsewhere (an upstream
    /// relay, the backplane): the channel takes them as they are. A new epoch, or an
    /// offset past the next one, forgets the channel's history (offsets in it stay
    /// contiguous); a new epoch after at least one message, or a gap, also pushes each
    /// subscriber of a reliable channel a `reset` notice ahead of the message. Returns `None`,
    /// delivering nothing, for an offset this node already had in that epoch (a
    /// duplicate, or offset 0).
    pub fn publish_at(
        &self,
        name: &str,
        at: Sequenced,
        data: &[u8],
    ) -> Result<Option<Published>, ErrorCode> {
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            let Some(lost) = st.seek(at.epoch, at.offset, &self.budget) else {
                return Ok(None);
            };
            let reset = (lost && !ch.conflate).then(|| st.reset_notices(name).0);
            if reset.is_some() {
                self.metrics.resets.fetch_add(1, Ordering::Relaxed);
            }
            let mut prepared = st.prepare(name, at.ts, data, &self.budget, &self.metrics);
            prepared.reset = reset;
            return Ok(Some(self.fan_out(&ch, st, prepared)));
        }
    }

    /// Moves channel `name` to `epoch` with `head` its newest offset, without a message
    /// (the backplane's position of a channel whose messages are no longer kept, or that
    /// has none yet). A new epoch forgets the history and, after at least one message,
    /// tells each subscriber of a reliable channel with a `reset` notice; so does a
    /// `head` past the channel's own, which forgets the history (the next message
    /// continues after `head`).
    /// Returns whether a `reset` was sent.
    pub fn align(&self, name: &str, epoch: Epoch, head: u64) -> Result<bool, ErrorCode> {
        loop {
            let ch = self.channel_or_create(name)?;
            let mut st = ch.state.lock();
            if st.removed {
                continue;
            }
            if !st.align(epoch, head, &self.budget) || ch.conflate {
                return Ok(false);
            }
            self.metrics.resets.fetch_add(1, Ordering::Relaxed);
            let (notices, audience) = st.reset_notices(name);
            // Hand over hand, as a publish: behind any fan-out of the old epoch.
            let fanout = ch.fanout.lock();
            drop(st);
            for s in audience.iter() {
                if let Some(frame) = &notices[s.format.index()] {
                    s.outbox.push(frame);
                }
            }
            drop(fanout);
            return Ok(true);
        }
    }
}
