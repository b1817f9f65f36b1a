// The control channel to the terminal relay: its lines (pure) and the agent's end of it over a
// real socket pair (a relay stand-in answers on the other end).
import { describe, expect, it } from '@jest/globals';
import { status } from '@grpc/grpc-js';
import { createServer, Socket, type AddressInfo } from 'node:net';
import {
  LineSplitter,
  MAX_TTY_SIZE,
  parseControlLine,
  sizeLine,
  TtyControl,
} from '../../../src/agent/guest/tty-control.js';
import { StatusError } from '../../../src/agent/guest/status-error.js';

describe('control lines', () => {
  it('a size is "<rows> <cols>\\n"; out of 0..65535 is INVALID_ARGUMENT naming the field', () => {
    expect(sizeLine(40, 120)).toBe('40 120\n');
    expect(sizeLine(0, MAX_TTY_SIZE)).toBe('0 65535\n');
    for (const [row, column, field] of [
      [65536, 1, 'row'],
      [1, 70_000, 'column'],
      [1.5, 1, 'row'],
      [-1, 1, 'row'],
    ] as const) {
      let err: unknown;
      try {
        sizeLine(row, column);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StatusError);
      expect((err as StatusError).code).toBe(status.INVALID_ARGUMENT);
      expect((err as StatusError).message.startsWith(`${field} `)).toBe(true);
    }
  });

  it('parses ready, ok and error lines and refuses anything else', () => {
    expect(parseControlLine('ready')).toEqual({ kind: 'ready' });
    expect(parseControlLine('ok')).toEqual({ kind: 'ok' });
    expect(parseControlLine('error bad ioctl')).toEqual({ kind: 'error', message: 'bad ioctl' });
    expect(() => parseControlLine('okay')).toThrow(/unexpected control line/);
  });

  it('splits chunks into lines, keeping a partial line for the next chunk', () => {
    const s = new LineSplitter();
    expect(s.push('rea')).toEqual([]);
    expect(s.push('dy\nok\ner')).toEqual(['ready', 'ok']);
    expect(s.push('ror x\n')).toEqual(['error x']);
    expect(() => s.push('x'.repeat(5000))).toThrow(/too long/);
  });
});

/** A connected pair of sockets: the agent's end and the relay stand-in's. */
async function socketPair(): Promise<[Socket, Socket]> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const ours = new Socket();
  await new Promise<void>((r) => ours.connect(port, '127.0.0.1', r));
  const theirs = await accepted;
  server.close();
  return [ours, theirs];
}

describe('TtyControl', () => {
  it('is ready on "ready"; sizes are answered in order; an error line rejects that size', async () => {
    const [ours, relay] = await socketPair();
    const control = new TtyControl(ours, 'process "e" of container "c"');
    const sizes: string[] = [];
    relay.setEncoding('utf8');
    relay.on('data', (d: string) => {
      for (const line of d.split('\n').filter(Boolean)) {
        sizes.push(line);
        if (relay.writableEnded) return; // the relay is gone: no answer
        relay.write(line === '1 1' ? 'error no such terminal\n' : 'ok\n');
      }
    });
    relay.write('ready\n');
    expect(await control.ready).toBe(true);
    await control.resize(40, 120, 5_000);
    await expect(control.resize(1, 1, 5_000)).rejects.toThrow(/resize: no such terminal/);
    await control.resize(24, 80, 5_000);
    expect(sizes).toEqual(['40 120', '1 1', '24 80']);
    relay.end();
    await expect(control.resize(2, 2, 5_000)).rejects.toMatchObject({
      code: status.FAILED_PRECONDITION,
    });
    ours.destroy();
  });

  it('is not ready when the channel ends first; a silent relay fails the size and the channel', async () => {
    const [ours, relay] = await socketPair();
    const control = new TtyControl(ours, 'p');
    relay.write('ready\n');
    expect(await control.ready).toBe(true);
    await expect(control.resize(1, 2, 50)).rejects.toThrow(/did not answer within 50 ms/);
    await expect(control.resize(1, 2, 50)).rejects.toThrow(/terminal is gone/);
    relay.destroy();

    const [ours2, relay2] = await socketPair();
    const early = new TtyControl(ours2, 'p');
    relay2.end();
    expect(await early.ready).toBe(false);
  });
});
