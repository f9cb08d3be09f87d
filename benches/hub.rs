//! Hub fan-out to in-memory subscribers: the cost of one publish as the audience grows.
//! Outboxes are drained between measured publishes (untimed), as a writer would.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tickrelay::hub::{Hub, Subscriber};
use tickrelay::metrics::Metrics;
use tickrelay::outbox::Outbox;

const TICK: &[u8] = br#"{"symbol":"BTC-USD","price":43250.50,"bid":43248.25,"ask":43252.75,"change_24h":2.45,"volume_24h":28500000.00,"ts":1732270000123}"#;

/// Empties every outbox, as writers would (outside the timed section's hot loop).
fn drain(outboxes: &[Arc<Outbox>], batch: &mut VecDeque<bytes::Bytes>) {
    for o in outboxes {
        let taken = o.take(batch);
        o.release(taken.bytes);
        batch.clear();
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for n in [1usize, 100, 10_000] {
        let hub = Hub::new(8, 1000, Arc::new(Metrics::default()));
        let outboxes: Vec<Arc<Outbox>> = (0..n).map(|_| Arc::new(Outbox::new(64 << 20))).collect();
        for (i, o) in outboxes.iter().enumerate() {
            hub.subscribe(
                "ticker:BTC-USD",
                &Subscriber {
                    conn: i as u64,
                    outbox: o.clone(),
                    format: tickrelay::protocol::format::Format::ENVELOPE,
                    deflate: Default::default(),
                },
                None,
            )
            .unwrap();
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut batch = VecDeque::new();
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    let t = Instant::now();
                    std::hint::black_box(hub.publish("ticker:BTC-USD", TICK).unwrap());
                    spent += t.elapsed();
                    if i % 64 == 63 {
                        drain(&outboxes, &mut batch);
                    }
                }
                spent
            })
        });
    }
    g.finish();
}

fn churn(c: &mut Criterion) {
    let hub = Hub::new(8, 100_000, Arc::new(Metrics::default()));
    let outbox = Arc::new(Outbox::new(1 << 20));
    let names: Vec<String> = (0..64).map(|i| format!("ticker:SYM{i}")).collect();
    c.bench_function("subscribe_unsubscribe", |b| {
        let mut i = 0u64;
        b.iter(|| {
            let name = &names[(i % 64) as usize];
            let sub = Subscriber {
                conn: i,
                outbox: outbox.clone(),
                format: tickrelay::protocol::format::Format::ENVELOPE,
                deflate: Default::default(),
            };
            hub.subscribe(name, &sub, None).unwrap();
            hub.unsubscribe(name, i);
            i += 1;
        })
    });
}

/// Publish plus subscribe/unsubscribe churn spread over 1024 channels, as the number of
/// shards grows: what sharding buys when publishes and subscriptions hit many channels.
/// Single-threaded, so it measures the per-operation cost of the shard lookup and locks
/// (hash, map size per shard), not contention.
fn shards(c: &mut Criterion) {
    let mut g = c.benchmark_group("shards");
    let names: Vec<String> = (0..1024).map(|i| format!("ticker:SYM{i}")).collect();
    for n in [1usize, 4, 16, 64] {
        let hub = Hub::new(n, 100_000, Arc::new(Metrics::default()));
        let outboxes: Vec<Arc<Outbox>> = (0..8).map(|_| Arc::new(Outbox::new(64 << 20))).collect();
        // Every channel exists and has one resident subscriber, so publishes fan out.
        for (i, name) in names.iter().enumerate() {
            let sub = Subscriber {
                conn: i as u64,
                outbox: outboxes[i % outboxes.len()].clone(),
                format: tickrelay::protocol::format::Format::ENVELOPE,
                deflate: Default::default(),
            };
            hub.subscribe(name, &sub, None).unwrap();
        }
        // One op = one publish + one subscribe + one unsubscribe, on different channels.
        g.throughput(Throughput::Elements(3));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut batch = VecDeque::new();
            let mut i = 0usize;
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let p = &names[i.wrapping_mul(7919) % names.len()];
                    std::hint::black_box(hub.publish(p, TICK).unwrap());
                    let s = &names[i.wrapping_mul(104_729) % names.len()];
                    let sub = Subscriber {
                        conn: 1_000_000 + i as u64,
                        outbox: outboxes[0].clone(),
                        format: tickrelay::protocol::format::Format::ENVELOPE,
                        deflate: Default::default(),
                    };
                    hub.subscribe(s, &sub, None).unwrap();
                    hub.unsubscribe(s, sub.conn);
                    spent += t.elapsed();
                    i += 1;
                    if i.is_multiple_of(256) {
                        drain(&outboxes, &mut batch);
                    }
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout, churn, shards);
criterion_main!(benches);
