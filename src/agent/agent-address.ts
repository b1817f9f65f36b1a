import path from 'node:path';
import { InvalidInputError } from './errors.js';
import { AGENT_CHANNEL_NAME } from './contract.js';

// The serial channel's names, as the Kata runtime and its guest agree on them.
export const SERIAL_CHANNEL_NAME = AGENT_CHANNEL_NAME;
export const SERIAL_DEVICE_ID = 'channel0';
export const SERIAL_CHARDEV_ID = 'charch0';

export interface VsockAddress {
  kind: 'vsock';
  cid: number;
  port: number;
}

export interface SerialAddress {
  kind: 'serial';
  /** QEMU's chardev socket behind the virtio-serial port. */
  channelSocket: string;
  /** The multiplexer's socket that gRPC dials; each connection becomes one stream. */
  grpcSocket: string;
  channelName: typeof SERIAL_CHANNEL_NAME;
  deviceId: typeof SERIAL_DEVICE_ID;
  chardevId: typeof SERIAL_CHARDEV_ID;
}

export type AgentAddress = VsockAddress | SerialAddress;

const VSOCK_SCHEME = 'vsock://';
const UINT32_MAX = 0xffff_ffff;

function parseUint32(value: string, part: string, url: string): number {
  if (!/^[0-9]+$/.test(value) || Number(value) > UINT32_MAX) {
    throw new InvalidInputError(
      'agentAddress',
      `${part} ${JSON.stringify(value)} in ${JSON.stringify(url)} is not a 32-bit unsigned number`,
    );
  }
  return Number(value);
}

/**
 * `vsock://<cid>:<port>` names a vsock endpoint; anything else (usually empty) selects the
 * virtio-serial channel, whose sockets live in the sandbox's run directory.
 */
export function parseAgentAddress(address: string, sandboxRunDir: string): AgentAddress {
  if (address.startsWith(VSOCK_SCHEME)) {
    const rest = address.slice(VSOCK_SCHEME.length);
    const parts = rest.split(':');
    if (parts.length !== 2) {
      throw new InvalidInputError(
        'agentAddress',
        `${JSON.stringify(address)} must be vsock://<cid>:<port> (found ${parts.length} part(s) after the scheme)`,
      );
    }
    const [cid = '', port = ''] = parts;
    return {
      kind: 'vsock',
      cid: parseUint32(cid, 'cid', address),
      port: parseUint32(port, 'port', address),
    };
  }
  if (!path.isAbsolute(sandboxRunDir)) {
    throw new InvalidInputError(
      'sandboxRunDir',
      `${JSON.stringify(sandboxRunDir)} is not absolute`,
    );
  }
  return {
    kind: 'serial',
    channelSocket: path.join(sandboxRunDir, 'agent-channel.sock'),
    grpcSocket: path.join(sandboxRunDir, 'agent.sock'),
    channelName: SERIAL_CHANNEL_NAME,
    deviceId: SERIAL_DEVICE_ID,
    chardevId: SERIAL_CHARDEV_ID,
  };
}
