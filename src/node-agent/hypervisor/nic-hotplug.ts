// NICs added to a running VM over QMP: the tap backend first (QEMU opens the tap by name in its
// own network namespace), then the virtio-net device with the interface's MAC, which the guest
// sees as a PCI hot-plug. Ids follow qemu-args.ts (net<N>, nic<N>).
import { QmpClient } from './qmp-client.js';

const TAP = /^[A-Za-z0-9_.-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** netdev_add's arguments for tap `tap` as backend `net<index>`. Pure. */
export function netdevAddArgs(index: number, tap: string): Record<string, unknown> {
  if (!TAP.test(tap)) throw new Error(`${JSON.stringify(tap)} is not a tap name`);
  return { type: 'tap', id: `net${index}`, ifname: tap, script: 'no', downscript: 'no' };
}

/** device_add's arguments for the virtio-net NIC `nic<index>` on backend `net<index>`. Pure. */
export function nicDeviceArgs(index: number, mac: string): Record<string, unknown> {
  const m = mac.toLowerCase();
  if (!MAC.test(m)) throw new Error(`${JSON.stringify(mac)} is not a MAC address`);
  return { driver: 'virtio-net-pci', netdev: `net${index}`, id: `nic${index}`, mac: m };
}

async function withQmp<T>(
  socket: string,
  signal: AbortSignal,
  fn: (q: QmpClient) => Promise<T>,
): Promise<T> {
  const qmp = await QmpClient.connect(socket, { timeoutMs: 5_000, signal });
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}

export function addTapBackend(
  qmpSocket: string,
  index: number,
  tap: string,
  signal: AbortSignal,
): Promise<void> {
  return withQmp(qmpSocket, signal, async (q) => {
    await q.execute('netdev_add', netdevAddArgs(index, tap), { timeoutMs: 10_000, signal });
  });
}

export function addNic(
  qmpSocket: string,
  index: number,
  mac: string,
  signal: AbortSignal,
): Promise<void> {
  return withQmp(qmpSocket, signal, async (q) => {
    await q.execute('device_add', nicDeviceArgs(index, mac), { timeoutMs: 10_000, signal });
  });
}
