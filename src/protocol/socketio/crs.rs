//! The CRS dialect on Socket.IO (seed 000: Flask-SocketIO's events, what its
//! `socket.io-client` front end listens for), kept pure.
//!
//! | client emits | relay emits |
//! |---|---|
//! | `subscribe` with `{"symbols":[..]}`, `[..]` or `"BTC"` (`{}`: BTC and ETH) | `subscription_confirmed` `{"symbols":[..],"timestamp":iso}`, then each symbol's last value |
//! | `unsubscribe` with the same shapes | `unsubscribed` `{"symbols":[..]}` |
//! | `ping` | `pong` `{}` |
//! | — | `market_update` `{"<SYM>":DATA}` for `ticker:<SYM>` |
//! | — | `sentiment_update` DATA for `sentiment`, `trading_signal` DATA for `signals` (subscribed at CONNECT) |
//! | — | `connection_status` `{"status":"connected",..}` right after CONNECT |
//!
//! An event sent with an ack id is answered with the ack (`43N[..]`) carrying what the
//! event would have carried. Errors are an `error` event `{"code","message"}` (or the
//! ack `[{"error":{..}}]`). The channel names are set once per process with
//! `--socketio-channels` ([`configure`]): the message frames are built once per message
//! for every Socket.IO subscriber, with no connection at hand to ask.

use bytes::Bytes;
use simd_json::prelude::*;
use std::sync::OnceLock;

use super::{event_frame, push_iso};
use crate::protocol::channel;
use crate::protocol::format::Message;
use crate::protocol::json;

/// Default `--socketio-channels`: the ticker prefix, the sentiment channel, the signals
/// channel.
pub const DEFAULT_CHANNELS: &str = "ticker:,sentiment,signals";

/// Symbols a subscribe without any names (`{}`) subscribes to (CRS's own default).
pub const DEFAULT_SYMBOLS: [&str; 2] = ["BTC", "ETH"];

/// Which channels the CRS events map onto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `ticker:`: symbol `S` is channel `ticker:S`, its messages are `market_update`.
    pub ticker_prefix: String,
    /// Messages of this channel are `sentiment_update` (subscribed at CONNECT).
    pub sentiment: String,
    /// Messages of this channel (and of `<signals>:*`) are `trading_signal`
    /// (`<signals>` is subscribed at CONNECT).
    pub signals: String,
}

impl Channels {
    /// Reads `prefix,sentiment,signals`.
    pub fn parse(spec: &str) -> Result<Channels, String> {
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let [prefix, sentiment, signals] = parts[..] else {
            return Err(format!(
                "--socketio-channels: want <ticker prefix>,<sentiment channel>,<signals channel>, got {spec:?}"
            ));
        };
        for name in [sentiment, signals] {
            channel::validate(name.as_bytes())
                .map_err(|e| format!("--socketio-channels: {name:?}: {}", e.reason()))?;
        }
        channel::validate(format!("{prefix}X").as_bytes())
            .map_err(|e| format!("--socketio-channels: prefix {prefix:?}: {}", e.reason()))?;
        Ok(Channels {
            ticker_prefix: prefix.into(),
            sentiment: sentiment.into(),
            signals: signals.into(),
        })
    }

    /// The channels every connection gets at CONNECT.
    pub fn at_connect(&self) -> Vec<String> {
        vec![self.sentiment.clone(), self.signals.clone()]
    }

    /// The symbol of a ticker channel.
    pub fn symbol<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.ticker_prefix.as_str())
            .filter(|s| !s.is_empty())
    }
}

static CHANNELS: OnceLock<Channels> = OnceLock::new();

/// Sets the process's channel map (the first call wins: a process runs one relay).
pub fn configure(c: Channels) {
    let _ = CHANNELS.set(c);
}

/// The process's channel map.
pub fn channels() -> &'static Channels {
    CHANNELS.get_or_init(|| Channels::parse(DEFAULT_CHANNELS).expect("the default parses"))
}

/// The frame of one channel message, built once and shared by every Socket.IO
/// subscriber: `42["market_update",{"<SYM>":DATA}]`, `42["sentiment_update",DATA]`,
/// `42["trading_signal",DATA]`, or for any other channel
/// `42["message",{"channel":C,"data":DATA}]`. DATA is the publisher's JSON, verbatim.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    let c = channels();
    let hint = m.channel.len() + m.data.len() + 16;
    if let Some(sym) = c.symbol(m.channel) {
        // A validated channel name needs no escaping.
        return event_frame("market_update", hint, |p| {
            p.extend_from_slice(b"{\"");
            p.extend_from_slice(sym.as_bytes());
            p.extend_from_slice(b"\":");
            p.extend_from_slice(m.data);
            p.push(b'}');
        });
    }
    let signals = m.channel == c.signals
        || m.channel
            .strip_prefix(c.signals.as_str())
            .is_some_and(|r| r.starts_with(':'));
    let name = match () {
        _ if m.channel == c.sentiment => "sentiment_update",
        _ if signals => "trading_signal",
        _ => {
            return event_frame("message", hint, |p| {
                p.extend_from_slice(br#"{"channel":""#);
                p.extend_from_slice(m.channel.as_bytes());
                p.extend_from_slice(br#"","data":"#);
                p.extend_from_slice(m.data);
                p.push(b'}');
            })
        }
    };
    event_frame(name, hint, |p| p.extend_from_slice(m.data))
}

/// What a client's event asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `subscribe`: these ticker channels.
    Subscribe(Vec<String>),
    /// `unsubscribe`: these ticker channels.
    Unsubscribe(Vec<String>),
    /// `ping`.
    Ping,
}

