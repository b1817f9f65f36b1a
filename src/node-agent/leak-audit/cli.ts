// kata-leak-audit's command line (the node agent's own flags, env and config file for the roots,
// plus its own) and its two outputs. Pure.
import { ConfigError, nodeAgentFlagHelp, parseNodeAgentSettings } from '../config.js';
import type { NodeAgentConfig } from '../config.js';
import type { AuditReport } from './classify.js';
import { isLeakKind, KIND_EXPLANATIONS, LEAK_KINDS, type LeakKind } from './kinds.js';

export interface AuditArgs {
  config: NodeAgentConfig;
  output: 'text' | 'json';
  live: { from: 'list'; uids: string } | { from: 'api' | 'state' | 'auto' };
  hostWide: 'all' | 'known';
  kinds: LeakKind[];
  explain: boolean;
  help: boolean;
}

const ROOT_FLAGS = [
  'node-name',
  'kubeconfig',
  'state-dir',
  'run-dir',
  'log-dir',
  'netns-roots',
  'cni-conf-dir',
  'cni-network',
  'cni-node-netns',
  'cgroup-root',
  'vm-cgroup-parent',
  'qemu-launch',
  'image-cache-dir',
];

export const LEAK_AUDIT_HELP = `kata-leak-audit: lists what the node agent made on this host for sandboxes that no live
sandbox owns (leftovers), by kind. Read-only: it never deletes, unmounts or kills anything;
--explain says how to remove each kind by hand.

Usage: kata-leak-audit [flags]      (in a cluster: kubectl -n kata-system exec <node agent pod> -- kata-leak-audit)

Which sandboxes are live:
  --live-uids LIST          comma-separated uids of the live sandboxes ('' for none)
  --live-from SOURCE        api: the node's KataSandboxes (--kubeconfig or in-cluster, --node-name);
                            state: the agent's state files without a recorded end (an ended,
                            not yet deleted sandbox's objects then show as leftovers);
                            auto (default): --live-uids, else api when a kubeconfig and node name
                            are at hand, else state
What to report:
  --kinds LIST              only these kinds (${LEAK_KINDS.join(', ')})
  --host-wide all|known     cgroup, netns, tap and ipam objects are looked for host-wide; known judges
                            only those whose uid this agent's roots hold something of (a machine
                            running several node agents); default all
  --output text|json        default text
  --explain                 what each kind is, where it is looked for, how to remove one; exits
  --help                    this text

Where to look: the node agent's own flags, environment and --config file (same defaults, so run
it with the agent's settings; in the DaemonSet's Pod they are already in the environment):
  --config PATH             the node agent's JSON config file [CONFIG]
${nodeAgentFlagHelp(ROOT_FLAGS)}
(Every other kata-node-agent flag is accepted and ignored.)

Exit status: 0 no leftovers, 1 leftovers, 2 error. A kind that could not be looked at (its
directory does not exist, no CNI config, ...) is reported as not checked, never as clean.
`;

const EXTRA = {
  output: { type: 'string' },
  'live-uids': { type: 'string' },
  'live-from': { type: 'string' },
  'host-wide': { type: 'string' },
  kinds: { type: 'string' },
  explain: { type: 'boolean' },
} as const;

function oneOf<T extends string>(flag: string, v: unknown, allowed: readonly T[], dflt: T): T {
  if (v === undefined) return dflt;
  if (typeof v === 'string' && (allowed as readonly string[]).includes(v)) return v as T;
  throw new ConfigError(`--${flag}: ${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
}

export function parseAuditArgs(argv: readonly string[], env: NodeJS.ProcessEnv): AuditArgs {
  const { config, extra } = parseNodeAgentSettings(argv, env, {
    extra: EXTRA,
    requireNodeName: false,
  });
  const kinds =
    typeof extra['kinds'] === 'string'
      ? extra['kinds'].split(',').map((k) => {
          const t = k.trim();
          if (!isLeakKind(t)) {
            throw new ConfigError(
              `--kinds: ${JSON.stringify(t)} is not one of ${LEAK_KINDS.join(', ')}`,
            );
          }
          return t;
        })
      : [...LEAK_KINDS];
  // Relative roots would be looked for wherever the tool happens to run.
  for (const [flag, dir] of [
    ['state-dir', config.stateDir],
    ['run-dir', config.runDir],
    ['log-dir', config.logDir],
    ['cgroup-root', config.cgroupRoot],
    ['cni-conf-dir', config.cniConfDir],
    ['image-cache-dir', config.imageCacheDir],
  ] as const) {
    if (dir !== undefined && !dir.startsWith('/')) {
      throw new ConfigError(`--${flag}: ${JSON.stringify(dir)} is not an absolute path`);
    }
  }
  const from = oneOf('live-from', extra['live-from'], ['auto', 'api', 'state'], 'auto');
  const uids = extra['live-uids'];
  if (typeof uids === 'string' && extra['live-from'] !== undefined) {
    throw new ConfigError('--live-uids and --live-from exclude each other');
  }
  return {
    config,
    output: oneOf('output', extra['output'], ['text', 'json'], 'text'),
    live: typeof uids === 'string' ? { from: 'list', uids } : { from },
    hostWide: oneOf('host-wide', extra['host-wide'], ['all', 'known'], 'all'),
    kinds,
    explain: extra['explain'] === true,
    help: config.help,
  };
}

export function explainText(kinds: readonly LeakKind[]): string {
  return kinds
    .map((k) => {
      const e = KIND_EXPLANATIONS[k];
      return `${k}: ${e.what}\n  looked for: ${e.observed}\n  a leftover: ${e.leftover}\n  remove by hand: ${e.cleanup}\n`;
    })
    .join('\n');
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function reportText(r: AuditReport): string {
  const lines = [`live sandboxes: ${r.live.source}`];
  const leftovers = r.kinds.flatMap((k) => k.leftovers);
  if (leftovers.length > 0) {
    lines.push(
      '',
      table([
        ['KIND', 'UID', 'WHERE'],
        ...leftovers.map((l) => [l.kind, l.uid, l.pid !== undefined ? `pid ${l.pid}` : l.where]),
      ]),
    );
  }
  lines.push('');
  for (const k of r.kinds) {
    const extra = [
      k.owned > 0 ? `${k.owned} of live sandboxes` : '',
      k.notJudged > 0 ? `${k.notJudged} of uids unknown to this agent not judged` : '',
      ...k.unchecked.map(
        (u) => `${k.status === 'unchecked' ? '' : 'not checked: '}${u.place}: ${u.why}`,
      ),
    ].filter(Boolean);
    const status =
      k.status === 'leftovers'
        ? `${k.leftovers.length} leftover(s)`
        : k.status.replace('unchecked', 'NOT CHECKED');
    lines.push(`${k.kind.padEnd(12)} ${status}${extra.length ? ` (${extra.join('; ')})` : ''}`);
  }
  lines.push('', r.leftovers === 0 ? 'no leftovers' : `${r.leftovers} leftover(s)`);
  return `${lines.join('\n')}\n`;
}
