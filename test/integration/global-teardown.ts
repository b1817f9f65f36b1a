// Jest global teardown of the 'integration' project: releases this run's hold on the control
// plane and stops it if a test run started it and no other run still holds it (global-setup.ts).
import { KUBECONFIG_ENV, controlplane, releasePlane } from './cluster.js';

export default async function globalTeardown(): Promise<void> {
  const path = process.env[KUBECONFIG_ENV];
  if (!path) return;
  if (releasePlane(path) && process.env.KATA_CP_KEEP !== '1') {
    await controlplane(['down'], process.env, 120_000);
  }
}
