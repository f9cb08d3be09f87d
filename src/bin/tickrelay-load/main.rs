//! `tickrelay-load`: the load generator for tickrelay.
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | options, defaults, bounds |
//! | [`net`] | loopback-only targets, address spreading, the hand-written upgrade, failure kinds |
//! | [`subs`] | subscriber connections: subscribe, byte-scan messages, loss/reorder/latency |
//! | [`fanout`] | the fanout mode: subscribe, publish, drain, stop, its report |
//! | [`publishers`] | the fanout publishers (WebSocket or HTTP), paced, acks per channel |
//! | [`hold`] | the connect and idle modes |
//! | [`inflate`] | `--deflate`: subscribers offering permessage-deflate, compressed frames inflated under fastwebsockets |
//! | [`churn`] | the churn mode (soak): warm-up, baseline, mixed load, settle |
//! | [`churn_report`] | the churn mode's rows per interval, summary and verdict |
//! | [`mixed`] | the churn mode's churners, storms, stalled readers and flooders |
//! | [`probe`] | the relay from outside: its pid, RSS and fds from /proc, GET /stats |
//! | [`stats`] | clock, sharded HdrHistograms, /proc CPU and RSS, JSON writer |
//! | [`report`] | progress line, summary table, JSON line, HTML with SVG |
//! | [`summary`] | summary rows the modes share (connections, CPU, latency), the steady rate |

mod churn;
mod churn_report;
mod cli;
mod conn;
mod fanout;
mod hold;
mod inflate;
mod mixed;
mod net;
mod probe;
mod publishers;
mod report;
mod stats;
mod subs;
mod summary;

use clap::Parser;
use cli::{Cli, Common, Mode};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (common, connections) = match &cli.mode {
        Mode::Fanout(a) => (a.common.clone(), a.connections),
        Mode::Connect(a) => (a.common.clone(), a.connections),
        Mode::Idle(a) => (a.common.clone(), a.connections),
        Mode::Churn(a) => (a.common.clone(), a.total_connections()),
    };
    if let Err(e) = check(&cli.mode, &common, connections) {
        eprintln!("tickrelay-load: {e}");
        return ExitCode::from(2);
    }
    // Subscribers, a publisher (or --in-flight HTTP connections), and a few spare; sized
    // before the runtime has threads (see `tickrelay::fds`: otherwise each doubling of
    // the descriptor table stalls this process 10-25 ms, in the middle of a measurement).
    tickrelay::fds::prepare(connections.saturating_add(FD_SPARE));
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tickrelay-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(cli.mode, common, connections))
}

/// Descriptors beyond one per connection: the publisher, HTTP publishers, files.
const FD_SPARE: usize = 64;

fn check(mode: &Mode, c: &Common, connections: usize) -> Result<(), String> {
    cli::check_common(c, connections)?;
    match mode {
        Mode::Fanout(a) => {
            if a.channels == 0 || a.channels > 1_000_000 {
                return Err("--channels must be 1..=1000000".into());
            }
            if a.per_conn == 0 || a.per_conn > a.channels {
                return Err("--per-conn must be 1..=--channels".into());
            }
            if a.in_flight == 0 || a.in_flight > 10_000 {
                return Err("--in-flight must be 1..=10000".into());
            }
            if !(a.rate >= 0.0 && a.rate.is_finite()) {
                return Err("--rate must be >= 0".into());
            }
            if a.payload_bytes > 60_000 {
                return Err("--payload-bytes must be at most 60000".into());
            }
            cli::secs("--duration", a.duration)?;
            cli::secs("--drain", a.drain)?;
            if c.tls_ca.is_some() && a.via != cli::Via::Ws {
                return Err("--tls-ca: only the WebSocket publisher (--via ws) speaks TLS".into());
            }
        }
        _ if c.tls_ca.is_some() => return Err("--tls-ca: only fanout speaks TLS".into()),
        Mode::Connect(_) => {}
        Mode::Idle(a) => {
            if a.channels == 0 || a.channels > 1_000_000 {
                return Err("--channels must be 1..=1000000".into());
            }
            cli::secs("--hold", a.hold)?;
        }
        Mode::Churn(a) => churn::check(a)?,
    }
    Ok(())
}

async fn run(mode: Mode, c: Common, connections: usize) -> ExitCode {
    let tls = match &c.tls_ca {
        None => None,
        Some(ca) => match conn::TlsClient::new(ca, &c.tls_server_name) {
            Ok(t) => Some(std::sync::Arc::new(t)),
            Err(e) => {
                eprintln!("tickrelay-load: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let mut target = match net::target(
        &c.target,
        c.dst_addrs,
        c.src_addrs,
        c.allow_remote_test_host,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tickrelay-load: {e}");
            return ExitCode::from(2);
        }
    };
    target.tls = tls.clone();
    let need = (connections + FD_SPARE) as u64;
    let file_limit = net::open_file_limit().unwrap_or(u64::MAX);
    if need > file_limit {
        eprintln!(
            "tickrelay-load: warning: {connections} connections need about {need} file \
             descriptors but the open-file limit (ulimit -n) is {file_limit}: expect EMFILE \
             failures past ~{} connections",
            file_limit.saturating_sub(FD_SPARE as u64)
        );
    }
    let report = match mode {
        Mode::Fanout(a) => {
            let publish_to = match &a.publish_target {
                None => target.clone(),
                Some(spec) => match net::target(spec, 1, 0, c.allow_remote_test_host).await {
                    Ok(t) => net::Target { tls, ..t },
                    Err(e) => {
                        eprintln!("tickrelay-load: --publish-target: {e}");
                        return ExitCode::from(2);
                    }
                },
            };
            fanout::run(a, target, publish_to).await
        }
        Mode::Connect(a) => hold::connect(a, target).await,
        Mode::Idle(a) => hold::idle(a, target).await,
        Mode::Churn(a) => churn::run(a, target).await,
    };
    eprint!("{}", report.table());
    println!("{}", report.json_line());
    if let Some(path) = &c.out {
        let cmd: Vec<String> = std::env::args().collect();
        if let Err(e) = std::fs::write(path, report.html(&cmd.join(" "))) {
            eprintln!("tickrelay-load: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("report written to {}", path.display());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
