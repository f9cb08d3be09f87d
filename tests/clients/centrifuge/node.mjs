// The real centrifuge SDK (npm, 5.x) in Node: runs scenario.mjs against the control
// server given as argv[2]. Node 20 has no global WebSocket, so the SDK is handed `ws`.
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { run } from './scenario.mjs';

const base = process.argv[2];
const log = (m) => console.log('node: ' + m);
try {
  log(await run(Centrifuge, base, { websocket: WebSocket }, log));
  process.exit(0);
} catch (e) {
  console.error('node: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
}
