// The seed front ends' WebSocket usage in headless Debian Chromium (playwright-core,
// never a downloaded browser): the page's own WebSocket, publishing done from Node.
// Usage: node browser.mjs <seed listener host:port> <main host:port> <publish key>
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publisher } from './publish.mjs';

const [seeds, main, key] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), 'tickrelay-chromium-'));
let code = 1;
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (m) => console.log('page: ' + m.text()));
  page.on('pageerror', (e) => console.error('page error: ' + e));
  await page.exposeFunction('publishRaw', publisher(main, key));
  await page.addScriptTag({ content: readFileSync(new URL('./scenario.js', import.meta.url), 'utf8') });
  const ua = await page.evaluate(() => navigator.userAgent);
  console.log('browser: ' + ua);
  const passed = await page.evaluate((base) => globalThis.seedScenarios(
    WebSocket, base, (c, d) => window.publishRaw(c, d), console.log), `ws://${seeds}`);
  console.log('browser cases: ' + passed.join(' '));
  console.log('ALL CASES PASSED');
  code = 0;
} catch (e) {
  console.error('browser: ' + (e && e.stack ? e.stack : e));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
