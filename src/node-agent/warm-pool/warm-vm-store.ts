// Each warm VM's record on disk (<stateDir>/warm/<vmUid>.json): what a restarted node agent needs
// to adopt it or to remove everything it had on the host. Written before the VM's host work
// starts and removed last, so a crash at any moment leaves a record naming what to clean.
import { readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeJsonAtomic } from '../../common/atomic-json.js';
import type { QemuState } from '../state-store.js';
import type { WarmShape } from '../../crds/warm-shape.js';

export interface WarmVmRecord {
  /** The id every host object of the VM is named by (dirs, cgroup, netns, QEMU's name). */
  vmUid: string;
  pool: string;
  poolUid: string;
  shape: WarmShape;
  createdAt: string;
  runDir: string;
  shareDir: string;
  /** The VM's own network namespace (QEMU runs in it; NICs are attached from it at claim). */
  netnsName: string;
  /** Set once QEMU booted and its agent answered. */
  qemu?: QemuState;
}

const UID_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,127}$/;

export class WarmVmStore {
  constructor(readonly stateDir: string) {}

  get root(): string {
    return path.join(this.stateDir, 'warm');
  }

  fileOf(vmUid: string): string {
    if (!UID_RE.test(vmUid)) throw new Error(`invalid warm VM uid ${JSON.stringify(vmUid)}`);
    return path.join(this.root, `${vmUid}.json`);
  }

  save(rec: WarmVmRecord): Promise<void> {
    return writeJsonAtomic(this.fileOf(rec.vmUid), rec);
  }

  /** Every readable record; broken ones are returned by name only (their host work is unknown). */
  async list(): Promise<{ records: WarmVmRecord[]; broken: string[] }> {
    let names: string[];
    try {
      names = (await readdir(this.root)).filter((n) => n.endsWith('.json'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], broken: [] };
      throw err;
    }
    const records: WarmVmRecord[] = [];
    const broken: string[] = [];
    for (const n of names) {
      const vmUid = n.slice(0, -'.json'.length);
      try {
        const rec = JSON.parse(await readFile(this.fileOf(vmUid), 'utf8')) as WarmVmRecord;
        if (rec.vmUid !== vmUid) throw new Error('uid mismatch');
        records.push(rec);
      } catch {
        broken.push(vmUid);
      }
    }
    return { records, broken };
  }

  async remove(vmUid: string): Promise<void> {
    await rm(this.fileOf(vmUid), { force: true });
  }
}
