import { describe, expect, it } from '@jest/globals';
import { status, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { instant, unary } from '../../../src/agent/guest/rpc-adapters.js';
import { StatusError } from '../../../src/agent/guest/status-error.js';

const logger = pino({ level: 'silent' });

/** grpc-js's call as the adapters see it: the request, and 'cancelled' when its stream closes. */
function call<Q>(request: Q): ServerUnaryCall<Q, unknown> & EventEmitter {
  return Object.assign(new EventEmitter(), { request }) as never;
}

function answered<R>(): {
  callback: (err: ServiceError | null, res?: R) => void;
  result: Promise<{ err: ServiceError | null; res?: R }>;
} {
  let settle!: (v: { err: ServiceError | null; res?: R }) => void;
  const result = new Promise<{ err: ServiceError | null; res?: R }>((r) => (settle = r));
  return { callback: (err, res) => settle({ err, res }), result };
}

describe('unary', () => {
  it('aborts the work of a call cancelled before its answer', async () => {
    let seen: AbortSignal | undefined;
    const handler = unary('Slow', logger, (_req: object, signal) => {
      seen = signal;
      return new Promise((_, reject) =>
        signal.addEventListener('abort', () =>
          reject(new StatusError(status.CANCELLED, 'wait cancelled')),
        ),
      );
    });
    const c = call({});
    const { callback, result } = answered();
    handler(c, callback as never);
    c.emit('cancelled', 'cancelled');
    const { err } = await result;
    expect(seen?.aborted).toBe(true);
    expect(err?.code).toBe(status.CANCELLED);
  });

  it('does not abort an answered call when its stream closes (grpc-js reports that as cancelled too)', async () => {
    let seen: AbortSignal | undefined;
    const handler = unary('Quick', logger, async (req: { n: number }, signal) => {
      seen = signal;
      return { n: req.n + 1 };
    });
    const c = call({ n: 1 });
    const { callback, result } = answered<{ n: number }>();
    handler(c, callback as never);
    expect((await result).res).toEqual({ n: 2 });
    c.emit('cancelled', 'cancelled');
    expect(seen?.aborted).toBe(false);
  });

  it('answers a failure with its status', async () => {
    const handler = unary('Bad', logger, async () => {
      throw new StatusError(status.INVALID_ARGUMENT, 'container_id: empty');
    });
    const { callback, result } = answered();
    handler(call({}), callback as never);
    const { err } = await result;
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.details).toBe('container_id: empty');
  });
});

describe('instant', () => {
  it('answers with the result, and a failure with its status', async () => {
    const ok = answered<{ status: number }>();
    instant('Check', logger, async () => ({ status: 1 }))(call({}), ok.callback as never);
    expect((await ok.result).res).toEqual({ status: 1 });
    const bad = answered();
    instant('Check', logger, async () => {
      throw new StatusError(status.UNAVAILABLE, 'shutting down');
    })(call({}), bad.callback as never);
    expect((await bad.result).err?.code).toBe(status.UNAVAILABLE);
  });

  it('leaves no listener on the call', () => {
    const c = call({});
    instant('Check', logger, async () => ({}))(c, () => {});
    expect(c.listenerCount('cancelled')).toBe(0);
  });
});
