//! The real `tickrelay-load` binary in each mode, with tiny bounded parameters, against a
//! relay started by the test: the JSON summary line parses and its counts agree with
//! the relay's own counters.

mod support;
use serde_json::Value;
use std::time::Duration;
use support::*;

/// Runs tickrelay-load with `args`; returns (exit code, the JSON line, stderr).
async fn load(args: &[&str]) -> (Option<i32>, Value, String) {
    let bin = env!("CARGO_BIN_EXE_tickrelay-load");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(bin)
            .args(args)
            .env_remove("TICKRELAY_PUBLISH_KEY")
            .output(),
    )
    .await
    .expect("tickrelay-load ends by itself")
    .expect("tickrelay-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "exactly one JSON line on stdout: {stdout}\n{stderr}"
    );
    let v: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("summary is JSON ({e}): {}", lines[0]));
    (out.status.code(), v, stderr)
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is a count in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_websocket_delivers_everything_in_order() {
    let r = start(config()).await;
    let target = r.addr.to_string();
    let (code, v, err) = load(&[
        "fanout",
        "--target",
        &target,
        "-n",
        "20",
        "-k",
        "4",
        "-m",
        "2",
        "-d",
        "1",
        "--drain",
        "5",
        "--publish-key",
        KEY,
        "--quiet",
    ])
    .await;
    assert_eq!(code, Some(0), "{v}\n{err}");
    assert_eq!(v["mode"], "fanout");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(n(&v, "connections"), 20);
    let published = n(&v, "published");
    assert!(published > 0, "{v}");
    // 20 subscribers x 2 channels over 4 channels: every channel has an audience of 10.
    assert_eq!(n(&v, "expected"), published * 10, "{v}");
    assert_eq!(n(&v, "deliveries"), published * 10, "{v}");
    assert_eq!((n(&v, "lost"), n(&v, "reordered")), (0, 0), "{v}");
    assert_eq!(v["latency"]["count"].as_u64(), Some(published * 10));
    assert!(v["latency"]["p99"].as_f64().unwrap() > 0.0);
    let s = r.stats().await;
    assert_eq!(s["messages_in"].as_u64(), Some(published), "{s}");
    assert_eq!(s["messages_out"].as_u64(), Some(published * 10), "{s}");
    assert!(err.contains("summary"), "human table on stderr: {err}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_over_http_at_a_rate_with_an_html_report() {
    let r = start(config()).await;
    let target = r.addr.to_string();
    let html = std::env::temp_dir().join(format!("tickrelay-load-{}.html", std::process::id()));
    let (code, v, err) = load(&[
        "fanout",
        "--target",
        &target,
        "-n",
        "6",
        "-k",
        "3",
        "--via",
        "http",
        "--rate",
        "50",
        "-d",
        "5",
        "-f",
        "2",
        "--publish-key",
        KEY,
        "--quiet",
        "--out",
        html.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, Some(0), "{v}\n{err}");
    let published = n(&v, "published");
    assert!(
        (230..=250).contains(&published),
        "about 250 msg in 5 s: {v}"
    );
    // 6 subscribers on 1 of 3 channels: an audience of 2 each.
    assert_eq!(n(&v, "deliveries"), published * 2, "{v}");
    assert_eq!(n(&v, "lost"), 0);
    // 50 msg/s to an audience of 2: 100 deliveries in each whole second of publishing
    // (a 5 s window holds at least three whole tick intervals even when ticks run late).
    let steady = v["deliveries_per_s_steady"].as_f64().expect("steady rate");
    assert!((80.0..=120.0).contains(&steady), "steady {steady}: {v}");
    let page = std::fs::read_to_string(&html).expect("report written");
    let _ = std::fs::remove_file(&html);
    assert!(page.contains("<svg") && !page.contains("<script"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_publish_key_is_reported_and_fails_the_run() {
    let r = start(config()).await;
    let target = r.addr.to_string();
    let (code, v, _) = load(&[
        "fanout",
        "--target",
        &target,
        "-n",
        "2",
        "-d",
        "0.3",
        "--drain",
        "1",
        "--publish-key",
        "wrong",
        "--quiet",
    ])
    .await;
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(n(&v, "published"), 0);
    let notes = v["notes"].to_string();
    assert!(
        notes.contains("upgrade refused") || notes.contains("401"),
        "{v}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_counts_handshakes_and_holds_them() {
    let r = start(config()).await;
    let target = r.addr.to_string();
    let (code, v, err) = load(&[
        "connect",
        "--target",
        &target,
        "-n",
        "50",
        "--concurrency",
        "8",
        "--quiet",
    ])
    .await;
    assert_eq!(code, Some(0), "{v}\n{err}");
    assert_eq!(n(&v, "connections"), 50);
    assert_eq!(n(&v, "still_open_at_end"), 50);
    assert_eq!(v["handshake_latency"]["count"].as_u64(), Some(50));
    assert!(v["handshakes_per_s"].as_f64().unwrap() > 0.0);
    let s = r.stats().await;
    assert_eq!(s["connections_total"].as_u64(), Some(50), "{s}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_subscribed_connections_and_reads_relay_memory() {
    let r = start(config()).await;
    let target = r.addr.to_string();
    // The relay runs in this test process, so its RSS is ours.
    let pid = std::process::id().to_string();
    let (code, v, err) = load(&[
        "idle",
        "--target",
        &target,
        "-n",
        "30",
        "-k",
        "3",
        "--hold",
        "0.5",
        "--relay-pid",
        &pid,
        "--quiet",
    ])
    .await;
    assert_eq!(code, Some(0), "{v}\n{err}");
    assert_eq!(n(&v, "connections"), 30);
    assert_eq!(n(&v, "disconnects"), 0);
    assert!(v["relay_rss_up"].as_u64().unwrap() > 0, "{v}");
    assert!(v["relay_bytes_per_conn"].is_number(), "{v}");
    r.stop().await;
}

#[tokio::test]
async fn connection_failures_are_classified_and_fail_the_run() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = format!("127.0.0.1:{port}");
    let (code, v, _) = load(&["connect", "--target", &target, "-n", "5", "--quiet"]).await;
    assert_eq!(code, Some(1));
    assert_eq!(n(&v, "connections"), 0);
    assert_eq!(v["failures"]["refused"].as_u64(), Some(5), "{v}");
}

#[tokio::test]
async fn non_loopback_targets_are_refused() {
    let bin = env!("CARGO_BIN_EXE_tickrelay-load");
    let out = std::process::Command::new(bin)
        .args(["connect", "--target", "192.0.2.1:80", "-n", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote-test-host"), "{err}");
}

#[test]
fn help_explains_every_option_with_defaults() {
    let bin = env!("CARGO_BIN_EXE_tickrelay-load");
    let out = std::process::Command::new(bin)
        .args(["fanout", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--connections",
        "--channels",
        "--per-conn",
        "--via",
        "--publish-key",
        "--rate",
        "--in-flight",
        "--payload-bytes",
        "--duration",
        "--drain",
        "--dst-addrs",
        "--src-addrs",
        "--threads",
        "--relay-pid",
        "--out",
        "--concurrency",
    ] {
        assert!(help.contains(opt), "{opt} in fanout --help:\n{help}");
    }
    for default in [
        "[default: 1000]",
        "[default: 10]",
        "[default: 150]",
        "[default: ws]",
    ] {
        assert!(help.contains(default), "{default} in fanout --help");
    }
}

#[test]
fn churn_help_names_every_kind_of_client_and_the_leak_check() {
    let bin = env!("CARGO_BIN_EXE_tickrelay-load");
    let out = std::process::Command::new(bin)
        .args(["churn", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--connections",
        "--churners",
        "--storm-size",
        "--storm-every",
        "--stalled",
        "--flooders",
        "--flood-rate",
        "--duration",
        "--interval",
        "--warmup",
        "--settle",
        "--rss-tolerance-mib",
        "--rss-tolerance-pct",
        "--fd-tolerance",
        "--relay-pid",
        "--dst-addrs",
    ] {
        assert!(help.contains(opt), "{opt} in churn --help:\n{help}");
    }
    // Bad bounds are refused before anything connects.
    let out = std::process::Command::new(bin)
        .args(["churn", "--target", "127.0.0.1:9", "--interval", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));
}
