// The Centrifuge SDK cases against tickrelay, run unchanged in Node (node.mjs) and in
// headless Chromium (browser.mjs loads it into page.html). `base` is the test's control
// server (tests/centrifuge.rs): it tells the WebSocket address (a loopback proxy in front
// of the relay), mints tokens, publishes with POST /publish, cuts the proxied sockets and
// restarts the relay. Every case throws on a wrong answer; `log` reports progress.

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

export async function run(Centrifuge, base, extra, log) {
  const cfg = await (await fetch(base + '/config')).json();
  const token = async (sub, ttl) => (await fetch(`${base}/token?sub=${sub}&ttl=${ttl}`)).text();
  const post = async (path, body) => {
    const r = await fetch(base + path, { method: 'POST', body: body || '' });
    const text = await r.text();
    check(r.ok, `POST ${path}: ${r.status} ${text}`);
    return text;
  };
  const publish = (channel, raw) => post('/publish/' + encodeURIComponent(channel), raw);
  const options = (more) => ({ ...extra, minReconnectDelay: 100, maxReconnectDelay: 1000, ...more });

  // 1. connect, subscribe, publications equal to the published data (a raw line feed in
  //    the publisher's JSON included), a denied private channel, unsubscribe.
  const c = new Centrifuge(cfg.ws, options({ token: await token('alice', 3600) }));
  let connects = 0;
  c.on('connected', () => connects++);
  c.connect();
  await c.ready(5000);
  log('connected');

  const sub = c.newSubscription('signals:BASIC');
  const got = [];
  sub.on('publication', (ctx) => got.push(ctx.data));
  sub.subscribe();
  await sub.ready(5000);
  const sent = ['{"i":1,"p":43250.5}', '{"s":"two\\nlines","a":[1,2]}', '{\n  "pretty": true\n}', '"plain"'];
  for (const raw of sent) await publish('signals:BASIC', raw);
  await waitFor(() => got.length === sent.length, 'the basic publications');
  check(JSON.stringify(got) === JSON.stringify(sent.map((s) => JSON.parse(s))),
    'publications equal the published data: ' + JSON.stringify(got));
  log('publications ' + got.length + ' equal');

  const denied = c.newSubscription('chat#bob');
  let deniedCode = null;
  denied.on('unsubscribed', (ctx) => { deniedCode = ctx.code; });
  denied.subscribe();
  await waitFor(() => deniedCode !== null, 'the denial of chat#bob');
  check(deniedCode === 103, 'a private channel of another user is denied with 103, got ' + deniedCode);
  const own = c.newSubscription('chat#alice');
  own.subscribe();
  await own.ready(5000);
  log('denied 103');

  let unsubscribed = false;
  sub.on('unsubscribed', () => { unsubscribed = true; });
  sub.unsubscribe();
  await waitFor(() => unsubscribed, 'unsubscribed');
  await publish('signals:BASIC', '{"after":"unsubscribe"}');
  await sleep(300);
  check(got.length === sent.length, 'nothing arrives after unsubscribe');
  check(connects === 1, 'one connection so far, got ' + connects);
  log('unsubscribed');

  // 2. recovery across severed connections while publishing goes on.
  const rec = c.newSubscription('signals:REC');
  const seen = [];
  const subscribed = [];
  rec.on('subscribed', (ctx) => subscribed.push(ctx));
  rec.on('publication', (ctx) => seen.push(ctx.data.n));
  rec.subscribe();
  await rec.ready(5000);
  const N = 60;
  for (let n = 1; n <= N; n++) {
    await publish('signals:REC', JSON.stringify({ n }));
    if (n === 15 || n === 35) await post('/cut');
    await sleep(25);
  }
  await waitFor(() => seen.length >= N, 'every publication after the cuts', 20000);
  await sleep(200);
  const want = Array.from({ length: N }, (_, i) => i + 1);
  check(JSON.stringify(seen) === JSON.stringify(want), 'every publication once, in order: ' + JSON.stringify(seen));
  const again = subscribed.slice(1);
  check(again.length >= 2, 'resubscribed after each cut: ' + subscribed.length);
  check(again.every((s) => s.wasRecovering && s.recovered), 'recovered:true ' + JSON.stringify(again));
  check(again.some((s) => s.hasRecoveredPublications), 'some publications came in a recovery');
  log(`recovered ${again.length} times, ${seen.length} publications in order`);

  // 3. a relay restart: a new epoch, so recovered:false.
  const before = subscribed.length;
  await post('/restart');
  await waitFor(() => subscribed.length > before, 'the resubscribe after the restart', 20000);
  const last = subscribed[subscribed.length - 1];
  check(last.wasRecovering && !last.recovered, 'after a restart recovered:false ' + JSON.stringify(last));
  await publish('signals:REC', '{"n":"after restart"}');
  await waitFor(() => seen[seen.length - 1] === 'after restart', 'a publication after the restart');
  log('restart: recovered false');
  c.disconnect();

  // 4. token expiry -> refresh -> the subscription goes on.
  let refreshes = 0;
  const t = new Centrifuge(cfg.ws, options({
    token: await token('carol', 3),
    getToken: async () => { refreshes++; return token('carol', 3); },
  }));
  let tConnects = 0;
  t.on('connected', () => tConnects++);
  t.connect();
  await t.ready(5000);
  const ts = t.newSubscription('chat#carol');
  const tGot = [];
  ts.on('publication', (ctx) => tGot.push(ctx.data));
  ts.subscribe();
  await ts.ready(5000);
  await sleep(5500); // past the first token's exp and the relay's leeway
  await publish('chat#carol', '{"still":"here"}');
  await waitFor(() => tGot.length === 1, 'a publication after the first token expired');
  check(refreshes >= 1, 'the SDK refreshed its token');
  check(tConnects === 1, 'no reconnect for the refresh, got ' + tConnects);
  log(`refreshed ${refreshes} times, subscription continued`);
  t.disconnect();
  return 'ALL CASES PASSED';
}
