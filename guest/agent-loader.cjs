'use strict';
// kata-guest-agent's loader (in the image as /usr/bin/kata-guest-agent.js, what the init runs).
// Compiles the agent's CommonJS bundle (../lib/kata-guest-agent/agent.cjs) with the V8 code cache
// made at image build time (agent.cjs.cache, by guest/agent-code-cache.mjs with the same node
// binary and flags), then runs it as a CommonJS module. Node 20 has no module compile cache, and
// under TCG compiling the 1.5 MB bundle is a large part of the agent's start. V8 checks the cache
// (its version, flags, the source) and rejects a stale one: the loader says on the console which
// it was and then compiles without it.
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire } = require('node:module');

const BUNDLE = path.resolve(__dirname, '../lib/kata-guest-agent/agent.cjs');

/**
 * The bundle's text. It is ASCII (the builder checks it): read as latin1, which gives the same
 * string without UTF-8 decoding (a tenth of the time).
 */
function readBundle(file) {
  return fs.readFileSync(file, 'latin1');
}

/** The CommonJS wrapper, as node's own loader wraps a module. */
function wrap(source) {
  return `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
}

/** Compiles the bundle with `cachedData` (a Buffer, or undefined for none). */
function compileBundle(source, filename, cachedData) {
  return new vm.Script(wrap(source), {
    filename,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
}

/** Runs a compiled bundle as the CommonJS module `filename`; returns its exports. */
function runBundle(script, filename) {
  const module = { exports: {}, filename, id: filename, loaded: false };
  const fn = script.runInThisContext();
  fn.call(
    module.exports,
    module.exports,
    createRequire(filename),
    module,
    filename,
    path.dirname(filename),
  );
  module.loaded = true;
  return module.exports;
}

/** What the loader says about the cache: accepted, rejected or absent. */
function cacheVerdict(cachedData, script) {
  if (cachedData === undefined) return 'no code cache';
  return script.cachedDataRejected
    ? `code cache rejected (${cachedData.length} bytes): compiled without it`
    : `code cache accepted (${cachedData.length} bytes)`;
}

function main() {
  const t0 = performance.now();
  const source = readBundle(BUNDLE);
  let cachedData;
  try {
    cachedData = fs.readFileSync(`${BUNDLE}.cache`);
  } catch {
    cachedData = undefined; // no cache in this image: plain compile
  }
  const script = compileBundle(source, BUNDLE, cachedData);
  const compileMs = performance.now() - t0;
  process.stderr.write(
    `kata-guest-agent-loader: ${cacheVerdict(cachedData, script)}; read+compile ${compileMs.toFixed(0)} ms\n`,
  );
  runBundle(script, BUNDLE);
}

module.exports = { BUNDLE, readBundle, wrap, compileBundle, runBundle, cacheVerdict };

if (require.main === module) main();
