//! Channel access over real sockets: private channels by every spelling, publish rights
//! (publish key, admin, `pub_channels`, namespace), allowed origins, and `GET /history`
//! under the subscribe rules. Token verification and refresh: `tests/auth.rs`.

mod support;
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tickrelay::Config;

#[tokio::test]
async fn nobody_reads_another_users_private_channel_by_any_spelling() {
    let r = start(hs_config()).await;
    let alice_token = user("alice");
    let mut alice = ws(&r.url(&format!("?token={alice_token}"))).await;
    subscribe(&mut alice, &["user:alice", "orders:alice", "signals#alice"]).await;
    let mut bob = ws(&r.url(&format!("?token={}", user("bob")))).await;
    let before = r.stats().await["errors"]["forbidden"].as_u64().unwrap();
    let forbidden = [
        "user:alice",
        "orders:alice",
        "notifications:alice",
        "signals#alice",
        "User:alice",
        "USER:alice",
        "user:ALICE",
        "user:Alice",
        "user:alice#",
        "user:alice#bob",
        "user:bob#alice",
        "orders:alice:x",
        "user",
        "user:",
        "ticker:BTC-USD#alice",
    ];
    for ch in forbidden {
        let e = try_subscribe(&mut bob, &[ch]).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("forbidden")),
            "{ch}: {e}"
        );
    }
    // All or nothing: an allowed channel does not carry a forbidden one in.
    let e = try_subscribe(&mut bob, &["ticker:X", "user:alice"]).await;
    assert_eq!(e["code"], "forbidden");
    // Wildcards and escapes are not channel names at all.
    for ch in [
        "user:*",
        "user:al*",
        "*",
        "user:alice%00",
        "user:alice ",
        "user%3Aalice",
    ] {
        let e = try_subscribe(&mut bob, &[ch]).await;
        assert_eq!(e["code"], "invalid_channel", "{ch}: {e}");
    }
    let after = r.stats().await["errors"]["forbidden"].as_u64().unwrap();
    assert_eq!(
        after - before,
        forbidden.len() as u64 + 1,
        "each denial counted"
    );

    // In ?channels=: percent-encoded, in another case, with a trailing '#'.
    let bob_q = format!("token={}", user("bob"));
    for q in [
        "channels=user%3Aalice",
        "channels=%75ser:alice",
        "channels=USER%3aalice",
        "channels=user:alice%23",
        "channels=ticker:X,user:alice",
    ] {
        let mut c = ws(&r.url(&format!("?{bob_q}&{q}"))).await;
        let e = recv(&mut c).await;
        assert_eq!(e["code"], "forbidden", "{q}: {e}");
    }
    for q in [
        "channels=user%253Aalice",
        "channels=user:*",
        "channels=user%2A",
    ] {
        assert_eq!(
            refused(&r, &format!("?{bob_q}&{q}"), &[]).await.0,
            400,
            "{q}"
        );
    }
    // Anonymous: unauthorized, not forbidden.
    let mut anon = ws(&r.url("")).await;
    assert_eq!(
        try_subscribe(&mut anon, &["user:alice"]).await["code"],
        "unauthorized"
    );

    // Nothing leaked: alice gets her message, bob and anon nothing.
    assert_eq!(r.publish("user:alice", r#"{"fill":1}"#).await.0, 200);
    let m = recv(&mut alice).await;
    assert_eq!(
        (m["channel"].as_str(), m["data"]["fill"].as_u64()),
        (Some("user:alice"), Some(1))
    );
    assert_silent(&mut bob, Duration::from_millis(200)).await;
    assert_silent(&mut anon, Duration::from_millis(10)).await;
    r.stop().await;
}

#[tokio::test]
async fn publish_rights_follow_the_key_admin_pub_channels_and_namespace() {
    let mut cfg = hs_config();
    cfg.namespaces = std::sync::Arc::new(
        tickrelay::namespace::Namespaces::from_toml(
            "[namespaces.chat]\npublish = \"authenticated\"",
        )
        .unwrap(),
    );
    let r = start(cfg).await;
    let feed = hs(json!({"sub":"feed","exp":now() + 60,"pub_channels":["ticker:*"]}));
    let admin = hs(json!({"sub":"ops","exp":now() + 60,"tickrelay_admin":true}));
    // Another service's generic `admin` claim grants nothing here.
    let other = hs(json!({"sub":"ops","exp":now() + 60,"admin":true}));
    let plain = user("u");
    let publish = |ch: &str| json!({"op":"publish","channel":ch,"data":1,"id":"p"}).to_string();
    let outcome = |v: Value| -> String {
        if v["type"] == "published" {
            "ok".into()
        } else {
            v["code"].as_str().unwrap_or("?").to_string()
        }
    };
    for (who, token, channel, want) in [
        ("feed", Some(&feed), "ticker:X", "ok"),
        ("feed", Some(&feed), "signals", "forbidden"),
        ("feed", Some(&feed), "user:u", "forbidden"),
        ("admin", Some(&admin), "signals", "ok"),
        ("admin", Some(&admin), "user:u", "ok"),
        ("generic admin claim", Some(&other), "signals", "forbidden"),
        ("generic admin claim", Some(&other), "user:u", "forbidden"),
        ("plain", Some(&plain), "chat:room", "ok"),
        ("plain", Some(&plain), "ticker:X", "forbidden"),
        ("anonymous", None, "chat:room", "unauthorized"),
        ("anonymous", None, "ticker:X", "unauthorized"),
    ] {
        let q = token.map_or(String::new(), |t| format!("?token={t}"));
        let mut c = ws(&r.url(&q)).await;
        send(&mut c, &publish(channel)).await;
        assert_eq!(outcome(recv(&mut c).await), want, "{who} -> {channel} (ws)");
        // The same over HTTP with the token as the bearer.
        if let Some(t) = token {
            let bearer = format!("Bearer {t}");
            let (s, _, body) = http(
                r.addr,
                "POST",
                &format!("/publish/{channel}"),
                &[("Authorization", &bearer)],
                b"1",
            )
            .await;
            let want_status = if want == "ok" { 200 } else { 403 };
            assert_eq!(s, want_status, "{who} -> {channel} (http): {body}");
        }
    }
    // A batch is refused whole when one line is not allowed.
    let bearer = format!("Bearer {feed}");
    let (s, _, body) = http(
        r.addr,
        "POST",
        "/publish",
        &[("Authorization", &bearer)],
        b"{\"channel\":\"ticker:A\",\"data\":1}\n{\"channel\":\"signals\",\"data\":2}\n",
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("signals"), "{body}");
    let (_, first) = r.publish("ticker:A", "1").await;
    assert!(
        first.contains(r#""offset":1"#),
        "nothing of the batch was published: {first}"
    );
    // The publish key still works, and a bad bearer is a 401.
    assert_eq!(r.publish("signals", "1").await.0, 200);
    let (s, _, body) = http(
        r.addr,
        "POST",
        "/publish/signals",
        &[("Authorization", "Bearer junk")],
        b"1",
    )
    .await;
    assert_eq!(
        (s, body.starts_with("invalid token")),
        (401, true),
        "{body}"
    );
    r.stop().await;

    // Publishing is possible with a JWT key alone (no publish key).
    let jwt_only = start(Config {
        jwt_secret: Some(SECRET.into()),
        ..Config::default()
    })
    .await;
    let mut c = ws(&jwt_only.url(&format!("?token={feed}"))).await;
    send(&mut c, &publish("ticker:X")).await;
    assert_eq!(recv(&mut c).await["type"], "published");
    jwt_only.stop().await;
}

#[tokio::test]
async fn origins_outside_the_allowed_list_get_403() {
    let r = start(Config {
        allowed_origins: vec![
            "https://app.example.com".into(),
            "https://*.trader.io".into(),
        ],
        ..config()
    })
    .await;
    for origin in [
        "https://evil.example",
        "https://app.example.com.evil.io",
        "null",
    ] {
        let (s, body) = refused(&r, "", &[("Origin", origin)]).await;
        assert_eq!(s, 403, "{origin}");
        assert!(body.contains("origin"), "{body}");
    }
    for origin in ["https://app.example.com", "HTTPS://desk.trader.io"] {
        ws_with(&r.url(""), &[("Origin", origin)])
            .await
            .unwrap_or_else(|s| panic!("{origin}: {s}"));
    }
    // No Origin: not a browser; allowed.
    ws(&r.url("")).await;
    r.stop().await;
    // The default allows any origin.
    let open = start(config()).await;
    ws_with(&open.url(""), &[("Origin", "https://anything.example")])
        .await
        .unwrap();
    open.stop().await;
}

/// `GET /history` follows the subscribe rules for tokens: a user reads its own private
/// channel, not another's; admins and the publish key read any.
#[tokio::test]
async fn history_over_http_follows_the_subscribe_rules() {
    let r = start(hs_config()).await;
    assert_eq!(r.publish("user:42", r#"{"fill":1}"#).await.0, 200);
    let get = |token: String| {
        let addr = r.addr;
        async move {
            let auth = format!("Bearer {token}");
            http(
                addr,
                "GET",
                "/history/user:42",
                &[("Authorization", &auth)],
                b"",
            )
            .await
            .0
        }
    };
    assert_eq!(get(user("42")).await, 200);
    assert_eq!(get(user("7")).await, 403);
    assert_eq!(
        get(hs(
            json!({"sub":"ops","tickrelay_admin":true,"exp": now() + 60})
        ))
        .await,
        200
    );
    assert_eq!(get(KEY.to_string()).await, 200);
    assert_eq!(get(hs(json!({"sub":"42","exp": now() - 600}))).await, 401);
    let (status, _, _) = http(r.addr, "GET", "/history/user:42", &[], b"").await;
    assert_eq!(status, 401);
    r.stop().await;
}

#[tokio::test]
async fn stats_show_private_channels_only_to_the_publish_key_and_admins() {
    let r = start(hs_config()).await;
    let mut owner = ws(&r.url(&format!("?token={}", user("u42")))).await;
    subscribe(&mut owner, &["user:u42", "ticker:PUB"]).await;
    let names = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["top_channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["channel"].as_str().unwrap().to_owned())
            .collect()
    };
    let (s, _, body) = http(r.addr, "GET", "/stats", &[], b"").await;
    assert_eq!(s, 200);
    assert_eq!(names(&body), ["ticker:PUB"], "who is online is not public");
    let key = format!("Bearer {KEY}");
    let (_, _, body) = http(r.addr, "GET", "/stats", &[("Authorization", &key)], b"").await;
    assert_eq!(names(&body), ["ticker:PUB", "user:u42"]);
    let admin = format!(
        "Bearer {}",
        hs(json!({"sub":"ops","exp":now() + 60,"tickrelay_admin":true}))
    );
    let (_, _, body) = http(r.addr, "GET", "/stats", &[("Authorization", &admin)], b"").await;
    assert_eq!(names(&body).len(), 2);
    let plain = format!("Bearer {}", user("u7"));
    let (_, _, body) = http(r.addr, "GET", "/stats", &[("Authorization", &plain)], b"").await;
    assert_eq!(names(&body), ["ticker:PUB"], "a user token is not trusted");
    let (s, _, _) = http(
        r.addr,
        "GET",
        "/stats",
        &[("Authorization", "Bearer nope")],
        b"",
    )
    .await;
    assert_eq!(s, 401);
    r.stop().await;
}

#[tokio::test]
async fn stats_and_metrics_answer_from_a_snapshot_for_stats_cache_ms() {
    let r = start(tickrelay::Config {
        stats_cache_ms: 60_000,
        ..config()
    })
    .await;
    let first = r.stats().await;
    let (_, _, metrics) = http(r.addr, "GET", "/metrics", &[], b"").await;
    r.publish("ticker:A", "1").await;
    let again = r.stats().await;
    assert_eq!(
        again["messages_in"], first["messages_in"],
        "served from the snapshot"
    );
    let (_, _, metrics_again) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics, metrics_again);
    r.stop().await;
    // With 0 every request is fresh.
    let r = start(config()).await;
    r.publish("ticker:A", "1").await;
    assert_eq!(r.stats().await["messages_in"], 1);
    r.publish("ticker:A", "1").await;
    assert_eq!(r.stats().await["messages_in"], 2);
    r.stop().await;
}
