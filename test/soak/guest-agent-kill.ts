// kill -9 of the guest agent inside a running VM, through an exec in the guest: the soak, as a
// second host client on the node agent's own channel to the guest (its agent.sock), creates and
// starts a container that joins the guest's root pid namespace (a namespace path in the OCI spec,
// which our guest agent honours; the node agent itself never sends one) on the rootfs of one of
// the sandbox's containers, and that container's shell sends SIGKILL to every process named
// `node`: the guest agent. The guest's init then powers the VM off (guest/init).
import path from 'node:path';
import { AgentClient } from '../../src/agent/agent-client.js';
import { constrainSpec } from '../../src/agent/oci-constraints.js';
import { containerRootPath } from '../../src/agent/storage.js';
import { buildContainerSpec } from '../../src/node-agent/oci/container-spec.js';

/** Only shell builtins and /proc: it runs on a busybox dir, block or image rootfs alike. */
const KILL_SCRIPT =
  'for d in /proc/[0-9]*; do read -r c < "$d/comm" 2>/dev/null || continue; ' +
  '[ "$c" = node ] && kill -9 "${d#/proc/}"; done';

export const KILLER_ID = 'soak-agent-kill';

/**
 * Runs the killer in the sandbox's guest, on container `onRootfsOf`'s rootfs. Resolves once the
 * start was sent; the call itself may fail as the agent dies under it (that is the point).
 */
export async function killGuestAgent(
  runDir: string,
  uid: string,
  onRootfsOf: string,
): Promise<string> {
  const built = buildContainerSpec({
    container: { name: KILLER_ID, command: ['/bin/sh', '-c', KILL_SCRIPT] },
    field: 'soak',
    hostname: 'soak',
    volumeGuestPaths: new Map(),
  });
  const spec = constrainSpec(built.spec);
  spec.Root = { Path: containerRootPath(onRootfsOf), Readonly: false };
  spec.Linux!.Namespaces = spec.Linux!.Namespaces.map((ns) =>
    ns.Type === 'pid' ? { ...ns, Path: '/proc/1/ns/pid' } : ns,
  );
  const client = new AgentClient({
    socketPath: path.join(runDir, 'sandboxes', uid, 'agent.sock'),
    maxTimeoutMs: 20_000,
  });
  try {
    await client.createContainer({ containerId: KILLER_ID, oci: spec });
    try {
      await client.startContainer(KILLER_ID);
      return 'started';
    } catch (err) {
      return `start ended with the agent: ${String(err).slice(0, 160)}`;
    }
  } finally {
    client.close();
  }
}
