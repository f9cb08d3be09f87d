// Types for tickrelay.js (protocol v1, docs/protocol.md).

/** Close codes after which the client stops instead of reconnecting (1008 policy, 4001 auth). */
export const FINAL_CLOSE_CODES: readonly number[];

/** The `exp` claim of a JWT in ms since the epoch, or null. */
export function tokenExpiry(token: string | null | undefined): number | null;

/** Reconnect delay for `attempt` (0 first): uniform in [min, min(max, min * 2^(attempt+1))]. */
export function backoffDelay(attempt: number, minDelayMs: number, maxDelayMs: number, random?: () => number): number;

export interface TickRelayOptions {
  /** The publish key or a JWT, or a function returning one (called on every connect and refresh). */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** A WebSocket constructor (e.g. `import WebSocket from 'ws'` in Node 20). Default: globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocket;
  /** Smallest reconnect delay, ms (default 500). */
  minDelayMs?: number;
  /** Largest reconnect delay, ms (default 30000). */
  maxDelayMs?: number;
  /** Refresh a JWT (token callback only) this long before its exp, ms (default 30000). */
  refreshBeforeMs?: number;
  /** false: never refresh the token. */
  refresh?: boolean;
  /** A connection attempt that has not opened by then is abandoned, ms (default 10000). */
  connectTimeoutMs?: number;
  /** Called when a channel could not be recovered after a reconnect: reload what you show. */
  onReload?: (info: ReloadInfo) => void;
  /** Source of randomness for the jitter (default Math.random). */
  random?: () => number;
}

export interface Message { channel: string; offset: number; ts: number; data: unknown }
export interface SubscribedInfo {
  channel: string; epoch: string; offset: number;
  /** true/false when recovery was asked (after a reconnect), null for a first subscribe. */
  recovered: boolean | null;
}
export interface ReloadInfo { channel: string; epoch: string; offset: number; lost: { epoch: string; offset: number } }
export interface Notice { channel: string; skipped: number }
export interface CloseInfo { code: number; reason: string; reconnect: boolean }

export interface TickRelayEvents {
  open: { conn: string; heartbeatMs: number };
  message: Message;
  subscribed: SubscribedInfo;
  reload: ReloadInfo;
  lagging: Notice;
  caught_up: Notice;
  stale: Notice & { stale: boolean };
  authenticated: { sub?: string; exp?: number };
  revoked: { channels: string[] };
  reconnecting: { attempt: number; delayMs: number };
  close: CloseInfo;
  state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  error: Error & { code?: string };
}

export class TickRelay {
  constructor(url?: string, options?: TickRelayOptions);
  readonly url: string;
  readonly state: 'connecting' | 'open' | 'reconnecting' | 'closed';
  /** The relay's connection id (from welcome), null while not connected. */
  readonly conn: string | null;
  on<E extends keyof TickRelayEvents>(event: E, fn: (payload: TickRelayEvents[E]) => void): () => void;
  subscribe(channels: string | string[], options?: { maxRate?: number }): Promise<unknown>;
  unsubscribe(channels: string | string[]): Promise<unknown>;
  publish(channel: string, data: unknown): Promise<{ type: 'published'; channel: string; offset: number }>;
  position(channel: string): { epoch: string; offset: number } | null;
  isStale(channel: string): boolean;
  close(): void;
}
