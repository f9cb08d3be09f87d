// tickrelay.js against a real relay, in Node or in headless Chromium:
//   node tickrelay.mjs node|browser <relay host:port> <publish key> <jwt secret>
// Runs every scenario of scenarios.mjs and prints one JSON line: {scenario: summary, ...}.
// Node loads clients/js/tickrelay.js from the repo; the page loads /tickrelay.js from the
// relay, so both the kept file and the served copy are the ones tested.
import WebSocket from 'ws';
import * as scenarios from './scenarios.mjs';
import { deadPort, hs256, launchChromium, publish, startProxy } from './common.mjs';

const [mode, relay, key, secret] = process.argv.slice(2);
const proxy = await startProxy(relay);
const env = {
  url: `ws://${proxy.addr}/ws`,
  deadUrl: `ws://127.0.0.1:${await deadPort()}/ws`,
  key,
  tag: `${mode}-${process.pid}`,
  cut: async () => proxy.cut(),
  refuse: async (on) => proxy.refuse(on),
  publish: (channel, data) => publish(relay, key, channel, data),
  token: async (ttl) => hs256(secret, { sub: 'js', exp: Math.floor(Date.now() / 1000) + ttl }),
};

const results = {};
if (mode === 'node') {
  const { TickRelay } = await import('../../../clients/js/tickrelay.js');
  for (const [name, run] of Object.entries(scenarios)) {
    results[name] = await run({ ...env, TickRelay, WebSocket });
  }
} else {
  const chromium = await launchChromium();
  try {
    const page = await chromium.page();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`); });
    for (const name of ['cut', 'refuse', 'publish', 'token']) await page.exposeFunction(`env_${name}`, env[name]);
    await page.goto(`http://${relay}/health`);
    for (const [name, run] of Object.entries(scenarios)) {
      results[name] = await page.evaluate(`(async () => {
        const { TickRelay } = await import('/tickrelay.js');
        const env = { TickRelay, url: ${JSON.stringify(env.url)}, deadUrl: ${JSON.stringify(env.deadUrl)},
          key: ${JSON.stringify(key)}, tag: ${JSON.stringify(env.tag)},
          cut: env_cut, refuse: env_refuse, publish: env_publish, token: env_token };
        return (${run.toString()})(env);
      })()`);
    }
    // Connection-refused noise from the backoff scenario is the browser's, not ours.
    results.console_errors = errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket connection to/.test(e));
  } finally {
    await chromium.close();
  }
}
proxy.close();
console.log(JSON.stringify(results));
process.exit(0);
