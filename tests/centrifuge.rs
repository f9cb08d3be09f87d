//! The Centrifuge client protocol (JSON) on `/connection/websocket`, with Centrifugo's
//! real, unmodified SDKs: centrifuge-js 5.x (npm) in Node and in headless Debian Chromium
//! (playwright-core), and centrifuge-python (PyPI). Each runs the same cases against a
//! relay behind a loopback proxy that cuts sockets (see `centrifuge/harness.rs` and
//! tests/clients/centrifuge/): connect, subscribe, publications equal to the published
//! data, a denied private channel, unsubscribe, recovery across severed connections
//! while publishing goes on, `recovered: false` after a relay restart, and a token
//! refresh that keeps the subscription. The wire-level tests below pin what the SDKs
//! rely on, byte for byte where it matters.
//!
//! The SDKs are installed by .ci/test (npm packages under tests/clients/centrifuge/
//! node_modules, centrifuge-python in ~/.cache/tickrelay-venv, Debian's chromium).

#[path = "centrifuge/harness.rs"]
mod harness;
mod support;

use futures_util::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// Runs one SDK script to its end; asserts it passed every case.
async fn run_client(program: &str, args: &[String], what: &str) {
    let ctl = harness::Control::start().await;
    let out = tokio::process::Command::new(program)
        .args(args)
        .arg(ctl.base())
        .current_dir(harness::CLIENTS)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .unwrap_or_else(|_| panic!("{what} finished in time"))
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e} (run .ci/test once)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what} stdout:\n{stdout}\n{what} stderr:\n{stderr}");
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    for line in [
        "publications 4 equal",
        "denied 103",
        "unsubscribed",
        "restart: recovered false",
        "ALL CASES PASSED",
    ] {
        assert!(stdout.contains(line), "{what}: no {line:?} in\n{stdout}");
    }
    assert!(stdout.contains("recovered "), "{what}: {stdout}");
    assert!(
        stdout.contains("subscription continued"),
        "{what}: {stdout}"
    );
    ctl.stop().await;
}

