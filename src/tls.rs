//! TLS termination: rustls (ring provider) through tokio-rustls, TLS 1.2 and 1.3, ALPN
//! `http/1.1`, with the certificate reloaded in place.
//!
//! The certificate and key come from `--tls-cert` / `--tls-key` (PEM). They are read
//! once at start-up (an unusable pair stops the relay with the reason) and again on
//! SIGHUP or when either file changes (checked every `--tls-reload-check-ms`). A reload
//! swaps the key the next handshakes are answered with; open connections keep their
//! session and are never dropped. A reload that fails (unreadable file, a key that is
//! not the certificate's, a half-written file) keeps the previous pair, is logged and
//! counted (`/stats` `tls.reload_failures`), and is tried again on the next change.
//!
//! A handshake has `--handshake-timeout-ms` and holds one of the
//! `--max-http-connections` places while it runs, so clients that stall mid-handshake
//! cost at most that many rustls states for at most that long; past the limit a new
//! connection is closed at once, before any TLS work. The HTTP request head then has
//! its own `--handshake-timeout-ms`, as on plain TCP.
//!
//! kTLS (handing the record layer to the kernel) is not used: this kernel has no `tls`
//! module (`benches/README.md`, "kTLS on this machine").

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS-terminating listener's state: the acceptor, the key it answers with, counters.
pub struct Tls {
    acceptor: TlsAcceptor,
    keys: Arc<Keys>,
    provider: Arc<CryptoProvider>,
    cert_path: PathBuf,
    key_path: PathBuf,
    /// How often the files are checked for a change (`None`: SIGHUP only).
    pub check_every: Option<Duration>,
    /// Counters for `/stats` and `/metrics`.
    pub counters: Counters,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// What TLS did since start.
#[derive(Debug, Default)]
pub struct Counters {
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshakes that failed (a protocol error, no common version, cipher or ALPN
    /// protocol, the client went away).
    pub failures: AtomicU64,
    /// Handshakes not done within `--handshake-timeout-ms`.
    pub timeouts: AtomicU64,
    /// Certificate reloads that took effect.
    pub reloads: AtomicU64,
    /// Reloads refused (the previous certificate stayed).
    pub reload_failures: AtomicU64,
    /// When the certificate in use was loaded (Unix ms).
    pub loaded_unix_ms: AtomicU64,
    /// Why the last reload failed, until one succeeds.
    pub last_error: Mutex<Option<String>>,
}

/// The key handshakes are answered with, swapped by a reload.
struct Keys {
    current: RwLock<Arc<CertifiedKey>>,
    /// The files as they were when last read (modification time, length).
    stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys")
    }
}

impl ResolvesServerCert for Keys {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp_of(paths: [&Path; 2]) -> Stamp {
    paths.map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    })
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads a PEM certificate chain and its key and checks that they belong together.
fn load_pair(
    provider: &CryptoProvider,
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| format!("--tls-cert {}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no CERTIFICATE in the file",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("--tls-key {}: {e}", key_path.display()))?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("--tls-key {}: {e}", key_path.display()))?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match().map_err(|e| {
        format!(
            "--tls-key {} is not the key of --tls-cert {}: {e}",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(pair)
}

impl Tls {
    /// TLS with the certificate chain and key of these PEM files, checked for a change
    /// every `check_ms` (0: never), or why the files cannot serve.
    pub fn from_files(
        cert_path: &Path,
        key_path: &Path,
        check_ms: u64,
    ) -> Result<Arc<Tls>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp_of([cert_path, key_path]);
        let pair = load_pair(&provider, cert_path, key_path)?;
        let keys = Arc::new(Keys {
            current: RwLock::new(Arc::new(pair)),
            stamp: Mutex::new(stamp),
        });
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(keys.clone());
        // HTTP/1.1 only: the WebSocket upgrade is an HTTP/1.1 request. A client that
        // offers ALPN without it gets `no_application_protocol`.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let counters = Counters::default();
        counters
            .loaded_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        Ok(Arc::new(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            keys,
            provider,
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            check_every: (check_ms > 0).then(|| Duration::from_millis(check_ms)),
            counters,
        }))
    }

    /// Runs the handshake within `timeout`; `None` (counted) if it failed or took too long.
    /// A client that speaks plain HTTP to this port (`http://`, `ws://`) is answered with
    /// a plain `400` that says so, rather than a TLS alert it cannot read.
    pub async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        let c = &self.counters;
        let handshake = async {
            let mut first = [0u8; 1];
            // 0x16: a TLS handshake record. Anything else printable is a plain request.
            if matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_alphabetic()) {
                return Err(plain_request(stream).await);
            }
            self.acceptor.accept(stream).await
        };
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(s)) => {
                c.handshakes.fetch_add(1, Ordering::Relaxed);
                Some(s)
            }
            Ok(Err(e)) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                c.timeouts.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Reads the files again and, if they make a usable pair, answers the next
    /// handshakes with it. `Ok(false)`: `only_if_changed` and nothing changed.
    pub fn reload(&self, only_if_changed: bool) -> Result<bool, String> {
        let stamp = stamp_of([&self.cert_path, &self.key_path]);
        if only_if_changed && *self.keys.stamp.lock() == stamp {
            return Ok(false);
        }
        // The stamp is taken before reading: a file written again while it is read is
        // seen as changed at the next check, and read again then.
        *self.keys.stamp.lock() = stamp;
        let c = &self.counters;
        match load_pair(&self.provider, &self.cert_path, &self.key_path) {
            Ok(pair) => {
                *self.keys.current.write() = Arc::new(pair);
                c.reloads.fetch_add(1, Ordering::Relaxed);
                c.loaded_unix_ms.store(now_unix_ms(), Ordering::Relaxed);
                *c.last_error.lock() = None;
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded");
                Ok(true)
            }
            Err(e) => {
                c.reload_failures.fetch_add(1, Ordering::Relaxed);
                *c.last_error.lock() = Some(e.clone());
                tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays");
                Err(e)
            }
        }
    }

    /// The counters `/stats` and `/metrics` show, by name.
    pub fn counters(&self) -> [(&'static str, u64); 5] {
        let c = &self.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("handshakes", n(&c.handshakes)),
            ("handshake_failures", n(&c.failures)),
            ("handshake_timeouts", n(&c.timeouts)),
            ("reloads", n(&c.reloads)),
            ("reload_failures", n(&c.reload_failures)),
        ]
    }

    /// `,"tls":{"handshakes":N,..,"loaded_unix_ms":N,"last_reload_error":..}` for `/stats`.
    pub fn push_json(&self, out: &mut Vec<u8>) {
        use crate::protocol::json as j;
        out.extend_from_slice(br#","tls":{"#);
        for (k, v) in self.counters() {
            j::push_str(out, k);
            out.push(b':');
            j::push_u64(out, v);
            out.push(b',');
        }
        out.extend_from_slice(br#""loaded_unix_ms":"#);
        j::push_u64(out, self.counters.loaded_unix_ms.load(Ordering::Relaxed));
        out.extend_from_slice(br#","last_reload_error":"#);
        match &*self.counters.last_error.lock() {
            Some(e) => j::push_str(out, e),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }

    /// The `tickrelay_tls_*` series for `/metrics`.
    pub fn push_prometheus(&self, s: &mut String) {
        use std::fmt::Write as _;
        for (k, v) in self.counters() {
            let _ = writeln!(s, "# HELP tickrelay_tls_{k}_total TLS {k}.\n# TYPE tickrelay_tls_{k}_total counter\ntickrelay_tls_{k}_total {v}");
        }
        let at = self.counters.loaded_unix_ms.load(Ordering::Relaxed) / 1000;
        let _ = writeln!(s, "# HELP tickrelay_tls_certificate_loaded_seconds When the certificate in use was loaded (Unix time).\n# TYPE tickrelay_tls_certificate_loaded_seconds gauge\ntickrelay_tls_certificate_loaded_seconds {at}");
    }
}

/// Answers a plain-text request on a TLS port with `400` and closes.
async fn plain_request(mut stream: TcpStream) -> std::io::Error {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PLAIN: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 53\r\nconnection: close\r\n\r\nthis port speaks TLS: use https:// or wss:// instead\n";
    let _ = stream.write_all(PLAIN).await;
    let _ = stream.shutdown().await;
    // Read (and drop) what the client sent: closing with its request unread would reset
    // the connection before it reads the answer. The caller's timeout bounds this.
    let mut sink = [0u8; 1024];
    let mut left: usize = 16 * 1024;
    while left > 0 {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "plain HTTP on the TLS port",
    )
}

/// Reloads `tls` on SIGHUP and, every `check_every`, when the files changed, until
/// `stop` resolves.
pub async fn watch(tls: Arc<Tls>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tls.check_every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let check = async {
            match tick.as_mut() {
                Some(t) => t.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => return,
            _ = hangup => {
                let _ = tls.reload(false);
            }
            _ = check => {
                let _ = tls.reload(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name)
    }

    fn load(cert: &str, k: &str) -> Result<Arc<Tls>, String> {
        Tls::from_files(&key(cert), &key(k), 0)
    }

    #[test]
    fn pkcs8_ec_and_pkcs1_rsa_keys_load() {
        assert!(load("tls_a.pem", "tls_a_key.pem").is_ok());
        assert!(load("tls_b.pem", "tls_b_key.pem").is_ok());
    }

    #[test]
    fn unusable_pairs_are_refused_with_the_file_named() {
        let e = load("tls_a.pem", "tls_b_key.pem").unwrap_err();
        assert!(e.contains("is not the key of --tls-cert"), "{e}");
        let e = load("tls_a.pem", "no_such_key.pem").unwrap_err();
        assert!(
            e.starts_with("--tls-key") && e.contains("no_such_key.pem"),
            "{e}"
        );
        // A key file where the certificate should be: no CERTIFICATE section.
        let e = load("tls_a_key.pem", "tls_a_key.pem").unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = load("tls_a.pem", "tls_a.pem").unwrap_err();
        assert!(e.starts_with("--tls-key"), "{e}");
    }

    #[test]
    fn a_failed_reload_keeps_the_previous_pair() {
        let dir = std::env::temp_dir().join(format!("tickrelay-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
        std::fs::copy(key("tls_a.pem"), &c).unwrap();
        std::fs::copy(key("tls_a_key.pem"), &k).unwrap();
        let tls = Tls::from_files(&c, &k, 0).unwrap();
        let before = tls.keys.current.read().clone();
        assert_eq!(tls.reload(true), Ok(false), "nothing changed");
        std::fs::copy(key("tls_b.pem"), &c).unwrap();
        assert!(tls.reload(true).is_err(), "B's certificate with A's key");
        assert!(Arc::ptr_eq(&before, &tls.keys.current.read()));
        assert_eq!(
            tls.reload(true),
            Ok(false),
            "the same files are not retried"
        );
        std::fs::copy(key("tls_b_key.pem"), &k).unwrap();
        assert_eq!(tls.reload(true), Ok(true));
        assert!(!Arc::ptr_eq(&before, &tls.keys.current.read()));
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!(
            (n(&tls.counters.reloads), n(&tls.counters.reload_failures)),
            (1, 1)
        );
        assert!(tls.counters.last_error.lock().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
