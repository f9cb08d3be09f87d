//! Wire formats: subscribers of `envelope`, `raw` and `msgpack` on one channel each get
//! their own format, and each publish builds at most one frame per format, whatever the
//! subscriber count; formats nobody uses are never built; history serves any format.

mod support;

use futures_util::SinkExt;
use serde_json::Value;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

fn built(stats: &Value) -> [u64; 3] {
    let f = &stats["frames_built"];
    [
        f["envelope"].as_u64().unwrap(),
        f["raw"].as_u64().unwrap(),
        f["msgpack"].as_u64().unwrap(),
    ]
}

/// What a msgpack frame says, read by hand from the fixed envelope layout: the offset
/// follows the `offset` key.
fn msgpack_offset(b: &[u8]) -> u64 {
    let key = b"\xa6offset";
    let at = b
        .windows(key.len())
        .position(|w| w == key)
        .expect("offset key")
        + key.len();
    match b[at] {
        n @ 0..=0x7f => n as u64,
        0xcc => b[at + 1] as u64,
        0xcd => u16::from_be_bytes([b[at + 1], b[at + 2]]) as u64,
        m => panic!("unexpected marker {m:#x}"),
    }
}

#[tokio::test]
async fn one_frame_per_format_per_publish_with_three_formats_subscribed() {
    let r = start(config()).await;
    let ch = "ticker:FMT";
    let mut clients = Vec::new();
    for format in ["envelope", "raw", "msgpack"] {
        for _ in 0..4 {
            let mut ws = connect(&r.url(&format!("?format={format}&channels={ch}"))).await;
            let welcome = next_frame(&mut ws).await;
            let subscribed = next_frame(&mut ws).await;
            let binary = format == "msgpack";
            for m in [&welcome, &subscribed] {
                assert_eq!(m.is_binary(), binary, "{format}: {m:?}");
            }
            clients.push((format, ws));
        }
    }
    // Channels only envelope clients use never build the other formats.
    let mut plain = ws(&r.url("?channels=ticker:PLAIN")).await;
    let _ = recv(&mut plain).await;
    let before = built(&r.stats().await);
    const N: u64 = 25;
    for i in 0..N {
        let (status, _) = r.publish(ch, &format!(r#"{{"i":{i},"p":1.5}}"#)).await;
        assert_eq!(status, 200);
        let (status, _) = r.publish("ticker:PLAIN", r#"{"x":1}"#).await;
        assert_eq!(status, 200);
    }
    for (format, ws) in clients.iter_mut() {
        for i in 0..N {
            let m = next_frame(ws).await;
            match *format {
                "envelope" => {
                    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
                    assert_eq!(v["type"], "message");
                    assert_eq!(v["offset"], i + 1);
                    assert_eq!(v["data"]["i"], i);
                }
                "raw" => {
                    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
                    assert_eq!(v, serde_json::json!({"i": i, "p": 1.5}));
                }
                _ => {
                    assert!(m.is_binary(), "{m:?}");
                    let b = m.into_data();
                    assert_eq!(b[0], 0x85, "a map of five fields");
                    assert_eq!(msgpack_offset(&b), i + 1);
                }
            }
        }
    }
    for _ in 0..N {
        let v = recv(&mut plain).await;
        assert_eq!(v["channel"], "ticker:PLAIN");
    }
    let after = built(&r.stats().await);
    let delta: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    // 12 subscribers of FMT in three formats: N frames of each format, not 4N; PLAIN's
    // envelope-only audience adds N envelopes and nothing else.
    assert_eq!(delta, vec![2 * N, N, N], "envelope, raw, msgpack");
    let (_, _, metrics) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics.contains(&format!(
            "tickrelay_frames_built_total{{format=\"msgpack\"}} {}",
            after[2]
        )),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test]
async fn history_builds_a_format_once_on_first_replay_and_serves_it_after() {
    let r = start(config()).await;
    let ch = "signals:FMT";
    for i in 1..=5 {
        r.publish(ch, &format!(r#"{{"i":{i}}}"#)).await;
    }
    let before = built(&r.stats().await);
    assert_eq!(
        before,
        [0, 0, 0],
        "no subscriber: no frame built at publish"
    );
    // Two msgpack clients recover everything: the first builds 5 frames, the second
    // reuses them.
    for round in 0..2 {
        let mut ws = connect(&r.url("?format=msgpack")).await;
        let _welcome = next_frame(&mut ws).await;
        let cmd = format!(
            r#"{{"op":"subscribe","channels":["{ch}"],"recover":{{"{ch}":{{"epoch":"x","offset":0}}}}}}"#
        );
        ws.send(Message::text(cmd)).await.unwrap();
        let _subscribed = next_frame(&mut ws).await;
        // An unknown epoch is a gap: the newest message only, as a snapshot.
        let m = next_frame(&mut ws).await.into_data();
        assert_eq!(msgpack_offset(&m), 5, "round {round}");
        let s = r.stats().await;
        assert_eq!(
            built(&s),
            [0, 0, 1],
            "round {round}: built once, then cached"
        );
    }
    // A v1 client recovering from offset 2 gets 3..5 from the same neutral history.
    let mut v1 = ws(&r.url("")).await;
    let sub = subscribe(&mut v1, &[ch]).await;
    let epoch = sub["channels"][0]["epoch"].as_str().unwrap().to_owned();
    let last = recv(&mut v1).await;
    assert_eq!(last["offset"], 5, "last value");
    let mut again = ws(&r.url("")).await;
    let cmd = format!(
        r#"{{"op":"subscribe","channels":["{ch}"],"recover":{{"{ch}":{{"epoch":"{epoch}","offset":2}}}}}}"#
    );
    send(&mut again, &cmd).await;
    let reply = recv(&mut again).await;
    assert_eq!(reply["channels"][0]["recovered"], true, "{reply}");
    for want in 3..=5 {
        let m = recv(&mut again).await;
        assert_eq!(m["offset"], want);
        assert_eq!(m["data"]["i"], want);
    }
    assert_silent(&mut again, Duration::from_millis(200)).await;
    r.stop().await;
}

#[tokio::test]
async fn an_unknown_format_is_refused_at_the_upgrade() {
    let r = start(config()).await;
    let (status, _, body) = http(r.addr, "GET", "/ws?format=xml", &UPGRADE, b"").await;
    assert_eq!(status, 400);
    assert!(body.contains("envelope, raw or msgpack"), "{body}");
    r.stop().await;
}

/// The real MessagePack client: Debian's python3-msgpack (the reference implementation)
/// with python3-websockets, against a v1 JSON client on the same channel.
#[tokio::test]
async fn a_msgpack_client_receives_the_same_messages_as_a_v1_client() {
    let r = start(config()).await;
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3" // Debian's, where python3-msgpack and python3-websockets live
    } else {
        "python3"
    };
    let out = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/msgpack_same_as_v1.py"
        ))
        .arg(format!("ws://{}", r.addr))
        .arg(format!("http://{}", r.addr))
        .arg(KEY)
        .arg("ticker:MSGPACK")
        .arg("40")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("client finished in time")
        .expect("python3 runs (apt-get install python3-msgpack python3-websockets)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{stderr}\n(needs python3-msgpack and python3-websockets)"
    );
    assert!(stdout.contains("40 messages identical"), "{stdout}");
    r.stop().await;
}
