// CopyFile as Kata 1.x does it: the host sends a file in parts (offset, data); each part is written
// into <path>.tmp, and once that file has `file_size` bytes it gets its mode and owner and is moved
// onto `path`. 1.x allows any path under /run; here it must be under /run/kata-containers/, like
// every path the agent writes, and a part may not reach past `file_size`.
import { chmod, chown, constants, mkdir, open, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CopyFileRequest } from '../../generated/agent.js';
import { AGENT_DIR, guardPath } from './path-guard.js';
import { invalidArgument } from './status-error.js';

export async function copyFile(req: CopyFileRequest, root: string = AGENT_DIR): Promise<void> {
  const dest = guardPath('path', req.path, root);
  if (!Number.isSafeInteger(req.fileSize) || req.fileSize < 0) {
    throw invalidArgument(`file_size ${req.fileSize} is not a size`);
  }
  if (!Number.isSafeInteger(req.offset) || req.offset < 0) {
    throw invalidArgument(`offset ${req.offset} is not an offset`);
  }
  if (req.offset + req.data.length > req.fileSize) {
    throw invalidArgument(
      `offset ${req.offset} + ${req.data.length} bytes of data is past file_size ${req.fileSize}`,
    );
  }
  if (req.fileMode > 0o7777 || req.dirMode > 0o7777) {
    throw invalidArgument(`file_mode ${req.fileMode} or dir_mode ${req.dirMode} is not a mode`);
  }
  await mkdir(path.dirname(dest), { recursive: true, mode: req.dirMode });
  const tmp = `${dest}.tmp`;
  // O_NOFOLLOW: a link planted at the temporary name is not followed out of the root.
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    let done = 0;
    while (done < req.data.length) {
      const { bytesWritten } = await fh.write(
        req.data,
        done,
        req.data.length - done,
        req.offset + done,
      );
      done += bytesWritten;
    }
  } finally {
    await fh.close();
  }
  if ((await stat(tmp)).size !== req.fileSize) return; // more parts to come
  await chmod(tmp, req.fileMode);
  await chown(tmp, req.uid, req.gid);
  await rename(tmp, dest);
}
