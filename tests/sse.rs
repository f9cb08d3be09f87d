//! `GET /sse`: Server-Sent Events over a real socket, read as a browser's `EventSource`
//! reads them (chunked body, events split on blank lines, comments skipped).

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One event: its `event:` name (`message` when absent), `id:` and `data:`.
#[derive(Debug)]
struct Event {
    name: String,
    id: Option<String>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("data is JSON")
    }
}

struct SseClient {
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    comments: usize,
    status: u16,
    head: String,
}

impl SseClient {
    async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut c = SseClient {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            comments: 0,
            status: 0,
            head: String::new(),
        };
        loop {
            if let Some(i) = c.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                c.head = String::from_utf8_lossy(&c.raw[..i]).to_string();
                c.raw.drain(..i + 4);
                c.status = c.head[9..12].parse().unwrap();
                return c;
            }
            assert!(c.fill().await, "closed before the response head");
        }
    }

    /// Reads more bytes; false at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("data in time")
        {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Moves whole chunks of the chunked body into `body`; false at the last chunk.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(i) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return true;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.raw[..i]).unwrap().trim(), 16)
                    .expect("chunk size");
            if size == 0 {
                return false;
            }
            if self.raw.len() < i + 2 + size + 2 {
                return true;
            }
            self.body.extend_from_slice(&self.raw[i + 2..i + 2 + size]);
            self.raw.drain(..i + 2 + size + 2);
        }
    }

    /// The next event (comments counted and skipped); `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(i) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block = String::from_utf8(self.body.drain(..i + 2).collect()).unwrap();
                let mut e = Event {
                    name: "message".into(),
                    id: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        self.comments += 1;
                    } else if let Some((k, v)) = line.split_once(": ") {
                        any = true;
                        match k {
                            "event" => e.name = v.into(),
                            "id" => e.id = Some(v.into()),
                            "data" => e.data.push_str(v),
                            _ => {}
                        }
                    }
                }
                if any {
                    return Some(e);
                }
            }
            let before = self.body.len();
            if !self.dechunk() {
                if self.body.len() == before {
                    return None; // the last chunk
                }
                continue;
            }
            if self.body.len() == before && !self.fill().await {
                return None;
            }
        }
    }

    async fn next_named(&mut self, name: &str) -> Event {
        let e = self.next().await.expect("stream ended");
        assert_eq!(e.name, name, "{e:?}");
        e
    }
}

#[tokio::test]
async fn messages_arrive_as_events_and_last_event_id_recovers_exactly_the_missed_ones() {
    let r = start(config()).await;
    let mut c = SseClient::open(r.addr, "/sse?channels=signals:s", &[]).await;
    assert_eq!(c.status, 200, "{}", c.head);
    assert!(
        c.head
            .to_lowercase()
            .contains("content-type: text/event-stream"),
        "{}",
        c.head
    );
    c.next_named("welcome").await;
    let sub = c.next_named("subscribed").await.json();
    assert_eq!(sub["channels"][0]["channel"], "signals:s");
    let epoch = sub["channels"][0]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        r.publish("signals:s", &format!("{{\"i\":{i},\n\"multi\":\"line\"}}"))
            .await;
    }
    let mut last = String::new();
    for i in 1..=3u64 {
        let e = c.next_named("message").await;
        assert_eq!(e.id.as_deref(), Some(format!("{epoch}:{i}").as_str()));
        let m = e.json();
        assert_eq!(m["offset"], i);
        assert_eq!(
            m["data"]["i"], i,
            "raw line breaks in the data became spaces: {m}"
        );
        last = e.id.unwrap();
    }
    assert_eq!(
        r.stats().await["connections"],
        1,
        "a stream is a connection"
    );
    drop(c);
    // Missed while away.
    for i in 4..=6 {
        r.publish("signals:s", &format!("{{\"i\":{i}}}")).await;
    }
    let mut c = SseClient::open(
        r.addr,
        "/sse?channels=signals:s",
        &[("Last-Event-ID", &last)],
    )
    .await;
    c.next_named("welcome").await;
    let sub = c.next_named("subscribed").await.json();
    assert_eq!(sub["channels"][0]["recovered"], true, "{sub}");
    for i in 4..=6u64 {
        assert_eq!(
            c.next_named("message").await.json()["offset"],
            i,
            "exactly the missed ones"
        );
    }
    r.publish("signals:s", "{\"i\":7}").await;
    assert_eq!(
        c.next_named("message").await.json()["offset"],
        7,
        "then live"
    );
    // An id from another epoch (the relay restarted, the channel was reclaimed): a clear
    // recovered:false, and the newest message as a snapshot.
    let mut c2 = SseClient::open(
        r.addr,
        "/sse?channels=signals:s",
        &[("Last-Event-ID", "zzzzzzzz:3")],
    )
    .await;
    c2.next_named("welcome").await;
    let sub = c2.next_named("subscribed").await.json();
    assert_eq!(sub["channels"][0]["recovered"], false, "{sub}");
    assert_eq!(c2.next_named("message").await.json()["offset"], 7);
    r.stop().await;
}

