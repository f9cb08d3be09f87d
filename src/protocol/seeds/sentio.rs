//! Sentio 2.0's channel frames: `{"type":T,"data":DATA,"timestamp":iso}`, with the data
//! in an array (*array-wrap*: `[` + data + `]` unless it already is one) for trade
//! signals and market data. `signals[:<SYM>]` → `trade_signals`, `ticker:<SYM>` →
//! `update`, `earnings:<user>` → `earnings`, `notifications:<user>` → `notification`,
//! `admin:<kind>` → `admin_<kind>`; any other namespace: its name.
//!
//! The client side, per endpoint: the **first frame** names the identity
//! (`{"action":"subscribe","user_id":"u","symbols":[..]}`, or `admin_token` on `/ws/admin`);
//! later frames subscribe and unsubscribe symbols (no acknowledgement), `{"action":"ping"}`
//! gets `{"type":"pong","timestamp":iso}`, anything else
//! `{"type":"error","message":"Unknown action: <a>","timestamp":iso}`.
//!
//! | endpoint | channels |
//! |---|---|
//! | `/ws/trade-signals` | `signals:<SYM>`; no symbols: the whole `signals` namespace |
//! | `/ws/earnings` | `earnings:<user_id>`; no user id: close 1008 `user_id required` |
//! | `/ws/notifications` | `notifications:<user_id>` (private); the same close |
//! | `/ws/admin` | the whole `admin` namespace; a wrong token: close 1008 `Invalid admin token` |
//! | `/ws/market-data` | `ticker:<SYM>` (no first-frame rule) |
//!
//! A user id is trusted only when the connection's JWT `sub` equals it (else close 1008
//! `user_id does not match the token`), unless the listener opts in to trusting the named
//! id as the platform's upstream does ([`Settings::trust_user_id`]).

use bytes::Bytes;
use simd_json::prelude::*;
use std::collections::BTreeSet;

use super::{push_iso_str, suffix, text_frame, upper, Owned};
use crate::protocol::channel;
use crate::protocol::format::Message;
use crate::protocol::json;

/// Sentio's five endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/ws/trade-signals`.
    TradeSignals,
    /// `/ws/earnings`.
    Earnings,
    /// `/ws/notifications`.
    Notifications,
    /// `/ws/admin`.
    Admin,
    /// `/ws/market-data`.
    MarketData,
}

/// A listener's Sentio settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Trust the first frame's `user_id` without a token (the upstream's behaviour).
    pub trust_user_id: bool,
    /// The `admin_token` `/ws/admin` accepts (also: a JWT with the admin claim).
    pub admin_token: Option<String>,
}

/// One connection's Sentio state.
#[derive(Debug, Clone)]
pub struct State {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// The listener's settings.
    pub settings: Settings,
    /// The `sub` of the JWT shown at the upgrade, if any.
    pub token_sub: Option<String>,
    /// The JWT shown at the upgrade is an admin's.
    pub token_admin: bool,
    /// The first frame has been read.
    pub identified: bool,
    /// Trade signals: the symbols asked for (empty: all).
    pub symbols: BTreeSet<String>,
}

/// What one client frame asks of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run this.
    Run(Owned),
    /// Close the connection with 1008 and this reason.
    Close(&'static str),
}

/// `{"type":"pong","timestamp":now}`.
pub fn pong(now_ms: u64) -> Bytes {
    text_frame(48, |p| {
        p.extend_from_slice(br#"{"type":"pong","timestamp":"#);
        push_iso_str(p, now_ms);
        p.push(b'}');
    })
}

/// `{"type":"error","message":..,"timestamp":now}`.
pub fn error(message: &str, now_ms: u64) -> Bytes {
    text_frame(64 + message.len(), |p| {
        p.extend_from_slice(br#"{"type":"error","message":"#);
        json::push_str(p, message);
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, now_ms);
        p.push(b'}');
    })
}

fn names(prefix: &str, symbols: &[String]) -> Option<Vec<String>> {
    symbols
        .iter()
        .map(|s| {
            let c = format!("{prefix}:{}", upper(s));
            channel::validate(c.as_bytes()).is_ok().then_some(c)
        })
        .collect()
}

/// Reads one client frame (`buf` is simd-json scratch afterwards).
pub fn parse(buf: &mut [u8], st: &mut State, now_ms: u64) -> Parsed {
    let reply = |m: &str| Parsed::Run(Owned::Reply(error(m, now_ms)));
    let Some(tape) = super::tape(buf) else {
        return match (st.identified, st.endpoint) {
            (false, Endpoint::Earnings | Endpoint::Notifications) => {
                Parsed::Close("user_id required")
            }
            (false, Endpoint::Admin) => Parsed::Close("Invalid admin token"),
            _ => reply("Invalid JSON"),
        };
    };
    let root = tape.as_value();
    let obj = root.as_object();
    let field = |k: &str| {
        obj.as_ref()
            .and_then(|o| o.get(k))
            .and_then(|v| v.into_string())
    };
    let action = field("action").unwrap_or("None").to_owned();
    let user = field("user_id")
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let admin_token = field("admin_token").map(str::to_owned);
    let symbols: Option<Vec<String>> = obj.as_ref().and_then(|o| o.get("symbols")).map(|v| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.into_string().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    });
    drop(tape);
    if !st.identified && st.endpoint != Endpoint::MarketData {
        st.identified = true;
        return first(st, user, admin_token, symbols.unwrap_or_default());
    }
    match action.as_str() {
        "ping" => Parsed::Run(Owned::Ping),
        "subscribe" | "unsubscribe" => {
            let sub = action == "subscribe";
            let symbols = symbols.unwrap_or_default();
            match st.endpoint {
                Endpoint::MarketData => match names("ticker", &symbols) {
                    Some(channels) if sub => Parsed::Run(Owned::Subscribe {
                        channels,
                        max_rate: None,
                    }),
                    Some(channels) => Parsed::Run(Owned::Unsubscribe { channels }),
                    None => reply("Invalid symbol"),
                },
                Endpoint::TradeSignals => signals(st, sub, symbols, now_ms),
                _ => Parsed::Run(Owned::Ignore),
            }
        }
        other => reply(&format!("Unknown action: {other}")),
    }
}

