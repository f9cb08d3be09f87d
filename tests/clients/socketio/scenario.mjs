// The socket.io-client cases against tickrelay, run unchanged in Node (node.mjs) and in
// headless Chromium (browser.mjs loads it into page.html). `base` is the test's control
// server (tests/socketio.rs): it tells the relay's address (a loopback proxy that can cut
// every socket), publishes with POST /publish and cuts the proxied sockets. `options` are
// the io() options of the mode under test; `expectWs`: the transport must end as
// websocket. Every case throws on a wrong answer; `log` reports progress.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what) {
  if (!cond) throw new Error('FAILED: ' + what);
}

async function waitFor(pred, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(20);
  }
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export async function run(io, base, options, log) {
  const cfg = await (await fetch(base + '/config')).json();
  const publish = async (channel, data) => {
    const r = await fetch(base + '/publish/' + encodeURIComponent(channel), {
      method: 'POST', body: JSON.stringify(data),
    });
    check(r.ok, `publish ${channel}: ${r.status} ${await r.text()}`);
  };

  // 1. connect: connection_status first, then (default options) the upgrade.
  const s = io(cfg.url, options);
  let upgrades = 0, firstTransport = null;
  s.io.on('open', () => {
    firstTransport = firstTransport || s.io.engine.transport.name;
    s.io.engine.on('upgrade', () => upgrades++);
  });
  const events = {};
  s.onAny((name, arg) => (events[name] = events[name] || []).push(arg));
  let connects = 0, disconnects = [];
  s.on('connect', () => connects++);
  s.on('disconnect', (reason) => disconnects.push(reason));
  await waitFor(() => connects === 1, 'connect');
  check(typeof s.id === 'string' && s.id.length > 0, 'a socket id');
  await waitFor(() => events.connection_status, 'connection_status');
  check(events.connection_status[0].status === 'connected', 'status connected');
  if (options.expectWs) {
    await waitFor(() => s.io.engine.transport.name === 'websocket', 'the upgrade to websocket');
  }
  if (!options.transports) {
    check(firstTransport === 'polling' && upgrades === 1, `polling, then one upgrade: ${firstTransport}, ${upgrades}`);
    log('upgraded from polling');
  }
  log('connected over ' + s.io.engine.transport.name);

  // 2. subscribe both ways: the real client's {"symbols":[..]} and a list with an ack.
  s.emit('subscribe', { symbols: ['BTC', 'ETH'] });
  await waitFor(() => events.subscription_confirmed, 'subscription_confirmed');
  check(same(events.subscription_confirmed[0].symbols, ['BTC', 'ETH']), 'confirmed BTC, ETH');
  const ack = await s.timeout(5000).emitWithAck('subscribe', ['ADA']);
  check(same(ack.symbols, ['ADA']), 'the ack carries ADA: ' + JSON.stringify(ack));
  const pong = await s.timeout(5000).emitWithAck('ping');
  check(same(pong, {}), 'ping acked');
  log('subscribed both ways, ack round trip');

  // 3. events equal the published data.
  const tick = { symbol: 'BTC', price: 45234.56, change_24h: 2.45, volume_24h: 28500000, timestamp: '2024-01-15T10:30:00.000Z' };
  await publish('ticker:BTC', tick);
  await waitFor(() => events.market_update, 'market_update');
  check(same(events.market_update[0], { BTC: tick }), 'market_update equals: ' + JSON.stringify(events.market_update[0]));
  const signal = { symbol: 'BTC', signal: 'BUY', strength: 0.85, reason: 'Strong momentum detected', timestamp: '2024-01-15T10:30:00.000Z' };
  await publish('signals', signal);
  await waitFor(() => events.trading_signal, 'trading_signal');
  check(same(events.trading_signal[0], signal), 'trading_signal equals');
  const mood = { overall_sentiment: 'BULLISH', market_fear_greed: 72, market_mood: 'BULLISH', confidence: 0.85, trending_topics: ['bitcoin'], timestamp: '2024-01-15T10:30:00.000Z' };
  await publish('sentiment', mood);
  await waitFor(() => events.sentiment_update, 'sentiment_update');
  check(same(events.sentiment_update[0], mood), 'sentiment_update equals');
  log('market_update, trading_signal, sentiment_update equal the published data');

  // 4. the last value right after a subscribe; unsubscribe stops the flow.
  await publish('ticker:SOL', { symbol: 'SOL', price: 101 });
  s.emit('subscribe', 'SOL');
  await waitFor(() => (events.market_update || []).some((m) => m.SOL), 'the last value of SOL');
  const un = await s.timeout(5000).emitWithAck('unsubscribe', { symbols: ['ADA'] });
  check(same(un.symbols, ['ADA']), 'unsubscribed ADA');
  await publish('ticker:ADA', { symbol: 'ADA', price: 1 });
  await sleep(300);
  check(!(events.market_update || []).some((m) => m.ADA), 'no ADA after unsubscribe');
  check(!events.error, 'no error events: ' + JSON.stringify(events.error));
  log('last value after subscribe, unsubscribe');

  // 5. three ping intervals pass with the connection up.
  let pings = 0;
  s.io.engine.on('ping', () => pings++);
  await sleep(cfg.heartbeat_ms * 3 + 300);
  check(pings >= 3 && disconnects.length === 0, `survived ${pings} pings, disconnects ${disconnects}`);
  log('survived ' + pings + ' ping intervals');

  // 6. the relay drops every socket: the client reconnects and subscribes again.
  const cut = await (await fetch(base + '/cut', { method: 'POST' })).text();
  check(Number(cut) >= 1, 'a socket was cut');
  await waitFor(() => connects === 2, 'the reconnect', 15000);
  check(disconnects.length === 1 && disconnects[0].startsWith('transport'), 'dropped: ' + disconnects);
  events.market_update = [];
  await s.timeout(5000).emitWithAck('subscribe', ['BTC']);
  await publish('ticker:BTC', { symbol: 'BTC', price: 1 });
  await waitFor(() => events.market_update.some((m) => m.BTC && m.BTC.price === 1), 'BTC after the reconnect');
  if (options.expectWs) {
    await waitFor(() => s.io.engine.transport.name === 'websocket', 'the upgrade after the reconnect');
  }
  log('reconnected after the relay dropped the connection');
  s.disconnect();

  // 7. a namespace the relay does not serve: connect_error.
  const other = io(cfg.url + '/admin', options);
  const err = await new Promise((resolve) => other.on('connect_error', resolve));
  check(err.message === 'Invalid namespace', 'connect_error: ' + err.message);
  other.close();
  log('wrong namespace: connect_error ' + err.message);
  return 'ALL CASES PASSED';
}
