// Jest loads a project's globalSetup/globalTeardown through Node's own ESM loader, which cannot
// resolve a TypeScript module's relative imports. These two entry points therefore bundle their
// TypeScript module (and what it imports) with esbuild and run the bundle.
import { build } from 'esbuild';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export async function runTsDefault(tsFile, ...args) {
  // Two levels below the repo root, like test/integration/, so the bundle's packages resolve
  // from the repo and its paths relative to import.meta.url stay right.
  const cache = path.resolve(path.dirname(tsFile), '../../.test-results');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(path.join(cache, 'kata-jest-setup-'));
  const outfile = path.join(dir, `${path.basename(tsFile, '.ts')}.mjs`);
  try {
    await build({
      entryPoints: [tsFile],
      bundle: true,
      packages: 'external',
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      logLevel: 'error',
    });
    const mod = await import(pathToFileURL(outfile).href);
    return await mod.default(...args);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
