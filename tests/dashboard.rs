//! The browser side: tickrelay.js (`clients/js/`) in Node and in headless Chromium, and the
//! dashboard in headless Chromium, each against a real relay in this process. The JS lives
//! in `tests/clients/browser/` (`playwright-core` driving Debian's `/usr/bin/chromium`,
//! `ws` for Node 20, which has no global WebSocket); `.ci/test` installs both. Each
//! script prints one JSON line, asserted here.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

const SECRET: &str = "dashboard-test-secret";

/// One Chromium at a time: the machine has few cores and each browser wants them.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/browser")
}

/// `npm ci` once when node_modules is missing (CI does it up front in `.ci/test`).
fn npm_deps() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if js_dir().join("node_modules/playwright-core").exists() {
            return;
        }
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(js_dir())
            .status()
            .expect("npm (install nodejs and npm, or run .ci/test)");
        assert!(ok.success(), "npm ci in tests/clients/browser failed");
    });
}

/// Runs `node <args>` in the JS directory and parses the JSON line it ends with.
async fn node(args: &[&str], limit: Duration) -> Value {
    npm_deps();
    let child = tokio::process::Command::new("node")
        .args(args)
        .current_dir(js_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("node {args:?} did not finish within {limit:?}"))
        .expect("node runs (install nodejs, or run .ci/test)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node {args:?} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

fn relay_config() -> tickrelay::Config {
    tickrelay::Config {
        jwt_secret: Some(SECRET.into()),
        jwt_leeway_secs: 0,
        ..config()
    }
}

fn check_scenarios(r: &Value) {
    let rec = &r["recovery"];
    assert_eq!(rec["received"], 240, "{rec}");
    assert_eq!(
        (rec["first"].as_u64(), rec["last"].as_u64()),
        (Some(1), Some(240)),
        "{rec}"
    );
    assert_eq!(
        (rec["dupes"].as_u64(), rec["gaps"].as_u64()),
        (Some(0), Some(0)),
        "{rec}"
    );
    assert_eq!(rec["cuts"], 3, "{rec}");
    assert!(rec["reconnects"].as_u64() >= Some(3), "{rec}");
    assert_eq!(rec["reloads"], 0, "{rec}");
    // The first subscribe asked nothing; every one after a reconnect recovered.
    let subs = rec["subscribed"].as_array().expect("subscribed list");
    assert_eq!(subs[0], Value::Null, "{rec}");
    assert!(subs.len() >= 4, "{rec}");
    assert!(subs[1..].iter().all(|s| s == true), "{rec}");

    let rel = &r["reload"];
    assert_eq!(rel["reloads"], 1, "{rel}");
    assert_eq!(rel["lostOffset"], 1, "{rel}");
    assert_eq!(rel["offset"], 160, "{rel}");

    let b = &r["backoff"];
    let delays: Vec<u64> = b["delays"]
        .as_array()
        .expect("delays")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert!(delays.len() >= 10, "{b}");
    for (i, d) in delays.iter().enumerate() {
        let ceiling = (30u64 << (i + 1).min(20)).min(240);
        assert!(
            (30..=ceiling).contains(d),
            "attempt {i}: {d} ms not in [30, {ceiling}]: {b}"
        );
    }
    assert!(b["distinct"].as_u64() >= Some(5), "no jitter: {b}");
    assert!(delays[3..].iter().any(|d| *d > 120), "no growth: {b}");

    let e = &r["expiry"];
    assert_eq!(e["close"]["code"], 4001, "{e}");
    assert_eq!(e["close"]["reconnect"], false, "{e}");
    assert_eq!(e["reconnects"], 0, "reconnected after 4001: {e}");
    assert_eq!(e["stuckState"], "closed", "{e}");
    assert_eq!(
        e["freshState"], "open",
        "the refreshed connection closed: {e}"
    );
    assert_eq!(e["freshCloses"], serde_json::json!([]), "{e}");
    assert!(e["issued"].as_u64() >= Some(4), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickrelay_js_in_node() {
    let relay = start(relay_config()).await;
    let addr = relay.addr.to_string();
    let r = node(
        &["tickrelay.mjs", "node", &addr, KEY, SECRET],
        Duration::from_secs(90),
    )
    .await;
    check_scenarios(&r);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickrelay_js_in_chromium() {
    let _one = BROWSER.lock().await;
    let relay = start(relay_config()).await;
    let addr = relay.addr.to_string();
    let r = node(
        &["tickrelay.mjs", "browser", &addr, KEY, SECRET],
        Duration::from_secs(120),
    )
    .await;
    check_scenarios(&r);
    assert_eq!(r["console_errors"], serde_json::json!([]), "{r}");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let _one = BROWSER.lock().await;
    let relay = start(tickrelay::Config {
        demo: true,
        // Room for the stalled client to grow for the whole test before 1008.
        queue_bytes: 256 << 20,
        ..relay_config()
    })
    .await;
    // A client that subscribes and never reads, with a tiny receive buffer, and a
    // publisher filling its channel.
    let stalled = RawWs::connect_small_window(relay.addr, "?channels=signals:stall").await;
    let port = stalled.stream.local_addr().expect("local addr").port();
    let addr = relay.addr;
    let publisher = tokio::spawn(async move {
        let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(4000));
        loop {
            let (s, _, _) = http(
                addr,
                "POST",
                "/publish/signals:stall",
                &[("Authorization", &format!("Bearer {KEY}"))],
                body.as_bytes(),
            )
            .await;
            assert_eq!(s, 200);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard.png");
    let r = node(
        &[
            "dashboard.mjs",
            &relay.addr.to_string(),
            KEY,
            &port.to_string(),
            shot.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(120),
    )
    .await;
    publisher.abort();
    assert_eq!(r["console_errors"], serde_json::json!([]), "{r}");
    assert_eq!(r["locked_main_hidden"], true, "{r}");
    let url = r["url_after_login"].as_str().unwrap_or("");
    assert!(
        url.ends_with("/dashboard"),
        "token left in the address bar: {r}"
    );
    assert!(
        r["btc"]["later"].as_u64() > r["btc"]["first"].as_u64(),
        "{r}"
    );
    assert!(
        r["badges"]
            .as_array()
            .is_some_and(|b| b.iter().all(|x| x == "live")),
        "{r}"
    );
    let c = &r["connections"];
    assert!(
        c["during"].as_u64() >= c["before"].as_u64().map(|n| n + 5),
        "{r}"
    );
    assert!(
        c["after"].as_u64() <= c["during"].as_u64().map(|n| n - 5),
        "{r}"
    );
    assert!(
        r["stalled"]["q2"].as_u64() > r["stalled"]["q1"].as_u64(),
        "{r}"
    );
    assert_eq!(
        r["stalled"]["rank"], 0,
        "the stalled client is not the slowest: {r}"
    );
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    drop(stalled);
    relay.stop().await;
}

/// The routes themselves: content types, the redirect, the flag, methods.
#[tokio::test]
async fn dashboard_routes() {
    let relay = start(relay_config()).await;
    let (s, head, body) = http(relay.addr, "GET", "/tickrelay.js", &[], b"").await;
    assert_eq!(s, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert_eq!(body, include_str!("../clients/js/tickrelay.js"));
    let (s, head, _) = http(relay.addr, "GET", "/?token=abc", &[], b"").await;
    assert_eq!(s, 302);
    assert!(head.contains("location: /dashboard?token=abc"), "{head}");
    let (s, head, body) = http(relay.addr, "GET", "/dashboard", &[], b"").await;
    assert_eq!(s, 200);
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(
        body.contains(r#"data-public="false" data-demo="false""#),
        "{body}"
    );
    let (s, _, _) = http(relay.addr, "POST", "/dashboard", &[], b"").await;
    assert_eq!(s, 405);
    relay.stop().await;

    let relay = start(tickrelay::Config {
        dashboard_public: true,
        demo: true,
        ..config()
    })
    .await;
    let (_, _, body) = http(relay.addr, "GET", "/dashboard", &[], b"").await;
    assert!(
        body.contains(r#"data-public="true" data-demo="true""#),
        "{body}"
    );
    relay.stop().await;
}

/// The browser's own `EventSource` on `GET /sse`: messages arrive; after the test cuts
/// the stream, the browser reconnects by itself with `Last-Event-ID` and receives exactly
/// the missed messages, then live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_in_chromium_recovers_with_last_event_id() {
    let _one = BROWSER.lock().await;
    let relay = start(relay_config()).await;
    let addr = relay.addr.to_string();
    let r = node(&["sse.mjs", &addr, KEY], Duration::from_secs(90)).await;
    let want: Vec<u64> = (1..=25).collect();
    assert_eq!(
        r["offsets"],
        serde_json::json!(want),
        "every message once, in order: {r}"
    );
    // The first subscribe had nothing to recover; the reconnect did, and did.
    assert_eq!(r["recovered"], serde_json::json!([null, true]), "{r}");
    assert_eq!(r["opens"], 2, "{r}");
    assert_eq!(r["console_errors"], serde_json::json!([]), "{r}");
    relay.stop().await;
}
