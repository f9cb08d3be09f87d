//! Commands that wait for where offsets are assigned (the Redis backplane, `--redis`, or
//! the upstream relay, `--upstream`): a publish, and a subscribe, a join or `?channels=`
//! to channels this node has not loaded yet. The command parser stays synchronous: it leaves such a command in the session's
//! [`Queue`] and the reader runs the queue ([`Session::run_pending`]).
//!
//! **Publishes are batched, replies keep their order.** A publisher that sends faster
//! than one Redis round trip must not be held to one publish per round trip. So while
//! the client's frames are already buffered, the reader keeps reading: each publish
//! becomes a [`Slot::Publish`], and every reply the connection would be sent meanwhile
//! (an error, a pong, a subscribe's answer) a [`Slot::Reply`] after it. When nothing is
//! buffered (or the queue is full), one script run assigns every queued publish its
//! offset, all or none, and the slots are sent in order: the connection sees its acks
//! and replies exactly in the order of its commands, as without a backplane. A publish's
//! delivery comes over the pub/sub connection, as for every node's publishes, so no
//! other command's effect waits for it.
//!
//! **A subscribe that must be loaded first is a barrier:** nothing after it runs until
//! it has. A later command of the same client message (a Centrifuge message holds one
//! command per line) is kept as its text ([`Slot::Later`]) and run after it.

use bytes::Bytes;

use super::Session;
use crate::dialect::Dialect;
use crate::error::ErrorCode;
use crate::protocol::close::Fail;
use crate::protocol::command::{Id, RecoverFrom};

/// At most this many slots wait in one queue: the batch is then run.
pub(super) const MAX_SLOTS: usize = 128;
/// At most about this many bytes of publish data and replies wait in one queue.
pub(super) const MAX_BYTES: usize = 256 * 1024;

/// Work for the backplane and the replies queued behind it.
#[derive(Debug, Default)]
pub(super) struct Queue {
    slots: Vec<Slot>,
    bytes: usize,
    /// A slot that must run before anything else does (a subscribe to load).
    barrier: bool,
}

/// One queued step, run in order.
#[derive(Debug)]
pub(super) enum Slot {
    /// A reply, sent after everything queued before it.
    Reply(Bytes),
    /// A publish, checked and allowed; answered with its offset.
    Publish {
        id: Option<Id>,
        channel: String,
        data: Bytes,
    },
    /// `?channels=` of the upgrade (a barrier).
    Connect(Vec<String>),
    /// A subscribe whose channels must be loaded first (a barrier).
    Subscribe {
        id: Option<Id>,
        channels: Vec<String>,
        /// `(channel, epoch, offset)` per `recover` entry.
        recover: Vec<(String, String, u64)>,
        max_rate: Option<u32>,
    },
    /// A one-channel subscribe (a dialect's join) whose channel must be loaded first (a
    /// barrier).
    Join {
        id: Option<Id>,
        channel: String,
        recover: Option<(String, u64)>,
        strict: bool,
    },
    /// A command read after a barrier: its text, run once the barrier has.
    Later { text: bool, payload: Vec<u8> },
}

impl Slot {
    fn barrier(&self) -> bool {
        matches!(
            self,
            Slot::Connect(_) | Slot::Subscribe { .. } | Slot::Join { .. }
        )
    }

    fn bytes(&self) -> usize {
        match self {
            Slot::Reply(b) => b.len(),
            Slot::Publish { data, channel, .. } => data.len() + channel.len(),
            Slot::Later { payload, .. } => payload.len(),
            _ => 0,
        }
    }

    /// A subscribe, kept until its channels are loaded.
    pub(super) fn subscribe(
        id: Option<&Id>,
        channels: &[&str],
        recover: &[RecoverFrom<'_>],
        max_rate: Option<u32>,
    ) -> Slot {
        Slot::Subscribe {
            id: id.cloned(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
            recover: recover
                .iter()
                .map(|r| (r.channel.to_string(), r.epoch.to_string(), r.offset))
                .collect(),
            max_rate,
        }
    }

    /// A join, kept until its channel is loaded.
    pub(super) fn join(
        id: Option<&Id>,
        channel: &str,
        recover: Option<RecoverFrom<'_>>,
        strict: bool,
    ) -> Slot {
        Slot::Join {
            id: id.cloned(),
            channel: channel.to_string(),
            recover: recover.map(|r| (r.epoch.to_string(), r.offset)),
            strict,
        }
    }
}

impl Queue {
    /// Adds `slot` at the end.
    pub(super) fn push(&mut self, slot: Slot) {
        self.barrier |= slot.barrier();
        self.bytes += slot.bytes();
        self.slots.push(slot);
    }

    /// Whether the reader must run the queue now rather than read on (`idle`: nothing
    /// of the client's is buffered).
    pub(super) fn due(&self, idle: bool) -> bool {
        idle || self.barrier || self.slots.len() >= MAX_SLOTS || self.bytes >= MAX_BYTES
    }
}

/// The error message of a publish that Redis or the upstream relay did not take.
pub fn refusal(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unavailable => {
            "the backplane (Redis) or the upstream relay cannot be reached: nothing was published"
        }
        ErrorCode::Forbidden => {
            "this relay is an edge that does not forward publishes: publish upstream"
        }
        _ => "the upstream refused the publish",
    }
}

impl<D: Dialect> Session<D> {
    /// Whether a subscribe to `channels` must wait for them to be loaded (from Redis or
    /// the upstream relay).
    pub(super) fn must_warm(&self, channels: &[&str]) -> bool {
        self.relay.sequenced_elsewhere() && channels.iter().any(|c| !self.relay.is_warm(c))
    }

