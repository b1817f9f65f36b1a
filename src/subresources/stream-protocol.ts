// Kubernetes' remote command protocol over WebSocket, as kubectl exec/attach speak it to kubelet
// (subprotocol v5.channel.k8s.io): each binary message is one channel byte then data. Channels:
// 0 stdin, 1 stdout, 2 stderr, 3 the final metav1.Status (the exit code), 4 terminal size
// (JSON {Width,Height}), 255 "stream N closed" (v5: the client's stdin EOF). Also the options
// of exec and attach as Pods take them. Pure.
import type { Parsed } from './log-options.js';

export const STREAM_PROTOCOL_V5 = 'v5.channel.k8s.io';
/** v4 is v5 without the close channel: stdin then ends only with the connection. */
export const STREAM_PROTOCOL_V4 = 'v4.channel.k8s.io';
export const STREAM_PROTOCOLS = [STREAM_PROTOCOL_V5, STREAM_PROTOCOL_V4] as const;

export const CHANNEL = {
  stdin: 0,
  stdout: 1,
  stderr: 2,
  error: 3,
  resize: 4,
  close: 255,
} as const;

/** The subprotocol to answer with: the first of the client's offers we speak. Pure. */
export function chooseProtocol(offered: Iterable<string>): string | undefined {
  const set = new Set([...offered].map((p) => p.trim()));
  return STREAM_PROTOCOLS.find((p) => set.has(p));
}

/** One message: the channel byte, then the data. Pure. */
export function frame(channel: number, data: Uint8Array | string = new Uint8Array(0)): Buffer {
  const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const out = Buffer.allocUnsafe(body.length + 1);
  out[0] = channel;
  out.set(body, 1);
  return out;
}

export type Incoming =
  | { kind: 'stdin'; data: Buffer }
  | { kind: 'resize'; width: number; height: number }
  | { kind: 'close'; channel: number }
  | { kind: 'ignored' }
  | { kind: 'invalid'; message: string };

/** What one client message asks for. Pure. */
export function parseIncoming(msg: Buffer): Incoming {
  if (msg.length === 0) return { kind: 'ignored' };
  const ch = msg[0];
  const data = msg.subarray(1);
  if (ch === CHANNEL.stdin) return { kind: 'stdin', data };
  if (ch === CHANNEL.close) {
    if (data.length !== 1) return { kind: 'invalid', message: 'close: one byte, the stream id' };
    return { kind: 'close', channel: data[0] ?? 0 };
  }
  if (ch === CHANNEL.resize) {
    if (data.length > 1024) return { kind: 'invalid', message: 'resize: message too long' };
    try {
      const v = JSON.parse(data.toString('utf8')) as { Width?: unknown; Height?: unknown };
      const ok = (n: unknown): n is number =>
        typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 65535;
      if (!ok(v.Width) || !ok(v.Height)) {
        return { kind: 'invalid', message: 'resize: Width and Height must be integers 0..65535' };
      }
      return { kind: 'resize', width: v.Width, height: v.Height };
    } catch {
      return { kind: 'invalid', message: 'resize: not JSON' };
    }
  }
  return { kind: 'ignored' };
}

/** The metav1.Status kubelet sends on the error channel when the command ends. Pure. */
export function exitStatus(code: number): object {
  if (code === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: exit code ${code}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
  };
}

/** A failure that is not the command's exit code (kubectl prints its message, exits 1). Pure. */
export function errorStatus(message: string): object {
  return { metadata: {}, status: 'Failure', message, reason: 'InternalError' };
}

/** The exit code a Status of the error channel carries: 0, the command's, or 1 for an error. Pure. */
export function exitCodeOf(status: unknown): { code: number; message?: string } {
  const s = status as {
    status?: string;
    reason?: string;
    message?: string;
    details?: { causes?: { reason?: string; message?: string }[] };
  };
  if (s?.status === 'Success') return { code: 0 };
  if (s?.reason === 'NonZeroExitCode') {
    const cause = s.details?.causes?.find((c) => c.reason === 'ExitCode');
    const n = Number(cause?.message);
    if (Number.isInteger(n) && n > 0 && n < 256) return { code: n };
  }
  return { code: 1, message: s?.message ?? 'the stream ended with an unknown status' };
}

