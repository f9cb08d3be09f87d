//! JWTs over real sockets: at the upgrade and with the `auth` op (HS256, RS256, ES256),
//! refresh and expiry (4001), channels at connect waiting for an `auth` op, narrower
//! claims on refresh. Keys: the test-only PEM files in `tests/keys/`. Private channels,
//! publish rights, origins and history access: `tests/access.rs`.

mod support;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;
use tickrelay::Config;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const OTHER_RSA_PRIVATE: &[u8] = include_bytes!("keys/other_rsa_private.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");

fn key_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn rs(alg: Algorithm, pem: &[u8], claims: Value) -> String {
    sign(alg, &EncodingKey::from_rsa_pem(pem).unwrap(), &claims)
}

fn es(claims: Value) -> String {
    sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        &claims,
    )
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with `header` and `claims` and a made-up (or empty) signature.
fn forged(header: Value, claims: Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

async fn auth_op(ws: &mut Ws, token: &str) -> Value {
    send(ws, &json!({"op":"auth","token":token,"id":"a"}).to_string()).await;
    recv(ws).await
}

fn bad_tokens() -> Vec<(&'static str, String)> {
    let t = now();
    let good_claims = json!({"sub":"u1","exp":t + 3600});
    vec![
        ("expired", hs(json!({"sub":"u1","exp":t - 60}))),
        (
            "wrongly signed",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another secret"),
                &good_claims,
            ),
        ),
        (
            "alg none",
            forged(json!({"alg":"none","typ":"JWT"}), good_claims.clone(), ""),
        ),
        (
            "alg none with a signature",
            forged(json!({"alg":"none"}), good_claims.clone(), "c2ln"),
        ),
        ("malformed: not a JWT", "not-a-token".into()),
        ("malformed: three dots", "a.b.c".into()),
        ("malformed: empty parts", "..".into()),
        (
            "malformed: bad JSON header",
            format!("{}.{}.x", b64(b"{nope"), b64(b"{}")),
        ),
        (
            "malformed: exp as a string",
            hs(json!({"sub":"u1","exp":(t + 3600).to_string()})),
        ),
        (
            "malformed: admin as a string",
            hs(json!({"sub":"u1","exp":t + 3600,"tickrelay_admin":"true"})),
        ),
        ("no exp", hs(json!({"sub":"u1"}))),
        (
            "wrong algorithm (RS256 on an HS256 relay)",
            rs(Algorithm::RS256, RSA_PRIVATE, good_claims.clone()),
        ),
        (
            "wrong algorithm (HS512 with the right secret)",
            sign(
                Algorithm::HS512,
                &EncodingKey::from_secret(SECRET.as_bytes()),
                &good_claims,
            ),
        ),
        (
            "nbf in the future",
            hs(json!({"sub":"u1","exp":t + 3600,"nbf":t + 600})),
        ),
        (
            "nbf as a string in the future",
            hs(json!({"sub":"u1","exp":t + 3600,"nbf":(t + 600).to_string()})),
        ),
    ]
}

#[tokio::test]
async fn audience_and_issuer_are_checked_when_configured() {
    let r = start(tickrelay::Config {
        jwt_audience: Some("tickrelay-prod".into()),
        jwt_issuer: Some("https://auth.example".into()),
        ..hs_config()
    })
    .await;
    let t = now() + 600;
    let good = json!({"sub":"u1","exp":t,"aud":"tickrelay-prod","iss":"https://auth.example"});
    assert!(ws_with(&r.url(&format!("?token={}", hs(good))), &[])
        .await
        .is_ok());
    let many_aud =
        json!({"sub":"u1","exp":t,"aud":["x","tickrelay-prod"],"iss":"https://auth.example"});
    assert!(ws_with(&r.url(&format!("?token={}", hs(many_aud))), &[])
        .await
        .is_ok());
    for (what, claims, reason) in [
        (
            "wrong aud",
            json!({"exp":t,"aud":"other","iss":"https://auth.example"}),
            "wrong audience",
        ),
        (
            "no aud",
            json!({"exp":t,"iss":"https://auth.example"}),
            "no aud claim",
        ),
        (
            "wrong iss",
            json!({"exp":t,"aud":"tickrelay-prod","iss":"https://evil"}),
            "wrong issuer",
        ),
        (
            "no iss",
            json!({"exp":t,"aud":"tickrelay-prod"}),
            "no iss claim",
        ),
    ] {
        let (s, body) = refused(&r, &format!("?token={}", hs(claims)), &[]).await;
        assert_eq!(s, 401, "{what}: {body}");
        assert!(body.contains(reason), "{what}: {body}");
    }
    r.stop().await;
    // Without the settings, aud and iss are not looked at (as before).
    let r = start(hs_config()).await;
    let any = json!({"sub":"u1","exp":t,"aud":"whatever","iss":"anyone"});
    assert!(ws_with(&r.url(&format!("?token={}", hs(any))), &[])
        .await
        .is_ok());
    r.stop().await;
}

