//! Delivery lanes: lag-triggered conflation, `max_rate`, the reliable budget and the
//! staleness notices.

mod support;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::*;
use tickrelay::Config;
use tokio_tungstenite::tungstenite::Message;

/// Nanoseconds since `base`, embedded by the publisher and read back by subscribers.
fn tick(base: Instant, i: u64) -> String {
    format!(
        r#"{{"i":{i},"t":{},"px":43250.5}}"#,
        base.elapsed().as_nanos()
    )
}

fn p99(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// Publishes `n` ticks to `channel` at `every` and returns the last offset.
async fn paced(r: &TestRelay, channel: &str, base: Instant, from: u64, n: u64, every: Duration) {
    let mut at = tokio::time::Instant::now();
    for i in from..from + n {
        let (status, body) = r.publish(channel, &tick(base, i)).await;
        assert_eq!(status, 200, "{body}");
        at += every;
        tokio::time::sleep_until(at).await;
    }
}

/// A stalled reader subscribed to a busy ticker beside 1,000 healthy subscribers: the
/// healthy ones keep their latency and get everything, the relay's queues stay bounded,
/// and the stalled one, reading at last, finds the newest price, a `lagging` notice and a
/// `caught_up` notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_conflated_and_1000_healthy_subscribers_do_not_notice() {
    let soft = 64 * 1024;
    let r = start(Config {
        conflate_after_bytes: soft,
        lagging_notice_ms: 100,
        max_connections_per_ip: 2000,
        ..config()
    })
    .await;
    let base = Instant::now();
    let ch = "ticker:BUSY";
    let n_healthy = 1000;
    let mut healthy = Vec::new();
    for _ in 0..n_healthy {
        let mut c = ws(&r.url(&format!("?channels={ch}"))).await;
        assert_eq!(recv(&mut c).await["type"], "subscribed");
        healthy.push(c);
    }
    // Every healthy client reads everything, recording latency per phase.
    let per_phase = 200u64;
    let readers: Vec<_> = healthy
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut lat = [Vec::new(), Vec::new()];
                for want in 1..=2 * per_phase {
                    let m = recv(&mut c).await;
                    assert_eq!(m["offset"].as_u64(), Some(want), "healthy lost one: {m}");
                    let sent = m["data"]["t"].as_u64().unwrap();
                    let now = base.elapsed().as_nanos() as u64;
                    lat[((want - 1) / per_phase) as usize].push(now.saturating_sub(sent));
                }
                lat
            })
        })
        .collect();

    // Phase 1: no stalled client.
    paced(&r, ch, base, 1, per_phase, Duration::from_millis(4)).await;

    // The stalled client: subscribes to the busy ticker and to a private filler channel
    // that backs its socket up, then never reads.
    let mut stalled =
        RawWs::connect_small_window(r.addr, &format!("?channels={ch},ticker:FILL")).await;
    assert_eq!(stalled.recv().await["type"], "subscribed");
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(16 * 1024));
    for _ in 0..400 {
        r.publish("ticker:FILL", &big).await;
    }
    // Phase 2: the same load with the stalled client lagging.
    paced(
        &r,
        ch,
        base,
        per_phase + 1,
        per_phase,
        Duration::from_millis(4),
    )
    .await;

    let mut phase = [Vec::new(), Vec::new()];
    for t in readers {
        let [a, b] = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("healthy clients keep up")
            .unwrap();
        phase[0].extend(a);
        phase[1].extend(b);
    }
    let (p1, p2) = (p99(phase[0].clone()), p99(phase[1].clone()));
    eprintln!("healthy p99: {p1} ns alone, {p2} ns beside the stalled client");
    assert!(
        p2 <= 2 * p1 + 20_000_000,
        "healthy p99 moved beyond noise with a stalled client: {p1} ns -> {p2} ns"
    );

    let s = r.stats().await;
    assert!(s["conflated"].as_u64().unwrap() > 0, "{s}");
    let queued = s["queued_bytes"].as_u64().unwrap();
    assert!(
        queued <= (soft + 2 * big.len() + 4096) as u64,
        "queues stay bounded: {queued} bytes queued: {s}"
    );
    assert_eq!(
        s["slow_consumer_closes"], 0,
        "conflate channels never close: {s}"
    );

    // The stalled client reads at last: the backlog, then a lagging notice for the busy
    // ticker, the newest price, and caught_up.
    let mut lagging = None;
    let mut caught_up = None;
    let mut last_busy = 0;
    while caught_up.is_none() || last_busy < 2 * per_phase {
        let m = stalled.recv().await;
        match (m["type"].as_str(), m["channel"].as_str()) {
            (Some("lagging"), Some(c)) if c == ch => lagging = Some(m.clone()),
            (Some("caught_up"), Some(c)) if c == ch => caught_up = Some(m.clone()),
            (Some("message"), Some(c)) if c == ch => {
                let o = m["offset"].as_u64().unwrap();
                assert!(o > last_busy, "offsets only go up: {o} after {last_busy}");
                last_busy = o;
            }
            _ => {}
        }
    }
    let lagging = lagging.expect("a lagging notice before caught_up");
    let caught_up = caught_up.unwrap();
    assert!(caught_up["skipped"].as_u64() >= lagging["skipped"].as_u64());
    assert!(caught_up["skipped"].as_u64().unwrap() > 0, "{caught_up}");
    assert_eq!(last_busy, 2 * per_phase, "the newest price arrived");
    r.stop().await;
}

