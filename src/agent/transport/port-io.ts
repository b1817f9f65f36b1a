// The guest port's byte I/O as the serving loop (guest-port.ts) sees it, and its plain form:
// blocking reads and writes on libuv's thread pool (the fallback of pollable-port.ts).
import { open } from 'node:fs/promises';

/** The port's byte I/O; injectable so the loop can be tested without a device. */
export interface PortIo {
  /** Fills `buf` from the start; 0 means end of file (no host connected). */
  read(buf: Buffer): Promise<number>;
  /** Writes all of `buf`. */
  write(buf: Buffer): Promise<void>;
  close(): Promise<void>;
}

/** Opens the character device read/write. Blocking reads run on libuv's thread pool. */
export async function openBlockingPort(path: string): Promise<PortIo> {
  const fh = await open(path, 'r+');
  return {
    read: async (buf) => (await fh.read(buf, 0, buf.length, null)).bytesRead,
    write: async (buf) => {
      let off = 0;
      while (off < buf.length)
        off += (await fh.write(buf, off, buf.length - off, null)).bytesWritten;
    },
    close: () => fh.close(),
  };
}
