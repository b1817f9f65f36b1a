// What a recording CommandRunner returns for a command it did not run: exit 0 with this stdout.
import type { CommandResult } from '../../../src/common/run-command.js';

export function ran(argv: readonly string[], stdout = ''): CommandResult {
  return {
    argv,
    code: 0,
    signal: null,
    stdout: Buffer.from(stdout),
    stderr: '',
    timedOut: false,
    aborted: false,
  };
}
