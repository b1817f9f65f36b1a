// kata-guest-agent: the agent inside the VM. Starts the gRPC server on a unix socket, then serves
// the virtio-serial port (yamux; each stream becomes a connection of that server, in-process).
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { servePort, type ServePortOptions } from '../transport/guest-port.js';
import { servePortViaRelay } from '../transport/relay-port.js';
import { serveStreamsOn } from '../transport/stream-to-server.js';
import { parseCli, USAGE, type CliOptions } from './cli.js';
import { AGENT_VERSION } from './health.js';
import { startAgentServer, type AgentServer } from './server.js';
import { waitForVirtioPort } from './virtio-port.js';
import { logOptions } from '../../observability/logger.js';

/** Seconds since the guest booted (/proc/uptime), or undefined where there is none. */
async function guestUptime(): Promise<number | undefined> {
  const text = await readFile('/proc/uptime', 'utf8').catch(() => '');
  const up = Number(text.split(' ')[0]);
  return text && Number.isFinite(up) ? up : undefined;
}

/** Serves the agent port until `signal` aborts; returns at once if there is no such port. */
export async function serveAgentPort(
  opts: CliOptions,
  agent: AgentServer,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const device = opts.portDevice ?? (await waitForVirtioPort(opts.portName, opts.portWaitMs));
  if (!device) {
    logger.warn({ portName: opts.portName }, 'no virtio-serial agent port: unix socket only');
    return;
  }
  // The port through kata-port-relay (non-blocking, a gone host's bytes dropped), or directly.
  const relay = opts.portRelay;
  const useRelay = relay !== undefined && (relay.required || existsSync(relay.path));
  // The guest's uptime here is when the agent became reachable (bench/guest-boot.ts reads it).
  logger.info(
    {
      device,
      portName: opts.portName,
      relay: useRelay ? relay.path : 'off',
      uptimeS: await guestUptime(),
    },
    'serving the agent port',
  );
  const sessionLog: ServePortOptions = {
    onSessionStart: () => logger.info({ device }, 'host connected: mux session started'),
    onSessionEnd: (err) =>
      logger.info({ device, err: err?.message }, 'host went away: mux session ended'),
    onSessionBoundary: (reason) =>
      logger.info({ device, reason }, 'mux session cut in the frames: old session ended'),
  };
  const onStream = serveStreamsOn(agent.server);
  if (!useRelay) return servePort(device, onStream, signal, sessionLog);
  const socketPath = path.join(path.dirname(opts.socketPath), 'kata-port-relay.sock');
  await servePortViaRelay(
    { relayPath: relay.path, device, socketPath },
    onStream,
    signal,
    sessionLog,
  );
}

async function main(): Promise<void> {
  let opts: CliOptions;
  try {
    opts = parseCli(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`kata-guest-agent: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (opts.version) {
    process.stdout.write(`${AGENT_VERSION}\n`);
    return;
  }
  // Logs go to stderr (the console in the VM); stdout stays free.
  const logger = pino(
    logOptions('kata-guest-agent', opts.logLevel),
    pino.destination({ dest: 2, sync: true }),
  );
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));

  const agent = await startAgentServer({ socketPath: opts.socketPath, logger });
  const stop = new AbortController();
  const shutdown = (sig: string): void => {
    logger.info({ signal: sig }, 'shutting down');
    stop.abort();
    agent.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'closing the agent failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  if (opts.servePort) {
    serveAgentPort(opts, agent, logger, stop.signal).catch((err: unknown) => {
      // Without the port the host cannot reach us: die so the init reports it and powers off.
      logger.fatal({ err }, 'agent port failed');
      process.exit(1);
    });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`kata-guest-agent: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