/// The first frame: who this is, and what it gets.
fn first(
    st: &mut State,
    user: Option<String>,
    token: Option<String>,
    symbols: Vec<String>,
) -> Parsed {
    let ns = match st.endpoint {
        Endpoint::Earnings => "earnings",
        Endpoint::Notifications => "notifications",
        Endpoint::Admin => {
            let by_token = token.is_some() && token == st.settings.admin_token;
            if !(by_token || st.token_admin) {
                return Parsed::Close("Invalid admin token");
            }
            let all = Owned::Subscribe {
                channels: vec!["admin:*".into()],
                max_rate: None,
            };
            return Parsed::Run(match by_token && !st.token_admin {
                // The configured token stands for a credential (`anonymous = false`).
                true => Owned::Many(vec![
                    Owned::Trust {
                        sub: "sentio-admin".into(),
                    },
                    all,
                ]),
                false => all,
            });
        }
        Endpoint::TradeSignals => {
            return match names("signals", &symbols) {
                Some(channels) if !channels.is_empty() => {
                    st.symbols.extend(symbols.iter().map(|s| upper(s)));
                    Parsed::Run(Owned::Subscribe {
                        channels,
                        max_rate: None,
                    })
                }
                _ => Parsed::Run(Owned::Subscribe {
                    channels: vec!["signals:*".into()],
                    max_rate: None,
                }),
            };
        }
        Endpoint::MarketData => return Parsed::Run(Owned::Ignore),
    };
    let Some(user) = user else {
        return Parsed::Close("user_id required");
    };
    let channel = format!("{ns}:{user}");
    if channel::validate(channel.as_bytes()).is_err() {
        return Parsed::Close("invalid user_id");
    }
    let subscribe = Owned::Subscribe {
        channels: vec![channel],
        max_rate: None,
    };
    if st.token_sub.as_deref() == Some(user.as_str()) {
        return Parsed::Run(subscribe);
    }
    if !st.settings.trust_user_id {
        return Parsed::Close("user_id does not match the token");
    }
    Parsed::Run(Owned::Many(vec![Owned::Trust { sub: user }, subscribe]))
}

/// Trade signals: the first symbols replace "all"; removing the last returns to it.
fn signals(st: &mut State, sub: bool, symbols: Vec<String>, now_ms: u64) -> Parsed {
    if symbols.is_empty() {
        return Parsed::Run(Owned::Reply(error(
            &format!(
                "Unknown action: {}",
                if sub { "subscribe" } else { "unsubscribe" }
            ),
            now_ms,
        )));
    }
    let Some(channels) = names("signals", &symbols) else {
        return Parsed::Run(Owned::Reply(error("Invalid symbol", now_ms)));
    };
    let all = || vec!["signals:*".to_string()];
    let was_all = st.symbols.is_empty();
    if sub {
        st.symbols.extend(symbols.iter().map(|s| upper(s)));
        let add = Owned::Subscribe {
            channels,
            max_rate: None,
        };
        return Parsed::Run(match was_all {
            true => Owned::Many(vec![Owned::Unsubscribe { channels: all() }, add]),
            false => add,
        });
    }
    if was_all {
        return Parsed::Run(Owned::Ignore);
    }
    for s in &symbols {
        st.symbols.remove(&upper(s));
    }
    let remove = Owned::Unsubscribe { channels };
    Parsed::Run(match st.symbols.is_empty() {
        true => Owned::Many(vec![
            remove,
            Owned::Subscribe {
                channels: all(),
                max_rate: None,
            },
        ]),
        false => remove,
    })
}

/// The frame of one channel message.
pub fn message_frame(m: &Message<'_>) -> Bytes {
    let ns = super::namespace(m.channel);
    text_frame(64 + m.channel.len() + m.data.len(), |p| {
        p.extend_from_slice(br#"{"type":"#);
        let array = match ns {
            "signals" => {
                p.extend_from_slice(br#""trade_signals""#);
                true
            }
            "ticker" => {
                p.extend_from_slice(br#""update""#);
                true
            }
            "notifications" => {
                p.extend_from_slice(br#""notification""#);
                false
            }
            "admin" => {
                json::push_str(p, &format!("admin_{}", suffix(m.channel)));
                false
            }
            other => {
                json::push_str(p, other);
                false
            }
        };
        p.extend_from_slice(br#","data":"#);
        let is_array = m.data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let wrap = array && !is_array;
        if wrap {
            p.push(b'[');
        }
        p.extend_from_slice(m.data);
        if wrap {
            p.push(b']');
        }
        p.extend_from_slice(br#","timestamp":"#);
        push_iso_str(p, m.ts);
        p.push(b'}');
    })
}
