// The alert rules against `promtool test rules` (test/fixtures/alert-rules.promtool.yaml): every
// alert has a case where it fires and one where normal churn leaves it quiet, a `for:`, and a
// runbook in docs/operations.md.
import { describe, expect, it } from '@jest/globals';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';

const REPO = path.resolve(import.meta.dirname, '../../..');
type Rule = { alert: string; expr: string; for?: string; annotations?: Record<string, string> };
const groups = (
  parse(readFileSync(path.join(REPO, 'deploy/monitoring/prometheus-rule.yaml'), 'utf8')) as {
    spec: { groups: { name: string; rules: Rule[] }[] };
  }
).spec.groups;
const rules = groups.flatMap((g) => g.rules);
const CASES = path.join(REPO, 'test/fixtures/alert-rules.promtool.yaml');

describe('alert rules', () => {
  it('every alert waits (for:) and links a runbook section that exists in docs/operations.md', () => {
    const ops = readFileSync(path.join(REPO, 'docs/operations.md'), 'utf8');
    const anchors = new Set(
      [...ops.matchAll(/^#+ (.+)$/gm)].map((m) =>
        (m[1] ?? '')
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const r of rules) {
      expect({ alert: r.alert, for: Boolean(r.for) }).toEqual({ alert: r.alert, for: true });
      const anchor = /docs\/operations\.md#([\w-]+)$/.exec(
        r.annotations?.['runbook_url'] ?? '',
      )?.[1];
      expect({ alert: r.alert, runbook: anchor && anchors.has(anchor) }).toEqual({
        alert: r.alert,
        runbook: true,
      });
    }
  });

  it('each alert has a firing and a quiet case, and promtool passes them all', () => {
    const tests = (
      parse(readFileSync(CASES, 'utf8')) as {
        tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
      }
    ).tests.flatMap((t) => t.alert_rule_test);
    for (const { alert } of rules) {
      const cases = tests.filter((t) => t.alertname === alert);
      expect({ alert, fires: cases.some((c) => c.exp_alerts.length > 0) }).toEqual({
        alert,
        fires: true,
      });
      expect({ alert, quiet: cases.some((c) => c.exp_alerts.length === 0) }).toEqual({
        alert,
        quiet: true,
      });
    }
    const tmp = mkdtempSync(path.join(tmpdir(), 'kata-alert-tests-'));
    try {
      const bare = groups.map((g) => ({
        ...g,
        rules: g.rules.map(({ annotations: _a, ...r }) => r),
      }));
      writeFileSync(path.join(tmp, 'rules.yaml'), stringify({ groups: bare }));
      copyFileSync(CASES, path.join(tmp, 'cases.yaml'));
      const out = execFileSync('promtool', ['test', 'rules', 'cases.yaml'], {
        cwd: tmp,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(out).toContain('SUCCESS');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
