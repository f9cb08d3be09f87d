//! Route tables: which client protocol each WebSocket path of a listener speaks.
//!
//! The main listener (`--listen`) serves the native surface: protocol v1 on `/ws`, the
//! Centrifuge protocol on `/connection/websocket`, and every HTTP endpoint. More
//! listeners come from `[[listener]]` tables in `--config`, each with its own routes:
//!
//! ```toml
//! [[listener]]
//! addr = "0.0.0.0:8000"          # the seed platforms' usual port
//! routes = { "/ws" = "aria", "/api/ws/realtime" = "aitrading", "/api/ws" = "legend" }
//! legend_broadcast = "key"        # or "loopback": POST /api/ws/broadcast/* without the key from 127.0.0.1/::1
//! sentio_trust_user_id = false    # true: Sentio's first-frame user_id is trusted without a token
//! sentio_admin_token = "..."      # what Sentio's /ws/admin accepts as admin_token
//! ```
//! Sentio's five endpoints are `sentio-trade-signals`, `sentio-earnings`,
//! `sentio-notifications`, `sentio-admin` and `sentio-market-data`.
//! A route overrides the path it names; everything else on that listener is the native
//! surface (so `/publish`, `/stats` and `/health` answer there too). ARIA's `/ws` cannot
//! share a listener with protocol v1's: a client of either may stay silent until the
//! relay speaks, so the path alone must say which one it is. A `legend` route also
//! serves `<path>/stats` and `<path>/broadcast/{price,pattern,alert,market_status}`.

use serde::Deserialize;

pub use crate::protocol::seeds::sentio::{Endpoint as SentioEndpoint, Settings as SentioSettings};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// A client protocol a path can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Protocol v1.
    V1,
    /// The Centrifuge client protocol (JSON).
    Centrifuge,
    /// Socket.IO v4 (Engine.IO) with the CRS events, WebSocket transport (the main
    /// listener's `/socket.io/`; long-polling is served by `http::socketio`).
    #[serde(rename = "socketio")]
    SocketIo,
    /// ARIA PRO's front end.
    Aria,
    /// AI-Trading-V2's front end.
    AiTrading,
    /// Legend AI's front end (and its HTTP endpoints below the path).
    Legend,
    /// Sentio 2.0's `/ws/trade-signals`.
    #[serde(rename = "sentio-trade-signals")]
    SentioTradeSignals,
    /// Sentio 2.0's `/ws/earnings`.
    #[serde(rename = "sentio-earnings")]
    SentioEarnings,
    /// Sentio 2.0's `/ws/notifications`.
    #[serde(rename = "sentio-notifications")]
    SentioNotifications,
    /// Sentio 2.0's `/ws/admin`.
    #[serde(rename = "sentio-admin")]
    SentioAdmin,
    /// Sentio 2.0's `/ws/market-data`.
    #[serde(rename = "sentio-market-data")]
    SentioMarketData,
}

impl Route {
    /// The Sentio endpoint this route is, if it is one.
    pub fn sentio(self) -> Option<SentioEndpoint> {
        Some(match self {
            Route::SentioTradeSignals => SentioEndpoint::TradeSignals,
            Route::SentioEarnings => SentioEndpoint::Earnings,
            Route::SentioNotifications => SentioEndpoint::Notifications,
            Route::SentioAdmin => SentioEndpoint::Admin,
            Route::SentioMarketData => SentioEndpoint::MarketData,
            _ => return None,
        })
    }

    /// The config-file spelling.
    pub fn name(self) -> &'static str {
        match self {
            Route::V1 => "v1",
            Route::Centrifuge => "centrifuge",
            Route::SocketIo => "socketio",
            Route::Aria => "aria",
            Route::AiTrading => "aitrading",
            Route::Legend => "legend",
            Route::SentioTradeSignals => "sentio-trade-signals",
            Route::SentioEarnings => "sentio-earnings",
            Route::SentioNotifications => "sentio-notifications",
            Route::SentioAdmin => "sentio-admin",
            Route::SentioMarketData => "sentio-market-data",
        }
    }

    /// Whether it is a seed platform's protocol.
    pub fn seed(self) -> bool {
        !matches!(self, Route::V1 | Route::Centrifuge | Route::SocketIo)
    }
}

/// Who may call Legend AI's `POST <path>/broadcast/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastAuth {
    /// The publish key (`Authorization: Bearer`), like `POST /publish`.
    #[default]
    Key,
    /// Also any request from a loopback address, without a key (the platform's
    /// "internal" endpoints).
    Loopback,
}

/// One listener's routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    by_path: BTreeMap<String, Route>,
    /// Who may broadcast through a Legend route.
    pub legend_broadcast: BroadcastAuth,
    /// Sentio routes: whether a named user id is trusted, the admin token.
    pub sentio: SentioSettings,
    /// Plain TCP even when `--tls-cert` is set (`tls = false` in its `[[listener]]`), for
    /// a listener that only loopback or a private network reaches.
    pub plain: bool,
}

/// A Legend AI HTTP endpoint below a `legend` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegendHttp<'a> {
    /// `GET <path>/stats`.
    Stats,
    /// `POST <path>/broadcast/<kind>`.
    Broadcast(&'a str),
}

impl Routes {
    /// The main listener's table: no overrides.
    pub fn native() -> Arc<Routes> {
        Arc::default()
    }

