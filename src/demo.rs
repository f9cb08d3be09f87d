//! `tickrelay --demo`: a simulated market published in-process through the same hub path
//! as any publisher.
//!
//! - `ticker:{BTC-USD,ETH-USD,SOL-USD,AAPL,MSFT,EURUSD}`: random-walk ticks
//!   (`symbol`, `price`, `bid`, `ask`, `change_24h`, `volume_24h`, `ts`), 5 per second each.
//! - `signals`: BUY/SELL with `strength` and `confidence`, every 3 s.
//! - `market_status`: open/closed per venue, every 10 s.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use crate::hub::now_ms;
use crate::relay::Relay;

struct Instrument {
    symbol: &'static str,
    price: f64,
    open: f64,
    decimals: usize,
    volume: f64,
}

/// xorshift64*: enough randomness for a demo, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Publishes until the relay shuts down.
pub async fn run(relay: Arc<Relay>) {
    let mut instruments = [
        ("BTC-USD", 43250.50, 2, 28_500_000.0),
        ("ETH-USD", 2280.10, 2, 12_400_000.0),
        ("SOL-USD", 98.42, 3, 3_100_000.0),
        ("AAPL", 189.95, 2, 51_000_000.0),
        ("MSFT", 374.51, 2, 22_000_000.0),
        ("EURUSD", 1.08500, 5, 95_000_000.0),
    ]
    .map(|(symbol, price, decimals, volume)| Instrument {
        symbol,
        price,
        open: price,
        decimals,
        volume,
    });
    let mut rng = Rng(now_ms() | 1);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let addr = relay.config.listen;
    tracing::info!("demo feed on: try  websocat 'ws://{addr}/ws?channels=ticker:BTC-USD,signals'");
    let mut n: u64 = 0;
    let mut body = String::with_capacity(256);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = relay.shutdown_started() => return,
        }
        n += 1;
        for i in instruments.iter_mut() {
            // Geometric random walk, ~2 bp per step.
            i.price *= 1.0 + (rng.next() - 0.5) * 0.0004;
            i.volume += rng.next() * 1000.0;
            let spread = i.price * 0.0001;
            let d = i.decimals;
            body.clear();
            let _ = write!(
                body,
                r#"{{"symbol":"{}","price":{:.d$},"bid":{:.d$},"ask":{:.d$},"change_24h":{:.2},"volume_24h":{:.2},"ts":{}}}"#,
                i.symbol,
                i.price,
                i.price - spread / 2.0,
                i.price + spread / 2.0,
                (i.price / i.open - 1.0) * 100.0,
                i.volume,
                now_ms(),
            );
            publish(&relay, &format!("ticker:{}", i.symbol), body.as_bytes()).await;
        }
        if n.is_multiple_of(15) {
            let i =
                &instruments[(rng.next() * instruments.len() as f64) as usize % instruments.len()];
            let side = if rng.next() < 0.5 { "BUY" } else { "SELL" };
            body.clear();
            let _ = write!(
                body,
                r#"{{"symbol":"{}","signal":"{side}","strength":{:.2},"confidence":{:.2},"model":"LSTM","price":{:.d$},"ts":{}}}"#,
                i.symbol,
                0.5 + rng.next() / 2.0,
                0.6 + rng.next() * 0.4,
                i.price,
                now_ms(),
                d = i.decimals,
            );
            publish(&relay, "signals", body.as_bytes()).await;
        }
        if n % 50 == 1 {
            let body = format!(
                r#"{{"crypto":"open","fx":"open","us_equities":"{}","ts":{}}}"#,
                if (n / 50) % 4 == 3 { "closed" } else { "open" },
                now_ms()
            );
            publish(&relay, "market_status", body.as_bytes()).await;
        }
    }
}

/// Publishes through the backplane when there is one (Redis assigns offsets), else
/// straight into the hub.
async fn publish(relay: &Relay, channel: &str, data: &[u8]) {
    if relay.sequenced_elsewhere() {
        let _ = relay.publish_many(&[(channel, data)]).await;
    } else {
        let _ = relay.publish(channel, data);
    }
}
