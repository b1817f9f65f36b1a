// Where one sandbox's host work lives under the node agent's run dir: its run dir (sockets, QMP,
// console log, pid file) and its 9p shared dir. Computed here only, by the runtime and by
// recovery alike.
import path from 'node:path';

export function sandboxDirs(runRoot: string, uid: string): { runDir: string; shareDir: string } {
  return {
    runDir: path.join(runRoot, 'sandboxes', uid),
    shareDir: path.join(runRoot, 'shared', uid),
  };
}
