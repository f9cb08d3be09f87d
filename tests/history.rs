//! History, recovery on reconnect, last value on subscribe, and `GET /history`.

mod support;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tickrelay::namespace::Namespaces;
use tickrelay::Config;
use tokio_tungstenite::tungstenite::Message;

fn with_namespaces(toml: &str) -> Config {
    Config {
        namespaces: Arc::new(Namespaces::from_toml(toml).expect("test namespaces")),
        ..config()
    }
}

/// Subscribes with an optional `recover` entry for the first channel.
async fn subscribe_from(ws: &mut Ws, channel: &str, from: Option<(&str, u64)>) -> Value {
    let mut cmd = json!({"op":"subscribe","channels":[channel],"id":"r"});
    if let Some((epoch, offset)) = from {
        cmd["recover"] = json!({ channel: {"epoch": epoch, "offset": offset} });
    }
    send(ws, &cmd.to_string()).await;
    let r = recv(ws).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    r["channels"][0].clone()
}

async fn publish_n(r: &TestRelay, channel: &str, from: u64, to: u64) {
    let mut batch = String::new();
    for i in from..=to {
        batch.push_str(&format!(
            "{{\"channel\":\"{channel}\",\"data\":{{\"i\":{i}}}}}\n"
        ));
    }
    r.publish_batch(&batch).await;
}

/// Reads `n` messages and asserts their offsets are `first, first+1, ...` with the data
/// each was published with.
async fn expect_offsets(ws: &mut Ws, first: u64, n: u64) {
    for want in first..first + n {
        let m = recv(ws).await;
        assert_eq!(m["type"], "message", "{m}");
        assert_eq!(m["offset"], want, "{m}");
        assert_eq!(m["data"]["i"], want, "{m}");
    }
}

#[tokio::test]
async fn reconnect_with_last_offset_gets_exactly_the_missed_50_then_live() {
    let r = start(config()).await;
    let ch = "signals:LSTM";
    let mut a = ws(&r.url("")).await;
    let s = subscribe_from(&mut a, ch, None).await;
    let epoch = s["epoch"].as_str().unwrap().to_string();
    publish_n(&r, ch, 1, 10).await;
    expect_offsets(&mut a, 1, 10).await;
    drop(a);

    publish_n(&r, ch, 11, 60).await;
    let mut b = ws(&r.url("")).await;
    let s = subscribe_from(&mut b, ch, Some((&epoch, 10))).await;
    assert_eq!(
        (
            s["recovered"].as_bool(),
            s["offset"].as_u64(),
            s["epoch"].as_str()
        ),
        (Some(true), Some(60), Some(epoch.as_str()))
    );
    expect_offsets(&mut b, 11, 50).await;
    publish_n(&r, ch, 61, 65).await;
    expect_offsets(&mut b, 61, 5).await;
    assert_silent(&mut b, Duration::from_millis(200)).await;

    // Already up to date: recovered, nothing replayed.
    let mut c = ws(&r.url("")).await;
    let s = subscribe_from(&mut c, ch, Some((&epoch, 65))).await;
    assert_eq!(s["recovered"], true);
    assert_silent(&mut c, Duration::from_millis(200)).await;
    r.stop().await;
}

#[tokio::test]
async fn missing_150_on_a_ring_of_100_is_answered_honestly_with_a_snapshot() {
    let r = start(config()).await;
    let ch = "alerts";
    publish_n(&r, ch, 1, 10).await;
    let epoch = r.relay.hub.position(ch).unwrap().epoch.as_str().to_string();
    publish_n(&r, ch, 11, 160).await;
    let mut b = ws(&r.url("")).await;
    let s = subscribe_from(&mut b, ch, Some((&epoch, 10))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["offset"].as_u64()),
        (Some(false), Some(160))
    );
    expect_offsets(&mut b, 160, 1).await;
    assert_silent(&mut b, Duration::from_millis(200)).await;
    publish_n(&r, ch, 161, 161).await;
    expect_offsets(&mut b, 161, 1).await;

    // An offset from the future, and a wrong epoch, are gaps too.
    for (e, o) in [(epoch.as_str(), 999), ("zzzzzzzz", 150)] {
        let mut c = ws(&r.url("")).await;
        let s = subscribe_from(&mut c, ch, Some((e, o))).await;
        assert_eq!(s["recovered"], false, "{e} {o}");
        expect_offsets(&mut c, 161, 1).await;
    }
    r.stop().await;
}

