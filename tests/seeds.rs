//! The seed platforms' WebSocket protocols (docs/dialects.md) on a second listener:
//! ARIA PRO on `/ws`, Sentio 2.0 on its five `/ws/*` paths, AI-Trading-V2 on
//! `/api/ws/realtime`, Legend AI on `/api/ws` (plus `/api/ws/stats` and
//! `/api/ws/broadcast/*`), while the main listener's `/ws` stays protocol v1. The wire-level tests pin the frames byte for byte; the client tests run
//! the platforms' front-end usage in Node (`ws`) and headless Debian Chromium
//! (playwright-core) from tests/clients/seeds/.

#[path = "seeds/harness.rs"]
mod harness;
#[path = "seeds/sentio.rs"]
mod sentio;
mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

/// Published data with what a re-serializer would change: key order, `1.50`, escapes,
/// pretty-printing with a line feed.
const ODD: &str = "{\"z\":1.50, \"a\" : \"\\u00e9\\\"q\\n\",\n  \"n\":{\"y\":[1,2.0e3]}}";

async fn seed_ws(url: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let first = recv(&mut ws).await;
    (ws, first)
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

fn is_iso(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

#[tokio::test]
async fn aitrading_frames_acks_and_last_values() {
    let r = harness::start().await;
    let (mut ws, hello) = seed_ws(&r.seed_url("/api/ws/realtime")).await;
    assert_eq!(
        hello,
        json!({"type":"connection","status":"connected","message":"Real-time WebSocket connected"})
    );
    // No position yet: an empty list; no portfolio yet: nothing.
    send(&mut ws, r#"{"action":"get_portfolio"}"#).await;
    send(&mut ws, r#"{"action":"get_positions"}"#).await;
    let p = recv(&mut ws).await;
    assert_eq!(p["type"], "POSITION_UPDATE");
    assert_eq!(p["positions"], json!([]));
    assert!(p["timestamp"].is_u64());
    send(
        &mut ws,
        r#"{"action":"subscribe_ticker","symbol":"BTCUSDT"}"#,
    )
    .await;
    let ack = recv_text(&mut ws).await;
    assert_eq!(
        ack,
        r#"{"type":"subscription","status":"success","symbol":"BTCUSDT","message":"Subscribed to BTCUSDT"}"#
    );
    let published = r.publish("ticker:BTCUSDT", ODD).await;
    let frame = recv_text(&mut ws).await;
    let ts: Value = serde_json::from_str::<Value>(&frame).unwrap()["timestamp"].clone();
    let prefix = format!(r#"{{"type":"MARKET_UPDATE","symbol":"BTCUSDT","timestamp":{ts}"#);
    harness::assert_spliced(&frame, &prefix, ODD);
    assert!(published["offset"] == 1);
    // Positions reach every connection without a subscribe; get_positions answers the
    // last one again.
    let positions = "[{\"id\":\"p1\",\"entry_price\":43250.50}]";
    r.publish("positions", positions).await;
    let pushed = recv_text(&mut ws).await;
    assert!(pushed.starts_with(r#"{"type":"POSITION_UPDATE","positions":[{"id":"p1","entry_price":43250.50}],"timestamp":"#), "{pushed}");
    send(&mut ws, r#"{"action":"get_positions"}"#).await;
    assert_eq!(recv_text(&mut ws).await, pushed);
    r.publish("portfolio", r#"{"balance":10250.50}"#).await;
    let pf = recv_text(&mut ws).await;
    assert!(pf.starts_with(
        r#"{"type":"PORTFOLIO_UPDATE","portfolio":{"balance":10250.50},"timestamp":"#
    ));
    r.publish(
        "order_updates",
        r#"{"orderType":"TRAILING_STOP","order":{"id":"o"}}"#,
    )
    .await;
    let o: Value = recv(&mut ws).await;
    assert_eq!(o["type"], "ORDER_UPDATE");
    assert_eq!(o["orderType"], "TRAILING_STOP");
    // Errors in the platform's shape; the connection stays open.
    send(&mut ws, r#"{"action":"dance"}"#).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"error","message":"Unknown action: dance"})
    );
    send(&mut ws, "{nope").await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"type":"error","message":"Invalid JSON format"})
    );
    send(
        &mut ws,
        r#"{"action":"unsubscribe_ticker","symbol":"BTCUSDT"}"#,
    )
    .await;
    let un = recv(&mut ws).await;
    assert_eq!(un["message"], "Unsubscribed from BTCUSDT");
    r.publish("ticker:BTCUSDT", "{}").await;
    assert_silent(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn legend_history_frame_then_live_then_throttle() {
    let r = harness::start().await;
    for i in 1..=12 {
        r.publish("ticker:AAPL", &format!(r#"{{"price":{i}.50,"i":{i}}}"#))
            .await;
    }
    let url = r.seed_url("/api/ws?user_id=u7&connection_id=c-1");
    let (mut ws, hello) = seed_ws(&url).await;
    assert_eq!(
        keys(&hello),
        ["connection_id", "status", "timestamp", "type"]
    );
    assert_eq!(hello["connection_id"], "c-1");
    assert!(is_iso(&hello["timestamp"]), "{hello}");
    send(
        &mut ws,
        r#"{"type":"subscribe","channel":"ticker","ticker":"aapl"}"#,
    )
    .await;
    let ack = recv(&mut ws).await;
    assert_eq!(keys(&ack), ["action", "ticker", "timestamp", "type"]);
    assert_eq!(
        (&ack["action"], &ack["ticker"]),
        (&json!("subscribed"), &json!("AAPL"))
    );
    let h = recv(&mut ws).await;
    assert_eq!(keys(&h), ["messages", "ticker", "timestamp", "type"]);
    let msgs = h["messages"].as_array().unwrap();
    let order: Vec<u64> = msgs.iter().map(|m| m["i"].as_u64().unwrap()).collect();
    assert_eq!(
        order,
        (3..=12).collect::<Vec<_>>(),
        "the newest 10, oldest first"
    );
    assert_eq!(msgs[0]["type"], "price_update");
    assert_eq!(msgs[0]["ticker"], "AAPL");
    r.publish("ticker:AAPL", ODD).await;
    let live = recv_text(&mut ws).await;
    let v: Value = serde_json::from_str(&live).unwrap();
    let prefix = format!(
        r#"{{"type":"price_update","ticker":"AAPL","timestamp":"{}""#,
        v["timestamp"].as_str().unwrap()
    );
    harness::assert_spliced(&live, &prefix, ODD);
    // 10 messages/s at most, the newest wins: a burst of 60 gives a handful, ending with
    // the last one.
    tokio::time::sleep(Duration::from_millis(150)).await;
    for i in 100..160 {
        r.publish("ticker:AAPL", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let mut got = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_millis(900);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end, ws.next()).await {
        if let Ok(t) = m.to_text() {
            got.push(
                serde_json::from_str::<Value>(t).unwrap()["i"]
                    .as_u64()
                    .unwrap(),
            );
        }
    }
    assert!(
        got.len() <= 11 && got.len() >= 2,
        "throttled to ~10/s: {got:?}"
    );
    assert_eq!(got.last(), Some(&159), "newest wins: {got:?}");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate: {got:?}"
    );
    // Other channels, pings, errors.
    send(&mut ws, r#"{"type":"subscribe","channel":"patterns"}"#).await;
    let a = recv(&mut ws).await;
    assert_eq!(keys(&a), ["action", "channel", "timestamp", "type"]);
    send(&mut ws, r#"{"type":"ping"}"#).await;
    let pong = recv(&mut ws).await;
    assert_eq!(keys(&pong), ["timestamp", "type"]);
    assert_eq!(pong["type"], "pong");
    for (sent, said) in [
        (r#"{"type":"dance"}"#, "Unknown message type: dance"),
        (
            r#"{"type":"subscribe","channel":"weather"}"#,
            "Unknown channel: weather",
        ),
        (
            r#"{"type":"subscribe","channel":"ticker"}"#,
            "Ticker symbol required for ticker channel",
        ),
        ("not json", "Invalid JSON"),
    ] {
        send(&mut ws, sent).await;
        let e = recv(&mut ws).await;
        assert_eq!(keys(&e), ["message", "timestamp", "type"]);
        assert_eq!(
            (e["type"].as_str(), e["message"].as_str()),
            (Some("error"), Some(said))
        );
    }
    send(
        &mut ws,
        r#"{"type":"unsubscribe","channel":"ticker","ticker":"AAPL"}"#,
    )
    .await;
    let un = recv(&mut ws).await;
    assert_eq!(
        (&un["action"], &un["ticker"]),
        (&json!("unsubscribed"), &json!("AAPL"))
    );
    r.publish("ticker:AAPL", "{}").await;
    assert_silent(&mut ws, Duration::from_millis(200)).await;
    // Stats in the documented shape.
    let (s, _, body) = http(r.seeds, "GET", "/api/ws/stats", &[], b"").await;
    assert_eq!(s, 200);
    let st: Value = serde_json::from_str(&body).unwrap();
    let want = [
        "active_connections",
        "alert_subscribers",
        "errors",
        "market_status_subscribers",
        "messages_received",
        "messages_sent",
        "pattern_subscribers",
        "ticker_subscriptions",
        "total_connections",
        "uptime",
    ];
    assert_eq!(keys(&st), want);
    assert_eq!(st["active_connections"], 1);
    assert_eq!(st["pattern_subscribers"], 1);
    assert_eq!(st["errors"], 4);
    assert_eq!(st["messages_received"], 8);
    assert!(st["uptime"].is_f64());
}

#[tokio::test]
async fn legend_broadcast_endpoints_take_query_or_body_and_need_the_key() {
    let r = harness::start().await;
    let (mut ws, _) = seed_ws(&r.seed_url("/api/ws")).await;
    send(
        &mut ws,
        r#"{"type":"subscribe","channel":"ticker","ticker":"AAPL"}"#,
    )
    .await;
    recv(&mut ws).await;
    send(&mut ws, r#"{"type":"subscribe","channel":"alerts"}"#).await;
    recv(&mut ws).await;
    let q = "/api/ws/broadcast/price?ticker=AAPL&price=150.25&change=2.50&change_percent=1.69&volume=75000000&high=151.00&low=148.50&open_price=149.00";
    let (s, _, _) = http(r.seeds, "POST", q, &[], b"").await;
    assert_eq!(s, 401, "the publish key is required");
    let auth = format!("Bearer {KEY}");
    let (s, _, b) = http(r.seeds, "POST", q, &[("Authorization", &auth)], b"").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap(),
        json!({"status":"success","ticker":"AAPL","subscribers":1})
    );
    let f = recv_text(&mut ws).await;
    assert!(f.ends_with(r#","price":150.25,"change":2.50,"change_percent":1.69,"volume":75000000,"high":151.00,"low":148.50,"open":149.00}"#), "{f}");
    let body = br#"{"ticker":"NVDA","alert_type":"breakout","trigger_price":1.50,"current_price":2,"message":"up"}"#;
    let h = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (s, _, b) = http(r.seeds, "POST", "/api/ws/broadcast/alert", &h, body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["alert_type"],
        "breakout"
    );
    let a: Value = recv(&mut ws).await;
    assert_eq!(
        (&a["type"], &a["ticker"]),
        (&json!("alert_trigger"), &json!("NVDA"))
    );
    let (s, _, b) = http(r.seeds, "POST", "/api/ws/broadcast/alert", &h, b"{}").await;
    assert_eq!(s, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap(),
        json!({"detail":"ticker: field required"})
    );
    // Opting out of the key for loopback callers.
    let open = harness::start_with(config(), tickrelay::routes::BroadcastAuth::Loopback).await;
    let (s, _, b) = http(
        open.seeds,
        "POST",
        "/api/ws/broadcast/market_status?status=open",
        &[],
        b"",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["market_status"],
        "open"
    );
}

#[tokio::test]
async fn aria_gets_everything_public_without_subscribing() {
    let r = harness::start().await;
    // The main listener's /ws is still protocol v1.
    let mut v1 = ws(&format!("ws://{}/ws", r.main)).await;
    send(&mut v1, r#"{"op":"ping","id":1}"#).await;
    assert_eq!(recv(&mut v1).await["type"], "pong");
    let (mut a, hello) = seed_ws(&r.seed_url("/ws")).await;
    assert_eq!(
        keys(&hello),
        ["client_id", "message", "subscriptions", "type"]
    );
    assert_eq!(hello["subscriptions"], json!(["all"]));
    // Channels created after the connection are covered too; private ones never.
    r.publish("orders:42", r#"{"secret":1}"#).await;
    r.publish("ticker:EURUSD", ODD).await;
    r.publish("signals:EURUSD", r#"{"side":"buy"}"#).await;
    let tick = recv_text(&mut a).await;
    let v: Value = serde_json::from_str(&tick).unwrap();
    assert!(is_iso(&v["timestamp"]));
    let want = format!(
        r#"{{"type":"tick","timestamp":"{}","data":{ODD}}}"#,
        v["timestamp"].as_str().unwrap()
    );
    assert_eq!(tick, want, "the data verbatim");
    assert_eq!(recv(&mut a).await["type"], "signal");
    send(&mut a, r#"{"type":"ping"}"#).await;
    let pong = recv(&mut a).await;
    assert_eq!(keys(&pong), ["timestamp", "type"]);
    send(&mut a, r#"{"type":"unsubscribe","channels":["all"]}"#).await;
    let up = recv(&mut a).await;
    assert_eq!(up, json!({"type":"subscription_updated","channels":[]}));
    r.publish("ticker:EURUSD", "{}").await;
    assert_silent(&mut a, Duration::from_millis(200)).await;
    send(
        &mut a,
        r#"{"type":"subscribe","channels":["tick:GBPUSD","signal"]}"#,
    )
    .await;
    let c = recv(&mut a).await;
    assert_eq!(
        c,
        json!({"type":"subscription_confirmed","channels":["signal","tick:GBPUSD"]})
    );
    r.publish("ticker:EURUSD", "{}").await;
    r.publish("ticker:GBPUSD", r#"{"bid":1.25}"#).await;
    let g = recv(&mut a).await;
    assert_eq!(g["data"], json!({"bid":1.25}));
    send(&mut a, r#"{"type":"subscribe","channels":["weather"]}"#).await;
    assert_eq!(recv(&mut a).await["type"], "error");
    drop(a);
    // The namespace subscriptions are released with the connection.
    r.relay.hub.sweep(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let p = r.publish("ticker:NEW", "{}").await;
    assert_eq!(p["delivered"], 0, "{p}");
}

#[tokio::test]
async fn one_publish_reaches_every_dialect_with_one_encode_each() {
    let r = harness::start().await;
    let mut v1 = ws(&format!("ws://{}/ws", r.main)).await;
    subscribe(&mut v1, &["ticker:ETH"]).await;
    let (mut aria, _) = seed_ws(&r.seed_url("/ws")).await;
    let (mut legend, _) = seed_ws(&r.seed_url("/api/ws")).await;
    send(
        &mut legend,
        r#"{"type":"subscribe","channel":"ticker","ticker":"ETH"}"#,
    )
    .await;
    recv(&mut legend).await;
    let (mut ai, _) = seed_ws(&r.seed_url("/api/ws/realtime")).await;
    send(&mut ai, r#"{"action":"subscribe_ticker","symbol":"ETH"}"#).await;
    recv(&mut ai).await;
    let (mut ai2, _) = seed_ws(&r.seed_url("/api/ws/realtime")).await;
    send(&mut ai2, r#"{"action":"subscribe_ticker","symbol":"ETH"}"#).await;
    recv(&mut ai2).await;
    let before = r.frames_built().await;
    let p = r.publish("ticker:ETH", ODD).await;
    assert_eq!(p["delivered"], 5, "{p}");
    let after = r.frames_built().await;
    for f in ["envelope", "aria", "legend", "aitrading"] {
        let n = after[f].as_u64().unwrap() - before[f].as_u64().unwrap();
        assert_eq!(n, 1, "{f}: one frame for all its subscribers");
    }
    assert_eq!(after["sentio"], before["sentio"]);
    let env = recv_text(&mut v1).await;
    assert!(env.ends_with(&format!(r#","data":{ODD}}}"#)), "{env}");
    let a = recv_text(&mut aria).await;
    assert!(a.ends_with(&format!(r#","data":{ODD}}}"#)), "{a}");
    let tail = &ODD[1..];
    for frame in [
        recv_text(&mut legend).await,
        recv_text(&mut ai).await,
        recv_text(&mut ai2).await,
    ] {
        assert!(frame.ends_with(tail), "{frame}");
    }
}

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/seeds");

/// Runs one client script of tests/clients/seeds against a fresh relay; asserts it
/// passed every case.
async fn run_clients(script: &str) {
    let modules = std::path::Path::new(CLIENTS).join("node_modules/ws");
    assert!(
        modules.exists(),
        "{} missing: run .ci/test",
        modules.display()
    );
    let r = harness::start_routes(config(), |routes| {
        routes.sentio.trust_user_id = true;
        routes.sentio.admin_token = Some("admin-token".into());
    })
    .await;
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(r.seeds.to_string())
        .arg(r.main.to_string())
        .arg(KEY)
        .current_dir(CLIENTS)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("the client finished in time")
        .expect("node runs (run .ci/test once)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{script} stdout:\n{stdout}\n{script} stderr:\n{stderr}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("cases passed: aitrading legend aria sentio"),
        "{stdout}"
    );
    assert!(stdout.contains("ALL CASES PASSED"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_ends_in_node_with_ws() {
    run_clients("node.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_ends_in_headless_chromium() {
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: apt-get install chromium (.ci/test does)"
    );
    run_clients("browser.mjs").await;
}
