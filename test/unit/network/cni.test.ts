// The CNI runtime side against stand-in plugins (shell scripts that record their environment and
// stdin): environment, stdin config (name/cniVersion injected, prevResult chained), result
// parsing, the error format, DEL after a failed ADD, and conflist loading.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CniError,
  CniNetwork,
  cniAddList,
  cniDelList,
  cniEnv,
  loadConfList,
  parseConfList,
  parsePluginOutput,
  pluginConfig,
  type CniConfList,
} from '../../../src/node-agent/network/cni.js';
import type { RunResult } from '../../../src/node-agent/network/exec.js';

let dir: string;
let bin: string;
let log: string;
let conf: string;

// Records "<type> <CNI_COMMAND>" + env + stdin, then answers like a plugin would.
const plugin = (type: string, body: string): void => {
  const p = path.join(bin, type);
  writeFileSync(
    p,
    `#!/bin/sh
n=$(ls "${log}" | wc -l)
f="${log}/$(printf %03d "$n")-${type}-$CNI_COMMAND"
env | grep '^CNI_' | sort > "$f.env"
cat > "$f.json"
${body}
`,
  );
  chmodSync(p, 0o755);
};

const list: CniConfList = {
  cniVersion: '1.0.0',
  name: 'testnet',
  plugins: [
    { type: 'first', extra: 1 },
    { type: 'second', nested: { a: [1, 2] } },
  ],
};
const rt = { containerId: 'abc', netns: '/run/netns/kata-abc', ifName: 'eth0' };

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'cni-unit-'));
  bin = path.join(dir, 'bin');
  log = path.join(dir, 'log');
  conf = path.join(dir, 'net.d');
  for (const d of [bin, log, conf]) mkdirSync(d);
  plugin(
    'first',
    `[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"'$CNI_NETNS'"}],"ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1","interface":0}]}'
exit 0`,
  );
  plugin(
    'second',
    `[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}],"dns":{"nameservers":["10.1.0.10"]}}'
exit 0`,
  );
  plugin(
    'failing',
    `if [ "$CNI_COMMAND" = ADD ]; then echo '{"cniVersion":"1.0.0","code":11,"msg":"no addresses left","details":"range 10.1.0.0/30 is full"}'; exit 1; fi
exit 0`,
  );
  plugin('garbage', `echo 'panic: runtime error' >&2; exit 2`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const calls = (): { name: string; env: Record<string, string>; stdin: Record<string, unknown> }[] =>
  readdirSync(log)
    .filter((f) => f.endsWith('.env'))
    .sort()
    .map((f) => {
      const base = f.slice(0, -4);
      const env = Object.fromEntries(
        readFileSync(path.join(log, f), 'utf8')
          .trim()
          .split('\n')
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      return {
        name: base.slice(4),
        env,
        stdin: JSON.parse(readFileSync(path.join(log, `${base}.json`), 'utf8')) as Record<
          string,
          unknown
        >,
      };
    });
const clearLog = (): void => {
  for (const f of readdirSync(log)) rmSync(path.join(log, f));
};

describe('CNI invocation', () => {
  it('env: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH, CNI_ARGS', () => {
    expect(
      cniEnv(
        'ADD',
        { ...rt, args: { K8S_POD_NAME: 'p', IgnoreUnknown: '1' } },
        ['/a', '/b'],
        '/bin',
      ),
    ).toEqual({
      PATH: '/bin',
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'abc',
      CNI_NETNS: '/run/netns/kata-abc',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/a:/b',
      CNI_ARGS: 'K8S_POD_NAME=p;IgnoreUnknown=1',
    });
  });

  it('stdin config: name and cniVersion injected, prevResult only when given', () => {
    expect(pluginConfig(list, 0)).toEqual({
      type: 'first',
      extra: 1,
      name: 'testnet',
      cniVersion: '1.0.0',
    });
    expect(pluginConfig(list, 1, { ips: [] })).toEqual({
      type: 'second',
      nested: { a: [1, 2] },
      name: 'testnet',
      cniVersion: '1.0.0',
      prevResult: { ips: [] },
    });
  });

  it('ADD chains prevResult plugin to plugin; DEL runs in reverse with the cached result', async () => {
    clearLog();
    const result = await cniAddList(list, rt, { binDirs: [path.join(dir, 'none'), bin] });
    expect(result).toMatchObject({ dns: { nameservers: ['10.1.0.10'] } });
    const add = calls();
    expect(add.map((c) => c.name)).toEqual(['first-ADD', 'second-ADD']);
    expect(add[0]!.env).toEqual({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'abc',
      CNI_NETNS: '/run/netns/kata-abc',
      CNI_IFNAME: 'eth0',
      CNI_PATH: `${path.join(dir, 'none')}:${bin}`,
    });
    expect(add[0]!.stdin).toEqual({
      type: 'first',
      extra: 1,
      name: 'testnet',
      cniVersion: '1.0.0',
    });
    expect(add[1]!.stdin['prevResult']).toMatchObject({
      ips: [{ address: '10.1.0.2/24', gateway: '10.1.0.1' }],
    });

    clearLog();
    expect(await cniDelList(list, rt, result, { binDirs: [bin] })).toEqual([]);
    const del = calls();
    expect(del.map((c) => c.name)).toEqual(['second-DEL', 'first-DEL']);
    expect(del[0]!.stdin['prevResult']).toEqual(result);
  });

  it('error format: {code, msg, details} becomes a CniError whose message carries them', () => {
    const out = '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"bad subnet"}';
    let err: unknown;
    try {
      parsePluginOutput('bridge', 'ADD', 1, out, '');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CniError);
    expect(err).toMatchObject({
      plugin: 'bridge',
      command: 'ADD',
      code: 7,
      msg: 'invalid config',
      details: 'bad subnet',
    });
    expect((err as Error).message).toBe(
      'CNI plugin bridge ADD failed (code 7): invalid config (bad subnet)',
    );
    expect(() => parsePluginOutput('x', 'DEL', 2, '', 'panic: boom')).toThrow(
      /x DEL failed \(code 999\): panic: boom/,
    );
    expect(() => parsePluginOutput('x', 'ADD', 0, 'not json', '')).toThrow(/result is not JSON/);
    expect(parsePluginOutput('x', 'DEL', 0, '', '')).toBeUndefined();
  });

  it('a missing plugin is a CniError naming it and the search path', async () => {
    await expect(
      cniAddList({ ...list, plugins: [{ type: 'nosuch' }] }, rt, { binDirs: [bin] }),
    ).rejects.toThrow(/plugin "nosuch" not found in /);
  });

  it('plugins run from the node namespace through nsenter', async () => {
    const seen: string[][] = [];
    const run = async (cmd: string, args: readonly string[]): Promise<RunResult> => {
      seen.push([cmd, ...args]);
      return { code: 0, signal: null, stdout: '', stderr: '' };
    };
    await cniDelList(list, rt, undefined, { binDirs: [bin], nodeNetns: '/run/netns/node', run });
    expect(seen).toEqual([
      ['nsenter', '--net=/run/netns/node', '--', path.join(bin, 'second')],
      ['nsenter', '--net=/run/netns/node', '--', path.join(bin, 'first')],
    ]);
  });
});

describe('CniNetwork', () => {
  it('a failing ADD: its message reaches the caller, DEL runs for every plugin, the netns goes', async () => {
    writeFileSync(
      path.join(conf, '10-test.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'failnet',
        plugins: [{ type: 'first' }, { type: 'failing' }],
      }),
    );
    const netnsDir = path.join(dir, 'netns');
    mkdirSync(netnsDir);
    const ipCalls: string[][] = [];
    const run = async (
      cmd: string,
      args: readonly string[],
      o: { timeoutMs: number; input?: string; env?: NodeJS.ProcessEnv },
    ): Promise<RunResult> => {
      if (cmd === 'ip') {
        ipCalls.push([cmd, ...args]);
        const f = path.join(netnsDir, args[2]!);
        if (args[1] === 'add') writeFileSync(f, '');
        else rmSync(f, { force: true });
        return { code: 0, signal: null, stdout: '', stderr: '' };
      }
      const { runCommand } = await import('../../../src/node-agent/network/exec.js');
      return runCommand(cmd, args, o);
    };
    clearLog();
    const net = new CniNetwork({ confDir: conf, binDirs: [bin], netnsDir, run });
    await expect(net.setup('uid1')).rejects.toThrow(
      'CNI plugin failing ADD failed (code 11): no addresses left (range 10.1.0.0/30 is full)',
    );
    expect(calls().map((c) => c.name)).toEqual([
      'first-ADD',
      'failing-ADD',
      'failing-DEL',
      'first-DEL',
    ]);
    expect(ipCalls).toEqual([
      ['ip', 'netns', 'add', 'kata-uid1'],
      ['ip', 'netns', 'del', 'kata-uid1'],
    ]);
    expect(existsSync(path.join(netnsDir, 'kata-uid1'))).toBe(false);
  });
});

describe('conflist', () => {
  it('loads the first file in lexical order, or the named network; a .conf is one plugin', async () => {
    const d = path.join(dir, 'net.d2');
    mkdirSync(d);
    writeFileSync(
      path.join(d, '20-b.conf'),
      JSON.stringify({ cniVersion: '0.4.0', name: 'b', type: 'bridge', bridge: 'br0' }),
    );
    writeFileSync(
      path.join(d, '10-a.conflist'),
      JSON.stringify({ cniVersion: '1.0.0', name: 'a', plugins: [{ type: 'loopback' }] }),
    );
    writeFileSync(path.join(d, 'README'), 'not a config');
    expect((await loadConfList(d)).name).toBe('a');
    const b = await loadConfList(d, 'b');
    expect(b.plugins).toEqual([{ type: 'bridge', bridge: 'br0' }]);
    await expect(loadConfList(d, 'c')).rejects.toThrow(/no network named "c"/);
    await expect(loadConfList(path.join(dir, 'missing'))).rejects.toThrow(/CNI config dir/);
  });

  it('refuses broken lists naming the file', () => {
    expect(() => parseConfList('{', 'f')).toThrow(/^f: not JSON/);
    expect(() => parseConfList('{"cniVersion":"1.0.0","plugins":[]}', 'f')).toThrow(/"name"/);
    expect(() => parseConfList('{"name":"n","cniVersion":"1.0.0","plugins":[]}', 'f')).toThrow(
      /plugins/,
    );
    expect(() =>
      parseConfList('{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../x"}]}', 'f'),
    ).toThrow(/type/);
  });
});
