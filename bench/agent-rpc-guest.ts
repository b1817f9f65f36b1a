// The guest side of bench/agent-rpc.ts: the agent's gRPC server and its port path, as the agent
// runs them in a VM (main.ts), with a unix socket standing in for kata-port-relay: the host's
// connection is a relay connection. Prints "ready" once the host may connect; SIGTERM ends it
// (so --cpu-prof can write its profile).
import { createServer } from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { startAgentServer } from '../src/agent/guest/server.js';
import { servePortIo } from '../src/agent/transport/guest-port.js';
import { RelayConnections } from '../src/agent/transport/relay-port.js';
import { serveStreamsOn } from '../src/agent/transport/stream-to-server.js';

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: agent-rpc-guest.mjs <dir>');
  const logger = pino({ level: 'warn' }, pino.destination({ dest: 2, sync: true }));
  const agent = await startAgentServer({ socketPath: path.join(dir, 'agent.sock'), logger });
  const conns = new RelayConnections();
  const relay = createServer((s) => conns.add(s));
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  relay.listen(path.join(dir, 'channel.sock'), () => process.stdout.write('ready\n'));
  await servePortIo(conns, serveStreamsOn(agent.server), stop.signal, { eofPollMs: 0 });
  relay.close();
  await conns.close();
  await agent.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
