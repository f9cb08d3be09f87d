//! What the backplane keeps in Redis, and the two Lua scripts that touch it (pure: key
//! names, script text, the pub/sub payload codec).
//!
//! Per channel `C`, with `P` the `--redis-prefix`, every name carries the hash tag `{C}`
//! so that all of a channel's state lives in one Redis Cluster slot:
//!
//! | name | type | holds |
//! |---|---|---|
//! | `P{C}:m` | hash | `epoch` (8 chars of `[a-z0-9]`), `offset` (the newest offset) |
//! | `P{C}:h` | stream | the newest messages (the namespace's `history`, exactly), entry id `<offset>-0`, fields `ts` and `d` (the data), expiring `history_ttl` after the last publish |
//! | `P{C}` | pub/sub channel | each message as `<epoch> <offset> <ts> <data>` |
//! | `P:nodes` | pub/sub channel | every node's name, once a second (the heartbeat) |
//!
//! [`PUBLISH`] is the only place offsets and epochs are assigned: it runs atomically for
//! a whole batch, so a batch is published entirely or not at all.

use crate::hub::Epoch;

/// How long a channel's `:m` hash outlives its last publish (7 days, in ms): its epoch
/// survives quiet periods, and names nobody publishes to any more go away.
pub const META_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// Assigns offsets, keeps the epoch, appends to the stream, publishes.
///
/// `KEYS`: per item, `P{C}:m` then `P{C}:h`. `ARGV[1]`: item count, `ARGV[2]`: the `:m`
/// TTL in ms, then per item six values: pub/sub channel, data, ts, history size, history
/// TTL in ms (0: none), a fresh epoch to use if the channel has none. Returns per item
/// `{epoch, offset, nodes that received it}`.
pub const PUBLISH: &str = r#"
local n = tonumber(ARGV[1])
local meta_ttl = ARGV[2]
local out = {}
for i = 1, n do
  local meta, log = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 2 + (i - 1) * 6
  local chan, data, ts = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local keep, ttl, fresh = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6]
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = fresh
    redis.call('DEL', log)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  end
  local offset = redis.call('HINCRBY', meta, 'offset', 1)
  redis.call('PEXPIRE', meta, meta_ttl)
  if keep > 0 then
    redis.call('XADD', log, 'MAXLEN', keep, offset .. '-0', 'ts', ts, 'd', data)
    if ttl > 0 then redis.call('PEXPIRE', log, ttl) end
  end
  local nodes = redis.call('PUBLISH', chan, epoch .. ' ' .. offset .. ' ' .. ts .. ' ' .. data)
  out[i] = {epoch, offset, nodes}
end
return out
"#;

/// Where a channel stands in Redis and what its stream holds after a node's position.
///
/// `KEYS`: `P{C}:m`, `P{C}:h`. `ARGV`: a fresh epoch (used, and kept, if the channel has
/// none: Redis came back empty, or nobody published yet), the `:m` TTL in ms, the
/// node's epoch, the node's newest offset, the most entries to return. Entries follow
/// the node's offset when the epochs agree, else start at the stream's oldest. Returns
/// `{epoch, head offset, {{id, {field, value, ..}}, ..}}`.
pub const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local head = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local from = 1
if epoch == ARGV[3] then from = tonumber(ARGV[4]) + 1 end
local entries = redis.call('XRANGE', KEYS[2], from .. '-0', '+', 'COUNT', ARGV[5])
return {epoch, head, entries}
"#;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The channel's hash (epoch, newest offset).
    pub fn meta(&self, channel: &str) -> String {
        format!("{}{{{channel}}}:m", self.prefix)
    }

    /// The channel's stream (history).
    pub fn log(&self, channel: &str) -> String {
        format!("{}{{{channel}}}:h", self.prefix)
    }

    /// The channel's pub/sub channel.
    pub fn pubsub(&self, channel: &str) -> String {
        format!("{}{{{channel}}}", self.prefix)
    }

    /// The heartbeat channel.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// The relay channel of a pub/sub channel name, if it is one of ours.
    pub fn channel_of<'a>(&self, pubsub: &'a str) -> Option<&'a str> {
        pubsub
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('{')?
            .strip_suffix('}')
    }
}

/// One message as it travels over pub/sub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wire<'a> {
    /// The channel's epoch.
    pub epoch: Epoch,
    /// Its offset.
    pub offset: u64,
    /// Publish time, ms since the Unix epoch.
    pub ts: u64,
    /// The publisher's data, verbatim.
    pub data: &'a [u8],
}

impl<'a> Wire<'a> {
    /// Parses `<epoch> <offset> <ts> <data>`; `None` if malformed.
    pub fn parse(payload: &'a [u8]) -> Option<Wire<'a>> {
        let mut parts = payload.splitn(4, |&b| b == b' ');
        let epoch = Epoch::parse(std::str::from_utf8(parts.next()?).ok()?)?;
        let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let ts = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        let data = parts.next()?;
        Some(Wire {
            epoch,
            offset,
            ts,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_channel_as_hash_tag() {
        let k = Keys::new("tr:");
        assert_eq!(k.meta("ticker:BTC-USD"), "tr:{ticker:BTC-USD}:m");
        assert_eq!(k.log("ticker:BTC-USD"), "tr:{ticker:BTC-USD}:h");
        assert_eq!(k.pubsub("a#1"), "tr:{a#1}");
        assert_eq!(k.channel_of("tr:{a#1}"), Some("a#1"));
        assert_eq!(k.channel_of("tr:nodes"), None);
        assert_eq!(k.channel_of("other:{a}"), None);
    }

    #[test]
    fn wire_payloads_parse_and_refuse_garbage() {
        let w = Wire::parse(br#"k3f9abcd 17 1732270000123 {"p": 1}"#).unwrap();
        assert_eq!(w.epoch.as_str(), "k3f9abcd");
        assert_eq!((w.offset, w.ts), (17, 1732270000123));
        assert_eq!(w.data, br#"{"p": 1}"#);
        for bad in [
            &b""[..],
            b"k3f9abcd 17",
            b"K3F9ABCD 1 2 3",
            b"k3f9abcd x 2 3",
        ] {
            assert_eq!(Wire::parse(bad), None);
        }
    }
}
