import { describe, expect, it } from '@jest/globals';
import {
  encodeLiterals,
  HpackDecoder,
  HpackError,
  huffmanDecode,
} from '../../../src/agent/transport/hpack.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('HPACK decoder', () => {
  it('decodes RFC 7541 C.4 (requests with Huffman), keeping the dynamic table across blocks', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    expect(d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
      ['cache-control', 'no-cache'],
    ]);
    expect(d.decode(hex('8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/index.html'],
      [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ]);
  });

  it('decodes RFC 7541 C.3 (the same requests, plain strings)', () => {
    const d = new HpackDecoder();
    d.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'));
    expect(d.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865'))).toContainEqual([
      'cache-control',
      'no-cache',
    ]);
  });

  it('evicts the oldest entries once the table is full, and a size update shrinks it', () => {
    const d = new HpackDecoder(100);
    // Two literal-with-indexing fields of 32 + 1 + 30 = 63 octets: the second evicts the first.
    const lit = (v: string) =>
      Buffer.concat([Buffer.from([0x40, 1, 0x61, v.length]), Buffer.from(v)]);
    d.decode(lit('x'.repeat(30)));
    d.decode(lit('y'.repeat(30)));
    expect(d.decode(Buffer.from([0xbe]))).toEqual([['a', 'y'.repeat(30)]]);
    expect(() => d.decode(Buffer.from([0xbf]))).toThrow(HpackError);
    d.decode(Buffer.from([0x20])); // size update to 0
    expect(() => d.decode(Buffer.from([0xbe]))).toThrow(/not in the table/);
    expect(() => d.decode(Buffer.from([0x3f, 0x46]))).toThrow(/over 100/); // 31 + 70 = 101
  });

  it('refuses bad Huffman padding, truncated strings and unknown indexes', () => {
    expect(() => huffmanDecode(hex('f1e3c2e5f23a6ba0ab90f4fe'))).toThrow(HpackError);
    expect(() => huffmanDecode(hex('ffffffff'))).toThrow(HpackError);
    expect(() => new HpackDecoder().decode(hex('0003 6162'))).toThrow(/truncated/);
    expect(() => new HpackDecoder().decode(hex('c0'))).toThrow(/not in the table/);
  });

  it('encodes literals without indexing that it decodes back', () => {
    const fields: [string, string][] = [
      [':authority', 'unix:%2F%2F%2Frun%2Fa.sock'],
      ['x-long', 'v'.repeat(300)],
    ];
    const block = encodeLiterals(fields);
    expect(block[0]).toBe(0x00);
    expect(new HpackDecoder().decode(block)).toEqual(fields);
  });
});
