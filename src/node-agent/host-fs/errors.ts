// The helper's failures: its JSON error line parsed, and mapped onto the node agent's errors.
import { HostPathError, type HostPathReason } from '../storage/host-paths.js';

export interface HostFsFailure {
  code: string;
  message: string;
  path?: string;
}

/** A helper failure that is not about the tenant's path (usage, permissions, kernel, I/O). */
export class HostFsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'HostFsError';
  }
}

/**
 * Parses the helper's stderr: the last line that is its JSON error object. Pure; undefined when
 * there is none (e.g. the program the helper executed wrote its own stderr).
 */
export function parseHostFsError(stderr: string): HostFsFailure | undefined {
  const lines = stderr.split('\n').filter((l) => l.trim().startsWith('{'));
  for (const line of lines.reverse()) {
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    const { code, error, path } = v as Record<string, unknown>;
    if (typeof code !== 'string' || typeof error !== 'string') continue;
    return { code, message: error, ...(typeof path === 'string' && path !== '' && { path }) };
  }
  return undefined;
}

/** The reason a code means for a tenant's path; undefined for codes that are not about it. */
export function hostPathReasonOf(code: string): HostPathReason | undefined {
  switch (code) {
    case 'NOT_ABSOLUTE':
    case 'NOT_BENEATH':
    case 'EXDEV':
    case 'ELOOP':
    case 'WRONG_TYPE':
      return 'HostPathNotAllowed';
    case 'ENOENT':
    case 'ENOTDIR':
      return 'HostPathNotFound';
  }
  return undefined;
}

/** A HostPathError naming the field, or a HostFsError when the failure is not the path's. */
export function toHostPathError(field: string, f: HostFsFailure): HostPathError | HostFsError {
  const reason = hostPathReasonOf(f.code);
  return reason
    ? new HostPathError(reason, field, f.message)
    : new HostFsError(f.code, f.message, f.path);
}
