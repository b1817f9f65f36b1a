// docs/metrics.md lists every metric the two components register, with its type and labels, and
// nothing else: the rows are compared with the prom-client registries built by the same factory
// functions the components call.
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Registry } from 'prom-client';
import { controllerMetrics } from '../../../src/controllers/controller-metrics.js';
import { nodeAgentMetrics } from '../../../src/node-agent/metrics/node-agent-metrics.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(path.join(REPO, 'docs/metrics.md'), 'utf8');
/** prom-client's default process/Node.js metrics, documented as a group. */
const DEFAULTS = /^kata_(controller|node)_(process|nodejs)_/;

interface Row {
  type: string;
  labels: string[];
}

/** The doc's table rows: | `name` | type | `label`, `label` or — | meaning | */
function documented(): Map<string, Row> {
  const rows = new Map<string, Row>();
  for (const line of DOC.split('\n')) {
    const m = /^\| `(kata_\w+)` \| (\w+) \| ([^|]*) \|/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] ?? '').matchAll(/`(\w+)`/g)].map((l) => l[1] ?? '');
    rows.set(m[1] ?? '', { type: m[2] ?? '', labels });
  }
  return rows;
}

async function registered(registry: Registry): Promise<Map<string, Row>> {
  const out = new Map<string, Row>();
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as {
      name: string;
      labelNames?: string[];
      get(): Promise<{ type: string }>;
    };
    if (DEFAULTS.test(m.name)) continue;
    const { type } = await m.get();
    out.set(m.name, { type: String(type), labels: [...(m.labelNames ?? [])] });
  }
  return out;
}

describe('docs/metrics.md', () => {
  it('documents exactly the metrics both components register, with type and labels', async () => {
    const code = new Map([
      ...(await registered(controllerMetrics().registry)),
      ...(await registered(
        nodeAgentMetrics({ phases: () => new Map(), runningQemu: () => 0 }).registry,
      )),
    ]);
    expect(code.size).toBeGreaterThanOrEqual(12);
    // A failure here: add, fix or remove the metric's row in docs/metrics.md.
    expect(Object.fromEntries(documented())).toEqual(Object.fromEntries(code));
  });

  it('every example query, alert and dashboard panel names only metrics that exist', async () => {
    const known = new Set([
      ...(await registered(controllerMetrics().registry)).keys(),
      ...(
        await registered(
          nodeAgentMetrics({ phases: () => new Map(), runningQemu: () => 0 }).registry,
        )
      ).keys(),
    ]);
    const rules = readFileSync(path.join(REPO, 'deploy/monitoring/prometheus-rule.yaml'), 'utf8');
    const dashboard = readFileSync(
      path.join(REPO, 'deploy/monitoring/grafana-dashboard.json'),
      'utf8',
    );
    const blocks = [...DOC.matchAll(/```promql\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
    expect(blocks.length).toBeGreaterThan(5);
    for (const text of [...blocks, rules, dashboard]) {
      for (const [name] of text.matchAll(/kata_(controller|node)_\w+/g)) {
        const base = name.replace(/_(bucket|count|sum)$/, '');
        // The default process and Node.js metrics are documented by their prefix.
        const ok = known.has(base) || DEFAULTS.test(base);
        expect({ name, known: ok }).toEqual({ name, known: true });
      }
    }
  });
});
