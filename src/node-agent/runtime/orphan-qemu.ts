// A QEMU an interrupted boot left behind: its pid file written, the state file never told.
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../observability/logger.js';
import { isSameProcess, readProcStat } from '../hypervisor/qemu-process.js';
import { vmFiles } from '../hypervisor/sandbox-vm.js';

/** Kills a QEMU whose pid file exists in `runDir` but that never made it into the state file. */
export async function killOrphanQemu(runDir: string, log: Logger): Promise<void> {
  const files = vmFiles(runDir);
  const pid = Number((await readFile(files.pidFile, 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return;
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  if (!cmdline.includes(files.qmpSocket)) return;
  const stat = readProcStat(pid);
  log.warn({ pid }, 'killing a QEMU left from an interrupted boot');
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  for (let i = 0; i < 100 && stat && isSameProcess(pid, stat.startTime); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
}