#[tokio::test]
async fn a_plain_subscribe_gets_the_last_value_at_once_and_raw_gets_raw() {
    let r = start(config()).await;
    let mut empty = ws(&r.url("")).await;
    let s = subscribe_from(&mut empty, "ticker:ETH-USD", None).await;
    assert_eq!(s["offset"], 0);
    assert!(s.get("recovered").is_none(), "no recover asked: {s}");
    assert_silent(&mut empty, Duration::from_millis(200)).await;

    publish_n(&r, "ticker:ETH-USD", 1, 3).await;
    expect_offsets(&mut empty, 1, 3).await;
    let mut late = ws(&r.url("")).await;
    let s = subscribe_from(&mut late, "ticker:ETH-USD", None).await;
    assert_eq!(s["offset"], 3);
    expect_offsets(&mut late, 3, 1).await;
    // Subscribing again changes nothing and sends nothing.
    subscribe_from(&mut late, "ticker:ETH-USD", None).await;
    assert_silent(&mut late, Duration::from_millis(200)).await;

    let mut raw = ws(&r.url("?format=raw&channels=ticker:ETH-USD")).await;
    assert_eq!(recv(&mut raw).await["type"], "subscribed");
    assert_eq!(recv_text(&mut raw).await, r#"{"i":3}"#);
    r.stop().await;
}

#[tokio::test]
async fn history_can_be_disabled_per_namespace_and_expires_with_its_ttl() {
    let r = start(with_namespaces(
        "[namespaces.nohist]\nhistory = 0\n[namespaces.short]\nhistory_ttl_secs = 1\n",
    ))
    .await;
    publish_n(&r, "nohist:a", 1, 5).await;
    publish_n(&r, "short:a", 1, 5).await;
    let mut w = ws(&r.url("")).await;
    let epoch = r.relay.hub.position("nohist:a").unwrap().epoch;
    let s = subscribe_from(&mut w, "nohist:a", Some((epoch.as_str(), 4))).await;
    assert_eq!(s["recovered"], false);
    subscribe_from(&mut w, "short:a", None).await;
    expect_offsets(&mut w, 5, 1).await;
    assert_silent(&mut w, Duration::from_millis(100)).await;

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut late = ws(&r.url("")).await;
    let epoch = r.relay.hub.position("short:a").unwrap().epoch;
    let s = subscribe_from(&mut late, "short:a", Some((epoch.as_str(), 4))).await;
    assert_eq!(s["recovered"], false, "offset 5 expired");
    assert_silent(&mut late, Duration::from_millis(200)).await;
    let stats = r.stats().await;
    assert_eq!(stats["history_evictions"], 5, "{stats}");
    assert_eq!(stats["history_bytes"], 0, "{stats}");
    r.stop().await;
}

/// Reads `n` messages whose offsets must be `first, first+1, ...`; returns the last.
async fn contiguous(first: u64, ws: &mut Ws, n: u64) -> u64 {
    for want in first..first + n {
        let m = recv(ws).await;
        assert_eq!(m["offset"], want, "seam broken: {m}");
    }
    first + n - 1
}

/// A publisher runs flat out while subscribers come and go, plainly or with `recover`:
/// every subscriber sees contiguous offsets across the replay/live seam.
#[tokio::test]
async fn the_replay_live_seam_has_no_gap_and_no_duplicate_under_a_flat_out_publisher() {
    let r = start(with_namespaces("[namespaces.seam]\nhistory = 100000\n")).await;
    let ch = "seam:BTC-USD";
    let (pub_ws, _) = tokio_tungstenite::connect_async(r.url(&format!("?token={KEY}")))
        .await
        .unwrap();
    let (mut sink, mut stream) = pub_ws.split();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let publisher = tokio::spawn(async move {
        let mut i = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            i += 1;
            let cmd = format!(r#"{{"op":"publish","channel":"{ch}","data":{{"n":{i}}}}}"#);
            if sink.send(Message::text(cmd)).await.is_err() {
                break;
            }
            if i.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
        }
        i
    });
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });

    r.wait_stats("publishing started", |s| {
        s["messages_in"].as_u64() > Some(100)
    })
    .await;
    let mut recovered = 0;
    for round in 0..40 {
        let mut a = ws(&r.url("")).await;
        let s = subscribe_from(&mut a, ch, None).await;
        let epoch = s["epoch"].as_str().unwrap().to_string();
        let at = s["offset"].as_u64().unwrap();
        // Plain subscribe: the last value (offset `at`) first, then live from at + 1.
        let last = contiguous(at, &mut a, 30).await;
        drop(a);
        let mut b = ws(&r.url("")).await;
        let s = subscribe_from(&mut b, ch, Some((&epoch, last))).await;
        assert_eq!(s["recovered"], true, "round {round}: {s}");
        recovered += 1;
        contiguous(last + 1, &mut b, 30).await;
    }
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.unwrap();
    drain.abort();
    assert_eq!(recovered, 40);
    assert!(published > 1000, "the publisher ran flat out ({published})");
    r.stop().await;
}

