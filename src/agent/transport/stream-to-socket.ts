// grpc-js's Server only accepts connections from its own listeners, not arbitrary duplexes, so
// the guest agent's server listens on a local unix socket and each yamux stream becomes one
// connection to it.
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import { pipeDuplex } from './duplex-pipe.js';

/** Connects `stream` to a new connection to the unix socket `socketPath`, both ways. */
export function connectStreamToSocket(stream: Duplex, socketPath: string): void {
  const socket = connect({ path: socketPath, allowHalfOpen: true });
  pipeDuplex(stream, socket);
}

/** An `onStream` callback that forwards every stream to `socketPath`. */
export function forwardStreamsTo(socketPath: string): (stream: Duplex) => void {
  return (stream) => connectStreamToSocket(stream, socketPath);
}
