// Keeps a VM's console log under a cap. QEMU appends to it (the console socket's logfile, opened
// with O_APPEND), so when it grew past the cap the node agent copies it to <file>.1 (replacing the
// one before) and truncates it: QEMU's next write lands at the new end. What QEMU writes between
// the copy and the truncation (a few bytes, if any) is lost. A console written by a QEMU started
// without the socket (an older node agent's VM) is left alone: it does not append, and a
// truncated file would grow back with a hole.
import { copyFile, stat, truncate } from 'node:fs/promises';

/** 1 MiB kept in console.log and 1 MiB in console.log.1: at most 2 MiB per sandbox, plus growth between checks. */
export const CONSOLE_MAX_BYTES = 1 << 20;
/** How often the node agent looks. */
export const CONSOLE_CHECK_MS = 10_000;

/** Cut `file` when larger than `maxBytes`; true if it did. */
export async function capConsoleLog(
  file: string,
  socket: string,
  maxBytes = CONSOLE_MAX_BYTES,
): Promise<boolean> {
  const [log, sock] = await Promise.all([
    stat(file).catch(() => undefined),
    stat(socket).catch(() => undefined),
  ]);
  if (!log || !sock?.isSocket() || log.size <= maxBytes) return false;
  await copyFile(file, `${file}.1`);
  await truncate(file, 0);
  return true;
}
