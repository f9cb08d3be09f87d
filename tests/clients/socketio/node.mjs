// The real socket.io-client (npm, 4.8.x) in Node: runs scenario.mjs against the control
// server given as argv[2], with the io() options of the mode in argv[3]:
// `default` (polling, then the upgrade), `websocket` (transports: ['websocket']) or
// `crs` (the CRS front end's own options).
import { io } from 'socket.io-client';
import { run } from './scenario.mjs';

const [base, mode] = process.argv.slice(2);
const modes = {
  default: { expectWs: true },
  websocket: { transports: ['websocket'], expectWs: true },
  crs: {
    transports: ['websocket', 'polling'], reconnection: true, reconnectionDelay: 1000,
    reconnectionDelayMax: 5000, reconnectionAttempts: 5, expectWs: true,
  },
};
const log = (m) => console.log(`node ${mode}: ${m}`);
try {
  log(await run(io, base, modes[mode], log));
  process.exit(0);
} catch (e) {
  console.error(`node ${mode}: ` + (e && e.stack ? e.stack : e));
  process.exit(1);
}
