//! Edge chaining on loopback, relay processes all: a core A, edges D and E of it (and F
//! of D). Edges take only what their clients want, with A's offsets, epochs and bytes;
//! clients move between edges and recover; A restarting (history kept by Redis, or lost)
//! is a pause, or a `reset`; publishes at an edge are forwarded or refused; loops are
//! refused.

mod cluster;
mod support;

use cluster::{free_port, offsets, take, Node, Redis};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const RELAY_KEY: &str = "test-relay-key";

/// Core A on `port` (with `extra` flags).
async fn core(name: &str, port: u16, extra: &[&str]) -> Node {
    let mut args = vec!["--relay-key".to_string(), RELAY_KEY.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Node::spawn(name, port, &args).await
}

/// An edge of `upstream`, 300 ms linger.
async fn edge(name: &str, upstream: &Node, extra: &[&str]) -> Node {
    let mut args: Vec<String> = [
        "--upstream",
        &format!("ws://{}/ws", upstream.addr),
        "--upstream-token",
        RELAY_KEY,
        "--upstream-linger-ms",
        "300",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let n = Node::spawn(name, free_port(), &args).await;
    n.wait_health("\"upstream\":\"up\"").await;
    n
}

async fn stats(n: &Node) -> Value {
    serde_json::from_str(&n.get("/stats").await.1).unwrap()
}

/// Subscribers of `channel` on `n` (from /stats, with the publish key).
async fn subscribers(n: &Node, channel: &str) -> u64 {
    let auth = format!("Bearer {KEY}");
    let (_, _, body) = http(n.addr, "GET", "/stats", &[("Authorization", &auth)], b"").await;
    let s: Value = serde_json::from_str(&body).unwrap();
    s["top_channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == channel)
        .map_or(0, |c| c["subscribers"].as_u64().unwrap_or(0))
}

async fn publish_n(a: &Node, channel: &str, from: u64, to: u64) -> String {
    let mut epoch = String::new();
    for i in from..=to {
        let (s, body) = a
            .publish(channel, &format!(r#"{{"i":{i}, "p":"1.50"}}"#))
            .await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["offset"], i, "{body}");
        epoch = v["epoch"].as_str().unwrap().to_string();
    }
    epoch
}

#[tokio::test]
async fn edges_carry_the_cores_offsets_and_bytes_and_only_what_clients_want() {
    let a = core("a", free_port(), &[]).await;
    let d = edge("d", &a, &[]).await;
    let e = edge("e", &a, &[]).await;
    let mut on_a = ws(&a.ws_url("")).await;
    let sa = subscribe(&mut on_a, &["feed:x"]).await;
    let mut on_d1 = ws(&d.ws_url("")).await;
    let mut on_d2 = ws(&d.ws_url("")).await;
    let mut on_e = ws(&e.ws_url("")).await;
    let sd = subscribe(&mut on_d1, &["feed:x"]).await;
    subscribe(&mut on_d2, &["feed:x"]).await;
    let se = subscribe(&mut on_e, &["feed:x"]).await;
    assert_eq!(
        sd["channels"][0]["epoch"], sa["channels"][0]["epoch"],
        "A's epoch"
    );
    assert_eq!(se["channels"][0]["epoch"], sa["channels"][0]["epoch"]);
    // A sees one subscription per edge, however many clients an edge has.
    assert_eq!(subscribers(&a, "feed:x").await, 3, "on_a and one per edge");
    publish_n(&a, "feed:x", 1, 20).await;
    let at_a = take(&mut on_a, 20).await;
    let at_d = take(&mut on_d1, 20).await;
    assert_eq!(take(&mut on_d2, 20).await, at_d);
    assert_eq!(take(&mut on_e, 20).await, at_a, "byte-identical on E");
    assert_eq!(at_d, at_a, "byte-identical on D");
    assert_eq!(offsets(&at_d), (1..=20).collect::<Vec<_>>());
    // A channel nobody on the edges wants is not sent to them.
    assert_eq!(subscribers(&a, "feed:other").await, 0);
    // Clients gone: after the linger the edges unsubscribe upstream.
    drop((on_d1, on_d2, on_e));
    let deadline = tokio::time::Instant::now() + WAIT;
    while subscribers(&a, "feed:x").await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edges never unsubscribed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The relay key lifts the subscription limit (256 per connection) for the edge's
    // one connection: two clients of 200 channels each.
    let mut many = Vec::new();
    for k in 0..2 {
        let names: Vec<String> = (0..200).map(|i| format!("wide:{k}-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut c = ws(&d.ws_url("")).await;
        let r = subscribe(&mut c, &refs).await;
        assert_eq!(r["type"], "subscribed", "{r}");
        many.push(c);
    }
    publish_n(&a, "wide:1-199", 1, 1).await;
    assert_eq!(offsets(&take(&mut many[1], 1).await), vec![1]);
    let s = stats(&d).await;
    assert_eq!(s["upstream"]["state"], "up", "{s}");
    assert_eq!(s["upstream"]["path"], "a", "{s}");
    let (_, m) = d.get("/metrics").await;
    assert!(m.contains("tickrelay_upstream_up 1"), "{m}");
}

#[tokio::test]
async fn a_client_moved_between_edges_recovers_with_no_gap_and_the_last_value_is_there() {
    let a = core("a", free_port(), &[]).await;
    let d = edge("d", &a, &[]).await;
    let e = edge("e", &a, &[]).await;
    let mut on_d = ws(&d.ws_url("")).await;
    subscribe(&mut on_d, &["feed:m"]).await;
    let epoch = publish_n(&a, "feed:m", 1, 10).await;
    assert_eq!(
        offsets(&take(&mut on_d, 10).await),
        (1..=10).collect::<Vec<_>>()
    );
    drop(on_d);
    publish_n(&a, "feed:m", 11, 15).await;
    // E never had the channel: it loads it from A before answering.
    let mut on_e = ws(&e.ws_url("")).await;
    let cmd = json!({"op":"subscribe","channels":["feed:m"],"recover":{"feed:m":{"epoch":epoch,"offset":10}}});
    send(&mut on_e, &cmd.to_string()).await;
    let r = recv(&mut on_e).await;
    assert_eq!(r["channels"][0]["recovered"], true, "{r}");
    assert_eq!(r["channels"][0]["epoch"], epoch.as_str(), "{r}");
    assert_eq!(offsets(&take(&mut on_e, 5).await), vec![11, 12, 13, 14, 15]);
    publish_n(&a, "feed:m", 16, 16).await;
    assert_eq!(offsets(&take(&mut on_e, 1).await), vec![16], "then live");
    // GET /history on the edge serves A's.
    let (s, h) = e.get("/history/feed:m?limit=3").await;
    assert_eq!(s, 200, "{h}");
    let h: Value = serde_json::from_str(&h).unwrap();
    assert_eq!(
        (h["epoch"].as_str(), h["offset"].as_u64()),
        (Some(epoch.as_str()), Some(16))
    );
}

#[tokio::test]
async fn a_core_restart_is_a_pause_with_redis_and_a_reset_without() {
    // With Redis behind A: the history survives A, the edge recovers, nothing is visible.
    let redis = Redis::start(false).await;
    let port = free_port();
    let url = redis.url();
    let mut a = core("a", port, &["--redis", &url]).await;
    a.wait_health("\"backplane\":\"up\"").await;
    let d = edge("d", &a, &[]).await;
    let mut on_d = ws(&d.ws_url("")).await;
    subscribe(&mut on_d, &["feed:r", "signals"]).await;
    publish_n(&a, "feed:r", 1, 5).await;
    assert_eq!(offsets(&take(&mut on_d, 5).await), vec![1, 2, 3, 4, 5]);
    a.kill().await;
    d.wait_health("\"upstream\":\"down\"").await;
    let a = core("a", port, &["--redis", &url]).await;
    a.wait_health("\"backplane\":\"up\"").await;
    d.wait_health("\"upstream\":\"up\"").await;
    publish_n(&a, "feed:r", 6, 8).await;
    let next = take(&mut on_d, 3).await;
    assert_eq!(offsets(&next), vec![6, 7, 8], "contiguous: {next:?}");
    drop(a);

    // Without Redis: A comes back empty, with a new epoch; D's reliable subscribers are
    // told (reset), then get the new epoch's messages from 1.
    let port = free_port();
    let mut a = core("a2", port, &[]).await;
    let d = edge("d2", &a, &[]).await;
    let mut on_d = ws(&d.ws_url("")).await;
    let s = subscribe(&mut on_d, &["feed:r"]).await;
    let old = s["channels"][0]["epoch"].as_str().unwrap().to_string();
    publish_n(&a, "feed:r", 1, 3).await;
    take(&mut on_d, 3).await;
    a.kill().await;
    d.wait_health("\"upstream\":\"down\"").await;
    let a = core("a2", port, &[]).await;
    d.wait_health("\"upstream\":\"up\"").await;
    let reset = loop {
        let v = recv(&mut on_d).await;
        if v["type"] == "reset" {
            break v;
        }
    };
    assert_eq!(reset["channel"], "feed:r");
    assert_ne!(reset["epoch"], old.as_str(), "{reset}");
    let epoch = publish_n(&a, "feed:r", 1, 2).await;
    assert_eq!(reset["epoch"], epoch.as_str(), "{reset}");
    let after = take(&mut on_d, 2).await;
    assert_eq!(offsets(&after), vec![1, 2]);
    let s = stats(&d).await;
    assert!(s["upstream"]["reconnects"].as_u64() >= Some(1), "{s}");
    assert!(s["upstream"]["resets"].as_u64() >= Some(1), "{s}");
}

#[tokio::test]
async fn publishes_at_an_edge_are_forwarded_or_refused_and_chains_pass_offsets_through() {
    let a = core("a", free_port(), &[]).await;
    let d = edge("d", &a, &["--relay-key", RELAY_KEY]).await;
    let f = edge("f", &d, &[]).await; // a second tier
    let r = edge("r", &a, &["--upstream-publish", "refuse"]).await;
    let mut on_a = ws(&a.ws_url("")).await;
    subscribe(&mut on_a, &["feed:p"]).await;
    let mut on_f = ws(&f.ws_url("")).await;
    subscribe(&mut on_f, &["feed:p"]).await;
    // A WebSocket publish at D, checked at D: A assigns the offset.
    let mut pubr = ws(&d.ws_url(&format!("?token={KEY}"))).await;
    send(
        &mut pubr,
        r#"{"op":"publish","id":1,"channel":"feed:p","data":{"from":"d"}}"#,
    )
    .await;
    let ack = recv(&mut pubr).await;
    assert_eq!(
        (ack["type"].as_str(), ack["offset"].as_u64()),
        (Some("published"), Some(1)),
        "{ack}"
    );
    // Over HTTP at F, two tiers down.
    let (s, body) = f.publish("feed:p", r#"{"from":"f"}"#).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["offset"], 2, "{body}");
    assert_eq!(v["epoch"], ack["epoch"], "{body}");
    let at_a = take(&mut on_a, 2).await;
    assert_eq!(take(&mut on_f, 2).await, at_a, "F has A's bytes, through D");
    // Without the publish key the edge refuses it itself.
    let mut anon = ws(&d.ws_url("")).await;
    send(
        &mut anon,
        r#"{"op":"publish","id":2,"channel":"feed:p","data":1}"#,
    )
    .await;
    assert_eq!(recv(&mut anon).await["code"], "unauthorized");
    // An edge that refuses publishes.
    let (s, body) = r.publish("feed:p", "1").await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(
        subscribers(&a, "feed:p").await,
        2,
        "on_a and D (F is behind D)"
    );
}

#[tokio::test]
async fn an_edge_that_is_its_own_upstream_is_refused() {
    // Directly: the relay refuses an edge that is itself (508).
    let port = free_port();
    let upstream = format!("ws://127.0.0.1:{port}/ws");
    let args = [
        "--upstream",
        &upstream,
        "--upstream-token",
        RELAY_KEY,
        "--relay-key",
        RELAY_KEY,
    ]
    .map(String::from);
    let x = Node::spawn("x", port, &args).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stats(&x).await;
    assert_eq!(s["upstream"]["state"], "down", "{s}");
    assert!(s["upstream"]["loops"].as_u64() >= Some(1), "{s}");
    // Through another: B is an edge of C and C an edge of B; at most one link stands.
    let (pb, pc) = (free_port(), free_port());
    let to = |p: u16| format!("ws://127.0.0.1:{p}/ws");
    let b_args = [
        "--upstream",
        &to(pc),
        "--upstream-token",
        RELAY_KEY,
        "--relay-key",
        RELAY_KEY,
    ]
    .map(String::from);
    let c_args = [
        "--upstream",
        &to(pb),
        "--upstream-token",
        RELAY_KEY,
        "--relay-key",
        RELAY_KEY,
    ]
    .map(String::from);
    // B first (its upstream C is not there yet), then C, which becomes B's edge; B's next
    // try finds itself in C's chain. (Two relays made each other's upstream at the same
    // instant can both get through once: a documented limit.)
    let b = Node::spawn("b", pb, &b_args).await;
    b.wait_health("\"upstream\":\"down\"").await;
    let c = Node::spawn("c", pc, &c_args).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (sb, sc) = (stats(&b).await, stats(&c).await);
    let up = [&sb, &sc]
        .iter()
        .filter(|s| s["upstream"]["state"] == "up")
        .count();
    assert!(up <= 1, "a loop stood: {sb} {sc}");
    let loops =
        sb["upstream"]["loops"].as_u64().unwrap() + sc["upstream"]["loops"].as_u64().unwrap();
    assert!(loops >= 1, "{sb} {sc}");
}
