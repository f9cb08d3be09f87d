//! The open-file limit and the descriptor table, on the real binary: the soft limit is
//! raised to the hard one, the table is sized for --max-connections before the first
//! accept, a limit too small for --max-connections is named in the log, and a relay out
//! of descriptors keeps its connections and accepts again once some close.

mod support;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts the binary with `args`, its open-file limit set to `nofile` (soft, hard)
/// when given; returns it once it logs that it listens, with the lines logged up to then.
async fn relay(args: &[&str], nofile: Option<(u64, u64)>) -> (Child, SocketAddr, Vec<String>) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickrelay"));
    cmd.args(["--listen", &listen])
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some((soft, hard)) = nofile {
        // SAFETY: only setrlimit (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::rlimit {
                    rlim_cur: soft as libc::rlim_t,
                    rlim_max: hard as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let done = l.contains("listening");
            seen.push(l);
            if done {
                return;
            }
        }
        panic!("the relay exited before listening: {seen:?}");
    })
    .await
    .expect("the relay starts");
    // Keep draining the log so the relay never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, listen.parse().unwrap(), seen)
}

fn proc_field(pid: u32, file: &str, prefix: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{prefix} in /proc/{pid}/{file}"))
        .trim()
        .to_string()
}

/// One upgrade within `within`: the stream if the relay answered 101.
async fn try_upgrade(addr: SocketAddr, within: Duration) -> Option<TcpStream> {
    tokio::time::timeout(within, async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE_HEADERS}\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = Vec::new();
        let mut b = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).await.ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&b[..n]);
        }
        head.starts_with(b"HTTP/1.1 101").then_some(s)
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn the_soft_limit_is_raised_and_the_table_sized_before_the_first_accept() {
    // Soft 1024 and hard 8192, as `ulimit -Sn 1024` would leave it.
    let (child, addr, _) = relay(&["--max-connections", "3000"], Some((1024, 8192))).await;
    let pid = child.id().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(open, ["8192", "8192"], "soft raised to hard");
    let table: usize = proc_field(pid, "status", "FDSize:").parse().unwrap();
    assert!(
        table >= 3000,
        "descriptor table {table} sized for --max-connections 3000 before any connection"
    );
    // And it serves.
    assert!(try_upgrade(addr, WAIT).await.is_some());
}

#[tokio::test]
async fn a_limit_below_max_connections_is_named_and_running_out_is_survived() {
    const NOFILE: u64 = 160;
    let (_child, addr, log) = relay(&["--max-connections", "5000"], Some((NOFILE, NOFILE))).await;
    assert!(
        log.iter()
            .any(|l| l.contains("open-file limit allows about") && l.contains("max_connections")),
        "start-up names the limit: {log:?}"
    );
    // Open connections until the relay cannot take another one.
    let mut held = Vec::new();
    while held.len() < NOFILE as usize + 10 {
        match try_upgrade(addr, Duration::from_millis(500)).await {
            Some(s) => held.push(s),
            None => break,
        }
    }
    let n = held.len();
    assert!(
        (NOFILE as usize - 40..NOFILE as usize).contains(&n),
        "{n} connections with {NOFILE} descriptors"
    );
    // Everyone already connected is still served...
    for s in held.iter_mut().take(5) {
        let mut w = RawWsOf(s);
        w.ping_pong().await;
    }
    // ...and once some leave, the relay accepts again (it backs off on EMFILE, no spin).
    held.truncate(n - 10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = 0;
    for _ in 0..5 {
        if try_upgrade(addr, Duration::from_secs(2)).await.is_some() {
            again += 1;
        }
    }
    assert_eq!(again, 5, "upgrades after descriptors were freed");
}

/// A ping on an already upgraded stream, answered with a pong (behind the welcome).
struct RawWsOf<'a>(&'a mut TcpStream);

impl RawWsOf<'_> {
    async fn ping_pong(&mut self) {
        self.0
            .write_all(&masked_frame(true, 0x9, b"hi"))
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        while !got.windows(4).any(|w| w == [0x8A, 2, b'h', b'i']) {
            let n = tokio::time::timeout(WAIT, self.0.read(&mut b))
                .await
                .expect("pong in time")
                .unwrap();
            assert!(n > 0, "connection still open");
            got.extend_from_slice(&b[..n]);
        }
    }
}
