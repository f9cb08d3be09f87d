// tickrelay.js: a dependency-free client for tickrelay's protocol v1 (docs/protocol.md).
// Served by the relay at GET /tickrelay.js; works in browsers and in Node (pass the
// `ws` package's WebSocket as `options.WebSocket` where there is no global one).
//
//   import { TickRelay } from '/tickrelay.js';
//   const relay = new TickRelay('ws://127.0.0.1:8080/ws', { token: () => fetchToken() });
//   relay.on('message', (m) => console.log(m.channel, m.offset, m.data));
//   relay.subscribe(['ticker:BTC-USD'], { maxRate: 10 });
//
// What it does for you: reconnects with exponential backoff and full jitter, resubscribes
// every channel after each reconnect asking to recover from the last offset it saw (same
// epoch), reports `recovered` per channel and calls `onReload` when the relay could not
// replay the gap, refreshes a JWT with the `auth` op before its `exp`, turns the
// `lagging` / `caught_up` notices into a per-channel stale flag, and stops for good on
// close codes 1008 (policy) and 4001 (auth) instead of reconnecting in a loop.

/** Close codes after which reconnecting as before would only repeat the failure. */
export const FINAL_CLOSE_CODES = Object.freeze([1008, 4001]);

const DEFAULTS = {
  minDelayMs: 500,
  maxDelayMs: 30000,
  refreshBeforeMs: 30000,
  connectTimeoutMs: 10000,
};

/** The `exp` claim of a JWT in ms since the epoch, or null (not a JWT, or no exp). */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const json = typeof atob === 'function'
      ? atob(padded)
      : globalThis.Buffer.from(padded, 'base64').toString('binary');
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): exponential backoff with
 * full jitter, a uniform draw from [minDelayMs, min(maxDelayMs, minDelayMs * 2^(attempt+1))],
 * so every delay stays within the configured bounds and clients that lost the same relay
 * spread out instead of returning together.
 */
export function backoffDelay(attempt, minDelayMs, maxDelayMs, random = Math.random) {
  const ceiling = Math.min(maxDelayMs, minDelayMs * 2 ** Math.min(attempt + 1, 30));
  return Math.round(minDelayMs + random() * Math.max(0, ceiling - minDelayMs));
}

