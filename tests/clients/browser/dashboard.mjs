// The dashboard in headless Chromium against a real relay started with --demo:
//   node dashboard.mjs <relay host:port> <publish key> <stalled client's port> <screenshot.png>
// Checks: no console error; demo prices update; the connection count follows test
// clients connecting and leaving; the stalled client (opened by tests/dashboard.rs: tiny
// receive buffer, never reads) is among the slowest consumers with growing queued bytes.
// Prints one JSON line with what it saw.
import WebSocket from 'ws';
import { launchChromium, sleep, waitFor } from './common.mjs';

const [relay, key, stalledPort, shot] = process.argv.slice(2);
const chromium = await launchChromium();
const out = {};
try {
  const page = await chromium.page();
  await page.setViewportSize({ width: 1280, height: 1000 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });

  // Locked without a credential.
  await page.goto(`http://${relay}/dashboard`);
  await waitFor('locked', async () => (await page.textContent('#status')) === 'locked');
  out.locked_main_hidden = await page.isHidden('#main');

  // `/` redirects, `?token=` unlocks and leaves the address bar.
  await page.goto(`http://${relay}/?token=${encodeURIComponent(key)}`);
  await waitFor('admin view', async () => (await page.textContent('#status')) === 'admin');
  out.url_after_login = page.url();

  // Demo prices arrive and move.
  const offset = (sym) => page.textContent(`#prices tr[data-symbol="${sym}"] .offset`);
  await waitFor('a BTC price', async () => /^\d+$/.test(await offset('BTC-USD')));
  const first = Number(await offset('BTC-USD'));
  const firstPrice = await page.textContent('#prices tr[data-symbol="BTC-USD"] .price');
  await waitFor('BTC to tick', async () => Number(await offset('BTC-USD')) >= first + 3);
  out.btc = { first, later: Number(await offset('BTC-USD')), firstPrice,
    laterPrice: await page.textContent('#prices tr[data-symbol="BTC-USD"] .price') };
  out.badges = await page.$$eval('#prices .badge', (b) => b.map((x) => x.textContent));

  // The connection count follows clients connecting and leaving.
  const count = async () => Number((await page.textContent('#connections')).replace(/,/g, ''));
  await waitFor('a connection count', async () => !Number.isNaN(await count()) && (await count()) > 0);
  const before = await count();
  const clients = await Promise.all(Array.from({ length: 5 }, () => new Promise((res, rej) => {
    const ws = new WebSocket(`ws://${relay}/ws?channels=ticker:AAPL`);
    ws.on('open', () => res(ws)).on('error', rej);
  })));
  await waitFor('5 more connections', async () => (await count()) >= before + 5);
  const during = await count();
  for (const ws of clients) ws.close();
  await waitFor(`them gone (before ${before}, during ${during})`, async () => (await count()) <= during - 5);
  out.connections = { before, during, after: await count() };

  // The stalled client among the slowest consumers, its queued bytes growing.
  const row = `#slowest tr[data-address="127.0.0.1:${stalledPort}"]`;
  const queued = async () => Number(await page.getAttribute(row, 'data-queued'));
  await waitFor('the stalled client listed', async () => (await page.$(row)) !== null && (await queued()) > 0);
  const q1 = await queued();
  await waitFor('its queue to grow', async () => (await queued()) > q1 + 64 * 1024);
  out.stalled = { q1, q2: await queued(), rank: await page.$$eval('#slowest tbody tr', (rows, port) =>
    rows.findIndex((r) => r.dataset.address === `127.0.0.1:${port}`), stalledPort) };

  // A few more seconds of charts for the record.
  await sleep(2500);
  out.rates = Object.fromEntries(await Promise.all(['deliveries', 'bytes', 'publishes', 'shed']
    .map(async (id) => [id, await page.textContent(`#rate-${id}`)])));
  await page.screenshot({ path: shot, fullPage: true });
  out.console_errors = errors;
} finally {
  await chromium.close();
}
console.log(JSON.stringify(out));
process.exit(0);
