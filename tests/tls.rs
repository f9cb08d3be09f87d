//! TLS termination (`--tls-cert` / `--tls-key`): the native protocol over TLS with
//! Python's `ssl` + `websockets` (tests/clients/tls.py), the certificate reloaded on a
//! change and on SIGHUP without dropping connections, a bad reload kept out, stalled
//! handshakes bounded and timed out, and plain HTTP on the TLS port answered.
//!
//! The certificates are test-only PEMs in tests/keys (a test CA and two server
//! certificates for `localhost` / 127.0.0.1, A with a PKCS#8 EC key, B with a PKCS#1 RSA
//! key; tests/keys/README.md has the commands).

mod cluster;
mod support;

use cluster::{eventually, free_port, Node};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn key_file(name: &str) -> PathBuf {
    Path::new(KEYS).join(name)
}

/// The DER of a PEM certificate file (the first certificate in it).
fn der(name: &str) -> Vec<u8> {
    CertificateDer::from_pem_file(key_file(name))
        .unwrap()
        .to_vec()
}

/// A rustls client trusting only the test CA.
fn connector() -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(key_file("tls_ca.pem")).unwrap())
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A TLS connection to `addr` as `localhost`, and the certificate the relay presented.
async fn tls(addr: SocketAddr) -> (TlsStream<TcpStream>, Vec<u8>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let s = tokio::time::timeout(WAIT, connector().connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let cert = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (s, cert)
}

/// One HTTP/1.1 request over TLS: (status, body).
async fn https(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (mut s, _) = tls(addr).await;
    let auth = auth.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\n{auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

/// The next text frame of a WebSocket over TLS, as JSON.
async fn wss_recv(ws: &mut Wss) -> Value {
    use futures_util::StreamExt;
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("a frame");
        if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn tls_stats(addr: SocketAddr) -> Value {
    let (status, body) = https(addr, "GET", "/stats", Some(KEY), "").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A relay process serving tests/keys/tls_a.pem with `args`.
async fn tls_node(name: &str, cert: &Path, key: &Path, args: &[&str]) -> Node {
    let mut all = vec![
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    Node::spawn(name, free_port(), &all).await
}

/// A scratch directory with copies of server certificate A, which a test overwrites.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickrelay-tls-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    install(&dir, "a");
    dir
}

/// Puts server certificate `which` (a or b) in `dir` as cert.pem / key.pem, each file
/// written beside and renamed in place, as certificate tools do.
fn install(dir: &Path, which: &str) {
    for (from, to) in [
        (format!("tls_{which}_key.pem"), "key.pem"),
        (format!("tls_{which}.pem"), "cert.pem"),
    ] {
        let tmp = dir.join(format!("{to}.new"));
        std::fs::copy(key_file(&from), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(to)).unwrap();
    }
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3" // Debian's, where python3-websockets lives
    } else {
        "python3"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_protocol_over_tls_with_python_ssl_and_websockets() {
    let node = tls_node(
        "tls",
        &key_file("tls_a.pem"),
        &key_file("tls_a_key.pem"),
        &["--jwt-secret", SECRET],
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/tls.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .arg(node.addr.port().to_string())
        .arg(key_file("tls_ca.pem"))
        .arg(KEY)
        .arg(user("alice"))
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the client finished in time")
        .expect("python3 runs (run .ci/test once for python3-websockets)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tls.py failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("TLSv1.2 with ALPN http/1.1: ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("TLSv1.3 with ALPN http/1.1: ok"),
        "{stdout}"
    );
    assert!(stdout.contains("ALL TLS CASES PASSED"), "{stdout}");
    let stats = tls_stats(node.addr).await;
    assert_eq!(
        stats["tls"]["handshake_failures"], 1,
        "the h2-only client: {stats}"
    );
    assert!(stats["tls"]["handshakes"].as_u64().unwrap() >= 8, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_certificate_is_served_without_dropping_connections() {
    let dir = scratch("change");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let node = tls_node("change", &cert, &key, &["--tls-reload-check-ms", "100"]).await;
    let (stream, first) = tls(node.addr).await;
    assert_eq!(first, der("tls_a.pem"));
    let url = format!("wss://localhost:{}/ws?channels=signals", node.addr.port());
    let (mut sub, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(wss_recv(&mut sub).await["type"], "welcome");
    assert_eq!(wss_recv(&mut sub).await["type"], "subscribed");

    install(&dir, "b");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tls(node.addr).await.1 != der("tls_b.pem") {
        assert!(tokio::time::Instant::now() < deadline, "B never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection made under A is still open and still delivered to.
    let (status, _) = https(
        node.addr,
        "POST",
        "/publish/signals",
        Some(KEY),
        r#"{"after":"reload"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let m = wss_recv(&mut sub).await;
    assert_eq!(
        (m["type"].as_str(), m["data"]["after"].as_str()),
        (Some("message"), Some("reload")),
        "{m}"
    );
    let stats = tls_stats(node.addr).await;
    assert!(stats["tls"]["reloads"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["tls"]["last_reload_error"], Value::Null, "{stats}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_broken_pair_keeps_the_previous_certificate() {
    let dir = scratch("hup");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    // Only SIGHUP reloads this one.
    let node = tls_node("hup", &cert, &key, &["--tls-reload-check-ms", "0"]).await;
    let (stream, _) = tls(node.addr).await;
    let url = format!("wss://localhost:{}/ws?channels=signals", node.addr.port());
    let (mut sub, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(wss_recv(&mut sub).await["type"], "welcome");

    install(&dir, "b");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tls(node.addr).await.1,
        der("tls_a.pem"),
        "no reload without the signal"
    );
    let hup = || {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(node.pid() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(rc, 0);
    };
    hup();
    let deadline = tokio::time::Instant::now() + WAIT;
    while tls(node.addr).await.1 != der("tls_b.pem") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never served after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A key that is not the certificate's, then a certificate file cut short: neither
    // replaces B, both are reported, and the relay keeps serving.
    std::fs::copy(key_file("tls_a_key.pem"), &key).unwrap();
    hup();
    let mut stats = Value::Null;
    eventually("the mismatched key is refused", || {
        stats = futures_block(tls_stats(node.addr));
        stats["tls"]["reload_failures"] == 1
    })
    .await;
    assert!(
        stats["tls"]["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("is not the key"),
        "{stats}"
    );
    assert_eq!(tls(node.addr).await.1, der("tls_b.pem"));
    std::fs::copy(key_file("tls_b_key.pem"), &key).unwrap();
    let pem = std::fs::read_to_string(key_file("tls_b.pem")).unwrap();
    std::fs::write(&cert, &pem[..pem.len() / 2]).unwrap();
    hup();
    eventually("the cut certificate is refused", || {
        stats = futures_block(tls_stats(node.addr));
        stats["tls"]["reload_failures"] == 2
    })
    .await;
    assert!(
        stats["tls"]["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("--tls-cert"),
        "{stats}"
    );
    assert_eq!(tls(node.addr).await.1, der("tls_b.pem"));
    // The connection from before every reload is still delivered to.
    let (status, _) = https(
        node.addr,
        "POST",
        "/publish/signals",
        Some(KEY),
        r#"{"still":1}"#,
    )
    .await;
    assert_eq!(status, 200);
    loop {
        let m = wss_recv(&mut sub).await;
        if m["type"] == "message" {
            assert_eq!(m["data"]["still"], 1);
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `f` to completion from inside a sync closure (for [`eventually`]).
fn futures_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// An in-process relay serving certificate A with `config`.
async fn tls_relay(mut config: tickrelay::Config) -> TestRelay {
    config.tls.tls_cert = Some(key_file("tls_a.pem"));
    config.tls.tls_key = Some(key_file("tls_a_key.pem"));
    config.load_file().unwrap();
    start(config).await
}

/// The first bytes of a ClientHello: a handshake record header announcing 512 bytes,
/// and 1 of them.
const PARTIAL_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];

/// Reads until EOF or an error; how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let t = tokio::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("not closed within {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn stalled_handshakes_hold_bounded_places_and_are_timed_out() {
    let r = tls_relay(tickrelay::Config {
        max_http_connections: 3,
        handshake_timeout_ms: 700,
        ..config()
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(PARTIAL_HELLO).await.unwrap();
        stalled.push(s);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while r.relay.http_connections() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the three never held their places"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A fourth finds every place taken: closed at once, before any TLS work.
    let mut fourth = TcpStream::connect(r.addr).await.unwrap();
    fourth.write_all(PARTIAL_HELLO).await.unwrap();
    assert!(closed_after(&mut fourth).await < Duration::from_millis(500));
    // The three are closed at the handshake timeout, and counted.
    for s in &mut stalled {
        closed_after(s).await;
    }
    let tls_state = r.relay.config.tls_state.clone().unwrap();
    let timeouts = tls_state
        .counters
        .timeouts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(timeouts, 3);
    assert_eq!(r.relay.http_connections(), 0, "their places are back");
    // And a real client is served.
    let (status, body) = https(r.addr, "GET", "/health", None, "").await;
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    r.stop().await;
}

#[tokio::test]
async fn plain_http_and_garbage_on_the_tls_port() {
    let r = tls_relay(config()).await;
    let (status, _, body) = http(r.addr, "GET", "/health", &[], b"").await;
    assert_eq!(status, 400);
    assert!(body.contains("this port speaks TLS"), "{body}");
    // A record header that is not a ClientHello: a TLS error, the connection closed.
    let mut junk = TcpStream::connect(r.addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x03, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    closed_after(&mut junk).await;
    let tls_state = r.relay.config.tls_state.clone().unwrap();
    let failures = tls_state
        .counters
        .failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failures, 2, "the plain request and the junk");
    // The relay still serves TLS: a WebSocket over it subscribes and receives.
    let (stream, _) = tls(r.addr).await;
    let url = format!("wss://localhost:{}/ws?channels=signals", r.addr.port());
    let (mut sub, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(wss_recv(&mut sub).await["type"], "welcome");
    assert_eq!(wss_recv(&mut sub).await["type"], "subscribed");
    let (status, _) = https(r.addr, "POST", "/publish/signals", Some(KEY), r#"{"x":1}"#).await;
    assert_eq!(status, 200);
    assert_eq!(wss_recv(&mut sub).await["data"]["x"], 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_with_tls_false_stays_plain_beside_a_tls_one() {
    let mut config = config();
    config.tls.tls_cert = Some(key_file("tls_a.pem"));
    config.tls.tls_key = Some(key_file("tls_a_key.pem"));
    config.load_file().unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let side = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_addr, side_addr) = (main.local_addr().unwrap(), side.local_addr().unwrap());
    let mut routes = tickrelay::routes::Routes::default();
    routes.plain = true;
    let relay = tickrelay::Relay::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tickrelay::server::serve_with(
        main,
        vec![(side, Arc::new(routes))],
        relay,
        async {
            let _ = rx.await;
        },
    ));
    let (status, _, body) = http(side_addr, "GET", "/health", &[], b"").await;
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    assert_eq!(https(main_addr, "GET", "/health", None, "").await.0, 200);
    assert_eq!(http(main_addr, "GET", "/health", &[], b"").await.0, 400);
    let _ = tx.send(());
    let _ = task.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_loads_a_tls_relay() {
    let node = tls_node(
        "load",
        &key_file("tls_a.pem"),
        &key_file("tls_a_key.pem"),
        &[],
    )
    .await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tickrelay-load"))
        .args([
            "fanout",
            "-n",
            "20",
            "-k",
            "1",
            "-d",
            "1",
            "--rate",
            "50",
            "--publish-key",
            KEY,
        ])
        .arg("--target")
        .arg(node.addr.to_string())
        .arg("--tls-ca")
        .arg(key_file("tls_ca.pem"))
        .arg("--quiet")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("tickrelay-load ends by itself")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["connections"], 20, "{v}");
    assert!(v["deliveries"].as_u64().unwrap() >= 20 * 40, "{v}");
    assert_eq!(
        (v["lost"].as_u64(), v["reordered"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    let stats = tls_stats(node.addr).await;
    assert!(
        stats["tls"]["handshakes"].as_u64().unwrap() >= 21,
        "every connection over TLS: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_websocket_that_stops_reading_is_not_cut_by_the_http_write_timeout() {
    // WebSocket writers have their own limits (queue bytes, heartbeat); the HTTP write
    // timeout is for plain HTTP responses and must not follow the socket into a session.
    let r = tls_relay(tickrelay::Config {
        http_write_timeout_ms: 300,
        queue_bytes: 32 << 20,
        ..config()
    })
    .await;
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(r.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let stream = connector().connect(name, tcp).await.unwrap();
    let url = format!("wss://localhost:{}/ws?channels=signals", r.addr.port());
    let (mut sub, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert_eq!(wss_recv(&mut sub).await["type"], "welcome");
    assert_eq!(wss_recv(&mut sub).await["type"], "subscribed");
    // 8 MB while the subscriber reads nothing for a second: more than the socket's send
    // buffer takes (Linux grows it to 4 MB at most), so the relay's writes wait; far less
    // than --queue-bytes.
    const N: u64 = 160;
    let pad = "x".repeat(50_000);
    for i in 0..N {
        let body = format!(r#"{{"i":{i},"pad":"{pad}"}}"#);
        let (status, _) = https(r.addr, "POST", "/publish/signals", Some(KEY), &body).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for i in 0..N {
        let m = wss_recv(&mut sub).await;
        assert_eq!(
            (m["type"].as_str(), m["data"]["i"].as_u64()),
            (Some("message"), Some(i))
        );
    }
    r.stop().await;
}
