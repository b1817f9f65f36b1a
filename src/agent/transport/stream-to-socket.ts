// grpc-js's Server only accepts connections from its own listeners, not arbitrary duplexes, so
// the guest agent's server listens on a local unix socket and each yamux stream becomes one
// connection to it. What the host sends passes through the AuthorityRewriter on the way (any
// client's `:authority` reaches the server as one Node accepts; see h2-authority.ts).
import { connect } from 'node:net';
import { Duplex, finished } from 'node:stream';
import { pipeDuplex } from './duplex-pipe.js';
import { AuthorityRewriter } from './h2-authority.js';

/** Connects `stream` to a new connection to the unix socket `socketPath`, both ways. */
export function connectStreamToSocket(stream: Duplex, socketPath: string): void {
  const socket = connect({ path: socketPath, allowHalfOpen: true });
  const toServer = new AuthorityRewriter();
  toServer.pipe(socket);
  // A malformed request stream ends the connection (the server could not have parsed it either).
  finished(toServer, (err) => {
    if (err && !socket.destroyed) socket.destroy();
  });
  pipeDuplex(stream, Duplex.from({ writable: toServer, readable: socket }));
}

/** An `onStream` callback that forwards every stream to `socketPath`. */
export function forwardStreamsTo(socketPath: string): (stream: Duplex) => void {
  return (stream) => connectStreamToSocket(stream, socketPath);
}
