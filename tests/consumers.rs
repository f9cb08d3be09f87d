//! Who is behind: per-connection lag and queued bytes in `/stats` (the slowest consumers,
//! for operators only) and as histograms in `/metrics`.

mod support;

use serde_json::Value;
use std::time::Duration;
use support::*;

async fn trusted_stats(r: &TestRelay) -> Value {
    let auth = format!("Bearer {KEY}");
    let (status, _, body) = http(r.addr, "GET", "/stats", &[("Authorization", &auth)], b"").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats is JSON")
}

#[tokio::test]
async fn a_stalled_client_leads_the_slowest_consumers_with_growing_lag() {
    let r = start(tickrelay::Config {
        queue_bytes: 64 << 20,
        ..config()
    })
    .await;
    let mut healthy = ws(&r.url("?channels=signals:s")).await;
    assert_eq!(recv(&mut healthy).await["type"], "subscribed");
    let mut stalled = RawWs::connect_small_window(r.addr, "?channels=signals:s").await;
    assert_eq!(stalled.recv().await["type"], "subscribed");
    // 10 MB of messages: far past the stalled client's 4 KiB window and the socket
    // buffers, under its queue.
    let pad = "x".repeat(20_000);
    for _ in 0..20 {
        let body: String = (0..25)
            .map(|i| {
                format!("{{\"channel\":\"signals:s\",\"data\":{{\"i\":{i},\"p\":\"{pad}\"}}}}\n")
            })
            .collect();
        r.publish_batch(&body).await;
    }
    for _ in 0..500 {
        recv(&mut healthy).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = trusted_stats(&r).await;
    let slowest = first["slowest"].as_array().expect("slowest listed");
    assert_eq!(slowest.len(), 2, "{first}");
    let top = &slowest[0];
    assert_eq!(top["dialect"], "v1");
    assert!(top["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(top["queued_bytes"].as_u64().unwrap() > 100_000, "{top}");
    let lag = top["lag_ms"].as_u64().unwrap();
    assert!(lag >= 250, "behind since the batch: {top}");
    assert_eq!(
        slowest[1]["lag_ms"], 0,
        "the reading client is caught up: {first}"
    );
    assert_eq!(slowest[1]["queued_bytes"], 0, "{first}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let later = trusted_stats(&r).await;
    assert_eq!(later["slowest"][0]["conn"], top["conn"]);
    assert!(
        later["slowest"][0]["lag_ms"].as_u64().unwrap() >= lag + 150,
        "{later}"
    );

    // Anonymous readers do not see client addresses.
    assert!(r.stats().await.get("slowest").is_none());

    // /metrics: one observation per open connection.
    let (_, _, m) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert!(
        m.contains("# TYPE tickrelay_connection_lag_ms histogram"),
        "{m}"
    );
    assert!(m.contains("tickrelay_connection_lag_ms_count 2"), "{m}");
    assert!(
        m.contains("tickrelay_connection_lag_ms_bucket{le=\"1\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tickrelay_connection_queued_bytes_bucket{le=\"0\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("tickrelay_connection_queued_bytes_count 2"),
        "{m}"
    );
    drop(stalled);
    r.stop().await;
}
