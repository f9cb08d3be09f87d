// The tickrelay.js scenarios, run unchanged in Node (tickrelay.mjs node) and in Chromium
// (tickrelay.mjs browser, where each function's source is evaluated in the page). Each
// takes `env` and must use nothing else: env.TickRelay, env.WebSocket (Node only),
// env.url (ws:// through the cutting proxy), env.deadUrl, env.key (publish key),
// env.cut(), env.refuse(on), env.publish(channel, data), env.token(ttlSeconds), env.tag.
// Each returns a summary the Rust test asserts on, and throws on what it can check itself.

/** Reconnect after the relay side drops the socket, three times while publishing goes on:
 * every offset arrives exactly once, in order, and each resubscribe says recovered. */
export async function recovery(env) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const waitFor = async (what, pred, ms = 15000) => {
    const end = Date.now() + ms;
    while (!pred()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(10); }
  };
  const ch = `signals:recovery-${env.tag}`;
  const client = new env.TickRelay(env.url, { WebSocket: env.WebSocket, token: env.key, minDelayMs: 20, maxDelayMs: 100 });
  const got = [];
  const subscribed = [];
  let reconnects = 0;
  let reloads = 0;
  client.on('message', (m) => { if (m.channel === ch) got.push(m.offset); });
  client.on('subscribed', (s) => subscribed.push(s.recovered));
  client.on('reconnecting', () => { reconnects++; });
  client.on('reload', () => { reloads++; });
  await waitFor('open', () => client.state === 'open');
  await client.subscribe([ch]);
  const N = 240;
  let published = 0;
  const publisher = (async () => {
    for (let i = 1; i <= N; i++) { await env.publish(ch, { i }); published = i; await sleep(2); }
  })();
  let cuts = 0;
  for (const at of [50, 110, 170]) {
    await waitFor(`publish ${at}`, () => published >= at);
    cuts += (await env.cut()) > 0 ? 1 : 0;
  }
  await publisher;
  await waitFor(`offset ${N}`, () => got.length > 0 && got[got.length - 1] === N);
  client.close();
  const dupes = got.length - new Set(got).size;
  const gaps = got.filter((o, i) => i > 0 && o !== got[i - 1] + 1).length;
  return { received: got.length, first: got[0], last: got[got.length - 1], dupes, gaps, cuts, reconnects, reloads, subscribed };
}

/** A gap larger than the history (100 messages): `recovered: false` and the reload callback. */
export async function reload(env) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const waitFor = async (what, pred, ms = 15000) => {
    const end = Date.now() + ms;
    while (!pred()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(10); }
  };
  const ch = `signals:reload-${env.tag}`;
  const reloads = [];
  const client = new env.TickRelay(env.url, {
    WebSocket: env.WebSocket, minDelayMs: 20, maxDelayMs: 100, onReload: (r) => reloads.push(r),
  });
  const got = [];
  client.on('message', (m) => { if (m.channel === ch) got.push(m.offset); });
  await waitFor('open', () => client.state === 'open');
  await client.subscribe([ch]);
  await env.publish(ch, { i: 1 });
  await waitFor('first message', () => got.length === 1);
  await env.refuse(true);
  await env.cut();
  for (let i = 2; i <= 160; i++) await env.publish(ch, { i });
  await env.refuse(false);
  await waitFor('reload', () => reloads.length === 1);
  // The snapshot after a failed recovery is the newest message.
  await waitFor('snapshot', () => got[got.length - 1] === 160);
  await env.publish(ch, { i: 161 });
  await waitFor('live again', () => got[got.length - 1] === 161);
  client.close();
  return { reloads: reloads.length, lostOffset: reloads[0].lost.offset, offset: reloads[0].offset, got };
}

/** Against a port nothing listens on: each delay within [min, min(max, min * 2^(n+1))],
 * jittered (not all the same) and growing to the cap. */
export async function backoff(env) {
  const waitFor = async (what, pred, ms = 20000) => {
    const end = Date.now() + ms;
    while (!pred()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await new Promise((r) => setTimeout(r, 10)); }
  };
  const min = 30, max = 240;
  const delays = [];
  const client = new env.TickRelay(env.deadUrl, { WebSocket: env.WebSocket, minDelayMs: min, maxDelayMs: max });
  client.on('reconnecting', (r) => delays.push(r));
  await waitFor('10 attempts', () => delays.length >= 10);
  client.close();
  const bad = delays.filter((d, i) => d.attempt !== i || d.delayMs < min || d.delayMs > Math.min(max, min * 2 ** (i + 1)));
  if (bad.length) throw new Error(`delays out of bounds: ${JSON.stringify(bad)}`);
  return { min, max, delays: delays.map((d) => d.delayMs), distinct: new Set(delays.map((d) => d.delayMs)).size };
}

/** A JWT that expires without refresh: close 4001, and no reconnect after it. A token
 * callback with refresh keeps its connection open past several expiries. */
export async function expiry(env) {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const waitFor = async (what, pred, ms = 15000) => {
    const end = Date.now() + ms;
    while (!pred()) { if (Date.now() > end) throw new Error(`timed out: ${what}`); await sleep(10); }
  };
  const fixed = await env.token(2);
  const stuck = new env.TickRelay(env.url, { WebSocket: env.WebSocket, token: fixed, minDelayMs: 20, maxDelayMs: 100 });
  const closes = [];
  let reconnects = 0;
  stuck.on('close', (c) => closes.push(c));
  stuck.on('reconnecting', () => { reconnects++; });

  let issued = 0;
  const fresh = new env.TickRelay(env.url, {
    WebSocket: env.WebSocket, refreshBeforeMs: 1500, minDelayMs: 20, maxDelayMs: 100,
    token: async () => { issued++; return env.token(3); },
  });
  let authenticated = 0;
  const freshCloses = [];
  fresh.on('authenticated', () => { authenticated++; });
  fresh.on('close', (c) => freshCloses.push(c.code));

  await waitFor('4001', () => closes.length === 1, 8000);
  await sleep(1500);
  const stuckState = stuck.state;
  await waitFor('three refreshes', () => authenticated >= 4, 10000);
  const freshState = fresh.state;
  const closedBefore = [...freshCloses];
  fresh.close();
  return { close: closes[0], reconnects, stuckState, issued, authenticated, freshCloses: closedBefore, freshState };
}
