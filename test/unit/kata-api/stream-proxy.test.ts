import { describe, expect, it } from '@jest/globals';
import { switchingProtocols, upstreamUpgradeHeaders } from '../../../src/kata-api/stream-proxy.js';

describe("kata-api's carrying of a WebSocket upgrade", () => {
  it("asks the node agent with its own token and the client's key and subprotocols, nothing else", () => {
    const h = upstreamUpgradeHeaders(
      {
        'sec-websocket-key': 'k3y==',
        'sec-websocket-protocol': 'v5.channel.k8s.io, v4.channel.k8s.io',
        'x-remote-user': 'alice',
        cookie: 'c',
        authorization: 'Bearer users-token',
      },
      'kata-api-token',
    );
    expect(h).toEqual({
      Authorization: 'Bearer kata-api-token',
      Connection: 'Upgrade',
      Upgrade: 'websocket',
      'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': 'k3y==',
      'Sec-WebSocket-Protocol': 'v5.channel.k8s.io, v4.channel.k8s.io',
    });
  });

  it("answers the client with the node agent's accept and chosen subprotocol", () => {
    expect(
      switchingProtocols({
        'sec-websocket-accept': 'acc=',
        'sec-websocket-protocol': 'v5.channel.k8s.io',
        'x-other': 'no',
      }),
    ).toBe(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Accept: acc=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n',
    );
  });
});
