// No module of src/ imports itself back through others, type-only imports included: a circle
// means two files that are one concern, or a type owned by the wrong side.
import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(import.meta.dirname, '../../../src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function importGraph(files: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    const deps = [...text.matchAll(/from\s+'(\.{1,2}\/[^']+)'/g)].map((m) =>
      path.resolve(path.dirname(f), (m[1] as string).replace(/\.js$/, '.ts')),
    );
    graph.set(f, deps);
  }
  return graph;
}

/** Each cycle once, as the files on it, starting from its smallest path. */
function cycles(graph: Map<string, string[]>): string[][] {
  const found = new Map<string, string[]>();
  const done = new Set<string>();
  const visit = (n: string, stack: string[]): void => {
    for (const d of graph.get(n) ?? []) {
      const at = stack.indexOf(d);
      if (at >= 0) {
        const c = stack.slice(at).map((p) => path.relative(SRC, p));
        found.set([...c].sort().join(' '), c);
      } else if (!done.has(d) && graph.has(d)) {
        visit(d, [...stack, d]);
      }
    }
    done.add(n);
  };
  for (const n of graph.keys()) if (!done.has(n)) visit(n, [n]);
  return [...found.values()];
}

describe('src import graph', () => {
  it('finds a cycle when there is one (the check itself)', () => {
    const g = new Map([
      ['/a.ts', ['/b.ts']],
      ['/b.ts', ['/c.ts']],
      ['/c.ts', ['/a.ts']],
      ['/d.ts', ['/a.ts']],
    ]);
    expect(cycles(g)).toHaveLength(1);
  });

  it('has no import cycles', () => {
    expect(cycles(importGraph(sources(SRC)))).toEqual([]);
  });
});
