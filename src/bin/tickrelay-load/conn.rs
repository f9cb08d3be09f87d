//! `--tls-ca`: subscriber and publisher sockets over TLS (rustls, trusting only the given
//! CA), so a relay behind `--tls-cert` is loaded the same way as a plain one.
//!
//! [`Conn`] is a TCP stream or TLS over one; its halves ([`Conn::split`]) keep the plain
//! case on the socket's own owned halves, so a plain run costs what it did before.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::net::{self, ConnError, Failure, Target};

/// How to reach a TLS relay: the connector and the name its certificate must carry.
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({:?})", self.name)
    }
}

impl TlsClient {
    /// Trusts the certificates of the PEM file `ca` only, and expects `name`.
    pub fn new(ca: &Path, name: &str) -> Result<TlsClient, String> {
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("--tls-ca {}: no CERTIFICATE in it", ca.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| format!("--tls-server-name {name:?}: {e}"))?;
        Ok(TlsClient {
            connector: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            name,
        })
    }
}

/// A client socket: plain TCP or TLS over TCP.
pub enum Conn {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connection `idx` to `target` (TLS when the target has it), Nagle off, reset on close,
/// upgraded to a WebSocket at `path_query` with `extra` header lines. Frames the relay
/// sends right behind the `101` stay unread.
pub async fn upgraded(
    target: &Target,
    idx: usize,
    path_query: &str,
    extra: &str,
) -> Result<Conn, ConnError> {
    let mut s = net::tcp(target, idx, true).await?;
    net::reset_on_close(&s);
    let Some(tls) = &target.tls else {
        net::upgrade_with(&mut s, &target.host, path_query, net::Head::Exact, extra).await?;
        return Ok(Conn::Plain(s));
    };
    let mut s = tls
        .connector
        .connect(tls.name.clone(), s)
        .await
        .map_err(|e| ConnError {
            kind: Failure::Other,
            detail: format!("TLS handshake: {e}"),
        })?;
    let (req, key) = net::upgrade_request(&target.host, path_query, extra);
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| ConnError::io("send upgrade", e))?;
    // Byte by byte, from the decrypted buffer (no system call each): nothing past the
    // head is taken from the frames that follow it.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= net::MAX_HEAD {
            return Err(ConnError {
                kind: Failure::Other,
                detail: "upgrade answer head over 4 KiB".into(),
            });
        }
        let b = s
            .read_u8()
            .await
            .map_err(|e| ConnError::io("read upgrade answer", e))?;
        head.push(b);
    }
    net::check_head(&head, &key)?;
    Ok(Conn::Tls(Box::new(s)))
}

impl Conn {
    /// The two halves: the socket's own for plain TCP, a shared lock for TLS.
    pub fn split(self) -> (ConnRead, ConnWrite) {
        match self {
            Conn::Plain(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Plain(r), ConnWrite::Plain(w))
            }
            Conn::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ConnRead::Tls(r), ConnWrite::Tls(w))
            }
        }
    }
}

/// The read half of a [`Conn`].
pub enum ConnRead {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a [`Conn`].
pub enum ConnWrite {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

macro_rules! read_impl {
    ($t:ty, $($v:ident),+) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_read(cx, buf),)+
                }
            }
        }
    };
}

macro_rules! write_impl {
    ($t:ty, $($v:ident),+) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_write(cx, buf),)+
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_write_vectored(cx, bufs),)+
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    $(Self::$v(s) => s.is_write_vectored(),)+
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_flush(cx),)+
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$v(s) => Pin::new(s).poll_shutdown(cx),)+
                }
            }
        }
    };
}

read_impl!(Conn, Plain, Tls);
write_impl!(Conn, Plain, Tls);
read_impl!(ConnRead, Plain, Tls);
write_impl!(ConnWrite, Plain, Tls);
