import { describe, expect, it } from '@jest/globals';
import {
  CHANNEL,
  chooseProtocol,
  exitCodeOf,
  exitStatus,
  frame,
  parseIncoming,
  parseStreamOptions,
  streamOptionsQuery,
} from '../../../src/subresources/stream-protocol.js';

describe('the v5.channel.k8s.io protocol', () => {
  it('answers with v5 when offered, v4 otherwise, nothing else', () => {
    expect(chooseProtocol(['v4.channel.k8s.io', ' v5.channel.k8s.io'])).toBe('v5.channel.k8s.io');
    expect(chooseProtocol(['v4.channel.k8s.io'])).toBe('v4.channel.k8s.io');
    expect(chooseProtocol(['channel.k8s.io', 'base64.channel.k8s.io'])).toBeUndefined();
  });

  it('frames a channel byte then the data, and reads stdin, resize and close back', () => {
    expect([...frame(CHANNEL.stdout, 'hi')]).toEqual([1, 0x68, 0x69]);
    expect(parseIncoming(frame(CHANNEL.stdin, 'abc'))).toEqual({
      kind: 'stdin',
      data: Buffer.from('abc'),
    });
    expect(parseIncoming(frame(CHANNEL.resize, '{"Width":120,"Height":40}'))).toEqual({
      kind: 'resize',
      width: 120,
      height: 40,
    });
    expect(parseIncoming(frame(CHANNEL.close, Buffer.from([0])))).toEqual({
      kind: 'close',
      channel: 0,
    });
    expect(parseIncoming(frame(CHANNEL.resize, '{"Width":-1,"Height":2}')).kind).toBe('invalid');
    expect(parseIncoming(frame(CHANNEL.resize, 'nope')).kind).toBe('invalid');
    expect(parseIncoming(frame(CHANNEL.close, Buffer.from([0, 1]))).kind).toBe('invalid');
    expect(parseIncoming(frame(7, 'x')).kind).toBe('ignored');
    expect(parseIncoming(Buffer.alloc(0)).kind).toBe('ignored');
  });

  it('reports the exit code as kubelet does, and reads it back as kubectl does', () => {
    expect(exitStatus(0)).toEqual({ metadata: {}, status: 'Success' });
    expect(exitStatus(3)).toMatchObject({
      status: 'Failure',
      reason: 'NonZeroExitCode',
      details: { causes: [{ reason: 'ExitCode', message: '3' }] },
    });
    expect(exitCodeOf(exitStatus(0))).toEqual({ code: 0 });
    expect(exitCodeOf(exitStatus(137))).toEqual({ code: 137 });
    expect(exitCodeOf({ status: 'Failure', message: 'boom' })).toEqual({
      code: 1,
      message: 'boom',
    });
  });
});

describe("exec and attach options (Pods')", () => {
  const q = (s: string) => new URLSearchParams(s);

  it('takes container, repeated command, stdin, stdout, stderr, tty', () => {
    const r = parseStreamOptions(
      q('container=main&command=sh&command=-c&command=echo+1&stdin=true&stdout=true&stderr=1'),
      'exec',
    );
    expect(r).toEqual({
      ok: true,
      value: {
        container: 'main',
        command: ['sh', '-c', 'echo 1'],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
      },
    });
    if (r.ok) expect(parseStreamOptions(q(streamOptionsQuery(r.value)), 'exec')).toEqual(r);
  });

  it('a terminal merges stderr into stdout', () => {
    const r = parseStreamOptions(q('command=sh&stdout=true&stderr=true&tty=true'), 'exec');
    expect(r.ok && r.value).toMatchObject({ tty: true, stderr: false, stdout: true });
  });

  it('refuses what is wrong, naming the field', () => {
    const msg = (s: string, sub: 'exec' | 'attach' = 'exec') => {
      const r = parseStreamOptions(q(s), sub);
      return r.ok ? 'ok' : r.message;
    };
    expect(msg('stdout=true')).toMatch(/^command: /);
    expect(msg('command=ls')).toMatch(/at least 1 of stdin, stdout, stderr/);
    expect(msg('command=ls&stdout=yes')).toMatch(/^stdout: "yes" is not a boolean/);
    expect(msg('command=ls&stdout=1&container=Bad_Name')).toMatch(/^container: /);
    expect(msg('command=a%00b&stdout=1')).toMatch(/^command: contains a NUL/);
    expect(msg('command=ls&stdout=1', 'attach')).toMatch(/^command: attach takes no command/);
    expect(msg('stdout=1', 'attach')).toBe('ok');
  });
});
