// The relay's dashboard: polls GET /stats once a second and draws it; with --demo, shows
// the simulated market through tickrelay.js. No dependencies, no build step.
import { TickRelay } from '/tickrelay.js';

const POLL_MS = 1000;
const HISTORY_POINTS = 300; // five minutes at one sample a second
const DEMO_SYMBOLS = ['BTC-USD', 'ETH-USD', 'SOL-USD', 'AAPL', 'MSFT', 'EURUSD'];

const root = document.documentElement.dataset;
const isPublic = root.public === 'true';
const isDemo = root.demo === 'true';
const $ = (id) => document.getElementById(id);

// ---- the credential: ?token= once (then dropped from the address bar), or the form ----
const STORE = 'tickrelay.dashboard.token';
let token = null;
{
  const params = new URLSearchParams(location.search);
  if (params.has('token')) {
    token = params.get('token');
    sessionStorage.setItem(STORE, token);
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : ''));
  } else {
    token = sessionStorage.getItem(STORE);
  }
}
$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  token = $('token').value.trim() || null;
  $('token').value = '';
  if (token) sessionStorage.setItem(STORE, token);
  poll();
});
$('logout').addEventListener('click', () => {
  token = null;
  sessionStorage.removeItem(STORE);
  samples.length = 0;
  poll();
});

