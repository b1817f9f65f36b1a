// Kata 1.x's own .proto files (from the 1.x source tree on this machine: peer-binaries.ts) against what the unit layer
// holds proto/ to: the field table in test/fixtures/kata1-fields.txt, and the golden bytes of
// test/unit/agent/wire-golden-cases.ts, re-encoded here by protoc from 1.x's definitions.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { descriptorSet, fieldTable, rowText } from '../unit/agent/proto-fields.js';
import { cases } from '../unit/agent/wire-golden-cases.js';
import { kata1SourceTree } from './peer-binaries.js';

const TREE = kata1SourceTree();
const RUNS = 'path' in TREE;

const REPO = path.resolve(import.meta.dirname, '../..');
let protoDir: string;

/**
 * 1.x's protos without their gogoproto options (Go code generation hints: no field's name, number
 * or type depends on them), laid out so their imports resolve.
 */
function kata1Protos(tree: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'kata1-protos-'));
  const typesDir = path.join(dir, 'github.com/kata-containers/agent/pkg/types');
  mkdirSync(typesDir, { recursive: true });
  const files: [string, string][] = [
    ...['agent', 'health', 'oci'].map((f): [string, string] => [
      path.join(tree, `protocols/grpc/${f}.proto`),
      path.join(dir, `${f}.proto`),
    ]),
    [path.join(tree, 'pkg/types/types.proto'), path.join(typesDir, 'types.proto')],
  ];
  for (const [from, to] of files) {
    copyFileSync(from, to);
    const text = readFileSync(to, 'utf8')
      .replace(/^import "github\.com\/gogo\/[^\n]*\n/gm, '')
      .replace(/^option \(gogoproto[^\n]*\n/gm, '')
      .replace(/\s*\[\(gogoproto[^\]]*\]/g, '');
    writeFileSync(to, text);
  }
  return dir;
}

beforeAll(() => {
  if (!('path' in TREE)) return;
  const tree = TREE.path;
  protoDir = kata1Protos(tree);
}, 20 * 60_000);

afterAll(() => {
  if (protoDir) rmSync(protoDir, { recursive: true, force: true });
});

(RUNS ? describe : describe.skip)(
  "Kata 1.x's protocol definitions" +
    (RUNS ? '' : ` — skipped: ${(TREE as { missing: string }).missing}`),
  () => {
    it('have the field table the unit layer holds proto/ to', () => {
      const table = fieldTable(
        descriptorSet(
          [protoDir, '/usr/include'],
          ['agent.proto', 'health.proto', 'oci.proto'].map((f) => path.join(protoDir, f)),
        ),
      ).map(rowText);
      const fixture = readFileSync(path.join(REPO, 'test/fixtures/kata1-fields.txt'), 'utf8')
        .split('\n')
        .filter((l) => l !== '' && !l.startsWith('#'));
      expect(table).toEqual(fixture);
    });

    it('encode every golden case shared with 1.x to the golden bytes', () => {
      const shared = cases.filter((c) => !c.oursOnly);
      expect(shared.length).toBeGreaterThan(20);
      for (const c of shared) {
        const out = execFileSync(
          'protoc',
          [
            '-I',
            protoDir,
            '-I',
            '/usr/include',
            `--encode=${c.type}`,
            'agent.proto',
            'health.proto',
            'oci.proto',
          ],
          { input: c.text, cwd: protoDir, timeout: 10_000 },
        );
        expect([c.type, out.toString('hex')]).toEqual([c.type, c.hex]);
      }
    });
  },
);
