import { createHash } from 'node:crypto';

/** virtio-blk carries at most 20 bytes of serial (VIRTIO_BLK_ID_BYTES); QEMU 7.2 cuts longer ones silently. */
export const VIRTIO_BLK_SERIAL_MAX = 20;

const SAFE_SERIAL = /^[A-Za-z0-9_.-]+$/;

/**
 * The serial a drive gets for a device/container id. An id that fits (≤ 20 safe characters) is
 * used as is; a longer one (Kata container ids are 64 hex characters) becomes its first 11
 * characters, '-', and 8 hex characters of its SHA-256, so two ids that share a prefix still get
 * different serials. The guest finds the drive by computing the same function over the id it was
 * given and comparing it with /sys/block/<vdX>/serial. Pure and dependency-free (node:crypto
 * only), so the guest agent can import it.
 */
export function virtioBlkSerial(id: string): string {
  if (id.length === 0) throw new Error('a block serial needs a non-empty id');
  if (id.length <= VIRTIO_BLK_SERIAL_MAX && SAFE_SERIAL.test(id)) return id;
  const hash = createHash('sha256').update(id, 'utf8').digest('hex').slice(0, 8);
  const prefix = id.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, VIRTIO_BLK_SERIAL_MAX - 9);
  return `${prefix}-${hash}`;
}
