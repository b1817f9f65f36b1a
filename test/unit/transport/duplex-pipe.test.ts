import { describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { pipeDuplex } from '../../../src/agent/transport/duplex-pipe.js';
import { duplexPair, quiet, readAll } from './helpers.js';

describe('pipeDuplex', () => {
  it('carries data both ways and propagates half-close', async () => {
    const [outerA, innerA] = duplexPair();
    const [innerB, outerB] = duplexPair();
    pipeDuplex(innerA, innerB);
    const atB = readAll(outerB);
    outerA.end('to b');
    expect((await atB).toString()).toBe('to b');
    // A's direction is closed, B's is still open.
    const atA = readAll(outerA);
    outerB.end('to a');
    expect((await atA).toString()).toBe('to a');
  });

  it('destroys the other side when one fails', async () => {
    const [, innerA] = duplexPair();
    const [innerB] = duplexPair();
    quiet(innerA);
    pipeDuplex(innerA, innerB);
    const closed = once(innerB, 'close');
    innerA.destroy(new Error('boom'));
    await closed;
    expect(innerB.destroyed).toBe(true);
  });
});
