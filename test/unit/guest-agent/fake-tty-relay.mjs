#!/usr/bin/env node
// A stand-in for kata-tty-relay (guest/tty-relay) in unit tests: no terminal (Node.js cannot make
// one), the same interface. It runs the command after `--` with its stdin, stdout and stderr
// merged into its stdout, says "ready" on fd 3 once the command runs, answers each size line on
// fd 3 with "ok" (recording it in <console socket>.sizes) or "error ...", and exits with the
// command's status.
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { constants } from 'node:os';

const args = process.argv.slice(2);
const sep = args.indexOf('--');
if (args[0] !== '--console-socket' || sep !== 2 || args.length < 4) {
  process.stdout.write('fake-tty-relay: usage: --console-socket PATH -- COMMAND...\n');
  process.exit(125);
}
const socket = args[1];
const [file, ...rest] = args.slice(sep + 1);
// A socket, not an fs stream: a blocking read of fd 3 in the thread pool would hold the exit.
const control = new Socket({ fd: 3, readable: true, writable: true });
const child = spawn(file, rest, { stdio: ['pipe', 'pipe', 'pipe'] });
child.stdout.pipe(process.stdout, { end: false });
child.stderr.pipe(process.stdout, { end: false });
process.stdin.pipe(child.stdin);
child.stdin.on('error', () => {});
child.on('spawn', () => control.write('ready\n'));
let pending = '';
control.on('data', (chunk) => {
  pending += chunk.toString();
  let i;
  while ((i = pending.indexOf('\n')) >= 0) {
    const line = pending.slice(0, i);
    pending = pending.slice(i + 1);
    if (/^\d{1,5} \d{1,5}$/.test(line)) {
      appendFileSync(`${socket}.sizes`, `${line}\n`);
      control.write('ok\n');
    } else control.write(`error bad size line ${JSON.stringify(line)}\n`);
  }
});
// Exit once the command exited and its output is through.
const ended = (s) => new Promise((resolve) => s.on('end', resolve));
const exited = new Promise((resolve) =>
  child.on('exit', (code, signal) => resolve([code, signal])),
);
Promise.all([exited, ended(child.stdout), ended(child.stderr)]).then(([[code, signal]]) =>
  process.exit(code ?? 128 + constants.signals[signal]),
);
