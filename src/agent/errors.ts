import { status as GrpcStatus } from '@grpc/grpc-js';

/** Bad input to a protocol rule; `field` names what was wrong so it can reach status and Events. */
export class InvalidInputError extends Error {
  readonly reason = 'InvalidInput';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'InvalidInputError';
  }
}

/** A failed agent RPC, carrying the RPC's name and the gRPC status it ended with. */
export class AgentRpcError extends Error {
  readonly reason = 'AgentRPCFailed';
  constructor(
    readonly rpc: string,
    readonly code: GrpcStatus,
    readonly details: string,
  ) {
    super(`agent ${rpc} failed: ${GrpcStatus[code] ?? code}: ${details}`);
    this.name = 'AgentRpcError';
  }
}
