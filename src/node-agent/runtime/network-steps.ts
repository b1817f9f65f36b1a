// The network steps of one sandbox: the host side prepared before QEMU starts (recorded, so a
// resumed sandbox reuses it), and the guest side pushed over the agent before CreateSandbox.
import type { NetworkPlan, TapHotplug } from '../network/network-step.js';
import type { SandboxContext } from './sandbox-context.js';
import { guestNetworkStatus } from './sandbox-status.js';
import { step } from './step-failure.js';
import { sleep } from '../../common/sleep.js';

/** The network a previous attempt prepared (from the state file), else a new one; recorded. */
export async function prepareNetwork(
  ctx: SandboxContext,
  runDir: string,
  signal: AbortSignal,
  hotplug?: TapHotplug,
): Promise<NetworkPlan> {
  const network = ctx.host.network;
  const restored = ctx.state.network && network.restore(ctx.state.network);
  if (restored) return restored;
  const plan = await step('NetworkReady', 'NetworkFailed', () =>
    network.prepare({ uid: ctx.uid, spec: ctx.spec, runDir, signal, ...(hotplug && { hotplug }) }),
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
    // A NIC plugged into a running VM (a warm one) shows up in the guest a moment later.
    if (ctx.state.warm) await waitForGuestLinks(client, plan.guest.interfaces, signal);
    for (const i of plan.guest.interfaces) await client.updateInterface(i, o);
    await client.updateRoutes(plan.guest.routes, o);
    const [ifs, routes] = await Promise.all([client.listInterfaces(o), client.listRoutes(o)]);
    ctx.state.guestNetwork = guestNetworkStatus(ifs, routes);
  });
  await ctx.save();
  ctx.changed();
}

const LINK_WAIT_MS = 20_000;

async function waitForGuestLinks(
  client: ReturnType<SandboxContext['client']>,
  want: readonly { hwAddr: string }[],
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + LINK_WAIT_MS;
  for (;;) {
    const seen = new Set(
      (await client.listInterfaces({ signal })).map((i) => i.hwAddr.toLowerCase()),
    );
    const missing = want.filter((w) => !seen.has(w.hwAddr.toLowerCase()));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `the guest did not see the plugged NIC(s) ${missing.map((m) => m.hwAddr).join(', ')} within ${LINK_WAIT_MS} ms`,
      );
    }
    await sleep(100, signal);
  }
}
