import { describe, expect, it } from '@jest/globals';
import { parseAgentAddress } from '../../../src/agent/agent-address.js';

describe('parseAgentAddress', () => {
  it('parses vsock://cid:port (which the seed misread by splitting on every colon)', () => {
    expect(parseAgentAddress('vsock://3:1024', '/run/s')).toEqual({
      kind: 'vsock',
      cid: 3,
      port: 1024,
    });
    expect(parseAgentAddress('vsock://4294967295:0', '/run/s')).toEqual({
      kind: 'vsock',
      cid: 4294967295,
      port: 0,
    });
  });

  it.each([
    ['vsock://3', /found 1 part/],
    ['vsock://3:1024:5', /found 3 part/],
    ['vsock://', /found 1 part/],
    ['vsock://x:1024', /cid "x"/],
    ['vsock://-1:1024', /cid "-1"/],
    ['vsock://4294967296:1024', /cid "4294967296" .* not a 32-bit unsigned number/],
    ['vsock://3:', /port ""/],
    ['vsock://3:65536x', /port "65536x"/],
    ['vsock://3:99999999999', /port "99999999999"/],
  ])('refuses %s naming the bad part', (url, message) => {
    expect(() => parseAgentAddress(url, '/run/s')).toThrow(message);
    expect(() => parseAgentAddress(url, '/run/s')).toThrow(/^agentAddress: /);
  });

  it('uses the serial channel for anything else, with sockets in the sandbox run dir', () => {
    expect(parseAgentAddress('', '/run/kata/sb1')).toEqual({
      kind: 'serial',
      channelSocket: '/run/kata/sb1/agent-channel.sock',
      grpcSocket: '/run/kata/sb1/agent.sock',
      channelName: 'agent.channel.0',
      deviceId: 'channel0',
      chardevId: 'charch0',
    });
  });

  it('refuses a relative run dir', () => {
    expect(() => parseAgentAddress('', 'run/sb1')).toThrow(/sandboxRunDir/);
  });
});
