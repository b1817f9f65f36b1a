// Taking over a VM a previous node agent started: the same QEMU (pid and start time) still runs,
// answers QMP, and its agent answers Health.Check through a fresh serial bridge.
import { AgentConnection, type RpcObserver } from '../../agent/agent-connection.js';
import type { QemuState } from '../state-store.js';
import { QmpClient } from '../hypervisor/qmp-client.js';
import type { SandboxContext } from './sandbox-context.js';

/**
 * A fresh agent connection to a VM a previous node agent started: QMP answers, then the agent
 * answers Health.Check through a new serial bridge. Throws (nothing left open) otherwise.
 */
export async function reconnectAgent(
  saved: QemuState,
  onCall?: RpcObserver,
): Promise<AgentConnection> {
  const qmp = await QmpClient.connect(saved.info.qmpSocket, { timeoutMs: 3_000 });
  try {
    await qmp.queryStatus({ timeoutMs: 3_000 });
  } finally {
    qmp.close();
  }
  const agent = await AgentConnection.open(saved, onCall);
  try {
    if (!(await agent.client.check({ waitForReady: true, timeoutMs: 20_000 }))) {
      throw new Error('agent is not serving');
    }
  } catch (err) {
    await agent.close().catch(() => {});
    throw err;
  }
  return agent;
}

/** True when adopted; false when it is gone or cannot be adopted (ctx.vm set: stop it). */
export async function adoptVm(ctx: SandboxContext): Promise<boolean> {
  const saved = ctx.state.qemu;
  if (!saved) return false;
  const q = ctx.host.adoptVm(saved.info, ctx.log);
  if (!q) return false;
  try {
    ctx.vm = q;
    ctx.agent = await reconnectAgent(saved, (rpc, code, s) =>
      ctx.metrics.agentRpcSeconds.observe({ method: rpc, code: String(code) }, s),
    );
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