/// Reads an EVENT's data (`["name", args..]`) into what it asks for. `max` bounds the
/// symbols of one event (the subscription limit).
pub fn parse_event(data: &mut [u8], max: usize) -> Result<Event, &'static str> {
    let tape = simd_json::to_tape(data).map_err(|_| "an event must be a JSON array")?;
    let root = tape.as_value();
    let Some(arr) = root.as_array() else {
        return Err("an event must be a JSON array");
    };
    let mut it = arr.iter();
    let Some(name) = it.next().and_then(|v| v.into_string()) else {
        return Err("an event must start with its name");
    };
    let arg = it.next();
    let subscribe = match name {
        "subscribe" => true,
        "unsubscribe" => false,
        "ping" => return Ok(Event::Ping),
        _ => return Err("unknown event: emit subscribe, unsubscribe or ping"),
    };
    let mut symbols: Vec<&str> = Vec::new();
    let push = &mut |v| take(v, &mut symbols, max);
    match arg {
        None => {}
        Some(v) if v.as_str().is_some() => push(v)?,
        Some(v) if v.as_array().is_some() => {
            for s in v.as_array().into_iter().flat_map(|a| a.iter()) {
                push(s)?;
            }
        }
        Some(v) => match v.as_object().and_then(|o| o.get("symbols")) {
            None if v.as_object().is_some() || v.is_null() => {}
            Some(list) if list.as_array().is_some() => {
                for s in list.as_array().into_iter().flat_map(|a| a.iter()) {
                    push(s)?;
                }
            }
            Some(one) if one.as_str().is_some() => push(one)?,
            _ => return Err("give the symbols as {\"symbols\":[..]}, a list or a string"),
        },
    }
    if symbols.is_empty() {
        if !subscribe {
            return Err("name the symbols to unsubscribe");
        }
        symbols.extend(DEFAULT_SYMBOLS);
    }
    let prefix = &channels().ticker_prefix;
    let mut out = Vec::with_capacity(symbols.len());
    for s in symbols {
        let name = format!("{prefix}{s}");
        channel::validate(name.as_bytes())
            .map_err(|_| "a symbol must be 1-100 of [A-Za-z0-9_.@/#-]")?;
        out.push(name);
    }
    Ok(match subscribe {
        true => Event::Subscribe(out),
        false => Event::Unsubscribe(out),
    })
}

/// Adds one symbol (once) to `out`, at most `max` of them.
fn take<'i>(
    v: simd_json::tape::Value<'_, 'i>,
    out: &mut Vec<&'i str>,
    max: usize,
) -> Result<(), &'static str> {
    match v.into_string() {
        // `ticker:` alone is a valid channel name, but no symbol's.
        Some("") => Err("a symbol must not be empty"),
        Some(s) if out.contains(&s) => Ok(()),
        Some(s) if out.len() < max => {
            out.push(s);
            Ok(())
        }
        Some(_) => Err("more symbols than a connection may hold"),
        None => Err("a symbol must be a string"),
    }
}

/// Appends `{"symbols":[..]` (the symbols of the ticker channels among `channels`).
fn push_symbols<S: AsRef<str>>(p: &mut Vec<u8>, list: &[S]) {
    let c = channels();
    p.extend_from_slice(br#"{"symbols":["#);
    let mut first = true;
    for sym in list.iter().filter_map(|ch| c.symbol(ch.as_ref())) {
        if !first {
            p.push(b',');
        }
        first = false;
        json::push_str(p, sym);
    }
    p.push(b']');
}

/// Whether any of `channels` is a ticker channel (else a subscribe is the silent one
/// made at CONNECT).
pub fn any_ticker<S: AsRef<str>>(list: &[S]) -> bool {
    list.iter()
        .any(|ch| channels().symbol(ch.as_ref()).is_some())
}

/// `{"symbols":[..],"timestamp":iso}`: the body of `subscription_confirmed`.
pub fn confirmed_body<S: AsRef<str>>(p: &mut Vec<u8>, channels: &[S]) {
    push_symbols(p, channels);
    p.extend_from_slice(br#","timestamp":"#);
    push_iso(p, super::now_ms());
    p.push(b'}');
}

/// `{"symbols":[..]}`: the body of `unsubscribed`.
pub fn unsubscribed_body<S: AsRef<str>>(p: &mut Vec<u8>, channels: &[S]) {
    push_symbols(p, channels);
    p.push(b'}');
}

/// `{"code":..,"message":..}`: the body of an `error` event.
pub fn error_body(p: &mut Vec<u8>, code: &str, message: &str) {
    p.extend_from_slice(br#"{"code":"#);
    json::push_str(p, code);
    p.extend_from_slice(br#","message":"#);
    json::push_str(p, message);
    p.push(b'}');
}

/// `42["connection_status",{"status":"connected",..}]`, sent right after CONNECT.
pub fn connection_status() -> Bytes {
    event_frame("connection_status", 128, |p| {
        p.extend_from_slice(
            br#"{"status":"connected","message":"Connected to real-time data stream","timestamp":"#,
        );
        push_iso(p, super::now_ms());
        p.push(b'}');
    })
}
