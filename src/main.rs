//! The `tickrelay` binary: parse the configuration, bind, run until SIGINT/SIGTERM.

use clap::Parser;
use tickrelay::Config;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = Config::parse();
    if let Err(e) = config.load_file() {
        eprintln!("tickrelay: {e}");
        return std::process::ExitCode::from(2);
    }
    if config.print_config {
        print!("{}", config.render());
        return std::process::ExitCode::SUCCESS;
    }
    // Before the runtime starts its threads: see `tickrelay::fds`.
    let fds = tickrelay::fds::prepare(config.max_connections.saturating_add(FD_MARGIN));
    let usable = fds.limit.saturating_sub(FD_MARGIN as u64);
    if usable < config.max_connections as u64 {
        tracing::warn!(
            open_file_limit = fds.limit,
            max_connections = config.max_connections,
            "the open-file limit allows about {usable} connections, fewer than \
             --max-connections: accepts beyond that fail (raise `ulimit -n` / LimitNOFILE)"
        );
    }
    tracing::debug!(
        open_file_limit = fds.limit,
        fd_table = fds.table,
        "descriptors"
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tickrelay: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(config))
}

/// Descriptors kept for what is not a WebSocket: plain HTTP requests, files, upstreams.
const FD_MARGIN: usize = 64;

async fn serve(config: Config) -> std::process::ExitCode {
    let listener = match tickrelay::server::listen(config.listen, config.listen_backlog) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.listen, error = %e, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    let (http, ws) = if config.tls_state.is_some() {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!("tickrelay listening on {http}://{addr} (WebSocket: {ws}://{addr}/ws)");
    if config.publish_key.is_none()
        && config.jwt_secret.is_none()
        && config.jwt_public_key.is_none()
    {
        tracing::info!("no --publish-key: publishing from outside is disabled");
    }
    let mut extra = Vec::new();
    for l in &config.listeners {
        match tickrelay::server::listen(l.addr, config.listen_backlog) {
            Ok(bound) => {
                let addr = bound.local_addr().map_or(l.addr, |a| a);
                let http = if config.tls_state.is_some() && !l.routes.plain {
                    "https"
                } else {
                    "http"
                };
                tracing::info!("also listening on {http}://{addr} (its own routes, see --config)");
                extra.push((bound, l.routes.clone()));
            }
            Err(e) => {
                tracing::error!(addr = %l.addr, error = %e, "cannot listen");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    tickrelay::server::run_with(listener, extra, config, shutdown_signal()).await;
    tracing::info!("bye");
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
