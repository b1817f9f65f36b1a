// docs/operations.md's configuration reference covers every flag (and its environment variable)
// of both components, as their --help texts list them.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONTROLLER_HELP } from '../../../src/controllers/controller-config.js';
import { NODE_AGENT_HELP } from '../../../src/node-agent/config.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(path.join(REPO, 'docs/operations.md'), 'utf8');

/** `--flag` ... `[ENV]` pairs of a help text (a flag's description may wrap onto the next line). */
function flags(help: string): { flag: string; env: string }[] {
  const out: { flag: string; env: string }[] = [];
  for (const m of help.matchAll(/^ {2}--([a-z-]+)[\s\S]*?\[([A-Z_]+)\]/gm)) {
    out.push({ flag: `--${m[1] ?? ''}`, env: m[2] ?? '' });
  }
  return out;
}

describe('docs/operations.md', () => {
  for (const [component, help] of [
    ['kata-controller', CONTROLLER_HELP],
    ['kata-node-agent', NODE_AGENT_HELP],
  ] as const) {
    it(`documents every setting of ${component}`, () => {
      const list = flags(help);
      expect(list.length).toBeGreaterThan(5);
      for (const { flag, env } of list) {
        // A table row: | `--flag` | `ENV` | ... (or, for --config, the text around it).
        const row = DOC.includes(`| \`${flag}\` | \`${env}\` |`);
        const prose = DOC.includes(`\`${flag} PATH\` [\`${env}\`]`);
        expect({ flag, env, documented: row || prose }).toEqual({ flag, env, documented: true });
      }
    });
  }
});
