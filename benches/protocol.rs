//! Pure protocol costs: parsing client commands and building outbound frames.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tickrelay::protocol::{command, encode};

const TICK: &str = r#"{"symbol":"BTC-USD","price":43250.50,"bid":43248.25,"ask":43252.75,"change_24h":2.45,"volume_24h":28500000.00,"ts":1732270000123}"#;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let publish = format!(r#"{{"op":"publish","channel":"ticker:BTC-USD","data":{TICK},"id":3}}"#);
    let cases = [
        (
            "subscribe",
            r#"{"op":"subscribe","channels":["ticker:BTC-USD","ticker:ETH-USD","signals"],"id":1}"#
                .to_string(),
        ),
        ("publish", publish),
        ("ping", r#"{"op":"ping","id":5}"#.to_string()),
        (
            "invalid_json",
            r#"{"op":"subscribe","channels":["a",}"#.to_string(),
        ),
        ("unknown_op", r#"{"op":"dance","id":1}"#.to_string()),
    ];
    for (name, cmd) in cases {
        g.throughput(Throughput::Bytes(cmd.len() as u64));
        let mut buf = cmd.clone().into_bytes();
        g.bench_with_input(BenchmarkId::from_parameter(name), &cmd, |b, cmd| {
            b.iter(|| {
                buf.clear();
                buf.extend_from_slice(cmd.as_bytes());
                let _ = std::hint::black_box(command::parse(&mut buf));
            })
        });
    }
    g.finish();
}

fn encode_frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in [150usize, 1024, 65536] {
        let data = format!("\"{}\"", "x".repeat(size - 2));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("message_frame", size), &data, |b, data| {
            b.iter(|| encode::message_frame("ticker:BTC-USD", 1046, 1732270000123, data.as_bytes()))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, encode_frames);
criterion_main!(benches);
