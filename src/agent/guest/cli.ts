// Command-line flags and environment of kata-guest-agent (pure, so it is unit-tested).
import { parseArgs } from 'node:util';
import { AGENT_PORT_NAME } from './virtio-port.js';

export const DEFAULT_SOCKET = '/run/kata-agent.sock';
export const DEFAULT_PORT_RELAY = '/usr/bin/kata-port-relay';

export const USAGE = `Usage: kata-guest-agent [options]

Serves the Kata agent protocol (AgentService + grpc.Health) on a unix socket and, when the
virtio-serial port exists, over that port (yamux streams forwarded to the socket).

Options:
  --socket PATH        unix socket of the gRPC server      (env KATA_AGENT_SOCKET, default ${DEFAULT_SOCKET})
  --port-name NAME     virtio-serial port name to serve     (env KATA_AGENT_PORT_NAME, default ${AGENT_PORT_NAME})
  --port-device PATH   serve this device instead of looking the port up by name (env KATA_AGENT_PORT_DEVICE)
  --no-port            serve the unix socket only (tests on the host)
  --port-wait-ms N     how long to wait for the port to appear (default 5000)
  --port-relay PATH    drive the port through this kata-port-relay (env KATA_AGENT_PORT_RELAY;
                       default ${DEFAULT_PORT_RELAY} when it exists, else the port directly);
                       "off": the port directly (blocking I/O on the thread pool)
  --log-level LEVEL    pino level (env LOG_LEVEL, default info); logs are JSON on stderr
  --version            print the version
  -h, --help           print this help
`;

export interface CliOptions {
  socketPath: string;
  portName: string;
  portDevice?: string;
  servePort: boolean;
  portWaitMs: number;
  /** The relay to drive the port through; `required`: named explicitly, so it must run. */
  portRelay?: { path: string; required: boolean };
  logLevel: string;
  help: boolean;
  version: boolean;
}

export function parseCli(argv: string[], env: NodeJS.ProcessEnv): CliOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      socket: { type: 'string' },
      'port-name': { type: 'string' },
      'port-device': { type: 'string' },
      'no-port': { type: 'boolean' },
      'port-wait-ms': { type: 'string' },
      'port-relay': { type: 'string' },
      'log-level': { type: 'string' },
      version: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const waitText = values['port-wait-ms'] ?? '5000';
  const portWaitMs = Number(waitText);
  if (!Number.isInteger(portWaitMs) || portWaitMs < 0) {
    throw new Error(`--port-wait-ms ${JSON.stringify(waitText)} is not a non-negative integer`);
  }
  const socketPath = values.socket ?? env.KATA_AGENT_SOCKET ?? DEFAULT_SOCKET;
  if (!socketPath.startsWith('/'))
    throw new Error(`--socket ${JSON.stringify(socketPath)} is not absolute`);
  const relayText = values['port-relay'] ?? env.KATA_AGENT_PORT_RELAY;
  if (relayText !== undefined && relayText !== 'off' && !relayText.startsWith('/')) {
    throw new Error(`--port-relay ${JSON.stringify(relayText)} is neither "off" nor absolute`);
  }
  const portRelay =
    relayText === undefined
      ? { path: DEFAULT_PORT_RELAY, required: false }
      : relayText === 'off'
        ? undefined
        : { path: relayText, required: true };
  return {
    socketPath,
    portName: values['port-name'] ?? env.KATA_AGENT_PORT_NAME ?? AGENT_PORT_NAME,
    portDevice: values['port-device'] ?? env.KATA_AGENT_PORT_DEVICE,
    servePort: !values['no-port'],
    portWaitMs,
    portRelay,
    logLevel: values['log-level'] ?? env.LOG_LEVEL ?? 'info',
    help: values.help ?? false,
    version: values.version ?? false,
  };
}
