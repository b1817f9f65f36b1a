// The soak's CNI setup for mode `cni`: a "node" network namespace of its own holding the bridge,
// a config dir with one network (the bridge plugin + host-local IPAM, loopback), and in front of
// the bridge plugin a wrapper the soak switches to fail or hang (the `cni-fail` / `cni-hang`
// faults). Nothing in the machine's own namespace; everything under the soak's scratch dir.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type CniMode = 'ok' | 'fail' | 'hang';

/** The plugin the soak's network config names first: the bridge plugin, unless told otherwise. */
const WRAPPER = `#!/bin/sh
# The soak's CNI plugin: Debian's bridge plugin, unless the soak switched it (its fault) to fail
# (a CNI error on stdout, exit 1) or to hang (until the node agent's deadline kills it).
case "$(cat "$0.mode" 2>/dev/null)" in
fail)
  echo '{"cniVersion":"1.0.0","code":11,"msg":"soak: this CNI plugin fails on purpose"}'
  exit 1
  ;;
hang) exec sleep 3600 ;;
esac
exec /usr/lib/cni/bridge
`;

export class SoakCni {
  readonly nodeNetns: string;
  readonly bridge: string;
  readonly confDir: string;
  readonly binDir: string;
  readonly ipamDir: string;
  readonly network = 'soaknet';
  private made = false;

  constructor(base: string, tag: string) {
    this.nodeNetns = `soak-${tag}-node`;
    this.bridge = `ksoak${tag}`.slice(0, 15);
    this.confDir = path.join(base, 'net.d');
    this.binDir = path.join(base, 'cni-bin');
    this.ipamDir = path.join(base, 'ipam');
  }

  get nodeNetnsPath(): string {
    return `/run/netns/${this.nodeNetns}`;
  }

  /** The node agent's flags for this setup. */
  agentArgs(): string[] {
    return [
      ...['--cni-conf-dir', this.confDir],
      ...['--cni-bin-dirs', `${this.binDir},/usr/lib/cni`],
      ...['--cni-node-netns', this.nodeNetnsPath],
    ];
  }

  setup(): void {
    mkdirSync(this.confDir, { recursive: true });
    mkdirSync(this.binDir, { recursive: true });
    const wrapper = path.join(this.binDir, 'soak-bridge');
    writeFileSync(wrapper, WRAPPER);
    chmodSync(wrapper, 0o755);
    this.setMode('ok');
    writeFileSync(
      path.join(this.confDir, '10-soaknet.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: this.network,
        plugins: [
          {
            type: 'soak-bridge',
            bridge: this.bridge,
            isGateway: true,
            ipMasq: false,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: '10.232.0.0/24' }]],
              routes: [{ dst: '0.0.0.0/0' }],
              dataDir: this.ipamDir,
            },
          },
          { type: 'loopback' },
        ],
      }),
    );
    ip('netns', 'add', this.nodeNetns);
    this.made = true;
    ip('-n', this.nodeNetns, 'link', 'set', 'lo', 'up');
  }

  setMode(mode: CniMode): void {
    writeFileSync(path.join(this.binDir, 'soak-bridge.mode'), mode === 'ok' ? '' : mode);
  }

  /** The bridge's ports in the node namespace (one per attached sandbox); none before its first ADD. */
  bridgePorts(): string[] {
    const out = ipMaybe('-n', this.nodeNetns, '-j', 'link', 'show', 'master', this.bridge);
    if (out === undefined) return [];
    return (JSON.parse(out || '[]') as { ifname: string }[]).map((l) => l.ifname);
  }

  /** host-local's address files of the network (its lock and last-reserved files left out). */
  allocations(): string[] {
    const d = path.join(this.ipamDir, this.network);
    return existsSync(d) ? readdirSync(d).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
  }

  teardown(): void {
    this.setMode('ok');
    if (this.made) ipMaybe('netns', 'del', this.nodeNetns);
    this.made = false;
  }
}

function ip(...argv: string[]): string {
  return execFileSync('ip', argv, { encoding: 'utf8', timeout: 10_000, stdio: 'pipe' });
}

/** `ip`, or undefined when it fails (a bridge not made yet, a namespace already gone). */
function ipMaybe(...argv: string[]): string | undefined {
  try {
    return ip(...argv);
  } catch {
    return undefined;
  }
}
