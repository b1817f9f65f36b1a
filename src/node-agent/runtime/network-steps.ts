// The network steps of one sandbox: the host side prepared before QEMU starts (recorded, so a
// resumed sandbox reuses it), and the guest side pushed over the agent before CreateSandbox.
import type { NetworkPlan } from '../spec-support.js';
import type { SandboxContext } from './sandbox-context.js';
import { guestNetworkStatus } from './sandbox-status.js';
import { step } from './step-failure.js';

/** The network a previous attempt prepared (from the state file), else a new one; recorded. */
export async function prepareNetwork(
  ctx: SandboxContext,
  runDir: string,
  signal: AbortSignal,
): Promise<NetworkPlan> {
  const network = ctx.host.network;
  const restored = ctx.state.network && network.restore(ctx.state.network);
  if (restored) return restored;
  const plan = await step('NetworkReady', 'NetworkFailed', () =>
    network.prepare({ uid: ctx.uid, spec: ctx.spec, runDir, signal }),
  );
  ctx.state.network = plan.record;
  await ctx.save();
  for (const w of plan.guest.warnings) {
    const what = `${w.interface}${w.address ? ` ${w.address}` : ''}: ${w.message}`;
    ctx.log.warn({ warning: w }, 'network warning');
    ctx.event('Warning', 'NetworkWarning', what);
  }
  return plan;
}

/** UpdateInterface per interface, then UpdateRoutes (before CreateSandbox); status from the guest. */
export async function configureGuestNetwork(
  ctx: SandboxContext,
  signal: AbortSignal,
): Promise<void> {
  const plan = ctx.state.network && ctx.host.network.restore(ctx.state.network);
  if (!plan) return;
  const client = ctx.client();
  await step('NetworkReady', 'GuestNetworkFailed', async () => {
    const o = { signal };
    for (const i of plan.guest.interfaces) await client.updateInterface(i, o);
    await client.updateRoutes(plan.guest.routes, o);
    const [ifs, routes] = await Promise.all([client.listInterfaces(o), client.listRoutes(o)]);
    ctx.state.guestNetwork = guestNetworkStatus(ifs, routes);
  });
  await ctx.save();
  ctx.changed();
}
