//! Socket.IO v4 (Engine.IO v4) on `/socket.io/`, with the real, unmodified clients:
//! socket.io-client 4.8.x (npm) in Node with its default options (long-polling, then the
//! upgrade), with `transports: ['websocket']` and with the CRS front end's own options;
//! its browser bundle in headless Debian Chromium on another origin; python-socketio's
//! client (PyPI, an independent Engine.IO implementation). Each runs the same cases
//! against a relay behind a loopback proxy that cuts sockets (see `socketio/harness.rs`
//! and tests/clients/socketio/). The wire-level tests in `socketio/wire.rs` pin the
//! packets, the polling errors and CORS, and the stalled clients.
//!
//! The clients are installed by .ci/test (npm packages under tests/clients/socketio/
//! node_modules, python-socketio in ~/.cache/tickrelay-venv, Debian's chromium).

#[path = "socketio/harness.rs"]
mod harness;
mod support;
#[path = "socketio/wire.rs"]
mod wire;

use std::path::PathBuf;
use std::time::Duration;

/// Runs one client script to its end; asserts it passed every case.
async fn run_client(program: &str, args: &[&str], what: &str) {
    run_with(harness::relay_config(), program, args, what).await
}

async fn run_with(config: tickrelay::Config, program: &str, args: &[&str], what: &str) {
    let ctl = harness::Control::start(config).await;
    let out = tokio::process::Command::new(program)
        .args(args.iter().take(1))
        .arg(ctl.base())
        .args(args.iter().skip(1))
        .current_dir(harness::CLIENTS)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap_or_else(|_| panic!("{what} finished in time"))
        .unwrap_or_else(|e| panic!("{what}: cannot run {program}: {e} (run .ci/test once)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{what} stdout:\n{stdout}\n{what} stderr:\n{stderr}");
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{stderr}");
    for line in [
        "subscribed both ways, ack round trip",
        "equal the published data",
        "last value after subscribe",
        "ping intervals",
        "reconnected after the relay dropped the connection",
        "wrong namespace: connect_error",
        "ALL CASES PASSED",
    ] {
        assert!(stdout.contains(line), "{what}: no {line:?} in\n{stdout}");
    }
    drop(ctl);
}

fn node_modules_present() {
    let m = PathBuf::from(harness::CLIENTS).join("node_modules/socket.io-client");
    assert!(
        m.exists(),
        "{} missing: run .ci/test (or npm ci in tests/clients/socketio)",
        m.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_default_options_upgrade_to_websocket() {
    node_modules_present();
    run_client("node", &["node.mjs", "default"], "socket.io-client default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_websocket_only() {
    node_modules_present();
    run_client(
        "node",
        &["node.mjs", "websocket"],
        "socket.io-client websocket",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_with_the_crs_front_ends_options() {
    node_modules_present();
    run_client("node", &["node.mjs", "crs"], "socket.io-client crs").await;
}

fn venv_python() -> String {
    let venv = std::env::var("TICKRELAY_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/tickrelay-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = format!("{venv}/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "{python} missing: run .ci/test (it installs python-socketio there)"
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_default_transports_upgrade() {
    let script = format!("{}/python_client.py", harness::CLIENTS);
    run_client(
        &venv_python(),
        &[&script, "default"],
        "python-socketio default",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_socketio_websocket_only() {
    let script = format!("{}/python_client.py", harness::CLIENTS);
    run_client(
        &venv_python(),
        &[&script, "websocket"],
        "python-socketio websocket",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_io_client_bundle_in_chromium_from_another_origin() {
    node_modules_present();
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium missing: apt-get install chromium (.ci/test does)"
    );
    // The page's origin is the control server's port, the relay's another: long-polling
    // works only with CORS, and only for an origin --allowed-origins lets in.
    let config = tickrelay::Config {
        allowed_origins: vec!["http://127.0.0.1:*".into()],
        ..harness::relay_config()
    };
    let what = "socket.io-client (Chromium)";
    run_with(config, "node", &["browser.mjs"], what).await;
}