#[tokio::test]
async fn bad_tokens_are_refused_at_the_upgrade_and_by_the_auth_op() {
    let r = start(hs_config()).await;
    let mut anon = ws(&r.url("")).await;
    let cases = bad_tokens();
    for (what, token) in &cases {
        let (s, body) = refused(&r, &format!("?token={token}"), &[]).await;
        assert_eq!(s, 401, "{what}: {body}");
        assert!(body.starts_with("invalid token"), "{what}: {body}");
        let bearer = format!("Bearer {token}");
        let (s, body) = refused(&r, "", &[("Authorization", &bearer)]).await;
        assert_eq!(s, 401, "{what} (header): {body}");
        let e = auth_op(&mut anon, token).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("unauthorized")),
            "{what}: {e}"
        );
    }
    // Specific reasons where they help a client.
    let reason = |what: &str| {
        let token = cases.iter().find(|(w, _)| *w == what).unwrap().1.clone();
        let r = &r;
        async move { refused(r, &format!("?token={token}"), &[]).await.1 }
    };
    assert!(reason("expired").await.contains("expired"));
    assert!(reason("wrongly signed").await.contains("signature"));
    assert!(
        reason("alg none").await.contains("malformed")
            || reason("alg none").await.contains("algorithm")
    );
    assert!(reason("nbf in the future").await.contains("nbf"));
    assert!(reason("wrong algorithm (RS256 on an HS256 relay)")
        .await
        .contains("algorithm"));
    // The connection that sent all of them is still anonymous and healthy.
    assert_eq!(
        try_subscribe(&mut anon, &["user:u1"]).await["code"],
        "unauthorized"
    );
    // A good token works in all three places.
    let good = user("u1");
    let mut a = ws(&r.url(&format!("?token={good}"))).await;
    subscribe(&mut a, &["user:u1"]).await;
    let bearer = format!("Bearer {good}");
    let mut b = ws_with(&r.url(""), &[("Authorization", &bearer)])
        .await
        .expect("bearer accepted");
    subscribe(&mut b, &["user:u1"]).await;
    let ok = auth_op(&mut anon, &good).await;
    assert_eq!(
        (ok["type"].as_str(), ok["sub"].as_str()),
        (Some("authenticated"), Some("u1")),
        "{ok}"
    );
    assert!(ok["exp"].as_u64().unwrap() > now());
    subscribe(&mut anon, &["user:u1"]).await;
    let stats = r.stats().await;
    let unauthorized = stats["errors"]["unauthorized"].as_u64().unwrap();
    assert!(
        unauthorized >= 3 * cases.len() as u64,
        "every refusal counted: {stats}"
    );
    r.stop().await;
}

