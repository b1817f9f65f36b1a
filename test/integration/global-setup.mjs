import { fileURLToPath } from 'node:url';
import { runTsDefault } from './load-ts.mjs';

export default (...args) =>
  runTsDefault(fileURLToPath(new URL('./global-setup.ts', import.meta.url)), ...args);
