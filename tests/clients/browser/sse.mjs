// The browser's own EventSource against GET /sse, through a proxy the test cuts:
//   node sse.mjs <relay host:port> <publish key>
// Prints one JSON line: the offsets received in order, the `recovered` flag of each
// `subscribed` event, how many times the stream opened, and console errors.
import { launchChromium, publish, sleep, startProxy, waitFor } from './common.mjs';

const [relay, key] = process.argv.slice(2);
const channel = `signals:sse-${process.pid}`;
const proxy = await startProxy(relay);
const chromium = await launchChromium();
const errors = [];
let result;
try {
  const page = await chromium.page();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  // Same origin as the stream: the page is served through the proxy too.
  await page.goto(`http://${proxy.addr}/health`);
  await page.evaluate((ch) => {
    window.got = [];
    window.subs = [];
    window.opens = 0;
    const es = new EventSource(`/sse?channels=${encodeURIComponent(ch)}`);
    es.onopen = () => { window.opens += 1; };
    es.onmessage = (e) => { window.got.push(JSON.parse(e.data).offset); };
    es.addEventListener('subscribed', (e) => {
      window.subs.push(JSON.parse(e.data).channels[0].recovered ?? null);
    });
  }, channel);
  const count = () => page.evaluate(() => window.got.length);
  await waitFor('the first subscribed event', () => page.evaluate(() => window.subs.length === 1));
  for (let i = 1; i <= 10; i++) await publish(relay, key, channel, { i });
  await waitFor('10 messages', async () => (await count()) === 10);
  // Cut the stream and publish while the browser is away (it waits ~3 s to reconnect).
  proxy.cut();
  for (let i = 11; i <= 20; i++) await publish(relay, key, channel, { i });
  await waitFor('the reconnect with Last-Event-ID', () => page.evaluate(() => window.subs.length === 2), 20000);
  await waitFor('the 10 missed messages', async () => (await count()) === 20);
  for (let i = 21; i <= 25; i++) await publish(relay, key, channel, { i });
  await waitFor('live messages after the recovery', async () => (await count()) === 25);
  await sleep(200); // a duplicate would arrive now
  result = await page.evaluate(() => ({ offsets: window.got, recovered: window.subs, opens: window.opens }));
} finally {
  await chromium.close();
  proxy.close();
}
// The cut stream's own error is the browser's report of the cut, not a page error.
result.console_errors = errors.filter((e) => !/ERR_|EventSource/.test(e));
console.log(JSON.stringify(result));
process.exit(0);
