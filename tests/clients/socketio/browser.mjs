// socket.io-client's own browser bundle in headless Debian Chromium, driven by
// playwright-core (no downloaded browser): opens the control server's page (another origin
// than the relay's), which loads the bundle and runs scenario.mjs with the default options.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.argv[2];
const profile = mkdtempSync(join(tmpdir(), 'tickrelay-chromium-'));
let code = 1;
// A fresh profile (--user-data-dir), which playwright passes itself.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.log(m.text()));
  page.on('pageerror', (e) => console.error('browser page error: ' + e));
  await page.goto(base + '/');
  await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 120000 });
  const result = await page.evaluate(() => window.__result);
  console.log('browser: ' + result.text);
  code = result.ok ? 0 : 1;
} catch (e) {
  console.error('browser: ' + (e && e.stack ? e.stack : e));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