/// A reliable channel beside a tick flood, for a client that reads slowly: every reliable
/// message arrives, ticks are conflated. Then a client that never reads is closed with
/// 1008 once its reliable backlog passes the budget, while its ticks never count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliable_messages_are_never_conflated_and_have_their_own_budget() {
    let r = start(Config {
        conflate_after_bytes: 16 * 1024,
        queue_bytes: 256 * 1024,
        slow_close_grace_ms: 200,
        close_timeout_ms: 300,
        ..config()
    })
    .await;
    let mut slow = ws(&r.url("?channels=ticker:FLOOD,signals:R")).await;
    recv(&mut slow).await;
    let pad = "y".repeat(2000);
    let rounds = 40u64;
    for k in 1..=rounds {
        let mut batch = String::new();
        for _ in 0..50 {
            batch.push_str(&format!(
                "{{\"channel\":\"ticker:FLOOD\",\"data\":{{\"pad\":\"{pad}\"}}}}\n"
            ));
        }
        batch.push_str(&format!(
            "{{\"channel\":\"signals:R\",\"data\":{{\"k\":{k}}}}}\n"
        ));
        r.publish_batch(&batch).await;
    }
    let mut signals = Vec::new();
    let mut ticks = 0;
    let mut last_tick = 0;
    while signals.len() < rounds as usize || last_tick < rounds * 50 {
        tokio::time::sleep(Duration::from_micros(200)).await; // a slow reader
        let m = recv(&mut slow).await;
        match m["channel"].as_str() {
            Some("signals:R") if m["type"] == "message" => {
                signals.push(m["offset"].as_u64().unwrap())
            }
            Some("ticker:FLOOD") if m["type"] == "message" => {
                ticks += 1;
                last_tick = m["offset"].as_u64().unwrap();
            }
            _ => {}
        }
    }
    assert_eq!(
        signals,
        (1..=rounds).collect::<Vec<_>>(),
        "every reliable message"
    );
    eprintln!(
        "slow reader: {ticks} of {} ticks, every signal",
        rounds * 50
    );
    assert!(
        ticks < rounds * 50,
        "ticks were conflated ({ticks} of {})",
        rounds * 50
    );
    assert_eq!(last_tick, rounds * 50, "and the newest tick arrived");

    // Never reads: ticks alone do not close it; a reliable backlog over 256 KiB does.
    let mut stalled =
        RawWs::connect_small_window(r.addr, "?channels=ticker:FLOOD,signals:BIG").await;
    assert_eq!(stalled.recv().await["type"], "subscribed");
    for _ in 0..20 {
        let batch: String = (0..50)
            .map(|_| format!("{{\"channel\":\"ticker:FLOOD\",\"data\":{{\"pad\":\"{pad}\"}}}}\n"))
            .collect();
        r.publish_batch(&batch).await;
    }
    let s = r.stats().await;
    assert_eq!(s["slow_consumer_closes"], 0, "ticks alone never close: {s}");
    let big = format!(r#"{{"pad":"{}"}}"#, "z".repeat(30_000));
    for _ in 0..400 {
        r.publish("signals:BIG", &big).await;
        if r.stats().await["slow_consumer_closes"] == 1 {
            break;
        }
    }
    let s = r.stats().await;
    assert_eq!(s["slow_consumer_closes"], 1, "{s}");
    let code = stalled.expect_close().await;
    assert!(matches!(code, Some(1008) | None), "{code:?}");
    r.stop().await;
}

