// Our encoder against the golden bytes (wire-golden-cases.ts), and proto/ against Kata 1.x's field
// table (test/fixtures/kata1-fields.txt): a wrong field number or type in proto/, or a stale
// src/generated/, shows up here as a byte or row difference.
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cases } from './wire-golden-cases.js';
import { descriptorSet, fieldTable, parseRow, rowText, type FieldRow } from './proto-fields.js';

const REPO = path.resolve(import.meta.dirname, '../../..');
const PROTO_FILES = ['agent', 'health', 'oci', 'types'].map((f) => `proto/${f}.proto`);
/** Fields of ours in messages 1.x has, at numbers 1.x never used there (docs/architecture.md). */
const OURS_BEYOND_KATA1 = [
  'grpc.GuestDetailsResponse 100 guest_memory optional grpc.GuestMemory',
  'types.Route 6 family optional types.IPFamily',
  'types.Route 7 flags optional uint32',
  'types.Route 8 mtu optional uint32',
];
/** Messages of ours 1.x does not have, each only reached through a field listed above. */
const OUR_MESSAGES = ['grpc.GuestMemory'];

function kata1Table(): FieldRow[] {
  return readFileSync(path.join(REPO, 'test/fixtures/kata1-fields.txt'), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map(parseRow);
}

const hexOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('agent protocol wire format', () => {
  it.each(cases.map((c) => [c.type, c] as const))('%s encodes to the golden bytes', (_t, c) => {
    const message = c.codec.fromPartial(c.value);
    expect(hexOf(c.codec.encode(message).finish())).toBe(c.hex);
  });

  it.each(cases.map((c) => [c.type, c] as const))('%s decodes the golden bytes', (_t, c) => {
    const decoded = c.codec.decode(Buffer.from(c.hex, 'hex'));
    expect(decoded).toEqual(c.codec.fromPartial(c.value));
  });

  it("proto/ has Kata 1.x's name, number and type for every field both have, and all of 1.x's", () => {
    const ours = fieldTable(descriptorSet(['proto', '/usr/include'], PROTO_FILES));
    const kata1 = kata1Table();
    const key = (r: FieldRow): string => `${r.message} ${r.number}`;
    const kata1ByKey = new Map(kata1.map((r) => [key(r), r]));
    const kata1Messages = new Set(kata1.map((r) => r.message));
    // Every message of ours is one of 1.x's, or one of the listed own ones.
    expect([...new Set(ours.map((r) => r.message))].filter((m) => !kata1Messages.has(m))).toEqual(
      OUR_MESSAGES,
    );
    // Same number: same name, label and type; a number 1.x never used: a listed difference.
    const shared = ours.filter((r) => !OUR_MESSAGES.includes(r.message));
    const differing = shared.filter((r) => {
      const k = kata1ByKey.get(key(r));
      return k ? rowText(k) !== rowText(r) : !OURS_BEYOND_KATA1.includes(rowText(r));
    });
    expect(differing.map(rowText)).toEqual([]);
    expect(shared.filter((r) => !kata1ByKey.has(key(r))).map(rowText)).toEqual(OURS_BEYOND_KATA1);
    // A message we declare has every field 1.x gives it (none silently dropped on receipt).
    const oursKeys = new Set(ours.map(key));
    const ourMessages = new Set(ours.map((r) => r.message));
    const missing = kata1.filter((r) => ourMessages.has(r.message) && !oursKeys.has(key(r)));
    expect(missing.map(rowText)).toEqual([]);
  });

  // protoc (Debian protobuf-compiler) is installed by `make setup`, as for `make gen`.
  it('the golden bytes are what protoc --encode makes of the text form', () => {
    for (const c of cases) {
      const out = execFileSync(
        'protoc',
        ['-I', 'proto', '-I', '/usr/include', `--encode=${c.type}`, ...PROTO_FILES],
        { input: c.text, timeout: 10_000 },
      );
      expect([c.type, hexOf(out)]).toEqual([c.type, c.hex]);
    }
  });
});
