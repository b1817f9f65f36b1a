// Finds virtio-blk drives by their virtio serial (the host sets it to the container id or device
// id); the vd* name the host predicted is only a hint, since other and hot-plugged disks shift it.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { virtioBlkSerial } from '../block-serial.js';
import { GUEST_ROOT_DRIVE_SERIAL } from '../contract.js';
import { deadlineExceeded } from './status-error.js';

export interface BlockDrive {
  /** Kernel name, e.g. "vdb". */
  name: string;
  /** The node under /dev (devtmpfs makes it). */
  devPath: string;
  major: number;
  minor: number;
}

export interface BlockDeviceOptions {
  sysBlockDir?: string;
  devDir?: string;
  timeoutMs?: number;
  pollMs?: number;
}

/** Parses /sys/block/<name>/dev ("254:16\n"). */
export function parseMajorMinor(text: string): { major: number; minor: number } | undefined {
  const m = /^(\d+):(\d+)\s*$/.exec(text);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

const readTrimmed = async (file: string): Promise<string | undefined> => {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
};

/** The serials a drive for `id` may carry: the id as given, and virtioBlkSerial(id). */
export function serialForms(id: string): Set<string> {
  const forms = new Set([id]);
  if (id !== '') forms.add(virtioBlkSerial(id));
  return forms;
}

export class BlockDevices {
  private readonly sysBlockDir: string;
  private readonly devDir: string;
  private readonly timeoutMs: number;
  private readonly pollMs: number;

  constructor(opts: BlockDeviceOptions = {}) {
    this.sysBlockDir = opts.sysBlockDir ?? '/sys/block';
    this.devDir = opts.devDir ?? '/dev';
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.pollMs = opts.pollMs ?? 50;
  }

  /**
   * The drive whose serial is `serial` right now, if any. The host gives a drive
   * virtioBlkSerial(id) (QEMU keeps only 20 bytes of a serial), so both the id itself and that
   * derived form match.
   */
  async lookup(serial: string): Promise<BlockDrive | undefined> {
    const wanted = serialForms(serial);
    let names: string[];
    try {
      names = (await readdir(this.sysBlockDir)).filter((n) => n.startsWith('vd')).sort();
    } catch {
      return undefined;
    }
    for (const name of names) {
      const got = await readTrimmed(path.join(this.sysBlockDir, name, 'serial'));
      // The guest's own root drive is never a storage or device the host can point at.
      if (got === GUEST_ROOT_DRIVE_SERIAL) continue;
      if (got !== undefined && got !== '' && wanted.has(got)) {
        return this.drive(name);
      }
    }
    return undefined;
  }

  /**
   * Waits (a cold-plugged drive may still be probing, a hot-plugged one arriving) for the drive
   * with this serial. The hint ("/dev/vdb") is used only if, at the deadline, that drive exists
   * and reports no serial at all: a drive with another serial belongs to someone else.
   */
  async find(serial: string, hint?: string): Promise<BlockDrive> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const found = await this.lookup(serial);
      if (found) return found;
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, this.pollMs));
    }
    const hintName = hint ? path.posix.basename(hint) : undefined;
    if (hintName && /^vd[a-z]+$/.test(hintName)) {
      const hintSerial = await readTrimmed(path.join(this.sysBlockDir, hintName, 'serial'));
      if (hintSerial === '') {
        const d = await this.drive(hintName);
        if (d) return d;
      }
    }
    throw deadlineExceeded(
      `no virtio-blk drive with serial ${JSON.stringify(serial)} appeared within ${this.timeoutMs} ms`,
    );
  }

  private async drive(name: string): Promise<BlockDrive | undefined> {
    const mm = parseMajorMinor((await readTrimmed(path.join(this.sysBlockDir, name, 'dev'))) ?? '');
    if (!mm) return undefined;
    return { name, devPath: path.join(this.devDir, name), ...mm };
  }
}
