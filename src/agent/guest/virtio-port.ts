// Finds the virtio-serial port by name: its /dev/vportNpM number depends on the other devices,
// and busybox makes no /dev/virtio-ports/ links.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { AGENT_CHANNEL_NAME } from '../contract.js';

export const AGENT_PORT_NAME = AGENT_CHANNEL_NAME;

export interface PortLookupOptions {
  sysDir?: string;
  devDir?: string;
}

/** The /dev path of the port named `name`, or undefined when there is none. */
export async function findVirtioPort(
  name: string,
  opts: PortLookupOptions = {},
): Promise<string | undefined> {
  const sysDir = opts.sysDir ?? '/sys/class/virtio-ports';
  let entries: string[];
  try {
    entries = (await readdir(sysDir)).sort();
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    try {
      if ((await readFile(path.join(sysDir, entry, 'name'), 'utf8')).trim() === name) {
        return path.join(opts.devDir ?? '/dev', entry);
      }
    } catch {
      // a port without a name
    }
  }
  return undefined;
}

/** Polls for the port (its driver may still be probing when the agent starts). */
export async function waitForVirtioPort(
  name: string,
  timeoutMs: number,
  opts: PortLookupOptions = {},
): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = await findVirtioPort(name, opts);
    if (found || Date.now() >= deadline) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
}
