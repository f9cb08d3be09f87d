// Shared by the Node and Chromium tests: a loopback TCP proxy that can cut its sockets,
// HS256 tokens, publishing over HTTP, and a Chromium launched from Debian's package.
import net from 'node:net';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(what, pred, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A proxy on 127.0.0.1:0 to `target` ("host:port"): `cut()` destroys every open socket
 * pair (the relay sees the client vanish, the client sees its connection drop);
 * `refuse(true)` closes new connections at once until `refuse(false)`. */
export async function startProxy(target) {
  const [host, port] = target.split(':');
  const pairs = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) return client.destroy();
    const upstream = net.connect(Number(port), host);
    const pair = [client, upstream];
    pairs.add(pair);
    const drop = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    addr: `127.0.0.1:${server.address().port}`,
    cut() { const n = pairs.size; for (const [a, b] of [...pairs]) { a.destroy(); b.destroy(); } pairs.clear(); return n; },
    refuse(on) { refusing = on; },
    close() { this.cut(); server.close(); },
  };
}

/** A port nothing listens on (bound, then released). */
export async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const b64url = (b) => Buffer.from(b).toString('base64url');
export function hs256(secret, claims) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export async function publish(relay, key, channel, data) {
  const res = await fetch(`http://${relay}/publish/${encodeURIComponent(channel)}`, {
    method: 'POST', headers: { Authorization: `Bearer ${key}` }, body: JSON.stringify(data),
  });
  if (!res.ok) throw new Error(`publish ${res.status}: ${await res.text()}`);
  return (await res.json()).offset;
}

/** Debian's chromium, never a downloaded browser, with a fresh profile. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tickrelay-chromium-'));
  // Playwright takes the profile directory as an argument of its own, not as a flag.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async page() { return context.pages()[0] ?? context.newPage(); },
    async close() { await context.close(); fs.rmSync(profile, { recursive: true, force: true }); },
  };
}
