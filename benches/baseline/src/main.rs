//! The obvious relay: tokio-tungstenite + one `tokio::sync::broadcast` per channel.
//! Bench-only baseline for benches/bar.sh; see README.md.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

struct Channel {
    tx: broadcast::Sender<Message>,
    offset: u64,
}

struct Hub {
    channels: Mutex<HashMap<String, Channel>>,
    key: Option<String>,
    buffer: usize,
}

impl Hub {
    fn subscribe(&self, name: &str) -> (broadcast::Receiver<Message>, u64) {
        let mut map = self.channels.lock().unwrap();
        let ch = map.entry(name.to_string()).or_insert_with(|| Channel {
            tx: broadcast::channel(self.buffer).0,
            offset: 0,
        });
        (ch.tx.subscribe(), ch.offset)
    }

    /// Returns (offset, receivers).
    fn publish(&self, name: &str, data: &Value) -> (u64, usize) {
        let mut map = self.channels.lock().unwrap();
        let ch = map.entry(name.to_string()).or_insert_with(|| Channel {
            tx: broadcast::channel(self.buffer).0,
            offset: 0,
        });
        ch.offset += 1;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let text = format!(
            r#"{{"type":"message","channel":{},"offset":{},"ts":{ts},"data":{}}}"#,
            Value::from(name),
            ch.offset,
            data
        );
        let n = ch.tx.send(Message::text(text)).unwrap_or(0);
        (ch.offset, n)
    }
}

fn query_param(uri: &str, key: &str) -> Option<String> {
    let q = uri.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.replace("%3A", ":").replace("%3a", ":"))
}

async fn ws_conn(stream: TcpStream, hub: Arc<Hub>) {
    let mut uri = String::new();
    let ws = match tokio_tungstenite::accept_hdr_async(stream, |req: &Request, resp: Response| {
        uri = req.uri().to_string();
        Ok(resp)
    })
    .await
    {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let publisher = match (&hub.key, query_param(&uri, "token")) {
        (Some(k), Some(t)) => *k == t,
        _ => false,
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(1024);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let _ = tx
        .send(Message::text(r#"{"type":"welcome","conn":"0","heartbeat_ms":25000}"#))
        .await;
    let mut forwarders = Vec::new();
    let subscribe = |names: Vec<String>, id: Option<Value>, forwarders: &mut Vec<_>| {
        let mut lines = Vec::new();
        for name in names {
            let (mut brx, offset) = hub.subscribe(&name);
            lines.push(json!({"channel": name, "epoch": "base", "offset": offset}));
            let tx = tx.clone();
            forwarders.push(tokio::spawn(async move {
                loop {
                    match brx.recv().await {
                        Ok(m) => {
                            if tx.send(m).await.is_err() {
                                break;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }));
        }
        let mut reply = json!({"type": "subscribed", "channels": lines});
        if let Some(id) = id {
            reply["id"] = id;
        }
        reply.to_string()
    };
    if let Some(chs) = query_param(&uri, "channels") {
        let names = chs.split(',').map(str::to_string).collect();
        let reply = subscribe(names, None, &mut forwarders);
        let _ = tx.send(Message::text(reply)).await;
    }
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(cmd) = serde_json::from_str::<Value>(&text) else {
            let _ = tx
                .send(Message::text(r#"{"type":"error","code":"bad_request"}"#))
                .await;
            continue;
        };
        let id = cmd.get("id").cloned();
        let reply = match cmd["op"].as_str() {
            Some("subscribe") => {
                let names = cmd["channels"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                subscribe(names, id, &mut forwarders)
            }
            Some("publish") if publisher => {
                let channel = cmd["channel"].as_str().unwrap_or("");
                let (offset, _) = hub.publish(channel, &cmd["data"]);
                let mut r = json!({"type": "published", "channel": channel, "offset": offset});
                if let Some(id) = id {
                    r["id"] = id;
                }
                r.to_string()
            }
            Some("publish") => json!({"type":"error","id":id,"code":"unauthorized"}).to_string(),
            Some("ping") => json!({"type":"pong","id":id}).to_string(),
            _ => json!({"type":"error","id":id,"code":"unknown_op"}).to_string(),
        };
        if tx.send(Message::text(reply)).await.is_err() {
            break;
        }
    }
    for f in forwarders {
        f.abort();
    }
    drop(tx);
    let _ = writer.await;
}

/// Keep-alive `POST /publish/{channel}` with `Authorization: Bearer KEY`.
async fn http_conn(mut s: TcpStream, hub: Arc<Hub>) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 65536 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let authorized = match (&hub.key, header("authorization")) {
            (Some(k), Some(v)) => v == format!("Bearer {k}"),
            _ => false,
        };
        let (status, answer) = match (path.strip_prefix("/publish/"), authorized) {
            (None, _) => ("404 Not Found", "not found".to_string()),
            (Some(_), false) => ("401 Unauthorized", "unauthorized".to_string()),
            (Some(ch), true) => match serde_json::from_slice::<Value>(&body) {
                Ok(data) => {
                    let ch = ch.replace("%3A", ":");
                    let (offset, n) = hub.publish(&ch, &data);
                    (
                        "200 OK",
                        json!({"channel": ch, "epoch": "base", "offset": offset, "delivered": n})
                            .to_string(),
                    )
                }
                Err(_) => ("400 Bad Request", "bad json".to_string()),
            },
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn conn(stream: TcpStream, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 5];
    match stream.peek(&mut first).await {
        Ok(n) if first[..n].starts_with(b"POST") => http_conn(stream, hub).await,
        Ok(_) => ws_conn(stream, hub).await,
        Err(_) => {}
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:8081".into());
    let hub = Arc::new(Hub {
        channels: Mutex::new(HashMap::new()),
        key: arg("--publish-key"),
        buffer: arg("--buffer").and_then(|b| b.parse().ok()).unwrap_or(4096),
    });
    // Bounded like everything in the bench: exits by itself after --max-secs.
    let max_secs: u64 = arg("--max-secs").and_then(|b| b.parse().ok()).unwrap_or(600);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(max_secs)).await;
        eprintln!("tickrelay-baseline: --max-secs {max_secs} reached, exiting");
        std::process::exit(0);
    });
    let listener = TcpListener::bind(&listen).await.expect("bind --listen");
    eprintln!("tickrelay-baseline listening on {listen}");
    loop {
        match listener.accept().await {
            Ok((s, _)) => {
                tokio::spawn(conn(s, hub.clone()));
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