export class TickRelay {
  /**
   * @param {string} url ws:// or wss:// URL of /ws (default: /ws of the page's origin)
   * @param {object} options see tickrelay.d.ts
   */
  constructor(url, options = {}) {
    this.options = { ...DEFAULTS, ...options };
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket: pass options.WebSocket (e.g. the ws package in Node)');
    }
    this._WS = WS;
    this.url = url ?? defaultUrl();
    this._random = this.options.random ?? Math.random;
    /** channel -> {epoch, offset, maxRate, stale, recovered} */
    this._channels = new Map();
    this._handlers = new Map();
    this._pending = new Map();
    this._nextId = 1;
    this._attempt = 0;
    this._closed = false;
    this._ws = null;
    this._timers = new Set();
    this._refreshTimer = null;
    this.state = 'connecting';
    this.conn = null;
    this._connect();
  }

  /** Registers `fn` for `event`; returns a function that removes it. */
  on(event, fn) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(fn);
    return () => this._handlers.get(event)?.delete(fn);
  }

  /**
   * Subscribes to `channels` (kept across reconnects). `maxRate` (1..1000 messages/s)
   * caps conflate channels; subscribing again without it removes the cap.
   * Resolves with the `subscribed` reply's channels, rejects with an `error` reply.
   */
  subscribe(channels, { maxRate } = {}) {
    const list = [].concat(channels);
    for (const ch of list) {
      const known = this._channels.get(ch);
      this._channels.set(ch, { epoch: null, offset: 0, stale: false, ...known, maxRate: maxRate ?? null });
    }
    if (this.state !== 'open') return Promise.resolve(null);
    return this._subscribe(list, maxRate ?? null);
  }

  /** Unsubscribes and forgets the channels' positions. */
  unsubscribe(channels) {
    const list = [].concat(channels);
    for (const ch of list) this._channels.delete(ch);
    if (this.state !== 'open') return Promise.resolve(null);
    return this._request({ op: 'unsubscribe', channels: list });
  }

  /** Publishes `data` (any JSON value) to `channel`; resolves with the `published` reply. */
  publish(channel, data) {
    return this._request({ op: 'publish', channel, data });
  }

  /** The last position seen on `channel`: `{epoch, offset}`, or null. */
  position(channel) {
    const c = this._channels.get(channel);
    return c && c.epoch !== null ? { epoch: c.epoch, offset: c.offset } : null;
  }

  /** Whether `channel` is conflated right now (between `lagging` and `caught_up`). */
  isStale(channel) {
    return this._channels.get(channel)?.stale === true;
  }

  /** Closes for good (code 1000); no reconnect. */
  close() {
    this._closed = true;
    this._clearTimers();
    if (this._ws) {
      try { this._ws.close(1000, 'client closed'); } catch { /* already closing */ }
    }
    this._setState('closed');
  }

  // ---- internals ------------------------------------------------------------------

  _emit(event, payload) {
    for (const fn of this._handlers.get(event) ?? []) {
      try { fn(payload); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  _timer(fn, ms) {
    const t = setTimeout(() => { this._timers.delete(t); fn(); }, ms);
    this._timers.add(t);
    return t;
  }

  _clearTimers() {
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._refreshTimer = null;
  }

  async _token() {
    const t = this.options.token;
    return typeof t === 'function' ? await t() : t ?? null;
  }

  async _connect() {
    if (this._closed) return;
    this._setState('connecting');
    let token = null;
    try {
      token = await this._token();
    } catch (e) {
      this._emit('error', e);
      return this._scheduleReconnect();
    }
    if (this._closed) return;
    let ws;
    try {
      ws = new this._WS(this.url);
    } catch (e) {
      this._emit('error', e);
      return this._scheduleReconnect();
    }
    this._ws = ws;
    this._lastToken = token;
    const timeout = this._timer(() => { if (this._ws === ws && this.state !== 'open') ws.close(); },
      this.options.connectTimeoutMs);
    ws.onopen = () => {
      clearTimeout(timeout);
      this._timers.delete(timeout);
      // The token goes in the first frame, not the URL, so it stays out of access logs.
      if (token) this._send({ op: 'auth', token, id: this._id() });
    };
    ws.onmessage = (ev) => this._onFrame(ws, ev.data);
    ws.onerror = () => { /* onclose follows with the code */ };
    ws.onclose = (ev) => this._onClose(ws, ev.code, ev.reason ?? '');
  }

  _onFrame(ws, data) {
    if (ws !== this._ws) return;
    let f;
    try {
      f = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    switch (f.type) {
      case 'welcome':
        this.conn = f.conn;
        this._attempt = 0;
        this._setState('open');
        this._emit('open', { conn: f.conn, heartbeatMs: f.heartbeat_ms });
        this._scheduleRefresh(this._lastToken);
        this._resubscribe();
        break;
      case 'message': {
        const c = this._channels.get(f.channel);
        if (c) c.offset = f.offset;
        this._emit('message', { channel: f.channel, offset: f.offset, ts: f.ts, data: f.data });
        break;
      }
      case 'lagging':
      case 'caught_up': {
        const c = this._channels.get(f.channel);
        if (c) c.stale = f.type === 'lagging';
        this._emit(f.type, { channel: f.channel, skipped: f.skipped });
        this._emit('stale', { channel: f.channel, stale: f.type === 'lagging', skipped: f.skipped });
        break;
      }
      case 'authenticated':
        this._emit('authenticated', { sub: f.sub, exp: f.exp });
        this._settle(f);
        break;
      case 'unsubscribed':
        if (f.id === undefined) {
          // Dropped by the relay (a refreshed token no longer allows them).
          for (const ch of f.channels ?? []) this._channels.delete(ch);
          this._emit('revoked', { channels: f.channels ?? [] });
        }
        this._settle(f);
        break;
      case 'error':
        this._emit('error', Object.assign(new Error(f.message ?? f.code), { code: f.code, id: f.id }));
        this._settle(f);
        break;
      default:
        this._settle(f);
    }
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this.conn = null;
    for (const c of this._channels.values()) c.stale = false;
    for (const { reject } of this._pending.values()) reject(new Error(`connection closed (${code})`));
    this._pending.clear();
    this._clearTimers();
    const final = this._closed || FINAL_CLOSE_CODES.includes(code);
    this._emit('close', { code, reason, reconnect: !final });
    if (final) {
      this._closed = true;
      this._setState('closed');
      return;
    }
    // 1013 (overloaded) names its retry time: "retry in 30s".
    const hint = code === 1013 ? /retry in (\d+)s/.exec(reason) : null;
    this._scheduleReconnect(hint ? Number(hint[1]) * 1000 * (1 + this._random()) : null);
  }

  _scheduleReconnect(delay = null) {
    if (this._closed) return;
    const attempt = this._attempt++;
    const ms = delay ?? backoffDelay(attempt, this.options.minDelayMs, this.options.maxDelayMs, this._random);
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt, delayMs: ms });
    this._timer(() => this._connect(), ms);
  }

  _scheduleRefresh(token) {
    const exp = tokenExpiry(token);
    if (exp === null || typeof this.options.token !== 'function' || this.options.refresh === false) return;
    const ms = Math.max(0, exp - Date.now() - this.options.refreshBeforeMs);
    this._refreshTimer = this._timer(async () => {
      try {
        const next = await this._token();
        await this._request({ op: 'auth', token: next });
        this._lastToken = next;
        this._scheduleRefresh(next);
      } catch (e) {
        this._emit('error', e);
      }
    }, ms);
  }

  _resubscribe() {
    // One subscribe per distinct max_rate, each asking to recover what it has seen.
    const groups = new Map();
    for (const [ch, c] of this._channels) {
      if (!groups.has(c.maxRate)) groups.set(c.maxRate, []);
      groups.get(c.maxRate).push(ch);
    }
    for (const [maxRate, list] of groups) this._subscribe(list, maxRate).catch(() => {});
  }

  _subscribe(list, maxRate) {
    const cmd = { op: 'subscribe', channels: list };
    if (maxRate !== null) cmd.max_rate = maxRate;
    const recover = {};
    for (const ch of list) {
      const c = this._channels.get(ch);
      if (c && c.epoch !== null) recover[ch] = { epoch: c.epoch, offset: c.offset };
    }
    if (Object.keys(recover).length) cmd.recover = recover;
    return this._request(cmd).then((reply) => {
      for (const r of reply.channels ?? []) {
        const c = this._channels.get(r.channel);
        if (!c) continue;
        const asked = recover[r.channel];
        const info = { channel: r.channel, epoch: r.epoch, offset: r.offset, recovered: asked ? r.recovered === true : null };
        if (!asked || r.recovered !== true) {
          // Fresh start: the newest message (last value), if any, has offset r.offset.
          c.offset = Math.max(0, r.offset - 1);
        }
        c.epoch = r.epoch;
        this._emit('subscribed', info);
        if (asked && r.recovered !== true) {
          const reload = { channel: r.channel, epoch: r.epoch, offset: r.offset, lost: asked };
          this._emit('reload', reload);
          this.options.onReload?.(reload);
        }
      }
      return reply.channels;
    });
  }

  _id() {
    return this._nextId++;
  }

  _send(obj) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(obj));
    return true;
  }

  _request(cmd) {
    const id = this._id();
    return new Promise((resolve, reject) => {
      if (!this._send({ ...cmd, id })) return reject(new Error('not connected'));
      this._pending.set(id, { resolve, reject });
    });
  }

  _settle(f) {
    if (f.id === undefined || !this._pending.has(f.id)) return;
    const { resolve, reject } = this._pending.get(f.id);
    this._pending.delete(f.id);
    if (f.type === 'error') reject(Object.assign(new Error(f.message ?? f.code), { code: f.code }));
    else resolve(f);
  }
}

function defaultUrl() {
  const loc = globalThis.location;
  if (!loc) throw new TypeError('no url given and no page location to derive /ws from');
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}
