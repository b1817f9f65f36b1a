// vsock transport: Node has no AF_VSOCK, so socat bridges vsock to a unix socket on each side and
// the rest (grpc-js on the host, the agent's unix-socket server in the guest) is unchanged. No
// yamux here: every vsock connection is already one gRPC connection.
// Untested on a real vsock: the development hosts have no /dev/vhost-vsock.

export interface VsockEndpoint {
  /** The guest's context id (host side), ≥ 3. */
  cid: number;
  port: number;
}

const U32_MAX = 0xffff_ffff;

function checkU32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new RangeError(`vsock ${name} ${v} is not a 32-bit unsigned integer`);
  }
}

/** socat splits addresses on ':' and ',' and treats '!!', quotes and '\\' specially. */
function checkSocatPath(path: string): void {
  if (path === '' || /[:,!"'\\\s]/.test(path)) {
    throw new RangeError(`socket path ${JSON.stringify(path)} can't be given to socat safely`);
  }
}

/** Host: grpc-js dials `socketPath`; each connection is forwarded to the guest's vsock port. */
export function hostVsockBridgeArgv(socketPath: string, target: VsockEndpoint): string[] {
  checkSocatPath(socketPath);
  checkU32('cid', target.cid);
  checkU32('port', target.port);
  return ['socat', `UNIX-LISTEN:${socketPath},fork`, `VSOCK-CONNECT:${target.cid}:${target.port}`];
}

/** Guest: each vsock connection on `port` becomes a connection to the agent's unix socket. */
export function guestVsockBridgeArgv(port: number, socketPath: string): string[] {
  checkU32('port', port);
  checkSocatPath(socketPath);
  return ['socat', `VSOCK-LISTEN:${port},fork`, `UNIX-CONNECT:${socketPath}`];
}
