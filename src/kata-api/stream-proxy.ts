// An authorized exec, attach or console WebSocket, carried to the sandbox's node agent: kata-api
// makes the same upgrade request to the node agent's endpoint (its bound token, the client's
// WebSocket key and subprotocols), answers the client with the node agent's 101, and from then
// on copies bytes both ways. The frames are not looked at; `pipe` gives backpressure both ways,
// and either side closing closes the other, so no stream outlives its client.
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { apiStatus } from './api-status.js';
import type { NodeEndpoint } from './node-streams.js';

/** The headers of the client's upgrade the node agent needs (no X-Remote-*, no cookies). Pure. */
export function upstreamUpgradeHeaders(
  client: IncomingMessage['headers'],
  token: string,
): Record<string, string> {
  const h: Record<string, string> = {
    Authorization: `Bearer ${token}`,
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
  };
  for (const [name, key] of [
    ['Sec-WebSocket-Key', 'sec-websocket-key'],
    ['Sec-WebSocket-Protocol', 'sec-websocket-protocol'],
  ] as const) {
    const v = client[key];
    if (typeof v === 'string') h[name] = v;
  }
  return h;
}

/** The 101 the client gets, from the node agent's. Pure. */
export function switchingProtocols(upstream: IncomingMessage['headers']): string {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'];
  const accept = upstream['sec-websocket-accept'];
  if (typeof accept === 'string') lines.push(`Sec-WebSocket-Accept: ${accept}`);
  const proto = upstream['sec-websocket-protocol'];
  if (typeof proto === 'string') lines.push(`Sec-WebSocket-Protocol: ${proto}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

const REASON_PHRASE: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** A refused upgrade: a metav1 Status as the HTTP answer, then the socket closes. */
export function refuseUpgrade(
  socket: Duplex,
  code: number,
  message: string,
  details?: object,
): void {
  if (socket.destroyed) return;
  const body = JSON.stringify(apiStatus(code, message, details));
  socket.end(
    `HTTP/1.1 ${code} ${REASON_PHRASE[code] ?? 'Error'}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export interface ProxyUpgrade {
  endpoint: NodeEndpoint;
  pathAndQuery: string;
  token: string;
  client: { req: IncomingMessage; socket: Duplex; head: Buffer };
  /** Deadline for the node agent's answer to the upgrade. */
  timeoutMs?: number;
  /** Called once both sockets are closed. */
  onClose?: () => void;
}

/** Resolves once the stream is set up (or refused); the copying then runs on its own. */
export function proxyUpgrade(p: ProxyUpgrade): Promise<void> {
  const { req, socket, head } = p.client;
  return new Promise((resolve) => {
    const out = request(new URL(p.pathAndQuery, p.endpoint.url), {
      method: 'GET',
      ca: p.endpoint.caPem,
      headers: upstreamUpgradeHeaders(req.headers, p.token),
      timeout: p.timeoutMs ?? 10_000,
      agent: false,
    });
    let settled = false;
    const done = (): void => {
      if (!settled) {
        settled = true;
        resolve();
      }
    };
    const clientGone = (): void => {
      out.destroy();
      done();
    };
    socket.once('close', clientGone);
    out.once('timeout', () => {
      out.destroy();
      refuseUpgrade(socket, 504, 'the node agent did not answer');
      done();
    });
    out.once('error', (err) => {
      refuseUpgrade(socket, 502, `node agent: ${err.message}`);
      done();
    });
    out.once('response', (res) => {
      // Not upgraded: the node agent's refusal, passed on as a Status.
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (text.length < 64 * 1024) text += c;
      });
      res.once('end', () => {
        const code = res.statusCode ?? 502;
        const pass = code === 400 || code === 404;
        refuseUpgrade(
          socket,
          pass ? code : 502,
          pass ? text.trim() : `node agent: ${code} ${text.trim()}`,
        );
        done();
      });
    });
    out.once('upgrade', (res, upstream: Socket, upstreamHead: Buffer) => {
      socket.off('close', clientGone);
      upstream.setTimeout(0);
      upstream.setNoDelay(true);
      if (socket.destroyed) {
        upstream.destroy();
        done();
        return;
      }
      socket.write(switchingProtocols(res.headers));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstream.write(head);
      let closed = 0;
      const closeBoth = (): void => {
        socket.destroy();
        upstream.destroy();
        if (++closed === 2) p.onClose?.();
      };
      socket.once('close', closeBoth);
      upstream.once('close', closeBoth);
      socket.on('error', () => socket.destroy());
      upstream.on('error', () => upstream.destroy());
      socket.pipe(upstream);
      upstream.pipe(socket);
      done();
    });
    out.end();
  });
}
