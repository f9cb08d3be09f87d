//! Protocol v1 end to end: subscribe, publish over HTTP and WebSocket, receive.

mod support;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tickrelay::Config;

#[tokio::test]
async fn http_publish_reaches_subscribers_byte_exact_with_offsets_counting_up() {
    let r = start(config()).await;
    let mut ws = ws(&r.url("")).await;
    let sub = subscribe(&mut ws, &["ticker:BTC-USD"]).await;
    let ch = &sub["channels"][0];
    assert_eq!(
        (ch["channel"].as_str(), ch["offset"].as_u64()),
        (Some("ticker:BTC-USD"), Some(0))
    );
    let epoch = ch["epoch"].as_str().unwrap().to_string();
    assert_eq!(sub["id"], "s");

    let data = r#"{"price": 43250.50, "s":"a\"b", "n":[1.0e3]}"#;
    for want in 1..=3u64 {
        let (status, body) = r.publish("ticker:BTC-USD", data).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (
                body["offset"].as_u64(),
                body["epoch"].as_str(),
                body["delivered"].as_u64()
            ),
            (Some(want), Some(epoch.as_str()), Some(1))
        );
        let text = recv_text(&mut ws).await;
        let msg: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (
                msg["type"].as_str(),
                msg["channel"].as_str(),
                msg["offset"].as_u64()
            ),
            (Some("message"), Some("ticker:BTC-USD"), Some(want))
        );
        assert!(msg["ts"].as_u64().unwrap() > 1_700_000_000_000);
        assert!(
            text.ends_with(&format!(r#","data":{data}}}"#)),
            "data embedded verbatim: {text}"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn ws_publish_needs_the_key_and_then_reaches_every_channel_subscriber() {
    let r = start(config()).await;
    let mut sub = ws(&r.url("?channels=signals,alerts")).await;
    let s = recv(&mut sub).await;
    assert_eq!(
        s["type"], "subscribed",
        "?channels= subscribes at connect: {s}"
    );
    assert_eq!(s["channels"].as_array().unwrap().len(), 2);

    let mut publisher = ws(&r.url("")).await;
    send(
        &mut publisher,
        r#"{"op":"publish","channel":"signals","data":{"side":"BUY"},"id":3}"#,
    )
    .await;
    let e = recv(&mut publisher).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_u64()),
        (Some("error"), Some("unauthorized"), Some(3))
    );
    send(&mut publisher, r#"{"op":"auth","token":"nope","id":4}"#).await;
    assert_eq!(recv(&mut publisher).await["code"], "unauthorized");
    send(
        &mut publisher,
        &format!(r#"{{"op":"auth","token":"{KEY}","id":5}}"#),
    )
    .await;
    assert_eq!(
        recv(&mut publisher).await,
        json!({"type":"authenticated","id":5})
    );
    send(
        &mut publisher,
        r#"{"op":"publish","channel":"signals","data":{"side":"BUY"},"id":6}"#,
    )
    .await;
    let mut ack = recv(&mut publisher).await;
    let epoch = ack["epoch"].take();
    assert_eq!(epoch.as_str().map(str::len), Some(8), "the epoch: {ack}");
    assert_eq!(
        ack,
        json!({"type":"published","id":6,"channel":"signals","offset":1,"epoch":null})
    );
    send(
        &mut publisher,
        r#"{"op":"publish","channel":"alerts","data":[1, 2],"id":7}"#,
    )
    .await;
    assert_eq!(recv(&mut publisher).await["offset"], 1);

    let m1 = recv_text(&mut sub).await;
    assert!(
        m1.contains(r#""channel":"signals""#) && m1.ends_with(r#""data":{"side":"BUY"}}"#),
        "{m1}"
    );
    let m2 = recv_text(&mut sub).await;
    assert!(
        m2.contains(r#""channel":"alerts""#) && m2.ends_with(r#""data":[1, 2]}"#),
        "{m2}"
    );

    // ?token= at connect authenticates too.
    let mut p2 = ws(&r.url(&format!("?token={KEY}"))).await;
    send(&mut p2, r#"{"op":"publish","channel":"alerts","data":0}"#).await;
    assert_eq!(recv(&mut p2).await["type"], "published");
    r.stop().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery_and_raw_format_gets_data_alone() {
    let r = start(config()).await;
    let mut a = ws(&r.url("")).await;
    subscribe(&mut a, &["t:1", "t:2"]).await;
    let mut raw = ws(&r.url("?format=raw&channels=t:1")).await;
    assert_eq!(recv(&mut raw).await["type"], "subscribed");

    r.publish("t:1", r#"{"p":1}"#).await;
    assert_eq!(recv(&mut a).await["offset"], 1);
    assert_eq!(recv_text(&mut raw).await, r#"{"p":1}"#);

    send(&mut a, r#"{"op":"unsubscribe","channels":["t:1"],"id":2}"#).await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"unsubscribed","id":2,"channels":["t:1"]})
    );
    r.publish("t:1", r#"{"p":2}"#).await;
    r.publish("t:2", r#"{"p":3}"#).await;
    let m = recv(&mut a).await;
    assert_eq!(
        (m["channel"].as_str(), m["data"]["p"].as_u64()),
        (Some("t:2"), Some(3)),
        "t:1 no longer delivered"
    );
    assert_eq!(recv_text(&mut raw).await, r#"{"p":2}"#);
    assert_silent(&mut a, Duration::from_millis(100)).await;
    r.stop().await;
}

#[tokio::test]
async fn every_error_code_is_answered_and_the_connection_stays_open() {
    let r = start(Config {
        max_subscriptions: 2,
        max_channels: 4,
        ..config()
    })
    .await;
    let mut c = ws(&r.url(&format!("?token={KEY}"))).await;
    let cases = [
        ("{not json", "bad_request"),
        (r#"{"op":"subscribe","channels":[],"id":1}"#, "bad_request"),
        (r#"{"op":"dance","id":1}"#, "unknown_op"),
        (
            r#"{"op":"subscribe","channels":["no spaces"],"id":1}"#,
            "invalid_channel",
        ),
        (
            r#"{"op":"publish","channel":"a*b","data":1,"id":1}"#,
            "invalid_channel",
        ),
        (
            r#"{"op":"subscribe","channels":["a","b","c"],"id":1}"#,
            "too_many_subscriptions",
        ),
        (r#"{"op":"auth","token":"wrong","id":1}"#, "unauthorized"),
    ];
    for (cmd, code) in cases {
        send(&mut c, cmd).await;
        let e = recv(&mut c).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{cmd} -> {e}"
        );
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    // The channel limit: 4 channels exist after these, the 5th cannot be made.
    for ch in ["c1", "c2", "c3", "c4"] {
        assert_eq!(r.publish(ch, "1").await.0, 200);
    }
    send(&mut c, r#"{"op":"publish","channel":"c5","data":1,"id":9}"#).await;
    assert_eq!(recv(&mut c).await["code"], "too_many_channels");
    assert_eq!(r.publish("c5", "1").await.0, 503);
    // A subscribe that needs a channel the relay cannot make is refused whole: no last
    // value of the channel that does exist, and no subscription to it.
    send(
        &mut c,
        r#"{"op":"subscribe","channels":["c1","c6"],"id":10}"#,
    )
    .await;
    assert_eq!(recv(&mut c).await["code"], "too_many_channels");
    r.publish("c1", "2").await;
    send(&mut c, r#"{"op":"ping","id":"after"}"#).await;
    assert_eq!(recv(&mut c).await, json!({"type":"pong","id":"after"}));
    // Still open and healthy.
    send(&mut c, r#"{"op":"ping","id":"still"}"#).await;
    assert_eq!(recv(&mut c).await, json!({"type":"pong","id":"still"}));
    // A relay without a publish key refuses publishing with forbidden.
    let open = start(Config::default()).await;
    let mut c = ws(&open.url("")).await;
    send(&mut c, r#"{"op":"publish","channel":"x","data":1}"#).await;
    assert_eq!(recv(&mut c).await["code"], "forbidden");
    assert_eq!(open.publish("x", "1").await.0, 403);
    let stats = r.stats().await;
    assert_eq!(stats["errors"]["unknown_op"], 1, "{stats}");
    open.stop().await;
    r.stop().await;
}

#[tokio::test]
async fn http_publish_validates_credentials_channel_json_and_size() {
    let r = start(Config {
        max_message_bytes: 100,
        ..config()
    })
    .await;
    let a = r.addr;
    let auth = format!("Bearer {KEY}");
    let h = [("Authorization", auth.as_str())];
    assert_eq!(http(a, "POST", "/publish/t", &[], b"1").await.0, 401);
    assert_eq!(
        http(
            a,
            "POST",
            "/publish/t",
            &[("Authorization", "Bearer nope")],
            b"1"
        )
        .await
        .0,
        401
    );
    let (s, _, body) = http(a, "POST", "/publish/bad%20name", &h, b"1").await;
    assert_eq!(s, 400, "{body}");
    let (s, _, body) = http(a, "POST", "/publish/t", &h, b"{oops").await;
    assert_eq!((s, body.contains("JSON")), (400, true), "{body}");
    let exact = format!("\"{}\"", "x".repeat(98));
    assert_eq!(
        http(a, "POST", "/publish/t", &h, exact.as_bytes()).await.0,
        200,
        "exactly at the limit"
    );
    let over = format!("\"{}\"", "x".repeat(99));
    assert_eq!(
        http(a, "POST", "/publish/t", &h, over.as_bytes()).await.0,
        413
    );
    assert_eq!(
        http(a, "POST", "/publish/t", &h, &vec![b' '; 5000]).await.0,
        413,
        "body limit"
    );
    // %23 and %3A decode in the path.
    let (s, _, body) = http(a, "POST", "/publish/notes%3Au%237", &h, b"true").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains(r#""channel":"notes:u#7""#), "{body}");
    r.stop().await;
}

#[tokio::test]
async fn ndjson_batch_publishes_in_order_or_names_the_bad_line() {
    let r = start(Config {
        max_batch_items: 3,
        ..config()
    })
    .await;
    let mut s = ws(&r.url("?channels=b:1,b:2")).await;
    recv(&mut s).await;
    let auth = format!("Bearer {KEY}");
    let h = [("Authorization", auth.as_str())];
    let body = "{\"channel\":\"b:1\",\"data\":{\"i\":1}}\n{\"channel\":\"b:2\",\"data\":{\"i\":2}}\n{\"channel\":\"b:1\",\"data\":{\"i\":3}}\n";
    let (status, _, resp) = http(r.addr, "POST", "/publish", &h, body.as_bytes()).await;
    assert_eq!(status, 200, "{resp}");
    let resp: Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(resp["published"], 3);
    let offsets: Vec<u64> = resp["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![1, 1, 2]);
    for i in 1..=3 {
        assert_eq!(recv(&mut s).await["data"]["i"], i);
    }
    let bad = "{\"channel\":\"b:1\",\"data\":1}\n{\"channel\":\"b:1\"}\n";
    let (status, _, resp) = http(r.addr, "POST", "/publish", &h, bad.as_bytes()).await;
    assert_eq!(status, 400);
    assert!(resp.starts_with("line 2:"), "{resp}");
    let four = "{\"channel\":\"b:1\",\"data\":1}\n".repeat(4);
    assert_eq!(
        http(r.addr, "POST", "/publish", &h, four.as_bytes())
            .await
            .0,
        413,
        "item limit"
    );
    assert_silent(&mut s, Duration::from_millis(100)).await;
    r.stop().await;
}

#[tokio::test]
async fn stats_metrics_and_health() {
    let r = start(config()).await;
    let mut a = ws(&r.url("?channels=ticker:X")).await;
    recv(&mut a).await;
    r.publish("ticker:X", "1").await;
    recv(&mut a).await;
    let s = r.stats().await;
    assert_eq!(
        (
            s["connections"].as_u64(),
            s["channels"].as_u64(),
            s["subscriptions"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(
        (s["messages_in"].as_u64(), s["messages_out"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(s["bytes_out"].as_u64().unwrap() > 0);
    assert_eq!(
        s["top_channels"],
        json!([{"channel":"ticker:X","subscribers":1}])
    );
    let (status, head, body) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain"));
    assert!(body.contains("\ntickrelay_messages_in_total 1\n"), "{body}");
    assert!(body.contains("tickrelay_errors_total{code=\"bad_request\"} 0"));
    assert_eq!(http(r.addr, "GET", "/health", &[], b"").await.0, 200);
    r.stop().await;
}