#[tokio::test]
async fn a_restarted_relay_answers_the_old_epoch_with_recovered_false() {
    let r = start(config()).await;
    publish_n(&r, "signals", 1, 3).await;
    let old = r
        .relay
        .hub
        .position("signals")
        .unwrap()
        .epoch
        .as_str()
        .to_string();
    r.stop().await;

    let r = start(config()).await;
    publish_n(&r, "signals", 1, 3).await;
    let mut w = ws(&r.url("")).await;
    let s = subscribe_from(&mut w, "signals", Some((&old, 2))).await;
    assert_eq!(s["recovered"], false);
    assert_ne!(s["epoch"], old.as_str(), "a new relay has new epochs");
    expect_offsets(&mut w, 3, 1).await;
    r.stop().await;
}

#[tokio::test]
async fn get_history_pages_and_guards_private_channels() {
    let r = start(with_namespaces("[namespaces.tiny]\nhistory = 3\n")).await;
    publish_n(&r, "signals", 1, 10).await;
    let get = |path: &str, auth: Option<&str>| {
        let addr = r.addr;
        let path = path.to_string();
        let auth = auth.map(|a| format!("Bearer {a}"));
        async move {
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let (status, _, body) = http(addr, "GET", &path, &headers, b"").await;
            (status, body)
        }
    };
    let (s, body) = get("/history/signals?limit=3", None).await;
    assert_eq!(s, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let offsets: Vec<u64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [8, 9, 10], "newest three");
    assert_eq!(
        (v["offset"].as_u64(), v["oldest"].as_u64()),
        (Some(10), Some(1))
    );
    assert_eq!(v["messages"][0]["data"], json!({"i": 8}));

    let (_, body) = get("/history/signals?since=4&limit=2", None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"][0]["offset"], 5);
    assert_eq!(v["messages"][1]["offset"], 6);
    assert_eq!(v["complete"], true);

    publish_n(&r, "tiny:x", 1, 5).await;
    let (_, body) = get("/history/tiny:x?since=1", None).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["complete"], false, "offset 2 is gone: {v}");
    assert_eq!(v["messages"][0]["offset"], 3);

    // Private channels need a credential; missing channels are 404; bad queries 400.
    r.publish("user:42", r#"{"fill":1}"#).await;
    assert_eq!(get("/history/user:42", None).await.0, 401);
    assert_eq!(get("/history/user:42", Some("wrong")).await.0, 401);
    assert_eq!(get("/history/user:42", Some(KEY)).await.0, 200);
    assert_eq!(
        get("/history/signals:X%237", None).await.0,
        401,
        "#<id> is private"
    );
    assert_eq!(get("/history/nope", None).await.0, 404);
    assert_eq!(get("/history/signals?limit=0", None).await.0, 400);
    assert_eq!(get("/history/signals?since=-1", None).await.0, 400);
    assert_eq!(get("/history/bad%20name", None).await.0, 400);
    let (s, _, _) = http(r.addr, "POST", "/history/signals", &[], b"").await;
    assert_eq!(s, 405);
    r.stop().await;
}

#[tokio::test]
async fn the_global_cap_evicts_and_stats_show_it() {
    let r = start(Config {
        history_max_bytes: 4096,
        ..config()
    })
    .await;
    for c in 0..20 {
        publish_n(&r, &format!("signals:{c}"), 1, 20).await;
    }
    let s = r.stats().await;
    let bytes = s["history_bytes"].as_u64().unwrap();
    assert!(s["history_evictions"].as_u64().unwrap() > 0, "{s}");
    // Each channel keeps at least its last value; past that, the cap holds.
    assert!(bytes <= 4096 + 20 * 200, "{s}");
    let (_, _, metrics) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert!(metrics.contains("tickrelay_history_bytes "), "{metrics}");
    assert!(metrics.contains("tickrelay_history_evictions_total "));
    // The last value survives the cap.
    let mut w = ws(&r.url("")).await;
    subscribe_from(&mut w, "signals:0", None).await;
    expect_offsets(&mut w, 20, 1).await;
    r.stop().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Many channels created, filled and abandoned, five times over: the channel count and
/// history bytes go back to zero each time, and the relay's RSS does not grow round
/// over round.
#[tokio::test]
async fn memory_returns_to_baseline_after_channels_are_abandoned() {
    let bin = env!("CARGO_BIN_EXE_tickrelay");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args(["--listen", &addr.to_string(), "--publish-key", KEY])
        .args(["--channel-idle-secs", "1", "--max-batch-items", "20000"])
        .args(["--stats-cache-ms", "0"])
        .args(["--max-batch-bytes", "8000000"])
        // One malloc arena: RSS then follows live memory instead of which worker thread's
        // arena served each round.
        .env("MALLOC_ARENA_MAX", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let stats = || async move {
        loop {
            if let Ok(Ok(s)) =
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await
            {
                drop(s);
                let (status, _, body) = http(addr, "GET", "/stats", &[], b"").await;
                if status == 200 {
                    return serde_json::from_str::<Value>(&body).unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    stats().await; // the relay is up before the first batch
    let mut after = Vec::new();
    for round in 0..6 {
        let mut batch = String::new();
        for c in 0..3000 {
            for i in 0..5 {
                batch.push_str(&format!(
                    "{{\"channel\":\"signals:r{round}c{c}\",\"data\":{{\"i\":{i},\"pad\":\"{}\"}}}}\n",
                    "x".repeat(100)
                ));
            }
        }
        let auth = format!("Bearer {KEY}");
        let (status, _, _) = http(
            addr,
            "POST",
            "/publish",
            &[("Authorization", &auth)],
            batch.as_bytes(),
        )
        .await;
        assert_eq!(status, 200);
        let s = stats().await;
        assert_eq!(s["channels"], 3000, "{s}");
        assert!(s["history_bytes"].as_u64().unwrap() > 3000 * 5 * 150);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let s = stats().await;
            if s["channels"] == 0 && s["history_bytes"] == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not reclaimed: {s}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        after.push(rss_kib(pid));
    }
    child.kill().await.unwrap();
    // Each round holds about 6 MB at its peak (3.75 MB of history, a 2.3 MB request).
    // The first three rounds warm up per-thread state (the parse buffers of the worker
    // threads serving the batch, which yields as it goes and so may move between
    // them); after that a leak would add megabytes per round.
    assert!(
        after[5] <= after[2] + 3 * 1024,
        "RSS grew round over round (KiB): {after:?}"
    );
}

/// A replay larger than half the connection's free queue is not attempted (it would end
/// in 1008 and the same request again for ever): the answer is `recovered: false` with
/// the newest message, and the connection stays.
#[tokio::test]
async fn a_replay_too_large_for_the_queue_is_answered_honestly() {
    let r = start(tickrelay::Config {
        queue_bytes: 8 * 1024,
        ..config()
    })
    .await;
    let ch = "signals:BIG";
    let mut a = ws(&r.url("")).await;
    let epoch = subscribe_from(&mut a, ch, None).await["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    drop(a);
    let pad = "x".repeat(300);
    let mut batch = String::new();
    for i in 1..=40 {
        batch.push_str(&format!(
            "{{\"channel\":\"{ch}\",\"data\":{{\"i\":{i},\"pad\":\"{pad}\"}}}}\n"
        ));
    }
    r.publish_batch(&batch).await; // ~14 KB to replay from offset 0: over 4 KiB
    let mut b = ws(&r.url("")).await;
    let s = subscribe_from(&mut b, ch, Some((&epoch, 0))).await;
    assert_eq!(
        (s["recovered"].as_bool(), s["offset"].as_u64()),
        (Some(false), Some(40))
    );
    let m = recv(&mut b).await;
    assert_eq!(m["offset"], 40, "the newest message as a snapshot");
    // Small enough: recovered as usual on the same connection size.
    let mut c = ws(&r.url("")).await;
    let s = subscribe_from(&mut c, ch, Some((&epoch, 35))).await;
    assert_eq!(s["recovered"], true);
    for want in 36..=40 {
        assert_eq!(recv(&mut c).await["offset"], want);
    }
    send(&mut b, r#"{"op":"ping","id":1}"#).await;
    assert_eq!(recv(&mut b).await["type"], "pong", "still connected");
    assert_eq!(r.stats().await["slow_consumer_closes"], 0);
    r.stop().await;
}

/// One `GET /history` response holds at most --max-response-bytes of messages; the rest
/// is paged on with `since`.
#[tokio::test]
async fn history_responses_are_capped_in_bytes_and_page_on() {
    let r = start(tickrelay::Config {
        max_response_bytes: 2_000,
        ..config()
    })
    .await;
    let ch = "signals:PAGE";
    let pad = "x".repeat(300);
    let batch: String = (1..=20)
        .map(|i| format!("{{\"channel\":\"{ch}\",\"data\":{{\"i\":{i},\"pad\":\"{pad}\"}}}}\n"))
        .collect();
    r.publish_batch(&batch).await;
    let auth = format!("Bearer {KEY}");
    let get = |q: String| {
        let auth = auth.clone();
        async move {
            let (s, _, body) = http(
                r.addr,
                "GET",
                &format!("/history/{ch}?{q}"),
                &[("Authorization", &auth)],
                b"",
            )
            .await;
            assert_eq!(s, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    let offsets = |v: &Value| -> Vec<u64> {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["offset"].as_u64().unwrap())
            .collect()
    };
    let mut seen: Vec<u64> = Vec::new();
    let mut since = 0;
    loop {
        let v = get(format!("since={since}&limit=100")).await;
        let got = offsets(&v);
        assert!(got.len() <= 5, "about 2,000 bytes a page: {got:?}");
        seen.extend(&got);
        if v["truncated"] != true {
            break;
        }
        since = *got.last().unwrap();
    }
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<u64>>(),
        "paged through, in order, once each"
    );
    let newest = get("limit=100".into()).await;
    let got = offsets(&newest);
    assert_eq!(newest["truncated"], true);
    assert_eq!(got.last(), Some(&20), "without since the newest are kept");
    r.stop().await;
}
