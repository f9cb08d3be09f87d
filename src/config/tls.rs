//! TLS termination's flags (see [`crate::tls`]).

use std::path::PathBuf;

/// Default `--tls-reload-check-ms`: how often the certificate files are looked at.
pub const DEFAULT_RELOAD_CHECK_MS: u64 = 5_000;

/// TLS flags (flattened into [`crate::Config`]).
#[derive(clap::Args, Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain (server certificate first). With `--tls-key`, every listener
    /// speaks TLS (`wss://`, `https://`) unless its `[[listener]]` table says `tls = false`.
    #[arg(long, env = "TICKRELAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the certificate (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, env = "TICKRELAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often the certificate and key files are checked for a change, which reloads
    /// them (ms; 0: only on SIGHUP). Open connections keep their session either way.
    #[arg(long, env = "TICKRELAY_TLS_RELOAD_CHECK_MS", default_value_t = DEFAULT_RELOAD_CHECK_MS)]
    pub tls_reload_check_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            tls_cert: None,
            tls_key: None,
            tls_reload_check_ms: DEFAULT_RELOAD_CHECK_MS,
        }
    }
}

impl TlsConfig {
    /// Both files, when TLS is on.
    pub fn files(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.tls_cert.as_ref().zip(self.tls_key.as_ref())
    }

    /// Checks the flags: a certificate needs its key and the other way round (clap
    /// checks this on the command line; this covers a `Config` built in code).
    pub fn check(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
            _ => Ok(()),
        }
    }

    /// The flags as `--print-config` shows them.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("<unset>".into(), |p| p.display().to_string())
        };
        vec![
            ("tls-cert", path(&self.tls_cert)),
            ("tls-key", path(&self.tls_key)),
            ("tls-reload-check-ms", self.tls_reload_check_ms.to_string()),
        ]
    }
}
