// Adapters from the agent's async handlers to grpc-js unary handlers: how a call is answered,
// how its failure becomes a gRPC status, how a cancelled call reaches the work.
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type { Logger } from '../../observability/logger.js';
import { StatusError, toServiceError } from './status-error.js';

export type Handler<Q, R> = (req: Q, signal: AbortSignal) => Promise<R>;

/** Answers a call with what `work` settles to: errors become their gRPC status. */
function answer<R>(
  rpc: string,
  logger: Logger,
  work: Promise<R>,
  callback: sendUnaryData<R>,
): void {
  work.then(
    (res) => callback(null, res),
    (err: unknown) => {
      const e = toServiceError(err);
      if (!(err instanceof StatusError)) logger.error({ rpc, err }, 'rpc failed');
      else logger.debug({ rpc, code: e.code, details: e.details }, 'rpc refused');
      callback(e as never);
    },
  );
}

/** Adapts an async handler: errors become their gRPC status, a cancelled call aborts the work. */
export function unary<Q, R>(rpc: string, logger: Logger, fn: Handler<Q, R>) {
  return (call: ServerUnaryCall<Q, R>, callback: sendUnaryData<R>): void => {
    const ac = new AbortController();
    // grpc-js reports every call's stream close as 'cancelled', answered ones too: aborting then
    // would build a DOMException per call for nothing.
    let answered = false;
    call.once('cancelled', () => answered || ac.abort());
    const work = fn(call.request, ac.signal).finally(() => (answered = true));
    answer(rpc, logger, work, callback);
  };
}

/**
 * Adapts a handler that answers at once and has nothing to cancel (Health): no AbortController,
 * no listener per call. The host's health probe is the agent's most frequent call.
 */
export function instant<Q, R>(rpc: string, logger: Logger, fn: (req: Q) => Promise<R>) {
  return (call: ServerUnaryCall<Q, R>, callback: sendUnaryData<R>): void =>
    answer(rpc, logger, fn(call.request), callback);
}
