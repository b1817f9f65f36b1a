#!/usr/bin/env node
// kata-leak-audit: what the node agent made on this host that no live sandbox owns, by kind.
// Read-only. Exit 0: none; 1: leftovers; 2: an error (bad flags, the API unreachable, ...).
import { loadKubeConfigStrict, makeClients } from '../../kube/kube-client.js';
import { auditExitCode, classify, type LiveSet } from './classify.js';
import { explainText, LEAK_AUDIT_HELP, parseAuditArgs, reportText, type AuditArgs } from './cli.js';
import { liveFromApi, liveFromList, liveFromStateFiles, withWarmVms } from './live-set.js';
import { observeHost } from './observe.js';

const API_TIMEOUT_MS = 30_000;

async function withTimeout<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function liveSet(args: AuditArgs, env: NodeJS.ProcessEnv): Promise<LiveSet> {
  return withWarmVms(await sandboxesLive(args, env), args.config.stateDir);
}

async function sandboxesLive(args: AuditArgs, env: NodeJS.ProcessEnv): Promise<LiveSet> {
  const { config } = args;
  if (args.live.from === 'list') return liveFromList(args.live.uids);
  const apiAtHand =
    (config.kubeconfig !== undefined || Boolean(env['KUBERNETES_SERVICE_HOST'])) &&
    Boolean(config.nodeName);
  const from = args.live.from === 'auto' ? (apiAtHand ? 'api' : 'state') : args.live.from;
  if (from === 'state') return liveFromStateFiles(config.stateDir);
  if (!config.nodeName) throw new Error('--live-from api needs --node-name (or NODE_NAME)');
  const clients = makeClients(loadKubeConfigStrict(config.kubeconfig, env));
  return withTimeout(
    'listing KataSandboxes',
    API_TIMEOUT_MS,
    liveFromApi(clients, config.nodeName),
  );
}

async function main(): Promise<number> {
  const args = parseAuditArgs(process.argv.slice(2), process.env);
  if (args.help) {
    process.stdout.write(LEAK_AUDIT_HELP);
    return 0;
  }
  if (args.explain) {
    process.stdout.write(explainText(args.kinds));
    return 0;
  }
  const live = await liveSet(args, process.env);
  const observations = await observeHost(args.config);
  const report = classify(observations, live, { hostWide: args.hostWide, kinds: args.kinds });
  process.stdout.write(
    args.output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : reportText(report),
  );
  return auditExitCode(report);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`kata-leak-audit: ${(err as Error).message ?? String(err)}\n`);
    process.exit(2);
  },
);