#[tokio::test]
async fn rs256_and_es256_keys_accept_their_own_algorithm_only() {
    let claims = || json!({"sub":"u1","exp":now() + 3600});
    let rsa = start(Config {
        jwt_public_key: Some(key_path("rsa_public.pem")),
        ..config()
    })
    .await;
    let good = rs(Algorithm::RS256, RSA_PRIVATE, claims());
    let mut c = ws(&rsa.url(&format!("?token={good}"))).await;
    subscribe(&mut c, &["user:u1"]).await;
    let public_pem = std::fs::read(key_path("rsa_public.pem")).unwrap();
    for (what, token) in [
        // Algorithm confusion: HMAC "signed" with the public key the relay holds.
        (
            "HS256 keyed with the public key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&public_pem),
                &claims(),
            ),
        ),
        (
            "RS384 with the right key",
            rs(Algorithm::RS384, RSA_PRIVATE, claims()),
        ),
        (
            "PS256 with the right key",
            rs(Algorithm::PS256, RSA_PRIVATE, claims()),
        ),
        (
            "RS256 with another key",
            rs(Algorithm::RS256, OTHER_RSA_PRIVATE, claims()),
        ),
        ("ES256", es(claims())),
        ("alg none", forged(json!({"alg":"none"}), claims(), "")),
    ] {
        let (s, body) = refused(&rsa, &format!("?token={token}"), &[]).await;
        assert_eq!(s, 401, "{what}: {body}");
        let e = auth_op(&mut c, &token).await;
        assert_eq!(e["code"], "unauthorized", "{what}: {e}");
    }
    rsa.stop().await;

    let ec = start(Config {
        jwt_public_key: Some(key_path("ec_public.pem")),
        ..config()
    })
    .await;
    let mut c = ws(&ec.url(&format!("?token={}", es(claims())))).await;
    subscribe(&mut c, &["orders:u1"]).await;
    for token in [rs(Algorithm::RS256, RSA_PRIVATE, claims()), hs(claims())] {
        assert_eq!(refused(&ec, &format!("?token={token}"), &[]).await.0, 401);
    }
    ec.stop().await;

    // Both kinds configured: each token goes to its own key.
    let both = start(Config {
        jwt_public_key: Some(key_path("rsa_public.pem")),
        ..hs_config()
    })
    .await;
    ws(&both.url(&format!("?token={}", hs(claims())))).await;
    ws(&both.url(&format!(
        "?token={}",
        rs(Algorithm::RS256, RSA_PRIVATE, claims())
    )))
    .await;
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims(),
    );
    assert_eq!(
        refused(&both, &format!("?token={confused}"), &[]).await.0,
        401
    );
    both.stop().await;

    // A key file that is not a public key stops the relay from starting.
    let mut bad = Config {
        jwt_public_key: Some(key_path("README.md")),
        ..config()
    };
    assert!(bad.load_file().unwrap_err().contains("PUBLIC KEY"));
}

