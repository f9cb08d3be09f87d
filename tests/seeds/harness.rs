//! A relay with the seed platforms' listener beside the main one (what
//! docs/dialects.md suggests: ARIA `/ws`, AI-Trading `/api/ws/realtime`, Legend
//! `/api/ws` on a second port), for tests/seeds.rs.
#![allow(dead_code)]

use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tickrelay::routes::{BroadcastAuth, Routes};
use tickrelay::{Config, Relay};
use tokio::sync::oneshot;

use crate::support::{self, http, KEY};

pub struct Seeds {
    /// The main listener (protocol v1 on `/ws`).
    pub main: SocketAddr,
    /// The seed platforms' listener.
    pub seeds: SocketAddr,
    pub relay: Arc<Relay>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Seeds {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn start_with(config: Config, broadcast: BroadcastAuth) -> Seeds {
    start_routes(config, |r| r.legend_broadcast = broadcast).await
}

/// A relay whose seed listener has [`Routes::seeds`] changed by `edit`.
pub async fn start_routes(config: Config, edit: impl FnOnce(&mut Routes)) -> Seeds {
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seeds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, seeds_addr) = (main.local_addr().unwrap(), seeds.local_addr().unwrap());
    let relay = Relay::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    let mut routes = Routes::seeds();
    edit(&mut routes);
    let extra = vec![(seeds, Arc::new(routes))];
    tokio::spawn(tickrelay::server::serve_with(
        main,
        extra,
        relay.clone(),
        async {
            let _ = rx.await;
        },
    ));
    Seeds {
        main: main_addr,
        seeds: seeds_addr,
        relay,
        stop: Some(tx),
    }
}

pub async fn start() -> Seeds {
    start_with(support::config(), BroadcastAuth::Key).await
}

impl Seeds {
    pub fn seed_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.seeds)
    }

    /// POST /publish/{channel} with the test key on the main listener; asserts 200.
    pub async fn publish(&self, channel: &str, data: &str) -> Value {
        let auth = format!("Bearer {KEY}");
        let (s, _, b) = http(
            self.main,
            "POST",
            &format!("/publish/{channel}"),
            &[("Authorization", &auth)],
            data.as_bytes(),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        serde_json::from_str(&b).unwrap()
    }

    /// `frames_built` of `/stats`, by format name.
    pub async fn frames_built(&self) -> Value {
        let (s, _, b) = http(self.main, "GET", "/stats", &[], b"").await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        v["frames_built"].clone()
    }
}

/// Asserts `frame` is `prefix` + the members of `data` after its `{` (a splice), with
/// `data` byte for byte.
pub fn assert_spliced(frame: &str, prefix: &str, data: &str) {
    let members = &data[data.find('{').unwrap() + 1..];
    assert!(
        frame.starts_with(prefix),
        "{frame} does not start with {prefix}"
    );
    let rest = &frame[prefix.len()..];
    let rest = rest.strip_prefix(',').unwrap_or(rest);
    assert_eq!(rest, members, "the data's members verbatim in {frame}");
}
