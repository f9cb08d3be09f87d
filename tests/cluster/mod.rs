//! Backplane test helpers: a real `redis-server` of this test's own (ephemeral port,
//! temp dir, no persistence unless asked) and relay processes (the built binary) on it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{http, KEY, WAIT};

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `redis-server` started by this test, killed when dropped.
pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    aof: bool,
    child: Option<std::process::Child>,
}

impl Redis {
    /// Starts one; `aof`: append-only file, fsync always (for restarts with data).
    pub async fn start(aof: bool) -> Redis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("tickrelay-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis {
            port,
            dir,
            aof,
            child: None,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let mut cmd = std::process::Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--dir", self.dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        self.child = Some(
            cmd.spawn()
                .expect("redis-server (apt-get install redis-server)"),
        );
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(mut c) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server starts"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// Runs one command.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut c = self.client().get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c).unwrap()
    }

    /// Kills it (SIGKILL: no goodbye, no final save).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port; `empty`: without its data.
    pub async fn restart(&mut self, empty: bool) {
        self.kill();
        if empty {
            let _ = std::fs::remove_dir_all(&self.dir);
            std::fs::create_dir_all(&self.dir).unwrap();
        }
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A relay process on the backplane, killed when dropped.
pub struct Node {
    pub addr: SocketAddr,
    pub name: String,
    child: Child,
}

impl Node {
    /// Starts the binary on `redis` as node `name`, with a 300 ms linger.
    pub async fn start(redis: &Redis, name: &str) -> Node {
        let port = free_port();
        let args = ["--redis", &redis.url(), "--redis-linger-ms", "300"].map(String::from);
        let node = Node::spawn(name, port, &args).await;
        node.wait_health("\"backplane\":\"up\"").await;
        node
    }

    /// Starts the binary as node `name` on 127.0.0.1:`port` with the publish key and
    /// `args`, and waits until it listens.
    pub async fn spawn(name: &str, port: u16, args: &[String]) -> Node {
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
            .args(["--listen", &listen, "--publish-key", KEY, "--node-id", name])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        tokio::time::timeout(WAIT, async {
            while let Some(l) = lines.next_line().await.unwrap() {
                if l.contains("listening") {
                    return;
                }
            }
            panic!("the relay exited before listening");
        })
        .await
        .expect("the relay starts");
        // Keep draining the log (shown with BACKPLANE_TEST_LOG=1).
        let show = std::env::var_os("BACKPLANE_TEST_LOG").is_some();
        let who = name.to_string();
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                if show {
                    eprintln!("[{who}] {l}");
                }
            }
        });
        Node {
            addr: listen.parse().unwrap(),
            name: name.into(),
            child,
        }
    }

    /// Three nodes `a`, `b`, `c`.
    pub async fn three(redis: &Redis) -> [Node; 3] {
        [
            Node::start(redis, "a").await,
            Node::start(redis, "b").await,
            Node::start(redis, "c").await,
        ]
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}/ws{query}", self.addr)
    }

    /// `POST /publish/{channel}`: status and body.
    pub async fn publish(&self, channel: &str, data: &str) -> (u16, String) {
        let auth = format!("Bearer {KEY}");
        let (s, _, b) = http(
            self.addr,
            "POST",
            &format!("/publish/{channel}"),
            &[("Authorization", &auth)],
            data.as_bytes(),
        )
        .await;
        (s, b)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = http(self.addr, "GET", path, &[], b"").await;
        (s, b)
    }

    /// Waits until `/health` contains `what`.
    pub async fn wait_health(&self, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, b) = self.get("/health").await;
            if b.contains(what) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: health {b}, want {what}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the relay is running")
    }
}

/// Polls `f` until it is true, at most [`WAIT`].
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads message texts until `n` arrived (other frames skipped).
pub async fn take(ws: &mut crate::support::Ws, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let t = crate::support::recv_text(ws).await;
        if t.starts_with(r#"{"type":"message""#) {
            out.push(t);
        }
    }
    out
}

/// The `offset` of each message text.
pub fn offsets(texts: &[String]) -> Vec<u64> {
    texts
        .iter()
        .map(|t| {
            serde_json::from_str::<serde_json::Value>(t).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect()
}