    /// Queues `slot` (see the module docs).
    pub(super) fn defer(&mut self, slot: Slot) {
        self.pending
            .get_or_insert_with(Default::default)
            .get_mut()
            .push(slot);
    }

    /// If a barrier is queued, keeps this command's text to run after it; true if kept.
    pub(super) fn keep_for_later(&mut self, text: bool, payload: &[u8]) -> bool {
        let behind_barrier = self.pending.as_ref().is_some_and(|q| q.borrow().barrier);
        if behind_barrier {
            self.defer(Slot::Later {
                text,
                payload: payload.to_vec(),
            });
        }
        behind_barrier
    }

    /// Whether the reader must run the queue now (`idle`: nothing buffered).
    pub(super) fn pending_due(&self, idle: bool) -> bool {
        self.pending.as_ref().is_some_and(|q| q.borrow().due(idle))
    }

    /// Runs everything queued, in order, until the queue is empty. Returns a close to
    /// send if a later command ends the connection.
    pub(super) async fn run_pending(&mut self) -> Option<Fail> {
        while let Some(queue) = self.pending.take() {
            let queue = queue.into_inner();
            let relay = self.relay.clone();
            let mut slots = queue.slots.into_iter().peekable();
            while slots.peek().is_some() {
                // A run of publishes and replies: one script run, then every slot in order.
                let mut run = Vec::new();
                while let Some(s) =
                    slots.next_if(|s| matches!(s, Slot::Publish { .. } | Slot::Reply(_)))
                {
                    run.push(s);
                }
                if !run.is_empty() {
                    self.publish_run(run).await;
                }
                let Some(step) = slots.next() else { break };
                match step {
                    Slot::Connect(channels) => {
                        relay.warm(&channels).await;
                        self.connect(channels);
                    }
                    Slot::Subscribe {
                        id,
                        channels,
                        recover,
                        max_rate,
                    } => {
                        relay.warm(&channels).await;
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
                    Slot::Join {
                        id,
                        channel,
                        recover,
                        strict,
                    } => {
                        relay.warm(std::slice::from_ref(&channel)).await;
                        let recover = recover.as_ref().map(|(epoch, offset)| RecoverFrom {
                            channel: &channel,
                            epoch,
                            offset: *offset,
                        });
                        self.join(id.as_ref(), &channel, recover, strict);
                    }
                    Slot::Later { text, mut payload } => {
                        if let Some(fail) = self.on_command_text(text, &mut payload) {
                            return Some(fail);
                        }
                    }
                    Slot::Publish { .. } | Slot::Reply(_) => unreachable!("taken by the run"),
                }
                if self.pending.is_some() {
                    // What just ran queued work of its own: it goes before the rest.
                    let rest: Vec<Slot> = slots.collect();
                    for s in rest {
                        self.defer(s);
                    }
                    break;
                }
            }
        }
        None
    }

    /// Publishes every publish of `run` in one script run (all or none), then sends each
    /// slot's reply in order.
    async fn publish_run(&mut self, run: Vec<Slot>) {
        let items: Vec<(&str, &[u8])> = run
            .iter()
            .filter_map(|s| match s {
                Slot::Publish { channel, data, .. } => Some((channel.as_str(), &data[..])),
                _ => None,
            })
            .collect();
        let result = if items.is_empty() {
            Ok(Vec::new())
        } else {
            self.relay.publish_many(&items).await
        };
        let mut offsets = result.as_ref().ok().map(|p| p.iter());
        for slot in &run {
            match slot {
                Slot::Reply(frame) => self.reply(frame.clone()),
                Slot::Publish { id, channel, .. } => match (&mut offsets, &result) {
                    (Some(it), _) => {
                        if let Some(p) = it.next() {
                            let (e, o) = (p.position.epoch, p.position.offset);
                            self.reply(self.dialect.published(id.as_ref(), channel, e.as_str(), o));
                        }
                    }
                    (None, Err(code)) => self.error(id.as_ref(), *code, refusal(*code)),
                    (None, Ok(_)) => {}
                },
                _ => {}
            }
        }
    }
}