#[tokio::test]
async fn a_refresh_extends_life_and_an_expired_token_closes_with_4001() {
    let r = start(Config {
        jwt_leeway_secs: 0,
        ..hs_config()
    })
    .await;
    let short = |sub: &str| hs(json!({"sub":sub,"exp":now() + 2}));
    let mut stale = RawWs::connect(r.addr, &format!("?token={}", short("a"))).await;
    let mut fresh = RawWs::connect(r.addr, &format!("?token={}", short("b"))).await;
    let mut bad_refresh = RawWs::connect(r.addr, &format!("?token={}", short("c"))).await;
    let started = tokio::time::Instant::now();
    fresh
        .send_text(
            &json!({"op":"auth","token":hs(json!({"sub":"b","exp":now() + 60})),"id":1})
                .to_string(),
        )
        .await;
    let ok = fresh.recv().await;
    assert_eq!(ok["type"], "authenticated", "{ok}");
    bad_refresh
        .send_text(&json!({"op":"auth","token":"junk","id":1}).to_string())
        .await;
    assert_eq!(bad_refresh.recv().await["code"], "unauthorized");

    // The unrefreshed ones close with 4001 and a reason, at exp (within a second).
    for conn in [&mut stale, &mut bad_refresh] {
        let (code, reason) = loop {
            match conn.read_frame().await.expect("a close frame") {
                (0x8, p) => {
                    break (
                        u16::from_be_bytes([p[0], p[1]]),
                        String::from_utf8_lossy(&p[2..]).to_string(),
                    )
                }
                _ => continue,
            }
        };
        assert_eq!(code, 4001);
        assert!(reason.contains("token expired"), "{reason}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    // The refreshed one outlives its first token.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(started.elapsed())).await;
    fresh.send_text(r#"{"op":"ping","id":"alive"}"#).await;
    assert_eq!(fresh.recv().await["id"], "alive");
    r.stop().await;
}

#[tokio::test]
async fn channels_at_connect_wait_for_an_auth_op_within_the_deadline() {
    let r = start(Config {
        auth_timeout_ms: 400,
        ..hs_config()
    })
    .await;
    // The token comes in the first frame instead of the URL.
    let mut c = ws(&r.url("?channels=user:alice,ticker:X")).await;
    send(
        &mut c,
        &json!({"op":"auth","token":user("alice")}).to_string(),
    )
    .await;
    assert_eq!(recv(&mut c).await["type"], "authenticated");
    let s = recv(&mut c).await;
    assert_eq!(s["type"], "subscribed", "{s}");
    assert_eq!(s["channels"].as_array().unwrap().len(), 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&mut c, r#"{"op":"ping"}"#).await;
    assert_eq!(recv(&mut c).await["type"], "pong", "deadline disarmed");

    // No auth in time: 4001.
    let mut late = RawWs::connect(r.addr, "?channels=user:alice").await;
    let started = tokio::time::Instant::now();
    assert_eq!(late.expect_close().await, Some(4001));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A wrong token does not count as auth.
    let mut wrong = RawWs::connect(r.addr, "?channels=user:alice").await;
    wrong.send_text(r#"{"op":"auth","token":"junk"}"#).await;
    assert_eq!(wrong.recv().await["code"], "unauthorized");
    assert_eq!(wrong.expect_close().await, Some(4001));
    // Public channels need nothing, and a connection holding them is not timed out.
    let mut public = ws(&r.url("?channels=ticker:X")).await;
    assert_eq!(recv(&mut public).await["type"], "subscribed");
    tokio::time::sleep(Duration::from_millis(600)).await;
    send(&mut public, r#"{"op":"ping"}"#).await;
    assert_eq!(recv(&mut public).await["type"], "pong");
    r.stop().await;

    // A relay where no namespace is anonymous times out every connection without a token.
    let mut closed = Config {
        auth_timeout_ms: 300,
        ..hs_config()
    };
    closed.namespaces = std::sync::Arc::new(
        tickrelay::namespace::Namespaces::from_toml(
            "[defaults]\nanonymous = false\n[namespaces.ticker]\nanonymous = false\n[namespaces.market_status]\nanonymous = false\n[namespaces.signals]\nanonymous = false\n[namespaces.alerts]\nanonymous = false",
        )
        .unwrap(),
    );
    let r = start(closed).await;
    let mut idle = RawWs::connect(r.addr, "").await;
    idle.send_text(r#"{"op":"subscribe","channels":["ticker:X"],"id":1}"#)
        .await;
    assert_eq!(idle.recv().await["code"], "unauthorized");
    assert_eq!(idle.expect_close().await, Some(4001));
    let mut with_token = ws(&r.url(&format!("?token={}", user("u")))).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    subscribe(&mut with_token, &["ticker:X"]).await;
    r.stop().await;
}

#[tokio::test]
async fn a_refresh_with_narrower_claims_drops_what_they_no_longer_allow() {
    let r = start(hs_config()).await;
    let wide =
        hs(json!({"sub":"u","exp":now() + 60,"sub_channels":["ticker:*","signals","user:*"]}));
    let mut c = ws(&r.url(&format!("?token={wide}"))).await;
    subscribe(&mut c, &["ticker:X", "signals", "user:u"]).await;
    let narrow = hs(json!({"sub":"u","exp":now() + 60,"sub_channels":["ticker:*","user:u"]}));
    assert_eq!(auth_op(&mut c, &narrow).await["type"], "authenticated");
    let u = recv(&mut c).await;
    assert_eq!(u, json!({"type":"unsubscribed","channels":["signals"]}));
    assert_eq!(r.publish("signals", "1").await.0, 200);
    assert_eq!(r.publish("ticker:X", "2").await.0, 200);
    assert_eq!(
        recv(&mut c).await["channel"],
        "ticker:X",
        "signals no longer delivered"
    );
    // Switching to another user's token drops the first user's private channels.
    let mut a = ws(&r.url(&format!("?token={}", user("a")))).await;
    subscribe(&mut a, &["user:a"]).await;
    assert_eq!(auth_op(&mut a, &user("b")).await["sub"], "b");
    assert_eq!(
        recv(&mut a).await,
        json!({"type":"unsubscribed","channels":["user:a"]})
    );
    r.stop().await;
}
