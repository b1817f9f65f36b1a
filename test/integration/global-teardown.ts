// Jest global teardown of the 'integration' project: stops the control plane only if this run
// started it (see global-setup.ts).
import { controlplane } from './cluster.js';

export default async function globalTeardown(): Promise<void> {
  if (globalThis.__KATA_CP_STARTED_BY_RUN__ && process.env.KATA_CP_KEEP !== '1') {
    await controlplane(['down'], process.env, 120_000);
  }
}
