// The one handle on a guest agent: the serial bridge to QEMU's agent chardev (yamux over the
// virtio-serial port) and the gRPC client over it. Boot opens it, adoption reopens it, teardown
// closes it.
import type { status as GrpcStatus } from '@grpc/grpc-js';
import { AgentClient } from './agent-client.js';
import { SerialBridge } from './transport/serial-bridge.js';

export type RpcObserver = (rpc: string, code: GrpcStatus, seconds: number) => void;

/** Where a VM's agent is reached: QEMU's chardev socket, and the socket the bridge listens on. */
export interface AgentChannelFiles {
  agentChannelSocket: string;
  grpcSocket: string;
}

export class AgentConnection {
  private constructor(
    readonly bridge: SerialBridge,
    readonly client: AgentClient,
  ) {}

  static async open(
    files: AgentChannelFiles,
    onCall?: RpcObserver,
    signal?: AbortSignal,
  ): Promise<AgentConnection> {
    const bridge = await SerialBridge.start({
      chardevPath: files.agentChannelSocket,
      listenPath: files.grpcSocket,
      ...(signal && { signal }),
    });
    const client = new AgentClient({ socketPath: files.grpcSocket, ...(onCall && { onCall }) });
    return new AgentConnection(bridge, client);
  }

  async close(): Promise<void> {
    this.client.close();
    await this.bridge.close();
  }
}
