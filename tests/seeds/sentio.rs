//! Sentio 2.0's five endpoints on the wire: the first-frame identity, the 1008 closes,
//! the trust choice (a token's `sub` by default, the named id when the listener opts in),
//! trade signals' "all until symbols", admin frames, market data.

use super::*;

/// The close frame's code and reason.
async fn close_of(ws: &mut Ws) -> (u16, String) {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return (1005, String::new()),
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn sentio_first_frame_identity_and_the_1008_closes() {
    let r = harness::start_routes(hs_config(), |routes| {
        routes.sentio.admin_token = Some("admin-token".into());
    })
    .await;
    let url = |path: &str, q: &str| format!("{}{q}", r.seed_url(path));
    for (path, first, reason) in [
        (
            "/ws/earnings",
            r#"{"action":"subscribe"}"#,
            "user_id required",
        ),
        ("/ws/notifications", "not json", "user_id required"),
        (
            "/ws/admin",
            r#"{"action":"subscribe","admin_token":"nope"}"#,
            "Invalid admin token",
        ),
        (
            "/ws/earnings",
            r#"{"action":"subscribe","user_id":"u1"}"#,
            "user_id does not match the token",
        ),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(url(path, ""))
            .await
            .unwrap();
        send(&mut ws, first).await;
        assert_eq!(
            close_of(&mut ws).await,
            (1008, reason.to_string()),
            "{path} {first}"
        );
    }
    // By default a user id is trusted when the token's sub is that user.
    let q = format!("?token={}", user("u1"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url("/ws/notifications", &q))
        .await
        .unwrap();
    send(&mut ws, r#"{"action":"subscribe","user_id":"u1"}"#).await;
    send(&mut ws, r#"{"action":"ping"}"#).await;
    let pong = recv(&mut ws).await;
    assert_eq!(keys(&pong), ["timestamp", "type"]);
    r.publish("notifications:u1", ODD).await;
    let n = recv_text(&mut ws).await;
    let v: Value = serde_json::from_str(&n).unwrap();
    let want = format!(
        r#"{{"type":"notification","data":{ODD},"timestamp":"{}"}}"#,
        v["timestamp"].as_str().unwrap()
    );
    assert_eq!(n, want, "the data verbatim");
    send(&mut ws, r#"{"action":"dance"}"#).await;
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["message"].as_str()),
        (Some("error"), Some("Unknown action: dance"))
    );
    // The admin token: the whole admin namespace, typed admin_<kind>.
    let (mut admin, _) = tokio_tungstenite::connect_async(url("/ws/admin", ""))
        .await
        .unwrap();
    send(
        &mut admin,
        r#"{"action":"subscribe","admin_token":"admin-token"}"#,
    )
    .await;
    send(&mut admin, r#"{"action":"ping"}"#).await;
    recv(&mut admin).await;
    r.publish("admin:revenue", r#"{"total":1.50}"#).await;
    let a = recv_text(&mut admin).await;
    assert!(
        a.starts_with(r#"{"type":"admin_revenue","data":{"total":1.50},"timestamp":""#),
        "{a}"
    );
}

#[tokio::test]
async fn sentio_trusting_the_named_user_and_trade_signals() {
    let r = harness::start_routes(config(), |routes| routes.sentio.trust_user_id = true).await;
    let (mut e, _) = tokio_tungstenite::connect_async(r.seed_url("/ws/earnings"))
        .await
        .unwrap();
    send(&mut e, r#"{"action":"subscribe","user_id":"user_001"}"#).await;
    send(&mut e, r#"{"action":"ping"}"#).await;
    recv(&mut e).await;
    r.publish("earnings:user_001", r#"{"portfolio_value":10250.50}"#)
        .await;
    let f = recv_text(&mut e).await;
    assert!(
        f.starts_with(r#"{"type":"earnings","data":{"portfolio_value":10250.50},"timestamp":""#)
    );
    // Trade signals: no symbols means all; the first symbols replace all; an array-wrap.
    let (mut t, _) = tokio_tungstenite::connect_async(r.seed_url("/ws/trade-signals"))
        .await
        .unwrap();
    send(&mut t, r#"{"action":"subscribe","symbols":[]}"#).await;
    send(&mut t, r#"{"action":"ping"}"#).await;
    recv(&mut t).await;
    r.publish("signals:MSFT", ODD).await;
    let s = recv_text(&mut t).await;
    assert!(
        s.starts_with(&format!(
            r#"{{"type":"trade_signals","data":[{ODD}],"timestamp":""#
        )),
        "{s}"
    );
    send(&mut t, r#"{"action":"subscribe","symbols":["aapl"]}"#).await;
    send(&mut t, r#"{"action":"ping"}"#).await;
    recv(&mut t).await;
    r.publish("signals:MSFT", "{}").await;
    r.publish("signals:AAPL", r#"[{"symbol":"AAPL"}]"#).await;
    let s = recv_text(&mut t).await;
    assert!(
        s.starts_with(r#"{"type":"trade_signals","data":[{"symbol":"AAPL"}],"#),
        "{s}"
    );
    send(&mut t, r#"{"action":"unsubscribe","symbols":["AAPL"]}"#).await;
    send(&mut t, r#"{"action":"ping"}"#).await;
    recv(&mut t).await;
    r.publish("signals:MSFT", r#"{"back":"to all"}"#).await;
    assert_eq!(recv(&mut t).await["data"], json!([{"back":"to all"}]));
    // Market data: symbols onto ticker channels.
    let (mut m, _) = tokio_tungstenite::connect_async(r.seed_url("/ws/market-data"))
        .await
        .unwrap();
    send(&mut m, r#"{"action":"subscribe","symbols":["tsla"]}"#).await;
    send(&mut m, r#"{"action":"ping"}"#).await;
    recv(&mut m).await;
    r.publish("ticker:TSLA", r#"{"price":1}"#).await;
    let q = recv(&mut m).await;
    assert_eq!(
        (&q["type"], &q["data"]),
        (&json!("update"), &json!([{"price":1}]))
    );
}
