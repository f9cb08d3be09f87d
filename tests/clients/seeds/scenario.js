// The seed platforms' front-end usage of the browser WebSocket API, run unchanged in
// headless Chromium (browser.mjs) and in Node with `ws` (node.mjs). A plain script: it
// defines globalThis.seedScenarios(WebSocket, seedBase, publish, log) and resolves
// with the names of the cases that passed (throws on the first failure).
globalThis.seedScenarios = async function (WS, base, publish, log) {
  const ODD = '{"z":1.50, "a" : "\\u00e9\\"q\\n",\n  "n":{"y":[1,2.0e3]}}';
  const passed = [];
  const ok = (c, what) => { if (!c) throw new Error('failed: ' + what); };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // A socket with a queue of raw text frames, read in order.
  function open(url, onOpen) {
    const ws = new WS(url);
    const frames = [];
    let wake = null;
    ws.onmessage = (e) => { frames.push(String(e.data)); if (wake) { wake(); wake = null; } };
    ws.onopen = () => onOpen && onOpen(ws);
    return {
      ws,
      async next(ms = 5000) {
        const end = Date.now() + ms;
        while (frames.length === 0) {
          if (Date.now() > end) throw new Error('no frame from ' + url);
          await new Promise((r) => { wake = r; setTimeout(r, 50); });
        }
        return frames.shift();
      },
      async json(ms) { return JSON.parse(await this.next(ms)); },
      async silent(ms) { await sleep(ms); return frames.length === 0; },
      send(obj) { ws.send(JSON.stringify(obj)); },
      close() { ws.close(); },
    };
  }
  const members = ODD.slice(ODD.indexOf('{') + 1);

  // AI-Trading-V2: `new WebSocket('ws://localhost:8000/api/ws/realtime')`; the hook
  // sends subscribe_ticker and get_positions + get_portfolio on open.
  {
    const s = open(base + '/api/ws/realtime', (ws) => {
      ws.send(JSON.stringify({ action: 'subscribe_ticker', symbol: 'BTCUSDT' }));
      ws.send(JSON.stringify({ action: 'get_positions' }));
      ws.send(JSON.stringify({ action: 'get_portfolio' }));
    });
    const hello = await s.json();
    ok(hello.type === 'connection' && hello.status === 'connected', 'aitrading connection');
    const ack = await s.json();
    ok(ack.type === 'subscription' && ack.status === 'success' && ack.symbol === 'BTCUSDT'
      && ack.message === 'Subscribed to BTCUSDT', 'aitrading ack ' + JSON.stringify(ack));
    const pos = await s.json();
    ok(pos.type === 'POSITION_UPDATE' && pos.positions.length === 0, 'aitrading empty positions');
    await publish('ticker:BTCUSDT', ODD);
    const raw = await s.next();
    const m = JSON.parse(raw);
    ok(m.type === 'MARKET_UPDATE' && m.symbol === 'BTCUSDT' && Number.isInteger(m.timestamp), 'aitrading MARKET_UPDATE');
    ok(raw.endsWith(members), 'aitrading data verbatim: ' + raw);
    s.send({ action: 'nope' });
    ok((await s.json()).message === 'Unknown action: nope', 'aitrading error');
    s.close();
    passed.push('aitrading');
  }

  // Legend AI: WebSocketClient({userId}) opens /api/ws?user_id=..; subscribe('ticker',
  // 'AAPL') etc.; a {"type":"ping"} heartbeat.
  {
    for (let i = 1; i <= 3; i++) await publish('ticker:AAPL', `{"price":${i}.50,"i":${i}}`);
    const s = open(base + '/api/ws?user_id=user123', (ws) => {
      ws.send(JSON.stringify({ type: 'subscribe', channel: 'ticker', ticker: 'AAPL' }));
      for (const c of ['patterns', 'alerts', 'market_status']) ws.send(JSON.stringify({ type: 'subscribe', channel: c }));
    });
    const hello = await s.json();
    ok(hello.type === 'connection' && hello.connection_id.startsWith('user123_'), 'legend connection ' + JSON.stringify(hello));
    const ack = await s.json();
    ok(ack.type === 'subscription' && ack.action === 'subscribed' && ack.ticker === 'AAPL', 'legend ack');
    const h = await s.json();
    ok(h.type === 'history' && h.messages.map((m) => m.i).join() === '1,2,3', 'legend history ' + JSON.stringify(h));
    for (const c of ['patterns', 'alerts', 'market_status']) {
      const a = await s.json();
      ok(a.action === 'subscribed' && a.channel === c, 'legend ack ' + c);
    }
    await publish('ticker:AAPL', ODD);
    const raw = await s.next();
    ok(raw.startsWith('{"type":"price_update","ticker":"AAPL","timestamp":"') && raw.endsWith(members), 'legend price_update verbatim: ' + raw);
    await publish('patterns', '{"ticker":"NVDA","pattern_type":"VCP","score":8.5}');
    const p = await s.json();
    ok(p.type === 'pattern_alert' && p.pattern_type === 'VCP', 'legend pattern_alert');
    s.send({ type: 'ping' });
    ok((await s.json()).type === 'pong', 'legend pong');
    s.close();
    passed.push('legend');
  }

  // ARIA PRO: useWebSocket() opens ws://host:8000/ws and receives everything; a
  // {"type":"ping"} every 30 s.
  {
    const s = open(base + '/ws');
    const hello = await s.json();
    ok(hello.type === 'connection' && hello.subscriptions[0] === 'all', 'aria connection');
    await publish('ticker:EURUSD', ODD);
    const raw = await s.next();
    const t = JSON.parse(raw);
    ok(t.type === 'tick' && raw === `{"type":"tick","timestamp":"${t.timestamp}","data":${ODD}}`, 'aria tick verbatim: ' + raw);
    for (let i = 0; i < 20; i++) await publish('signals:EURUSD', `{"n":${i}}`);
    const seen = [];
    for (let i = 0; i < 20; i++) seen.push((await s.json()).data.n);
    ok(seen.join() === [...Array(20).keys()].join(), 'aria signals in order, no duplicate: ' + seen);
    ok(await s.silent(200), 'aria nothing more');
    s.ws.send(JSON.stringify({ type: 'ping' }));
    ok((await s.json()).type === 'pong', 'aria pong');
    s.close();
    passed.push('aria');
  }
  // Sentio 2.0: each hook opens its endpoint and sends the identity as its first frame
  // (the relay runs with sentio_trust_user_id, as the platform's upstream trusts it).
  {
    const first = (obj) => (ws) => ws.send(JSON.stringify(obj));
    const e = open(base + '/ws/earnings', first({ action: 'subscribe', user_id: 'user_001' }));
    const t = open(base + '/ws/trade-signals', first({ action: 'subscribe', symbols: ['AAPL'], user_id: 'user_001' }));
    const a = open(base + '/ws/admin', first({ action: 'subscribe', admin_token: 'admin-token' }));
    for (const s of [e, t, a]) {
      await new Promise((r) => { const w = () => (s.ws.readyState === 1 ? r() : setTimeout(w, 20)); w(); });
      s.send({ action: 'ping' });
      ok((await s.json()).type === 'pong', 'sentio pong');
    }
    await publish('earnings:user_001', ODD);
    const raw = await e.next();
    const m = JSON.parse(raw);
    ok(m.type === 'earnings' && raw === `{"type":"earnings","data":${ODD},"timestamp":"${m.timestamp}"}`, 'sentio earnings verbatim: ' + raw);
    await publish('signals:AAPL', '{"symbol":"AAPL","signal":"BUY","confidence":0.87}');
    const sig = await t.json();
    ok(sig.type === 'trade_signals' && sig.data[0].signal === 'BUY', 'sentio trade_signals array');
    await publish('admin:users', '{"active":3}');
    const ad = await a.json();
    ok(ad.type === 'admin_users' && ad.data.active === 3, 'sentio admin_ prefix');
    const bad = open(base + '/ws/earnings', first({ action: 'subscribe' }));
    const code = await new Promise((r) => { bad.ws.onclose = (ev) => r(ev.code + ' ' + ev.reason); });
    ok(code === '1008 user_id required', 'sentio 1008: ' + code);
    for (const s of [e, t, a]) s.close();
    passed.push('sentio');
  }
  log('cases passed: ' + passed.join(' '));
  return passed;
};
