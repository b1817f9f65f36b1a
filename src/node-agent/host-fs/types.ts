// The vocabulary of the kata-host-fs helper (host-fs/README.md), as the node agent sees it.

export type HostFileType = 'dir' | 'file' | 'block';

/** Objects of `type` may be opened beneath `root` (admin configuration, trusted). */
export interface AllowedRoot {
  root: string;
  type: HostFileType;
}

/** Where the helper binary is; each call is killed after timeoutMs (default 15 s). */
export interface HostFs {
  binary: string;
  timeoutMs?: number;
}

export const DEFAULT_HOST_FS_TIMEOUT_MS = 15_000;

export interface CheckedHostPath {
  field: string;
  path: string;
  /** The allowed root the path was opened beneath. */
  root: string;
  type: HostFileType;
  /** Where the object was when checked (for messages; never opened again by this name). */
  resolved: string;
}

/** One descriptor the helper opens for the program it executes. */
export interface FdOpen {
  /** The descriptor number in the program (>= 3). */
  fd: number;
  root: string;
  /** Absolute, beneath root. */
  path: string;
  type: HostFileType;
  readOnly: boolean;
}

export interface BeneathBind {
  sourceRoot: string;
  source: string;
  type: 'dir' | 'file';
  /** A node-agent-owned directory the guest may have written inside (e.g. the 9p share). */
  targetRoot: string;
  /** Relative to targetRoot; no symlink in it is ever followed. */
  target: string;
  readOnly: boolean;
}
