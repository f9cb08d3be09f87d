//! Fan-out at scale and slow consumers.

mod support;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tickrelay::Config;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_get_all_thousand_messages_in_order() {
    const SUBS: usize = 1000;
    const MSGS: u64 = 1000;
    let r = start(config()).await;
    let mut clients = Vec::with_capacity(SUBS);
    // A reliable channel: the batch arrives at once, and on a conflate channel (`ticker`)
    // a subscriber whose queue passes the soft bound rightly gets newest values only.
    for _ in 0..SUBS {
        let mut c = ws(&r.url("?channels=signals:ALL")).await;
        assert_eq!(recv(&mut c).await["type"], "subscribed");
        clients.push(c);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for want in 1..=MSGS {
                    let m = recv(&mut c).await;
                    assert_eq!(m["offset"].as_u64(), Some(want), "in order, no gap");
                    assert_eq!(m["data"]["i"].as_u64(), Some(want));
                }
            })
        })
        .collect();
    let body: String = (1..=MSGS)
        .map(|i| format!("{{\"channel\":\"signals:ALL\",\"data\":{{\"i\":{i}}}}}\n"))
        .collect();
    r.publish_batch(&body).await;
    for t in readers {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("all delivered in time")
            .unwrap();
    }
    let s = r.stats().await;
    assert_eq!(s["messages_out"].as_u64(), Some(SUBS as u64 * MSGS));
    assert_eq!(s["slow_consumer_closes"], 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_reads_is_closed_as_a_slow_consumer_and_others_get_everything() {
    // Default 4 MiB queues; each 1 MB batch fits, so clients that read keep up, while
    // 20 MB in all overflows a client that never reads (past its socket buffers too).
    let r = start(Config {
        slow_close_grace_ms: 200,
        close_timeout_ms: 300,
        ..config()
    })
    .await;
    // The stalled client: handshake, subscribe, then never read again.
    let mut stalled = RawWs::connect(r.addr, "?channels=busy").await;
    assert_eq!(stalled.recv().await["type"], "subscribed");
    let mut healthy = Vec::new();
    for _ in 0..10 {
        let mut c = ws(&r.url("?channels=busy")).await;
        recv(&mut c).await;
        healthy.push(c);
    }
    let batches = 20u64;
    let per_batch = 1000u64;
    let progress: Arc<Vec<AtomicU64>> =
        Arc::new((0..healthy.len()).map(|_| AtomicU64::new(0)).collect());
    let readers: Vec<_> = healthy
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let progress = progress.clone();
            tokio::spawn(async move {
                for want in 1..=batches * per_batch {
                    let m = recv(&mut c).await;
                    assert_eq!(m["offset"].as_u64(), Some(want));
                    progress[i].store(want, Ordering::Relaxed);
                }
                c
            })
        })
        .collect();
    let pad = "x".repeat(1000);
    for b in 0..batches {
        // Offer the next batch once every healthy client has read the one before.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while progress
            .iter()
            .any(|p| p.load(Ordering::Relaxed) < b * per_batch)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "healthy clients stopped progressing"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let body: String = (0..per_batch)
            .map(|_| format!("{{\"channel\":\"busy\",\"data\":\"{pad}\"}}\n"))
            .collect();
        r.publish_batch(&body).await;
    }
    let mut healthy = Vec::new();
    for t in readers {
        healthy.push(
            tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("healthy clients keep up")
                .unwrap(),
        );
    }
    let s = r
        .wait_stats("the stalled client to be dropped", |s| {
            s["connections"] == 10
        })
        .await;
    assert_eq!(s["slow_consumer_closes"], 1, "{s}");
    assert!(s["dropped"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["subscriptions"], 10, "its subscription was released: {s}");
    // The stalled client, reading at last, finds a 1008 close after some messages (or a reset).
    let code = stalled.expect_close().await;
    assert!(matches!(code, Some(1008) | None), "{code:?}");
    // Healthy clients are still fine.
    for c in healthy.iter_mut().take(1) {
        let _ = r.publish("busy", "1").await;
        loop {
            match c.next().await.unwrap().unwrap() {
                Message::Text(t) if t.contains("\"data\":1}") => break,
                _ => {}
            }
        }
    }
    r.stop().await;
}