// ---- formatting ----
const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
const fmtRate = (n) => (n > 0 && n < 10 ? n.toFixed(1) : fmtInt(n));
function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}
function fmtAge(s) {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h`;
}
function cell(tr, text, cls) {
  const td = tr.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

// ---- charts: one line per canvas, own code ----
function drawChart(canvas, values, color, fmt) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...values) * 1.15;
  g.strokeStyle = '#263240';
  g.fillStyle = '#7d8a99';
  g.font = '10px system-ui, sans-serif';
  g.lineWidth = 1;
  for (const f of [0.5, 1]) {
    const y = h - (h - 4) * f / 1.15;
    g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
    g.fillText(fmt((max / 1.15) * f), 2, y - 2);
  }
  if (values.length < 2) return;
  const step = w / (HISTORY_POINTS - 1);
  const x0 = w - step * (values.length - 1);
  g.beginPath();
  values.forEach((v, i) => {
    const x = x0 + i * step, y = h - (h - 4) * (v / max);
    if (i) g.lineTo(x, y); else g.moveTo(x, y);
  });
  g.strokeStyle = color;
  g.lineWidth = 1.5;
  g.stroke();
  g.lineTo(w, h); g.lineTo(x0, h); g.closePath();
  g.globalAlpha = 0.15; g.fillStyle = color; g.fill(); g.globalAlpha = 1;
}

const CHARTS = [
  { id: 'deliveries', color: '#58a6ff', fmt: fmtRate, rate: (a, b) => b.messages_out - a.messages_out },
  { id: 'bytes', color: '#a371f7', fmt: fmtBytes, rate: (a, b) => b.bytes_out - a.bytes_out },
  { id: 'publishes', color: '#3fb950', fmt: fmtRate, rate: (a, b) => b.messages_in - a.messages_in },
  { id: 'shed', color: '#d29922', fmt: fmtRate, rate: (a, b) => (b.conflated + b.dropped) - (a.conflated + a.dropped) },
];
const samples = []; // {t, stats}
const series = Object.fromEntries(CHARTS.map((c) => [c.id, []]));

function record(stats) {
  const t = performance.now();
  const prev = samples[samples.length - 1];
  samples.push({ t, stats });
  if (samples.length > 2) samples.shift();
  if (!prev || stats.uptime_s < prev.stats.uptime_s) return; // first sample, or a restart
  const dt = (t - prev.t) / 1000;
  for (const c of CHARTS) {
    const s = series[c.id];
    s.push(Math.max(0, c.rate(prev.stats, stats) / dt));
    if (s.length > HISTORY_POINTS) s.shift();
  }
}

function drawCharts() {
  for (const c of CHARTS) {
    const s = series[c.id];
    drawChart($(`chart-${c.id}`), s, c.color, c.fmt);
    $(`rate-${c.id}`).textContent = s.length ? c.fmt(s[s.length - 1]) : '';
  }
}

// ---- /stats ----
function show(el, on) { el.hidden = !on; }
function notice(text) {
  $('notice').textContent = text ?? '';
  show($('notice'), Boolean(text));
}
function status(text, cls) {
  $('status').textContent = text;
  $('status').className = `badge ${cls}`;
}

function render(stats, admin) {
  $('connections').textContent = fmtInt(stats.connections);
  $('subscriptions').textContent = fmtInt(stats.subscriptions);
  $('channels').textContent = fmtInt(stats.channels);
  $('queued').textContent = fmtBytes(stats.queued_bytes);
  $('slow_closes').textContent = fmtInt(stats.slow_consumer_closes);
  $('uptime').textContent = `up ${fmtAge(stats.uptime_s)}`;
  drawCharts();

  const busiest = $('busiest').tBodies[0];
  busiest.replaceChildren();
  for (const c of (stats.top_channels ?? []).slice(0, 12)) {
    const tr = busiest.insertRow();
    cell(tr, c.channel);
    cell(tr, fmtInt(c.subscribers), 'num');
  }

  show($('slowest-section'), admin);
  const slowest = $('slowest').tBodies[0];
  slowest.replaceChildren();
  for (const c of stats.slowest ?? []) {
    const tr = slowest.insertRow();
    tr.dataset.conn = c.conn;
    tr.dataset.address = c.address;
    tr.dataset.queued = c.queued_bytes;
    cell(tr, c.conn);
    cell(tr, c.dialect);
    cell(tr, c.address);
    cell(tr, fmtAge(c.age_s), 'num');
    cell(tr, fmtBytes(c.queued_bytes), 'num queued');
    cell(tr, `${fmtInt(c.lag_ms)} ms`, 'num');
    cell(tr, fmtInt(c.conflated), 'num');
    if (c.lag_ms >= 1000) tr.className = 'behind';
  }
}

let polling = null;
async function poll() {
  clearTimeout(polling);
  polling = setTimeout(poll, POLL_MS);
  show($('login'), !token);
  show($('logout'), Boolean(token));
  if (!token && !isPublic) {
    show($('main'), false);
    status('locked', 'warn');
    notice('This dashboard needs an admin credential: the publish key or a JWT with tickrelay_admin (or start the relay with --dashboard-public).');
    return;
  }
  let res;
  try {
    res = await fetch('/stats', { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
  } catch {
    status('unreachable', 'bad');
    return;
  }
  if (res.status === 401) {
    token = null;
    sessionStorage.removeItem(STORE);
    status('locked', 'warn');
    notice(`Credential refused: ${(await res.text()).trim()}`);
    show($('main'), false);
    return;
  }
  if (!res.ok) {
    status(`HTTP ${res.status}`, 'bad');
    return;
  }
  const stats = await res.json();
  const admin = Array.isArray(stats.slowest);
  if (!admin && !isPublic) {
    status('locked', 'warn');
    notice('That credential is not an admin one: use the publish key or a JWT with tickrelay_admin.');
    show($('main'), false);
    return;
  }
  notice(admin ? null : 'Public view: public channels only, no per-connection figures.');
  status(admin ? 'admin' : 'public', 'ok');
  show($('main'), true);
  record(stats);
  render(stats, admin);
}

// ---- the demo market, through tickrelay.js ----
function startDemo() {
  show($('prices-section'), true);
  const tbody = $('prices').tBodies[0];
  const rows = new Map();
  for (const sym of DEMO_SYMBOLS) {
    const tr = tbody.insertRow();
    tr.dataset.symbol = sym;
    cell(tr, sym);
    for (const cls of ['num price', 'num bid', 'num ask', 'num change', 'num offset']) cell(tr, '–', cls);
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = 'waiting';
    tr.insertCell().append(badge);
    rows.set(`ticker:${sym}`, { tr, badge, last: null });
  }
  const client = new TickRelay(undefined, { minDelayMs: 500, maxDelayMs: 10000 });
  client.on('state', (s) => { $('prices-state').textContent = s; });
  client.on('message', (m) => {
    const row = rows.get(m.channel);
    if (!row || typeof m.data !== 'object' || m.data === null) return;
    const d = m.data;
    const q = (cls) => row.tr.querySelector(`.${cls}`);
    q('price').textContent = String(d.price);
    q('bid').textContent = String(d.bid);
    q('ask').textContent = String(d.ask);
    q('change').textContent = typeof d.change_24h === 'number' ? `${d.change_24h.toFixed(2)}%` : '–';
    q('offset').textContent = String(m.offset);
    row.tr.className = row.last === null || d.price === row.last ? '' : d.price > row.last ? 'flash-up' : 'flash-down';
    row.last = d.price;
    if (!client.isStale(m.channel)) setBadge(row, 'live', 'ok');
  });
  client.on('stale', (n) => {
    const row = rows.get(n.channel);
    if (row) setBadge(row, n.stale ? `stale (${n.skipped} skipped)` : 'live', n.stale ? 'warn' : 'ok');
  });
  client.on('close', () => { for (const row of rows.values()) setBadge(row, 'offline', 'bad'); });
  client.subscribe([...rows.keys()]);
}
function setBadge(row, text, cls) {
  if (row.badge.textContent === text) return;
  row.badge.textContent = text;
  row.badge.className = `badge ${cls}`;
}

if (isDemo) startDemo();
poll();
