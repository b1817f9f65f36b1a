import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { capConsoleLog } from '../../../src/node-agent/runtime/console-cap.js';

let dir: string;
let server: Server | undefined;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'console-cap-'));
});
afterEach(() => {
  server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const listen = (sock: string) =>
  new Promise<void>((resolve) => {
    server = createServer().listen(sock, resolve);
  });

describe('capConsoleLog', () => {
  it('past the cap: the log goes to .1 and starts again; appends land at the new end', async () => {
    const file = path.join(dir, 'console.log');
    const sock = path.join(dir, 'console.sock');
    await listen(sock);
    writeFileSync(file, 'a'.repeat(50));
    expect(await capConsoleLog(file, sock, 100)).toBe(false);
    appendFileSync(file, 'b'.repeat(60));
    expect(await capConsoleLog(file, sock, 100)).toBe(true);
    expect(readFileSync(`${file}.1`, 'utf8')).toBe('a'.repeat(50) + 'b'.repeat(60));
    appendFileSync(file, 'next\n');
    expect(readFileSync(file, 'utf8')).toBe('next\n');
  });

  it('leaves alone a console without the socket (a QEMU that does not append)', async () => {
    const file = path.join(dir, 'console.log');
    writeFileSync(file, 'x'.repeat(500));
    expect(await capConsoleLog(file, path.join(dir, 'console.sock'), 100)).toBe(false);
    expect(existsSync(`${file}.1`)).toBe(false);
  });
});
