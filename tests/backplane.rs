//! The Redis backplane on a real `redis-server` and three relay processes: offsets
//! assigned once in Redis and mirrored by every node, interest-based subscription, gap
//! repair, cross-node recovery, Redis going away and coming back with or without data.

mod cluster;
mod support;

use cluster::{eventually, offsets, take, Node, Redis};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

fn numsub(redis: &Redis, channel: &str) -> i64 {
    let r: Vec<redis::Value> =
        redis.cmd(&["PUBSUB", "NUMSUB", &format!("tickrelay:{{{channel}}}")]);
    match r.get(1) {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("NUMSUB answered {other:?}"),
    }
}

#[tokio::test]
async fn a_publish_on_a_reaches_b_and_c_with_identical_bytes_and_offsets() {
    let redis = Redis::start(false).await;
    let [a, b, c] = Node::three(&redis).await;
    let mut on_b = ws(&b.ws_url("")).await;
    let mut on_c = ws(&c.ws_url("")).await;
    let sb = subscribe(&mut on_b, &["ticker:T"]).await;
    let sc = subscribe(&mut on_c, &["ticker:T"]).await;
    assert_eq!(
        sb["channels"][0]["epoch"], sc["channels"][0]["epoch"],
        "one epoch"
    );
    const N: usize = 30;
    for i in 0..N {
        let (s, body) = a.publish("ticker:T", &format!(r#"{{"i":{i}}}"#)).await;
        assert_eq!(s, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(r["offset"], i as u64 + 1);
        assert_eq!(r["epoch"], sb["channels"][0]["epoch"]);
    }
    let got_b = take(&mut on_b, N).await;
    let got_c = take(&mut on_c, N).await;
    assert_eq!(got_b, got_c, "byte-identical frames on every node");
    assert_eq!(offsets(&got_b), (1..=N as u64).collect::<Vec<_>>());
    // A's own subscribers get them through Redis too, and a WS publish works the same.
    let mut on_a = ws(&a.ws_url(&format!("?token={KEY}"))).await;
    let sa = subscribe(&mut on_a, &["ticker:T"]).await;
    assert_eq!(
        sa["channels"][0]["offset"], N as u64,
        "loaded from the stream: {sa}"
    );
    let last = take(&mut on_a, 1).await;
    assert_eq!(last[0], got_b[N - 1], "the last value, same bytes");
    send(
        &mut on_a,
        r#"{"op":"publish","channel":"ticker:T","data":{"ws":1},"id":9}"#,
    )
    .await;
    let mut replied = false;
    let mut seen = None;
    while !replied || seen.is_none() {
        let v = recv(&mut on_a).await;
        match v["type"].as_str() {
            Some("published") => {
                assert_eq!(v["offset"], N as u64 + 1);
                replied = true;
            }
            Some("message") => seen = Some(v["offset"].as_u64().unwrap()),
            _ => panic!("{v}"),
        }
    }
    assert_eq!(seen, Some(N as u64 + 1));
    assert_eq!(offsets(&take(&mut on_b, 1).await), vec![N as u64 + 1]);
    // A node that never had the channel serves its history from the stream.
    let (s, h) = c.get("/history/ticker:T?limit=3").await;
    assert_eq!(s, 200, "{h}");
    let h: Value = serde_json::from_str(&h).unwrap();
    assert_eq!(h["offset"], N as u64 + 1);
    // /stats lists the live nodes.
    let (_, stats) = a.get("/stats").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        stats["backplane"]["nodes"],
        json!(["a", "b", "c"]),
        "{stats}"
    );
}

#[tokio::test]
async fn only_nodes_with_subscribers_subscribe_in_redis_until_the_linger_ends() {
    let redis = Redis::start(false).await;
    let [a, b, _c] = Node::three(&redis).await;
    assert_eq!(numsub(&redis, "ticker:N"), 0);
    let mut on_b = ws(&b.ws_url("")).await;
    subscribe(&mut on_b, &["ticker:N"]).await;
    assert_eq!(numsub(&redis, "ticker:N"), 1, "only B");
    let (s, body) = a.publish("ticker:N", "1").await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["delivered"],
        1,
        "one node"
    );
    let mut on_a = ws(&a.ws_url("")).await;
    subscribe(&mut on_a, &["ticker:N"]).await;
    assert_eq!(numsub(&redis, "ticker:N"), 2);
    send(&mut on_b, r#"{"op":"unsubscribe","channels":["ticker:N"]}"#).await;
    drop(on_a);
    // Both linger 300 ms, then leave.
    eventually("both nodes unsubscribe", || numsub(&redis, "ticker:N") == 0).await;
}

#[tokio::test]
async fn concurrent_publishers_on_three_nodes_give_one_order_everywhere() {
    let redis = Redis::start(false).await;
    let nodes = Node::three(&redis).await;
    let mut subs = Vec::new();
    for n in &nodes {
        let mut w = ws(&n.ws_url("")).await;
        subscribe(&mut w, &["feed:1"]).await;
        subs.push(w);
    }
    const N: usize = 40;
    let mut tasks = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let addr = n.addr;
        tasks.push(tokio::spawn(async move {
            let auth = format!("Bearer {KEY}");
            for i in 0..N {
                let body = format!(r#"{{"from":{k},"i":{i}}}"#);
                let (s, _, b) = http(
                    addr,
                    "POST",
                    "/publish/feed:1",
                    &[("Authorization", &auth)],
                    body.as_bytes(),
                )
                .await;
                assert_eq!(s, 200, "{b}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut seqs = Vec::new();
    for w in &mut subs {
        seqs.push(take(w, 3 * N).await);
    }
    assert_eq!(
        offsets(&seqs[0]),
        (1..=3 * N as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(seqs[0], seqs[1]);
    assert_eq!(seqs[0], seqs[2]);
}

#[tokio::test]
async fn a_client_moved_from_a_to_c_recovers_with_no_gap_and_no_duplicate() {
    let redis = Redis::start(false).await;
    let [a, b, c] = Node::three(&redis).await;
    let mut on_a = ws(&a.ws_url("")).await;
    let s = subscribe(&mut on_a, &["feed:7"]).await;
    let epoch = s["channels"][0]["epoch"].as_str().unwrap().to_string();
    for i in 1..=10 {
        assert_eq!(b.publish("feed:7", &i.to_string()).await.0, 200);
    }
    let seen = take(&mut on_a, 6).await;
    assert_eq!(offsets(&seen), (1..=6).collect::<Vec<_>>());
    drop(on_a);
    for i in 11..=15 {
        assert_eq!(b.publish("feed:7", &i.to_string()).await.0, 200);
    }
    let mut on_c = ws(&c.ws_url("")).await;
    let cmd = json!({"op":"subscribe","channels":["feed:7"],"recover":{"feed:7":{"epoch":epoch,"offset":6}}});
    send(&mut on_c, &cmd.to_string()).await;
    let r = recv(&mut on_c).await;
    assert_eq!(r["channels"][0]["recovered"], true, "{r}");
    assert_eq!(r["channels"][0]["epoch"], epoch.as_str());
    assert_eq!(b.publish("feed:7", "16").await.0, 200);
    assert_eq!(
        offsets(&take(&mut on_c, 10).await),
        (7..=16).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_killed_pubsub_connection_is_repaired_from_the_stream() {
    let redis = Redis::start(false).await;
    let [a, b, _c] = Node::three(&redis).await;
    let mut on_b = ws(&b.ws_url("")).await;
    subscribe(&mut on_b, &["feed:k"]).await;
    let publisher = tokio::spawn({
        let addr = a.addr;
        async move {
            let auth = format!("Bearer {KEY}");
            // Fewer than the stream keeps (100): everything missed is repairable.
            for i in 0..90 {
                let (s, _, _) = http(
                    addr,
                    "POST",
                    "/publish/feed:k",
                    &[("Authorization", &auth)],
                    i.to_string().as_bytes(),
                )
                .await;
                assert_eq!(s, 200);
            }
        }
    });
    let first = take(&mut on_b, 20).await;
    let killed: i64 = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed >= 1, "the nodes' pub/sub connections");
    publisher.await.unwrap();
    let rest = take(&mut on_b, 70).await;
    let all: Vec<u64> = offsets(&first).into_iter().chain(offsets(&rest)).collect();
    assert_eq!(all, (1..=90).collect::<Vec<_>>());
    let (_, stats) = b.get("/stats").await;
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert!(
        stats["backplane"]["reconnects"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

#[tokio::test]
async fn redis_down_fails_publishes_closed_and_its_return_is_seen_in_order() {
    let mut redis = Redis::start(true).await;
    let [a, b, _c] = Node::three(&redis).await;
    let mut on_b = ws(&b.ws_url(&format!("?token={KEY}"))).await;
    let s = subscribe(&mut on_b, &["feed:r"]).await;
    let epoch = s["channels"][0]["epoch"].clone();
    for i in 1..=5 {
        assert_eq!(a.publish("feed:r", &i.to_string()).await.0, 200);
    }
    assert_eq!(offsets(&take(&mut on_b, 5).await), vec![1, 2, 3, 4, 5]);
    redis.kill();
    b.wait_health("\"backplane\":\"down\"").await;
    let (s, body) = a.publish("feed:r", "6").await;
    assert_eq!(s, 503, "{body}");
    assert!(body.starts_with("unavailable"), "{body}");
    // The WebSocket stays open and says why a publish fails.
    send(
        &mut on_b,
        r#"{"op":"publish","channel":"feed:r","data":1,"id":1}"#,
    )
    .await;
    let e = recv(&mut on_b).await;
    assert_eq!(e["code"], "unavailable", "{e}");
    send(&mut on_b, r#"{"op":"ping","id":2}"#).await;
    assert_eq!(recv(&mut on_b).await["type"], "pong");
    // Back with its data (AOF): the same epoch, offsets go on.
    redis.restart(false).await;
    b.wait_health("\"backplane\":\"up\"").await;
    a.wait_health("\"backplane\":\"up\"").await;
    let (s, body) = a.publish("feed:r", "6").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["offset"].as_u64(), &v["epoch"]), (Some(6), &epoch));
    assert_eq!(offsets(&take(&mut on_b, 1).await), vec![6]);
    // Back empty: reliable subscribers are told, then offsets start again from 1.
    redis.restart(true).await;
    let reset = recv(&mut on_b).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["channel"], "feed:r");
    assert_eq!(reset["offset"], 0);
    assert_ne!(reset["epoch"], epoch);
    a.wait_health("\"backplane\":\"up\"").await;
    let (s, body) = a.publish("feed:r", "1").await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["epoch"], reset["epoch"]);
    let m = recv(&mut on_b).await;
    assert_eq!(
        (m["type"].as_str(), m["offset"].as_u64()),
        (Some("message"), Some(1)),
        "{m}"
    );
    let (_, metrics) = b.get("/metrics").await;
    assert!(metrics.contains("tickrelay_backplane_up 1"), "{metrics}");
    assert!(
        metrics.contains("tickrelay_backplane_resets_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn clients_of_a_killed_relay_recover_on_another() {
    let redis = Redis::start(false).await;
    let [mut a, b, c] = Node::three(&redis).await;
    let mut on_a = ws(&a.ws_url("")).await;
    let s = subscribe(&mut on_a, &["feed:x"]).await;
    let epoch = s["channels"][0]["epoch"].as_str().unwrap().to_string();
    for i in 1..=8 {
        assert_eq!(c.publish("feed:x", &i.to_string()).await.0, 200);
    }
    assert_eq!(
        offsets(&take(&mut on_a, 8).await),
        (1..=8).collect::<Vec<_>>()
    );
    a.kill().await;
    for i in 9..=12 {
        assert_eq!(c.publish("feed:x", &i.to_string()).await.0, 200);
    }
    let mut on_b = ws(&b.ws_url("")).await;
    let cmd = json!({"op":"subscribe","channels":["feed:x"],"recover":{"feed:x":{"epoch":epoch,"offset":8}}});
    send(&mut on_b, &cmd.to_string()).await;
    let r = recv(&mut on_b).await;
    assert_eq!(r["channels"][0]["recovered"], true, "{r}");
    assert_eq!(offsets(&take(&mut on_b, 4).await), vec![9, 10, 11, 12]);
    eventually_nodes(&b, &["b", "c"]).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Waits until `/stats` on `n` lists exactly `names`.
async fn eventually_nodes(n: &Node, names: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, stats) = n.get("/stats").await;
        let stats: Value = serde_json::from_str(&stats).unwrap();
        if stats["backplane"]["nodes"] == json!(names) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "nodes: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
