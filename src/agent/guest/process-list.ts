// ListProcesses as Kata 1.x answers it: "json" is the container's pids as a JSON array; "table" is
// `ps` output (default args -ef) cut to its header and the lines whose PID column is one of them.
import { invalidArgument } from './status-error.js';

const PS_ARG_RE = /^[A-Za-z0-9,=_%:+-]{1,64}$/;

/** The argv for `ps`; each argument checked (they come from the host). */
export function psArgv(args: string[]): string[] {
  args.forEach((a, i) => {
    if (!PS_ARG_RE.test(a))
      throw invalidArgument(`args[${i}] ${JSON.stringify(a)} is not a ps option`);
  });
  return ['ps', ...(args.length > 0 ? args : ['-ef'])];
}

/** The header and the lines of `pids`, from `ps` output. */
export function filterPsOutput(output: string, pids: readonly number[]): string {
  const lines = output.split('\n');
  const header = lines[0] ?? '';
  const pidColumn = header.trim().split(/\s+/).indexOf('PID');
  if (pidColumn < 0) throw new Error('ps output has no PID column');
  const wanted = new Set(pids);
  const kept = lines.slice(1).filter((line) => {
    if (line.trim() === '') return false;
    const pid = Number(line.trim().split(/\s+/)[pidColumn]);
    return wanted.has(pid);
  });
  return [header, ...kept].map((l) => `${l}\n`).join('');
}