#[tokio::test]
async fn streams_have_heartbeats_auth_limits_and_are_cleaned_up() {
    let r = start(Config {
        heartbeat_ms: 100,
        max_subscriptions: 2,
        ..hs_config()
    })
    .await;
    // Private channels need the owner's token, shown in the request (no auth op here).
    let c = SseClient::open(r.addr, "/sse?channels=user:42", &[]).await;
    assert_eq!(c.status, 401, "{}", c.head);
    let other = user("7");
    let c = SseClient::open(r.addr, &format!("/sse?channels=user:42&token={other}"), &[]).await;
    assert_eq!(c.status, 403, "{}", c.head);
    let c = SseClient::open(r.addr, "/sse?channels=a,b,c", &[]).await;
    assert_eq!(c.status, 400, "the subscription limit: {}", c.head);
    let c = SseClient::open(r.addr, "/sse", &[]).await;
    assert_eq!(c.status, 400, "{}", c.head);
    let owner = user("42");
    let mut c = SseClient::open(
        r.addr,
        "/sse?channels=user:42",
        &[("Authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.head);
    c.next_named("welcome").await;
    c.next_named("subscribed").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    r.publish("user:42", "{\"n\":1}").await;
    assert_eq!(c.next_named("message").await.json()["data"]["n"], 1);
    assert!(
        c.comments >= 2,
        "a heartbeat comment every 100 ms: {}",
        c.comments
    );
    assert_eq!(r.stats().await["subscriptions"], 1);
    // A client that goes away: its stream, subscription and place are released.
    drop(c);
    r.wait_stats("the stream cleaned up", |s| {
        s["connections"] == 0 && s["subscriptions"] == 0
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn a_stream_nobody_reads_is_closed_as_a_slow_consumer_and_others_keep_up() {
    let r = start(Config {
        queue_bytes: 256 * 1024,
        http_write_timeout_ms: 60_000,
        ..config()
    })
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(r.addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "GET /sse?channels=signals:x HTTP/1.1\r\nHost: {}\r\n\r\n",
                r.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut healthy = SseClient::open(r.addr, "/sse?channels=signals:x", &[]).await;
    healthy.next_named("welcome").await;
    healthy.next_named("subscribed").await;
    let pad = "x".repeat(10_000);
    for i in 1..=400u64 {
        r.publish("signals:x", &format!("{{\"i\":{i},\"p\":\"{pad}\"}}"))
            .await;
        assert_eq!(healthy.next_named("message").await.json()["offset"], i);
    }
    let s = r
        .wait_stats("the stalled stream closed", |s| {
            s["slow_consumer_closes"] == 1 && s["connections"] == 1
        })
        .await;
    assert_eq!(s["subscriptions"], 1, "{s}");
    drop(stalled);
    r.stop().await;
}
