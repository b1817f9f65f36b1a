// Taking over a VM a previous node agent started: the same QEMU (pid and start time) still runs,
// answers QMP, and its agent answers Health.Check through a fresh serial bridge.
import { AgentConnection } from '../../agent/agent-connection.js';
import { QmpClient } from '../hypervisor/qmp-client.js';
import type { SandboxContext } from './sandbox-context.js';

/** True when adopted; false when it is gone or cannot be adopted (ctx.vm set: stop it). */
export async function adoptVm(ctx: SandboxContext): Promise<boolean> {
  const saved = ctx.state.qemu;
  if (!saved) return false;
  const q = ctx.host.adoptVm(saved.info, ctx.log);
  if (!q) return false;
  try {
    const qmp = await QmpClient.connect(saved.info.qmpSocket, { timeoutMs: 3_000 });
    try {
      await qmp.queryStatus({ timeoutMs: 3_000 });
    } finally {
      qmp.close();
    }
    ctx.vm = q;
    ctx.agent = await AgentConnection.open(saved, (rpc, code, s) =>
      ctx.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
    );
    const ok = await ctx.agent.client.check({ waitForReady: true, timeoutMs: 20_000 });
    if (!ok) throw new Error('agent is not serving');
  } catch (err) {
    ctx.log.warn({ err, pid: saved.info.pid }, 'QEMU runs but cannot be adopted; stopping it');
    ctx.vm = q;
    return false;
  }
  ctx.log.info({ pid: q.pid }, 'adopted the running VM');
  if (ctx.state.network) {
    await ctx.host.network
      .check(ctx.state.network, ctx.createAbort.signal)
      .catch((err: unknown) => {
        ctx.log.warn({ err }, 'network check of the adopted sandbox failed');
        ctx.event('Warning', 'NetworkCheckFailed', (err as Error).message.slice(0, 1000));
      });
  }
  return true;
}
