// The VM's serial console over a WebSocket (v5.channel.k8s.io framing, as exec): its output is
// the console log followed (channel 1), and with stdin what the client types (channel 0) goes to
// QEMU's console socket. QEMU serves one client of that socket at a time: a second console's
// input waits until the first one leaves. What QEMU sends back on the socket is the same output
// the log has, so it is read and dropped (unread, it would stall the guest's serial port).
// Backpressure: the log is read only as fast as the client takes it, and the client's input is
// read only as fast as QEMU takes it.
import { connect, type Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Logger } from '../../observability/logger.js';
import {
  CHANNEL,
  errorStatus,
  exitStatus,
  frame,
  parseIncoming,
} from '../../subresources/stream-protocol.js';
import { readLog } from './log-reader.js';

export interface ConsoleTarget {
  logFile: string;
  socket?: string;
  stdin: boolean;
  tailLines?: number;
  ended: () => boolean;
  logger: Logger;
}

function send(ws: WebSocket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ws.readyState !== ws.OPEN) {
      reject(new Error('the client went away'));
      return;
    }
    ws.send(data, { binary: true }, (err) => (err ? reject(err) : resolve()));
  });
}

export async function runConsole(ws: WebSocket, t: ConsoleTarget): Promise<void> {
  const abort = new AbortController();
  ws.on('close', () => abort.abort(new Error('the client went away')));
  ws.on('error', () => abort.abort(new Error('the connection failed')));
  let input: Socket | undefined;
  if (t.stdin && t.socket) {
    const sock = connect(t.socket);
    input = sock;
    sock.on('data', () => {}); // the same output as the log: dropped
    sock.on('error', (err) => t.logger.debug({ err }, 'console socket'));
    sock.on('drain', () => ws.resume());
    ws.on('message', (raw: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const m = parseIncoming(Buffer.isBuffer(raw) ? raw : Buffer.from(raw));
      if (m.kind === 'stdin' && m.data.length > 0 && !sock.destroyed) {
        if (!sock.write(m.data)) ws.pause();
      }
    });
  }
  try {
    for await (const chunk of readLog({
      file: t.logFile,
      follow: true,
      ended: t.ended,
      signal: abort.signal,
      ...(t.tailLines !== undefined && { tailLines: t.tailLines }),
    })) {
      await send(ws, frame(CHANNEL.stdout, chunk));
    }
    await send(ws, frame(CHANNEL.error, JSON.stringify(exitStatus(0)))).catch(() => {});
    ws.close(1000);
  } catch (err) {
    if (!abort.signal.aborted) {
      t.logger.warn({ err }, 'console stream failed');
      await send(ws, frame(CHANNEL.error, JSON.stringify(errorStatus(String(err))))).catch(
        () => {},
      );
    }
  } finally {
    input?.destroy();
    ws.terminate();
  }
}
