//! WebSocket publishes through the Redis backplane: a burst is one script run, and the
//! connection's replies keep the order of its commands (see `src/session/remote.rs`).

mod cluster;
mod support;

use cluster::{Node, Redis};
use serde_json::Value;
use support::*;
use tokio::io::AsyncWriteExt;

/// The `calls=` count of `EVALSHA` in Redis's command statistics.
fn evalsha_calls(redis: &Redis) -> u64 {
    let info: String = redis.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_burst_of_ws_publishes_is_batched_and_answered_in_order() {
    let redis = Redis::start(false).await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut on_b = ws(&b.ws_url("")).await;
    subscribe(&mut on_b, &["feed:burst"]).await;

    // 300 commands in one write: publishes, with a ping, a refused publish and a
    // malformed command among them; each is answered in the order sent.
    const N: usize = 300;
    let mut wire = Vec::new();
    let mut expect = Vec::new(); // (id, what)
    let mut published = 0u64;
    for i in 0..N {
        let cmd = match i % 50 {
            17 => {
                expect.push((i, "pong"));
                format!(r#"{{"op":"ping","id":{i}}}"#)
            }
            33 => {
                expect.push((i, "error"));
                format!(r#"{{"op":"nope","id":{i}}}"#)
            }
            41 => {
                expect.push((usize::MAX, "error")); // invalid JSON: no id to answer with
                r#"{"op":"publish","channel":"feed:burst","data":{oops}"#.to_string()
            }
            49 => {
                expect.push((i, "error"));
                format!(r#"{{"op":"publish","id":{i},"channel":"bad name!","data":1}}"#)
            }
            _ => {
                published += 1;
                expect.push((i, "published"));
                format!(r#"{{"op":"publish","id":{i},"channel":"feed:burst","data":{{"n":{i}}}}}"#)
            }
        };
        wire.extend(masked_frame(true, 1, cmd.as_bytes()));
    }
    let before = evalsha_calls(&redis);
    let mut pubr = RawWs::connect(a.addr, &format!("?token={KEY}")).await;
    pubr.stream.write_all(&wire).await.unwrap();
    let mut next_offset = 1;
    for (i, what) in &expect {
        let r = pubr.recv().await;
        if *i == usize::MAX {
            assert!(r["id"].is_null(), "{r}");
        } else {
            assert_eq!(r["id"], *i as u64, "reply order: {r}");
        }
        assert_eq!(r["type"], *what, "{r}");
        if *what == "published" {
            assert_eq!(r["offset"], next_offset, "{r}");
            next_offset += 1;
        }
    }
    let runs = evalsha_calls(&redis) - before;
    assert!(
        runs < published / 4,
        "{published} publishes took {runs} script runs: not batched"
    );

    // Every node delivers them once, in order.
    let mut got = Vec::new();
    while got.len() < published as usize {
        let v: Value = serde_json::from_str(&recv_text(&mut on_b).await).unwrap();
        if v["type"] == "message" {
            got.push(v["offset"].as_u64().unwrap());
        }
    }
    assert_eq!(got, (1..=published).collect::<Vec<_>>());
}

#[tokio::test]
async fn publishes_sent_just_before_a_close_are_still_published() {
    let redis = Redis::start(false).await;
    let a = Node::start(&redis, "a").await;
    let mut sub = ws(&a.ws_url("")).await;
    subscribe(&mut sub, &["feed:last"]).await;
    let mut wire = Vec::new();
    for i in 1..=20 {
        let cmd = format!(r#"{{"op":"publish","channel":"feed:last","data":{i}}}"#);
        wire.extend(masked_frame(true, 1, cmd.as_bytes()));
    }
    wire.extend(masked_frame(true, 8, &1000u16.to_be_bytes()));
    let mut pubr = RawWs::connect(a.addr, &format!("?token={KEY}")).await;
    pubr.stream.write_all(&wire).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 20 {
        let v: Value = serde_json::from_str(&recv_text(&mut sub).await).unwrap();
        if v["type"] == "message" {
            got.push(v["data"].as_u64().unwrap());
        }
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>());
}

/// The Centrifuge protocol on a node that never saw the channel: its subscribe waits for
/// the channel to be loaded from Redis (so `recover` works there), and the commands after
/// it in the same message run after it, answered in order.
#[tokio::test]
async fn a_centrifuge_subscribe_on_a_cold_node_recovers_and_keeps_its_message_in_order() {
    let redis = Redis::start(false).await;
    let a = Node::start(&redis, "a").await;
    let b = Node::start(&redis, "b").await;
    let mut epoch = String::new();
    for i in 1..=5 {
        let (s, body) = a.publish("feed:cf", &format!(r#"{{"i":{i}}}"#)).await;
        assert_eq!(s, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        epoch = v["epoch"].as_str().unwrap().to_string();
    }
    let url = format!("ws://{}/connection/websocket", b.addr);
    let (mut c, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let lines = [
        format!(r#"{{"id":1,"connect":{{"token":"{KEY}"}}}}"#),
        format!(
            r#"{{"id":2,"subscribe":{{"channel":"feed:cf","recover":true,"epoch":"{epoch}","offset":2}}}}"#
        ),
        r#"{"id":3,"publish":{"channel":"feed:cf","data":{"i":6}}}"#.to_string(),
        r#"{"id":4,"presence":{"channel":"feed:cf"}}"#.to_string(),
    ];
    send(&mut c, &lines.join("\n")).await;
    let mut replies = Vec::new();
    let mut pushed = Vec::new();
    while replies.len() < 4 || pushed.is_empty() {
        for line in recv_text(&mut c).await.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["id"].is_u64() {
                replies.push(v);
            } else if !v["push"].is_null() {
                pushed.push(v);
            }
        }
    }
    let ids: Vec<u64> = replies.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "{replies:?}");
    let sub = &replies[1]["subscribe"];
    assert_eq!(sub["recovered"], true, "{sub}");
    assert_eq!(sub["epoch"], epoch.as_str(), "{sub}");
    let data: Vec<u64> = sub["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(data, [3, 4, 5]);
    assert!(replies[2]["error"].is_null(), "the publish: {}", replies[2]);
    assert_eq!(replies[3]["error"]["code"], 108, "{}", replies[3]);
    assert_eq!(pushed[0]["push"]["pub"]["offset"], 6, "{}", pushed[0]);
}
