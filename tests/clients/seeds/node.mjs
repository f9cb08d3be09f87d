// The seed front ends' WebSocket usage in Node, with the `ws` package as the WebSocket.
// Usage: node node.mjs <seed listener host:port> <main host:port> <publish key>
import WebSocket from 'ws';
import './scenario.js';
import { publisher } from './publish.mjs';

const [seeds, main, key] = process.argv.slice(2);
try {
  await globalThis.seedScenarios(WebSocket, `ws://${seeds}`, publisher(main, key), console.log);
  console.log('ALL CASES PASSED');
  process.exit(0);
} catch (e) {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
}
