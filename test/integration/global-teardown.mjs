import { fileURLToPath } from 'node:url';
import { runTsDefault } from './load-ts.mjs';

export default (...args) =>
  runTsDefault(fileURLToPath(new URL('./global-teardown.ts', import.meta.url)), ...args);
