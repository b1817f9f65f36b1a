#!/usr/bin/env node
// A stand-in for crun on the host (unit tests only): runs config.json's / the process file's args
// as a plain child with inherited stdio, writes the pid file, forwards signals, and answers
// kill/delete from a state directory. It checks the arguments the agent passes as crun would.
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { constants } from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
if (args[0] !== '--root') fail('expected --root first');
const root = args[1];
mkdirSync(root, { recursive: true });
const [cmd, ...rest] = args.slice(2);
appendFileSync(path.join(root, 'calls.log'), `${JSON.stringify([cmd, ...rest])}\n`);

function fail(msg) {
  process.stderr.write(`fake-crun: ${msg}\n`);
  process.exit(1);
}
function flag(name) {
  const i = rest.indexOf(name);
  if (i < 0) fail(`missing ${name}`);
  return rest[i + 1];
}
const id = rest[rest.length - 1];
const pidsFile = path.join(root, `${id}.pids`);

function runProcess(proc, pidFile) {
  const env = Object.fromEntries(
    proc.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
  );
  const child = spawn(proc.args[0], proc.args.slice(1), { stdio: 'inherit', env });
  child.on('spawn', () => {
    writeFileSync(pidFile, String(child.pid));
    appendFileSync(pidsFile, `${child.pid}\n`);
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1']) {
    process.on(sig, () => child.kill(sig));
  }
  child.on('exit', (code, signal) => process.exit(code ?? 128 + constants.signals[signal]));
}

switch (cmd) {
  case 'run': {
    const config = JSON.parse(readFileSync(path.join(flag('--bundle'), 'config.json'), 'utf8'));
    writeFileSync(path.join(root, `${id}.init`), '');
    runProcess(config.process, flag('--pid-file'));
    break;
  }
  case 'exec': {
    if (!existsSync(path.join(root, `${id}.init`))) fail(`container ${id} does not exist`);
    runProcess(JSON.parse(readFileSync(flag('--process'), 'utf8')), flag('--pid-file'));
    break;
  }
  case 'kill': {
    const sig = rest[rest.length - 1];
    const cid = rest[rest.length - 2];
    const all = rest.includes('--all');
    const pids = readFileSync(path.join(root, `${cid}.pids`), 'utf8')
      .trim()
      .split('\n')
      .map(Number);
    for (const pid of all ? pids : pids.slice(0, 1)) {
      try {
        process.kill(pid, `SIG${sig}`);
      } catch {
        // gone
      }
    }
    break;
  }
  case 'delete': {
    rmSync(path.join(root, `${id}.init`), { force: true });
    rmSync(pidsFile, { force: true });
    break;
  }
  default:
    fail(`unknown command ${cmd}`);
}
