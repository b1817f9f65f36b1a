// What a sandbox's 9p share holds before boot, from its checked host paths: each hostPath rootfs
// as the sandbox's own overlay view of the host directory (bound read-only beneath the views
// root, so no sandbox writes the host tree), each volume bound directly; every bind made by
// kata-host-fs from the path re-opened beneath the root it was checked beneath.
import type { KataSandboxSpec } from '../../crds/index.js';
import { HostFsError, hostPathReasonOf } from '../host-fs/errors.js';
import type { HostFs } from '../host-fs/types.js';
import { HostPathError } from './host-paths.js';
import type { RootfsViews } from '../images/rootfs-view.js';
import type { CheckedSandboxPath } from './sandbox-host-paths.js';
import { bindIntoShare, planBindMounts, shareTarget } from './shared-dir.js';

/**
 * A helper failure on a tenant's path (it changed between the check and this use: it now leaves
 * its root, or is gone) as the HostPathError of its field; any other error unchanged.
 */
export function asFieldError(err: unknown, field: string, source: string): unknown {
  if (!(err instanceof HostFsError) || err.path !== source) return err;
  const reason = hostPathReasonOf(err.code);
  return reason ? new HostPathError(reason, field, err.message) : err;
}

export interface ShareMountsRequest {
  hostFs: HostFs;
  views: RootfsViews;
  uid: string;
  spec: KataSandboxSpec;
  checked: ReadonlyMap<string, CheckedSandboxPath>;
  shareDir: string;
  /** Persists a target (absolute) before it is mounted. */
  record: (target: string) => Promise<void>;
  signal?: AbortSignal;
}

/** Makes the views and binds of the share (idempotent); returns the targets, in mount order. */
export async function prepareShareMounts(req: ShareMountsRequest): Promise<string[]> {
  const { hostFs, views, checked, shareDir, signal } = req;
  const rootfs: { container: string; sourceRoot: string; source: string }[] = [];
  for (const [i, c] of req.spec.containers.entries()) {
    const field = `spec.containers[${i}].rootfs.hostPath.path`;
    const dir = checked.get(field);
    if (!dir) continue;
    const view = await views
      .prepareHostDir({
        sandboxUid: req.uid,
        container: c.name,
        hostFs,
        sourceRoot: dir.root,
        source: dir.path,
        ...(signal && { signal }),
      })
      .catch((err: unknown) => {
        throw asFieldError(err, field, dir.path);
      });
    rootfs.push({ container: c.name, sourceRoot: views.root, source: view.merged });
  }
  const volumes = (req.spec.volumes ?? []).map((v, i) => {
    const dir = checked.get(`spec.volumes[${i}].hostPath.path`);
    if (!dir) throw new Error(`spec.volumes[${i}].hostPath.path was not checked`);
    return {
      name: v.name,
      sourceRoot: dir.root,
      source: dir.path,
      readOnly: v.hostPath.readOnly ?? false,
      field: dir.field,
    };
  });
  const fieldOf = new Map(volumes.map((v) => [v.source, v.field]));
  const targets: string[] = [];
  for (const m of planBindMounts({ rootfs, volumes })) {
    const target = shareTarget(shareDir, m.target);
    await req.record(target);
    targets.push(target);
    await bindIntoShare(hostFs, shareDir, m, signal).catch((err: unknown) => {
      const field = fieldOf.get(m.source);
      throw field ? asFieldError(err, field, m.source) : err;
    });
  }
  return targets;
}
