import { status as GrpcStatus } from '@grpc/grpc-js';
import { END_OF_STREAM } from './contract.js';

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

/** Whether a failed ReadStdout/ReadStderr is the stream's end (contract.ts, END_OF_STREAM). */
export function isEndOfStream(err: unknown): boolean {
  return (
    err instanceof AgentRpcError &&
    (err.rpc === 'ReadStdout' || err.rpc === 'ReadStderr') &&
    err.code === (END_OF_STREAM.code as GrpcStatus) &&
    err.details === END_OF_STREAM.details
  );
}
