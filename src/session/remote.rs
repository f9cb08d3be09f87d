//! Commands that wait for the backplane (`--redis`): a publish (Redis assigns the
//! offset) and a subscribe (or `?channels=`) to channels this node has not loaded yet. The command parser
//! stays synchronous: it leaves the command here, and the reader awaits it before it
//! reads the next frame, so a connection's commands still take effect in order.

use bytes::Bytes;

use super::Session;
use crate::dialect::Dialect;
use crate::error::ErrorCode;
use crate::protocol::command::{Id, RecoverFrom};

/// A command waiting for the backplane.
#[derive(Debug)]
pub(super) enum Pending {
    /// `?channels=` of the upgrade.
    Connect(Vec<String>),
    /// A publish, checked and allowed.
    Publish {
        id: Option<Id>,
        channel: String,
        data: Bytes,
    },
    /// A subscribe whose channels must be loaded first.
    Subscribe {
        id: Option<Id>,
        channels: Vec<String>,
        /// `(channel, epoch, offset)` per `recover` entry.
        recover: Vec<(String, String, u64)>,
        max_rate: Option<u32>,
    },
}

impl Pending {
    /// A subscribe, kept until its channels are loaded.
    pub(super) fn subscribe(
        id: Option<&Id>,
        channels: &[&str],
        recover: &[RecoverFrom<'_>],
        max_rate: Option<u32>,
    ) -> Pending {
        Pending::Subscribe {
            id: id.cloned(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            recover: recover
                .iter()
                .map(|r| (r.channel.to_string(), r.epoch.to_string(), r.offset))
                .collect(),
            max_rate,
        }
    }
}

impl<D: Dialect> Session<D> {
    /// Whether a subscribe to `channels` must wait for the backplane to load them.
    pub(super) fn must_warm(&self, channels: &[&str]) -> bool {
        self.relay
            .backplane
            .as_ref()
            .is_some_and(|bp| channels.iter().any(|c| !bp.is_warm(c)))
    }

    /// Runs the command left by the parser, if any.
    pub(super) async fn run_pending(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Some(bp) = self.relay.backplane.clone() else {
            return;
        };
        match *pending {
            Pending::Connect(channels) => {
                bp.warm(&channels).await;
                self.connect(channels);
            }
            Pending::Publish { id, channel, data } => {
                let items: [(&str, &[u8]); 1] = [(&channel, &data)];
                match bp.publish(&items).await {
                    Ok(p) => {
                        let offset = p.first().map_or(0, |p| p.position.offset);
                        self.reply(self.dialect.published(id.as_ref(), &channel, offset));
                    }
                    Err(code) => self.error(
                        id.as_ref(),
                        code,
                        if code == ErrorCode::Unavailable {
                            "the backplane (Redis) cannot be reached: nothing was published"
                        } else {
                            "publish failed"
                        },
                    ),
                }
            }
            Pending::Subscribe {
                id,
                channels,
                recover,
                max_rate,
            } => {
                bp.warm(&channels).await;
                let recover: Vec<RecoverFrom<'_>> = recover
                    .iter()
                    .map(|(channel, epoch, offset)| RecoverFrom {
                        channel,
                        epoch,
                        offset: *offset,
                    })
                    .collect();
                self.subscribe(id.as_ref(), &channels, &recover, max_rate);
            }
        }
    }
}
