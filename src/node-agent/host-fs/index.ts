// kata-host-fs from the node agent (host-fs/README.md): every host path a sandbox names is
// opened once, beneath its allowed root, by the helper; QEMU gets open descriptors and binds are
// made from the checked handle, never from a path resolved again.
export type {
  AllowedRoot,
  BeneathBind,
  CheckedHostPath,
  FdOpen,
  HostFileType,
  HostFs,
} from './types.js';
export { DEFAULT_HOST_FS_TIMEOUT_MS } from './types.js';
export { execWithFdsArgv } from './argv.js';
export { HostFsError, parseHostFsError, type HostFsFailure } from './errors.js';
export { bindBeneath, checkBeneath, probeHostFs, unmountBeneath } from './operations.js';