    /// A table from `(path, route)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, Route)>) -> Routes {
        Routes {
            by_path: pairs.into_iter().map(|(p, r)| (p.to_owned(), r)).collect(),
            legend_broadcast: BroadcastAuth::Key,
            sentio: SentioSettings::default(),
            plain: false,
        }
    }

    /// The seed platforms on one listener (what docs/dialects.md suggests for port 8000).
    pub fn seeds() -> Routes {
        Routes::new([
            ("/ws", Route::Aria),
            ("/api/ws/realtime", Route::AiTrading),
            ("/api/ws", Route::Legend),
            ("/ws/trade-signals", Route::SentioTradeSignals),
            ("/ws/earnings", Route::SentioEarnings),
            ("/ws/notifications", Route::SentioNotifications),
            ("/ws/admin", Route::SentioAdmin),
            ("/ws/market-data", Route::SentioMarketData),
        ])
    }

    /// The route of `path`, if the table overrides it.
    pub fn get(&self, path: &str) -> Option<Route> {
        self.by_path.get(path).copied()
    }

    /// A Legend HTTP endpoint `path` is, if it is below a `legend` route.
    pub fn legend_http<'a>(&self, path: &'a str) -> Option<LegendHttp<'a>> {
        self.by_path
            .iter()
            .filter(|(_, r)| **r == Route::Legend)
            .find_map(|(base, _)| {
                let rest = path.strip_prefix(base.as_str())?;
                match rest {
                    "/stats" => Some(LegendHttp::Stats),
                    _ => rest.strip_prefix("/broadcast/").map(LegendHttp::Broadcast),
                }
            })
    }
}

/// A listener from `--config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What its paths speak.
    pub routes: Arc<Routes>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileListener {
    addr: SocketAddr,
    #[serde(default)]
    routes: BTreeMap<String, Route>,
    #[serde(default)]
    legend_broadcast: BroadcastAuth,
    #[serde(default)]
    sentio_trust_user_id: bool,
    #[serde(default)]
    sentio_admin_token: Option<String>,
    /// `false`: plain TCP even with `--tls-cert`.
    #[serde(default = "yes")]
    tls: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    listener: Vec<FileListener>,
}

/// The `[[listener]]` tables of a config file (other tables are the namespaces').
pub fn from_toml(text: &str) -> Result<Vec<Listener>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for l in file.listener {
        for path in l.routes.keys() {
            if !path.starts_with('/') {
                return Err(format!(
                    "listener {}: route {path:?} must start with /",
                    l.addr
                ));
            }
        }
        let mut routes = Routes::new(l.routes.iter().map(|(p, r)| (p.as_str(), *r)));
        routes.legend_broadcast = l.legend_broadcast;
        routes.sentio = SentioSettings {
            trust_user_id: l.sentio_trust_user_id,
            admin_token: l.sentio_admin_token.filter(|t| !t.is_empty()),
        };
        routes.plain = !l.tls;
        out.push(Listener {
            addr: l.addr,
            routes: Arc::new(routes),
        });
    }
    Ok(out)
}

/// The listeners as `[[listener]]` tables (what `--print-config` shows; the Sentio admin
/// token is masked, as a comment).
pub fn to_toml(listeners: &[Listener]) -> String {
    let mut s = String::new();
    for l in listeners {
        s.push_str(&format!(
            "[[listener]]\naddr = \"{}\"\nroutes = {{ ",
            l.addr
        ));
        let routes: Vec<String> = (l.routes.by_path.iter())
            .map(|(p, r)| format!("{p:?} = \"{}\"", r.name()))
            .collect();
        s.push_str(&routes.join(", "));
        s.push_str(" }\n");
        let broadcast = match l.routes.legend_broadcast {
            BroadcastAuth::Key => "key",
            BroadcastAuth::Loopback => "loopback",
        };
        s.push_str(&format!("legend_broadcast = \"{broadcast}\"\n"));
        let trust = l.routes.sentio.trust_user_id;
        s.push_str(&format!("sentio_trust_user_id = {trust}\n"));
        if l.routes.sentio.admin_token.is_some() {
            s.push_str("# sentio_admin_token = <set>\n");
        }
        if l.routes.plain {
            s.push_str("tls = false\n");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_read_from_the_config_file() {
        let text = r#"
            [namespaces.ticker]
            delivery = "conflate"

            [[listener]]
            addr = "127.0.0.1:8000"
            routes = { "/ws" = "aria", "/api/ws/realtime" = "aitrading", "/api/ws" = "legend" }
            legend_broadcast = "loopback"
        "#;
        let ls = from_toml(text).unwrap();
        assert_eq!(ls.len(), 1);
        let r = &ls[0].routes;
        assert_eq!(r.get("/ws"), Some(Route::Aria));
        assert_eq!(r.get("/api/ws"), Some(Route::Legend));
        assert_eq!(r.get("/sse"), None);
        assert_eq!(r.legend_http("/api/ws/stats"), Some(LegendHttp::Stats));
        assert_eq!(
            r.legend_http("/api/ws/broadcast/price"),
            Some(LegendHttp::Broadcast("price"))
        );
        assert_eq!(r.legend_http("/api/wsx"), None);
        assert_eq!(r.legend_broadcast, BroadcastAuth::Loopback);
        assert_eq!(
            from_toml(&to_toml(&ls)).unwrap(),
            ls,
            "printed, read back the same"
        );
        assert!(crate::namespace::Namespaces::from_toml(text).is_ok());
        assert!(
            !r.plain,
            "a listener speaks TLS when --tls-cert is set, by default"
        );
        let plain = from_toml("[[listener]]\naddr = \"127.0.0.1:1\"\ntls = false").unwrap();
        assert!(plain[0].routes.plain);
        assert_eq!(from_toml(&to_toml(&plain)).unwrap(), plain);
        assert!(
            from_toml("[[listener]]\naddr = \"127.0.0.1:1\"\nroutes = { \"/ws\" = \"xml\" }")
                .is_err()
        );
        assert!(
            from_toml("[[listener]]\naddr = \"127.0.0.1:1\"\nroutes = { \"ws\" = \"v1\" }")
                .is_err()
        );
    }
}
