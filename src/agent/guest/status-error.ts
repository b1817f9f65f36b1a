import { status, type ServiceError } from '@grpc/grpc-js';
import { Metadata } from '@grpc/grpc-js';
import { END_OF_STREAM } from '../contract.js';

/** An error that ends an RPC with a specific gRPC status; anything else becomes INTERNAL. */
export class StatusError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

export const invalidArgument = (message: string): StatusError =>
  new StatusError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string): StatusError =>
  new StatusError(status.NOT_FOUND, message);
export const alreadyExists = (message: string): StatusError =>
  new StatusError(status.ALREADY_EXISTS, message);
export const failedPrecondition = (message: string): StatusError =>
  new StatusError(status.FAILED_PRECONDITION, message);
export const deadlineExceeded = (message: string): StatusError =>
  new StatusError(status.DEADLINE_EXCEEDED, message);

/** A read at the end of its stream, answered as Kata 1.x's agent answers it (contract.ts). */
export const endOfStream = (): StatusError =>
  new StatusError(END_OF_STREAM.code as status, END_OF_STREAM.details);

/** The error a handler hands to grpc-js: the status and message travel to the host as they are. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const code = err instanceof StatusError ? err.code : status.INTERNAL;
  const details = err instanceof Error ? err.message : String(err);
  return { code, details, metadata: new Metadata() };
}