fn node_modules_present() {
    let m = PathBuf::from(harness::CLIENTS).join("node_modules/centrifuge");
    assert!(
        m.exists(),
        "{} missing: run .ci/test (or npm ci in tests/clients/centrifuge)",
        m.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_js_in_node() {
    node_modules_present();
    run_client("node", &["node.mjs".into()], "centrifuge-js (Node)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_js_in_headless_chromium() {
    node_modules_present();
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: apt-get install chromium (.ci/test does)"
    );
    run_client("node", &["browser.mjs".into()], "centrifuge-js (Chromium)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn centrifuge_python() {
    let venv = std::env::var("TICKRELAY_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/tickrelay-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} missing: run .ci/test (it installs centrifuge-python there)"
    );
    let script = format!("{}/python_client.py", harness::CLIENTS);
    run_client(&python, &[script], "centrifuge-python").await;
}

// ---------------------------------------------------------------------------------------
// The wire, read by a plain WebSocket client

async fn open(r: &TestRelay) -> Ws {
    let url = format!("ws://{}/connection/websocket", r.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    ws
}

/// Every JSON object of the next text frame (one per line).
async fn lines(ws: &mut Ws) -> Vec<Value> {
    let text = recv_text(ws).await;
    text.split('\n')
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {text:?}")))
        .collect()
}

async fn one(ws: &mut Ws) -> Value {
    let mut v = lines(ws).await;
    assert_eq!(v.len(), 1, "{v:?}");
    v.remove(0)
}

async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 0,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn commands_before_connect_close_with_3501() {
    let r = start(hs_config()).await;
    let mut ws = open(&r).await;
    send(&mut ws, r#"{"id":1,"subscribe":{"channel":"signals:X"}}"#).await;
    assert_eq!(close_code(&mut ws).await, 3501);
    r.stop().await;
}

#[tokio::test]
async fn a_batch_of_commands_gets_its_replies_and_pushes_carry_data_verbatim() {
    let r = start(hs_config()).await;
    let mut ws = open(&r).await;
    let token = user("alice");
    let batch = format!(
        "{}\n{}\n{}\n{}",
        json!({"id":1,"connect":{"token":token,"name":"test"}}),
        json!({"id":2,"subscribe":{"channel":"signals:W","flag":1}}),
        json!({"id":3,"rpc":{"method":"x"}}),
        json!({"id":4,"presence":{"channel":"signals:W"}}),
    );
    send(&mut ws, &batch).await;
    let c = one(&mut ws).await;
    assert_eq!(c["id"], 1, "{c}");
    assert_eq!(c["connect"]["pong"], true);
    assert_eq!(c["connect"]["ping"], 25);
    assert_eq!(c["connect"]["expires"], true);
    let ttl = c["connect"]["ttl"].as_u64().unwrap();
    assert!((3590..=3600).contains(&ttl), "{c}");
    let s = one(&mut ws).await;
    assert_eq!(s["id"], 2, "{s}");
    assert_eq!(s["subscribe"]["recoverable"], true);
    assert_eq!(s["subscribe"]["offset"], 0);
    for id in [3, 4] {
        let e = one(&mut ws).await;
        assert_eq!(
            (e["id"].as_u64(), e["error"]["code"].as_u64()),
            (Some(id), Some(108)),
            "{e}"
        );
    }
    // A raw line feed in the publisher's JSON is white space: sent as a space.
    let (status, _) = r.publish("signals:W", "{\"a\":\n [1, 2]}").await;
    assert_eq!(status, 200);
    let text = recv_text(&mut ws).await;
    assert_eq!(
        text,
        r#"{"push":{"channel":"signals:W","pub":{"data":{"a":  [1, 2]},"offset":1}}}"#
    );
    // Publish (same rules as v1: alice has no publish right), history, unsubscribe.
    send(
        &mut ws,
        r#"{"id":5,"publish":{"channel":"signals:W","data":{"x":1}}}"#,
    )
    .await;
    let e = one(&mut ws).await;
    assert_eq!(e["error"]["code"], 103, "{e}");
    send(
        &mut ws,
        r#"{"id":6,"history":{"channel":"signals:W","limit":-1}}"#,
    )
    .await;
    let h = one(&mut ws).await;
    assert_eq!(h["history"]["offset"], 1, "{h}");
    assert_eq!(h["history"]["publications"][0]["data"], json!({"a":[1,2]}));
    send(
        &mut ws,
        "{\"id\":7,\"unsubscribe\":{\"channel\":\"signals:W\"}}\n{}",
    )
    .await;
    assert_eq!(one(&mut ws).await, json!({"id":7,"unsubscribe":{}}));
    r.stop().await;
}

#[tokio::test]
async fn recovery_comes_in_the_reply_and_a_strict_subscribe_gets_112() {
    let r = start(hs_config()).await;
    for i in 1..=4 {
        r.publish("signals:R", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let epoch = r.relay.hub.position("signals:R").unwrap().epoch;
    let mut ws = open(&r).await;
    let sub = |id: u32, epoch: &str, offset: u64, flag: u32| {
        let s =
            json!({"channel":"signals:R","recover":true,"epoch":epoch,"offset":offset,"flag":flag});
        json!({"id":id,"subscribe":s}).to_string()
    };
    send(
        &mut ws,
        &format!(
            "{}\n{}",
            json!({"id":1,"connect":{}}),
            sub(2, epoch.as_str(), 2, 1)
        ),
    )
    .await;
    let _connect = one(&mut ws).await;
    let s = one(&mut ws).await["subscribe"].clone();
    assert_eq!(
        (s["recovered"].clone(), s["was_recovering"].clone()),
        (json!(true), json!(true)),
        "{s}"
    );
    assert_eq!(s["offset"], 4);
    let pubs: Vec<u64> = s["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(pubs, [3, 4], "{s}");
    r.publish("signals:R", r#"{"i":5}"#).await;
    assert_eq!(
        one(&mut ws).await["push"]["pub"]["offset"],
        5,
        "live after the replay"
    );
    // Another connection, a wrong epoch, flag 2: refused, nothing subscribed or sent.
    let mut other = open(&r).await;
    send(
        &mut other,
        &format!(
            "{}\n{}",
            json!({"id":1,"connect":{}}),
            sub(2, "zzzzzzzz", 1, 3)
        ),
    )
    .await;
    let _connect = one(&mut other).await;
    let e = one(&mut other).await;
    assert_eq!(e["error"]["code"], 112, "{e}");
    r.publish("signals:R", r#"{"i":6}"#).await;
    assert_silent(&mut other, Duration::from_millis(300)).await;
    r.stop().await;
}

#[tokio::test]
async fn close_codes_are_the_protocols() {
    let cfg = tickrelay::Config {
        auth_timeout_ms: 300,
        ..hs_config()
    };
    let r = start(cfg).await;
    // No connect in time: 3502 stale (no reconnect).
    let mut ws = open(&r).await;
    assert_eq!(close_code(&mut ws).await, 3502);
    // An expired token at connect: 109, so the SDK fetches a new one.
    let mut ws = open(&r).await;
    let old = hs(json!({"sub":"a","exp": now() - 60}));
    send(
        &mut ws,
        &json!({"id":1,"connect":{"token":old}}).to_string(),
    )
    .await;
    assert_eq!(one(&mut ws).await["error"]["code"], 109);
    // Shutdown: 3001 (reconnect).
    let mut ws = open(&r).await;
    send(&mut ws, r#"{"id":1,"connect":{}}"#).await;
    let _ = one(&mut ws).await;
    let mut r = r;
    r.begin_stop();
    assert_eq!(close_code(&mut ws).await, 3001);
    drop(ws);
    r.stop().await;
}