export interface StreamOptions {
  container?: string;
  /** exec only: the command and its arguments. */
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const MAX_ARGS = 1024;
const MAX_ARG_BYTES = 128 * 1024;

function flag(q: URLSearchParams, key: string): boolean | string {
  const v = q.get(key);
  if (v === null || v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  return `${key}: ${JSON.stringify(v)} is not a boolean`;
}

/** exec's and attach's options (PodExecOptions / PodAttachOptions), with errors naming the field. */
export function parseStreamOptions(
  q: URLSearchParams,
  sub: 'exec' | 'attach',
): Parsed<StreamOptions> {
  const flags: Record<'stdin' | 'stdout' | 'stderr' | 'tty', boolean> = {
    stdin: false,
    stdout: false,
    stderr: false,
    tty: false,
  };
  for (const key of ['stdin', 'stdout', 'stderr', 'tty'] as const) {
    const v = flag(q, key);
    if (typeof v === 'string') return { ok: false, message: v };
    flags[key] = v;
  }
  const container = q.get('container') || undefined;
  if (container !== undefined && (container.length > 63 || !DNS_LABEL.test(container))) {
    return {
      ok: false,
      message: `container: ${JSON.stringify(container)} is not a container name`,
    };
  }
  const command = q.getAll('command');
  if (sub === 'exec') {
    if (command.length === 0) return { ok: false, message: 'command: you must specify a command' };
    if (command.length > MAX_ARGS)
      return { ok: false, message: `command: more than ${MAX_ARGS} arguments` };
    const bytes = command.reduce((n, a) => n + Buffer.byteLength(a), 0);
    if (bytes > MAX_ARG_BYTES)
      return { ok: false, message: `command: longer than ${MAX_ARG_BYTES} bytes` };
    if (command.some((a) => a.includes('\0')))
      return { ok: false, message: 'command: contains a NUL byte' };
  } else if (command.length > 0) {
    return { ok: false, message: 'command: attach takes no command' };
  }
  if (!flags.stdin && !flags.stdout && !flags.stderr) {
    return { ok: false, message: 'you must specify at least 1 of stdin, stdout, stderr' };
  }
  // As kubelet: a terminal merges stderr into stdout.
  if (flags.tty && flags.stderr) flags.stderr = false;
  return { ok: true, value: { ...(container && { container }), command, ...flags } };
}

/** The query string that carries `o` (to the node agent). Pure. */
export function streamOptionsQuery(o: StreamOptions): string {
  const q = new URLSearchParams();
  if (o.container) q.set('container', o.container);
  for (const c of o.command) q.append('command', c);
  for (const key of ['stdin', 'stdout', 'stderr', 'tty'] as const) if (o[key]) q.set(key, 'true');
  return q.toString();
}

export interface ConsoleOptions {
  /** Input goes to the console. */
  stdin: boolean;
  /** Start with the last lines of the output so far (default: all of it). */
  tailLines?: number;
}

/** console's options over a WebSocket. Pure. */
export function parseConsoleOptions(q: URLSearchParams): Parsed<ConsoleOptions> {
  const stdin = flag(q, 'stdin');
  if (typeof stdin === 'string') return { ok: false, message: stdin };
  const raw = q.get('tailLines');
  if (raw !== null && raw !== '' && !/^[0-9]{1,9}$/.test(raw)) {
    return { ok: false, message: `tailLines: ${JSON.stringify(raw)} must be an integer >= 0` };
  }
  for (const key of [
    'container',
    'command',
    'previous',
    'timestamps',
    'sinceSeconds',
    'sinceTime',
  ]) {
    if (q.has(key)) return { ok: false, message: `${key}: console does not take it` };
  }
  return {
    ok: true,
    value: { stdin, ...(raw !== null && raw !== '' && { tailLines: Number(raw) }) },
  };
}

/** The query string that carries `o` (to the node agent). Pure. */
export function consoleOptionsQuery(o: ConsoleOptions): string {
  const q = new URLSearchParams();
  if (o.stdin) q.set('stdin', 'true');
  if (o.tailLines !== undefined) q.set('tailLines', String(o.tailLines));
  return q.toString();
}