/// `max_rate: 10`: at most 10 messages in any second, never a value older than one
/// interval, and the newest price at the end. Others on the channel get everything.
#[tokio::test]
async fn max_rate_caps_a_subscription_and_ends_on_the_newest_price() {
    let r = start(config()).await;
    let ch = "ticker:RATE";
    let mut capped = ws(&r.url("")).await;
    send(
        &mut capped,
        &json!({"op":"subscribe","channels":[ch],"max_rate":10,"id":1}).to_string(),
    )
    .await;
    assert_eq!(recv(&mut capped).await["type"], "subscribed");
    let mut full = ws(&r.url(&format!("?channels={ch}"))).await;
    recv(&mut full).await;

    let (pub_ws, _) = tokio_tungstenite::connect_async(r.url(&format!("?token={KEY}")))
        .await
        .unwrap();
    let (mut sink, mut acks) = pub_ws.split();
    let total = 300u64;
    let publisher = tokio::spawn(async move {
        let mut at = tokio::time::Instant::now();
        for i in 1..=total {
            let cmd = format!(r#"{{"op":"publish","channel":"{ch}","data":{{"i":{i}}}}}"#);
            sink.send(Message::text(cmd)).await.unwrap();
            at += Duration::from_millis(5);
            tokio::time::sleep_until(at).await;
        }
        sink
    });
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = acks.next().await {} });

    let start = Instant::now();
    let mut arrivals: Vec<(Instant, u64)> = Vec::new();
    loop {
        let m = recv(&mut capped).await;
        if m["type"] != "message" {
            continue;
        }
        let i = m["data"]["i"].as_u64().unwrap();
        arrivals.push((Instant::now(), i));
        if i == total {
            break;
        }
    }
    let elapsed = start.elapsed();
    let _sink = publisher.await.unwrap();
    drain.abort();
    for w in arrivals.windows(11) {
        assert!(
            w[10].0 - w[0].0 >= Duration::from_millis(900),
            "11 messages within a second: {:?}",
            w[10].0 - w[0].0
        );
    }
    let n = arrivals.len() as f64;
    let secs = elapsed.as_secs_f64();
    eprintln!("max_rate 10: {n} messages in {secs:.2} s");
    assert!(n <= secs * 10.0 + 2.0, "{n} messages in {secs:.2} s");
    assert!(
        n >= secs * 10.0 * 0.6,
        "too few updates: {n} in {secs:.2} s"
    );
    assert!(
        arrivals.windows(2).all(|w| w[1].1 > w[0].1),
        "values only get newer"
    );
    for i in 1..=total {
        let m = recv(&mut full).await;
        assert_eq!(
            m["offset"].as_u64(),
            Some(i),
            "an uncapped subscriber gets all"
        );
    }

    // max_rate is for conflate channels only, and within bounds.
    for (cmd, code) in [
        (
            json!({"op":"subscribe","channels":["signals:X"],"max_rate":10}),
            "bad_request",
        ),
        (
            json!({"op":"subscribe","channels":[ch],"max_rate":0}),
            "bad_request",
        ),
    ] {
        send(&mut capped, &cmd.to_string()).await;
        let e: Value = recv(&mut capped).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code))
        );
    }
    r.stop().await;
}
