import { describe, expect, it } from '@jest/globals';
import { guestVsockBridgeArgv, hostVsockBridgeArgv } from '../../../src/agent/transport/vsock.js';

describe('socat vsock bridge argv', () => {
  it('builds the host side: a unix listener forwarding to the guest cid:port', () => {
    expect(hostVsockBridgeArgv('/run/kata/sb-1/agent.sock', { cid: 3, port: 1024 })).toEqual([
      'socat',
      'UNIX-LISTEN:/run/kata/sb-1/agent.sock,fork',
      'VSOCK-CONNECT:3:1024',
    ]);
  });

  it('builds the guest side: a vsock listener forwarding to the agent unix socket', () => {
    expect(guestVsockBridgeArgv(1024, '/run/kata-agent/grpc.sock')).toEqual([
      'socat',
      'VSOCK-LISTEN:1024,fork',
      'UNIX-CONNECT:/run/kata-agent/grpc.sock',
    ]);
  });

  it.each(['/run/a,b.sock', '/run/a:b.sock', '/run/a b.sock', '', "/run/a'b", '/run/a!!b'])(
    'refuses a path socat would misparse: %j',
    (path) => {
      expect(() => hostVsockBridgeArgv(path, { cid: 3, port: 1 })).toThrow(/socat safely/);
      expect(() => guestVsockBridgeArgv(1, path)).toThrow(/socat safely/);
    },
  );

  it.each([
    [{ cid: -1, port: 1 }, /cid -1/],
    [{ cid: 2 ** 32, port: 1 }, /cid 4294967296/],
    [{ cid: 3, port: 1.5 }, /port 1.5/],
  ])('refuses out-of-range numbers %j', (target, message) => {
    expect(() => hostVsockBridgeArgv('/run/a.sock', target)).toThrow(message);
  });
});
